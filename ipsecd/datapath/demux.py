"""Inbound demultiplexing: which SA (protocol, SPI) an outer packet is for, before any SA is chosen.

The daemon looks the SA up by (protocol, SPI); a packet whose SPI has no SA is counted by the caller
as a Bad SPI Packet (Windows IP Security Monitor) and dropped. Never raises on packet data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ipsecd.datapath.ipheader import PROTO_AH, PROTO_ESP, PROTO_UDP, Drop, split, validate
from ipsecd.datapath.udpencap import UDP_HEADER_LEN, Kind, classify


class PeekKind(enum.Enum):
    ESP = "esp"
    AH = "ah"
    ESP_IN_UDP = "esp-in-udp"  # RFC 3948
    NAT_KEEPALIVE = "nat-keepalive"
    IKE = "ike"  # non-ESP marker on the NAT-T port
    OTHER = "other"  # not IPsec: not the data path's business
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Peek:
    kind: PeekKind
    spi: int = 0


def peek(pkt: bytes, natt_port: int = 4500) -> Peek:
    """Classify a received outer IP packet; UDP is looked at only when its destination is `natt_port`."""
    try:
        version = validate(pkt)
        nh_off, off = split(pkt, version)
    except (Drop, IndexError):
        return Peek(PeekKind.MALFORMED)
    proto = pkt[nh_off]
    if proto == PROTO_ESP:
        return (
            Peek(PeekKind.ESP, int.from_bytes(pkt[off : off + 4], "big"))
            if off + 8 <= len(pkt)
            else Peek(PeekKind.MALFORMED)
        )
    if proto == PROTO_AH:
        return (
            Peek(PeekKind.AH, int.from_bytes(pkt[off + 4 : off + 8], "big"))
            if off + 12 <= len(pkt)
            else Peek(PeekKind.MALFORMED)
        )
    if proto != PROTO_UDP:
        return Peek(PeekKind.OTHER)
    if off + UDP_HEADER_LEN > len(pkt):
        return Peek(PeekKind.MALFORMED)
    if int.from_bytes(pkt[off + 2 : off + 4], "big") != natt_port:
        return Peek(PeekKind.OTHER)
    payload = pkt[off + UDP_HEADER_LEN :]
    kind = classify(payload)
    if kind == Kind.NAT_KEEPALIVE:
        return Peek(PeekKind.NAT_KEEPALIVE)
    if kind == Kind.NON_ESP_MARKER:
        return Peek(PeekKind.IKE)
    if kind == Kind.MALFORMED:
        return Peek(PeekKind.MALFORMED)
    return Peek(PeekKind.ESP_IN_UDP, int.from_bytes(payload[:4], "big"))
