"""ESP/AH transform throughput: packets/s and Gbit/s, native (when importable) and Python fallback.

In the same run it measures `openssl speed -evp aes-128-gcm` and prints the ratio of AES-128-GCM
encrypt throughput at 1400-byte packets to OpenSSL's 1024-byte figure (goal >= 0.5 for native).

    python3 bench/esp.py                       # every algorithm, 64/512/1400 bytes, both backends
    python3 bench/esp.py --seconds 0.2 --algs aes128gcm
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipsecd.datapath.factory import make_transform, native_available
from ipsecd.datapath.sa import (
    ENC_INFO,
    INTEG_INFO,
    Direction,
    EncAlg,
    IntegAlg,
    Mode,
    Protocol,
    SAParams,
    TunnelAddrs,
)

SUITES: dict[str, tuple[Protocol, EncAlg, int, IntegAlg]] = {
    "aes128gcm": (Protocol.ESP, EncAlg.ENCR_AES_GCM_16, 20, IntegAlg.NONE),
    "aes256gcm": (Protocol.ESP, EncAlg.ENCR_AES_GCM_16, 36, IntegAlg.NONE),
    "chacha20poly1305": (Protocol.ESP, EncAlg.ENCR_CHACHA20_POLY1305, 36, IntegAlg.NONE),
    "aes128gmac": (Protocol.ESP, EncAlg.ENCR_NULL_AUTH_AES_GMAC, 20, IntegAlg.NONE),
    "aes128cbc-sha1": (Protocol.ESP, EncAlg.ENCR_AES_CBC, 16, IntegAlg.AUTH_HMAC_SHA1_96),
    "aes256cbc-sha256": (Protocol.ESP, EncAlg.ENCR_AES_CBC, 32, IntegAlg.AUTH_HMAC_SHA2_256_128),
    "aes256cbc-sha512": (Protocol.ESP, EncAlg.ENCR_AES_CBC, 32, IntegAlg.AUTH_HMAC_SHA2_512_256),
    "3des-sha1": (Protocol.ESP, EncAlg.ENCR_3DES, 24, IntegAlg.AUTH_HMAC_SHA1_96),
    "null-sha256": (Protocol.ESP, EncAlg.ENCR_NULL, 0, IntegAlg.AUTH_HMAC_SHA2_256_128),
    "ah-sha256": (Protocol.AH, EncAlg.ENCR_NULL, 0, IntegAlg.AUTH_HMAC_SHA2_256_128),
}
BATCH = 64
POOL_BATCHES = 32  # 2048 distinct packets to unprotect


@dataclass(frozen=True)
class Result:
    backend: str
    suite: str
    size: int
    enc_pps: float
    dec_pps: float

    def gbps(self, pps: float) -> float:
        return pps * self.size * 8 / 1e9


def sa_params(suite: str) -> SAParams:
    proto, enc, klen, integ = SUITES[suite]
    assert klen in ENC_INFO[enc].key_sizes
    return SAParams(
        spi=0x4242,
        protocol=proto,
        mode=Mode.TUNNEL,
        enc_alg=enc,
        enc_key=bytes(range(klen)),
        integ_alg=integ,
        integ_key=bytes(range(INTEG_INFO[integ].key_len)),
        tunnel=TunnelAddrs(ip_address("203.0.113.1"), ip_address("203.0.113.2")),
        iv_key=bytes(16) if enc in (EncAlg.ENCR_AES_CBC, EncAlg.ENCR_3DES) else b"",
        replay_window=4096,
    )


def inner_packet(size: int) -> bytes:
    """An IPv4/UDP packet of exactly `size` bytes (checksums left zero: nothing checks them here)."""
    payload = bytes(size - 28)
    udp = struct.pack("!HHHH", 4000, 5000, 8 + len(payload), 0) + payload
    return (
        struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, size, 1, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        )
        + udp
    )


def measure(backend: str, suite: str, size: int, seconds: float) -> Result:
    """Packets/s for `seconds` of protect, then of unprotect (outputs are dropped as they come, so
    the measurement does not pile up memory)."""
    p = sa_params(suite)
    batch = [inner_packet(size)] * BATCH
    out = make_transform(p, Direction.OUTBOUND, backend)
    out.protect(batch)  # warm-up
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        sent += len(out.protect(batch))
    enc_pps = sent / (time.perf_counter() - start)
    # a pool of distinct packets, unprotected again and again by fresh inbound SAs (replay window)
    pool = [w for w in make_transform(p, Direction.OUTBOUND, backend).protect(batch * POOL_BATCHES) if w]
    batches = [pool[i : i + BATCH] for i in range(0, len(pool), BATCH)]
    received = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        inb = make_transform(p, Direction.INBOUND, backend)
        for chunk in batches:
            received += sum(1 for g in inb.unprotect(chunk) if g is not None)
            if time.perf_counter() >= deadline:
                break
        assert inb.counters().drops() == {}, inb.counters().drops()
    dec_pps = received / (time.perf_counter() - start)
    return Result(backend, suite, size, enc_pps, dec_pps)


def per_packet_us(
    backend: str, suite: str, size: int, rounds: int = 7, batch: int = 256
) -> tuple[float, float]:
    """Best-of-`rounds` microseconds per packet to protect and to unprotect a batch (less load noise)."""
    p = sa_params(suite)
    pkts = [inner_packet(size)] * batch
    best_enc = best_dec = float("inf")
    for _ in range(rounds):
        out = make_transform(p, Direction.OUTBOUND, backend)
        start = time.perf_counter()
        wires = out.protect(pkts)
        best_enc = min(best_enc, time.perf_counter() - start)
        inb = make_transform(p, Direction.INBOUND, backend)
        start = time.perf_counter()
        inb.unprotect([w for w in wires if w is not None])
        best_dec = min(best_dec, time.perf_counter() - start)
    return best_enc / batch * 1e6, best_dec / batch * 1e6


def openssl_aes128gcm_1024() -> float | None:
    """OpenSSL's AES-128-GCM throughput at 1024-byte blocks, in bytes/s (None if unavailable)."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    proc = subprocess.run(
        [exe, "speed", "-elapsed", "-seconds", "1", "-evp", "aes-128-gcm"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    header = None
    for line in proc.stdout.splitlines():
        if line.startswith("type"):
            header = re.findall(r"(\d+) bytes", line)
        elif header and line.lower().startswith("aes-128-gcm"):
            values = re.findall(r"([\d.]+)k", line)
            return float(values[header.index("1024")]) * 1000.0
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measurement and direction")
    ap.add_argument("--sizes", default="64,512,1400")
    ap.add_argument("--algs", default=",".join(SUITES))
    ap.add_argument("--latency", action="store_true", help="only best-of-7 us/packet at 1400 B")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    suites = args.algs.split(",")
    backends = (["native"] if native_available() else []) + ["python"]
    if args.latency:
        for backend in backends:
            for suite in suites:
                enc, dec = per_packet_us(backend, suite, 1400)
                print(
                    f"{backend:8} {suite:18} 1400 B: protect {enc:6.1f} us/packet, unprotect {dec:6.1f} us/packet"
                )
        return 0
    print(f"backends: {', '.join(backends)}" + ("" if native_available() else " (native module absent)"))
    print(
        f"{'backend':8} {'suite':18} {'size':>5} {'enc pkt/s':>11} {'enc Gbit/s':>10} {'dec pkt/s':>11} {'dec Gbit/s':>10}"
    )
    results: list[Result] = []
    for backend in backends:
        for suite in suites:
            for size in sizes:
                r = measure(backend, suite, size, args.seconds)
                results.append(r)
                print(
                    f"{r.backend:8} {r.suite:18} {r.size:5d} {r.enc_pps:11.0f} {r.gbps(r.enc_pps):10.3f}"
                    f" {r.dec_pps:11.0f} {r.gbps(r.dec_pps):10.3f}",
                    flush=True,
                )
    ref = openssl_aes128gcm_1024()
    if ref is None:
        print("openssl speed: unavailable, no ratio")
        return 0
    ref_gbps = ref * 8 / 1e9
    print(f"openssl speed -evp aes-128-gcm, 1024-byte blocks: {ref / 1e6:.1f} MB/s = {ref_gbps:.3f} Gbit/s")
    for backend in backends:
        match = [r for r in results if r.backend == backend and r.suite == "aes128gcm" and r.size == 1400]
        if not match:
            continue
        ratio = match[0].gbps(match[0].enc_pps) / ref_gbps
        print(
            f"ratio {backend} AES-128-GCM encrypt @1400 B / openssl @1024 B: {ratio:.3f} (goal >= 0.5 for native)"
        )
    if not native_available():
        print("native module absent: only the fallback ratio is shown")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
