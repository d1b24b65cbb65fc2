"""TunDevice with vnet_hdr, without root: a datagram socketpair stands in for the TUN fd.

``write_batch`` must put an all-zero struct virtio_net_hdr (GSO_NONE, no checksum to finish) before
every packet and ``read_batch`` must take it off, finishing a NEEDS_CSUM checksum and dropping
(counting) super-packets and malformed headers; a plain device passes packets through unchanged.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from ipsecd.io.raw import ipv4_header
from ipsecd.io.tun import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    VNET_HDR_LEN,
    TunDevice,
    VnetHeader,
    complete_checksum,
)


def _sum16(data: bytes) -> int:
    # RFC 1071: one's complement sum of 16-bit words, folded.
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _udp_packet(payload: bytes, *, partial: bool) -> bytes:
    """IPv4 + UDP 10.0.0.1:1234 -> 10.0.0.2:5678. ``partial``: the checksum field holds only the
    pseudo-header sum (what the kernel hands over with NEEDS_CSUM); else the full checksum."""
    src, dst = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    length = 8 + len(payload)
    pseudo = _sum16(src + dst + struct.pack("!BBH", 0, 17, length))
    full = ~_sum16(struct.pack("!HHHH", 1234, 5678, length, pseudo) + payload) & 0xFFFF
    csum = pseudo if partial else full
    udp = struct.pack("!HHHH", 1234, 5678, length, csum) + payload
    return ipv4_header("10.0.0.1", "10.0.0.2", 17, len(udp)) + udp


@pytest.fixture
def pair() -> Iterator[tuple[TunDevice, socket.socket]]:
    mine, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mine.setblocking(False)
    dev = TunDevice(mine.detach(), "fake0", vnet_hdr=True)
    kernel.settimeout(2)
    try:
        yield dev, kernel
    finally:
        dev.close()
        kernel.close()


def test_write_batch_prefixes_a_zero_header(pair: tuple[TunDevice, socket.socket]) -> None:
    dev, kernel = pair
    pkts = [_udp_packet(b"one", partial=False), _udp_packet(b"second packet", partial=False)]
    assert dev.write_batch(pkts) == 2
    for pkt in pkts:
        raw = kernel.recv(2048)
        assert raw[:VNET_HDR_LEN] == bytes(VNET_HDR_LEN) and raw[VNET_HDR_LEN:] == pkt
        assert VnetHeader.parse(raw) == VnetHeader()
    assert dev.stats.tx_packets == 2 and dev.stats.tx_bytes == sum(map(len, pkts))


def test_read_batch_strips_the_header_and_finishes_checksums(pair: tuple[TunDevice, socket.socket]) -> None:
    dev, kernel = pair
    complete = _udp_packet(b"complete", partial=False)
    partial = _udp_packet(b"partial checksum!", partial=True)  # odd length: padded for the sum
    kernel.send(VnetHeader().pack() + complete)
    kernel.send(VnetHeader(VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=20, csum_offset=6).pack() + partial)
    got = dev.read_batch(8)
    assert got[0] == complete
    assert got[1] == _udp_packet(b"partial checksum!", partial=False)
    assert got[1] != partial and _sum16(got[1][20:26]) != 0
    assert dev.stats.rx_packets == 2 and dev.stats.rx_bytes == len(complete) + len(partial)
    assert dev.stats.rx_dropped == 0


def test_read_batch_drops_super_packets_and_bad_headers(pair: tuple[TunDevice, socket.socket]) -> None:
    dev, kernel = pair
    pkt = _udp_packet(b"x" * 100, partial=False)
    kernel.send(VnetHeader(gso_type=VIRTIO_NET_HDR_GSO_TCPV4, hdr_len=40, gso_size=1448).pack() + pkt)
    kernel.send(VnetHeader(gso_type=VIRTIO_NET_HDR_GSO_UDP_L4, hdr_len=28, gso_size=50).pack() + pkt)
    kernel.send(b"\x00" * 6)  # shorter than the header
    kernel.send(VnetHeader().pack())  # a header and no packet
    kernel.send(VnetHeader(VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=20, csum_offset=len(pkt)).pack() + pkt)
    kernel.send(VnetHeader().pack() + pkt)  # the batch goes on after the drops
    assert dev.read_batch(16) == [pkt]
    assert dev.stats.rx_dropped == 5 and dev.stats.rx_packets == 1
    assert dev.read_batch(16) == []  # nothing queued: returns at once


def test_complete_checksum_bounds_and_zero() -> None:
    pkt = _udp_packet(b"abc", partial=True)
    assert complete_checksum(pkt, 20, len(pkt) - 21) is None  # field would run past the end
    assert complete_checksum(pkt, len(pkt), 0) is None
    # A sum of all ones would give checksum 0: it is sent as 0xFFFF (RFC 768).
    data = b"\xff\xff\x00\x00"
    assert complete_checksum(data, 0, 2) == b"\xff\xff\xff\xff"


def test_plain_device_passes_packets_unchanged() -> None:
    mine, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mine.setblocking(False)
    with TunDevice(mine.detach(), "fake1") as dev, kernel:
        pkt = _udp_packet(b"plain", partial=False)
        assert dev.write_batch([pkt]) == 1 and kernel.recv(2048) == pkt
        kernel.send(pkt)
        assert dev.read_batch(4) == [pkt]


def test_enable_offloads_reports_what_the_fd_accepts(pair: tuple[TunDevice, socket.socket]) -> None:
    """A socket refuses TUNSETOFFLOAD: every try fails, nothing is in force and nothing raises."""
    dev, _ = pair
    assert dev.enable_offloads() == 0 and dev.offload == 0
