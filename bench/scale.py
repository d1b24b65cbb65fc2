"""The fast path with many SAs: table install/remove cost and memory, and throughput with 1 against
K active tunnels, in one run (root).

    python3 bench/scale.py [--sas 10000] [--tunnels 1000] [--seconds 5] [--warmup 1] [--burst 64]
                           [--repeat 3] [--skip-tables] [--skip-throughput]

1. Tables, in process (no namespaces): install --sas SAs (half outbound, half inbound) and as many
   /32 filters in one `FastPath` with its threads running, then remove them. Printed: the seconds,
   the native heap growth per SA and per filter (glibc `mallinfo2`: the fast path's entries, hash
   tables and the OpenSSL cipher contexts; the wrapper's Python dict growth is subtracted), the
   table entry sizes (`table_sizes()`) and the process RSS growth. Goals (issue #8): 10,000 SAs
   (with their filters) installed in < 1 s, <= 2 KiB per SA in the native tables.

2. Throughput: two namespaces on one veth, tests/fastpath_peer.py on both ends with `tunnel_set(K)`
   installed (K AES-128-GCM tunnel-mode SA pairs, ESP in UDP 4500, one /32 PROTECT filter per
   tunnel; tunnel k carries 10.1.0.0/16 <-> b's inner host 10.2.x.y). The generator is a's own
   fast path: `FastPath.inject` of pre-built 1388-byte IPv4 UDP packets in batches of 64 (filter
   lookup, SA, encrypt and sendmmsg with UDP GSO, all in C), as fast as it goes, for warmup +
   seconds; the packets go round-robin over the active tunnels (`--burst` packets per tunnel in a
   row; 1 = strict round robin). b decrypts (recvmmsg, UDP GRO, SPI lookup, decrypt, TUN write with
   its coalescer) and its kernel drops the packets in nftables prerouting, where a counter gives the
   delivered bytes over the measured seconds. The same generator code, packet size and batch run
   for every setup; only the number of tunnels installed / active and the burst change:
     1 tunnel         1 installed, 1 active (the reference)
     K tunnels        K installed, K active, strict round robin (the goal: >= reference / 1.5)
     K inst, 1 active K installed, traffic to one (what bigger tables alone cost)
     K tunnels burst  K installed, K active, --burst packets per tunnel in a row (what batching
                      per SA recovers)
   Each setup runs --repeat times (rounds interleaved, a fresh pair of namespaces each time); the
   best round per setup counts, since other jobs on the host only ever slow a run down.
   What bounds the figure: CPU. a's injecting thread (encrypt + send, including the kernel's veth
   and UDP receive work it triggers for b) and b's RX thread (decrypt + TUN write + the kernel's
   TUN receive) share 2 vCPUs with each other and whatever else runs on the host. With one tunnel,
   64 consecutive packets share an SA, so a sends them as GSO messages of up to 45 segments, b gets
   them as GRO batches and writes coalesced TUN super-packets; with strict round robin over K
   tunnels no two consecutive packets share an SA (GSO merges only same-SA runs) nor an inner flow
   (the TUN coalescer has 8 flow slots), so every packet is its own datagram and TUN write. CPU
   microseconds per delivered packet (utime + stime of both peer processes) are printed next to
   the rates: they vary less with the host's load than the rates do. "offered pps" is a's inject
   rate over its whole run (warm-up included), "rcvbuf drops" b's UDP RcvbufErrors in the window.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipsecd.datapath import fastpath as fpmod
from ipsecd.datapath.fastpath import Action, FastFilter, FastPath
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, Mode, Protocol, SAParams, TunnelAddrs, UdpEncap
from tests import netns
from tests.fastpath_peer import start_pair

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PKT_LEN = 1388  # inner IPv4 packet: fits the 1400-byte TUN MTU of tests/fastpath_peer.py
INSTALL_GOAL_S = 1.0
BYTES_GOAL = 2048
RATIO_GOAL = 1.5


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (fields 14 and 15 of /proc/PID/stat), threads included."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK


# --- 1. tables ---------------------------------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _heap_reader() -> Callable[[], _MallInfo2] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    fn = getattr(libc, "mallinfo2", None)
    if fn is None:  # glibc < 2.33
        return None
    fn.restype = _MallInfo2
    return cast("Callable[[], _MallInfo2]", fn)


_MALLINFO2 = _heap_reader()


def native_heap() -> int | None:
    """Bytes malloc has handed out and not got back (all arenas + mmapped chunks), or None."""
    if _MALLINFO2 is None:
        return None
    m = _MALLINFO2()
    return int(m.uordblks) + int(m.hblkhd)


def settled_heap(timeout: float = 2.0) -> int | None:
    """native_heap() once it stops moving (two reads 50 ms apart agree, at most `timeout` s): the
    fast path's RX thread allocates its receive buffers (about 2.7 MB) just after start(), which a
    read right after start() would otherwise count as SA memory."""
    last = native_heap()
    deadline = time.monotonic() + timeout
    while last is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        now = native_heap()
        if now == last:
            break
        last = now
    return last


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def bench_sa(spi: int, n: int) -> SAParams:
    return SAParams(
        spi=spi,
        protocol=Protocol.ESP,
        mode=Mode.TUNNEL,
        enc_alg=EncAlg.ENCR_AES_GCM_16,
        enc_key=n.to_bytes(4, "big") * 5,
        integ_alg=IntegAlg.NONE,
        integ_key=b"",
        encap=UdpEncap(4500, 4500),
        tunnel=TunnelAddrs(ip_address("192.0.2.1"), ip_address("192.0.2.2")),
    )


@dataclass(frozen=True)
class TableResult:
    n: int
    install_sas: float
    install_filters: float
    remove_filters: float
    remove_sas: float
    sa_entry_bytes: int
    rule_entry_bytes: int
    heap_per_sa: float | None  # native heap growth per SA (Python dict growth subtracted)
    heap_per_filter: float | None
    rss_per_sa: float
    maxrss_per_sa: float


def install_remove(n: int) -> TableResult:
    """Install n SAs (even: outbound, odd: inbound) and n /32 PROTECT filters in a running fast path
    over a socketpair + a loopback UDP socket, then remove them; timed with perf_counter."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    esp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    esp.bind(("127.0.0.1", 0))
    params = [bench_sa(0x10000 + i, i) for i in range(n)]
    nets = [ip_network(f"10.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}/32") for i in range(n)]
    src = ip_network("10.1.0.0/24")
    with FastPath(a.detach(), esp.detach()) as fp:
        fp.start()
        dirs = fp._directions  # the wrapper's handle -> direction dict: Python, not the native tables
        h0, d0, r0 = settled_heap(), sys.getsizeof(dirs), rss()
        m0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        handles = [
            fp.add_sa(p, Direction.INBOUND if i % 2 else Direction.OUTBOUND) for i, p in enumerate(params)
        ]
        t_sa = time.perf_counter() - t
        h1, d1, r1 = native_heap(), sys.getsizeof(dirs), rss()
        m1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        filters = [FastFilter(i + 1, 10, src, nets[i], Action.PROTECT, sa=h) for i, h in enumerate(handles)]
        h2 = native_heap()
        t = time.perf_counter()
        for f in filters:
            fp.add_filter(f)
        t_f = time.perf_counter() - t
        h3 = native_heap()
        sizes = fp.table_sizes()
        assert sizes["sas"] == n and sizes["rules"] == n, sizes
        t = time.perf_counter()
        for i in range(n):
            fp.remove_filter(i + 1)
        t_fr = time.perf_counter() - t
        t = time.perf_counter()
        for h in handles:
            fp.remove_sa(h)
        t_sr = time.perf_counter() - t
    b.close()
    per_sa = per_f = None
    if h0 is not None and h1 is not None and h2 is not None and h3 is not None:
        per_sa = ((h1 - h0) - max(0, d1 - d0)) / n
        per_f = (h3 - h2) / n
    return TableResult(
        n,
        t_sa,
        t_f,
        t_fr,
        t_sr,
        sizes["sa_entry_bytes"],
        sizes["rule_entry_bytes"],
        per_sa,
        per_f,
        (r1 - r0) / n,
        (m1 - m0) * 1024 / n,
    )


def print_tables(r: TableResult, goals: bool = False) -> None:
    n = r.n
    print(f"\nTables ({n} SAs, half inbound; {n} /32 filters), fast path threads running:")
    print(f"  install SAs      {r.install_sas:7.3f} s  ({r.install_sas / n * 1e6:.1f} us each)")
    print(f"  remove SAs       {r.remove_sas:7.3f} s")
    print(f"  install filters  {r.install_filters:7.3f} s   remove {r.remove_filters:.3f} s")
    print(
        f"  entry sizes: SA {r.sa_entry_bytes} B, filter {r.rule_entry_bytes} B;"
        f" max RSS growth while installing SAs {r.maxrss_per_sa:.0f} B per SA"
        " (incl. OpenSSL contexts and the Python SAParams)"
    )
    if not goals:
        return
    if r.heap_per_sa is not None and r.heap_per_filter is not None:
        print(
            f"  native heap (mallinfo2) per SA {r.heap_per_sa:.0f} B (entry {r.sa_entry_bytes} B + cipher"
            f" contexts + SPI hash), per filter {r.heap_per_filter:.0f} B; RSS growth per SA"
            f" {r.rss_per_sa:.0f} B"
        )
    total = r.install_sas + r.install_filters
    print(
        f"goal: {n} SAs + {n} filters installed in {total:.3f} s (SAs alone {r.install_sas:.3f} s),"
        f" goal < {INSTALL_GOAL_S:.0f} s: {'PASS' if total < INSTALL_GOAL_S else 'FAIL'}"
    )
    per_sa = r.heap_per_sa if r.heap_per_sa is not None else r.rss_per_sa
    what = "native heap" if r.heap_per_sa is not None else "RSS (no mallinfo2)"
    print(
        f"goal: {per_sa:.0f} B per SA in the native tables ({what}), goal <= {BYTES_GOAL} B:"
        f" {'PASS' if per_sa <= BYTES_GOAL else 'FAIL'}"
    )


# --- 2. throughput -----------------------------------------------------------------------------

SINK = """table ip sink {
    chain pre {
        type filter hook prerouting priority -300; policy accept;
        iifname "fp0" udp dport 9 counter drop
    }
}
"""


@dataclass(frozen=True)
class Rate:
    name: str
    installed: int
    active: int
    burst: int
    seconds: float
    delivered_bytes: int
    offered_pps: float  # a's injection rate over its whole run (warm-up included)
    cpu: float  # CPU seconds of both peer processes over the measured window
    rcvbuf_errors: int  # b's UDP receive-buffer drops over the window

    @property
    def packets(self) -> float:
        return self.delivered_bytes / PKT_LEN

    @property
    def pps(self) -> float:
        return self.packets / self.seconds

    @property
    def gbps(self) -> float:
        return self.delivered_bytes * 8 / self.seconds / 1e9

    @property
    def cpu_us_per_packet(self) -> float:
        return self.cpu / self.packets * 1e6 if self.packets else float("inf")


def _sink_bytes(host: netns.Host) -> int:
    out = host.run(["nft", "-j", "list", "table", "ip", "sink"]).stdout
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule is None:
            continue
        for expr in rule["expr"]:
            if "counter" in expr:
                return int(expr["counter"]["bytes"])
    raise RuntimeError("no counter in b's sink table")


def _rcvbuf_errors(host: netns.Host) -> int:
    lines = [
        ln.split() for ln in host.run(["cat", "/proc/net/snmp"]).stdout.splitlines() if ln.startswith("Udp:")
    ]
    return int(dict(zip(lines[0], lines[1], strict=True))["RcvbufErrors"])


def run_rate(name: str, installed: int, active: int, burst: int, args: argparse.Namespace) -> Rate:
    with netns.Lab() as lab:
        go = lab.scratch("go")
        gen = ["--generate", str(args.warmup + args.seconds + 1.0), "--gen-tunnels", str(active)]
        gen += ["--gen-burst", str(burst), "--gen-len", str(PKT_LEN), "--gen-wait-file", str(go)]
        pair, pa, pb = start_pair(lab, tunnels=installed, extra=(gen, []), ready_timeout=60)
        pair.b.nft(SINK)
        go.touch()
        pa.wait_output("generating", 30)
        time.sleep(args.warmup)
        b0, e0, c0 = _sink_bytes(pair.b), _rcvbuf_errors(pair.b), cpu_seconds([pa.pid, pb.pid])
        t0 = time.monotonic()
        time.sleep(args.seconds)
        b1, e1, c1 = _sink_bytes(pair.b), _rcvbuf_errors(pair.b), cpu_seconds([pa.pid, pb.pid])
        t1 = time.monotonic()
        pa.wait_output(r"generated \d+ in", args.seconds + 30)
        line = next(ln for ln in pa.output().splitlines() if ln.startswith("generated "))
        sent, secs = int(line.split()[1]), float(line.split()[3])
        # pa.pid / pb.pid are `ip netns exec`, which execs the Python peer: the same process.
        return Rate(name, installed, active, burst, t1 - t0, b1 - b0, sent / secs, c1 - c0, e1 - e0)


def print_rates(rates: list[Rate]) -> None:
    ref = rates[0]
    print(
        f"\n{'setup':<28} {'installed':>9} {'active':>6} {'burst':>5} {'offered pps':>11} {'delivered pps':>13}"
        f" {'Gbit/s':>7} {'CPU us/pkt':>10} {'rcvbuf drops':>12} {'ref / this':>10}"
    )
    for r in rates:
        ratio = ref.pps / r.pps if r.pps else float("inf")
        print(
            f"{r.name:<28} {r.installed:9d} {r.active:6d} {r.burst:5d} {r.offered_pps:11.0f} {r.pps:13.0f}"
            f" {r.gbps:7.3f} {r.cpu_us_per_packet:10.2f} {r.rcvbuf_errors:12d} {ratio:10.2f}"
        )


def best_of(rounds: list[list[Rate]]) -> list[Rate]:
    """Per setup, the round that delivered most (other jobs on the host only ever slow a run down)."""
    return [max(runs, key=lambda r: r.pps) for runs in zip(*rounds, strict=True)]


def goal_line(ref: Rate, many: Rate, rounds: list[list[Rate]]) -> None:
    ratio = ref.pps / many.pps if many.pps else float("inf")
    cpu = statistics.median(rs[1].cpu_us_per_packet / rs[0].cpu_us_per_packet for rs in rounds)
    print(
        f"goal: {many.active} active tunnels deliver {many.gbps:.3f} Gbit/s against {ref.gbps:.3f} with 1 (best of"
        f" {len(rounds)}): 1 tunnel / {many.active} tunnels = {ratio:.2f}x, goal <= {RATIO_GOAL}x:"
        f" {'PASS' if ratio <= RATIO_GOAL else 'FAIL'}; CPU us per packet {many.active} / 1 tunnel (median of"
        f" rounds) {cpu:.2f}x"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sas", type=int, default=10000, help="SAs (and filters) for the table part")
    p.add_argument("--tunnels", type=int, default=1000, help="K for the throughput part")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per setup")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument(
        "--burst", type=int, default=64, help="packets per tunnel in a row for the burst setup (0: skip)"
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="rounds of all setups (the best round per setup counts)"
    )
    p.add_argument("--skip-tables", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    if not fpmod.AVAILABLE:
        print(f"fast path not built: {fpmod.UNAVAILABLE_REASON}")
        return 1
    if not args.skip_tables:
        print_tables(install_remove(args.sas), goals=True)
    if args.skip_throughput:
        return 0
    if not netns.is_root():
        print("the throughput part needs root (network namespaces)")
        return 1
    k = args.tunnels
    setups = [
        ("1 tunnel", 1, 1, 1),
        (f"{k} tunnels", k, k, 1),
        (f"{k} installed, 1 active", k, 1, 1),
    ]
    if args.burst > 1:
        setups.append((f"{k} tunnels, bursts of {args.burst}", k, k, args.burst))
    print(
        f"\nThroughput: {PKT_LEN}-byte packets injected at a, delivered at b, {args.seconds:g} s each"
        f" after {args.warmup:g} s warm-up ...",
        flush=True,
    )
    rounds: list[list[Rate]] = []
    for rep in range(args.repeat):
        rounds.append(
            [run_rate(name, installed, active, burst, args) for name, installed, active, burst in setups]
        )
        print(f"\nround {rep + 1} of {args.repeat}:")
        print_rates(rounds[-1])
    best = best_of(rounds)
    if args.repeat > 1:
        print(f"\nbest of {args.repeat} rounds per setup:")
        print_rates(best)
    goal_line(best[0], best[1], rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
