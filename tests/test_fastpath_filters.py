"""ipsecd/daemon/fastpath_filters.py: the fast path's filter table never contradicts the router.

Random policies (hosts, subnets, address ranges that are not CIDR blocks, ports, protocols,
Permit/Block/Negotiate with two tunnel endpoints), random negotiated SAs (with selectors narrower or
wider than the filters, old and new SAs of one filter as after a rekey) and manual policies. For
random flows, the first matching entry of the table (highest weight first, then the oldest, as the C
classifier orders them) is compared with ``Router._decide``: PROTECT must name the very SA the router
would use, DROP only where the router blocks; SLOW defers to the router and is always allowed. A
share of the flows must get PROTECT, or the test would pass with an all-SLOW table.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from collections.abc import Sequence

from ipsecd.daemon import fastpath_filters as ff
from ipsecd.daemon.router import Router
from ipsecd.datapath.fastpath import Action as FastAction
from ipsecd.datapath.sa import Mode, Protocol, Selector
from ipsecd.datapath.sadb import (
    Flow,
    InstalledSA,
    ManualState,
    PolicyAction,
    PolicyDir,
    SADatabase,
    SecurityPolicy,
    Template,
)
from ipsecd.policy.classifier import Classifier
from ipsecd.policy.exemptions import default_exemptions
from ipsecd.policy.model import Action, AddressSpec, AddrKind, Filter
from ipsecd.policy.order import AddressRange, Direction, SpecificFilter
from tests.fastpath_peer import _sa

ME = "192.0.2.1"
PEERS = ("192.0.2.2", "192.0.2.3")
BASE = int(ipaddress.IPv4Address("10.0.0.0"))
PROTOCOLS = (0, 1, 6, 17)
PORTS = (0, 0, 80, 443, 5000)


def _range(rnd: random.Random) -> AddressRange:
    kind = rnd.random()
    if kind < 0.15:
        return AddressRange(4, 0, (1 << 32) - 1)
    if kind < 0.3:  # a range that is not a CIDR block
        first = BASE + rnd.randrange(1 << 12)
        return AddressRange(4, first, first + rnd.randrange(1, 40))
    plen = rnd.choice([8, 16, 20, 24, 28, 32])
    size = 1 << (32 - plen)
    start = (BASE + rnd.randrange(1 << 12)) & ~(size - 1)
    return AddressRange(4, start, start + size - 1)


def _filter(rnd: random.Random, i: int) -> SpecificFilter:
    src, dst = _range(rnd), _range(rnd)
    protocol = rnd.choice(PROTOCOLS)
    ported = protocol in (6, 17)
    action = rnd.choice([Action.PERMIT, Action.BLOCK, Action.NEGOTIATE, Action.NEGOTIATE])
    return SpecificFilter(
        direction=rnd.choice([Direction.OUTBOUND, Direction.OUTBOUND, Direction.INBOUND]),
        src=src,
        dst=dst,
        protocol=protocol,
        srcport=rnd.choice(PORTS) if ported else 0,
        dstport=rnd.choice(PORTS) if ported else 0,
        action=action,
        rule=f"r{i}",
        filterlist="l",
        filteraction="a",
        weight=100 * (src.prefix_equivalent + dst.prefix_equivalent) + 10 * (protocol != 0),
        index=i,
        generic=Filter(AddressSpec(AddrKind.ANY), AddressSpec(AddrKind.ANY)),
        tunnel=ipaddress.IPv4Address(rnd.choice(PEERS)) if action is Action.NEGOTIATE else None,
    )


def _net(rnd: random.Random) -> ipaddress.IPv4Network:
    plen = rnd.choice([0, 8, 16, 20, 24, 32])
    size = 1 << (32 - plen)
    start = (BASE + rnd.randrange(1 << 12)) & ~(size - 1) & 0xFFFFFFFF
    return ipaddress.IPv4Network((start if plen else 0, plen))


def _fast_lookup(shapes: Sequence[ff.Shape], flow: Flow) -> ff.Shape | None:
    for s in sorted(shapes, key=lambda s: -s.weight):  # stable: equal weights keep their order
        if (
            int(s.src.network_address) == flow.src & int(s.src.netmask)
            and int(s.dst.network_address) == flow.dst & int(s.dst.netmask)
            and s.protocol in (0, flow.protocol)
            and s.src_ports[0] <= flow.sport <= s.src_ports[1]
            and s.dst_ports[0] <= flow.dport <= s.dst_ports[1]
        ):
            return s
    return None


def _world(seed: int) -> tuple[Classifier, SADatabase, dict[int, InstalledSA], list[ff.Shape], list[Flow]]:
    rnd = random.Random(seed)
    filters = [_filter(rnd, i) for i in range(rnd.randrange(3, 40))]
    classifier = Classifier(filters, default_exemptions(3))
    sadb = SADatabase(lambda: [ipaddress.ip_address(ME)])
    handles: dict[int, InstalledSA] = {}
    for n in range(rnd.randrange(1, 8)):
        peer = rnd.choice(PEERS)
        sels = tuple(
            Selector(_net(rnd), _net(rnd), rnd.choice(PROTOCOLS)) for _ in range(rnd.choice([0, 1, 1, 2]))
        )
        params = dataclasses.replace(_sa(0x1000 + n, bytes(20), ME, peer), selectors=sels)
        sa = sadb.add_state(ManualState(ipaddress.ip_address(ME), ipaddress.ip_address(peer), params))
        handles[100 + n] = sa
    manual: list[SecurityPolicy] = []
    if rnd.random() < 0.5:  # a manual bypass policy above everything (store [xfrm])
        sel = Selector(_net(rnd), _net(rnd))
        manual.append(SecurityPolicy(sel, PolicyDir.OUT, PolicyAction.BYPASS, ()))
        sadb.add_policy(manual[0])
    outbound = list(((sa, h) for h, sa in handles.items()))
    shapes = ff.build(sadb.policies, lambda t: 0, classifier, outbound)
    flows = []
    for _ in range(300):
        f = rnd.choice(filters)
        near = rnd.random() < 0.8
        src = rnd.randint(f.src.first, f.src.last) if near else BASE + rnd.randrange(1 << 12)
        dst = rnd.randint(f.dst.first, f.dst.last) if near else BASE + rnd.randrange(1 << 12)
        proto = rnd.choice((1, 6, 17))
        ported = proto in (6, 17)
        sport = rnd.choice((80, 443, 5000, 40000, 500)) if ported else 0
        dport = rnd.choice((80, 443, 5000, 4500, 88)) if ported else 0
        flows.append(Flow(4, src, dst, proto, sport, dport))
    return classifier, sadb, handles, shapes, flows


def test_the_table_never_contradicts_the_router() -> None:
    protected = dropped = 0
    for seed in range(60):
        classifier, sadb, handles, shapes, flows = _world(seed)
        router = Router(classifier, sadb)
        for flow in flows:
            hit = _fast_lookup(shapes, flow)
            if hit is None or hit.action is FastAction.SLOW:
                continue
            verdict, chain, _flt, _policy = router._decide(flow)
            if hit.action is FastAction.DROP:
                assert verdict == "block", (seed, flow, hit)
                dropped += 1
            else:
                assert verdict == "protect" and chain == [handles[hit.sa]], (seed, flow, hit, verdict, chain)
                protected += 1
    assert protected > 200 and dropped > 50, (protected, dropped)


def test_exemptions_and_manual_policies_come_first() -> None:
    f = SpecificFilter(
        direction=Direction.OUTBOUND,
        src=AddressRange(4, 0, (1 << 32) - 1),
        dst=AddressRange(4, 0, (1 << 32) - 1),
        protocol=0,
        srcport=0,
        dstport=0,
        action=Action.BLOCK,
        rule="r",
        filterlist="l",
        filteraction="a",
        weight=0,
        index=0,
        generic=Filter(AddressSpec(AddrKind.ANY), AddressSpec(AddrKind.ANY)),
    )
    sel = Selector(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("10.9.0.0/16"))
    tmpl = Template(Protocol.ESP, Mode.TUNNEL, ipaddress.ip_address(ME), ipaddress.ip_address(PEERS[0]))
    policy = SecurityPolicy(sel, PolicyDir.OUT, PolicyAction.PROTECT, (tmpl,))
    shapes = ff.build([policy], lambda t: 7, Classifier([f], default_exemptions(3)), [])
    assert shapes[0].action is FastAction.PROTECT and shapes[0].sa == 7
    ike = _fast_lookup(shapes, Flow(4, BASE, BASE + 1, 17, 500, 500))
    assert ike is not None and ike.action is FastAction.SLOW  # the IKE exemption, not the Block
    multicast = _fast_lookup(shapes, Flow(4, BASE, int(ipaddress.IPv4Address("224.0.0.5")), 89, 0, 0))
    assert multicast is not None and multicast.action is FastAction.SLOW
    other = _fast_lookup(shapes, Flow(4, BASE, BASE + 1, 6, 1000, 22))
    assert other is not None and other.action is FastAction.DROP
    assert [s.weight for s in shapes] == sorted((s.weight for s in shapes), reverse=True)


def test_ranges_that_are_not_a_few_blocks_only_get_a_slow_filter() -> None:
    r = AddressRange(4, BASE + 1, BASE + 1000)  # 1000 addresses from .1: many CIDR blocks? few
    assert ff.blocks(r) is not None
    many = AddressRange(6, 1, (1 << 100) - 3)  # an IPv6 range needing > MAX_BLOCKS blocks
    assert ff.blocks(many) is None
    cover = ff.covering(many)
    assert int(cover.network_address) <= many.first and int(cover.broadcast_address) >= many.last
    assert ff.covering(AddressRange(4, BASE, BASE + 255)) == ipaddress.ip_network("10.0.0.0/24")
