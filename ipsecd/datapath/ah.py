"""AH ICV computation (RFC 4302), docs/datapath.md section 4.

 0                   1                   2                   3
 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
| Next Header   |  Payload Len  |          RESERVED             |
|                 Security Parameters Index (SPI)               |
|                    Sequence Number (low 32 bits)              |
|                ICV + zero padding (variable)                  |
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import struct

from ipsecd.datapath.counters import DropReason
from ipsecd.datapath.esp import integrity_icv
from ipsecd.datapath.ipheader import EXT_DEST_OPTS, EXT_HOP_BY_HOP, EXT_ROUTING, Drop
from ipsecd.datapath.sa import IntegAlg, SAParams

AH_FIXED = 12
# RFC 4302 section 3.3.3.1.1.2: immutable IPv4 options (EOL, NOP, security options, router alert, SDMD)
IPV4_IMMUTABLE_OPTIONS = frozenset({0, 1, 130, 133, 134, 148, 149})
IPV4_SOURCE_ROUTE = frozenset({131, 137})  # LSRR, SSRR: not supported
MASK32 = 0xFFFFFFFF


def ah_length(icv_len: int, version: int) -> int:
    """AH length: a multiple of 4 bytes over IPv4, of 8 over IPv6 (RFC 4302 section 2.6)."""
    align = 4 if version == 4 else 8
    return -(-(AH_FIXED + icv_len) // align) * align


def ah_header(next_header: int, length: int, spi: int, seq: int) -> bytes:
    """The AH header with its ICV field (and padding) zeroed."""
    return struct.pack("!BBHII", next_header, length // 4 - 2, 0, spi, seq & MASK32) + bytes(
        length - AH_FIXED
    )


def _zero_ipv4(buf: bytearray) -> None:
    """RFC 4302 section 3.3.3.1.1: TOS, flags + offset, TTL, checksum and mutable options zeroed."""
    buf[1] = 0
    buf[6] = buf[7] = 0
    buf[8] = 0
    buf[10] = buf[11] = 0
    end = (buf[0] & 0x0F) * 4
    i = 20
    while i < end:
        kind = buf[i]
        if kind == 0:  # end of option list: the rest is left as it is
            return
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or buf[i + 1] < 2 or i + buf[i + 1] > end or kind in IPV4_SOURCE_ROUTE:
            raise Drop(DropReason.MALFORMED)
        length = buf[i + 1]
        if kind not in IPV4_IMMUTABLE_OPTIONS:
            buf[i : i + length] = bytes(length)
        i += length


def _zero_ipv6_options(buf: bytearray, start: int, end: int) -> None:
    """Zero the data of options with the 'may change en route' bit (RFC 8200 section 4.2)."""
    i = start
    while i < end:
        kind = buf[i]
        if kind == 0:  # Pad1
            i += 1
            continue
        if i + 1 >= end or i + 2 + buf[i + 1] > end:
            raise Drop(DropReason.MALFORMED)
        length = buf[i + 1]
        if kind & 0x20:
            buf[i + 2 : i + 2 + length] = bytes(length)
        i += 2 + length


def _zero_ipv6(buf: bytearray, ah_off: int) -> None:
    """RFC 4302 section 3.3.3.1.2: Traffic Class, Flow Label, Hop Limit, mutable option data."""
    buf[0] &= 0xF0
    buf[1] = buf[2] = buf[3] = 0
    buf[7] = 0
    nh = buf[6]
    off = 40
    while off < ah_off:  # only 0, 43 and 60 precede AH (ipheader.ipv6_split)
        length = (buf[off + 1] + 1) * 8
        if nh in (EXT_HOP_BY_HOP, EXT_DEST_OPTS):
            _zero_ipv6_options(buf, off + 2, off + length)
        elif nh == EXT_ROUTING and buf[off + 3] != 0:
            raise Drop(DropReason.MALFORMED)  # segments left != 0: source routing not supported
        nh = buf[off]
        off += length


class AhCrypto:
    """ICV computation for one AH SA direction."""

    def __init__(self, params: SAParams) -> None:
        self.spi = params.spi
        self.esn = params.esn
        self.key = params.integ_key
        self.alg = IntegAlg(params.integ_alg)
        self.icv_len = params.integ_info.icv_len

    def icv(self, packet: bytes | bytearray, version: int, ah_off: int, seq: int) -> bytes:
        """The ICV of `packet` whose AH starts at `ah_off` (its ICV field is zeroed here)."""
        buf = bytearray(packet)
        length = (buf[ah_off + 1] + 2) * 4
        buf[ah_off + AH_FIXED : ah_off + length] = bytes(length - AH_FIXED)
        if version == 4:
            _zero_ipv4(buf)
        else:
            _zero_ipv6(buf, ah_off)
        if self.esn:  # RFC 4302 section 2.5.1: the high-order 32 bits are appended for the ICV only
            buf += (seq >> 32).to_bytes(4, "big")
        return integrity_icv(self.alg, self.key, bytes(buf))
