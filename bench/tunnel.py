"""Two ipsecd hosts with a manual-SA tunnel against the plain veth, in the same run (root).

    python3 bench/tunnel.py [--seconds S] [--pings N] [--backend auto|native|python] [--fastpath]

Host a (192.0.2.1, inner 10.1.0.1) and host b (192.0.2.2, inner 10.2.0.1) run ipsecd with one
tunnel-mode ESP SA per direction (AES-128-GCM, UDP-encapsulated on 4500) from the store's
``[xfrm]`` table. Measured through the tunnel (inner addresses) and over the plain veth (outer
addresses, not covered by any policy):

- iperf3 TCP, a -> b, S seconds;
- iperf3 UDP, 1360-byte payloads, unlimited rate, a -> b, S seconds (received rate and loss);
- N pings at 10 ms intervals: RTT p50 / p90 / p99.

With ``--fastpath`` the daemons are then restarted with ``ipsecd --fastpath`` (same namespaces,
same SAs) and the tunnel is measured again: a third column, the native fast path, next to the
Python router's. Prints Gbit/s and milliseconds with the tunnel/plain ratios. Both daemons and iperf3 share the
machine's CPUs: compare figures of one run only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.engine_helpers import A4, B4, INNER_A, INNER_B, start_daemon, xfrm_store
from tests.netns import Host, Lab, two_hosts


def _udp(client: Host, server: Host, dst: str, seconds: float, src: str | None) -> tuple[float, float]:
    server.iperf3_server(port=5202)
    extra = ["-l", "1360"] + (["-B", src] if src else [])
    res = client.iperf3_client(dst, port=5202, seconds=seconds, udp_rate="0", extra=extra)
    lost = res.lost_percent or 0.0
    received = res.raw["end"].get("sum_received", {}).get("bits_per_second")
    rate = float(received) if received else res.sent_bps * (1 - lost / 100)
    return rate / 1e9, lost


def _tcp(client: Host, server: Host, dst: str, seconds: float, src: str | None) -> tuple[float, int]:
    server.iperf3_server(port=5201)
    res = client.iperf3_client(dst, port=5201, seconds=seconds, extra=["-B", src] if src else [])
    return res.received_bps / 1e9, res.retransmits or 0


def _pings(client: Host, dst: str, count: int, src: str | None) -> list[float]:
    r = client.ping(dst, count=count, interval=0.01, wait=1.0, src=src)
    return sorted(r.rtts_ms)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--backend", choices=("auto", "native", "python"), default="auto")
    ap.add_argument("--fastpath", action="store_true", help="also measure the daemons with --fastpath")
    args = ap.parse_args()
    with Lab() as lab:
        p = two_hosts(lab)
        p.a.run(["ip", "addr", "add", f"{INNER_A}/32", "dev", "lo"])
        p.b.run(["ip", "addr", "add", f"{INNER_B}/32", "dev", "lo"])
        # 1400: the tunnel's ESP-in-UDP GCM overhead over IPv4 is 65 bytes, so the UDP test's
        # 1388-byte inner packets go unfragmented (the automatic MTU, 1372, allows for the worst case).
        extra = ("--backend", args.backend, "--tun-mtu", "1400", "--no-fastpath")
        da = start_daemon(lab, p.a, store_text=xfrm_store("esp-gcm", "tunnel", True, A4, B4), extra=extra)
        db = start_daemon(lab, p.b, store_text=xfrm_store("esp-gcm", "tunnel", True, B4, A4), extra=extra)
        backend = da.status()["states"][0]["backend"]
        results: dict[str, dict[str, float]] = {}
        cases = [("plain", B4, None), ("tunnel", INNER_B, INNER_A)]
        if args.fastpath:
            cases.append(("fastpath", INNER_B, INNER_A))
        router: dict[str, int] = {}
        fast: dict[str, Any] | None = None
        for name, dst, src in cases:
            if name == "fastpath":  # the same hosts again, the daemons restarted with --fastpath
                router = da.status()["router"]
                for d in (da, db):
                    d.proc.stop()
                fast = (*extra[:-1], "--fastpath")
                da = start_daemon(lab, p.a, store=da.store, extra=fast)
                db = start_daemon(lab, p.b, store=db.store, extra=fast)
            tcp, retr = _tcp(p.a, p.b, dst, args.seconds, src)
            udp, lost = _udp(p.a, p.b, dst, args.seconds, src)
            rtts = _pings(p.a, dst, args.pings, src)
            results[name] = {
                "tcp": tcp,
                "retr": retr,
                "udp": udp,
                "lost": lost,
                "p50": _pct(rtts, 0.5),
                "p90": _pct(rtts, 0.9),
                "p99": _pct(rtts, 0.99),
                "pings": len(rtts),
                "mean": statistics.fmean(rtts) if rtts else float("nan"),
            }
        if args.fastpath:
            fast = da.status()["fastpath"]
        else:
            router = da.status()["router"]
    plain, tun = results["plain"], results["tunnel"]
    fp = results.get("fastpath")
    print(f"ipsecd tunnel (AES-128-GCM, ESP-in-UDP, tunnel mode), backend {backend}, {args.seconds:g} s runs")
    head = f"{'':24}{'plain veth':>14}{'tunnel':>14}{'tunnel/plain':>14}"
    print(head + (f"{'fastpath':>14}{'fast/plain':>14}{'fast/tunnel':>14}" if fp else ""))
    rows = [
        ("iperf3 TCP Gbit/s", "tcp", "{:.3f}"),
        ("  TCP retransmits", "retr", "{:.0f}"),
        ("iperf3 UDP 1360 Gbit/s", "udp", "{:.3f}"),
        ("  UDP loss %", "lost", "{:.1f}"),
        ("ping RTT p50 ms", "p50", "{:.3f}"),
        ("ping RTT p90 ms", "p90", "{:.3f}"),
        ("ping RTT p99 ms", "p99", "{:.3f}"),
        ("pings answered", "pings", "{:.0f}"),
    ]
    for label, key, fmt in rows:
        a, b = plain[key], tun[key]
        ratio = f"{b / a:.3f}" if a else "-"
        line = f"{label:24}{fmt.format(a):>14}{fmt.format(b):>14}{ratio:>14}"
        if fp:
            c = fp[key]
            line += (
                f"{fmt.format(c):>14}{(f'{c / a:.3f}' if a else '-'):>14}{(f'{c / b:.3f}' if b else '-'):>14}"
            )
        print(line)
    print(
        f"daemon a (Python router): {router['protected']} packets protected, {router['delivered']} delivered, "
        f"looped {router['looped']}"
    )
    if fast is not None:
        print(f"daemon a --fastpath: {fast['features']}")
        for sa in fast["sas"]:
            cnt = sa["counters"] or {}
            sent, got = cnt.get("packets_sent"), cnt.get("packets_received")
            print(f"  SA {sa['spi']} -> {sa['dst']}: {sent} sent, {got} received")
        print(f"  slow-path packets to the Python router: {fast['slow_packets']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
