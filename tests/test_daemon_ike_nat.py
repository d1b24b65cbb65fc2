"""ipsecd to ipsecd in transport mode through the masquerading NAT router (``nat_topology``):
NAT-D finds the NAT, IKE floats to 4500, ESP goes UDP-encapsulated (UDP-Encapsulated-Transport),
and the TCP/UDP checksums the NAT invalidated are fixed on receipt (RFC 3948 section 3.1.2).
And an AH+ESP bundle from Quick Mode installed with both halves (AH carrying ESP on the wire)."""

from __future__ import annotations

import pytest

from tests.engine_helpers import A4, B4, MARKER, start_daemon, tcp_echo
from tests.netns import Lab, nat_topology, two_hosts
from tests.test_daemon_ike import _show, psk_store

pytestmark = pytest.mark.root

LEFT, RIGHT = "10.0.1.2", "198.51.100.2"


def test_transport_through_nat(lab: Lab) -> None:
    t = nat_topology(lab)
    public = t.router_public
    oak = lab.scratch("left-oakley.log")
    da = start_daemon(lab, t.left, store_text=psk_store(RIGHT), extra=("--oakley-log", str(oak)))
    # b only sees the router's address: its filter names that one.
    oak_b = lab.scratch("right-oakley.log")
    db = start_daemon(lab, t.right, store_text=psk_store(public), extra=("--oakley-log", str(oak_b)))
    cap = t.right.capture(t.outside.b_ifname)
    first = t.left.ping(RIGHT, count=1, wait=8)
    assert first.received >= 1, (
        first.output + da.proc.output() + db.proc.output() + oak.read_text() + oak_b.read_text()
    )
    ra = t.left.ping(RIGHT, count=3, interval=0.1)
    assert ra.received == 3, ra.output
    # A real TCP transfer both ways over a's connection: every segment's checksum was computed over
    # a's private address and must be fixed after the NAT (and back).
    tcp_echo(t.left, t.right, RIGHT)
    # b reaches a through the mapping (the SA exists; a is known as the router's address).
    rb = t.right.ping(public, count=3, interval=0.1)
    assert rb.received == 3, rb.output
    tcp_echo(t.right, t.left, public, port=7001)
    cap.stop()
    assert cap.count("ip and not udp") == 0, cap.lines("ip and not udp")  # no ESP (50), no clear
    assert cap.count("udp port 4500") > 20
    assert cap.count("udp port 500") >= 4  # Main Mode 1-4 before the float
    assert not any(MARKER in frame for frame in cap.packets())
    [mm] = _show(da, "mmsas")["mmsas"]
    assert (mm["local_port"], mm["peer_port"]) == (4500, 4500), mm
    for d, peer in ((da, RIGHT), (db, public)):
        states = d.status()["states"]
        assert len(states) == 2, states
        for s in states:
            assert s["encap"] is not None and s["mode"] == "transport", s
        assert peer in str(states)
    log = oak.read_text()
    assert "Main Mode SA established" in log and "natt=true" in log, log
    assert "remote_ts=198.51.100.2/32" in log and "mode=transport encap=true" in log, log
    # b's selectors name the router's address (the IDs carried a's private one, RFC 3947 section 5.2).
    log_b = oak_b.read_text()
    assert f"remote_ts={public}/32" in log_b and "mode=transport encap=true" in log_b, log_b


def test_ah_esp_bundle_from_quick_mode(lab: Lab) -> None:
    qm = "AH[SHA256]+ESP[AES128,SHA256]"
    p = two_hosts(lab)
    oak = lab.scratch("a-oakley.log")
    da = start_daemon(lab, p.a, store_text=psk_store(B4, qm), extra=("--oakley-log", str(oak)))
    db = start_daemon(lab, p.b, store_text=psk_store(A4, qm))
    cap = p.a.capture(p.link.a_ifname)
    first = p.a.ping(B4, count=1, wait=5)
    assert first.received >= 1, first.output + da.proc.output() + db.proc.output() + oak.read_text()
    ra = p.a.ping(B4, count=3, interval=0.1)
    rb = p.b.ping(A4, count=3, interval=0.1)
    assert (ra.received, rb.received) == (3, 3), ra.output + rb.output
    tcp_echo(p.a, p.b, B4)
    tcp_echo(p.b, p.a, A4, port=7001)
    cap.stop()
    assert cap.count("icmp or tcp or esp") == 0, cap.lines("icmp or tcp or esp")  # no bare ESP
    # AH (51) whose Next Header (the first byte after the IPv4 header) is ESP (50), both ways.
    ah_esp = "ip proto 51 and ip[20] == 50"
    assert cap.count(f"{ah_esp} and src {A4}") > 10 and cap.count(f"{ah_esp} and src {B4}") > 10
    assert cap.count("ip proto 51") == cap.count(ah_esp)
    assert not any(MARKER in frame for frame in cap.packets())
    for d in (da, db):
        states = d.status()["states"]
        assert sorted(s["proto"] for s in states) == ["ah", "ah", "esp", "esp"], states
    assert "ah_inbound_spi=0x" in oak.read_text()
