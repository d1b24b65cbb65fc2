"""The Security Policy Database of manual keying and the SA database (RFC 4301 section 4.4).

Manual keying (``ipsecctl xfrm``, the store's ``[xfrm]`` table) installs *states* (one direction of
an SA: outer source and destination, protocol, SPI, keys) and *policies* (a traffic selector, a
direction, and either templates naming the SAs that must protect the traffic, or allow / block).
IKE will install states the same way later. This module keeps both, builds the transforms, and
answers the data path's two questions:

- outbound: which policy covers this flow, and which SAs (a bundle) protect it;
- inbound: which SA an (protocol, SPI) names, and whether the decapsulated packet was allowed to
  arrive through the SAs it came through (RFC 4301 section 5.2, the inbound policy check).

Policies are searched in ``priority`` order (lower first, as ip-xfrm), then most specific first,
then installation order. Pure: the caller injects the clock (``now``) and the host's addresses.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.ipheader import PORT_PROTOCOLS, upper_layer
from ipsecd.datapath.sa import (
    FULL_PORTS,
    Direction,
    IPAddress,
    Mode,
    Protocol,
    SAParams,
    Selector,
    Transform,
)


class PolicyDir(enum.Enum):
    """ip-xfrm policy directions: out (sent), in (received for this host), fwd (forwarded)."""

    OUT = "out"
    IN = "in"
    FWD = "fwd"


class PolicyAction(enum.Enum):
    """RFC 4301 section 4.4.1: PROTECT (templates), BYPASS (allow in clear), DISCARD (block)."""

    PROTECT = "protect"
    BYPASS = "bypass"
    DISCARD = "discard"


class SadbError(ValueError):
    """A state or policy cannot be installed or removed (duplicate, not found, not ours)."""


@dataclass(frozen=True)
class Template:
    """Which SA protects a policy's traffic: protocol, mode, outer addresses (None: the packet's)."""

    protocol: Protocol
    mode: Mode
    src: IPAddress | None = None
    dst: IPAddress | None = None
    reqid: int = 0
    spi: int = 0  # 0: any SA of that kind
    optional: bool = False  # ip-xfrm "level use": send in clear when no SA exists


@dataclass(frozen=True)
class SecurityPolicy:
    """One SPD entry. Templates apply innermost first (ESP then AH: AH outermost)."""

    selector: Selector
    direction: PolicyDir
    action: PolicyAction = PolicyAction.PROTECT
    templates: tuple[Template, ...] = ()
    priority: int = 0
    source: Any = field(default=None, compare=False, repr=False)  # the parsed ip-xfrm policy

    def __post_init__(self) -> None:
        if (self.action is PolicyAction.PROTECT) != bool(self.templates):
            raise SadbError("a protect policy needs templates, and only a protect policy takes them")

    @property
    def specificity(self) -> int:
        sel = self.selector
        ports = (sel.src_ports != FULL_PORTS) + (sel.dst_ports != FULL_PORTS)
        return 100 * (sel.src.prefixlen + sel.dst.prefixlen) + 10 * (sel.protocol != 0) + ports

    def key(self) -> tuple[Selector, PolicyDir]:
        return (self.selector, self.direction)


@dataclass(frozen=True)
class ManualState:
    """One direction of an SA as installed: its outer addresses and parameters."""

    src: IPAddress
    dst: IPAddress
    params: SAParams = field(repr=False)
    reqid: int = 0
    source: Any = field(default=None, compare=False, repr=False)  # the parsed ip-xfrm state
    # Keys fresh from IKE: the SA starts at sequence number 1 and needs no reservation that
    # survives a restart (a restarted daemon negotiates new keys), unlike a manual SA.
    negotiated: bool = False

    def key(self) -> tuple[int, int, IPAddress]:
        return (int(self.params.protocol), self.params.spi, self.dst)


@dataclass(frozen=True)
class Flow:
    """The selector fields of one IP packet (ports 0 for protocols without ports)."""

    version: int
    src: int
    dst: int
    protocol: int
    sport: int
    dport: int

    def address(self, which: str) -> IPAddress:
        value = self.src if which == "src" else self.dst
        return ipaddress.IPv4Address(value) if self.version == 4 else ipaddress.IPv6Address(value)


def flow_of(pkt: bytes) -> Flow | None:
    """The flow of a packet, or None when it is too short to be an IP packet."""
    n = len(pkt)
    if n < 20:
        return None
    version = pkt[0] >> 4
    if version == 4:
        src = int.from_bytes(pkt[12:16], "big")
        dst = int.from_bytes(pkt[16:20], "big")
    elif version == 6 and n >= 40:
        src = int.from_bytes(pkt[8:24], "big")
        dst = int.from_bytes(pkt[24:40], "big")
    else:
        return None
    proto, off, nonfirst = upper_layer(pkt, version)
    sport = dport = 0
    if proto in PORT_PROTOCOLS and not nonfirst and off + 4 <= n:
        sport, dport = struct.unpack_from("!HH", pkt, off)
    return Flow(version, src, dst, proto, sport, dport)


def selector_matches(sel: Selector, flow: Flow) -> bool:
    """docs/datapath.md section 6 for one selector, on an already parsed flow."""
    if sel.src.version != flow.version:
        return False
    if flow.src & int(sel.src.netmask) != int(sel.src.network_address):
        return False
    if flow.dst & int(sel.dst.netmask) != int(sel.dst.network_address):
        return False
    if sel.protocol and sel.protocol != flow.protocol:
        return False
    if flow.protocol not in PORT_PROTOCOLS:
        return True
    return (
        sel.src_ports[0] <= flow.sport <= sel.src_ports[1]
        and sel.dst_ports[0] <= flow.dport <= sel.dst_ports[1]
    )


@dataclass
class InstalledSA:
    """A state with its transform and the direction it has on this host."""

    state: ManualState
    direction: Direction
    transform: Transform
    initial_seq: int = 1

    @property
    def next_seq(self) -> int:
        """The sequence number the next protected packet gets (dropped packets use none)."""
        return self.initial_seq + self.transform.counters().packets_sent

    def summary(self, keys: bool = False) -> dict[str, Any]:
        p = self.state.params
        out: dict[str, Any] = {
            "src": str(self.state.src),
            "dst": str(self.state.dst),
            "proto": "esp" if p.protocol == Protocol.ESP else "ah",
            "spi": f"0x{p.spi:08x}",
            "mode": "tunnel" if p.mode == Mode.TUNNEL else "transport",
            "reqid": self.state.reqid,
            "direction": "out" if self.direction == Direction.OUTBOUND else "in",
            "enc": p.enc_alg.name,
            "integ": p.integ_alg.name,
            "encap": None if p.encap is None else [p.encap.sport, p.encap.dport],
            "backend": self.transform.backend,
            "counters": dict(self.transform.counters().__dict__),
        }
        if keys:
            out["enc_key"] = p.enc_key.hex()
            out["integ_key"] = p.integ_key.hex()
        return out


class SADatabase:
    """States and policies of this host; the transforms are built when a state is added."""

    def __init__(
        self,
        my_addresses: Callable[[], Iterable[IPAddress]],
        *,
        backend: str = "auto",
        initial_seq: Callable[[ManualState], int] | None = None,
    ) -> None:
        self._mine = my_addresses
        self.backend = backend
        self._initial_seq = initial_seq
        self.states: dict[tuple[int, int, IPAddress], InstalledSA] = {}
        self._by_spi: dict[tuple[int, int], InstalledSA] = {}
        self.policies: list[SecurityPolicy] = []
        self.generation = 0  # moves whenever states or policies change
        self.on_change: Callable[[], None] | None = None  # called after each change (the fast path)

    def _changed(self) -> None:
        self.generation += 1
        if self.on_change is not None:
            self.on_change()

    # --- states --------------------------------------------------------------------------------

    def direction_of(self, state: ManualState) -> Direction:
        mine = set(self._mine())
        if state.src in mine and state.dst not in mine:
            return Direction.OUTBOUND
        if state.dst in mine:
            return Direction.INBOUND
        if state.src in mine:
            return Direction.OUTBOUND
        raise SadbError(f"neither {state.src} nor {state.dst} is an address of this host")

    def add_state(self, state: ManualState, now: float = 0.0) -> InstalledSA:
        key = state.key()
        if key in self.states:
            raise SadbError(f"state {state.params.protocol.name} spi 0x{state.params.spi:08x} exists")
        direction = self.direction_of(state)
        seq = 1
        if direction == Direction.OUTBOUND and self._initial_seq is not None and not state.negotiated:
            seq = self._initial_seq(state)
        transform = make_transform(state.params, direction, self.backend, now=now, initial_seq=seq)
        sa = InstalledSA(state, direction, transform, seq)
        self.states[key] = sa
        if direction == Direction.INBOUND:
            self._by_spi[(key[0], key[1])] = sa
        self._changed()
        return sa

    def del_state(self, protocol: int, spi: int, dst: IPAddress) -> None:
        sa = self.states.pop((protocol, spi, dst), None)
        if sa is None:
            raise SadbError(f"no state proto {protocol} spi 0x{spi:08x} dst {dst}")
        if self._by_spi.get((protocol, spi)) is sa:
            del self._by_spi[(protocol, spi)]
        self._changed()

    def flush_states(self) -> None:
        self.states.clear()
        self._by_spi.clear()
        self._changed()

    def inbound_sa(self, protocol: int, spi: int) -> InstalledSA | None:
        return self._by_spi.get((protocol, spi))

    # --- policies ------------------------------------------------------------------------------

    def add_policy(self, policy: SecurityPolicy) -> None:
        if any(p.key() == policy.key() for p in self.policies):
            raise SadbError(f"a {policy.direction.value} policy for {policy.selector} exists")
        self.policies.append(policy)
        # Stable sort: priority, then most specific, then installation order.
        self.policies.sort(key=lambda p: (p.priority, -p.specificity))
        self._changed()

    def del_policy(self, selector: Selector, direction: PolicyDir) -> None:
        before = len(self.policies)
        self.policies = [p for p in self.policies if p.key() != (selector, direction)]
        if len(self.policies) == before:
            raise SadbError(f"no {direction.value} policy for {selector}")
        self._changed()

    def flush_policies(self) -> None:
        self.policies.clear()
        self._changed()

    def policy_for(self, direction: PolicyDir, flow: Flow) -> SecurityPolicy | None:
        for p in self.policies:
            if p.direction is direction and selector_matches(p.selector, flow):
                return p
        return None

    # --- SA lookups for the data path ----------------------------------------------------------

    def _find_outbound(self, tmpl: Template, flow: Flow) -> InstalledSA | None:
        src = tmpl.src if tmpl.src is not None else flow.address("src")
        dst = tmpl.dst if tmpl.dst is not None else flow.address("dst")
        for sa in self.states.values():
            st = sa.state
            if (
                sa.direction == Direction.OUTBOUND
                and st.src == src
                and st.dst == dst
                and st.params.protocol == tmpl.protocol
                and st.params.mode == tmpl.mode
                and (tmpl.reqid == 0 or tmpl.reqid == st.reqid)
                and (tmpl.spi == 0 or tmpl.spi == st.params.spi)
                and not sa.transform.expired
            ):
                return sa
        return None

    def outbound_bundle(self, policy: SecurityPolicy, flow: Flow) -> list[InstalledSA] | None:
        """The SAs of a protect policy for this flow, innermost first; None if one is missing.

        An optional template ("level use") without an SA is skipped; an empty list means every
        template was optional and none had an SA: the flow goes in clear.
        """
        chain: list[InstalledSA] = []
        for tmpl in policy.templates:
            sa = self._find_outbound(tmpl, flow)
            if sa is None:
                if tmpl.optional:
                    continue
                return None
            chain.append(sa)
        return chain

    def outbound_for_flow(self, flow: Flow, tunnel: IPAddress | None) -> InstalledSA | None:
        """An outbound SA whose selectors cover the flow (SAs negotiated for a filter, no policy)."""
        for sa in self.states.values():
            if sa.direction != Direction.OUTBOUND or sa.transform.expired:
                continue
            p = sa.state.params
            if tunnel is not None and (p.tunnel is None or p.tunnel.dst != tunnel):
                continue
            if tunnel is None and p.mode == Mode.TUNNEL:
                continue
            if tunnel is None and int(sa.state.dst) != flow.dst:
                continue
            if not p.selectors or any(selector_matches(s, flow) for s in p.selectors):
                return sa
        return None

    def outbound_chain_for_flow(self, flow: Flow, tunnel: IPAddress | None) -> list[InstalledSA] | None:
        """``outbound_for_flow`` as a bundle, innermost first: an SA with a reqid that an outbound
        ESP SA and an outbound AH SA to the same peer share (a negotiated AH+ESP bundle) gives
        [ESP, AH] (RFC 4301 section 4.5: AH outermost); otherwise the one SA."""
        sa = self.outbound_for_flow(flow, tunnel)
        if sa is None or sa.state.reqid == 0:
            return None if sa is None else [sa]
        esp: InstalledSA | None = None
        ah: InstalledSA | None = None
        for other in self.states.values():
            st = other.state
            if (
                other.direction != Direction.OUTBOUND
                or st.reqid != sa.state.reqid
                or st.dst != sa.state.dst
                or other.transform.expired
            ):
                continue
            if st.params.protocol == Protocol.ESP and esp is None:
                esp = other
            elif st.params.protocol == Protocol.AH and ah is None:
                ah = other
        if esp is None or ah is None:
            return [sa]
        return [esp, ah]

    def inbound_allowed(self, flow: Flow, chain: Sequence[InstalledSA]) -> bool | None:
        """RFC 4301 section 5.2: may a packet that came through ``chain`` (outermost first) arrive?

        True/False when an ``in`` policy covers the flow; None when none does (the caller decides
        with the filter policy). A protect policy needs exactly its templates' protocols and modes.
        """
        policy = self.policy_for(PolicyDir.IN, flow) or self.policy_for(PolicyDir.FWD, flow)
        if policy is None:
            return None
        if policy.action is PolicyAction.DISCARD:
            return False
        if policy.action is PolicyAction.BYPASS:
            return True
        used = [(sa.state.params.protocol, sa.state.params.mode) for sa in reversed(chain)]
        wanted = [(t.protocol, t.mode) for t in policy.templates]
        if used == wanted:
            return True
        # Optional templates may be missing; the ones used must still come in order.
        required = [(t.protocol, t.mode) for t in policy.templates if not t.optional]
        it = iter(used)
        return all(w in it for w in required) and all(u in wanted for u in used)
