"""IKEv1 Main Mode + Quick Mode setups per second with two in-memory sessions (ipsecd.ikev1), against
the bare Diffie-Hellman work the same setups need, measured in the same run.

A setup is one Main Mode (PSK) and one Quick Mode, both roles (two sessions), everything but the
network: encoding, hashing, CBC, KEYMAT and SAParams. The reference does only the DH: two key pairs
and two shared secrets per setup (four with Quick Mode PFS). The ratio reference/protocol says which
share of the time the DH takes; strongSwan's figure on this machine kind (docs/testing.md notes:
about 130 setups/s with x25519, 55 with MODP-2048, one at a time over the network) is for scale.

    python3 bench/ikev1_handshake.py [--setups N]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev1.quick_mode import PFS_MAIN_MODE_GROUP, QmPolicy
from ipsecd.ikev1.selectors import TrafficSelector
from ipsecd.ikev1.session import IkeV1Session, SessionConfig
from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod

A = ipaddress.IPv4Address("192.0.2.1")
B = ipaddress.IPv4Address("198.51.100.2")
NET_A, NET_B = TrafficSelector.of("10.1.0.0/24"), TrafficSelector.of("10.2.0.0/24")
QM = QmSecMethod(esp_enc=EspEncryption.AESGCM128)


def one_setup(group: int, pfs: bool) -> None:
    mm = (MmSecMethod(MmEncryption.AES128, Integrity.SHA256, group),)
    pfs_group = PFS_MAIN_MODE_GROUP if pfs else None

    def lookup(local: TrafficSelector, remote: TrafficSelector) -> QmPolicy:
        return QmPolicy((QM,), pfs_group, True, local, remote)

    a = IkeV1Session(
        SessionConfig((A, 500), (B, 500), mm, b"bench psk"),
        rng=os.urandom,
        dh=DefaultDhProvider(os.urandom),
        now=0.0,
    )
    b = IkeV1Session(
        SessionConfig((B, 500), (A, 500), mm, b"bench psk", qm_lookup=lookup),
        rng=os.urandom,
        dh=DefaultDhProvider(os.urandom),
        now=0.0,
    )
    a.initiate(QmPolicy((QM,), pfs_group, True, NET_A, NET_B), 0.0)
    for _ in range(20):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data, addr, lport in src.datagrams_to_send_from(0.0):
                dst.receive_datagram(data, (src.cfg.local[0], lport), 0.0, addr[1])
                moved = True
        if not moved:
            break
    if len(a.children) != 1 or len(b.children) != 1:
        raise SystemExit("setup did not complete")


def dh_only(group: int, pfs: bool) -> None:
    dh = DefaultDhProvider(os.urandom)
    for _ in range(2 if pfs else 1):
        x, y = dh.generate(group), dh.generate(group)
        x.shared_secret(y.public_value())
        y.shared_secret(x.public_value())


def rate(fn: object, n: int, group: int, pfs: bool) -> float:
    assert callable(fn)
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(n):
            fn(group, pfs)
        best = min(best, time.process_time() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setups", type=int, default=30)
    args = ap.parse_args()
    print(
        "| group | QM PFS | setups/s (ipsecd, both roles) | DH only, same work (/s) | DH share of the time |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for name, group in (("x25519", 31), ("ecp256", 19), ("modp2048", 14)):
        for pfs in (False, True):
            proto = rate(one_setup, args.setups, group, pfs)
            ref = rate(dh_only, args.setups, group, pfs)
            print(f"| {name} | {'yes' if pfs else 'no'} | {proto:,.0f} | {ref:,.0f} | {proto / ref:.0%} |")


if __name__ == "__main__":
    main()
