"""Quick Mode identities (RFC 2407 section 4.6.2) as traffic selectors, and their conversion from the
policy's specific filters and to the data path's ``Selector``.

A ``TrafficSelector`` is one side of a Quick Mode: an inclusive address range, an IP protocol
(0: any) and a port (0: any), which is exactly what an IDci / IDcr payload can say.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ipsecd.datapath.sa import FULL_PORTS, Selector
from ipsecd.ike.buffers import CodecError
from ipsecd.ike.constants import IdType
from ipsecd.ikev1.payloads import IdPayload
from ipsecd.policy.order import SpecificFilter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


@dataclass(frozen=True)
class TrafficSelector:
    first: IPAddress
    last: IPAddress
    protocol: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        if self.first.version != self.last.version or int(self.first) > int(self.last):
            raise ValueError("selector range must be ordered and of one address family")
        if not (0 <= self.protocol <= 255 and 0 <= self.port <= 65535):
            raise ValueError("selector protocol or port out of range")

    @classmethod
    def of(cls, net: str | IPNetwork | IPAddress, protocol: int = 0, port: int = 0) -> TrafficSelector:
        n = ipaddress.ip_network(net) if not isinstance(net, IPNetwork) else net
        return cls(n.network_address, n.broadcast_address, protocol, port)

    @property
    def version(self) -> int:
        return self.first.version

    def networks(self) -> list[IPNetwork]:
        return list(ipaddress.summarize_address_range(self.first, self.last))

    def contains(self, other: TrafficSelector) -> bool:
        """``other`` is inside this selector (for a responder narrowing nothing: RFC 2409 section 5.5
        lets it accept only what its policy covers)."""
        return (
            self.version == other.version
            and int(self.first) <= int(other.first)
            and int(other.last) <= int(self.last)
            and self.protocol in (0, other.protocol)
            and self.port in (0, other.port)
        )

    def to_id(self) -> IdPayload:
        """RFC 2407 section 4.6.2: one address -> ID_IPVx_ADDR, an aligned block -> _SUBNET, else
        _RANGE."""
        nets = self.networks()
        v4 = self.version == 4
        if self.first == self.last:
            t = IdType.ID_IPV4_ADDR if v4 else IdType.ID_IPV6_ADDR
            return IdPayload(t, self.protocol, self.port, self.first.packed)
        if len(nets) == 1:
            t = IdType.ID_IPV4_ADDR_SUBNET if v4 else IdType.ID_IPV6_ADDR_SUBNET
            return IdPayload(
                t, self.protocol, self.port, nets[0].network_address.packed + nets[0].netmask.packed
            )
        t = IdType.ID_IPV4_ADDR_RANGE if v4 else IdType.ID_IPV6_ADDR_RANGE
        return IdPayload(t, self.protocol, self.port, self.first.packed + self.last.packed)

    @classmethod
    def from_id(cls, p: IdPayload) -> TrafficSelector:
        """Raises CodecError for an ID type that is not an address (FQDN and such name no traffic)."""
        t, d = p.id_type, p.data
        if t in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            a = ipaddress.ip_address(d)
            return cls(a, a, p.protocol, p.port)
        if t in (IdType.ID_IPV4_ADDR_SUBNET, IdType.ID_IPV6_ADDR_SUBNET):
            half = len(d) // 2
            try:
                net = ipaddress.ip_network((ipaddress.ip_address(d[:half]), _prefix(d[half:])), strict=False)
            except ValueError as e:
                raise CodecError(f"ID subnet: {e}") from None
            return cls(net.network_address, net.broadcast_address, p.protocol, p.port)
        if t in (IdType.ID_IPV4_ADDR_RANGE, IdType.ID_IPV6_ADDR_RANGE):
            half = len(d) // 2
            first, last = ipaddress.ip_address(d[:half]), ipaddress.ip_address(d[half:])
            if int(first) > int(last):
                raise CodecError("ID range: first address above the last")
            return cls(first, last, p.protocol, p.port)
        raise CodecError(f"ID type {t} names no addresses")

    def __str__(self) -> str:
        nets = self.networks()
        where = str(nets[0]) if len(nets) == 1 else f"{self.first}-{self.last}"
        return (
            where
            + (f" proto {self.protocol}" if self.protocol else "")
            + (f" port {self.port}" if self.port else "")
        )


def _prefix(mask: bytes) -> int:
    """A netmask as a prefix length; RFC 2407 section 4.6.2.3 masks are contiguous."""
    bits = int.from_bytes(mask, "big")
    total = len(mask) * 8
    plen = total - (((1 << total) - 1 - bits).bit_length())
    if bits != ((1 << total) - 1) ^ ((1 << (total - plen)) - 1):
        raise CodecError("ID subnet mask is not contiguous")
    return plen


def selectors_of_filter(sf: SpecificFilter) -> tuple[TrafficSelector, TrafficSelector]:
    """(local, remote) selectors of an outbound specific filter: its source is us, its destination the
    peer's side; protocol and ports come along (RFC 2407 section 4.6.2 Protocol ID / Port)."""
    v = sf.version
    local = TrafficSelector(_ip(v, sf.src.first), _ip(v, sf.src.last), sf.protocol, sf.srcport)
    remote = TrafficSelector(_ip(v, sf.dst.first), _ip(v, sf.dst.last), sf.protocol, sf.dstport)
    return local, remote


def datapath_selectors(src: TrafficSelector, dst: TrafficSelector) -> tuple[Selector, ...]:
    """``Selector`` values (networks only) covering traffic from ``src`` to ``dst``."""
    proto = src.protocol or dst.protocol
    sp = (src.port, src.port) if src.port else FULL_PORTS
    dp = (dst.port, dst.port) if dst.port else FULL_PORTS
    return tuple(Selector(s, d, proto, sp, dp) for s in src.networks() for d in dst.networks())
