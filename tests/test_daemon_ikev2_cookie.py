"""The daemon's IKEv2 responder under an IKE_SA_INIT flood (root): RFC 7296 section 2.6 COOKIEs.

Host a floods the ipsecd daemon on host b for 2 s (about 3000 requests/s) with IKE_SA_INIT
requests (x25519 KE, fresh nonce) from 300 source addresses
(10.77.0.0/16 is a local route on a, so a socket binds to any of them; b routes it back via a).
b's store answers IKEv2 for every one of them (a transport rule towards 10.77.0.0/16) and the
daemon runs with ``--ike-cookie-threshold 5``: past 5 half-open IKE SAs, each request is answered
with N(COOKIE) alone and nothing is kept. While the flood goes on, the ipsecd initiator
(``tests.ikev2_driver``) from 192.0.2.1 is challenged, repeats its request with the cookie, and sets
up its IKE SA and child SA.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2.session import Session
from tests.engine_helpers import A4, B4, start_daemon
from tests.ikev2_driver import A_NET, B_NET, PSK, Driver, initiator_config, is_cookie_reply, responder_store
from tests.netns import Lab, two_hosts

pytestmark = pytest.mark.root

FLOOD_NET = "10.77.0.0/16"
SOURCES = 300
THRESHOLD = 5
FLOOD_S = 2.0
IKE, MM = "aes128-sha256-x25519", "AES128-SHA256-31"


def store() -> str:
    """The benchmark's responder store, plus a transport rule answering IKEv2 for the flood's sources."""
    text = responder_store(MM)
    flood_list = f"""[[filterlist]]
name = "flooders"
  [[filterlist.filter]]
  srcaddr = "{B4}"
  dstaddr = "{FLOOD_NET}"
"""
    rule = f"""  [[policy.rule]]
  name = "flooders"
  filterlist = "flooders"
  filteraction = "sec"
  ikeversion = 2
  auth = [{{ method = "psk", psk = "{PSK}" }}]
"""
    return text.replace("[[filteraction]]", flood_list + "[[filteraction]]", 1) + rule


def flood_requests() -> list[tuple[str, bytes]]:
    """One genuine IKE_SA_INIT request (x25519 KE, nonce) per spoofed source."""
    dh = DefaultDhProvider(os.urandom)
    out = []
    for i in range(SOURCES):
        src = f"10.77.{i // 250}.{i % 250 + 1}"
        cfg = initiator_config(src, IKE, "aes128gcm16", PSK.encode(), A_NET, B_NET)
        s = Session.initiate(cfg, local=(src, 500), remote=(B4, 500), now=0.0, rng=os.urandom, dh=dh)
        [(req, _)] = s.datagrams_to_send(0.0)
        out.append((src, req))
    return out


def test_ike_sa_init_flood_gets_cookies_and_a_real_peer_still_connects(lab: Lab) -> None:
    p = two_hosts(lab)
    p.a.run(["ip", "route", "add", "local", FLOOD_NET, "dev", "lo"])
    p.b.add_route(FLOOD_NET, via=A4)
    d = start_daemon(lab, p.b, store_text=store(), extra=("--ike-cookie-threshold", str(THRESHOLD)))
    requests = flood_requests()
    socks: list[socket.socket] = []
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        # About 3000 requests/s for FLOOD_S (a flood for this 2-vCPU machine), in bursts of 30.
        end = time.monotonic() + FLOOD_S
        i = 0
        while not stop.is_set() and time.monotonic() < end:
            for _ in range(30):
                socks[i % SOURCES].send(requests[i % SOURCES][1])
                i += 1
            sent[0] = i
            time.sleep(0.01)

    try:
        with p.a.entered():
            for src, _ in requests:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((src, 500))
                s.connect((B4, 500))
                s.setblocking(False)
                socks.append(s)
            flooder = threading.Thread(target=flood, daemon=True)
            flooder.start()
            time.sleep(0.5)  # the flood is under way: the threshold is passed
            cfg = initiator_config(A4, IKE, "aes128gcm16", PSK.encode(), A_NET, B_NET)
            with Driver(A4, B4, cfg) as drv:
                legit = drv.run(1, 1, 10.0)
            flooder_alive_during_legit = flooder.is_alive()
            mid = d.status()["ikev2"]
            flooder.join(FLOOD_S + 5.0)
        time.sleep(0.3)
        cookies = full = 0
        for s in socks:
            while True:
                try:
                    reply = s.recv(65535)
                except OSError:  # BlockingIOError: drained
                    break
                if is_cookie_reply(reply):
                    cookies += 1
                else:
                    full += 1
    finally:
        stop.set()
        for s in socks:
            s.close()
    st = d.status()["ikev2"]
    # The real peer was challenged and still connected during the flood.
    assert legit.done == 1 and legit.failed == 0, legit
    assert legit.cookies_seen >= 1, legit
    assert mid["half_open"] == THRESHOLD, mid
    # Stateless beyond the threshold: THRESHOLD half-open SAs from the flood, no more
    # (their retransmissions reach the sessions they made), the rest answered with COOKIEs.
    assert sent[0] >= 2 * SOURCES and flooder_alive_during_legit, sent
    assert st["responders_created"] == THRESHOLD + 1, st  # + the legitimate peer's
    assert st["half_open"] == THRESHOLD and st["sessions"] == THRESHOLD + 1, st
    assert st["cookies_sent"] >= sent[0] // 2, (st, sent)  # the rest: dropped by a full socket buffer
    assert cookies >= SOURCES - THRESHOLD, (cookies, full)
    assert full <= THRESHOLD * (sent[0] // SOURCES + 1), (cookies, full)
