"""Which negotiated SA pairs a reload ends: the rule found from the traffic selectors, and its
content (rule, filter list, filter action) compared between the old and the new store."""

from __future__ import annotations

import ipaddress

from ipsecd.daemon.ike_reload import RuleRef, rule_changed, rule_for
from ipsecd.policy.classifier import compile_store
from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import Store
from ipsecd.policy.store import parse_store_texts
from tests.test_daemon_ike_reload import _store

ME, PEER = "192.0.2.1", "192.0.2.2"
GCM = '"ESP[AESGCM128]"'


def _load(text: str) -> Store:
    return parse_store_texts([("ipsecd.toml", text)])


def test_rule_of_a_pair_from_its_selectors() -> None:
    store = _load(_store(PEER, GCM, 1))
    compiled = compile_store(store, StaticHost(addresses=[ipaddress.ip_address(ME)]))
    assert rule_for(compiled, ME, PEER, 1, 0, 0) == RuleRef("p", "ping", "sec-icmp")
    assert rule_for(compiled, ME, PEER, 6, 0, 7000) == RuleRef("p", "tcp", "sec-tcp")
    assert rule_for(compiled, ME, PEER, 6, 7000, 40000) == RuleRef("p", "tcp", "sec-tcp")  # we serve
    assert rule_for(compiled, ME, PEER, 17, 0, 53) is None  # no rule negotiates it
    assert rule_for(compiled, ME, "198.51.100.9", 1, 0, 0) is None
    assert rule_for(None, ME, PEER, 1, 0, 0) is None


def test_changed_vanished_and_unchanged_rules() -> None:
    old = _load(_store(PEER, GCM, 1))
    ping, tcp = RuleRef("p", "ping", "sec-icmp"), RuleRef("p", "tcp", "sec-tcp")
    same = _load(_store(PEER, GCM, 1) + "\n# a comment: same content\n")
    assert not rule_changed(old, same, ping) and not rule_changed(old, same, tcp)
    methods = _load(_store(PEER, f'{GCM}, "ESP[AES128,SHA1]"', 1))  # the TCP filter action changed
    assert rule_changed(old, methods, tcp) and not rule_changed(old, methods, ping)
    v2 = _load(_store(PEER, GCM, 2))  # both rules changed (ikeversion)
    assert rule_changed(old, v2, ping) and rule_changed(old, v2, tcp)
    other_peer = _load(_store("192.0.2.9", GCM, 1))  # the filter lists changed
    assert rule_changed(old, other_peer, ping)
    unassigned = _load(_store(PEER, GCM, 1).replace('assigned_policy = "p"\n', ""))
    assert rule_changed(old, unassigned, ping)  # the policy is no longer assigned: gone
    assert rule_changed(old, old, RuleRef("p", "ping", "sec-tcp"))  # another action: not the same rule
