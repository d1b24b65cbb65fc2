"""UDP (500/4500) and raw ESP/AH sockets between two namespaces."""

from __future__ import annotations

import errno
import select
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from ipsecd.io import raw, udp
from ipsecd.io.netlink import Netlink
from tests import netns

T = TypeVar("T")


def _collect(fileno: int, read: Callable[[int], list[T]], want: int, timeout: float = 3.0) -> list[T]:
    """Read batches until ``want`` items arrived or the time is up."""
    got: list[T] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and (left := deadline - time.monotonic()) > 0:
        select.select([fileno], [], [], left)
        got += read(64)
    return got


@pytest.mark.root
def test_udp_batches_between_namespaces_v4_and_v6(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    with p.b.entered():
        srv4 = udp.open_ike_sockets("0.0.0.0")
        srv6 = udp.UdpSocket.open("::", udp.NATT_PORT)
    with p.a.entered():
        cli4 = udp.UdpSocket.open("192.0.2.1", 0)
        cli6 = udp.UdpSocket.open("2001:db8::1", 4500)
    try:
        assert srv4.ike.local_address == ("0.0.0.0", 500) and srv4.natt.local_address == ("0.0.0.0", 4500)
        batch: list[tuple[bytes, udp.Address | None]] = [
            (bytes([i]) * (i + 1), ("192.0.2.2", 4500)) for i in range(20)
        ]
        assert cli4.send_batch(batch) == 20 and cli4.stats.tx_packets == 20
        got = _collect(srv4.natt.fileno(), srv4.natt.recv_batch, 20)
        assert [g.data for g in got] == [b for b, _ in batch]
        assert {g.peer for g in got} == {cli4.local_address} and {g.local for g in got} == {"192.0.2.2"}
        assert srv4.natt.recv_batch() == []  # drained: returns at once
        # max_packets bounds one batch.
        cli4.send_batch([(b"x", ("192.0.2.2", 500))] * 5)
        time.sleep(0.1)
        assert len(srv4.ike.recv_batch(3)) == 3 and len(srv4.ike.recv_batch(3)) == 2
        # A datagram larger than the buffer is dropped and counted, never passed on cut.
        cli4.send_batch([(b"y" * 100, ("192.0.2.2", 500)), (b"z" * 10, ("192.0.2.2", 500))])
        got = _collect(srv4.ike.fileno(), lambda n: srv4.ike.recv_batch(n, bufsize=50), 1)
        assert [g.data for g in got] == [b"z" * 10] and srv4.ike.stats.rx_truncated == 1
        # Reply from the address the request came to (pktinfo source), over IPv6 too.
        assert cli6.send(b"hello6", ("2001:db8::2", 4500))
        (d,) = _collect(srv6.fileno(), srv6.recv_batch, 1)
        assert (d.data, d.peer, d.local) == (b"hello6", ("2001:db8::1", 4500), "2001:db8::2")
        assert srv6.send(b"back", d.peer, source=d.local)
        (r,) = _collect(cli6.fileno(), cli6.recv_batch, 1)
        assert (r.data, r.peer[0]) == (b"back", "2001:db8::2")
    finally:
        for s in (srv4, srv6, cli4, cli6):
            s.close()


@pytest.mark.root
def test_connected_socket_counts_icmp_unreachable_instead_of_raising(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    with p.a.entered():
        s = udp.UdpSocket.open("192.0.2.1", 0, connect=("192.0.2.2", 4500))  # nobody listens there
    with s:
        assert s.send(b"first")
        # The port unreachable comes back and is reported on the next call.
        deadline = time.monotonic() + 3
        while s.stats.tx_errors == 0 and time.monotonic() < deadline:
            s.send(b"again")
            time.sleep(0.02)
        assert s.stats.tx_errors >= 1 and s.stats.last_error == errno.ECONNREFUSED
        assert s.send_batch([(b"more", None)] * 3) == 3  # a batch never raises either
        assert s.recv_batch() == []


@pytest.mark.root
def test_so_mark_lets_the_daemons_packets_bypass_a_capture_rule(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    with p.a.entered(), Netlink() as nl:
        # Everything without mark 0x77 is routed by table 77, which has no way to 192.0.2.0/24.
        nl.add_route("203.0.113.0/24", via="192.0.2.2", table=77)
        nl.add_rule(table=77, priority=100, fwmark=0x77, invert=True)
        nl.add_rule(table=254, priority=200)
    p.a.run("ip route add unreachable 192.0.2.0/24 table 77")
    with p.b.entered():
        srv = udp.UdpSocket.open("192.0.2.2", 4500)
    with p.a.entered():
        plain = udp.UdpSocket.open("192.0.2.1", 0)
        marked = udp.UdpSocket.open("192.0.2.1", 0, mark=0x77)
    with srv, plain, marked:
        assert marked.mark == 0x77 and plain.mark == 0
        assert not plain.send(b"captured", ("192.0.2.2", 4500))
        assert plain.stats.tx_errors == 1 and plain.stats.last_error in (
            errno.EHOSTUNREACH,
            errno.ENETUNREACH,
        )
        assert marked.send(b"bypass", ("192.0.2.2", 4500))
        got = _collect(srv.fileno(), srv.recv_batch, 1)
        assert [g.data for g in got] == [b"bypass"]


@pytest.mark.root
def test_raw_esp_ipv4_send_with_header_and_receive_with_header(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    with p.b.entered():
        rx = raw.RawIpSocket.open(raw.IPPROTO_ESP)
        rx_ah = raw.RawIpSocket.open(raw.IPPROTO_AH)
    with p.a.entered():
        tx = raw.RawIpSocket.open(raw.IPPROTO_ESP)
    with rx, rx_ah, tx, p.b.capture(p.link.b_ifname, "ip proto 50 or icmp") as cap:
        pkts = []
        for i in range(4):
            payload = (0x1000 + i).to_bytes(4, "big") + i.to_bytes(4, "big") + b"ciphertext"  # SPI, seq, data
            pkts.append((raw.ipv4_header("192.0.2.1", "192.0.2.2", 50, len(payload)) + payload, "192.0.2.2"))
        assert raw.destination_of(pkts[0][0]) == "192.0.2.2"
        assert tx.send_batch(pkts) == 4
        got = _collect(rx.fileno(), rx.recv_batch, 4)
        assert len(got) == 4
        for (sent, _), g in zip(pkts, got, strict=True):
            assert g.data[0] >> 4 == 4 and g.data[9] == 50 and g.data[20:] == sent[20:]
            assert (g.peer, g.local) == ("192.0.2.1", "192.0.2.2")
        assert rx_ah.recv_batch() == []  # protocol 51 socket sees none of the ESP packets
        assert cap.count("ip proto 50") == 4
    assert cap.count("icmp") == 0  # the raw socket took them: no protocol unreachable


@pytest.mark.root
def test_raw_ah_ipv6_payload_and_pktinfo(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    with p.b.entered():
        rx = raw.RawIpSocket.open(raw.IPPROTO_AH, version=6)
    with p.a.entered():
        tx = raw.RawIpSocket.open(raw.IPPROTO_AH, version=6)
    with rx, tx:
        body = bytes([59, 4, 0, 0]) + b"\x00\x00\x10\x00" + b"\x00\x00\x00\x01" + bytes(12)  # AH-like
        assert tx.send(body, "2001:db8::2", source="2001:db8::1")
        (g,) = _collect(rx.fileno(), rx.recv_batch, 1)
        assert (g.data, g.peer, g.local) == (body, "2001:db8::1", "2001:db8::2")


def test_ipv4_header_checksum_and_errors() -> None:
    h = raw.ipv4_header("10.0.0.1", "10.0.0.2", 50, 100, ident=7)
    assert len(h) == 20 and raw._checksum(h) == 0 and h[9] == 50
    assert int.from_bytes(h[2:4], "big") == 120
    with pytest.raises(ValueError):
        raw.ipv4_header("10.0.0.1", "10.0.0.2", 50, 70000)
    with pytest.raises(ValueError):
        raw.destination_of(b"\x60" + bytes(39))
    with pytest.raises(ValueError):
        raw.RawIpSocket.open(256)


@pytest.mark.root
def test_gso_send_and_gro_receive_keep_datagram_boundaries(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    with p.b.entered():
        plain_rx = udp.UdpSocket.open("192.0.2.2", 4500)
        gro_rx = udp.UdpSocket.open("192.0.2.2", 4501, gro=True)
    with p.a.entered():
        tx = udp.UdpSocket.open("192.0.2.1", 0, gso=True)
        other = udp.UdpSocket.open("192.0.2.1", 0)
    with plain_rx, gro_rx, tx, other:
        to_plain, to_gro = ("192.0.2.2", 4500), ("192.0.2.2", 4501)
        # Runs of equal sizes (a shorter one closes a run), a change of peer, a larger one.
        sizes = [1000] * 30 + [300] + [1000] * 5 + [1200, 7, 7]
        batch: list[tuple[bytes, udp.Address | None]] = [
            (i.to_bytes(2, "big") + bytes([i % 251]) * (n - 2 if n > 2 else 0), to_plain)
            for i, n in enumerate(sizes)
        ]
        batch.insert(10, (b"other-peer", ("192.0.2.2", 4509)))  # nobody listens: still no error
        assert tx.send_batch(batch) == len(batch)
        assert tx.stats.tx_gso_sends >= 3 and tx.stats.tx_packets == len(batch) and tx.stats.tx_errors == 0
        got = _collect(plain_rx.fileno(), plain_rx.recv_batch, len(sizes))
        assert [g.data for g in got] == [d for d, peer in batch if peer == to_plain]

        # A GRO receiver gets the GSO bursts coalesced and splits them back.
        burst: list[tuple[bytes, udp.Address | None]] = [(bytes([i]) * 1000, to_gro) for i in range(40)]
        burst.append((b"tail", to_gro))
        assert tx.send_batch(burst) == 41
        got = _collect(gro_rx.fileno(), gro_rx.recv_batch, 41)
        assert [g.data for g in got] == [d for d, _ in burst]
        assert {g.local for g in got} == {"192.0.2.2"} and {g.peer for g in got} == {tx.local_address}
        assert gro_rx.stats.rx_gro_buffers >= 1 and gro_rx.stats.rx_packets == 41
        # Without GSO on the sender, datagrams arrive one by one on the GRO socket too.
        assert other.send_batch([(b"single", to_gro)]) == 1
        (one,) = _collect(gro_rx.fileno(), gro_rx.recv_batch, 1)
        assert one.data == b"single"


@pytest.mark.root
def test_gso_run_larger_than_the_mtu_falls_back_to_single_sends(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab, mtu=1280)
    with p.b.entered():
        rx = udp.UdpSocket.open("192.0.2.2", 4500)
    with p.a.entered():
        tx = udp.UdpSocket.open("192.0.2.1", 0, gso=True)
    with rx, tx:
        batch: list[tuple[bytes, udp.Address | None]] = [
            (bytes([i]) * 1400, ("192.0.2.2", 4500)) for i in range(4)
        ]
        assert tx.send_batch(batch) == 4  # segments above the MTU: sent one by one (fragmented)
        got = _collect(rx.fileno(), rx.recv_batch, 4)
        assert [g.data for g in got] == [d for d, _ in batch]
        assert tx.stats.tx_gso_sends == 0 and tx.stats.tx_packets == 4 and tx.gso
