"""Tunnel mode between two gateways running ipsecd, for hosts behind them that run nothing
(root): forwarded traffic is captured in prerouting and decapsulated traffic forwarded on."""

from __future__ import annotations

import json

import pytest

from tests.engine_helpers import key, start_daemon
from tests.netns import Lab

pytestmark = pytest.mark.root

GA, GB = "198.51.100.1", "198.51.100.2"


def _store(local: str, peer: str, mine: str, theirs: str) -> str:
    states = [
        f"src {GA} dst {GB} proto esp spi 0x3000 mode tunnel aead rfc4106(gcm(aes)) 0x{key('g1', 20)} 128",
        f"src {GB} dst {GA} proto esp spi 0x4000 mode tunnel aead rfc4106(gcm(aes)) 0x{key('g2', 20)} 128",
    ]
    policies = [
        f"src {mine} dst {theirs} dir out tmpl src {local} dst {peer} proto esp mode tunnel",
        f"src {theirs} dst {mine} dir fwd tmpl src {peer} dst {local} proto esp mode tunnel",
    ]
    return "[daemon]\n[xfrm]\nstates = " + json.dumps(states) + "\npolicies = " + json.dumps(policies) + "\n"


def test_gateway_to_gateway_tunnel(lab: Lab) -> None:
    left, gwa, gwb, right = lab.host("left"), lab.host("gwa"), lab.host("gwb"), lab.host("right")
    lan_a = lab.link(left, gwa, ["10.1.0.2/24"], ["10.1.0.1/24"])
    wan = lab.link(gwa, gwb, [f"{GA}/24"], [f"{GB}/24"])
    lab.link(gwb, right, ["10.2.0.1/24"], ["10.2.0.2/24"])
    for gw in (gwa, gwb):
        gw.sysctl("net.ipv4.ip_forward", 1)
    left.add_route("default", via="10.1.0.1")
    right.add_route("default", via="10.2.0.1")
    start_daemon(lab, gwa, store_text=_store(GA, GB, "10.1.0.0/24", "10.2.0.0/24"))
    db = start_daemon(lab, gwb, store_text=_store(GB, GA, "10.2.0.0/24", "10.1.0.0/24"))
    cap = gwa.capture(wan.a_ifname)
    r = left.ping("10.2.0.2", count=3, interval=0.1)
    assert r.received == 3, r.output
    r = right.ping("10.1.0.2", count=3, interval=0.1)
    assert r.received == 3, r.output
    st = db.status()["router"]
    assert st["delivered"] >= 6 and st["looped"] == 0 and st["policy_dropped"] == 0
    cap.stop()
    assert cap.count("icmp") == 0 and cap.count("esp") >= 12
    assert cap.count("host 10.1.0.2 or host 10.2.0.2") == 0
    del lan_a
    # Plaintext for the protected subnets arriving from outside is dropped (the dir fwd policy).
    fwd = gwa.run(["nft", "list", "chain", "inet", "ipsecd", "forward"]).stdout
    assert "ip saddr 10.2.0.0/24 ip daddr 10.1.0.0/24 counter packets 0 bytes 0 drop" in fwd
