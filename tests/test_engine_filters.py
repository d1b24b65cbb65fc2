"""Block, permit and negotiate filters of an assigned policy enforced in both directions, port by
port, on a real kernel (root): outbound by the daemon, inbound by the nft table."""

from __future__ import annotations

import re
import sys

import pytest

from tests.engine_helpers import A4, B4, Daemon, start_daemon, tcp_echo, xfrm_store
from tests.netns import Host, Lab, two_hosts

pytestmark = pytest.mark.root


def _filterlist(name: str, peer: str, proto: str | None, port: int | None) -> str:
    out = f'[[filterlist]]\nname = "{name}"\n'
    sides = [("me", peer), (peer, "me")] if port else [("me", peer)]
    for src, dst in sides:
        out += f'  [[filterlist.filter]]\n  srcaddr = "{src}"\n  dstaddr = "{dst}"\n'
        if proto:
            out += f'  protocol = "{proto}"\n'
        if port:
            out += f"  dstport = {port}\n"
    return out


def _store(peer: str, block_7000: bool) -> str:
    text = '[daemon]\nassigned_policy = "test"\n\n'
    text += _filterlist("port7000", peer, "tcp", 7000)
    text += _filterlist("port7001", peer, "tcp", 7001)
    text += _filterlist("udp9999", peer, "udp", 9999)
    text += _filterlist("peer", peer, None, None)
    text += '[[filteraction]]\nname = "blk"\naction = "block"\n'
    text += '[[filteraction]]\nname = "perm"\naction = "permit"\n'
    text += '[[filteraction]]\nname = "sec"\naction = "negotiate"\nqmsecmethods = ["ESP[AESGCM128]"]\n'
    text += '[[policy]]\nname = "test"\n'
    rules = [("port7000", "blk" if block_7000 else "perm"), ("port7001", "perm"), ("peer", "sec")]
    if not block_7000:
        rules.insert(0, ("udp9999", "perm"))
    for i, (flist, action) in enumerate(rules):
        text += f'  [[policy.rule]]\n  name = "r{i}"\n  filterlist = "{flist}"\n  filteraction = "{action}"\n'
        if action == "sec":
            text += '  auth = [{ method = "psk", psk = "test-only" }]\n'
    return text


def _drops(host: Host) -> int:
    chain = host.run(["nft", "list", "chain", "inet", "ipsecd", "input"]).stdout
    return sum(int(n) for n in re.findall(r"counter packets (\d+) bytes \d+ drop", chain))


def _captured(d: Daemon) -> int:
    return int(d.status()["router"]["captured"])


def test_block_permit_negotiate_both_directions(lab: Lab) -> None:
    p = two_hosts(lab)
    # a: block TCP 7000 both ways, permit TCP 7001, negotiate the rest with b (the [xfrm] SAs).
    # b: permits TCP 7000 and UDP 9999 in clear, so a's inbound enforcement is what stops them.
    da = start_daemon(
        lab,
        p.a,
        store_text=xfrm_store("esp-gcm", "transport", False, A4, B4, _store(B4, True), policies=False),
    )
    db = start_daemon(
        lab,
        p.b,
        store_text=xfrm_store("esp-gcm", "transport", False, B4, A4, _store(A4, False), policies=False),
    )
    assert da.status()["filters"] == 10
    cap = p.a.capture(p.link.a_ifname)
    # negotiate: protected with the SA whose destination is the peer.
    assert p.a.ping(B4, count=3, interval=0.1).received == 3
    assert p.b.ping(A4, count=3, interval=0.1).received == 3
    # permit, port-granular: passes in clear, and never goes through either daemon.
    before = (_captured(da), _captured(db))
    tcp_echo(p.a, p.b, B4, port=7001, size=20_000)
    tcp_echo(p.b, p.a, A4, port=7001, size=20_000)
    assert (_captured(da), _captured(db)) == before
    # block, outbound: a's daemon drops and counts.
    tcp_echo(p.a, p.b, B4, port=7000, expect_ok=False)
    assert da.status()["totals"]["blocked"] >= 1
    # block, inbound: b sends in clear (its policy permits), a's kernel drops.
    drops = _drops(p.a)
    tcp_echo(p.b, p.a, A4, port=7000, expect_ok=False)
    assert _drops(p.a) > drops
    # negotiate, inbound: plaintext UDP 9999 from b (permitted there) is dropped by a.
    drops = _drops(p.a)
    p.b.run([sys.executable, "-c", _UDP_SEND, A4], timeout=10)
    assert _drops(p.a) >= drops + 3
    cap.stop()
    assert cap.count("icmp") == 0 and cap.count("esp") >= 12
    assert cap.count("tcp port 7001") > 0  # the permitted flow went in clear
    assert cap.count("tcp port 7000 and src host 192.0.2.1") == 0  # a never let its blocked SYN out
    for d in (da, db):
        st = d.status()["router"]
        assert st["looped"] == 0 and st["sent_clear"] == 0 and st["acquires"] == 0


_UDP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(b"clear", (sys.argv[1], 9999))
"""
