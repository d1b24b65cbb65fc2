"""What the batched io wrappers cost against bare system-call loops (root: uses namespaces).

    python3 bench/io_batch.py [--packets N] [--rounds R]

- UDP send: ``UdpSocket.send_batch`` (64 per call) against a bare ``sock.sendto`` loop, 1400-byte
  datagrams from one namespace to a socket in another.
- UDP receive: ``UdpSocket.recv_batch`` against a bare ``recvmsg`` loop with the same pktinfo
  control message, both draining N queued datagrams.
- The same with ``gso=True`` on the sender (UDP_SEGMENT) and UDP_GRO on the receiver (the queued
  datagrams come from GSO sends; the bare loop reads them without GRO, one per call).
- TUN write: ``TunDevice.write_batch`` against a bare ``os.write`` loop (IPv4/UDP packets delivered
  to the host stack). TUN read: ``read_batch`` against ``os.read``, draining 400 queued packets
  (the device queue holds 500) per round.

Reference and wrapper alternate R times; the medians are printed with their ratio (above 1: the
wrapper is slower). Figures move with the machine's load: compare within one run only.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipsecd.io import udp
from ipsecd.io.netlink import Netlink
from ipsecd.io.raw import ipv4_header
from ipsecd.io.tun import TunDevice
from tests import netns

PAYLOAD = b"x" * 1400
SO_RCVBUFFORCE = 33

Row = tuple[str, float, float]


def _pps(run: Callable[[], int], prepare: Callable[[], None] | None = None) -> float:
    if prepare is not None:
        prepare()
    t = time.perf_counter()
    n = run()
    return n / (time.perf_counter() - t)


def _compare(what: str, rounds: int, ref: Callable[[], float], new: Callable[[], float]) -> Row:
    a, b = [], []
    for _ in range(rounds):
        a.append(ref())
        b.append(new())
    return what, statistics.median(a), statistics.median(b)


def bench_udp(lab: netns.Lab, n: int, rounds: int) -> list[Row]:
    p = netns.two_hosts(lab)
    with p.b.entered():
        rx = udp.UdpSocket.open("192.0.2.2", 4500)
        rx.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)  # queue all n datagrams
        rx_gro = udp.UdpSocket.open("192.0.2.2", 4501, gro=True)
        rx_gro.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
    with p.a.entered():
        tx = udp.UdpSocket.open("192.0.2.1", 0, sndbuf=4 << 20)
    dst = ("192.0.2.2", 4500)
    batch: list[tuple[bytes, udp.Address | None]] = [(PAYLOAD, dst)] * 64
    with rx, rx_gro, tx:
        tx.sock.setblocking(True)  # block rather than drop when the send buffer fills (both loops)

        def bare_send() -> int:
            for _ in range(n):
                tx.sock.sendto(PAYLOAD, dst)
            return n

        def batched_send() -> int:
            done = 0
            while done < n:
                done += tx.send_batch(batch[: min(64, n - done)])
            return done

        def drain_bare() -> int:
            got = 0
            recvmsg = rx.sock.recvmsg
            while True:
                try:
                    recvmsg(65535, 64)
                except BlockingIOError:
                    return got
                got += 1

        def drain_batched() -> int:
            got = 0
            while b := rx.recv_batch(64):
                got += len(b)
            return got

        def refill() -> None:
            drain_bare()
            bare_send()
            time.sleep(0.2)

        rows = [_compare("udp send 1400 B", rounds, lambda: _pps(bare_send), lambda: _pps(batched_send))]
        drain_bare()
        rows.append(
            _compare(
                "udp recv 1400 B",
                rounds,
                lambda: _pps(drain_bare, refill),
                lambda: _pps(drain_batched, refill),
            )
        )
        # UDP GSO on send (44 x 1400 B per sendmsg here), and GRO on receive of GSO-sent bursts.
        tx.gso = True
        rows.append(
            _compare("udp send 1400 B, GSO", rounds, lambda: _pps(bare_send), lambda: _pps(batched_send))
        )
        tx.gso = False

        def refill_gso() -> None:  # GSO bursts to the plain socket, drained one per recvmsg
            drain_bare()
            tx.gso = True
            batched_send()
            tx.gso = False
            time.sleep(0.2)

        to_gro: list[tuple[bytes, udp.Address | None]] = [(PAYLOAD, ("192.0.2.2", 4501))] * 64

        def refill_gro() -> None:  # the same bursts to the GRO socket (coalesced on arrival)
            while rx_gro.recv_batch(1024):
                pass
            tx.gso = True
            done = 0
            while done < n:
                done += tx.send_batch(to_gro[: min(64, n - done)])
            tx.gso = False
            time.sleep(0.2)

        def drain_gro() -> int:
            got = 0
            while b := rx_gro.recv_batch(64):
                got += len(b)
            return got

        rows.append(
            _compare(
                "udp recv 1400 B, GRO",
                rounds,
                lambda: _pps(drain_bare, refill_gso),
                lambda: _pps(drain_gro, refill_gro),
            )
        )
    return rows


def _udp_packet(src: str, dst: str, dport: int) -> bytes:
    body = struct.pack("!HHHH", 40000, dport, 8 + len(PAYLOAD), 0) + PAYLOAD  # checksum 0: none (IPv4)
    return ipv4_header(src, dst, 17, len(body)) + body


def bench_tun(lab: netns.Lab, n: int, rounds: int) -> list[Row]:
    h = lab.host("tun")
    h.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
    with h.entered():
        tun = TunDevice.open("iptb0", mtu=1500)
        with Netlink() as nl:
            nl.add_address("iptb0", "10.77.0.1/32")
            nl.add_route("10.78.0.0/24", dev="iptb0")
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("10.77.0.1", 9999))
        src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pkt = _udp_packet("10.78.0.5", "10.77.0.1", 9999)  # "from the tunnel", for the host
    fd = tun.fileno()
    with tun, sink, src:

        def bare_write() -> int:
            for _ in range(n):
                os.write(fd, pkt)
            return n

        def batched_write() -> int:
            done = 0
            b = [pkt] * 64
            while done < n:
                done += tun.write_batch(b[: min(64, n - done)])
            return done

        def fill() -> None:
            for _ in range(400):
                src.sendto(PAYLOAD, ("10.78.0.9", 9))

        def bare_read() -> int:
            got = 0
            while True:
                try:
                    os.read(fd, 65535)
                except BlockingIOError:
                    return got
                got += 1

        def batched_read() -> int:
            got = 0
            while b := tun.read_batch(64):
                got += len(b)
            return got

        return [
            _compare("tun write 1428 B", rounds, lambda: _pps(bare_write), lambda: _pps(batched_write)),
            _compare(
                "tun read 1428 B (400 queued)",
                rounds * 5,
                lambda: _pps(bare_read, fill),
                lambda: _pps(batched_read, fill),
            ),
        ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not netns.is_root():
        print("io_batch: needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    with netns.Lab() as lab:
        rows = bench_udp(lab, args.packets, args.rounds) + bench_tun(lab, args.packets, args.rounds)
    print(f"{'what':30} {'bare pkt/s':>11} {'wrapper pkt/s':>14} {'bare/wrapper':>13}")
    for what, ref, new in rows:
        print(f"{what:30} {ref:11.0f} {new:14.0f} {ref / new:13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
