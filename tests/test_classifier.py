"""The compiled classifier agrees with a brute-force scan of the specific filters in weight order."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from order_helpers import ip, store_of

from ipsecd.policy.classifier import Classifier, Match, compile_store
from ipsecd.policy.exemptions import default_exemptions
from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import Action, AddressSpec, AddrKind, Filter
from ipsecd.policy.order import AddressRange, Direction, SpecificFilter

BASE = {4: int(ipaddress.IPv4Address("10.0.0.0")), 6: int(ipaddress.IPv6Address("2001:db8::"))}
BITS = {4: 32, 6: 128}
SPAN = 64  # addresses of interest per version: BASE .. BASE + 63


def addr(version: int, offset: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if version == 4:
        return ipaddress.IPv4Address(BASE[4] + offset)
    return ipaddress.IPv6Address(BASE[6] + offset)


HOST = StaticHost(
    addresses=[addr(4, 1), addr(6, 1), addr(4, 2)],
    names={"a.example": [addr(4, 40), addr(6, 40)], "b.example": [addr(6, 50)]},
    dns=[addr(4, 53)],
    wins=[addr(6, 54)],
    dhcp=[addr(4, 60), addr(6, 60)],
    gateway=[addr(4, 63)],
)

PROTOCOLS = [0, 1, 6, 17, 46, 58]
KINDS = [
    AddrKind.NETWORK,
    AddrKind.NETWORK,
    AddrKind.RANGE,
    AddrKind.ME,
    AddrKind.ANY,
    AddrKind.DNSNAME,
    AddrKind.DNS,
    AddrKind.WINS,
    AddrKind.DHCP,
    AddrKind.GATEWAY,
]
PORTS = [0, 80, 88, 443, 500]


@st.composite
def address_specs(draw: st.DrawFn, version: int) -> AddressSpec:
    kind = draw(st.sampled_from(KINDS))
    bits = BITS[version]
    if kind is AddrKind.NETWORK:
        plen = draw(st.sampled_from([0, bits - 6, bits - 4, bits - 3, bits - 1, bits]))
        size = 1 << (bits - plen)
        start = (BASE[version] + draw(st.integers(0, SPAN - 1))) & ~(size - 1)
        net = (
            ipaddress.ip_network((start, plen))
            if plen
            else ipaddress.ip_network((0, 0) if version == 4 else "::/0")
        )
        return AddressSpec(kind, network=net)
    if kind is AddrKind.RANGE:
        a, b = sorted(draw(st.lists(st.integers(0, SPAN - 1), min_size=2, max_size=2)))
        return AddressSpec(kind, first=addr(version, a), last=addr(version, b))
    if kind is AddrKind.DNSNAME:
        # b.example has only an IPv6 address: paired with an IPv4 network it would (rightly) be
        # an ExpansionError, tested in test_order.py.
        names = ["a.example", "b.example"] if version == 6 else ["a.example"]
        return AddressSpec(kind, name=draw(st.sampled_from(names)))
    return AddressSpec(kind)


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    version = draw(st.sampled_from([4, 6]))
    protocol = draw(st.sampled_from(PROTOCOLS))
    ported = protocol in (6, 17)
    return Filter(
        draw(address_specs(version)),
        draw(address_specs(version)),
        protocol,
        draw(st.sampled_from(PORTS)) if ported else 0,
        draw(st.sampled_from(PORTS)) if ported else 0,
        mirrored=draw(st.booleans()),
    )


rules = st.lists(
    st.tuples(
        st.lists(filters(), min_size=1, max_size=6),
        st.sampled_from(list(Action)),
        # transport mode, a tunnel ending at this host, a tunnel to a peer
        st.sampled_from([None, addr(4, 1), ipaddress.IPv4Address("198.51.100.2")]),
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def packets(draw: st.DrawFn) -> tuple[Direction, int, int, int, int, int, int]:
    version = draw(st.sampled_from([4, 6]))
    top = (1 << BITS[version]) - 1

    def address() -> int:
        return draw(
            st.one_of(
                st.integers(0, SPAN - 1).map(lambda o: BASE[version] + o),
                st.integers(0, top),
                st.sampled_from(
                    [0, top, int(ipaddress.ip_address("224.0.0.1" if version == 4 else "ff02::1"))]
                ),
            )
        )

    return (
        draw(st.sampled_from(list(Direction))),
        version,
        address(),
        address(),
        draw(st.sampled_from([*PROTOCOLS, 47, 50])),
        draw(st.sampled_from([*PORTS, 4500, 1234])),
        draw(st.sampled_from([*PORTS, 4500, 1234])),
    )


RANK = {Action.BLOCK: 0, Action.NEGOTIATE: 1, Action.PERMIT: 2}


def reference_exempt(level: int, version: int, dst: int, proto: int, sport: int, dport: int) -> str | None:
    """Independent statement of docs/policy.md's exemption table."""
    if proto == 17 and {sport, dport} & {500, 4500}:
        return "ike"
    if level in (0, 2) and proto in (6, 17) and 88 in (sport, dport):
        return "kerberos"
    if level in (0, 2) and proto == 46:
        return "rsvp"
    dst_ip = ipaddress.IPv4Address(dst) if version == 4 else ipaddress.IPv6Address(dst)
    if level in (0, 1) and dst_ip.is_multicast:
        return "multicast"
    if level in (0, 1) and dst_ip == ipaddress.IPv4Address("255.255.255.255"):
        return "broadcast"
    return None


def brute_force(
    level: int, specific: Sequence[SpecificFilter], pkt: tuple[Direction, int, int, int, int, int, int]
) -> Match | None:
    direction, version, src, dst, proto, sport, dport = pkt
    reason = reference_exempt(level, version, dst, proto, sport, dport)
    if reason is not None:
        return Match(Action.PERMIT, None, reason)
    for f in sorted(specific, key=lambda f: (-f.weight, RANK[f.action], f.index)):
        if (
            f.direction is direction
            and f.src.version == version
            and f.src.first <= src <= f.src.last
            and f.dst.first <= dst <= f.dst.last
            and f.protocol in (0, proto)
            and f.srcport in (0, sport)
            and f.dstport in (0, dport)
        ):
            return Match(f.action, f)
    return None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=rules,
    level=st.integers(0, 3),
    pkts=st.lists(packets(), min_size=1, max_size=30),
    data=st.data(),
)
def test_classifier_agrees_with_brute_force(
    spec: list[tuple[list[Filter], Action, ipaddress.IPv4Address | None]],
    level: int,
    pkts: list[tuple[Direction, int, int, int, int, int, int]],
    data: st.DataObject,
) -> None:
    tunnels = {f"r{i}": tunnel for i, (_, _, tunnel) in enumerate(spec) if tunnel is not None}
    store = store_of(
        [(f"r{i}", fl, action) for i, (fl, action, _) in enumerate(spec)], tunnel=tunnels, ipsecexempt=level
    )
    compiled = compile_store(store, HOST)
    specific = compiled.filters
    # Probe every filter's boundaries too: first, last and their neighbours.
    if specific:
        for _ in range(10):
            f = data.draw(st.sampled_from(specific))
            s = data.draw(st.sampled_from([f.src.first, f.src.last, f.src.first - 1, f.src.last + 1]))
            d = data.draw(st.sampled_from([f.dst.first, f.dst.last, f.dst.first - 1, f.dst.last + 1]))
            top = (1 << BITS[f.version]) - 1
            pkts.append(
                (
                    f.direction,
                    f.version,
                    min(max(s, 0), top),
                    min(max(d, 0), top),
                    f.protocol or data.draw(st.sampled_from(PROTOCOLS)),
                    f.srcport or data.draw(st.sampled_from(PORTS)),
                    f.dstport or data.draw(st.sampled_from(PORTS)),
                )
            )
    for pkt in pkts:
        assert compiled.classifier.lookup_int(*pkt) == brute_force(level, specific, pkt), pkt


def test_lookup_with_address_objects_and_ports_only_for_their_protocol() -> None:
    from order_helpers import ME, net

    store = store_of(
        [
            ("web", [Filter(ME, net("192.0.2.0/24"), 6, 0, 443)], Action.NEGOTIATE),
            ("rest", [Filter(ME, net("192.0.2.0/24"))], Action.BLOCK),
        ]
    )
    c = compile_store(store, StaticHost(addresses=[ip("10.0.0.1")])).classifier
    m = c.lookup(Direction.OUTBOUND, ip("10.0.0.1"), ip("192.0.2.7"), 6, 40000, 443)
    assert m is not None and m.action is Action.NEGOTIATE and m.filter is not None and m.filter.rule == "web"
    m = c.lookup(Direction.INBOUND, ip("192.0.2.7"), ip("10.0.0.1"), 6, 443, 40000)
    assert m is not None and m.filter is not None and m.filter.rule == "web" and m.filter.mirror
    # UDP to port 443 is not the web filter's business.
    m = c.lookup(Direction.OUTBOUND, ip("10.0.0.1"), ip("192.0.2.7"), 17, 40000, 443)
    assert m is not None and m.action is Action.BLOCK
    assert c.lookup(Direction.OUTBOUND, ip("10.0.0.1"), ip("198.51.100.1"), 6, 1, 443) is None
    assert c.lookup(Direction.OUTBOUND, ip("::1"), ip("::2"), 6, 1, 443) is None
    assert len(c) == 4


def _random_filter(rnd: random.Random, i: int) -> SpecificFilter:
    version = rnd.choice([4, 6])
    bits = BITS[version]

    def side() -> AddressRange:
        plen = rnd.choice([0, 8, 16, 24, bits - 8, bits - 2, bits])
        size = 1 << (bits - plen)
        start = (BASE[version] + rnd.randrange(1 << 20)) & ~(size - 1)
        return AddressRange(version, start, start + size - 1)

    protocol = rnd.choice(PROTOCOLS)
    ported = protocol in (6, 17)
    sport = rnd.choice(PORTS) if ported else 0
    dport = rnd.choice(PORTS) if ported else 0
    src, dst = side(), side()
    return SpecificFilter(
        direction=rnd.choice(list(Direction)),
        src=src,
        dst=dst,
        protocol=protocol,
        srcport=sport,
        dstport=dport,
        action=rnd.choice(list(Action)),
        rule=f"r{i}",
        filterlist="l",
        filteraction="a",
        weight=100 * (src.prefix_equivalent + dst.prefix_equivalent) + 10 * (protocol != 0),
        index=i,
        generic=Filter(AddressSpec(AddrKind.ANY), AddressSpec(AddrKind.ANY)),
    )


def test_large_random_policy_agrees_with_brute_force() -> None:
    rnd = random.Random(20261127)
    specific = [_random_filter(rnd, i) for i in range(1500)]
    c = Classifier(specific, default_exemptions(3))
    for _ in range(600):
        f = rnd.choice(specific)
        version = rnd.choice([4, 6, f.version])
        near = version == f.version and rnd.random() < 0.8
        src = rnd.randint(f.src.first, f.src.last) if near else BASE[version] + rnd.randrange(1 << 20)
        dst = rnd.randint(f.dst.first, f.dst.last) if near else BASE[version] + rnd.randrange(1 << 20)
        pkt = (f.direction, version, src, dst, rnd.choice(PROTOCOLS), rnd.choice(PORTS), rnd.choice(PORTS))
        assert c.lookup_int(*pkt) == brute_force(3, specific, pkt), pkt


@settings(max_examples=200, deadline=None)
@given(
    spans=st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**20)).map(
            lambda t: (t[0], min(t[0] + t[1], 2**32 - 1))
        ),
        max_size=40,
    ),
    probes=st.lists(st.integers(0, 2**32 - 1), max_size=20),
)
def test_interval_bits_agree_with_a_scan(spans: list[tuple[int, int]], probes: list[int]) -> None:
    from ipsecd.policy.classifier import _IntervalBits

    top = 2**32 - 1
    table = _IntervalBits(spans, top)
    edges = [v for first, last in spans for v in (first - 1, first, last, last + 1) if 0 <= v <= top]
    for value in [*probes, *edges, 0, top]:
        expect = sum(1 << i for i, (first, last) in enumerate(spans) if first <= value <= last)
        assert table.bits(value) == expect, value
