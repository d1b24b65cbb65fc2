"""IPv4/IPv6 header parsing and building for the ESP/AH transforms (docs/datapath.md section 2).

IPv4 header (RFC 791 section 3.1):

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |Version|  IHL  |Type of Service|          Total Length         |
   |         Identification        |Flags|      Fragment Offset    |
   |  Time to Live |    Protocol   |         Header Checksum       |
   |                       Source Address                          |
   |                    Destination Address                        |
   |                    Options                    |    Padding    |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

IPv6 header (RFC 8200 section 3):

   |Version| Traffic Class |           Flow Label                  |
   |         Payload Length        |  Next Header  |   Hop Limit   |
   |                 Source Address (16 bytes)                     |
   |              Destination Address (16 bytes)                   |
"""

from __future__ import annotations

import struct
import sys
from array import array

from ipsecd.datapath.counters import DropReason

MAX_IPV4 = 65535
MAX_IPV6 = 65535 + 40
PROTO_IPV4 = 4
PROTO_IPV6 = 41
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ESP = 50
PROTO_AH = 51
PROTO_NONE = 59  # RFC 8200 section 4.7, ESP dummy packets (RFC 4303 section 2.6)
EXT_HOP_BY_HOP = 0
EXT_ROUTING = 43
EXT_FRAGMENT = 44
EXT_DEST_OPTS = 60
PORT_PROTOCOLS = (6, 17, 132, 136)  # TCP, UDP, SCTP, UDP-Lite

_LITTLE = sys.byteorder == "little"


class Drop(Exception):
    """Internal: the packet is dropped for `reason` (never escapes a transform)."""

    def __init__(self, reason: DropReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """RFC 1071 Internet checksum (the one's complement of the one's complement sum)."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = sum(array("H", bytes(data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if _LITTLE:  # RFC 1071 section 2(B): byte-order independent; swap the folded sum
        total = ((total & 0xFF) << 8) | (total >> 8)
    total += initial
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ones_sum(data: bytes) -> int:
    """The folded 16-bit one's complement sum of `data` (big-endian words)."""
    return ~checksum(data) & 0xFFFF


def validate(pkt: bytes, fragments: bool = False) -> int:
    """Check a full IP packet (docs/datapath.md section 2); return its version (4 or 6).

    IPv4 fragments are MALFORMED unless `fragments` (tunnel-mode inner packets carry them whole).
    """
    n = len(pkt)
    if n == 0:
        raise Drop(DropReason.MALFORMED)
    version = pkt[0] >> 4
    if version == 4:
        if n > MAX_IPV4:
            raise Drop(DropReason.OVERSIZED)
        if n < 20:
            raise Drop(DropReason.MALFORMED)
        ihl = (pkt[0] & 0x0F) * 4
        total = (pkt[2] << 8) | pkt[3]
        if ihl < 20 or ihl > total or total != n:
            raise Drop(DropReason.MALFORMED)
        if not fragments and ((pkt[6] & 0x3F) or pkt[7]):  # MF or fragment offset
            raise Drop(DropReason.MALFORMED)
        return 4
    if version == 6:
        if n > MAX_IPV6:
            raise Drop(DropReason.OVERSIZED)
        if n < 40:
            raise Drop(DropReason.MALFORMED)
        plen = (pkt[4] << 8) | pkt[5]
        if plen + 40 != n:  # a jumbogram (payload length 0 on a longer buffer) fails here too
            raise Drop(DropReason.MALFORMED)
        return 6
    raise Drop(DropReason.MALFORMED)


def ipv4_header_checksum(hdr: bytearray) -> None:
    """Recompute the header checksum of an IPv4 header in place (RFC 791)."""
    hdr[10] = hdr[11] = 0
    struct.pack_into("!H", hdr, 10, checksum(hdr))


def ipv6_split(pkt: bytes | bytearray) -> tuple[int, int]:
    """Where ESP/AH goes in an IPv6 packet (docs/datapath.md section 2.1).

    Returns (offset of the Next Header field pointing at the protected part, offset of that part).
    """
    nh_off = 6
    off = 40
    n = len(pkt)
    while True:
        nh = pkt[nh_off]
        if nh == EXT_FRAGMENT:
            raise Drop(DropReason.MALFORMED)
        if nh not in (EXT_HOP_BY_HOP, EXT_ROUTING, EXT_DEST_OPTS):
            return nh_off, off
        if off + 8 > n:
            raise Drop(DropReason.MALFORMED)
        if nh == EXT_DEST_OPTS and pkt[off] != EXT_ROUTING:
            return nh_off, off
        length = (pkt[off + 1] + 1) * 8
        if off + length > n:
            raise Drop(DropReason.MALFORMED)
        nh_off = off
        off += length


def split(pkt: bytes | bytearray, version: int) -> tuple[int, int]:
    """(offset of the protocol / Next Header field, offset of the protected part)."""
    if version == 4:
        return 9, (pkt[0] & 0x0F) * 4
    return ipv6_split(pkt)


def set_length(hdr: bytearray, version: int, total: int) -> None:
    """Write the total length (IPv4) or the payload length (IPv6) of a packet of `total` bytes."""
    if version == 4:
        struct.pack_into("!H", hdr, 2, total)
    else:
        struct.pack_into("!H", hdr, 4, total - 40)


_IPV4_FIXED = struct.Struct("!BBHHHBB")
_WORDS10 = struct.Struct("!10H")


def outer_ipv4(src: bytes, dst: bytes, tos: int, ident: int, df: bool, proto: int, total: int) -> bytes:
    """A 20-byte outer IPv4 header, TTL 64 (docs/datapath.md section 2.3)."""
    head = _IPV4_FIXED.pack(0x45, tos, total, ident, 0x4000 if df else 0, 64, proto)
    hdr = head + b"\x00\x00" + src + dst
    total_sum: int = sum(_WORDS10.unpack(hdr))
    total_sum = (total_sum & 0xFFFF) + (total_sum >> 16)
    total_sum = (total_sum & 0xFFFF) + (total_sum >> 16)
    return head + (~total_sum & 0xFFFF).to_bytes(2, "big") + src + dst


def outer_ipv6(src: bytes, dst: bytes, tclass: int, proto: int, payload_len: int) -> bytes:
    """A 40-byte outer IPv6 header: flow label 0, hop limit 64 (docs/datapath.md section 2.3)."""
    return struct.pack("!IHBB16s16s", (6 << 28) | (tclass << 20), payload_len, proto, 64, src, dst)


def pseudo_sum(pkt: bytes | bytearray, version: int, proto: int, length: int) -> int:
    """The one's complement sum of the TCP/UDP pseudo-header (RFC 793, RFC 8200 section 8.1)."""
    if version == 4:
        pseudo = bytes(pkt[12:20]) + struct.pack("!BBH", 0, proto, length)
    else:
        pseudo = bytes(pkt[8:40]) + struct.pack("!IxxxB", length, proto)
    return ones_sum(pseudo)


def l4_checksum(pkt: bytes | bytearray, version: int, proto: int, segment: bytes | bytearray) -> int:
    """The TCP/UDP checksum of `segment` (its checksum field zeroed) inside `pkt`'s addresses."""
    value = checksum(segment, pseudo_sum(pkt, version, proto, len(segment)))
    if proto == PROTO_UDP and value == 0:
        value = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    return value


def upper_layer(pkt: bytes, version: int) -> tuple[int, int, bool]:
    """(upper-layer protocol, its offset, non-first fragment) for selector matching (section 6)."""
    if version == 4:
        return pkt[9], (pkt[0] & 0x0F) * 4, bool(((pkt[6] & 0x1F) << 8) | pkt[7])
    nh = pkt[6]
    off = 40
    n = len(pkt)
    nonfirst = False
    for _ in range(64):  # bounded walk
        if nh not in (EXT_HOP_BY_HOP, EXT_ROUTING, EXT_FRAGMENT, EXT_DEST_OPTS, PROTO_AH) or off + 8 > n:
            return nh, off, nonfirst
        if nh == EXT_FRAGMENT:
            nonfirst = nonfirst or bool(struct.unpack_from("!H", pkt, off + 2)[0] & 0xFFF8)
            length = 8
        elif nh == PROTO_AH:
            length = (pkt[off + 1] + 2) * 4
        else:
            length = (pkt[off + 1] + 1) * 8
        nh = pkt[off]
        off += length
    return nh, off, nonfirst


def fix_transport_checksum(pkt: bytearray, version: int) -> None:
    """Recompute a TCP/UDP checksum after NAT-T decapsulation (RFC 3948 section 3.1.2)."""
    proto, off, nonfirst = upper_layer(bytes(pkt), version)
    if nonfirst:
        return
    if proto == PROTO_TCP:
        field = off + 16
    elif proto == PROTO_UDP:
        field = off + 6
    else:
        return
    if field + 2 > len(pkt):
        return
    if proto == PROTO_UDP and version == 4 and pkt[field] == 0 and pkt[field + 1] == 0:
        return  # RFC 768: an IPv4 UDP checksum of 0 means none
    pkt[field] = pkt[field + 1] = 0
    struct.pack_into("!H", pkt, field, l4_checksum(pkt, version, proto, pkt[off:]))
