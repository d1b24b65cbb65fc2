"""Which rule the daemon's IKE uses with a peer (ipsecd/daemon/ike_policy.py), and the IkeManager's
receive path on malformed input without sockets: no root."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipsecd.daemon.ike import IkeManager
from ipsecd.daemon.ike_policy import DEFAULT_RESPONSE, initiator_rule, responder_auth, responder_lookup_for
from ipsecd.daemon.monitor import MonitorState
from ipsecd.daemon.router import Router
from ipsecd.datapath.sadb import SADatabase
from ipsecd.ikev1.selectors import TrafficSelector
from ipsecd.policy.builtin import DEFAULT_MM_METHODS
from ipsecd.policy.classifier import CompiledPolicy, compile_store
from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import Store
from ipsecd.policy.order import Direction
from ipsecd.policy.store import load_store

ME = ipaddress.ip_address("192.0.2.1")

STORE = """[daemon]
assigned_policy = "p"
[[filterlist]]
name = "hosts"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "192.0.2.0/28"
[[filterlist]]
name = "blocked"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "192.0.2.9"
  protocol = "tcp"
  dstport = 23
[[filterlist]]
name = "to b"
  [[filterlist.filter]]
  srcaddr = "10.1.0.0/24"
  dstaddr = "10.2.0.0/24"
  mirrored = false
[[filteraction]]
name = "sec"
action = "negotiate"
qmsecmethods = ["ESP[AESGCM128]"]
[[filteraction]]
name = "deny"
action = "block"
[[filteraction]]
name = "tun"
action = "negotiate"
qmsecmethods = ["ESP[AES256,SHA256]"]
[[policy]]
name = "p"
activatedefaultrule = {default}
defaultruleauth = [{{ method = "psk", psk = "default-key" }}]
  [[policy.rule]]
  name = "no telnet"
  filterlist = "blocked"
  filteraction = "deny"
  [[policy.rule]]
  name = "hosts"
  filterlist = "hosts"
  filteraction = "sec"
  auth = [{{ method = "psk", psk = "hosts-key" }}]
  [[policy.rule]]
  name = "to b"
  filterlist = "to b"
  filteraction = "tun"
  tunnel = "203.0.113.2"
  ikeversion = 2
  auth = [{{ method = "psk", psk = "tunnel-key" }}]
"""


def _load(tmp_path: Path, default: bool = True) -> tuple[Store, CompiledPolicy]:
    path = tmp_path / "store.toml"
    path.write_text(STORE.format(default=str(default).lower()))
    path.chmod(0o600)
    store = load_store(path)
    return store, compile_store(store, StaticHost(addresses=[ME]))


@pytest.mark.parametrize(
    ("peer", "rule", "psk", "version"),
    [
        ("203.0.113.2", "to b", "tunnel-key", 2),  # the tunnel endpoint
        ("192.0.2.5", "hosts", "hosts-key", 1),  # covered by a transport filter
        ("198.51.100.7", DEFAULT_RESPONSE, "default-key", 1),  # nobody's: the default response rule
    ],
)
def test_responder_rule_by_peer_address(tmp_path: Path, peer: str, rule: str, psk: str, version: int) -> None:
    store, compiled = _load(tmp_path)
    pick = responder_auth(store, compiled, ipaddress.ip_address(peer))
    assert pick is not None
    assert (pick.rule, pick.psk, pick.ikeversion) == (rule, psk, version)
    assert pick.mm_methods == DEFAULT_MM_METHODS  # the policy gives none
    assert psk not in repr(pick)


def test_no_default_rule_no_answer(tmp_path: Path) -> None:
    store, compiled = _load(tmp_path, default=False)
    assert responder_auth(store, compiled, ipaddress.ip_address("198.51.100.7")) is None


def test_initiator_rule_from_the_filter(tmp_path: Path) -> None:
    store, compiled = _load(tmp_path)
    sf = next(f for f in compiled.filters if f.rule == "to b" and f.direction is Direction.OUTBOUND)
    pick = initiator_rule(store, sf)
    assert pick is not None and (pick.label, pick.filteraction, pick.psk) == ("p/to b", "tun", "tunnel-key")


def test_quick_mode_lookup_and_dynamic_filter(tmp_path: Path) -> None:
    store, compiled = _load(tmp_path)
    pick = responder_auth(store, compiled, ipaddress.ip_address("192.0.2.5"))
    assert pick is not None
    lookup = responder_lookup_for(store, compiled, pick)
    mine, peer = TrafficSelector.of("192.0.2.1"), TrafficSelector.of("192.0.2.5")
    pol = lookup(mine, peer)
    assert pol is not None and not pol.tunnel
    assert [m.esp_enc.name for m in pol.methods if m.esp_enc] == ["AESGCM128"]
    # Nothing specific for these IDs: the <Dynamic> filter answers with Request Security's methods.
    other = TrafficSelector.of("198.51.100.7")
    dyn = lookup(mine, other)
    assert dyn is not None and dyn.methods == store.filteractions["Request Security (Optional)"].qmsecmethods
    assert (dyn.local_ts, dyn.remote_ts) == (mine, other)
    # A block filter deciding first is not overridden by the <Dynamic> filter.
    assert lookup(TrafficSelector.of("192.0.2.1", 6), TrafficSelector.of("192.0.2.9", 6, 23)) is None
    # Without the default response rule the same request is refused.
    store2, compiled2 = _load(tmp_path, default=False)
    assert responder_lookup_for(store2, compiled2, pick)(mine, other) is None


def _manager(tmp_path: Path) -> tuple[IkeManager, list[tuple[bytes, tuple[str, int]]]]:
    store, compiled = _load(tmp_path)
    sadb = SADatabase(lambda: [ME], backend="python")
    router = Router(compiled.classifier, sadb)
    sent: list[tuple[bytes, tuple[str, int]]] = []
    mgr = IkeManager(
        sadb,
        router,
        MonitorState(lambda: 0.0),
        clock=lambda: 100.0,
        send_natt=lambda data, addr, src: sent.append((data, addr)),
        flush=lambda: None,
        log=lambda msg: None,
    )
    mgr.set_policy(store, compiled)
    return mgr, sent


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(min_size=0, max_size=300),
    version=st.sampled_from([0x10, 0x20, 0x00, 0xFF]),
    port=st.sampled_from([500, 4500]),
    peer=st.sampled_from(["192.0.2.5", "203.0.113.2", "198.51.100.7", "fe80::1%eth0"]),
)
def test_receive_never_raises_on_garbage(
    tmp_path: Path, data: bytes, version: int, port: int, peer: str
) -> None:
    """Malformed IKE (either version, either port, any peer) is counted and dropped, no SA."""
    mgr, _sent = _manager(tmp_path)
    head = bytearray(data.ljust(28, b"\0")[:28])
    head[17] = version
    msg = (bytes(4) if port == 4500 else b"") + bytes(head) + data[28:]
    mgr.receive([(msg, (peer, port), "192.0.2.1")], port)
    assert mgr.sadb.states == {}
    assert mgr.monitor.mmsa_views() == []
    assert mgr.peers == {}  # nothing kept for a datagram that started nothing
