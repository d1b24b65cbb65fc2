"""ipsecd against strongSwan's user-space IPsec (kernel-libipsec) and the plain veth, in one run (root).

    python3 bench/versus_strongswan.py [--seconds 10] [--pings 200] [--python-router]

Three setups, each in its own pair of network namespaces joined by one veth (192.0.2.1 <-> 192.0.2.2),
inner addresses 10.1.0.1 <-> 10.2.0.1 behind them:
  ipsecd:     the daemon on both ends (``ipsecd --fastpath``) with the example stores
              config/examples/forceencap-tunnel-{a,b}.toml: a tunnel rule each way, IKEv2 with a
              pre-shared key, quick mode ESP AES-128-GCM, UDP encapsulation forced (rule
              ``forceencap``: no NAT between the hosts), negotiated on
              demand by the first ping; the SAs run on the native fast path; TUN MTU 1400 as
              strongSwan's (ipsecd's automatic MTU leaves room for the largest overhead of any
              algorithm, 1372 here, and would fragment the 1388-byte UDP test packets);
  strongSwan: charon with kernel-libipsec on both ends (IKEv2 PSK, aes128gcm16, encap = yes);
  veth:       the same hosts over the veth directly (the reference for the added latency).
For each: iperf3 TCP, iperf3 UDP with 1360-byte payloads at the highest offered rate that loses < 1%
(the rate ipsecd reports as its capacity), pings 10 ms apart, and the CPU seconds per gigabit of the
tunnel processes (bench/fastpath.py ``measure``). Then the ipsecd / strongSwan ratios against the
goals of issue #8. ``--python-router`` adds a fourth setup: ipsecd without --fastpath.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fastpath import Result, measure, print_rows, run_echo, run_strongswan, run_veth
from ipsecd.datapath import fastpath as fpmod
from tests import netns, strongswan
from tests.engine_helpers import start_daemon
from tests.netns import wait_until

A_INNER, B_INNER = "10.1.0.1", "10.2.0.1"


EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"


def store(side: str) -> str:
    """The shipped example store of host ``side`` (a or b): a tunnel rule each way, IKEv2, PSK,
    AES-128-GCM, ``forceencap`` (tested by tests/test_forceencap.py)."""
    return (EXAMPLES / f"forceencap-tunnel-{side}.toml").read_text()


def run_ipsecd(args: argparse.Namespace, fastpath: bool = True) -> Result:
    with netns.Lab() as lab:
        p = netns.two_hosts(lab)
        p.a.add_address("lo", f"{A_INNER}/32")
        p.b.add_address("lo", f"{B_INNER}/32")
        # strongSwan's kernel-libipsec TUN has MTU 1400 too: 1388-byte test packets pass whole.
        extra = ("--tun-mtu", "1400", "--fastpath" if fastpath else "--no-fastpath")
        da = start_daemon(lab, p.a, store_text=store("a"), extra=extra)
        db = start_daemon(lab, p.b, store_text=store("b"), extra=extra)
        first = p.a.ping(B_INNER, count=1, wait=10, src=A_INNER)
        if first.received != 1:
            raise RuntimeError("ipsecd: the tunnel did not come up:\n" + da.proc.output()[-3000:])
        wait_until(lambda: len(db.status()["states"]) == 2, 10, what="b's SAs")
        st = da.status()
        assert all(s["encap"] == [4500, 4500] and s["mode"] == "tunnel" for s in st["states"]), st["states"]
        if fastpath:
            fp = st["fastpath"]
            print(f"  fast path: {fp['features']}; {len(fp['sas'])} SAs in it", flush=True)
            if len(fp["sas"]) != 2:
                raise RuntimeError(f"ipsecd: the negotiated SAs are not on the fast path: {fp}")
        res = measure("ipsecd", p, A_INNER, B_INNER, [da.proc.pid, db.proc.pid], args)
        if fastpath:
            stats = da.status()["fastpath"]["stats"]
            print(
                f"  a's fast path: TUN super-packets {stats['tun_rx_super_packets']},"
                f" UDP GSO messages {stats['udp_tx_gso_messages']},"
                f" coalesced TUN writes {stats['tun_tx_coalesced']}",
                flush=True,
            )
        else:
            res.name = "ipsecd (py)"
        return res


def show(results: list[Result]) -> None:
    print_rows(results, 12)
    by = {r.name: r for r in results}
    ours, veth, sw = by["ipsecd"], by["veth"], by.get("strongSwan")

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\nGoals (issue #8):")
    if sw is not None and sw.tcp_gbps > 0 and sw.udp_gbps > 0:
        tcp = ours.tcp_gbps / sw.tcp_gbps
        retr = 100 * ours.tcp_retr / ours.tcp_segments
        print(f"  TCP: ipsecd / strongSwan {tcp:.1f}x (goal >= 10x): {verdict(tcp >= 10)}")
        print(f"  TCP retransmits {retr:.3f}% of segments (goal < 1%): {verdict(retr < 1)}")
        udp = ours.udp_gbps / sw.udp_gbps
        print(
            f"  UDP delivered: ipsecd / strongSwan {udp:.1f}x (goal >= 5x): {verdict(udp >= 5)},"
            f" loss {ours.udp_loss:.2f}% at {ours.udp_offered_gbps:.3f} Gbit/s offered (goal < 1%):"
            f" {verdict(ours.udp_loss < 1)}"
        )
        for label, a, b in (
            ("TCP", ours.tcp_cpu_per_gbit, sw.tcp_cpu_per_gbit),
            ("UDP", ours.udp_cpu_per_gbit, sw.udp_cpu_per_gbit),
        ):
            if a and b:
                print(
                    f"  CPU s/Gbit {label}: ipsecd {a:.2f}, strongSwan {b:.2f}: strongSwan / ipsecd {b / a:.1f}x"
                )
    else:
        print("  strongSwan not measured: no ratios")
    p50, p99 = ours.rtt_p50 - veth.rtt_p50, ours.rtt_p99 - veth.rtt_p99
    print(f"  added RTT over veth: p50 {p50:.3f} ms (goal <= 0.2): {verdict(p50 <= 0.2)}")
    print(f"  added RTT over veth: p99 {p99:.3f} ms (goal <= 1): {verdict(p99 <= 1)}")
    print(f"  ipsecd TCP / plain veth TCP: {ours.tcp_gbps / veth.tcp_gbps:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--skip-strongswan", action="store_true")
    ap.add_argument("--python-router", action="store_true", help="also ipsecd without --fastpath")
    args = ap.parse_args()
    if not fpmod.AVAILABLE:
        print(f"fast path not built: {fpmod.UNAVAILABLE_REASON}")
        return 1
    if not netns.is_root():
        print("needs root (network namespaces)")
        return 1
    runs: list[tuple[str, Callable[[], Result]]] = [("ipsecd", lambda: run_ipsecd(args))]
    runs.append(("veth", lambda: run_veth(args)))
    if not args.skip_strongswan and strongswan.available():
        runs.append(("strongSwan", lambda: run_strongswan(args)))
    if args.python_router:
        runs.append(("ipsecd without --fastpath", lambda: run_ipsecd(args, fastpath=False)))
    results = []
    for name, run in runs:
        print(f"running {name} ...", flush=True)
        results.append(run())
    show(results)
    p50, p99 = run_echo(args)
    print(
        f"  reference: a user-space UDP echo over the veth (Python, no crypto, 2 thread wake-ups per"
        f" round trip; the tunnel has 3): RTT p50 {p50:.3f} ms, p99 {p99:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
