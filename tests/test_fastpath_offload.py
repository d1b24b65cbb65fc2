"""The fast path's virtio_net_hdr handling without a TUN (no root): a socketpair stands in for a TUN
opened with IFF_VNET_HDR, so the test writes super-packets exactly as the kernel would hand them
over (TSO/USO, checksum left to the reader) and reads back what the fast path writes to the TUN
(coalesced TCP/UDP super-packets).

virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (little-endian).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_network

import pytest

from ipsecd.datapath import fastpath as fpmod
from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.fastpath import Action, FastFilter, FastPath
from ipsecd.datapath.ipheader import checksum, pseudo_sum
from ipsecd.datapath.sa import Direction, SAParams, TunnelAddrs, UdpEncap
from tests.datapath_util import ipv4, params

pytestmark = pytest.mark.skipif(not fpmod.AVAILABLE, reason=fpmod.UNAVAILABLE_REASON or "not built")

NEEDS_CSUM = 1
GSO_TCPV4, GSO_UDP_L4 = 1, 5


def _vnet(
    flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0, start: int = 0, off: int = 0
) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, start, off)


def _tcp_hdr(seq: int, flags: int, csum: int = 0) -> bytes:
    # 20-byte TCP header + 12 bytes of options (NOP NOP timestamps), data offset 8
    opts = b"\x01\x01\x08\x0a" + struct.pack("!II", 1000, 2000)
    return struct.pack("!HHIIBBHHH", 40000, 5201, seq, 77, 8 << 4, flags, 500, csum, 0) + opts


def _partial(pkt: bytearray, proto: int, l4_off: int) -> None:
    """What the kernel hands over with NEEDS_CSUM: the folded pseudo-header sum in the field."""
    field = l4_off + (16 if proto == 6 else 6)
    length = len(pkt) - l4_off
    s = pseudo_sum(pkt, 4, proto, length)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", pkt, field, s)


def _l4_ok(pkt: bytes) -> bool:
    ihl = (pkt[0] & 0x0F) * 4
    return checksum(pkt[ihl:], pseudo_sum(pkt, 4, pkt[9], len(pkt) - ihl)) == 0


def _recv_all(sock: socket.socket, want: int, timeout: float = 2.0) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < want:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            break
        out.append(sock.recv(70000))
    return out


@dataclass
class Rig:
    fp: FastPath
    tun: socket.socket
    peer: socket.socket
    fp_addr: tuple[str, int]
    out_params: SAParams
    in_params: SAParams


@pytest.fixture
def rig() -> Iterator[Rig]:
    tun_a, tun_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (tun_a, tun_b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    esp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    esp.bind(("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    fp_addr = esp.getsockname()
    lo = TunnelAddrs(ip_address("127.0.0.1"), ip_address("127.0.0.1"))
    out_p = replace(params(spi=0x1001, seed=5), tunnel=lo, encap=UdpEncap(fp_addr[1], peer.getsockname()[1]))
    in_p = replace(params(spi=0x2002, seed=6), tunnel=lo, encap=UdpEncap(peer.getsockname()[1], fp_addr[1]))
    # TUNSETOFFLOAD flags as if CSUM|TSO4|TSO6|USO4|USO6 were accepted.
    fp = FastPath(tun_a.detach(), esp.detach(), vnet_hdr=True, offload=0x67)
    try:
        oh = fp.add_sa(out_p, Direction.OUTBOUND)
        fp.add_sa(in_p, Direction.INBOUND)
        fp.add_filter(
            FastFilter(1, 10, ip_network("10.1.0.0/24"), ip_network("10.2.0.0/24"), Action.PROTECT, sa=oh)
        )
        yield Rig(fp, tun_b, peer, fp_addr, out_p, in_p)
    finally:
        fp.close()
        tun_b.close()
        peer.close()


def _decrypt(p: SAParams, datagrams: list[bytes]) -> list[bytes | None]:
    rx = make_transform(p, Direction.INBOUND, backend="python")
    return rx.unprotect(
        [ipv4("127.0.0.1", "127.0.0.1", 17, struct.pack("!HHHH", 1, 2, 8 + len(d), 0) + d) for d in datagrams]
    )


def test_tcp_super_packet_is_cut_into_valid_segments(rig: Rig) -> None:
    rig.fp.start()
    data = bytes(range(256)) * 20  # 5120 bytes -> 1000 x 5 + 120
    pkt = bytearray(ipv4("10.1.0.5", "10.2.0.7", 6, _tcp_hdr(1_000_000, 0x18) + data, ident=100, df=True))
    _partial(pkt, 6, 20)
    rig.tun.send(_vnet(NEEDS_CSUM, GSO_TCPV4, 52, 1000, 20, 16) + bytes(pkt))
    segs = _decrypt(rig.out_params, _recv_all(rig.peer, 6))
    assert len(segs) == 6 and all(s is not None for s in segs)
    payload = b""
    for k, seg in enumerate(segs):
        assert seg is not None
        ihl = 20
        tcp = seg[ihl:]
        assert struct.unpack("!H", seg[2:4])[0] == len(seg)
        assert struct.unpack("!H", seg[4:6])[0] == 100 + k  # IPv4 ID + k
        assert checksum(seg[:20]) == 0 and _l4_ok(seg)
        assert struct.unpack("!I", tcp[4:8])[0] == 1_000_000 + 1000 * k
        assert tcp[13] == (0x18 if k == 5 else 0x10)  # PSH only on the last
        assert tcp[20:32] == _tcp_hdr(0, 0)[20:32]  # options copied
        payload += tcp[32:]
    assert payload == data
    st = rig.fp.stats()
    assert (st["tun_rx_super_packets"], st["tun_rx_segments"]) == (1, 6)


def test_udp_super_packet_and_checksum_completion(rig: Rig) -> None:
    rig.fp.start()
    data = b"u" * 2500
    pkt = bytearray(ipv4("10.1.0.5", "10.2.0.7", 17, struct.pack("!HHHH", 5000, 53, 8 + len(data), 0) + data))
    _partial(pkt, 17, 20)
    rig.tun.send(_vnet(NEEDS_CSUM, GSO_UDP_L4, 28, 1200, 20, 6) + bytes(pkt))
    small = bytearray(
        ipv4("10.1.0.5", "10.2.0.7", 17, struct.pack("!HHHH", 5000, 53, 8 + 11, 0) + b"hello world")
    )
    _partial(small, 17, 20)
    rig.tun.send(_vnet(NEEDS_CSUM, 0, 0, 0, 20, 6) + bytes(small))
    segs = _decrypt(rig.out_params, _recv_all(rig.peer, 4))
    assert [len(s) - 28 for s in segs if s is not None] == [1200, 1200, 100, 11]
    assert all(s is not None and _l4_ok(s) for s in segs)
    assert b"".join(s[28:] for s in segs[:3] if s is not None) == data


def test_received_tcp_segments_are_coalesced_for_the_tun(rig: Rig) -> None:
    tx = make_transform(rig.in_params, Direction.OUTBOUND, backend="python")
    segs = []
    for k in range(5):
        body = bytes([k]) * (1000 if k < 4 else 300)
        p = bytearray(
            ipv4(
                "10.2.0.7", "10.1.0.5", 6, _tcp_hdr(5000 + 1000 * k, 0x10 if k < 4 else 0x18) + body, df=True
            )
        )
        struct.pack_into("!H", p, 36, 0)
        struct.pack_into("!H", p, 36, checksum(p[20:], pseudo_sum(p, 4, 6, len(p) - 20)))
        segs.append(bytes(p))
    wire = tx.protect(segs)
    for w in wire:
        assert w is not None
        rig.peer.sendto(w[28:], rig.fp_addr)  # queued before the threads start: one receive round
    rig.fp.start()
    (got,) = _recv_all(rig.tun, 1)
    assert _recv_all(rig.tun, 1, timeout=0.2) == []
    flags, gso_type, hdr_len, gso_size, start, off = struct.unpack("<BBHHHH", got[:10])
    assert (flags, gso_type, hdr_len, gso_size, start, off) == (NEEDS_CSUM, GSO_TCPV4, 52, 1000, 20, 16)
    pkt = got[10:]
    assert struct.unpack("!H", pkt[2:4])[0] == len(pkt) == 20 + 32 + 4300 and checksum(pkt[:20]) == 0
    assert struct.unpack("!I", pkt[24:28])[0] == 5000 and pkt[33] == 0x18  # first seq, PSH from the last
    # the checksum field holds the folded pseudo-header sum of the whole super-packet
    s = pseudo_sum(pkt, 4, 6, len(pkt) - 20)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert struct.unpack("!H", pkt[36:38])[0] == s
    assert pkt[52:] == b"".join(seg[52:] for seg in segs)
    assert rig.fp.stats()["tun_tx_coalesced"] == 1


def test_other_flows_and_non_tcp_pass_unchanged(rig: Rig) -> None:
    rig.fp.start()
    tx = make_transform(rig.in_params, Direction.OUTBOUND, backend="python")
    icmp = ipv4("10.2.0.7", "10.1.0.5", 1, b"\x08\x00\xf7\xff" + b"\x00" * 4)
    syn = bytearray(ipv4("10.2.0.7", "10.1.0.5", 6, _tcp_hdr(1, 0x02)))
    struct.pack_into("!H", syn, 36, checksum(syn[20:], pseudo_sum(syn, 4, 6, len(syn) - 20)))
    for w in tx.protect([icmp, bytes(syn)]):
        assert w is not None
        rig.peer.sendto(w[28:], rig.fp_addr)
    got = _recv_all(rig.tun, 2)
    assert [g[:10] for g in got] == [bytes(10)] * 2
    assert [g[10:] for g in got] == [icmp, bytes(syn)]
