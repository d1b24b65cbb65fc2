"""A tunnel endpoint for the fast-path namespace tests and bench/fastpath.py (not the daemon).

    python3 -m tests.fastpath_peer --mode fast|python --tun NAME --tun-addr 10.1.0.1
        --local-net 10.1.0.0/24 --remote-net 10.2.0.0/24 --local 192.0.2.1 --peer 192.0.2.2
        --spi-out 0x1001 --spi-in 0x2002 --key-out HEX --key-in HEX [--no-vnet] [--mtu 1400]
        [--tunnels K --side a|b] [--generate SECONDS --gen-tunnels K --gen-burst N --gen-len BYTES]

Manual AES-128-GCM SAs in tunnel mode, ESP in UDP on port 4500 (RFC 3948). `fast` runs
ipsecd.datapath.fastpath (C threads); `python` runs a plain loop over the Python fallback transform
(`make_transform(backend="python")`), so a test can put the two on either end of one tunnel.
Prints "ready ..." once the TUN is up and routed; on SIGTERM shuts down and prints
"closed in S s" and the counters as JSON.

`--tunnels K --side a|b` (fast mode) installs K tunnels instead of the one given by --spi-*/--key-*
(`tunnel_set`, the same on both ends, mirrored): tunnel k protects 10.1.0.0/16 <-> one inner host of
b, `tunnel_host(k)`, with its own SA pair. `--generate SECONDS` then makes this end a traffic source
for bench/scale.py: plain UDP packets (`gen_packets`) to the first --gen-tunnels hosts, round-robin
(--gen-burst packets per host in a row), go through `FastPath.inject` (filter lookup, SA, encrypt,
sendmmsg with GSO in C) in batches of 64 for SECONDS; prints "generating" first and "generated N".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address, ip_network
from types import FrameType

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.fastpath import Action, FastFilter, FastPath, open_tun
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, Mode, Protocol, SAParams, TunnelAddrs, UdpEncap
from ipsecd.io.tun import TunDevice
from tests import netns

PORT = 4500
SO_SNDBUFFORCE = 32  # <asm-generic/socket.h>
SO_RCVBUFFORCE = 33


def _sa(spi: int, key: bytes, src: str, dst: str) -> SAParams:
    return SAParams(
        spi=spi,
        protocol=Protocol.ESP,
        mode=Mode.TUNNEL,
        enc_alg=EncAlg.ENCR_AES_GCM_16,
        enc_key=key,
        integ_alg=IntegAlg.NONE,
        integ_key=b"",
        encap=UdpEncap(PORT, PORT),
        tunnel=TunnelAddrs(ip_address(src), ip_address(dst)),
    )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _route(name: str, a: argparse.Namespace) -> None:
    # A longer queue than the default 500 absorbs bursts while the reader thread is descheduled.
    _ip("link", "set", name, "mtu", str(a.mtu), "txqueuelen", "4000", "up")
    _ip("addr", "add", f"{a.tun_addr}/32", "dev", name)
    _ip("route", "add", a.remote_net, "dev", name, "src", a.tun_addr)


_stop = False


def _on_term(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


@dataclass(frozen=True)
class Tunnel:
    """One tunnel as one end installs it: the outbound and inbound SA and the PROTECT filter."""

    out_sa: SAParams
    in_sa: SAParams
    local: IPv4Network | IPv6Network
    remote: IPv4Network | IPv6Network


SCALE_A_NET = ip_network("10.1.0.0/16")
SCALE_SPI_AB, SCALE_SPI_BA = 0x100000, 0x200000
MAX_TUNNELS = 65000


def tunnel_host(k: int) -> IPv4Address:
    """b's inner host of tunnel k (0-based): 10.2.0.1, 10.2.0.2, ... (10.2.0.1 is b's TUN address)."""
    if not 0 <= k < MAX_TUNNELS:
        raise ValueError(f"tunnel index {k} out of range")
    return IPv4Address(int(IPv4Address("10.2.0.0")) + k + 1)


def _scale_key(direction: str, k: int) -> bytes:
    # Test keys (AES-128 key + 4-byte salt), distinct per tunnel and direction; not secrets.
    return hashlib.sha256(f"scale-{direction}-{k}".encode()).digest()[:20]


def tunnel_set(count: int, side: str, a_outer: str = "192.0.2.1", b_outer: str = "192.0.2.2") -> list[Tunnel]:
    """The K tunnels of bench/scale.py as `side` ("a" or "b") installs them; a's outbound SA of
    tunnel k is b's inbound SA of tunnel k and the other way round."""
    if not 1 <= count <= MAX_TUNNELS:
        raise ValueError(f"tunnel count must be 1..{MAX_TUNNELS}")
    if side not in ("a", "b"):
        raise ValueError("side must be 'a' or 'b'")
    out: list[Tunnel] = []
    for k in range(count):
        ab = _sa(SCALE_SPI_AB + k, _scale_key("ab", k), a_outer, b_outer)
        ba = _sa(SCALE_SPI_BA + k, _scale_key("ba", k), b_outer, a_outer)
        host = IPv4Network(f"{tunnel_host(k)}/32")
        if side == "a":
            out.append(Tunnel(ab, ba, SCALE_A_NET, host))
        else:
            out.append(Tunnel(ba, ab, host, SCALE_A_NET))
    return out


def _checksum(data: bytes) -> int:
    # RFC 1071: one's complement of the one's complement sum of 16-bit words.
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


GEN_SRC = "10.1.0.1"
GEN_PORTS = (9000, 9)  # source port, destination port (discard; bench/scale.py drops them in b's prerouting)


def gen_packets(count: int, length: int) -> list[bytes]:
    """One IPv4 UDP packet of `length` bytes from GEN_SRC to each of the first `count` tunnel hosts."""
    if not 28 <= length <= 65535:
        raise ValueError("packet length must be 28..65535")
    pkts = []
    for k in range(count):
        # RFC 791 section 3.1: version 4, IHL 5, total length, DF, TTL 64, protocol 17 (UDP).
        hdr = bytearray(bytes([0x45, 0]) + length.to_bytes(2, "big") + bytes([0, 0, 0x40, 0, 64, 17, 0, 0]))
        hdr += IPv4Address(GEN_SRC).packed + tunnel_host(k).packed
        hdr[10:12] = _checksum(bytes(hdr)).to_bytes(2, "big")
        # RFC 768: ports, length, checksum 0 (none, allowed over IPv4).
        udp = (
            GEN_PORTS[0].to_bytes(2, "big")
            + GEN_PORTS[1].to_bytes(2, "big")
            + (length - 20).to_bytes(2, "big")
        )
        pkts.append(bytes(hdr) + udp + bytes(2) + bytes(length - 28))
    return pkts


def gen_schedule(count: int, burst: int, batch: int) -> list[list[int]]:
    """Batches of tunnel indexes for one full cycle: `burst` packets per tunnel in a row, tunnels
    round-robin, cut into batches of `batch` (the cycle is the shortest that ends on a batch edge)."""
    if count < 1 or burst < 1 or batch < 1:
        raise ValueError("count, burst and batch must be >= 1")
    order: list[int] = []
    while True:
        order.extend(k for k in range(count) for _ in range(burst))
        if len(order) % batch == 0:
            break
    return [order[i : i + batch] for i in range(0, len(order), batch)]


def generate(fp: FastPath, a: argparse.Namespace) -> None:
    pkts = gen_packets(a.gen_tunnels, a.gen_len)
    batches = [[pkts[k] for k in b] for b in gen_schedule(a.gen_tunnels, a.gen_burst, 64)]
    if a.gen_wait_file:  # the bench creates it once both ends are up and b counts what arrives
        deadline = time.monotonic() + 60
        while not os.path.exists(a.gen_wait_file) and not _stop:
            if time.monotonic() > deadline:
                print("gave up waiting for the start file", flush=True)
                return
            time.sleep(0.01)
    print(f"generating {len(batches)} batches per cycle", flush=True)
    sent = 0
    t0 = time.monotonic()
    end = t0 + a.generate
    i = 0
    while not _stop and time.monotonic() < end:
        for _ in range(16):
            sent += fp.inject(batches[i])
            i = (i + 1) % len(batches)
    print(f"generated {sent} in {time.monotonic() - t0:.3f} s", flush=True)


def run_fast(a: argparse.Namespace, out_p: SAParams, in_p: SAParams) -> dict[str, int]:
    tun = open_tun(a.tun, vnet_hdr=not a.no_vnet)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Root: the FORCE variants pass net.core.rmem_max / wmem_max (GRO batches are 64 KiB each).
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)
    sock.bind((a.local, PORT))
    fp = FastPath.over_tun(tun, sock.detach())
    if a.tunnels:
        tunnels = tunnel_set(a.tunnels, a.side, *((a.local, a.peer) if a.side == "a" else (a.peer, a.local)))
    else:
        tunnels = [Tunnel(out_p, in_p, ip_network(a.local_net), ip_network(a.remote_net))]
    for i, tn in enumerate(tunnels):
        oh = fp.add_sa(tn.out_sa, Direction.OUTBOUND)
        fp.add_sa(tn.in_sa, Direction.INBOUND)
        fp.add_filter(FastFilter(i + 1, 100, tn.local, tn.remote, Action.PROTECT, sa=oh))
    _route(tun.name, a)
    fp.start()
    print(f"ready mode=fast tun={tun.name} tunnels={len(tunnels)} {fp.features().describe()}", flush=True)
    if a.generate > 0:
        generate(fp, a)
    while not _stop:
        time.sleep(0.1)
    stats = fp.stats()
    t = time.monotonic()
    fp.close()
    print(f"closed in {time.monotonic() - t:.3f} s", flush=True)
    return stats


def run_python(a: argparse.Namespace, out_p: SAParams, in_p: SAParams) -> dict[str, int]:
    tx = make_transform(out_p, Direction.OUTBOUND, backend="python")
    rx = make_transform(in_p, Direction.INBOUND, backend="python")
    tun = TunDevice.open(a.tun, mtu=a.mtu)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.local, PORT))
    sock.setblocking(False)
    _route(tun.name, a)
    print(f"ready mode=python tun={tun.name}", flush=True)
    stats = {"sent": 0, "received": 0}
    peer = (a.peer, PORT)
    while not _stop:
        ready = select.select([tun, sock], [], [], 0.2)[0]
        if tun in ready:
            for wire in tx.protect(tun.read_batch(64)):
                if wire is not None:
                    sock.sendto(wire[28:], peer)  # the kernel writes the outer IP + UDP header
                    stats["sent"] += 1
        if sock in ready:
            outer = []
            for _ in range(64):
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    break
                # docs/datapath.md section 2: unprotect takes the whole outer packet.
                hdr = bytes([0x45, 0]) + (28 + len(data)).to_bytes(2, "big") + bytes([0, 0, 0, 0, 64, 17])
                hdr += bytes(10) + PORT.to_bytes(2, "big") * 2 + (8 + len(data)).to_bytes(2, "big") + bytes(2)
                outer.append(hdr + data)
            inner = [p for p in rx.unprotect(outer) if p is not None]
            stats["received"] += len(inner)
            tun.write_batch(inner)
    tun.close()
    sock.close()
    print("closed in 0.000 s", flush=True)
    return stats


KEY_AB = bytes(range(1, 21))  # a -> b: AES-128 key + 4-byte salt (test keys, not secrets)
KEY_BA = bytes(range(101, 121))
SPI_AB, SPI_BA = 0x1001, 0x2002
A_INNER, B_INNER = "10.1.0.1", "10.2.0.1"


def start_pair(
    lab: netns.Lab,
    modes: tuple[str, str] = ("fast", "fast"),
    vnet: bool = True,
    nice: int = 0,
    rt: int = 0,
    tunnels: int = 0,
    extra: tuple[Sequence[str], Sequence[str]] = ((), ()),
    ready_timeout: float = 15.0,
) -> tuple[netns.Pair, netns.Background, netns.Background]:
    """Two namespaces on a veth (192.0.2.1 / .2), each running this script; tunnel 10.1.0.0/24
    (a, 10.1.0.1 on its TUN) <-> 10.2.0.0/24 (b, 10.2.0.1). With `tunnels` K: `tunnel_set(K)` on
    both ends (10.1.0.0/16 <-> 10.2.0.0/16 routed into the TUNs). `extra`: more arguments for a, b."""
    pair = netns.two_hosts(lab)
    procs = []
    for host, mode, me, other, net, rnet, spi_o, spi_i, k_o, k_i in (
        (
            pair.a,
            modes[0],
            "192.0.2.1",
            "192.0.2.2",
            "10.1.0.0/24",
            "10.2.0.0/24",
            SPI_AB,
            SPI_BA,
            KEY_AB,
            KEY_BA,
        ),
        (
            pair.b,
            modes[1],
            "192.0.2.2",
            "192.0.2.1",
            "10.2.0.0/24",
            "10.1.0.0/24",
            SPI_BA,
            SPI_AB,
            KEY_BA,
            KEY_AB,
        ),
    ):
        args = [
            "-m",
            "tests.fastpath_peer",
            "--mode",
            mode,
            "--tun",
            "fp0",
            "--tun-addr",
            A_INNER if host is pair.a else B_INNER,
            "--local-net",
            net,
            "--remote-net",
            rnet,
            "--local",
            me,
            "--peer",
            other,
            "--spi-out",
            hex(spi_o),
            "--spi-in",
            hex(spi_i),
            "--key-out",
            k_o.hex(),
            "--key-in",
            k_i.hex(),
        ]
        if not vnet:
            args.append("--no-vnet")
        if nice:
            args += ["--nice", str(nice)]
        if rt:
            args += ["--rt", str(rt)]
        if tunnels:
            args += ["--tunnels", str(tunnels), "--side", "a" if host is pair.a else "b"]
            args[args.index("--local-net") + 1] = net.replace("0/24", "0/16")
            args[args.index("--remote-net") + 1] = rnet.replace("0/24", "0/16")
        args += list(extra[0] if host is pair.a else extra[1])
        procs.append(host.popen_python(args, name=f"fastpath-{mode}"))
    for proc in procs:
        proc.wait_output(r"ready", ready_timeout)
    return pair, procs[0], procs[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("fast", "python"), default="fast")
    p.add_argument("--tun", required=True)
    p.add_argument("--tun-addr", required=True)
    p.add_argument("--local-net", required=True)
    p.add_argument("--remote-net", required=True)
    p.add_argument("--local", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--spi-out", type=lambda s: int(s, 0), default=SPI_AB)
    p.add_argument("--spi-in", type=lambda s: int(s, 0), default=SPI_BA)
    p.add_argument("--key-out", type=bytes.fromhex, default=KEY_AB)
    p.add_argument("--key-in", type=bytes.fromhex, default=KEY_BA)
    p.add_argument("--no-vnet", action="store_true")
    p.add_argument("--mtu", type=int, default=1400)
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--rt", type=int, default=0, help="SCHED_RR priority of the fast-path threads (0: off)")
    p.add_argument("--tunnels", type=int, default=0, help="install tunnel_set(K) instead of one SA pair")
    p.add_argument("--side", choices=("a", "b"), default="a", help="which end of tunnel_set this is")
    p.add_argument("--generate", type=float, default=0.0, help="seconds of injected traffic (fast mode)")
    p.add_argument("--gen-tunnels", type=int, default=1)
    p.add_argument("--gen-burst", type=int, default=1)
    p.add_argument("--gen-wait-file", default="", help="start generating once this file exists")
    p.add_argument("--gen-len", type=int, default=1388, help="IP packet length of the generated packets")
    a = p.parse_args(argv)
    if a.mode != "fast" and (a.tunnels or a.generate):
        p.error("--tunnels and --generate need --mode fast")
    if a.generate and not 1 <= a.gen_tunnels <= max(1, a.tunnels):
        p.error("--gen-tunnels must be 1..--tunnels")
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    out_p = _sa(a.spi_out, a.key_out, a.local, a.peer)
    in_p = _sa(a.spi_in, a.key_in, a.peer, a.local)
    run = run_fast if a.mode == "fast" else run_python
    stats = run(a, out_p, in_p)
    print("stats " + json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
