"""TUN device and rtnetlink helpers, exercised inside a network namespace."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Callable

import pytest

from ipsecd.io.netlink import Netlink, NetlinkOperationError
from ipsecd.io.raw import ipv4_header
from ipsecd.io.tun import (
    TUN_F_CSUM,
    TUN_F_TSO4,
    TUN_F_TSO6,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VNET_HDR_LEN,
    TunDevice,
    TunError,
    VnetHeader,
)
from tests import netns


def _csum(data: bytes) -> int:
    # RFC 1071 Internet checksum.
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _echo_reply(request: bytes) -> bytes:
    """Turn an IPv4 ICMP echo request into its reply (RFC 792): swap addresses, type 8 -> 0."""
    ihl = (request[0] & 0x0F) * 4
    hdr = bytearray(request[:ihl])
    hdr[12:16], hdr[16:20] = request[16:20], request[12:16]
    hdr[8] = 64
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("!H", _csum(bytes(hdr)))
    icmp = bytearray(request[ihl:])
    icmp[0] = 0
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", _csum(bytes(icmp)))
    return bytes(hdr) + bytes(icmp)


def _read_until(tun: TunDevice, match: object, timeout: float = 3.0) -> bytes:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        select.select([tun], [], [], left)
        for pkt in tun.read_batch(16):
            if callable(match) and match(pkt):
                return pkt
    raise AssertionError("no matching packet came out of the TUN device")


def _read_raw_until(tun: TunDevice, match: Callable[[bytes], bool], timeout: float = 3.0) -> bytes:
    """What the kernel wrote, virtio_net_hdr included (read_batch would take it off)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        select.select([tun], [], [], left)
        with contextlib.suppress(BlockingIOError):
            pkt = os.read(tun.fileno(), 65536)
            if match(pkt):
                return pkt
    raise AssertionError("no matching packet came out of the TUN device")


def _is_echo_request(pkt: bytes) -> bool:
    ihl = (pkt[0] & 0x0F) * 4
    return pkt[0] >> 4 == 4 and pkt[9] == 1 and pkt[ihl] == 8


def test_invalid_names_are_refused_before_touching_the_kernel() -> None:
    for bad in ("x" * 16, "a/b", "a b"):
        with pytest.raises(TunError, match="invalid interface name"):
            TunDevice.open(bad)


@pytest.mark.root
def test_ping_through_tun_gets_a_synthetic_reply(lab: netns.Lab) -> None:
    h = lab.host("t")
    with h.entered():
        tun = TunDevice.open("ipt0", mtu=1400)
        with Netlink() as nl:
            nl.add_address("ipt0", "10.77.0.1/32")
            nl.add_route("10.78.0.0/24", dev="ipt0")
    with tun:
        assert tun.mtu == 1400 and tun.name == "ipt0"
        pinger = h.popen(["ping", "-n", "-c", "1", "-W", "3", "10.78.0.5"], name="ping")
        req = _read_until(tun, _is_echo_request)
        assert req[12:16] == socket.inet_aton("10.77.0.1") and req[16:20] == socket.inet_aton("10.78.0.5")
        assert tun.write_batch([_echo_reply(req)]) == 1
        assert pinger.wait(5) == 0, pinger.output()
        assert "1 received" in pinger.output()
        assert tun.stats.tx_packets == 1 and tun.stats.rx_packets >= 1


@pytest.mark.root
def test_read_batch_drains_and_write_batch_counts_rejects(lab: netns.Lab) -> None:
    h = lab.host("t")
    h.sysctl("net.ipv6.conf.default.disable_ipv6", 1)  # no router solicitations out of the TUN
    with h.entered():
        tun = TunDevice.open("ipt0")
        with Netlink() as nl:
            nl.add_address("ipt0", "10.77.0.1/32")
            nl.add_route("10.78.0.0/24", dev="ipt0")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tun, s:
        assert tun.read_batch(8) == []  # nothing queued: returns at once
        for i in range(5):
            s.sendto(bytes([i]) * 10, ("10.78.0.9", 9))
        first = tun.read_batch(3)
        rest = tun.read_batch(64)
        got = [p for p in first + rest if p[9] == 17]  # UDP only (ignore anything else the kernel sends)
        assert len(first) == 3 and len(got) == 5
        assert [p[-1] for p in got] == [0, 1, 2, 3, 4]
        assert tun.read_batch(8) == []
        # A packet that is no IP packet is rejected by the kernel: counted, and the batch goes on.
        good = _echo_reply(_echo_request("10.78.0.5", "10.77.0.1"))
        assert tun.write_batch([b"\x00" * 20, good]) == 2
        assert tun.stats.tx_rejected == 1 and tun.stats.tx_packets == 1


def _echo_request(src: str, dst: str) -> bytes:
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"x" * 8)
    icmp[2:4] = struct.pack("!H", _csum(bytes(icmp)))
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(icmp),
            0,
            0,
            64,
            1,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
    )
    hdr[10:12] = struct.pack("!H", _csum(bytes(hdr)))
    return bytes(hdr + icmp)


@pytest.mark.root
def test_netlink_routes_rules_and_mtu(lab: netns.Lab) -> None:
    h = lab.host("n")
    with h.entered():
        tun = TunDevice.open("ipt0", mtu=1300)
        with Netlink() as nl:
            nl.add_address("ipt0", "10.77.0.1/24")
            nl.add_address("ipt0", "2001:db8:77::1/64")
            nl.add_route("10.99.0.0/16", dev="ipt0", table=51)
            nl.add_route("0.0.0.0/0", via="10.77.0.254")
            nl.add_rule(table=51, priority=100, fwmark=0x51, invert=True)
            nl.add_rule(table=254, priority=99, suppress_prefixlen=0)
            nl.add_rule(table=51, priority=100, version=6, fwmark=0x51, invert=True)
            assert nl.link_mtu("ipt0") == 1300
            nl.set_link("ipt0", mtu=1280)
            assert nl.link_mtu("ipt0") == 1280
            addrs = {str(a.interface) for a in nl.addresses("ipt0")}
            assert {"10.77.0.1/24", "2001:db8:77::1/64"} <= addrs
            assert [(str(r.dst), r.oif) for r in nl.routes(51)] == [("10.99.0.0/16", nl.link_index("ipt0"))]
            assert [str(g) for g in nl.default_gateways()] == ["10.77.0.254"]
            mine = [r for r in nl.rules() if r.priority in (99, 100)]
            assert (mine[0].suppress_prefixlen, mine[1].invert, mine[1].fwmark) == (0, True, 0x51)
            with pytest.raises(NetlinkOperationError, match="add address"):
                nl.add_address("ipt0", "10.77.0.1/24")  # exists
            with pytest.raises(NetlinkOperationError, match="no such interface"):
                nl.add_route("10.98.0.0/16", dev="nonexistent0")
            nl.del_rule(table=51, priority=100, fwmark=0x51, invert=True)
            nl.del_route("10.99.0.0/16", dev="ipt0", table=51)
            nl.del_address("ipt0", "10.77.0.1/24")
            assert nl.routes(51) == []
    with tun:
        ip_rule = h.run("ip rule").stdout
        assert "suppress_prefixlength 0" in ip_rule and "not from all fwmark" not in ip_rule
        assert "not from all fwmark 0x51 lookup 51" in h.run("ip -6 rule").stdout


@pytest.mark.root
def test_vnet_header_multi_queue_and_busy_names(lab: netns.Lab) -> None:
    h = lab.host("v")
    h.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
    with h.entered():
        vnet = TunDevice.open("iptv", vnet_hdr=True)
        with pytest.raises(TunError, match="TUNSETIFF iptv"):
            TunDevice.open("iptv")  # attached already (and not multi-queue): busy
        q1 = TunDevice.open("iptq", multi_queue=True)
        q2 = TunDevice.open("iptq", multi_queue=True)  # a second queue of the same device
        auto = TunDevice.open()
        with Netlink() as nl:
            nl.add_address("iptv", "10.79.0.1/32")
            nl.add_route("10.80.0.0/24", dev="iptv")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with vnet, q1, q2, auto, s:
        assert auto.name.startswith("tun") and q1.name == q2.name == "iptq"
        s.sendto(b"payload", ("10.80.0.1", 9))
        # struct virtio_net_hdr (10 bytes) precedes the IPv4 packet; read_batch takes it off.
        pkt = _read_until(vnet, lambda p: p[0] >> 4 == 4 and p[9] == 17)
        assert pkt.endswith(b"payload") and len(pkt) == 20 + 8 + 7


def test_vnet_header_codec() -> None:
    h = VnetHeader(VIRTIO_NET_HDR_F_NEEDS_CSUM, 1, 54, 1448, 34, 16)
    raw = h.pack()
    assert len(raw) == VNET_HDR_LEN and raw[:2] == b"\x01\x01" and raw[2:4] == (54).to_bytes(2, "little")
    assert VnetHeader.parse(raw + b"rest") == h
    with pytest.raises(ValueError):
        VnetHeader.parse(b"\x00" * 9)


@pytest.mark.root
def test_checksum_offload_hands_over_partial_checksums(lab: netns.Lab) -> None:
    h = lab.host("o")
    h.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
    with h.entered():
        plain = TunDevice.open("iptp")
        with pytest.raises(TunError, match="vnet_hdr"):
            plain.set_offload(TUN_F_CSUM)
        tun = TunDevice.open("ipto", vnet_hdr=True)
        tun.set_offload(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        with Netlink() as nl:
            nl.add_address("ipto", "10.81.0.1/32")
            nl.add_route("10.82.0.0/24", dev="ipto")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("10.81.0.1", 7777))
        sink.settimeout(3)
    with plain, tun, s, sink:
        s.sendto(b"offloaded", ("10.82.0.1", 9))
        pkt = _read_raw_until(tun, lambda p: len(p) > VNET_HDR_LEN + 20 and p[VNET_HDR_LEN + 9] == 17)
        hdr = VnetHeader.parse(pkt)
        # The UDP checksum is left to us: it starts after the IPv4 header, field at offset 6.
        assert hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM and (hdr.csum_start, hdr.csum_offset) == (20, 6)
        assert pkt.endswith(b"offloaded")
        # read_batch finishes it: the UDP checksum then verifies over the pseudo-header (RFC 768).
        s.sendto(b"finished", ("10.82.0.1", 9))
        done = _read_until(tun, lambda p: p[0] >> 4 == 4 and p[9] == 17)
        pseudo = done[12:20] + struct.pack("!BBH", 0, 17, len(done) - 20)
        assert done.endswith(b"finished") and done[26:28] != b"\0\0" and _csum(pseudo + done[20:]) == 0
        # Writing back: write_batch puts a header without flags before the complete packet.
        body = b"\x9c\x40" + (7777).to_bytes(2, "big") + (8 + 5).to_bytes(2, "big") + b"\x00\x00" + b"hello"
        packet = ipv4_header("10.82.0.7", "10.81.0.1", 17, len(body)) + body
        assert tun.write_batch([packet]) == 1 and tun.stats.tx_rejected == 0
        assert sink.recvfrom(100) == (b"hello", ("10.82.0.7", 40000))
        tun.set_offload(0)
