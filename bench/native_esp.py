"""Native ESP throughput against OpenSSL's own speed, measured in the same run.

    python3 bench/native_esp.py [--seconds 1.0] [--rounds 3]

Encrypts 1400-byte inner IPv4 packets in batches of 64 through an AES-128-GCM tunnel-mode SA
(outer IPv4 header + ESP, docs/datapath.md) on the native path and on the Python fallback, and runs
`openssl speed -evp aes-128-gcm -bytes 1024` as the reference. Each figure is the best of --rounds
(the host is shared: compare figures of one run only). Prints Gbit/s of inner bytes and the ratios.

Both sides are timed in CPU time of the measuring process, as `openssl speed` does by default (it
divides by user CPU time unless -elapsed is given): on a host shared with other jobs, wall-clock figures
of the Python side would otherwise be compared with CPU-time figures of openssl. `--wall` times both in
wall-clock time instead (openssl with -elapsed).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.native import AVAILABLE, UNAVAILABLE_REASON
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, Mode, Protocol, SAParams, TunnelAddrs

BATCH = 64


def inner_packet(size: int) -> bytes:
    n = size - 20
    hdr = bytes([0x45, 0, size >> 8, size & 0xFF, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    return hdr + os.urandom(n)


def params(alg: str) -> SAParams:
    tunnel = TunnelAddrs(ip_address("192.0.2.1"), ip_address("192.0.2.2"))
    if alg == "aes-128-gcm":
        return SAParams(
            spi=0x1000,
            protocol=Protocol.ESP,
            mode=Mode.TUNNEL,
            enc_alg=EncAlg.ENCR_AES_GCM_16,
            enc_key=os.urandom(20),
            tunnel=tunnel,
        )
    return SAParams(
        spi=0x1000,
        protocol=Protocol.ESP,
        mode=Mode.TUNNEL,
        enc_alg=EncAlg.ENCR_AES_CBC,
        enc_key=os.urandom(16),
        integ_alg=IntegAlg.AUTH_HMAC_SHA2_256_128,
        integ_key=os.urandom(32),
        iv_key=os.urandom(16),
        tunnel=tunnel,
    )


def gbps(fn: Callable[[], object], bytes_per_call: int, seconds: float, wall: bool) -> float:
    clock = time.perf_counter if wall else time.process_time
    calls = 0
    start = time.perf_counter()
    t0 = clock()
    while True:
        fn()
        calls += 1
        if time.perf_counter() - start >= seconds:
            return calls * bytes_per_call * 8 / (clock() - t0) / 1e9


def openssl_gbps(seconds: float, wall: bool) -> float:
    cmd = ["openssl", "speed", "-evp", "aes-128-gcm", "-bytes", "1024", "-seconds", str(max(1, int(seconds)))]
    out = subprocess.run(
        cmd + (["-elapsed"] if wall else []),
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    m = re.search(r"^AES-128-GCM\s+([\d.]+)k\s*$", out, re.M)
    if m is None:
        raise SystemExit(f"cannot parse openssl speed output:\n{out}")
    return float(m.group(1)) * 1000 * 8 / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wall", action="store_true", help="wall-clock time on both sides")
    args = ap.parse_args()
    if not AVAILABLE:
        raise SystemExit(f"native module not built: {UNAVAILABLE_REASON}")
    batch = [inner_packet(1400)] * BATCH
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        best["openssl"] = max(best.get("openssl", 0.0), openssl_gbps(args.seconds, args.wall))
        for alg in ("aes-128-gcm", "aes-128-cbc+sha256"):
            for backend in ("native", "python"):
                t = make_transform(params(alg), Direction.OUTBOUND, backend)
                key = f"{backend} {alg}"
                rate = gbps(lambda t=t: t.protect(batch), 1400 * BATCH, args.seconds / 2, args.wall)
                best[key] = max(best.get(key, 0.0), rate)
    ref = best["openssl"]
    basis = "wall-clock" if args.wall else "CPU"
    print(f"openssl speed -evp aes-128-gcm, 1024-B blocks: {ref:.2f} Gbit/s ({basis} time, reference)")
    for key, rate in best.items():
        if key != "openssl":
            print(f"{key:28s} 1400-B packets, batches of {BATCH}: {rate:.2f} Gbit/s, ratio {rate / ref:.2f}")


if __name__ == "__main__":
    main()
