"""SIGHUP with IKE-negotiated SAs (root): two ipsecd hosts, two negotiate rules to each other (ICMP,
and TCP port 7000, each with its own filter action). Host a's store changes the TCP rule's filter
action (one more Quick Mode method) and a gets SIGHUP: the TCP rule's SA pair is deleted with a
DELETE (b's monitor shows it gone) and the next TCP connection negotiates a new one, while the ICMP
pair keeps its SPIs and a ping stream on it loses nothing across the reload."""

from __future__ import annotations

import signal
import threading

import pytest

from tests.engine_helpers import A4, B4, tcp_echo
from tests.netns import Lab, PingResult, two_hosts, wait_until
from tests.test_daemon_ike import PSK, _daemon, _show, psk_store

pytestmark = pytest.mark.root

GCM = '"ESP[AESGCM128]"'


def _store(peer: str, tcp_methods: str, ikeversion: int) -> str:
    text = '[daemon]\nassigned_policy = "p"\nikelogging = true\n'
    text += (
        f'[[filterlist]]\nname = "icmp"\n  [[filterlist.filter]]\n  srcaddr = "me"\n  dstaddr = "{peer}"\n'
    )
    text += '  protocol = "icmp"\n'
    text += '[[filterlist]]\nname = "tcp7000"\n'
    for src, dst in (("me", peer), (peer, "me")):  # either host may be the TCP server
        text += f'  [[filterlist.filter]]\n  srcaddr = "{src}"\n  dstaddr = "{dst}"\n'
        text += '  protocol = "tcp"\n  dstport = 7000\n'
    text += f'[[filteraction]]\nname = "sec-icmp"\naction = "negotiate"\nqmsecmethods = [{GCM}]\n'
    text += f'[[filteraction]]\nname = "sec-tcp"\naction = "negotiate"\nqmsecmethods = [{tcp_methods}]\n'
    text += '[[policy]]\nname = "p"\nmmsecmethods = ["AES128-SHA1-14"]\nactivatedefaultrule = false\n'
    for rule, flist, fa in (("ping", "icmp", "sec-icmp"), ("tcp", "tcp7000", "sec-tcp")):
        text += f'  [[policy.rule]]\n  name = "{rule}"\n  filterlist = "{flist}"\n  filteraction = "{fa}"\n'
        text += f'  ikeversion = {ikeversion}\n  auth = [{{ method = "psk", psk = "{PSK}" }}]\n'
    return text


def _pairs(d: object) -> dict[int, tuple[int, int]]:
    """protocol -> (inbound SPI, outbound SPI) of the Quick Mode SAs in ``show qmsas``."""
    return {r["protocol"]: (r["inbound_spi"], r["outbound_spi"]) for r in _show(d, "qmsas")["qmsas"]}


def test_sighup_deletes_only_the_changed_rules_sas(lab: Lab) -> None:
    # IKEv1 only: the IKEv2 responder picks one rule per peer address, so a second rule to the
    # same peer is refused (TS_UNACCEPTABLE); the IKEv2 delete path is the test below.
    ikeversion = 1
    p = two_hosts(lab)
    da, oak_a = _daemon(lab, p.a, _store(B4, GCM, ikeversion))
    db, _ = _daemon(lab, p.b, _store(A4, GCM, ikeversion))
    assert p.a.ping(B4, count=1, wait=5).received == 1
    tcp_echo(p.a, p.b, B4, port=7000, size=20_000)
    wait_until(lambda: set(_pairs(da)) == {1, 6} and set(_pairs(db)) == {1, 6}, 5, what="two SA pairs")
    before_a, before_b = _pairs(da), _pairs(db)
    assert [r["filter"] for r in _show(da, "qmsas")["qmsas"] if r["protocol"] == 6] == ["p/tcp"]

    result: list[PingResult] = []
    pinger = threading.Thread(target=lambda: result.append(p.a.ping(B4, count=200, interval=0.01, wait=2)))
    pinger.start()
    try:
        wait_until(lambda: da.status()["totals"]["protected"] > 20, 5, what="the ping stream running")
        da.store.write_text(_store(B4, f'{GCM}, "ESP[AES128,SHA1]"', ikeversion))
        da.proc.proc.send_signal(signal.SIGHUP)
        da.proc.wait_output(r"deleting SA", 10)
        # b got the DELETE: its TCP pair is gone, its ICMP pair untouched.
        wait_until(lambda: set(_pairs(db)) == {1} and set(_pairs(da)) == {1}, 10, what="TCP pair deleted")
    finally:
        pinger.join(timeout=20)
    [ping] = result
    assert ping.received == 200, ping.output
    assert _pairs(da)[1] == before_a[1] and _pairs(db)[1] == before_b[1]
    # The next TCP connection negotiates a new pair under the new filter action.
    tcp_echo(p.a, p.b, B4, port=7000, size=20_000)
    wait_until(lambda: set(_pairs(da)) == {1, 6}, 5, what="a new TCP pair")
    assert _pairs(da)[6] != before_a[6]
    assert _pairs(da)[1] == before_a[1]
    assert "Quick Mode SA deleted" in oak_a.read_text()


def test_ikev2_sighup_keeps_an_unchanged_sa_and_deletes_a_changed_one(lab: Lab) -> None:
    """IKEv2, one rule: a SIGHUP with the same store keeps the child SA (same SPIs); a SIGHUP after
    its filter action changed deletes it with an INFORMATIONAL Delete (gone on b too), and the next
    packet negotiates a new one."""
    p = two_hosts(lab)
    store_a = psk_store(B4, "ESP[AES128,SHA256]", "AES256-SHA256-14", ikeversion=2)
    da, oak_a = _daemon(lab, p.a, store_a)
    db, _ = _daemon(lab, p.b, psk_store(A4, "ESP[AES128,SHA256]", "AES256-SHA256-14", ikeversion=2))
    assert p.a.ping(B4, count=1, wait=5).received == 1
    [old] = _show(da, "qmsas")["qmsas"]
    da.proc.proc.send_signal(signal.SIGHUP)
    da.proc.wait_output(r"reloaded: policy", 10)
    assert p.a.ping(B4, count=3, interval=0.05).received == 3
    [same] = _show(da, "qmsas")["qmsas"]
    assert same["inbound_spi"] == old["inbound_spi"] and "deleting SA" not in da.proc.output()
    da.store.write_text(store_a.replace('"ESP[AES128,SHA256]"', '"ESP[AES128,SHA256]", "ESP[AESGCM128]"'))
    da.proc.proc.send_signal(signal.SIGHUP)
    da.proc.wait_output(r"deleting SA", 10)
    wait_until(lambda: _show(db, "qmsas")["qmsas"] == [], 10, what="b deleting the child SA")
    wait_until(lambda: _show(da, "qmsas")["qmsas"] == [], 10, what="a deleting the child SA")
    assert p.a.ping(B4, count=1, wait=5).received == 1
    [new] = _show(da, "qmsas")["qmsas"]
    assert new["inbound_spi"] != old["inbound_spi"]
    assert "IKE SA established" in oak_a.read_text()
