"""The fast path's filter table for ``ipsecd --fastpath``: what the Python router would decide, as
prefix filters the C classifier can run (docs/datapath.md, "The daemon on the fast path").

The Python router decides an outbound packet in this order (ipsecd/daemon/router.py ``_decide``):
manual policies (store ``[xfrm]``, ``ipsecctl xfrm``), then the policy's exemptions (IKE,
Kerberos, RSVP, multicast, broadcast: ipsecd/policy/exemptions.py), then the ordered filters of
the assigned policy; a Negotiate Security filter protects with an outbound SA whose tunnel endpoint
is the filter's and whose selectors cover the packet (``SADatabase.outbound_for_flow``, the oldest
first). The table built here keeps that order with descending weights, and only ever answers
PROTECT or DROP where the router would give the same answer; everywhere else it answers SLOW (the
packet goes to the router, which decides it exactly as without the fast path):

* manual policies: as before (a single-template protect policy whose SA is in the fast path ->
  PROTECT; anything else -> SLOW);
* exemptions: SLOW filters for a superset of them (UDP 500/4500 and TCP/UDP 88 either way, RSVP,
  multicast, the broadcast addresses), whatever ``ipsecexempt`` says: the router decides;
* each outbound policy filter F, most specific first: for each fast-path outbound SA of F's tunnel
  endpoint (oldest first), a PROTECT filter for F intersected with each of the SA's selectors;
  then F itself: DROP for Block, SLOW for Permit and for the rest of a Negotiate filter (no SA yet:
  the router queues the packet and starts IKE, or applies the soft fallback). A filter whose
  address ranges are not a few CIDR blocks becomes one SLOW filter over the covering blocks and
  gets no PROTECT or DROP entries;
* anything else: the fast path's default action, SLOW.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ipsecd.datapath.fastpath import Action as FastAction
from ipsecd.datapath.sa import FULL_PORTS, Protocol, Selector
from ipsecd.datapath.sadb import InstalledSA, PolicyAction, PolicyDir, SecurityPolicy
from ipsecd.policy.classifier import Classifier
from ipsecd.policy.exemptions import IKE_PORTS, KERBEROS_PORT, LIMITED_BROADCAST, RSVP_PROTOCOL
from ipsecd.policy.model import Action
from ipsecd.policy.order import AddressRange, Direction, SpecificFilter

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Ports = tuple[int, int]

TOP_WEIGHT = 1 << 30
MAX_BLOCKS = 64  # CIDR blocks per filter (source x destination) before it is only a SLOW filter
TCP, UDP = 6, 17


@dataclass(frozen=True)
class Shape:
    """One fast-path filter before it gets an id (weight: higher first; equal: older first)."""

    weight: int
    src: Network
    dst: Network
    action: FastAction
    protocol: int = 0
    src_ports: Ports = FULL_PORTS
    dst_ports: Ports = FULL_PORTS
    sa: int = 0


def blocks(r: AddressRange) -> list[Network] | None:
    """The CIDR blocks of an address range, None when there are more than MAX_BLOCKS."""
    cls = ipaddress.IPv4Address if r.version == 4 else ipaddress.IPv6Address
    out: list[Network] = []
    for net in ipaddress.summarize_address_range(cls(r.first), cls(r.last)):
        out.append(net)
        if len(out) > MAX_BLOCKS:
            return None
    return out


def covering(r: AddressRange) -> Network:
    """The smallest single CIDR block holding the whole range."""
    bits = r.bits
    plen = bits - (r.first ^ r.last).bit_length()
    base = (r.first >> (bits - plen)) << (bits - plen)
    if r.version == 4:
        return ipaddress.IPv4Network((base, plen))
    return ipaddress.IPv6Network((base, plen))


def _net_and(a: Network, b: Network) -> Network | None:
    if a.version != b.version:
        return None
    if a.prefixlen >= b.prefixlen:
        return a if a.subnet_of(b) else None  # type: ignore[arg-type]
    return b if b.subnet_of(a) else None  # type: ignore[arg-type]


def _ports_and(a: Ports, b: Ports) -> Ports | None:
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


def _port(p: int) -> Ports:
    return (p, p) if p else FULL_PORTS


def exemption_shapes(
    weight: int, broadcasts: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> list[Shape]:
    """SLOW filters covering every exemption class (a superset: the router decides exactly)."""
    out: list[Shape] = []
    any4, any6 = ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")
    for anyn in (any4, any6):
        for port in sorted(IKE_PORTS):
            out.append(Shape(weight, anyn, anyn, FastAction.SLOW, UDP, (port, port), FULL_PORTS))
            out.append(Shape(weight, anyn, anyn, FastAction.SLOW, UDP, FULL_PORTS, (port, port)))
        for proto in (TCP, UDP):
            k = (KERBEROS_PORT, KERBEROS_PORT)
            out.append(Shape(weight, anyn, anyn, FastAction.SLOW, proto, k, FULL_PORTS))
            out.append(Shape(weight, anyn, anyn, FastAction.SLOW, proto, FULL_PORTS, k))
        out.append(Shape(weight, anyn, anyn, FastAction.SLOW, RSVP_PROTOCOL))
    out.append(Shape(weight, any4, ipaddress.ip_network("224.0.0.0/4"), FastAction.SLOW))
    out.append(Shape(weight, any6, ipaddress.ip_network("ff00::/8"), FastAction.SLOW))
    for addr in sorted({LIMITED_BROADCAST, *broadcasts}, key=lambda a: (a.version, int(a))):
        anyn = any4 if addr.version == 4 else any6
        out.append(Shape(weight, anyn, ipaddress.ip_network(addr), FastAction.SLOW))
    return out


def bundled(sas: Iterable[InstalledSA]) -> set[tuple[int, Any]]:
    """(reqid, destination) of AH SAs: an ESP SA sharing them is half of an AH+ESP bundle."""
    return {
        (sa.state.reqid, sa.state.dst)
        for sa in sas
        if sa.state.params.protocol == Protocol.AH and sa.state.reqid != 0
    }


def policy_filter_shapes(
    filters: Sequence[SpecificFilter],
    outbound: Sequence[tuple[InstalledSA, int]],
    top: int,
) -> list[Shape]:
    """Shapes of the policy's outbound filters (already in classifier order), PROTECT entries for
    the fast-path SAs ``outbound`` ((SA, handle), oldest first) included; weights from ``top`` down."""
    out: list[Shape] = []
    by_tunnel: dict[Any, list[tuple[InstalledSA, int]]] = {}  # tunnel endpoint -> SAs, oldest first
    for sa, handle in outbound:
        if sa.state.params.tunnel is not None:
            by_tunnel.setdefault(sa.state.params.tunnel.dst, []).append((sa, handle))
    rank = 0
    for f in filters:
        if f.direction is not Direction.OUTBOUND:
            continue
        hi, lo = top - 2 * rank, top - 2 * rank - 1
        rank += 1
        srcs, dsts = blocks(f.src), blocks(f.dst)
        sports, dports = _port(f.srcport), _port(f.dstport)
        if srcs is None or dsts is None or len(srcs) * len(dsts) > MAX_BLOCKS:
            src, dst = covering(f.src), covering(f.dst)
            out.append(Shape(lo, src, dst, FastAction.SLOW, f.protocol, sports, dports))
            continue
        if f.action is Action.NEGOTIATE and f.tunnel is not None:
            for sa, handle in by_tunnel.get(f.tunnel, ()):
                anyn = ipaddress.ip_network("0.0.0.0/0" if f.version == 4 else "::/0")
                sels = sa.state.params.selectors or (Selector(anyn, anyn),)
                for sel in sels:
                    out.extend(_intersections(hi, srcs, dsts, f, sel, handle))
        action = FastAction.DROP if f.action is Action.BLOCK else FastAction.SLOW
        for s in srcs:
            for d in dsts:
                out.append(Shape(lo, s, d, action, f.protocol, sports, dports))
    return out


def _intersections(
    weight: int, srcs: list[Network], dsts: list[Network], f: SpecificFilter, sel: Selector, handle: int
) -> Iterable[Shape]:
    if f.protocol and sel.protocol and f.protocol != sel.protocol:
        return
    proto = f.protocol or sel.protocol
    sports = _ports_and(_port(f.srcport), sel.src_ports)
    dports = _ports_and(_port(f.dstport), sel.dst_ports)
    if sports is None or dports is None:
        return
    for s in srcs:
        src = _net_and(s, sel.src)
        if src is None:
            continue
        for d in dsts:
            dst = _net_and(d, sel.dst)
            if dst is not None:
                yield Shape(weight, src, dst, FastAction.PROTECT, proto, sports, dports, handle)


def build(
    policies: Sequence[SecurityPolicy],
    manual_handle: Callable[[Any], int],
    classifier: Classifier | None,
    outbound: Sequence[tuple[InstalledSA, int]],
) -> list[Shape]:
    """The whole table, highest weight first. ``manual_handle(template)``: the fast-path handle of
    a manual policy template's SA (0: none); ``outbound``: the fast path's outbound SAs (oldest first)."""
    shapes: list[Shape] = []
    outs = [p for p in policies if p.direction is PolicyDir.OUT]
    for i, p in enumerate(outs):
        action, handle = FastAction.SLOW, 0
        if p.action is PolicyAction.PROTECT and len(p.templates) == 1:
            t = p.templates[0]
            if t.src is not None and t.dst is not None and not t.optional:
                handle = manual_handle(t)
                if handle:
                    action = FastAction.PROTECT
        s = p.selector
        shapes.append(
            Shape(
                TOP_WEIGHT - i,
                ipaddress.ip_network(s.src),
                ipaddress.ip_network(s.dst),
                action,
                s.protocol,
                s.src_ports,
                s.dst_ports,
                handle,
            )
        )
    if classifier is None:
        return shapes
    weight = TOP_WEIGHT - len(outs) - 1
    shapes += exemption_shapes(weight, classifier.exemptions.broadcasts)
    shapes += policy_filter_shapes(classifier.filters, outbound, weight - 1)
    return shapes
