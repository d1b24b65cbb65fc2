"""End to end: a TOML store (parsed by ipsecd.policy.store) expanded and classified."""

from __future__ import annotations

import pytest
from order_helpers import ip

from ipsecd.policy.classifier import compile_store
from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import Action
from ipsecd.policy.order import Direction, ExpansionError
from ipsecd.policy.store import ConfigIssue, parse_store_texts

STORE = """\
[daemon]
assigned_policy = "Site"
ipsecexempt = 3

[[filterlist]]
name = "Web"

  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "192.0.2.0/24"
  protocol = "tcp"
  dstport = 443

[[filterlist]]
name = "Backup"

  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "backup.example"

[[filteraction]]
name = "Require"
action = "negotiate"
qmsecmethods = ["ESP[AES128,SHA256]"]

[[filteraction]]
name = "Drop"
action = "block"

[[policy]]
name = "Site"

  [[policy.rule]]
  name = "web"
  filterlist = "Web"
  filteraction = "Require"
  auth = [{ method = "psk", psk = "not-a-real-secret" }]

  [[policy.rule]]
  name = "backup"
  filterlist = "Backup"
  filteraction = "Drop"
"""

HOST = StaticHost(addresses=[ip("10.0.0.1")], names={"backup.example": [ip("192.0.2.99")]})


def test_toml_store_compiles_and_classifies() -> None:
    store = parse_store_texts([("policies.toml", STORE)])
    compiled = compile_store(store, HOST)
    assert compiled.policy == "Site"
    assert [(f.rule, f.direction, f.weight) for f in compiled.filters] == [
        ("backup", Direction.OUTBOUND, 6400),
        ("backup", Direction.INBOUND, 6400),
        ("web", Direction.OUTBOUND, 5611),
        ("web", Direction.INBOUND, 5611),
    ]
    c = compiled.classifier
    m = c.lookup(Direction.OUTBOUND, ip("10.0.0.1"), ip("192.0.2.99"), 6, 40000, 443)
    assert m is not None and m.action is Action.BLOCK  # the host route outweighs protocol and port
    m = c.lookup(Direction.INBOUND, ip("192.0.2.7"), ip("10.0.0.1"), 6, 443, 40000)
    assert m is not None and m.action is Action.NEGOTIATE and m.filter is not None
    assert m.filter.filteraction == "Require"


def test_unresolvable_name_names_the_toml_line() -> None:
    store = parse_store_texts([("policies.toml", STORE)])
    with pytest.raises(ExpansionError) as info:
        compile_store(store, StaticHost(addresses=[ip("10.0.0.1")]))
    (issue,) = info.value.issues
    assert isinstance(issue, ConfigIssue)
    assert issue.file == "policies.toml"
    # The origin of a filter is its table: the second [[filterlist.filter]] of STORE.
    assert issue.line == 17 and STORE.splitlines()[16].strip() == "[[filterlist.filter]]"
    assert issue.field == "filterlist[1].filter[0].dstaddr"
    assert "backup.example" in issue.message
    assert "not-a-real-secret" not in str(info.value)


def test_builtin_secure_server_permits_icmp_and_negotiates_the_rest() -> None:
    from ipsecd.policy.builtin import (
        BUILTIN_FILTERACTIONS,
        BUILTIN_FILTERLISTS,
        BUILTIN_POLICIES,
        SECURE_SERVER,
    )
    from ipsecd.policy.model import DaemonSettings, Store

    store = Store(
        DaemonSettings(assigned_policy=SECURE_SERVER),
        dict(BUILTIN_FILTERLISTS),
        dict(BUILTIN_FILTERACTIONS),
        dict(BUILTIN_POLICIES),
    )
    host = StaticHost(addresses=[ip("10.0.0.1"), ip("2001:db8::1")])
    c = compile_store(store, host).classifier
    for direction, src, dst in (
        (Direction.OUTBOUND, "10.0.0.1", "198.51.100.7"),
        (Direction.INBOUND, "198.51.100.7", "10.0.0.1"),
    ):
        m = c.lookup(direction, ip(src), ip(dst), 1)
        assert m is not None and m.action is Action.PERMIT and m.filter is not None
        m = c.lookup(direction, ip(src), ip(dst), 6, 40000, 22)
        assert m is not None and m.action is Action.NEGOTIATE
        m = c.lookup(direction, ip(src), ip(dst), 17, 500, 500)
        assert m is not None and m.exempt == "ike"
    m = c.lookup(Direction.INBOUND, ip("fe80::2"), ip("2001:db8::1"), 58)
    assert m is not None and m.action is Action.PERMIT
    # Traffic not to or from this host (forwarded) is outside "me <-> any".
    assert c.lookup(Direction.OUTBOUND, ip("10.9.9.9"), ip("198.51.100.7"), 6, 1, 2) is None
