"""The threaded fast path (ipsecd/datapath/fastpath.py) without namespaces.

The "TUN" is one end of an AF_UNIX datagram socketpair (one read = one packet, like IFF_NO_PI);
the ESP socket is a UDP socket on 127.0.0.1. The fast path's datagrams are compared byte for byte
with the Python fallback's protect output for the same SA (IVs are the sequence number, so both are
deterministic), and the fallback's packets go through the fast path's inbound side.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from ipsecd.datapath import fastpath as fpmod
from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.fastpath import Action, EventKind, FastFilter, FastPath, SlowKind
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, SAParams, TunnelAddrs, UdpEncap
from tests.datapath_util import ipv4, ipv6, params, tcp, udp, with_l4_checksum

pytestmark = pytest.mark.skipif(not fpmod.AVAILABLE, reason=fpmod.UNAVAILABLE_REASON or "not built")

LOCAL = ip_network("10.1.0.0/24")
REMOTE = ip_network("10.2.0.0/24")


def _inner(i: int, size: int = 100, dst: str = "10.2.0.7") -> bytes:
    return ipv4("10.1.0.5", dst, 17, udp(1000 + i, 53, bytes([i % 251]) * size))


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
    tun: socket.socket  # our end of the "TUN"
    peer: socket.socket  # where the fast path's ESP goes
    fp_addr: tuple[str, int]  # the fast path's ESP socket
    out_params: SAParams
    in_params: SAParams
    out_handle: int
    in_handle: int
    fds: tuple[int, int]


@pytest.fixture
def rig() -> Iterator[Rig]:
    tun_a, tun_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    esp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    esp.bind(("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    fp_addr = esp.getsockname()
    lo = TunnelAddrs(ip_address("127.0.0.1"), ip_address("127.0.0.1"))
    out_p = replace(params(spi=0x1001, seed=3), tunnel=lo, encap=UdpEncap(fp_addr[1], peer.getsockname()[1]))
    in_p = replace(params(spi=0x2002, seed=4), tunnel=lo, encap=UdpEncap(peer.getsockname()[1], fp_addr[1]))
    fds = (tun_a.fileno(), esp.fileno())
    fp = FastPath(tun_a.detach(), esp.detach())
    try:
        oh = fp.add_sa(out_p, Direction.OUTBOUND)
        ih = fp.add_sa(in_p, Direction.INBOUND)
        fp.add_filter(FastFilter(1, 10, LOCAL, REMOTE, Action.PROTECT, sa=oh))
        fp.start()
        yield Rig(fp, tun_b, peer, fp_addr, out_p, in_p, oh, ih, fds)
    finally:
        fp.close()
        tun_b.close()
        peer.close()


def test_outbound_datagrams_equal_the_fallback_bytes(rig: Rig) -> None:
    packets = [_inner(i, 40 + 37 * i) for i in range(20)]
    for p in packets:
        rig.tun.send(p)
    got = _recv_all(rig.peer, len(packets))
    ref = make_transform(rig.out_params, Direction.OUTBOUND, backend="python").protect(packets)
    assert got == [r[28:] for r in ref if r is not None]  # the kernel writes the IP + UDP header
    counters = rig.fp.sa_counters(rig.out_handle)
    assert counters is not None and counters.packets_sent == 20


def test_equal_sizes_go_out_as_separate_datagrams_with_gso(rig: Rig) -> None:
    packets = [_inner(i, 1300) for i in range(50)]
    for p in packets:
        rig.tun.send(p)
    got = _recv_all(rig.peer, len(packets))
    ref = make_transform(rig.out_params, Direction.OUTBOUND, backend="python").protect(packets)
    assert got == [r[28:] for r in ref if r is not None]


def test_datagrams_of_different_sas_to_one_peer_share_gso_messages(rig: Rig) -> None:
    """Two outbound SAs to the same peer address and port, packets interleaved A, B, A, B, ...: the
    datagrams still merge into one UDP GSO message (equal sizes, the last one shorter); the peer gets
    them in order, byte-equal to the fallback's output, and each SA counts its own packets. A third
    SA to another port never shares a message with them."""
    if not rig.fp.features().udp_gso:
        pytest.skip("UDP_SEGMENT not supported by this kernel")
    other_net = ip_network("10.3.0.0/24")
    b_params = replace(rig.out_params, spi=0x3003, enc_key=bytes(range(40, 60)))
    b_handle = rig.fp.add_sa(b_params, Direction.OUTBOUND)
    rig.fp.add_filter(FastFilter(2, 10, LOCAL, other_net, Action.PROTECT, sa=b_handle))
    a_pkts = [_inner(i, 1300) for i in range(20)] + [_inner(20, 700)]
    b_pkts = [_inner(i, 1300, dst="10.3.0.7") for i in range(20)]
    interleaved = [p for pair in zip(a_pkts, b_pkts, strict=False) for p in pair] + a_pkts[20:]
    a_ref = make_transform(rig.out_params, Direction.OUTBOUND, backend="python").protect(a_pkts)
    b_ref = make_transform(b_params, Direction.OUTBOUND, backend="python").protect(b_pkts)
    want = [r[28:] for pair in zip(a_ref, b_ref, strict=False) for r in pair if r is not None]
    want += [r[28:] for r in a_ref[20:] if r is not None]
    assert len(want) == 41
    before = rig.fp.stats()
    assert rig.fp.inject(interleaved) == 41  # one batch: one flush, one sendmmsg
    assert _recv_all(rig.peer, 41) == want
    after = rig.fp.stats()
    assert after["udp_tx_gso_messages"] - before["udp_tx_gso_messages"] == 1  # 41 segments, one message
    assert after["udp_tx_datagrams"] - before["udp_tx_datagrams"] == 41
    assert after["gso_fallbacks"] == before["gso_fallbacks"]
    ca, cb = rig.fp.sa_counters(rig.out_handle), rig.fp.sa_counters(b_handle)
    assert ca is not None and cb is not None and (ca.packets_sent, cb.packets_sent) == (21, 20)

    # A third SA whose datagrams go to another port: alternating with A, nothing can merge.
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        other.bind(("127.0.0.1", 0))
        c_params = replace(
            rig.out_params,
            spi=0x4004,
            enc_key=bytes(range(80, 100)),
            encap=UdpEncap(rig.fp_addr[1], other.getsockname()[1]),
        )
        c_handle = rig.fp.add_sa(c_params, Direction.OUTBOUND)
        rig.fp.add_filter(FastFilter(3, 10, LOCAL, ip_network("10.4.0.0/24"), Action.PROTECT, sa=c_handle))
        c_pkts = [_inner(i, 1300, dst="10.4.0.7") for i in range(5)]
        more_a = [_inner(i, 1300) for i in range(5)]
        before = rig.fp.stats()
        assert rig.fp.inject([p for pair in zip(more_a, c_pkts, strict=True) for p in pair]) == 10
        a_more_ref = make_transform(
            rig.out_params, Direction.OUTBOUND, backend="python", initial_seq=22
        ).protect(more_a)
        c_ref = make_transform(c_params, Direction.OUTBOUND, backend="python").protect(c_pkts)
        assert _recv_all(rig.peer, 5) == [r[28:] for r in a_more_ref if r is not None]
        assert _recv_all(other, 5) == [r[28:] for r in c_ref if r is not None]
        after = rig.fp.stats()
        assert after["udp_tx_gso_messages"] == before["udp_tx_gso_messages"]
        assert after["udp_tx_datagrams"] - before["udp_tx_datagrams"] == 10
    finally:
        other.close()


def test_inbound_fallback_packets_reach_the_tun_and_replays_do_not(rig: Rig) -> None:
    packets = [_inner(i, 60 + i, dst="10.1.0.5") for i in range(10)]
    # The fallback's inbound packets: src/dst swapped in the inner header is not needed (no selectors).
    wire = make_transform(rig.in_params, Direction.OUTBOUND, backend="python").protect(packets)
    for w in wire:
        assert w is not None
        rig.peer.sendto(w[28:], rig.fp_addr)
    assert _recv_all(rig.tun, 10) == packets
    assert wire[3] is not None
    rig.peer.sendto(wire[3][28:], rig.fp_addr)  # replayed
    tampered = bytearray(wire[9][28:])  # type: ignore[index]
    tampered[-1] ^= 1
    rig.peer.sendto(bytes(tampered), rig.fp_addr)
    assert _recv_all(rig.tun, 1, timeout=0.5) == []
    c = rig.fp.sa_counters(rig.in_handle)
    assert c is not None
    assert (c.packets_received, c.packets_with_replay_detection) == (
        10,
        2,
    )  # the tampered one is seq 10: replay


def test_tampered_and_unknown_spi_are_counted(rig: Rig) -> None:
    t = make_transform(rig.in_params, Direction.OUTBOUND, backend="python")
    (w,) = t.protect([_inner(1, 80, dst="10.1.0.5")])
    assert w is not None
    bad = bytearray(w[28:])
    bad[-1] ^= 0x40
    rig.peer.sendto(bytes(bad), rig.fp_addr)
    unknown = bytearray(w[28:])
    unknown[3] ^= 0x55
    rig.peer.sendto(bytes(unknown), rig.fp_addr)
    assert _recv_all(rig.tun, 1, timeout=0.5) == []
    c = rig.fp.sa_counters(rig.in_handle)
    assert c is not None and c.packets_not_authenticated == 1
    assert rig.fp.stats()["bad_spi_packets"] == 1
    rig.peer.sendto(w[28:], rig.fp_addr)  # the genuine one still passes (the window did not move)
    assert _recv_all(rig.tun, 1) == [_inner(1, 80, dst="10.1.0.5")]


def test_fast_path_output_is_accepted_by_the_fallback_unprotect(rig: Rig) -> None:
    packets = [_inner(i, 200) for i in range(5)]
    for p in packets:
        rig.tun.send(p)
    got = _recv_all(rig.peer, 5)
    rx = make_transform(rig.out_params, Direction.INBOUND, backend="python")
    outer = [ipv4("127.0.0.1", "127.0.0.1", 17, udp(4500, 4500, d)) for d in got]
    assert rx.unprotect(outer) == packets


def test_negotiate_without_sa_fails_closed_and_acquires(rig: Rig) -> None:
    other = ip_network("10.3.0.0/16")
    rig.fp.add_filter(FastFilter(2, 10, LOCAL, other, Action.PROTECT))  # no SA yet
    for i in range(3):
        rig.tun.send(_inner(i, 50, dst="10.3.1.1"))
    assert select.select([rig.fp.event_fd()], [], [], 2.0)[0]
    assert _recv_all(rig.peer, 1, timeout=0.3) == []  # nothing left, in clear or otherwise
    events = rig.fp.drain_events()
    assert [e.kind for e in events] == [EventKind.ACQUIRE, EventKind.SLOW_PATH]
    assert [e.filter_id for e in events if e.kind == EventKind.ACQUIRE] == [2]  # rate-limited: once
    held = rig.fp.drain_slow()
    assert [(h.kind, h.filter_id, h.data) for h in held] == [
        (SlowKind.ACQUIRE, 2, _inner(i, 50, dst="10.3.1.1")) for i in range(3)
    ]
    # Once bound, the same traffic is protected, and the held packets can follow.
    rig.fp.bind_filter(2, rig.out_handle)
    rig.tun.send(_inner(9, 50, dst="10.3.1.1"))
    assert len(_recv_all(rig.peer, 1)) == 1
    assert rig.fp.inject([h.data for h in held]) == 3
    got = _recv_all(rig.peer, 3)
    rx = make_transform(rig.out_params, Direction.INBOUND, backend="python")
    outer = [ipv4("127.0.0.1", "127.0.0.1", 17, udp(4500, 4500, d)) for d in got]
    assert [x for x in rx.unprotect(outer) if x is not None] == [h.data for h in held]


def test_weights_decide_and_unmatched_traffic_is_dropped(rig: Rig) -> None:
    rig.fp.add_filter(FastFilter(3, 20, LOCAL, ip_network("10.2.0.9/32"), Action.DROP))
    rig.fp.add_filter(
        FastFilter(4, 30, LOCAL, ip_network("10.2.0.0/24"), Action.SLOW, protocol=17, dst_ports=(53, 53))
    )
    rig.fp.add_filter(FastFilter(5, 40, LOCAL, ip_network("10.2.0.0/24"), Action.DROP, protocol=6))
    rig.tun.send(_inner(1, 30, dst="10.2.0.9"))  # 4 (weight 30, udp/53) beats 3 (weight 20)
    rig.tun.send(ipv4("10.1.0.5", "10.2.0.9", 17, udp(5, 54, b"x")))  # port 54: 3 drops it
    rig.tun.send(ipv4("10.1.0.5", "10.9.0.1", 17, udp(5, 53, b"x")))  # no filter: default DROP
    deadline = time.monotonic() + 2
    while rig.fp.stats()["tun_rx_packets"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    slow = rig.fp.drain_slow()
    assert [(s.kind, s.filter_id) for s in slow] == [(SlowKind.OUTBOUND, 4)]
    st = rig.fp.stats()
    assert (st["rule_drops"], st["no_rule_drops"]) == (1, 1)
    assert _recv_all(rig.peer, 1, timeout=0.2) == []
    assert rig.fp.remove_filter(4) and not rig.fp.remove_filter(4)
    rig.tun.send(_inner(2, 30, dst="10.2.0.9"))
    assert _recv_all(rig.peer, 1, timeout=0.3) == []  # now filter 3 drops it


def test_non_esp_marker_goes_to_the_slow_path_with_its_source(rig: Rig) -> None:
    rig.peer.sendto(b"\x00\x00\x00\x00ike-message", rig.fp_addr)
    rig.peer.sendto(b"\xff", rig.fp_addr)  # NAT-keepalive: counted only
    assert select.select([rig.fp.event_fd()], [], [], 2.0)[0]
    (pkt,) = rig.fp.drain_slow()
    assert (pkt.kind, pkt.source, pkt.data) == (
        SlowKind.INBOUND,
        rig.peer.getsockname(),
        b"\x00\x00\x00\x00ike-message",
    )


def test_expiry_events_and_removed_sa_fail_closed(rig: Rig) -> None:
    assert rig.fp.expire_sa(rig.out_handle, hard=True)
    events = rig.fp.drain_events()
    assert [(e.kind, e.sa) for e in events] == [(EventKind.HARD_EXPIRED, rig.out_handle)]
    rig.tun.send(_inner(1))
    assert _recv_all(rig.peer, 1, timeout=0.3) == []
    assert [s.kind for s in rig.fp.drain_slow()] == [SlowKind.ACQUIRE]
    assert rig.fp.remove_sa(rig.out_handle) and not rig.fp.remove_sa(rig.out_handle)


def test_close_joins_the_threads_and_closes_every_fd() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    esp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    esp.bind(("127.0.0.1", 0))
    tun_fd, udp_fd = a.detach(), esp.detach()
    fp = FastPath(tun_fd, udp_fd)
    evfd = fp.event_fd()
    fp.start()
    t = time.monotonic()
    fp.close()
    assert time.monotonic() - t < 1.0
    for fd in (tun_fd, udp_fd, evfd):
        with pytest.raises(OSError):
            os.fstat(fd)
    with pytest.raises(ValueError):
        fp.stats()
    b.close()


def test_features_report_and_bad_input() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    esp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    esp.bind(("127.0.0.1", 0))
    with FastPath(a.detach(), esp.detach()) as fp:
        f = fp.features()
        assert not f.vnet_hdr and "vnet_hdr off" in f.describe()
        with pytest.raises(ValueError):
            fp.add_sa(params(), Direction.OUTBOUND)  # no UDP encapsulation
        with pytest.raises(ValueError):
            FastFilter(1, 1, LOCAL, ip_network("::/0"), Action.DROP)
        p = replace(params(spi=0x3003), encap=UdpEncap(4500, 4500))
        fp.add_sa(p, Direction.INBOUND)
        with pytest.raises(ValueError, match="SPI"):
            fp.add_sa(p, Direction.INBOUND)
        v6 = replace(p, tunnel=TunnelAddrs(ip_address("2001:db8::1"), ip_address("2001:db8::2")))
        with pytest.raises(ValueError, match="IPv6"):
            fp.add_sa(v6, Direction.OUTBOUND)  # the ESP socket is AF_INET
        assert fp.table_sizes()["sas"] == 1
        with pytest.raises(ValueError):
            fp.configure(nice=-21)
        with pytest.raises(ValueError):
            fp.configure(rt_priority=100)
        with pytest.raises(ValueError):
            fp.configure(default_action=Action.PROTECT)  # a default cannot name an SA
        fp.configure(default_action=Action.SLOW, batch=8, slow_queue=16, acquire_interval=0.5, nice=0)
    b.close()


def test_thousands_of_inbound_sas_are_found_by_spi_and_removed_cleanly(rig: Rig) -> None:
    base = replace(rig.in_params, spi=0x50000)
    handles = {}
    for i in range(3000):
        p = replace(base, spi=0x50000 + i, enc_key=i.to_bytes(4, "big") * 5)
        handles[p.spi] = (fp_handle := rig.fp.add_sa(p, Direction.INBOUND), p)
        assert fp_handle > 0
    assert rig.fp.table_sizes()["sas"] == 3002
    for spi in (0x50000, 0x50000 + 1234, 0x50000 + 2999):
        _, p = handles[spi]
        (w,) = make_transform(p, Direction.OUTBOUND, backend="python").protect(
            [_inner(spi % 200, 70, dst="10.1.0.5")]
        )
        assert w is not None
        rig.peer.sendto(w[28:], rig.fp_addr)
        assert _recv_all(rig.tun, 1) == [_inner(spi % 200, 70, dst="10.1.0.5")]
    for spi, (h, _) in handles.items():
        if spi % 2:
            assert rig.fp.remove_sa(h)
    _, p = handles[0x50000 + 1235]
    (w,) = make_transform(p, Direction.OUTBOUND, backend="python").protect([_inner(1, 70, dst="10.1.0.5")])
    assert w is not None
    rig.peer.sendto(w[28:], rig.fp_addr)
    assert _recv_all(rig.tun, 1, timeout=0.3) == []
    assert rig.fp.stats()["bad_spi_packets"] == 1
    assert rig.fp.table_sizes()["sas"] == 1502


def test_scapy_decrypts_fast_path_output_and_fast_path_accepts_scapy_packets(rig: Rig) -> None:
    scapy_all = pytest.importorskip("scapy.all")
    scapy_ipsec = pytest.importorskip("scapy.layers.ipsec")

    def scapy_sa(p: SAParams) -> Any:
        assert p.tunnel is not None and p.encap is not None
        return scapy_ipsec.SecurityAssociation(
            scapy_ipsec.ESP,
            spi=p.spi,
            crypt_algo="AES-GCM",
            crypt_key=p.enc_key,
            tunnel_header=scapy_all.IP(src=str(p.tunnel.src), dst=str(p.tunnel.dst)),
            nat_t_header=scapy_all.UDP(sport=p.encap.sport, dport=p.encap.dport),
        )

    inner = [
        with_l4_checksum(ipv4("10.1.0.5", "10.2.0.7", 6, tcp(40000, 443, b"fastpath" * (i + 3))))
        for i in range(3)
    ]
    for p in inner:
        rig.tun.send(p)
    got = _recv_all(rig.peer, 3)
    sa = scapy_sa(rig.out_params)
    for data, want in zip(got, inner, strict=True):
        outer = (
            scapy_all.IP(src="127.0.0.1", dst="127.0.0.1")
            / scapy_all.UDP(sport=4500, dport=4500)
            / scapy_all.Raw(data)
        )
        dec = sa.decrypt(scapy_all.IP(bytes(outer)))
        assert bytes(scapy_all.IP(bytes(dec))) == want
    sa_in = scapy_sa(rig.in_params)
    back = with_l4_checksum(ipv4("10.2.0.7", "10.1.0.5", 6, tcp(443, 40000, b"scapy" * 9)))
    for seq in (1, 2, 7):
        wire = bytes(sa_in.encrypt(scapy_all.IP(back), seq_num=seq))
        rig.peer.sendto(wire[28:], rig.fp_addr)  # the UDP payload: ESP
    assert _recv_all(rig.tun, 3) == [back] * 3


@pytest.mark.parametrize(
    ("enc", "klen", "integ"),
    [
        (EncAlg.ENCR_CHACHA20_POLY1305, 36, IntegAlg.NONE),
        (EncAlg.ENCR_AES_CBC, 16, IntegAlg.AUTH_HMAC_SHA2_256_128),
        (EncAlg.ENCR_AES_GCM_16, 36, IntegAlg.NONE),
    ],
)
def test_other_algorithms_and_ipv6_inner_match_the_fallback(enc: EncAlg, klen: int, integ: IntegAlg) -> None:
    tun_a, tun_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    esp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    esp.bind(("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    lo = TunnelAddrs(ip_address("127.0.0.1"), ip_address("127.0.0.1"))
    p = replace(
        params(enc=enc, integ=integ, enc_len=klen, spi=0x7777),
        tunnel=lo,
        encap=UdpEncap(esp.getsockname()[1], peer.getsockname()[1]),
    )
    inner = [ipv6("fd00:1::5", "fd00:2::7", 17, udp(7, 9, bytes(range(i * 20 % 256)) * 3)) for i in range(6)]
    with FastPath(tun_a.detach(), esp.detach()) as fp:
        h = fp.add_sa(p, Direction.OUTBOUND)
        fp.add_filter(
            FastFilter(9, 1, ip_network("fd00:1::/64"), ip_network("fd00:2::/64"), Action.PROTECT, sa=h)
        )
        fp.start()
        for pkt in inner:
            tun_b.send(pkt)
        got = _recv_all(peer, len(inner))
    ref = make_transform(p, Direction.OUTBOUND, backend="python").protect(inner)
    assert got == [r[28:] for r in ref if r is not None]
    tun_b.close()
    peer.close()


def test_unknown_spi_goes_to_the_slow_path_when_configured(rig: Rig) -> None:
    """unknown_spi=SLOW: an SA the caller keeps itself (the daemon's Python router) still gets its
    datagrams, with the source address; the default (DROP) only counts them."""
    t = make_transform(rig.in_params, Direction.OUTBOUND, backend="python")
    (w,) = t.protect([_inner(2, 90, dst="10.1.0.5")])
    assert w is not None
    unknown = bytearray(w[28:])
    unknown[0:4] = (0x7777).to_bytes(4, "big")
    rig.peer.sendto(bytes(unknown), rig.fp_addr)
    time.sleep(0.2)
    assert rig.fp.drain_slow() == [] and rig.fp.stats()["bad_spi_packets"] == 1
    rig.fp.configure(unknown_spi=Action.SLOW)
    rig.peer.sendto(bytes(unknown), rig.fp_addr)
    deadline = time.monotonic() + 2
    slow: list[Any] = []
    while not slow and time.monotonic() < deadline:
        slow = rig.fp.drain_slow()
        time.sleep(0.01)
    assert [(s.kind, s.data) for s in slow] == [(SlowKind.INBOUND, bytes(unknown))]
    assert slow[0].source == rig.peer.getsockname()
    assert rig.fp.stats()["bad_spi_packets"] == 2
    with pytest.raises(ValueError):
        rig.fp.configure(unknown_spi=Action.PROTECT)


def test_inject_through_a_named_sa_skips_the_filters(rig: Rig) -> None:
    """inject(packets, sa=handle): the Python router already chose the SA; no filter covers this
    destination (10.9.0.1), yet the packets go out through that SA, byte-equal to the fallback."""
    packets = [ipv4("10.1.0.5", "10.9.0.1", 17, udp(7, 9, bytes([i]) * 50)) for i in range(3)]
    assert rig.fp.inject(packets, sa=rig.out_handle) == 3
    got = _recv_all(rig.peer, 3)
    ref = make_transform(rig.out_params, Direction.OUTBOUND, backend="python").protect(packets)
    assert got == [r[28:] for r in ref if r is not None]
    before = rig.fp.stats()["protect_drops"]
    rig.fp.inject(packets[:2], sa=rig.in_handle)  # an inbound SA cannot send: dropped, counted
    rig.fp.inject(packets[:1], sa=999)  # no such SA
    assert _recv_all(rig.peer, 1, timeout=0.3) == []
    assert rig.fp.stats()["protect_drops"] == before + 3


def test_table_sizes_count_the_replay_bitmaps_of_inbound_sas_only(rig: Rig) -> None:
    """Outbound SAs have no replay bitmap; inbound ones window / 32 + 1 words rounded up to a power
    of two (RFC 6479): 16 bytes for the rig's 64, 8 for 32, 1 KiB for 4096."""
    sizes = rig.fp.table_sizes()
    assert (sizes["sas"], sizes["replay_bitmap_bytes"]) == (2, 16)
    assert 0 < sizes["sa_entry_bytes"] < 1024
    h32 = rig.fp.add_sa(replace(rig.in_params, spi=0x7001, replay_window=32), Direction.INBOUND)
    h4k = rig.fp.add_sa(replace(rig.in_params, spi=0x7002, replay_window=4096), Direction.INBOUND)
    rig.fp.add_sa(replace(rig.out_params, spi=0x7003, replay_window=4096), Direction.OUTBOUND)
    assert rig.fp.table_sizes()["replay_bitmap_bytes"] == 16 + 8 + 1024
    assert rig.fp.remove_sa(h4k) and rig.fp.remove_sa(h32)
    assert rig.fp.table_sizes()["replay_bitmap_bytes"] == 16
