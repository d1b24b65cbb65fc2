"""SIGHUP under traffic: changing one rule of the store changes that rule's traffic only (root).

Host a's policy has two negotiate rules protected by the [xfrm] SAs: ICMP with b, and TCP 7001
with b. While a ping stream of rule one runs (100 pings a second), the store's TCP 7001 rule is
changed to block and the daemon gets SIGHUP: TCP 7001 is refused from then on, and the ping
stream loses no packet (the reload replaces the nft table atomically, and the unchanged SAs keep
their transforms and sequence numbers, so b's replay window drops nothing).
"""

from __future__ import annotations

import signal
import threading

import pytest

from tests.engine_helpers import A4, B4, start_daemon, tcp_echo, xfrm_store
from tests.netns import Lab, PingResult, two_hosts, wait_until

pytestmark = pytest.mark.root


def _store(peer: str, tcp_action: str) -> str:
    text = '[daemon]\nassigned_policy = "two rules"\n\n'
    text += '[[filterlist]]\nname = "icmp"\n'
    text += f'  [[filterlist.filter]]\n  srcaddr = "me"\n  dstaddr = "{peer}"\n  protocol = "icmp"\n'
    text += '[[filterlist]]\nname = "tcp7001"\n'
    for src, dst in (("me", peer), (peer, "me")):
        text += f'  [[filterlist.filter]]\n  srcaddr = "{src}"\n  dstaddr = "{dst}"\n'
        text += '  protocol = "tcp"\n  dstport = 7001\n'
    text += '[[filteraction]]\nname = "sec"\naction = "negotiate"\nqmsecmethods = ["ESP[AESGCM128]"]\n'
    text += '[[filteraction]]\nname = "blk"\naction = "block"\n'
    text += '[[policy]]\nname = "two rules"\nactivatedefaultrule = false\n'
    for name, flist, action in (("ping", "icmp", "sec"), ("tcp", "tcp7001", tcp_action)):
        text += (
            f'  [[policy.rule]]\n  name = "{name}"\n  filterlist = "{flist}"\n  filteraction = "{action}"\n'
        )
        if action == "sec":
            text += '  auth = [{ method = "psk", psk = "test-only" }]\n'
    return text


def test_sighup_changes_one_rule_and_loses_no_packet_of_the_other(lab: Lab) -> None:
    p = two_hosts(lab)
    store_a = xfrm_store("esp-gcm", "transport", False, A4, B4, _store(B4, "sec"), policies=False)
    da = start_daemon(lab, p.a, store_text=store_a)
    db = start_daemon(
        lab,
        p.b,
        store_text=xfrm_store("esp-gcm", "transport", False, B4, A4, _store(A4, "sec"), policies=False),
    )
    # Both rules carry traffic, protected.
    assert p.a.ping(B4, count=3, interval=0.1).received == 3
    tcp_echo(p.a, p.b, B4, port=7001, size=50_000)
    protected = da.status()["totals"]["protected"]
    assert protected > 6  # the TCP flow went through the daemon too

    # A ping stream of rule one across the reload: 300 pings, 10 ms apart.
    result: list[PingResult] = []
    pinger = threading.Thread(target=lambda: result.append(p.a.ping(B4, count=300, interval=0.01, wait=2)))
    pinger.start()
    try:
        wait_until(lambda: da.status()["totals"]["protected"] >= protected + 50, 10, what="the ping stream")
        da.store.write_text(store_a.replace(_store(B4, "sec"), _store(B4, "blk")))
        da.proc.proc.send_signal(signal.SIGHUP)
        da.proc.wait_output("reloaded: policy 'two rules'", 10)
        assert pinger.is_alive(), "the reload must happen while the stream runs"
    finally:
        pinger.join(30)
    assert not pinger.is_alive()
    (stream,) = result
    assert stream.transmitted == 300 and stream.received == 300, stream.output[-500:]
    assert da.status()["totals"]["protected"] >= protected + 300  # it really went through the daemon

    # The changed rule: TCP 7001 is now blocked by a (outbound, counted), the ping rule unchanged.
    blocked = da.status()["totals"]["blocked"]
    tcp_echo(p.a, p.b, B4, port=7001, expect_ok=False)
    assert da.status()["totals"]["blocked"] > blocked
    assert p.a.ping(B4, count=3, interval=0.1).received == 3
    for d in (da, db):
        st = d.status()["router"]
        assert st["unprotect_failed"] == 0 and st["bad_spi"] == 0 and st["looped"] == 0
