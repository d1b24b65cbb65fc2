"""Filter expansion, direction, weights and ordering (ipsecd.policy.order)."""

from __future__ import annotations

import ipaddress

import pytest
from order_helpers import ANY, ME, ip, name, net, rng, store_of

from ipsecd.policy.classifier import compile_store
from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import Action, AddressSpec, AddrKind, Filter, Origin
from ipsecd.policy.order import (
    AddressRange,
    Direction,
    ExpansionError,
    SpecificFilter,
    compute_weight,
    expand_policy,
)

HOST = StaticHost(
    addresses=[ip("10.0.0.1"), ip("2001:db8::1")],
    names={"server.example": [ip("192.0.2.10"), ip("2001:db8:2::10")]},
    dns=[ip("10.0.0.53")],
    wins=[ip("10.0.0.54")],
    dhcp=[ip("10.0.0.67")],
    gateway=[ip("10.0.0.254"), ip("fe80::1")],
)


def expand(*rules: tuple[str, list[Filter], Action], **kw: object) -> list[SpecificFilter]:
    store = store_of(rules, **kw)
    return expand_policy(store, store.policies["P"], HOST)


def brief(f: SpecificFilter) -> tuple[str, str, str, int, int]:
    return (f.direction.value, str(f.src), str(f.dst), f.srcport, f.dstport)


def test_me_becomes_each_host_address_of_the_matching_version() -> None:
    out = expand(("r", [Filter(ME, net("192.0.2.0/24"), mirrored=False)], Action.NEGOTIATE))
    assert [brief(f) for f in out] == [("out", "10.0.0.1", "192.0.2.0/24", 0, 0)]
    out = expand(("r", [Filter(ME, ANY, mirrored=False)], Action.NEGOTIATE))
    assert sorted(brief(f) for f in out) == [
        ("out", "10.0.0.1", "0.0.0.0/0", 0, 0),
        ("out", "2001:db8::1", "::/0", 0, 0),
    ]


def test_any_to_any_gives_both_versions() -> None:
    out = expand(("r", [Filter(ANY, ANY, mirrored=False)], Action.PERMIT))
    assert sorted(brief(f) for f in out) == [
        ("out", "0.0.0.0/0", "0.0.0.0/0", 0, 0),
        ("out", "::/0", "::/0", 0, 0),
    ]


@pytest.mark.parametrize(
    ("kind", "addresses"),
    [
        (AddrKind.DNS, ["10.0.0.53"]),
        (AddrKind.WINS, ["10.0.0.54"]),
        (AddrKind.DHCP, ["10.0.0.67"]),
        (AddrKind.GATEWAY, ["10.0.0.254", "fe80::1"]),
    ],
)
def test_dynamic_keywords_take_host_addresses(kind: AddrKind, addresses: list[str]) -> None:
    out = expand(("r", [Filter(ME, AddressSpec(kind), mirrored=False)], Action.PERMIT))
    assert sorted(str(f.dst) for f in out) == sorted(addresses)
    # Each destination is paired with the host address of its own version.
    assert all(f.src.version == f.dst.version for f in out)


def test_dns_name_becomes_its_addresses() -> None:
    out = expand(("r", [Filter(ME, name("server.example"), 6, 0, 22, mirrored=False)], Action.NEGOTIATE))
    assert sorted(brief(f) for f in out) == [
        ("out", "10.0.0.1", "192.0.2.10", 0, 22),
        ("out", "2001:db8::1", "2001:db8:2::10", 0, 22),
    ]


def test_unresolvable_name_is_an_error_naming_the_origin() -> None:
    bad = Filter(ME, name("nowhere.example"), origin=Origin("policies.toml", 14, "filterlist[0].filter[2]"))
    bad2 = Filter(name("gone.example"), ME, origin=Origin("more.toml", 3, "filterlist[1].filter[0]"))
    with pytest.raises(ExpansionError) as info:
        expand(("r", [bad, bad2], Action.NEGOTIATE))
    issues = info.value.issues
    assert [(i.file, i.line, i.field) for i in issues] == [
        ("policies.toml", 14, "filterlist[0].filter[2].dstaddr"),
        ("more.toml", 3, "filterlist[1].filter[0].srcaddr"),
    ]
    assert "nowhere.example" in issues[0].message
    assert str(issues[0]).startswith("policies.toml:14: filterlist[0].filter[2].dstaddr: ")
    assert "gone.example" in str(info.value)


def test_explicit_version_mismatch_is_an_error() -> None:
    bad = Filter(net("10.0.0.0/8"), net("2001:db8::/32"), origin=Origin("p.toml", 7, "f"))
    with pytest.raises(ExpansionError, match="no IP version in common"):
        expand(("r", [bad], Action.BLOCK))


def test_mirrored_adds_the_reverse_filter() -> None:
    f = Filter(ME, net("192.0.2.0/24"), 6, 1234, 443, mirrored=True)
    out = expand(("r", [f], Action.NEGOTIATE))
    assert [brief(x) for x in out] == [
        ("out", "10.0.0.1", "192.0.2.0/24", 1234, 443),
        ("in", "192.0.2.0/24", "10.0.0.1", 443, 1234),
    ]
    assert [x.mirror for x in out] == [False, True]
    assert out[0].weight == out[1].weight
    assert all(x.generic is f for x in out)


def test_direction_from_me_and_neither_side_me() -> None:
    out = expand(("r", [Filter(net("192.0.2.0/24"), ME, mirrored=False)], Action.BLOCK))
    assert [brief(x) for x in out] == [("in", "192.0.2.0/24", "10.0.0.1", 0, 0)]
    out = expand(("r", [Filter(net("10.1.0.0/16"), net("10.2.0.0/16"), mirrored=True)], Action.NEGOTIATE))
    assert [brief(x) for x in out] == [
        ("out", "10.1.0.0/16", "10.2.0.0/16", 0, 0),
        ("in", "10.2.0.0/16", "10.1.0.0/16", 0, 0),
    ]


def test_tunnel_direction_follows_the_endpoint() -> None:
    # Gateway A (10.0.0.1) between 10.1/16 and 10.2/16: the outgoing rule's endpoint is the peer,
    # the incoming rule's endpoint is this host.
    out = expand(
        ("to-peer", [Filter(net("10.1.0.0/16"), net("10.2.0.0/16"), mirrored=False)], Action.NEGOTIATE),
        ("from-peer", [Filter(net("10.2.0.0/16"), net("10.1.0.0/16"), mirrored=False)], Action.NEGOTIATE),
        tunnel={"to-peer": ip("198.51.100.2"), "from-peer": ip("10.0.0.1")},
    )
    got = {x.rule: (x.direction, x.tunnel) for x in out}
    assert got == {
        "to-peer": (Direction.OUTBOUND, ip("198.51.100.2")),
        "from-peer": (Direction.INBOUND, ip("10.0.0.1")),
    }


def test_inactive_rules_contribute_nothing() -> None:
    out = expand(
        ("on", [Filter(ME, ANY)], Action.NEGOTIATE),
        ("off", [Filter(ME, net("192.0.2.0/24"))], Action.BLOCK),
        inactive=["off"],
    )
    assert {x.rule for x in out} == {"on"}


def test_compile_store_uses_only_the_assigned_policy() -> None:
    store = store_of([("r", [Filter(ME, ANY)], Action.BLOCK)], assigned=False)
    compiled = compile_store(store, HOST)
    assert compiled.policy is None and compiled.filters == ()
    store = store_of([("r", [Filter(ME, ANY)], Action.BLOCK)])
    compiled = compile_store(store, HOST)
    assert compiled.policy == "P" and len(compiled.filters) == 4


def test_range_prefix_equivalent() -> None:
    assert AddressRange.of_network(ipaddress.ip_network("192.0.2.0/24")).prefix_equivalent == 24
    assert AddressRange(4, 5, 5).prefix_equivalent == 32
    assert AddressRange(4, 1, 100).prefix_equivalent == 25  # 100 addresses fit a /25
    assert AddressRange(4, 0, 256).prefix_equivalent == 23  # 257 addresses need a /23
    assert AddressRange.any(6).prefix_equivalent == 0
    assert str(AddressRange(4, 1, 100)) == "0.0.0.1-0.0.0.100"
    assert str(AddressRange(6, 0, 2**128 - 1)) == "::/0"


def test_weight_formula_worked_examples() -> None:
    # The examples of docs/policy.md, section "Weights".
    me = AddressRange(4, int(ip("10.0.0.1")), int(ip("10.0.0.1")))
    web = AddressRange.of_network(ipaddress.ip_network("192.0.2.0/24"))
    anyv4 = AddressRange.any(4)
    r = AddressRange(4, int(ip("192.0.2.1")), int(ip("192.0.2.100")))
    assert compute_weight(me, web, 6, 0, 443) == 5611
    assert compute_weight(me, web, 0, 0, 0) == 5600
    assert compute_weight(me, anyv4, 17, 53, 53) == 3212
    assert compute_weight(anyv4, anyv4, 0, 0, 0) == 0
    assert compute_weight(me, r, 0, 0, 0) == 5700
    me6 = AddressRange.of_address(ip("2001:db8::1"))
    assert (
        compute_weight(me6, AddressRange.of_network(ipaddress.ip_network("2001:db8:1::/48")), 6, 0, 22)
        == 17611
    )


def test_order_most_specific_first_then_action_then_declaration() -> None:
    out = expand(
        ("permit-all", [Filter(ME, ANY, mirrored=False)], Action.PERMIT),
        ("web", [Filter(ME, net("192.0.2.0/24"), 6, 0, 443, mirrored=False)], Action.NEGOTIATE),
        ("subnet-permit", [Filter(ME, net("192.0.2.0/24"), mirrored=False)], Action.PERMIT),
        ("subnet-block", [Filter(ME, net("192.0.2.0/24"), mirrored=False)], Action.BLOCK),
        ("subnet-permit-2", [Filter(ME, net("192.0.2.0/24"), mirrored=False)], Action.PERMIT),
        ("host", [Filter(ME, rng("192.0.2.1", "192.0.2.1"), mirrored=False)], Action.PERMIT),
    )
    v4 = [x.rule for x in out if x.version == 4]
    assert v4 == ["host", "web", "subnet-block", "subnet-permit", "subnet-permit-2", "permit-all"]
    weights = [x.weight for x in out]
    assert weights == sorted(weights, reverse=True)
    # Weights compare within one IP version only: a packet never meets a filter of the other.
    assert [x.weight for x in out if x.rule == "permit-all"] == [12800, 3200]


def test_missing_filterlist_is_reported() -> None:
    store = store_of([("r", [Filter(ME, ANY)], Action.BLOCK)])
    del store.filterlists["r-list"]
    with pytest.raises(ExpansionError, match="no filter list 'r-list'"):
        expand_policy(store, store.policies["P"], HOST)


def test_host_without_addresses_gives_no_filters_for_me() -> None:
    store = store_of([("r", [Filter(ME, ANY)], Action.BLOCK)])
    assert expand_policy(store, store.policies["P"], StaticHost()) == []
