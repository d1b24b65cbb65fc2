"""Raw IP sockets for ESP (IP protocol 50) and AH (IP protocol 51), batched and non-blocking.

The kernel here has no ESP/AH, so protocol 50/51 packets addressed to this host are only delivered
to raw sockets (and no ICMP protocol-unreachable is sent once a raw socket took them).

IPv4: received data starts with the IPv4 header (raw(7)); packets are sent with IP_HDRINCL, so
the caller provides the whole IPv4 header (``ipv4_header`` builds one). With IP_HDRINCL Linux fills
in the header checksum and total length always, and the identification when it is zero.

IPv6: the kernel never passes the IPv6 header of received packets to raw sockets and builds it on
send (RFC 3542 section 3). Received data is the payload (the ESP/AH header onward); the
destination address comes from IPV6_PKTINFO; ``send`` takes a ``source`` for the same reason.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple

IPPROTO_ESP = 50  # RFC 4303
IPPROTO_AH = 51  # RFC 4302
SO_MARK = getattr(socket, "SO_MARK", 36)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
MAX_PACKET = 65535


class RawPacket(NamedTuple):
    data: bytes  # IPv4: header included; IPv6: payload only
    peer: str  # source address
    local: str | None  # destination address


@dataclass
class RawStats:
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_errors: int = 0
    tx_full: int = 0
    last_error: int = 0


def _checksum(data: bytes) -> int:
    # RFC 1071: one's complement of the one's complement sum of 16-bit words.
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_header(
    src: str,
    dst: str,
    protocol: int,
    payload_len: int,
    *,
    ttl: int = 64,
    ident: int = 0,
    tos: int = 0,
    df: bool = False,
) -> bytes:
    """A 20-byte IPv4 header without options, checksum filled in.

    RFC 791 section 3.1:
        0                   1                   2                   3
        0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
       +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
       |Version|  IHL  |Type of Service|          Total Length         |
       +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
       |         Identification        |Flags|      Fragment Offset    |
       +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
       |  Time to Live |    Protocol   |         Header Checksum       |
       +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
       |                       Source Address                          |
       +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
       |                    Destination Address                        |
       +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    """
    total = 20 + payload_len
    if total > MAX_PACKET:
        raise ValueError(f"IPv4 packet of {total} bytes exceeds {MAX_PACKET}")
    flags_frag = 0x4000 if df else 0
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        tos,
        total,
        ident,
        flags_frag,
        ttl,
        protocol,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]


class RawIpSocket:
    """A non-blocking raw socket for one IP protocol and one address family."""

    def __init__(self, sock: socket.socket, protocol: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.protocol = protocol
        self.family = sock.family
        self.stats = RawStats()

    @classmethod
    def open(
        cls,
        protocol: int = IPPROTO_ESP,
        version: int = 4,
        *,
        bind: str | None = None,
        mark: int | None = None,
    ) -> RawIpSocket:
        if not 0 < protocol < 255:
            raise ValueError(f"IP protocol {protocol} out of range")
        fam = socket.AF_INET if version == 4 else socket.AF_INET6
        s = socket.socket(fam, socket.SOCK_RAW, protocol)
        try:
            if fam == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            if mark is not None:
                s.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
            if bind is not None:
                s.bind((bind, 0))
            return cls(s, protocol)
        except BaseException:
            s.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_batch(self, max_packets: int = 64) -> list[RawPacket]:
        """Receive up to ``max_packets`` packets; stops when none is queued (never blocks)."""
        out: list[RawPacket] = []
        v4 = self.family == socket.AF_INET
        while len(out) < max_packets:
            try:
                data, anc, _flags, peer = self.sock.recvmsg(MAX_PACKET, socket.CMSG_SPACE(20))
            except BlockingIOError:
                break
            except OSError as e:
                self.stats.rx_errors += 1
                self.stats.last_error = e.errno or 0
                continue
            local: str | None = None
            if v4:
                if len(data) < 20:  # never from the kernel; be safe
                    self.stats.rx_errors += 1
                    continue
                local = socket.inet_ntop(socket.AF_INET, data[16:20])
            else:
                for level, kind, cdata in anc:
                    # struct in6_pktinfo { struct in6_addr ipi6_addr; int ipi6_ifindex; }
                    if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(cdata) >= 16:
                        local = socket.inet_ntop(socket.AF_INET6, cdata[:16])
            out.append(RawPacket(data, str(peer[0]), local))
            self.stats.rx_bytes += len(data)
        self.stats.rx_packets += len(out)
        return out

    def send(self, packet: bytes, dst: str, source: str | None = None) -> bool:
        """Send one packet (IPv4: with its header; IPv6: payload); False if it was dropped."""
        try:
            if source is not None and self.family == socket.AF_INET6:
                info = socket.inet_pton(socket.AF_INET6, source) + struct.pack("=i", 0)
                self.sock.sendmsg([packet], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)], 0, (dst, 0))
            else:
                self.sock.sendto(packet, (dst, 0))
        except BlockingIOError:
            self.stats.tx_full += 1
            return False
        except OSError as e:
            self.stats.tx_errors += 1
            self.stats.last_error = e.errno or 0
            return False
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(packet)
        return True

    def send_batch(self, packets: Sequence[tuple[bytes, str]]) -> int:
        """Send ``(packet, destination)`` pairs; returns how many were consumed from the front.

        Refused packets are dropped and counted; only a full socket buffer stops the batch early.
        """
        done = 0
        for pkt, dst in packets:
            before = self.stats.tx_full
            self.send(pkt, dst)
            if self.stats.tx_full != before:
                break
            done += 1
        return done

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawIpSocket:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def destination_of(packet: bytes) -> str:
    """Destination address of an IPv4 packet (for sending a packet built with its header)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise ValueError("not an IPv4 packet")
    return str(ipaddress.IPv4Address(packet[16:20]))
