"""Security Association parameters, events and the transform interface (docs/datapath.md).

These value types are shared by the pure-Python fallback and the native extension: both build their
per-SA state from one `SAParams` and must produce byte-identical output (docs/datapath.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol as TypingProtocol

from ipsecd.datapath.counters import Counters

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class EncAlg(enum.IntEnum):
    """IKEv2 Transform Type 1 (IANA "Transform Type 1 - Encryption Algorithm Transform IDs")."""

    ENCR_3DES = 3  # RFC 2451
    ENCR_NULL = 11  # RFC 2410
    ENCR_AES_CBC = 12  # RFC 3602
    ENCR_AES_GCM_16 = 20  # RFC 4106
    ENCR_NULL_AUTH_AES_GMAC = 21  # RFC 4543
    ENCR_CHACHA20_POLY1305 = 28  # RFC 7634


class IntegAlg(enum.IntEnum):
    """IKEv2 Transform Type 3 (IANA "Transform Type 3 - Integrity Algorithm Transform IDs")."""

    NONE = 0
    AUTH_HMAC_MD5_96 = 1  # RFC 2403
    AUTH_HMAC_SHA1_96 = 2  # RFC 2404
    AUTH_HMAC_SHA2_256_128 = 12  # RFC 4868
    AUTH_HMAC_SHA2_384_192 = 13  # RFC 4868
    AUTH_HMAC_SHA2_512_256 = 14  # RFC 4868


class Protocol(enum.IntEnum):
    """IP protocol numbers of the IPsec protocols."""

    ESP = 50  # RFC 4303
    AH = 51  # RFC 4302


class Mode(enum.IntEnum):
    TRANSPORT = 1
    TUNNEL = 2


class Direction(enum.IntEnum):
    INBOUND = 1
    OUTBOUND = 2


@dataclass(frozen=True)
class EncInfo:
    key_sizes: tuple[int, ...]  # including the 4-byte salt for AEADs
    iv_len: int
    align: int  # RFC 4303 section 2.4: padding alignment
    icv_len: int  # 0: the ICV comes from the integrity algorithm
    aead: bool
    confidential: bool


ENC_INFO: dict[EncAlg, EncInfo] = {
    EncAlg.ENCR_3DES: EncInfo((24,), 8, 8, 0, False, True),
    EncAlg.ENCR_NULL: EncInfo((0,), 0, 4, 0, False, False),
    EncAlg.ENCR_AES_CBC: EncInfo((16, 24, 32), 16, 16, 0, False, True),
    EncAlg.ENCR_AES_GCM_16: EncInfo((20, 28, 36), 8, 4, 16, True, True),
    EncAlg.ENCR_NULL_AUTH_AES_GMAC: EncInfo((20, 28, 36), 8, 4, 16, True, False),
    EncAlg.ENCR_CHACHA20_POLY1305: EncInfo((36,), 8, 4, 16, True, True),
}

SALT_LEN = 4  # RFC 4106 section 8.1, RFC 4543 section 8, RFC 7634 section 2


@dataclass(frozen=True)
class IntegInfo:
    key_len: int
    icv_len: int
    hash_name: str  # hashlib / cryptography name


INTEG_INFO: dict[IntegAlg, IntegInfo] = {
    IntegAlg.NONE: IntegInfo(0, 0, ""),
    IntegAlg.AUTH_HMAC_MD5_96: IntegInfo(16, 12, "md5"),
    IntegAlg.AUTH_HMAC_SHA1_96: IntegInfo(20, 12, "sha1"),
    IntegAlg.AUTH_HMAC_SHA2_256_128: IntegInfo(32, 16, "sha256"),
    IntegAlg.AUTH_HMAC_SHA2_384_192: IntegInfo(48, 24, "sha384"),
    IntegAlg.AUTH_HMAC_SHA2_512_256: IntegInfo(64, 32, "sha512"),
}


@dataclass(frozen=True)
class UdpEncap:
    """RFC 3948 UDP encapsulation ports, as written in the UDP header this SA sends or receives."""

    sport: int = 4500
    dport: int = 4500

    def __post_init__(self) -> None:
        for port in (self.sport, self.dport):
            if not 1 <= port <= 65535:
                raise ValueError(f"UDP encapsulation port out of range: {port}")


@dataclass(frozen=True)
class TunnelAddrs:
    """Outer addresses of a tunnel-mode SA, in the direction of this SA's traffic."""

    src: IPAddress
    dst: IPAddress

    def __post_init__(self) -> None:
        if self.src.version != self.dst.version:
            raise ValueError("tunnel source and destination must be of the same address family")


@dataclass(frozen=True)
class Lifetimes:
    """Soft and hard lifetimes; 0 means unlimited (docs/datapath.md section 7)."""

    soft_bytes: int = 0
    hard_bytes: int = 0
    soft_packets: int = 0
    hard_packets: int = 0
    soft_seconds: float = 0.0
    hard_seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "soft_bytes",
            "hard_bytes",
            "soft_packets",
            "hard_packets",
            "soft_seconds",
            "hard_seconds",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"lifetime {name} must not be negative")


FULL_PORTS = (0, 65535)


@dataclass(frozen=True)
class Selector:
    """Traffic an SA may carry (RFC 4301 section 4.4.1.1), docs/datapath.md section 6."""

    src: IPNetwork
    dst: IPNetwork
    protocol: int = 0
    src_ports: tuple[int, int] = FULL_PORTS
    dst_ports: tuple[int, int] = FULL_PORTS

    def __post_init__(self) -> None:
        if self.src.version != self.dst.version:
            raise ValueError("selector source and destination must be of the same address family")
        if not 0 <= self.protocol <= 255:
            raise ValueError("selector protocol out of range")
        for lo, hi in (self.src_ports, self.dst_ports):
            if not 0 <= lo <= hi <= 65535:
                raise ValueError("selector port range invalid")


@dataclass(frozen=True)
class SAParams:
    """Everything one direction of a Security Association needs. Keys never appear in repr()."""

    spi: int
    protocol: Protocol
    mode: Mode
    enc_alg: EncAlg = EncAlg.ENCR_NULL
    enc_key: bytes = field(default=b"", repr=False)
    integ_alg: IntegAlg = IntegAlg.NONE
    integ_key: bytes = field(default=b"", repr=False)
    replay_window: int = 64
    esn: bool = False
    encap: UdpEncap | None = None
    tunnel: TunnelAddrs | None = None
    iv_key: bytes = field(default=b"", repr=False)
    lifetimes: Lifetimes = field(default_factory=Lifetimes)
    selectors: tuple[Selector, ...] = ()

    def __post_init__(self) -> None:
        if not 256 <= self.spi <= 0xFFFFFFFF:
            raise ValueError("SPI must be in 256..2^32-1 (RFC 4303 section 2.1)")
        if self.replay_window % 32 or not 32 <= self.replay_window <= 4096:
            raise ValueError("replay_window must be a multiple of 32 in 32..4096")
        if (self.mode == Mode.TUNNEL) != (self.tunnel is not None):
            raise ValueError("tunnel addresses are required in tunnel mode and only there")
        enc = ENC_INFO[EncAlg(self.enc_alg)]
        integ = INTEG_INFO[IntegAlg(self.integ_alg)]
        if len(self.enc_key) not in enc.key_sizes:
            raise ValueError(f"{EncAlg(self.enc_alg).name} needs a key of {enc.key_sizes} bytes")
        if len(self.integ_key) != integ.key_len:
            raise ValueError(f"{IntegAlg(self.integ_alg).name} needs a key of {integ.key_len} bytes")
        cbc = self.enc_alg in (EncAlg.ENCR_AES_CBC, EncAlg.ENCR_3DES)
        if len(self.iv_key) != (16 if cbc else 0):
            raise ValueError("iv_key must be 16 bytes for CBC ciphers and empty otherwise")
        if self.protocol == Protocol.AH:
            if self.enc_alg != EncAlg.ENCR_NULL:
                raise ValueError("AH takes no encryption algorithm")
            if self.integ_alg == IntegAlg.NONE:
                raise ValueError("AH needs an integrity algorithm")
            if self.encap is not None:
                raise ValueError("AH cannot be UDP-encapsulated (RFC 3948)")
        elif enc.aead:
            if self.integ_alg != IntegAlg.NONE:
                raise ValueError("combined-mode ESP takes no separate integrity algorithm")
        elif self.integ_alg == IntegAlg.NONE:
            raise ValueError("ESP without integrity is not supported")

    @property
    def enc_info(self) -> EncInfo:
        return ENC_INFO[EncAlg(self.enc_alg)]

    @property
    def integ_info(self) -> IntegInfo:
        return INTEG_INFO[IntegAlg(self.integ_alg)]

    @property
    def icv_len(self) -> int:
        return self.enc_info.icv_len or self.integ_info.icv_len


class EventKind(enum.Enum):
    SOFT_EXPIRED = "soft-expired"  # rekey now
    HARD_EXPIRED = "hard-expired"  # the SA stopped


class ExpiryReason(enum.Enum):
    BYTES = "bytes"
    PACKETS = "packets"
    SECONDS = "seconds"
    SEQUENCE = "sequence"  # the sequence number space is exhausted (it never wraps)


@dataclass(frozen=True)
class SAEvent:
    kind: EventKind
    spi: int
    direction: Direction
    reason: ExpiryReason


class Transform(TypingProtocol):
    """One direction of one SA. Both backends implement exactly this (docs/datapath.md section 1)."""

    @property
    def params(self) -> SAParams: ...

    @property
    def direction(self) -> Direction: ...

    @property
    def backend(self) -> str: ...

    @property
    def expired(self) -> bool: ...

    def protect(self, packets: list[bytes]) -> list[bytes | None]: ...

    def unprotect(self, packets: list[bytes]) -> list[bytes | None]: ...

    def counters(self) -> Counters: ...

    def tick(self, now: float) -> None: ...

    def drain_events(self) -> list[SAEvent]: ...
