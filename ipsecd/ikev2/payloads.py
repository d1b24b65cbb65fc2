"""IKEv2 payload bodies (RFC 7296 section 3.3-3.16, RFC 7383 section 2.5).

Each class encodes and decodes the body that follows the 4-byte generic payload header; the header,
the chaining and the SK/SKF protection are in ``ipsecd.ikev2.message``. Every length is checked
against what is left: a bad body raises ``CodecError`` and nothing else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from ipsecd.ike.buffers import CodecError, Reader, Writer
from ipsecd.ikev2.constants import (
    IdType,
    PayloadType,
    ProtocolId,
    TransformType,
    TsType,
)
from ipsecd.ikev2.sa import Attribute as Attribute
from ipsecd.ikev2.sa import Proposal as Proposal
from ipsecd.ikev2.sa import SaPayload as SaPayload
from ipsecd.ikev2.sa import Transform as Transform

GENERIC_HEADER_LEN = 4
NONCE_MIN, NONCE_MAX = 16, 256  # RFC 7296 section 3.9
MAX_SELECTORS = 64
MAX_SPIS = 1024


class Payload(Protocol):
    @property
    def TYPE(self) -> int: ...  # a ClassVar in the payload classes

    def encode_body(self, w: Writer) -> None: ...


# ------------------------------------------------------------------------------ simple payloads


# Key Exchange payload, RFC 7296 section 3.4:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   Diffie-Hellman Group Num    |           RESERVED            |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       Key Exchange Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class KePayload:
    TYPE: ClassVar[int] = PayloadType.KE
    group: int
    data: bytes = field(repr=False)

    def encode_body(self, w: Writer) -> None:
        w.u16(self.group, "DH group").u16(0).put(self.data)

    @classmethod
    def decode_body(cls, r: Reader) -> KePayload:
        group = r.u16("DH group")
        r.u16("reserved")
        data = r.rest()
        if not data:
            raise CodecError("empty key exchange data")
        return cls(group, data)


# Identification payloads IDi / IDr, RFC 7296 section 3.5:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   ID Type     |                 RESERVED                      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                   Identification Data                         ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
_ID_ADDR_LEN = {int(IdType.ID_IPV4_ADDR): 4, int(IdType.ID_IPV6_ADDR): 16}


@dataclass(frozen=True)
class Identity:
    """An IKEv2 identity: the ID payload's type and data (the same for IDi and IDr)."""

    id_type: int
    data: bytes

    def __post_init__(self) -> None:
        want = _ID_ADDR_LEN.get(self.id_type)
        if want is not None and len(self.data) != want:
            raise CodecError(f"ID type {self.id_type} needs {want} bytes of data")
        if not self.data:
            raise CodecError("empty identification data")

    @classmethod
    def address(cls, addr: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> Identity:
        a = ipaddress.ip_address(addr)
        return cls(IdType.ID_IPV4_ADDR if a.version == 4 else IdType.ID_IPV6_ADDR, a.packed)

    @classmethod
    def fqdn(cls, name: str) -> Identity:
        return cls(IdType.ID_FQDN, name.encode("ascii"))

    def body(self) -> bytes:
        """RestOfIDPayload (RFC 7296 section 2.15): ID Type, RESERVED, data."""
        return bytes([self.id_type, 0, 0, 0]) + self.data

    def __str__(self) -> str:
        if self.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            return str(ipaddress.ip_address(self.data))
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return self.data.decode("ascii", "replace")
        return f"type{self.id_type}:{self.data.hex()}"


def _encode_id(ident: Identity, w: Writer) -> None:
    w.u8(ident.id_type, "ID type").u8(0).u16(0).put(ident.data)


def _decode_id(r: Reader) -> Identity:
    t = r.u8("ID type")
    r.take(3, "reserved")
    return Identity(t, r.rest())


@dataclass(frozen=True)
class IdiPayload:
    TYPE: ClassVar[int] = PayloadType.IDi
    identity: Identity

    def encode_body(self, w: Writer) -> None:
        _encode_id(self.identity, w)

    @classmethod
    def decode_body(cls, r: Reader) -> IdiPayload:
        return cls(_decode_id(r))


@dataclass(frozen=True)
class IdrPayload:
    TYPE: ClassVar[int] = PayloadType.IDr
    identity: Identity

    def encode_body(self, w: Writer) -> None:
        _encode_id(self.identity, w)

    @classmethod
    def decode_body(cls, r: Reader) -> IdrPayload:
        return cls(_decode_id(r))


# Certificate payload (RFC 7296 section 3.6) and Certificate Request payload (section 3.7):
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Cert Encoding |                                               |
# +-+-+-+-+-+-+-+-+                                               |
# ~       Certificate Data / Certification Authority              ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class CertPayload:
    TYPE: ClassVar[int] = PayloadType.CERT
    encoding: int
    data: bytes

    def encode_body(self, w: Writer) -> None:
        w.u8(self.encoding, "cert encoding").put(self.data)

    @classmethod
    def decode_body(cls, r: Reader) -> CertPayload:
        enc = r.u8("cert encoding")
        data = r.rest()
        if not data:
            raise CodecError("empty certificate data")
        return cls(enc, data)


@dataclass(frozen=True)
class CertReqPayload:
    TYPE: ClassVar[int] = PayloadType.CERTREQ
    encoding: int
    authorities: bytes  # concatenated SHA-1 hashes of CA public keys for X.509 (section 3.7)

    def encode_body(self, w: Writer) -> None:
        w.u8(self.encoding, "cert encoding").put(self.authorities)

    @classmethod
    def decode_body(cls, r: Reader) -> CertReqPayload:
        return cls(r.u8("cert encoding"), r.rest())


# Authentication payload, RFC 7296 section 3.8:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Auth Method   |                RESERVED                       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                      Authentication Data                      ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class AuthPayload:
    TYPE: ClassVar[int] = PayloadType.AUTH
    method: int
    data: bytes = field(repr=False)

    def encode_body(self, w: Writer) -> None:
        w.u8(self.method, "auth method").u8(0).u16(0).put(self.data)

    @classmethod
    def decode_body(cls, r: Reader) -> AuthPayload:
        method = r.u8("auth method")
        r.take(3, "reserved")
        data = r.rest()
        if not data:
            raise CodecError("empty authentication data")
        return cls(method, data)


# Nonce payload, RFC 7296 section 3.9 (and Vendor ID, section 3.12, the same shape):
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                    Nonce Data / Vendor ID                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class NoncePayload:
    TYPE: ClassVar[int] = PayloadType.NONCE
    data: bytes

    def encode_body(self, w: Writer) -> None:
        self._check(len(self.data))
        w.put(self.data)

    @staticmethod
    def _check(n: int) -> None:
        if not NONCE_MIN <= n <= NONCE_MAX:
            raise CodecError(f"nonce of {n} bytes, not {NONCE_MIN}..{NONCE_MAX}")

    @classmethod
    def decode_body(cls, r: Reader) -> NoncePayload:
        data = r.rest()
        cls._check(len(data))
        return cls(data)


@dataclass(frozen=True)
class VendorIdPayload:
    TYPE: ClassVar[int] = PayloadType.V
    data: bytes

    def encode_body(self, w: Writer) -> None:
        w.put(self.data)

    @classmethod
    def decode_body(cls, r: Reader) -> VendorIdPayload:
        return cls(r.rest())


def _check_spi(protocol: int, size: int, what: str) -> None:
    # RFC 7296 sections 3.10 / 3.11: IKE SA notifications/deletes carry no SPI (size 0), ESP/AH 4.
    if protocol in (ProtocolId.AH, ProtocolId.ESP) and size not in (0, 4):
        raise CodecError(f"{what}: SPI of {size} bytes for protocol {protocol}")
    if protocol in (ProtocolId.NONE, ProtocolId.IKE) and size not in (0, 8, 16):
        raise CodecError(f"{what}: SPI of {size} bytes for the IKE SA")


# Notify payload, RFC 7296 section 3.10:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |  Protocol ID  |   SPI Size    |      Notify Message Type      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                Security Parameter Index (SPI)                 ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       Notification Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class NotifyPayload:
    TYPE: ClassVar[int] = PayloadType.N
    notify_type: int
    data: bytes = b""
    protocol_id: int = ProtocolId.NONE
    spi: bytes = b""

    def encode_body(self, w: Writer) -> None:
        _check_spi(self.protocol_id, len(self.spi), "notify")
        w.u8(self.protocol_id, "protocol ID").u8(len(self.spi)).u16(self.notify_type, "notify type")
        w.put(self.spi).put(self.data)

    @classmethod
    def decode_body(cls, r: Reader) -> NotifyPayload:
        proto = r.u8("protocol ID")
        size = r.u8("SPI size")
        _check_spi(proto, size, "notify")
        ntype = r.u16("notify type")
        spi = r.take(size, "notify SPI")
        return cls(ntype, r.rest(), proto, spi)


# Delete payload, RFC 7296 section 3.11:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Protocol ID   |   SPI Size    |          Num of SPIs          |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~               Security Parameter Index(es) (SPI)              ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class DeletePayload:
    TYPE: ClassVar[int] = PayloadType.D
    protocol_id: int
    spis: tuple[bytes, ...] = ()

    def encode_body(self, w: Writer) -> None:
        size = len(self.spis[0]) if self.spis else (4 if self.protocol_id != ProtocolId.IKE else 0)
        if self.protocol_id == ProtocolId.IKE:
            if self.spis:
                raise CodecError("an IKE SA delete carries no SPI")
            size = 0
        elif self.protocol_id not in (ProtocolId.AH, ProtocolId.ESP) or size != 4:
            raise CodecError(f"delete for protocol {self.protocol_id} with SPI size {size}")
        if any(len(s) != size for s in self.spis) or len(self.spis) > MAX_SPIS:
            raise CodecError("delete SPIs of unequal size or too many")
        w.u8(self.protocol_id, "protocol ID").u8(size).u16(len(self.spis))
        for s in self.spis:
            w.put(s)

    @classmethod
    def decode_body(cls, r: Reader) -> DeletePayload:
        proto = r.u8("protocol ID")
        size = r.u8("SPI size")
        count = r.u16("number of SPIs")
        if proto == ProtocolId.IKE:
            if size != 0 or count != 0:
                raise CodecError("an IKE SA delete carries no SPI")
        elif proto in (ProtocolId.AH, ProtocolId.ESP):
            if size != 4:
                raise CodecError(f"delete with SPI size {size}")
        else:
            raise CodecError(f"delete for protocol {proto}")
        if count > MAX_SPIS:
            raise CodecError("too many SPIs in a delete")
        spis = tuple(r.take(size, "delete SPI") for _ in range(count))
        return cls(proto, spis)


# Traffic Selector payloads TSi / TSr, RFC 7296 section 3.13:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Number of TSs |                 RESERVED                      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       <Traffic Selectors>                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#
# Traffic Selector, RFC 7296 section 3.13.1:
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   TS Type     |IP Protocol ID*|       Selector Length         |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |           Start Port*         |           End Port*           |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                         Starting Address*                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                         Ending Address*                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_TS_ADDR_LEN = {int(TsType.TS_IPV4_ADDR_RANGE): 4, int(TsType.TS_IPV6_ADDR_RANGE): 16}


@dataclass(frozen=True, order=True)
class TrafficSelector:
    """An address range with a protocol and a port range (ports 0..65535 and protocol 0: any)."""

    start: Address
    end: Address
    protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    def __post_init__(self) -> None:
        if self.start.version != self.end.version:
            raise CodecError("traffic selector addresses of different families")
        if (
            not 0 <= self.protocol <= 255
            or not 0 <= self.start_port <= 65535
            or not 0 <= self.end_port <= 65535
        ):
            raise CodecError("traffic selector protocol or port out of range")

    @classmethod
    def network(
        cls, net: str | ipaddress.IPv4Network | ipaddress.IPv6Network, protocol: int = 0
    ) -> TrafficSelector:
        n = ipaddress.ip_network(net, strict=False)
        return cls(n.network_address, n.broadcast_address, protocol)

    @property
    def ts_type(self) -> int:
        return TsType.TS_IPV4_ADDR_RANGE if self.start.version == 4 else TsType.TS_IPV6_ADDR_RANGE

    @property
    def empty(self) -> bool:
        return self.start > self.end or self.start_port > self.end_port  # type: ignore[operator]

    def encode(self, w: Writer) -> None:
        size = 16 if self.start.version == 4 else 40
        w.u8(self.ts_type).u8(self.protocol).u16(size).u16(self.start_port).u16(self.end_port)
        w.put(self.start.packed).put(self.end.packed)

    @classmethod
    def decode(cls, r: Reader) -> TrafficSelector:
        ts_type = r.u8("TS type")
        proto = r.u8("IP protocol ID")
        length = r.u16("selector length")
        alen = _TS_ADDR_LEN.get(ts_type)
        if alen is None:
            raise CodecError(f"unsupported TS type {ts_type}")
        if length != 8 + 2 * alen:
            raise CodecError(f"selector length {length} for TS type {ts_type}")
        sp, ep = r.u16("start port"), r.u16("end port")
        a = ipaddress.ip_address(r.take(alen, "starting address"))
        b = ipaddress.ip_address(r.take(alen, "ending address"))
        return cls(a, b, proto, sp, ep)

    def __str__(self) -> str:
        proto = f" proto {self.protocol}" if self.protocol else ""
        ports = (
            ""
            if (self.start_port, self.end_port) == (0, 65535)
            else f" ports {self.start_port}-{self.end_port}"
        )
        return f"{self.start}-{self.end}{proto}{ports}"


def _encode_ts(selectors: tuple[TrafficSelector, ...], w: Writer) -> None:
    if not 1 <= len(selectors) <= min(255, MAX_SELECTORS):
        raise CodecError(f"{len(selectors)} traffic selectors")
    w.u8(len(selectors)).u8(0).u16(0)
    for s in selectors:
        s.encode(w)


def _decode_ts(r: Reader) -> tuple[TrafficSelector, ...]:
    count = r.u8("number of TSs")
    r.take(3, "reserved")
    if not 1 <= count <= MAX_SELECTORS:
        raise CodecError(f"{count} traffic selectors")
    return tuple(TrafficSelector.decode(r) for _ in range(count))


@dataclass(frozen=True)
class TsiPayload:
    TYPE: ClassVar[int] = PayloadType.TSi
    selectors: tuple[TrafficSelector, ...]

    def encode_body(self, w: Writer) -> None:
        _encode_ts(self.selectors, w)

    @classmethod
    def decode_body(cls, r: Reader) -> TsiPayload:
        return cls(_decode_ts(r))


@dataclass(frozen=True)
class TsrPayload:
    TYPE: ClassVar[int] = PayloadType.TSr
    selectors: tuple[TrafficSelector, ...]

    def encode_body(self, w: Writer) -> None:
        _encode_ts(self.selectors, w)

    @classmethod
    def decode_body(cls, r: Reader) -> TsrPayload:
        return cls(_decode_ts(r))


# Configuration payload, RFC 7296 section 3.15, with its attributes (section 3.15.1):
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C| RESERVED    |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   CFG Type    |                    RESERVED                   |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |R|         Attribute Type      |            Length             |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                             Value                             ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class CfgAttribute:
    type: int
    value: bytes = b""


@dataclass(frozen=True)
class CpPayload:
    TYPE: ClassVar[int] = PayloadType.CP
    cfg_type: int
    attributes: tuple[CfgAttribute, ...] = ()

    def encode_body(self, w: Writer) -> None:
        w.u8(self.cfg_type, "CFG type").u8(0).u16(0)
        for a in self.attributes:
            if not 0 <= a.type < 0x8000:
                raise CodecError("configuration attribute type out of range")
            w.u16(a.type).u16(len(a.value), "attribute length").put(a.value)

    @classmethod
    def decode_body(cls, r: Reader) -> CpPayload:
        cfg = r.u8("CFG type")
        r.take(3, "reserved")
        attrs: list[CfgAttribute] = []
        while r.remaining:
            if len(attrs) >= 255:
                raise CodecError("too many configuration attributes")
            t = r.u16("attribute type")
            if t & 0x8000:
                raise CodecError("reserved bit set in a configuration attribute")
            attrs.append(CfgAttribute(t, r.take(r.u16("attribute length"), "attribute value")))
        return cls(cfg, tuple(attrs))


# EAP payload, RFC 7296 section 3.16 (carried, not interpreted: ipsecd does no EAP):
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |     Code      | Identifier    |           Length              |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                    Type / Type_Data ...                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class EapPayload:
    TYPE: ClassVar[int] = PayloadType.EAP
    message: bytes

    def encode_body(self, w: Writer) -> None:
        self._check(self.message)
        w.put(self.message)

    @staticmethod
    def _check(m: bytes) -> None:
        if len(m) < 4 or int.from_bytes(m[2:4], "big") != len(m):
            raise CodecError("EAP message length does not match")

    @classmethod
    def decode_body(cls, r: Reader) -> EapPayload:
        m = r.rest()
        cls._check(m)
        return cls(m)


# Encrypted and Authenticated payload, RFC 7296 section 3.14 (layout of the body in
# ipsecd.ikev2.message): IV, encrypted payloads + padding + pad length, ICV. Next Payload is the
# type of the first inner payload.
@dataclass(frozen=True)
class EncryptedPayload:
    TYPE: ClassVar[int] = PayloadType.SK
    first_inner: int
    data: bytes = field(repr=False)

    def encode_body(self, w: Writer) -> None:
        w.put(self.data)

    @classmethod
    def decode_body(cls, r: Reader, first_inner: int = 0) -> EncryptedPayload:
        return cls(first_inner, r.rest())


# Encrypted and Authenticated Fragment payload, RFC 7383 section 2.5:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |        Fragment Number        |        Total Fragments        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                     Initialization Vector                     |
# ~                      Encrypted content                        ~
# ~                    Integrity Checksum Data                    ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class EncryptedFragmentPayload:
    TYPE: ClassVar[int] = PayloadType.SKF
    first_inner: int  # non-zero only in fragment 1
    number: int
    total: int
    data: bytes = field(repr=False)

    def encode_body(self, w: Writer) -> None:
        w.u16(self.number, "fragment number").u16(self.total, "total fragments").put(self.data)

    @classmethod
    def decode_body(cls, r: Reader, first_inner: int = 0) -> EncryptedFragmentPayload:
        number, total = r.u16("fragment number"), r.u16("total fragments")
        # RFC 7383 section 2.5: numbers start at 1; the number may not exceed the total.
        if not 1 <= number <= total:
            raise CodecError(f"fragment {number} of {total}")
        if number != 1 and first_inner != 0:
            raise CodecError("only the first fragment names the first inner payload")
        return cls(first_inner, number, total, r.rest())


@dataclass(frozen=True)
class UnknownPayload:
    """A payload type ipsecd does not know; ``critical`` is the generic header's C bit."""

    type: int
    data: bytes
    critical: bool = False

    @property
    def TYPE(self) -> int:  # mirrors the ClassVar of the known payloads
        return self.type

    def encode_body(self, w: Writer) -> None:
        w.put(self.data)


KNOWN_PAYLOADS: dict[int, Callable[[Reader], Payload]] = {
    PayloadType.SA: SaPayload.decode_body,
    PayloadType.KE: KePayload.decode_body,
    PayloadType.IDi: IdiPayload.decode_body,
    PayloadType.IDr: IdrPayload.decode_body,
    PayloadType.CERT: CertPayload.decode_body,
    PayloadType.CERTREQ: CertReqPayload.decode_body,
    PayloadType.AUTH: AuthPayload.decode_body,
    PayloadType.NONCE: NoncePayload.decode_body,
    PayloadType.N: NotifyPayload.decode_body,
    PayloadType.D: DeletePayload.decode_body,
    PayloadType.V: VendorIdPayload.decode_body,
    PayloadType.TSi: TsiPayload.decode_body,
    PayloadType.TSr: TsrPayload.decode_body,
    PayloadType.CP: CpPayload.decode_body,
    PayloadType.EAP: EapPayload.decode_body,
}

TRANSFORM_TYPES = frozenset(int(t) for t in TransformType)
