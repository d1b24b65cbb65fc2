"""UDP encapsulation of ESP (RFC 3948), docs/datapath.md section 2.4.

 0                   1                   2                   3
 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|        Source Port            |      Destination Port         |
|           Length              |           Checksum            |
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|  ESP header (SPI != 0) ... | or 0xFF (keepalive) | or 4 zero bytes + IKE (non-ESP marker)
"""

from __future__ import annotations

import enum
import struct

from ipsecd.datapath.ipheader import PROTO_UDP, checksum, pseudo_sum

UDP_HEADER_LEN = 8
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 section 2.2
NAT_KEEPALIVE = b"\xff"  # RFC 3948 section 2.3


class Kind(enum.Enum):
    ESP = "esp"
    NAT_KEEPALIVE = "nat-keepalive"
    NON_ESP_MARKER = "non-esp-marker"  # IKE on port 4500
    MALFORMED = "malformed"


def classify(payload: bytes) -> Kind:
    """What a UDP-encapsulated datagram on the NAT-T port carries (RFC 3948 section 2)."""
    if payload == NAT_KEEPALIVE:
        return Kind.NAT_KEEPALIVE
    if payload[:4] == NON_ESP_MARKER and len(payload) >= 4:
        return Kind.NON_ESP_MARKER
    if len(payload) < 8:
        return Kind.MALFORMED
    return Kind.ESP


def udp_header(sport: int, dport: int, payload: bytes, outer: bytes | None = None, version: int = 4) -> bytes:
    """The UDP header in front of `payload`: checksum 0 over IPv4 (RFC 3948 section 2.1); over IPv6
    computed with the outer header `outer` (its addresses), RFC 8200 section 8.1."""
    length = UDP_HEADER_LEN + len(payload)
    if version == 4 or outer is None:
        return struct.pack("!HHHH", sport, dport, length, 0)
    head = struct.pack("!HHHH", sport, dport, length, 0)
    value = checksum(head + payload, pseudo_sum(outer, 6, PROTO_UDP, length))
    return struct.pack("!HHHH", sport, dport, length, value or 0xFFFF)
