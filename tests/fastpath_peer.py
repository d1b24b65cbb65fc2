"""A tunnel endpoint for the fast-path namespace tests and bench/fastpath.py (not the daemon).

    python3 -m tests.fastpath_peer --mode fast|python --tun NAME --tun-addr 10.1.0.1
        --local-net 10.1.0.0/24 --remote-net 10.2.0.0/24 --local 192.0.2.1 --peer 192.0.2.2
        --spi-out 0x1001 --spi-in 0x2002 --key-out HEX --key-in HEX [--no-vnet] [--mtu 1400]

Manual AES-128-GCM SAs in tunnel mode, ESP in UDP on port 4500 (RFC 3948). `fast` runs
ipsecd.datapath.fastpath (C threads); `python` runs a plain loop over the Python fallback transform
(`make_transform(backend="python")`), so a test can put the two on either end of one tunnel.
Prints "ready ..." once the TUN is up and routed; on SIGTERM shuts down and prints
"closed in S s" and the counters as JSON.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import subprocess
import sys
import time
from ipaddress import ip_address, ip_network
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


def run_fast(a: argparse.Namespace, out_p: SAParams, in_p: SAParams) -> dict[str, int]:
    tun = open_tun(a.tun, vnet_hdr=not a.no_vnet)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Root: the FORCE variants pass net.core.rmem_max / wmem_max (GRO batches are 64 KiB each).
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)
    sock.bind((a.local, PORT))
    fp = FastPath.over_tun(tun, sock.detach())
    oh = fp.add_sa(out_p, Direction.OUTBOUND)
    fp.add_sa(in_p, Direction.INBOUND)
    fp.add_filter(
        FastFilter(1, 100, ip_network(a.local_net), ip_network(a.remote_net), Action.PROTECT, sa=oh)
    )
    _route(tun.name, a)
    fp.start()
    print(f"ready mode=fast tun={tun.name} {fp.features().describe()}", flush=True)
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
    lab: netns.Lab, modes: tuple[str, str] = ("fast", "fast"), vnet: bool = True, nice: int = 0, rt: int = 0
) -> tuple[netns.Pair, netns.Background, netns.Background]:
    """Two namespaces on a veth (192.0.2.1 / .2), each running this script; tunnel 10.1.0.0/24
    (a, 10.1.0.1 on its TUN) <-> 10.2.0.0/24 (b, 10.2.0.1)."""
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
        procs.append(host.popen_python(args, name=f"fastpath-{mode}"))
    for proc in procs:
        proc.wait_output(r"ready", 15)
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
    p.add_argument("--spi-out", type=lambda s: int(s, 0), required=True)
    p.add_argument("--spi-in", type=lambda s: int(s, 0), required=True)
    p.add_argument("--key-out", type=bytes.fromhex, required=True)
    p.add_argument("--key-in", type=bytes.fromhex, required=True)
    p.add_argument("--no-vnet", action="store_true")
    p.add_argument("--mtu", type=int, default=1400)
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--rt", type=int, default=0, help="SCHED_RR priority of the fast-path threads (0: off)")
    a = p.parse_args(argv)
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
