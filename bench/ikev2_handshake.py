"""IKEv2 handshake cost of ipsecd.ikev2.Session, in memory (no sockets): IKE_SA_INIT + IKE_AUTH with
a PSK and the first child SA, both ends in this process, per suite.

Reference, measured in the same run: the Diffie-Hellman work alone that one handshake needs (two key
pairs and two shared secrets of the same group). The ratio handshake / DH-only tells how much the
protocol machinery (codec, prf+, AUTH, SK protection, proposals, events) adds on top of the
unavoidable public-key work.

    python3 bench/ikev2_handshake.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import time

from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2.payloads import Identity, TrafficSelector
from ipsecd.ikev2.proposals import parse_esp, parse_ike
from ipsecd.ikev2.session import Session, SessionConfig

SUITES = [
    ("aes128gcm16-prfsha256-x25519", "aes128gcm16"),
    ("aes128-sha256-ecp256", "aes128-sha256"),
    ("aes256-sha256-modp2048", "aes256-sha256"),
]
A, B = ("192.0.2.1", 500), ("192.0.2.2", 500)


def _cfg(me: str, lts: str, rts: str, ike: str, esp: str) -> SessionConfig:
    return SessionConfig(
        ike=(parse_ike(ike),),
        esp=(parse_esp(esp),),
        psk=b"bench-psk",
        local_id=Identity.address(me),
        local_ts=(TrafficSelector.network(lts),),
        remote_ts=(TrafficSelector.network(rts),),
        dpd_interval_s=0,
    )


def handshake(ike: str, esp: str) -> None:
    dh = DefaultDhProvider(os.urandom)
    a = Session.initiate(
        _cfg(A[0], "10.1.0.0/24", "10.2.0.0/24", ike, esp), local=A, remote=B, now=0, rng=os.urandom, dh=dh
    )
    b = Session.respond(
        _cfg(B[0], "10.2.0.0/24", "10.1.0.0/24", ike, esp), local=B, remote=A, now=0, rng=os.urandom, dh=dh
    )
    for _ in range(3):
        for d, _addr in a.datagrams_to_send(0):
            b.receive_datagram(d, A, 0)
        for d, _addr in b.datagrams_to_send(0):
            a.receive_datagram(d, B, 0)
    if not (a.established and b.established and a.children):
        raise SystemExit("handshake did not complete")


def dh_only(group: int) -> None:
    dh = DefaultDhProvider(os.urandom)
    x, y = dh.generate(group), dh.generate(group)
    x.shared_secret(y.public_value())
    y.shared_secret(x.public_value())


def best(fn: object, rounds: int, n: int) -> float:
    assert callable(fn)
    out = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        out = min(out, (time.process_time() - t0) / n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print("| suite | handshakes/s | ms/handshake | DH-only ms | ratio handshake / DH-only |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for ike, esp in SUITES:
        group = parse_ike(ike).groups[0]
        n = 20 if group == 14 else 100
        hs = best(lambda ike=ike, esp=esp: handshake(ike, esp), args.rounds, n)
        ref = best(lambda group=group: dh_only(group), args.rounds, n)
        print(f"| {ike} / {esp} | {1 / hs:,.0f} | {hs * 1000:.2f} | {ref * 1000:.2f} | {hs / ref:.2f} |")


if __name__ == "__main__":
    main()
