"""Negotiate filters without an SA on a real kernel (root): traffic is held, an acquire is raised
for IKE, nothing leaves in clear; with ``soft`` the flow falls back to clear after the timeout."""

from __future__ import annotations

import signal
import sys

import pytest

from tests.engine_helpers import B4, start_daemon
from tests.netns import Lab, two_hosts, wait_until

pytestmark = pytest.mark.root


def _store(soft: bool) -> str:
    return f"""[daemon]
assigned_policy = "p"
[[filterlist]]
name = "peer"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "192.0.2.2"
[[filteraction]]
name = "sec"
action = "negotiate"
qmsecmethods = ["ESP[AESGCM128]"]
soft = {str(soft).lower()}
[[policy]]
name = "p"
  [[policy.rule]]
  name = "secure b"
  filterlist = "peer"
  filteraction = "sec"
  auth = [{{ method = "psk", psk = "test-only" }}]
"""


@pytest.mark.parametrize("soft", [False, True], ids=["required", "soft"])
def test_negotiate_without_sa(lab: Lab, soft: bool) -> None:
    p = two_hosts(lab)
    d = start_daemon(lab, p.a, store_text=_store(soft))  # b is a plain host: no IPsec at all
    cap = p.a.capture(p.link.a_ifname)
    first = p.a.ping(B4, count=4, interval=0.2, wait=0.5)
    st = d.status()
    assert first.received == 0
    assert st["router"]["acquires"] == 1 and st["router"]["queued"] >= 4, st
    [acq] = st["acquires"]
    assert (acq["src"], acq["dst"], acq["protocol"], acq["soft"]) == ("192.0.2.1", B4, 1, soft)
    if not soft:
        # The IKE exemption (always on) lets UDP 500 through in clear, outside the capture.
        captured = d.status()["router"]["captured"]
        p.a.run([sys.executable, "-c", _IKE_SEND, B4], timeout=10)
        cap.stop()
        assert cap.count("icmp and src host 192.0.2.1") == 0  # (b answers port unreachable)
        # (the daemon itself now starts Main Mode with b too, from port 500)
        assert cap.count("udp dst port 500 and not udp src port 500") == 2
        assert d.status()["router"]["captured"] == captured
        return
    # soft: after the negotiation timeout (3 s) the flow goes in clear, both ways.
    wait_until(lambda: d.status()["router"]["soft_fallbacks"] == 1, 10, what="the soft fallback")
    assert d.status()["soft_associations"] == [{"local": "192.0.2.1", "peer": B4, "rule": "secure b"}]
    assert p.a.ping(B4, count=3, interval=0.1).received == 3
    assert "192.0.2.2" in p.a.run(["nft", "list", "set", "inet", "ipsecd", "soft4"]).stdout
    # A reload re-makes the nft table: the soft association's set element comes back with it.
    d.proc.proc.send_signal(signal.SIGHUP)
    d.proc.wait_output("reloaded", 10)
    assert "192.0.2.2" in p.a.run(["nft", "list", "set", "inet", "ipsecd", "soft4"]).stdout
    assert p.b.ping("192.0.2.1", count=2, interval=0.1).received == 2  # b's plaintext gets in
    cap.stop()
    assert cap.count("icmp and src host 192.0.2.1") >= 3


_IKE_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"not really IKE", (sys.argv[1], 500))
s.sendto(b"not really IKE", (sys.argv[1], 500))
"""
