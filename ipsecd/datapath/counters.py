"""Per-SA counters, named after the Windows IP Security Monitor statistics (docs/datapath.md section 8)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields


class DropReason(enum.Enum):
    """Why a packet was dropped; each reason moves exactly one counter."""

    BAD_SPI = "bad_spi_packets"
    NOT_DECRYPTED = "packets_not_decrypted"
    NOT_AUTHENTICATED = "packets_not_authenticated"
    REPLAY = "packets_with_replay_detection"
    MALFORMED = "malformed_packets"
    OVERSIZED = "oversized_packets"
    SELECTOR_MISMATCH = "selector_mismatch_packets"
    SA_EXPIRED = "expired_sa_packets"
    NAT_KEEPALIVE = "nat_keepalive_packets"
    NON_ESP_MARKER = "non_esp_marker_packets"
    DUMMY = "dummy_packets"


WINDOWS_NAMES: dict[str, str] = {
    "confidential_bytes_sent": "Confidential Bytes Sent",
    "confidential_bytes_received": "Confidential Bytes Received",
    "authenticated_bytes_sent": "Authenticated Bytes Sent",
    "authenticated_bytes_received": "Authenticated Bytes Received",
    "transport_bytes_sent": "Transport Bytes Sent",
    "transport_bytes_received": "Transport Bytes Received",
    "tunnel_bytes_sent": "Bytes Sent In Tunnels",
    "tunnel_bytes_received": "Bytes Received In Tunnels",
    "bad_spi_packets": "Bad SPI Packets",
    "packets_not_decrypted": "Packets Not Decrypted",
    "packets_not_authenticated": "Packets Not Authenticated",
    "packets_with_replay_detection": "Packets With Replay Detection",
}


@dataclass(frozen=True)
class Counters:
    """A snapshot of one transform's counters. Bytes are inner-packet bytes of delivered packets."""

    confidential_bytes_sent: int = 0
    confidential_bytes_received: int = 0
    authenticated_bytes_sent: int = 0
    authenticated_bytes_received: int = 0
    transport_bytes_sent: int = 0
    transport_bytes_received: int = 0
    tunnel_bytes_sent: int = 0
    tunnel_bytes_received: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    bad_spi_packets: int = 0
    packets_not_decrypted: int = 0
    packets_not_authenticated: int = 0
    packets_with_replay_detection: int = 0
    malformed_packets: int = 0
    oversized_packets: int = 0
    selector_mismatch_packets: int = 0
    expired_sa_packets: int = 0
    nat_keepalive_packets: int = 0
    non_esp_marker_packets: int = 0
    dummy_packets: int = 0

    @staticmethod
    def windows_names() -> dict[str, str]:
        """Field name -> the label the Windows IP Security Monitor shows (ipsecd extras excluded)."""
        return dict(WINDOWS_NAMES)

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Counters))

    def drops(self) -> dict[str, int]:
        """The non-zero drop counters."""
        names = {r.value for r in DropReason}
        return {n: getattr(self, n) for n in self.field_names() if n in names and getattr(self, n)}


class CounterSet:
    """The mutable counters a transform updates; `snapshot()` gives a frozen `Counters`."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[str, int] = dict.fromkeys(Counters.field_names(), 0)

    def drop(self, reason: DropReason) -> None:
        self.values[reason.value] += 1

    def snapshot(self) -> Counters:
        return Counters(**self.values)
