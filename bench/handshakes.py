"""IKEv2 setups per second (IKE SA + first child SA, PSK) against a responder in a network namespace:
the ipsecd daemon, and strongSwan's charon as the reference measured in the same run (root only).

The initiator is the same for both: ``tests.ikev2_driver.Driver`` (the sans-I/O ipsecd.ikev2
Session in a bounded loop over UDP 500/4500 in namespace a), one at a time and N in flight, so only
the responder (namespace b) differs. Tunnel mode 10.1.0.0/24 <-> 10.2.0.0/24, ESP aes128gcm16.

charon is set up for handshake benchmarks (/work/shared/notes/strongswan-in-netns.md):
dos_protection = no, raised cookie/block thresholds, 32 threads, unique = never, kernel-libipsec.
ipsecd: the daemon with a tunnel rule (ikeversion = 2), its COOKIE threshold raised the same way.

IKE suites are AES-CBC-128 + HMAC-SHA2-256 + PRF-SHA2-256 with x25519 or modp2048: the daemon's
policy model has no AES-GCM main mode method (``mmsecmethods``), so aes128gcm16-prfsha256-* cannot be
asked of the ipsecd responder.

    sudo python3 bench/handshakes.py [--count N] [--parallel N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import netns, strongswan
from tests.engine_helpers import A4, B4, INNER_B, start_daemon
from tests.ikev2_driver import A_NET, B_NET, PSK, Driver, RunResult, initiator_config, responder_store

SUITES = [
    # (charon / initiator IKE proposal, ipsecd mmsecmethod)
    ("aes128-sha256-x25519", "AES128-SHA256-31"),
    ("aes128-sha256-modp2048", "AES128-SHA256-14"),
    # strongSwan only (no ipsecd policy for it): what AES-GCM for the IKE SA changes on that side.
    ("aes128gcm16-prfsha256-x25519", None),
    ("aes128gcm16-prfsha256-modp2048", None),
]
CHARON_OPTIONS = """  dos_protection = no
  cookie_threshold = 1000000
  block_threshold = 1000000
  init_limit_half_open = 0
  threads = 32
  install_routes = no"""


def charon_conf(ike: str) -> str:
    text = strongswan.psk_tunnel_conf(
        local_addr=B4,
        remote_addr=A4,
        local_id=B4,
        remote_id=A4,
        local_ts=B_NET,
        remote_ts=A_NET,
        psk=PSK,
        proposals=ike,
        esp_proposals="aes128gcm16",
    )
    return text.replace("    encap = yes\n", "    encap = yes\n    unique = never\n", 1)


def measure(responder: str, ike: str, mm: str | None, runs: list[tuple[int, int]]) -> list[RunResult]:
    out: list[RunResult] = []
    with netns.Lab() as lab:
        p = netns.two_hosts(lab)
        p.b.add_address("lo", f"{INNER_B}/32")
        if responder == "ipsecd":
            assert mm is not None
            start_daemon(
                lab, p.b, store_text=responder_store(mm), extra=("--ike-cookie-threshold", "1000000")
            )
        else:
            strongswan.Charon(p.b, charon_conf(ike), charon_options=CHARON_OPTIONS, log_level=0).start()
        cfg = initiator_config(A4, ike, "aes128gcm16", PSK.encode(), A_NET, B_NET)
        with p.a.entered(), Driver(A4, B4, cfg) as drv:
            drv.run(5, 1, 20.0)  # warm-up: first packets, ARP, imports
            for count, parallel in runs:
                out.append(drv.run(count, parallel, 60.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200, help="setups per run (x25519; modp2048: half)")
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args()
    if not netns.is_root():
        raise SystemExit("root only (network namespaces)")
    print(f"load average before: {os.getloadavg()}")
    print(
        "| IKE suite | in flight | ipsecd setups/s | strongSwan setups/s | ratio ipsecd/strongSwan | failures (ipsecd, charon) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for ike, mm in SUITES:
        n = args.count if "x25519" in ike else max(1, args.count // 2)
        runs = [(n, 1), (n, args.parallel)]
        ours = measure("ipsecd", ike, mm, runs) if mm else [None] * len(runs)
        ref = measure("charon", ike, mm, runs)
        for (_, par), a, b in zip(runs, ours, ref, strict=True):
            fails = f"{b.failed + b.timed_out}/{b.done + b.failed + b.timed_out}"
            if a is None:
                print(f"| {ike} | {par} | n/a | {b.per_s:,.0f} | n/a | -, {fails} |", flush=True)
                continue
            ratio = a.per_s / b.per_s if b.per_s else float("nan")
            fails = f"{a.failed + a.timed_out}/{a.done + a.failed + a.timed_out}, {fails}"
            print(f"| {ike} | {par} | {a.per_s:,.0f} | {b.per_s:,.0f} | {ratio:.2f} | {fails} |", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
