"""The rule key ``forceencap`` (an ipsecd extension, docs/store.md): UDP-encapsulated ESP between
two peers with no NAT between them, for IKEv1 (RFC 3947) and IKEv2 (RFC 7296 section 2.23).

Sans-I/O and no root: the sessions of both versions with and without forcing, then two of the
daemon's ``IkeManager`` wired back to back in memory from stores that differ only in ``forceencap``
(the SAs they install carry UDP ports or none); and the key's validation, CLI edit, show and dump.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import build_store, cli, ok

from ipsecd.cli.dynamic_render import rules_text
from ipsecd.daemon import ike as ike_mod
from ipsecd.daemon.ike import IkeManager
from ipsecd.daemon.ike_reload import RuleRef, rule_changed
from ipsecd.daemon.monitor import MonitorState
from ipsecd.daemon.monitor_views import rule_views
from ipsecd.daemon.router import Acquire, Router
from ipsecd.datapath.sadb import SADatabase
from ipsecd.ikev1 import events as v1
from ipsecd.ikev2 import events as v2
from ipsecd.policy.classifier import compile_store
from ipsecd.policy.dump import dump_lines
from ipsecd.policy.host import StaticHost
from ipsecd.policy.order import Direction
from ipsecd.policy.store import load_store, parse_store_texts
from tests.ikev1_session_util import pair as v1_pair
from tests.ikev1_session_util import policy_a
from tests.test_dump import replay
from tests.test_ikev2_session import pair as v2_pair

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"
A, B = "192.0.2.1", "192.0.2.2"
NET_A, NET_B = "10.1.0.0/24", "10.2.0.0/24"
PSK = "forceencap-unit-psk"


# --- the sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("force", [True, False], ids=["forced", "plain"])
def test_ikev2_sessions_encapsulate_only_when_forced(force: bool) -> None:
    p = v2_pair(a_force_encap=force)
    ports: set[tuple[str, int, int]] = set()
    for _ in range(30):  # bounded; the session pair's own run() does not model source ports
        moved = False
        for who, x, y, ip in (("a", p.a, p.b, A), ("b", p.b, p.a, B)):
            for d, addr in x.datagrams_to_send(p.now):
                moved = True
                sport = 4500 if d[:4] == bytes(4) else 500  # RFC 3948 section 2.2: non-ESP marker
                ports.add((who, sport, addr[1]))
                y.receive_datagram(d, (ip, sport), p.now)
        for who, s in (("a", p.a), ("b", p.b)):
            while (e := s.next_event()) is not None:
                p.ev[who].append(e)
        if not moved:
            break
    want = {("a", 500, 500), ("b", 500, 500)} | ({("a", 4500, 4500), ("b", 4500, 4500)} if force else set())
    assert ports == want  # RFC 7296 section 2.23: IKE_AUTH on from port 4500 when a NAT is seen
    assert p.a.established and p.b.established
    ia, ib = p.of("a", v2.IkeSaEstablished)[0], p.of("b", v2.IkeSaEstablished)[0]
    assert isinstance(ia, v2.IkeSaEstablished) and isinstance(ib, v2.IkeSaEstablished)
    assert ia.natt is force and ib.natt is force
    for who in ("a", "b"):
        [c] = p.of(who, v2.ChildSaEstablished)
        assert isinstance(c, v2.ChildSaEstablished)
        for sa in (c.inbound, c.outbound):
            if force:
                assert sa.encap is not None and (sa.encap.sport, sa.encap.dport) == (4500, 4500), sa.encap
            else:
                assert sa.encap is None
    # The forcing side fakes only its own NAT_DETECTION_SOURCE_IP: b sees a "behind a NAT".
    assert p.b.peer_behind_nat is force and not p.b.behind_nat
    assert p.a.nat_detected is force


@pytest.mark.parametrize("force", [True, False], ids=["forced", "plain"])
def test_ikev1_sessions_encapsulate_only_when_forced(force: bool) -> None:
    w = v1_pair(a_force_nat=force)
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    ia, ib = w.of("a", v1.IkeSaEstablished)[0], w.of("b", v1.IkeSaEstablished)[0]
    assert isinstance(ia, v1.IkeSaEstablished) and isinstance(ib, v1.IkeSaEstablished)
    assert (ia.nat_local, ib.nat_peer) == (force, force) and not ia.nat_peer and not ib.nat_local
    for who in ("a", "b"):
        [c] = w.of(who, v1.ChildSaEstablished)
        assert isinstance(c, v1.ChildSaEstablished)
        for sa in (c.inbound, c.outbound):
            if force:  # RFC 3947 section 5.1: UDP-Encapsulated-Tunnel, ports 4500
                assert sa.encap is not None and (sa.encap.sport, sa.encap.dport) == (4500, 4500), sa.encap
            else:
                assert sa.encap is None
    ports = {lport for _, _, lport in w.log}
    assert ports == ({500, 4500} if force else {500})


# --- two daemons' IKE managers, back to back ------------------------------------------------------


def tunnel_store(me: str, peer: str, mine: str, theirs: str, ikeversion: int, force: bool) -> str:
    """One host's store: a tunnel rule per direction (docs/policy.md), PSK, AES-128-GCM."""
    enc = "forceencap = true\n" if force else ""
    return f"""[daemon]
assigned_policy = "p"
[[filterlist]]
name = "out"
  [[filterlist.filter]]
  srcaddr = "{mine}"
  dstaddr = "{theirs}"
  mirrored = false
[[filterlist]]
name = "in"
  [[filterlist.filter]]
  srcaddr = "{theirs}"
  dstaddr = "{mine}"
  mirrored = false
[[filteraction]]
name = "gcm"
action = "negotiate"
qmsecmethods = ["ESP[AESGCM128]"]
[[policy]]
name = "p"
mmsecmethods = ["AES128-SHA256-14"]
activatedefaultrule = false
  [[policy.rule]]
  name = "out"
  filterlist = "out"
  filteraction = "gcm"
  tunnel = "{peer}"
  ikeversion = {ikeversion}
  {enc}  auth = [{{ method = "psk", psk = "{PSK}" }}]
  [[policy.rule]]
  name = "in"
  filterlist = "in"
  filteraction = "gcm"
  tunnel = "{me}"
  ikeversion = {ikeversion}
  {enc}  auth = [{{ method = "psk", psk = "{PSK}" }}]
"""


class _Sock:
    """The port-500 socket of a manager: what it sends goes to the wire list."""

    def __init__(self, wire: list[tuple[str, bytes, tuple[str, int], int]], me: str) -> None:
        self.wire, self.me = wire, me

    def send(self, data: bytes, addr: tuple[str, int], source: str | None) -> None:
        self.wire.append((self.me, data, addr, 500))


class _Host:
    def __init__(self, text: str, me: str, wire: list[tuple[str, bytes, tuple[str, int], int]]) -> None:
        self.me = me
        self.store = parse_store_texts([("ipsecd.toml", text)])
        self.compiled = compile_store(self.store, StaticHost(addresses=(ipaddress.ip_address(me),)))
        self.sadb = SADatabase(lambda: [ipaddress.ip_address(me)], backend="python")
        self.mgr = IkeManager(
            self.sadb,
            Router(self.compiled.classifier, self.sadb),
            MonitorState(lambda: 0.0),
            clock=lambda: 100.0,
            send_natt=lambda data, addr, src: wire.append((me, data, addr, 4500)),
            flush=lambda: None,
            log=lambda msg: None,
        )
        self.mgr.sock = _Sock(wire, me)  # type: ignore[assignment]
        self.mgr.set_policy(self.store, self.compiled)


def _run_pair(
    monkeypatch: pytest.MonkeyPatch, ikeversion: int, force_a: bool, force_b: bool
) -> tuple[_Host, _Host, list[tuple[str, bytes, tuple[str, int], int]]]:
    wire: list[tuple[str, bytes, tuple[str, int], int]] = []
    a = _Host(tunnel_store(A, B, NET_A, NET_B, ikeversion, force_a), A, wire)
    b = _Host(tunnel_store(B, A, NET_B, NET_A, ikeversion, force_b), B, wire)
    hosts = {A: a, B: b}
    monkeypatch.setattr(ike_mod, "_local_for", lambda peer: B if peer == A else A)
    sf = next(f for f in a.compiled.filters if f.rule == "out" and f.direction is Direction.OUTBOUND)
    src, dst = ipaddress.ip_address("10.1.0.5"), ipaddress.ip_address("10.2.0.7")
    a.mgr.acquire(Acquire(src, dst, 1, 0, 0, sf.tunnel, sf, None, False, 100.0))
    log: list[tuple[str, int, int]] = []  # (sender, source port, destination port)
    for _ in range(200):  # bounded: a handshake is a handful of datagrams
        if not wire:
            break
        sender, data, addr, sport = wire.pop(0)
        log.append((sender, sport, addr[1]))
        dst_host = hosts[addr[0]]
        dst_host.mgr.receive([(data, (sender, sport), addr[0])], addr[1])
    assert not wire, "the handshake did not settle"
    return a, b, log


@pytest.mark.parametrize("ikeversion", [1, 2], ids=["ikev1", "ikev2"])
@pytest.mark.parametrize(
    ("force_a", "force_b"),
    [(True, False), (False, True), (True, True), (False, False)],
    ids=["initiator-forces", "responder-forces", "both-force", "none"],
)
def test_rule_forceencap_gives_udp_encapsulated_sas(
    monkeypatch: pytest.MonkeyPatch, ikeversion: int, force_a: bool, force_b: bool
) -> None:
    """Either side's rule forcing is enough (the responder picks its rule by the peer's address
    before it answers the first message); without it, plain ESP SAs and IKE stays on port 500."""
    a, b, log = _run_pair(monkeypatch, ikeversion, force_a, force_b)
    force = force_a or force_b
    for h in (a, b):
        states = [s.state for s in h.sadb.states.values()]
        assert len(states) == 2, (h.me, states)
        for st in states:
            p = st.params
            assert p.mode.name == "TUNNEL" and p.enc_alg.name == "ENCR_AES_GCM_16"
            if force:
                assert p.encap is not None and (p.encap.sport, p.encap.dport) == (4500, 4500), p.encap
            else:
                assert p.encap is None
        [qm] = h.mgr.monitor.qmsa_views()
        assert qm["udp_encap"] is force and qm["mode"] == "tunnel", qm
    ports = {(sp, dp) for _, sp, dp in log}
    assert ((4500, 4500) in ports) is force
    assert {500, 4500} >= {p for pair_ in ports for p in pair_}


# --- the store key --------------------------------------------------------------------------------


def test_default_false_and_validated() -> None:
    text = tunnel_store(A, B, NET_A, NET_B, 2, False)
    rules = parse_store_texts([("ipsecd.toml", text)]).policies["p"].rules
    assert [r.forceencap for r in rules] == [False, False]
    rules = (
        parse_store_texts([("ipsecd.toml", tunnel_store(A, B, NET_A, NET_B, 2, True))]).policies["p"].rules
    )
    assert [r.forceencap for r in rules] == [True, True]
    # A reload that only flips the key changes the rule: its negotiated SAs are deleted.
    off = parse_store_texts([("ipsecd.toml", tunnel_store(A, B, NET_A, NET_B, 2, False))])
    on = parse_store_texts([("ipsecd.toml", tunnel_store(A, B, NET_A, NET_B, 2, True))])
    ref = RuleRef("p", "out", "gcm")
    assert rule_changed(off, on, ref) and not rule_changed(on, on, ref)


def test_cli_set_show_json_and_dump_round_trip(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store)
    before = ok(store, "show rule name=web policy=Site")
    line = next(x for x in before.splitlines() if "forceencap" in x)
    assert line.split(":", 1)[1].strip() == "no", before
    ok(store, "set rule name=web policy=Site forceencap=yes")
    text = ok(store, "show rule name=web policy=Site")
    line = next(x for x in text.splitlines() if "forceencap" in x)
    assert line.split(":", 1)[1].strip() == "yes", text
    data = json.loads(ok(store, "show rule name=web policy=Site", json=True))
    [rule] = data["rules"]
    assert rule["forceencap"] is True
    assert next(r for r in load_store(store).policies["Site"].rules if r.name == "web").forceencap
    # A bad value is a usage error, and nothing changed.
    bad = cli(store, "set rule name=web policy=Site forceencap=maybe")
    assert bad.rc == 2 and "forceencap" in bad.err
    # The dump names the key only where it is set, and replays to the same store.
    lines = [x for x in dump_lines(load_store(store)) if "forceencap" in x]
    assert len(lines) == 1 and "forceencap=yes" in lines[0] and "name=web" in lines[0], lines
    ok(store, "set rule name=web policy=Site forceencap=no")
    assert not next(r for r in load_store(store).policies["Site"].rules if r.name == "web").forceencap
    assert not any("forceencap" in x for x in dump_lines(load_store(store)))


def test_dump_replays_forceencap(tmp_path: Path) -> None:
    """``ipsecctl dump`` output, replayed into an empty store, gives the same store."""
    src = tmp_path / "a.toml"
    src.write_text(tunnel_store(A, B, NET_A, NET_B, 1, True))
    src.chmod(0o600)
    original = load_store(src)
    again = replay(original, tmp_path / "new")
    assert again == original
    assert all(r.forceencap for r in again.policies["p"].rules)


# --- the example stores ---------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["a", "b"])
def test_example_stores_load(side: str) -> None:
    path = EXAMPLES / f"forceencap-tunnel-{side}.toml"
    data: dict[str, Any] = tomllib.loads(path.read_text())
    store = parse_store_texts([(path.name, path.read_text())])
    policy = store.assigned
    assert policy is not None and data["daemon"]["assigned_policy"] == policy.name
    assert policy.rules and all(r.forceencap and r.ikeversion == 2 and r.tunnel for r in policy.rules)
    fa = {store.filteractions[r.filteraction] for r in policy.rules}
    assert [str(m) for f in fa for m in f.qmsecmethods] == ["ESP[AESGCM128]:100000k/3600s"]


def test_example_stores_negotiate_with_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two example stores, loaded into two managers, give UDP-encapsulated GCM tunnel SAs."""
    wire: list[tuple[str, bytes, tuple[str, int], int]] = []
    a = _Host((EXAMPLES / "forceencap-tunnel-a.toml").read_text(), A, wire)
    b = _Host((EXAMPLES / "forceencap-tunnel-b.toml").read_text(), B, wire)
    hosts = {A: a, B: b}
    monkeypatch.setattr(ike_mod, "_local_for", lambda peer: B if peer == A else A)
    sf = next(f for f in a.compiled.filters if f.tunnel is not None and f.direction is Direction.OUTBOUND)
    a.mgr.acquire(
        Acquire(
            ipaddress.ip_address("10.1.0.5"),
            ipaddress.ip_address("10.2.0.7"),
            1,
            0,
            0,
            sf.tunnel,
            sf,
            None,
            False,
            1.0,
        )
    )
    for _ in range(200):
        if not wire:
            break
        sender, data, addr, sport = wire.pop(0)
        hosts[addr[0]].mgr.receive([(data, (sender, sport), addr[0])], addr[1])
    for h in (a, b):
        states = [s.state.params for s in h.sadb.states.values()]
        assert len(states) == 2 and all(
            p.encap is not None and p.enc_alg.name == "ENCR_AES_GCM_16" for p in states
        )


def test_dynamic_rule_view_shows_forceencap() -> None:
    """``ipsecctl dynamic show rule``: the JSON key, and a text line only for a forcing rule."""
    for force in (True, False):
        store = parse_store_texts([("ipsecd.toml", tunnel_store(A, B, NET_A, NET_B, 2, force))])
        compiled = compile_store(store, StaticHost(addresses=(ipaddress.ip_address(A),)))
        rows = rule_views(store, compiled)
        assert [r["forceencap"] for r in rows] == [force, force]
        lines = [x for x in rules_text(rows) if x.startswith("UDP Encapsulation")]
        assert len(lines) == (2 if force else 0) and all("forced" in x for x in lines), lines
