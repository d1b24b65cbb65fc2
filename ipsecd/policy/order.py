"""Expansion of generic filters into ordered specific filters, and their weights.

The policy agent's model (docs/policy.md): the *generic* filters of the filter lists used by the
active rules of the assigned policy are expanded into *specific* filters, where every endpoint is a
concrete address range of one IP version and every filter has one direction:

- ``me`` and the dynamic keywords (``dns``, ``wins``, ``dhcp``, ``gateway``) become the host's
  addresses (one specific filter per address, taken from the injected ``HostEnvironment``);
- a DNS name becomes its addresses; a name that does not resolve is an ``ExpansionError`` naming
  the filter's origin (file, line, field);
- ``any`` becomes ``0.0.0.0/0`` or ``::/0``, whichever matches the other side (both when both
  sides are ``any``);
- a mirrored filter adds a second specific filter for the other direction, with the addresses and
  ports swapped.

Every specific filter gets a *weight* (``compute_weight``); the list is ordered by descending
weight, then block before negotiate before permit, then declaration order.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ipsecd.policy.host import HostEnvironment
from ipsecd.policy.model import (
    Action,
    AddressSpec,
    AddrKind,
    Filter,
    IPAddress,
    Origin,
    Policy,
    Rule,
    Store,
)

V4_BITS = 32
V6_BITS = 128


class Direction(enum.Enum):
    """Which way a packet travels relative to this host's IPsec processing."""

    OUTBOUND = "out"  # sent by this host, or forwarded by it towards a tunnel
    INBOUND = "in"  # received by this host (or out of a tunnel ending here)

    def reverse(self) -> Direction:
        return Direction.INBOUND if self is Direction.OUTBOUND else Direction.OUTBOUND


# Placeholder until the `load` branch lands: the same fields and text as
# ipsecd.policy.store.ConfigIssue; switch to that type when merging.
@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class ExpansionError(Exception):
    """Generic filters that cannot be expanded; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass(frozen=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one IP version, as integers."""

    version: int
    first: int
    last: int

    @property
    def bits(self) -> int:
        return V4_BITS if self.version == 4 else V6_BITS

    @property
    def prefix_equivalent(self) -> int:
        """The prefix length of the smallest aligned-size block holding as many addresses.

        Exact for a CIDR block (``192.0.2.0/24`` -> 24); a range of ``n`` addresses counts as
        ``bits - ceil(log2(n))`` (``10.0.0.1-10.0.0.100``: 100 addresses -> 32 - 7 = 25).
        """
        return self.bits - (self.last - self.first).bit_length()

    def contains(self, value: int) -> bool:
        return self.first <= value <= self.last

    def _network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        size = self.last - self.first + 1
        if size & (size - 1) or self.first % size:
            return None
        plen = self.bits - (size.bit_length() - 1)
        if self.version == 4:
            return ipaddress.IPv4Network((self.first, plen))
        return ipaddress.IPv6Network((self.first, plen))

    def __str__(self) -> str:
        net = self._network()
        if net is not None:
            return str(net.network_address) if net.prefixlen == self.bits else str(net)
        return f"{_addr(self.version, self.first)}-{_addr(self.version, self.last)}"

    @classmethod
    def of_address(cls, addr: IPAddress) -> AddressRange:
        return cls(addr.version, int(addr), int(addr))

    @classmethod
    def of_network(cls, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> AddressRange:
        return cls(net.version, int(net.network_address), int(net.broadcast_address))

    @classmethod
    def any(cls, version: int) -> AddressRange:
        return cls(version, 0, (1 << (V4_BITS if version == 4 else V6_BITS)) - 1)


def _addr(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


# Ties in weight: block before negotiate before permit (docs/policy.md).
ACTION_RANK: dict[Action, int] = {Action.BLOCK: 0, Action.NEGOTIATE: 1, Action.PERMIT: 2}


@dataclass(frozen=True)
class SpecificFilter:
    """One expanded filter: concrete addresses of one IP version, one direction, a weight."""

    direction: Direction
    src: AddressRange
    dst: AddressRange
    protocol: int  # 0: any
    srcport: int  # 0: any
    dstport: int  # 0: any
    action: Action
    rule: str | None
    filterlist: str
    filteraction: str
    weight: int
    index: int  # declaration order (rules in policy order, filters in list order)
    generic: Filter = field(compare=False)
    tunnel: IPAddress | None = None
    mirror: bool = False  # the second filter made for a mirrored generic filter
    policy: str = ""

    @property
    def version(self) -> int:
        return self.src.version

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (-self.weight, ACTION_RANK[self.action], self.index)

    def matches(
        self, direction: Direction, version: int, src: int, dst: int, protocol: int, sport: int, dport: int
    ) -> bool:
        """Brute-force match of one packet (the reference the classifier is tested against)."""
        return (
            direction is self.direction
            and version == self.src.version
            and self.src.first <= src <= self.src.last
            and self.dst.first <= dst <= self.dst.last
            and (self.protocol == 0 or self.protocol == protocol)
            and (self.srcport == 0 or self.srcport == sport)
            and (self.dstport == 0 or self.dstport == dport)
        )

    def __str__(self) -> str:
        proto = "any" if self.protocol == 0 else str(self.protocol)
        sp = f":{self.srcport}" if self.srcport else ""
        dp = f":{self.dstport}" if self.dstport else ""
        return (
            f"{self.direction.value:3} {self.src}{sp} -> {self.dst}{dp} proto {proto} "
            f"{self.action.value} weight {self.weight} rule {self.rule}"
        )


def compute_weight(src: AddressRange, dst: AddressRange, protocol: int, srcport: int, dstport: int) -> int:
    """The specificity of a specific filter; larger is more specific (docs/policy.md).

    ``weight = 100 * (prefix(src) + prefix(dst)) + 10 * [protocol given] + [srcport] + [dstport]``

    The address term dominates (any single prefix bit outweighs protocol and ports together), then
    a specific protocol, then each specific port.
    """
    addr = src.prefix_equivalent + dst.prefix_equivalent
    return 100 * addr + 10 * (protocol != 0) + (srcport != 0) + (dstport != 0)


def _issue(origin: Origin, side: str, message: str) -> ConfigIssue:
    path = f"{origin.path}.{side}" if origin.path else side
    return ConfigIssue(origin.file, origin.line, path, message)


def _ranges_of(
    spec: AddressSpec, host: HostEnvironment, my_addresses: Sequence[IPAddress]
) -> list[AddressRange] | str:
    """The concrete ranges of one filter side, or an error message."""
    kind = spec.kind
    addrs: Iterable[IPAddress]
    if kind is AddrKind.ANY:
        return [AddressRange.any(4), AddressRange.any(6)]
    if kind is AddrKind.NETWORK:
        if spec.network is None:
            return "a network address without its network"
        return [AddressRange.of_network(spec.network)]
    if kind is AddrKind.RANGE:
        if spec.first is None or spec.last is None or spec.first.version != spec.last.version:
            return "an address range needs a first and last address of one IP version"
        if int(spec.first) > int(spec.last):
            return f"address range {spec.first}-{spec.last} runs backwards"
        return [AddressRange(spec.first.version, int(spec.first), int(spec.last))]
    if kind is AddrKind.ME:
        addrs = my_addresses
    elif kind is AddrKind.DNSNAME:
        name = spec.name or ""
        addrs = host.resolve(name)
        if not addrs:
            return f"DNS name {name!r} does not resolve"
    elif kind is AddrKind.DNS:
        addrs = host.dns_servers()
    elif kind is AddrKind.WINS:
        addrs = host.wins_servers()
    elif kind is AddrKind.DHCP:
        addrs = host.dhcp_servers()
    else:  # AddrKind.GATEWAY
        addrs = host.gateways()
    return [AddressRange.of_address(a) for a in dict.fromkeys(addrs)]


_STATIC_KINDS = frozenset({AddrKind.ANY, AddrKind.NETWORK, AddrKind.RANGE, AddrKind.DNSNAME})


def _direction_of(flt: Filter, rule: Rule, my_addresses: Sequence[IPAddress]) -> Direction:
    """The direction of the unmirrored specific filters of a generic filter (docs/policy.md)."""
    if rule.tunnel is not None:
        # A tunnel filter describes traffic travelling towards the tunnel endpoint: into a tunnel
        # that starts here (outbound), or out of a tunnel that ends at one of our addresses.
        return Direction.INBOUND if rule.tunnel in my_addresses else Direction.OUTBOUND
    if flt.dst.kind is AddrKind.ME and flt.src.kind is not AddrKind.ME:
        return Direction.INBOUND
    return Direction.OUTBOUND


def expand_policy(store: Store, policy: Policy, host: HostEnvironment) -> list[SpecificFilter]:
    """The specific filters of ``policy``, most specific first (see module docstring).

    Only active rules contribute; the default response rule adds no specific filter. Raises
    ``ExpansionError`` with every issue found; nothing is returned partly expanded.
    """
    issues: list[ConfigIssue] = []
    out: list[SpecificFilter] = []
    my_addresses = list(dict.fromkeys(host.my_addresses()))
    index = 0
    for rule in policy.rules:
        if not rule.active:
            continue
        flist = store.filterlists.get(rule.filterlist)
        faction = store.filteractions.get(rule.filteraction)
        if flist is None:
            issues.append(_issue(rule.origin, "filterlist", f"no filter list {rule.filterlist!r}"))
        if faction is None:
            issues.append(_issue(rule.origin, "filteraction", f"no filter action {rule.filteraction!r}"))
        if flist is None or faction is None:
            continue
        for flt in flist.filters:
            srcs = _ranges_of(flt.src, host, my_addresses)
            dsts = _ranges_of(flt.dst, host, my_addresses)
            if isinstance(srcs, str):
                issues.append(_issue(flt.origin, "srcaddr", srcs))
            if isinstance(dsts, str):
                issues.append(_issue(flt.origin, "dstaddr", dsts))
            if isinstance(srcs, str) or isinstance(dsts, str):
                continue
            pairs = [(s, d) for s in srcs for d in dsts if s.version == d.version]
            if not pairs and flt.src.kind in _STATIC_KINDS and flt.dst.kind in _STATIC_KINDS:
                issues.append(
                    _issue(
                        flt.origin,
                        "dstaddr",
                        f"source {flt.src} and destination {flt.dst} have no IP version in common",
                    )
                )
                continue
            direction = _direction_of(flt, rule, my_addresses)
            for s, d in pairs:
                weight = compute_weight(s, d, flt.protocol, flt.srcport, flt.dstport)
                sides = [(direction, s, d, flt.srcport, flt.dstport, False)]
                if flt.mirrored:
                    sides.append((direction.reverse(), d, s, flt.dstport, flt.srcport, True))
                for way, a, b, sport, dport, mirror in sides:
                    out.append(
                        SpecificFilter(
                            direction=way,
                            src=a,
                            dst=b,
                            protocol=flt.protocol,
                            srcport=sport,
                            dstport=dport,
                            action=faction.action,
                            rule=rule.name,
                            filterlist=flist.name,
                            filteraction=faction.name,
                            weight=weight,
                            index=index,
                            generic=flt,
                            tunnel=rule.tunnel,
                            mirror=mirror,
                            policy=policy.name,
                        )
                    )
                    index += 1
    if issues:
        raise ExpansionError(issues)
    out.sort(key=lambda f: f.sort_key)
    return out
