"""ISAKMP payload bodies other than SA (RFC 2408 section 3.7-3.16, RFC 2407 section 4.6, RFC 3947).

Each class decodes and encodes the body that follows the 4-byte generic payload header; the header
and chaining are in ``ipsecd.ikev1.codec``. Every length is checked against what is left.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from ipsecd.ike.buffers import CodecError, Reader, Writer
from ipsecd.ike.constants import IdType, PayloadType, ProtocolId
from ipsecd.ikev1.sa import SaPayload

NONCE_MIN, NONCE_MAX = 8, 256  # RFC 2409 section 5: "between 8 and 256 bytes inclusive"
MAX_SPI_SIZE = 16


class _DataPayload:
    """A payload whose body is one opaque data field."""

    TYPE: ClassVar[int]
    data: bytes

    def encode_body(self, w: Writer) -> None:
        w.put(self.data)


# Key Exchange payload, RFC 2408 section 3.7:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !         Payload Length        !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       Key Exchange Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class KePayload(_DataPayload):
    TYPE: ClassVar[int] = PayloadType.KE
    data: bytes

    @classmethod
    def decode_body(cls, r: Reader) -> KePayload:
        data = r.rest()
        if not data:
            raise CodecError("empty key exchange data")
        return cls(data)


# The HASH (RFC 2408 section 3.11), SIG (3.12), Nonce (3.13), Vendor ID (3.16) and NAT-D (RFC 3947
# section 3.2) payloads share the layout of KE: generic header, then one variable-length field
# (Hash Data, Signature Data, Nonce Data, Vendor ID, HASH of the address and port).
@dataclass(frozen=True)
class HashPayload(_DataPayload):
    TYPE: ClassVar[int] = PayloadType.HASH
    data: bytes

    @classmethod
    def decode_body(cls, r: Reader) -> HashPayload:
        data = r.rest()
        if not data:
            raise CodecError("empty hash data")
        return cls(data)


@dataclass(frozen=True)
class SigPayload(_DataPayload):
    TYPE: ClassVar[int] = PayloadType.SIG
    data: bytes

    @classmethod
    def decode_body(cls, r: Reader) -> SigPayload:
        data = r.rest()
        if not data:
            raise CodecError("empty signature data")
        return cls(data)


@dataclass(frozen=True)
class NoncePayload(_DataPayload):
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
class VendorIdPayload(_DataPayload):
    TYPE: ClassVar[int] = PayloadType.VID
    data: bytes

    @classmethod
    def decode_body(cls, r: Reader) -> VendorIdPayload:
        return cls(r.rest())


@dataclass(frozen=True)
class NatDPayload(_DataPayload):
    TYPE: ClassVar[int] = PayloadType.NAT_D
    data: bytes

    @classmethod
    def decode_body(cls, r: Reader) -> NatDPayload:
        data = r.rest()
        if not data:
            raise CodecError("empty NAT-D hash")
        return cls(data)


_ID_DATA_LEN: dict[int, int] = {
    IdType.ID_IPV4_ADDR: 4,
    IdType.ID_IPV4_ADDR_SUBNET: 8,
    IdType.ID_IPV4_ADDR_RANGE: 8,
    IdType.ID_IPV6_ADDR: 16,
    IdType.ID_IPV6_ADDR_SUBNET: 32,
    IdType.ID_IPV6_ADDR_RANGE: 32,
}


# Identification payload with the IPsec DOI fields, RFC 2407 section 4.6.2:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !  Next Payload !   RESERVED    !        Payload Length         !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !   ID Type     !  Protocol ID  !             Port              !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                     Identification Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class IdPayload:
    """Address ID types must carry exactly their address bytes (RFC 2407 section 4.6.2.2 ff.)."""

    TYPE: ClassVar[int] = PayloadType.ID
    id_type: int
    protocol: int
    port: int
    data: bytes

    @staticmethod
    def _check(id_type: int, n: int) -> None:
        want = _ID_DATA_LEN.get(id_type)
        if want is not None and n != want:
            raise CodecError(f"ID type {id_type}: {n} bytes of data, expected {want}")
        if want is None and n == 0:
            raise CodecError(f"ID type {id_type}: empty identification data")

    def encode_body(self, w: Writer) -> None:
        self._check(self.id_type, len(self.data))
        w.u8(self.id_type, "ID type").u8(self.protocol, "protocol ID").u16(self.port, "port")
        w.put(self.data)

    @classmethod
    def decode_body(cls, r: Reader) -> IdPayload:
        id_type = r.u8("ID type")
        protocol = r.u8("ID protocol")
        port = r.u16("ID port")
        data = r.rest()
        cls._check(id_type, len(data))
        return cls(id_type, protocol, port, data)

    @classmethod
    def for_address(
        cls, addr: ipaddress.IPv4Address | ipaddress.IPv6Address, protocol: int = 0, port: int = 0
    ) -> IdPayload:
        t = IdType.ID_IPV4_ADDR if addr.version == 4 else IdType.ID_IPV6_ADDR
        return cls(t, protocol, port, addr.packed)

    @classmethod
    def for_network(
        cls, net: ipaddress.IPv4Network | ipaddress.IPv6Network, protocol: int = 0, port: int = 0
    ) -> IdPayload:
        t = IdType.ID_IPV4_ADDR_SUBNET if net.version == 4 else IdType.ID_IPV6_ADDR_SUBNET
        return cls(t, protocol, port, net.network_address.packed + net.netmask.packed)


# Certificate payload, RFC 2408 section 3.9:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !         Payload Length        !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Cert Encoding !                                               !
# +-+-+-+-+-+-+-+-+                                               !
# ~                       Certificate Data                        ~
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
        return cls(r.u8("cert encoding"), r.rest())


# Certificate Request payload, RFC 2408 section 3.10 (an empty authority means "any"):
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !         Payload Length        !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !  Cert. Type   !                                               !
# +-+-+-+-+-+-+-+-+                                               !
# ~                    Certificate Authority                      ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class CertReqPayload:
    TYPE: ClassVar[int] = PayloadType.CR
    cert_type: int
    authority: bytes

    def encode_body(self, w: Writer) -> None:
        w.u8(self.cert_type, "cert type").put(self.authority)

    @classmethod
    def decode_body(cls, r: Reader) -> CertReqPayload:
        return cls(r.u8("cert type"), r.rest())


def _check_notify_spi(size: int) -> None:
    if size > MAX_SPI_SIZE:
        raise CodecError(f"SPI size {size} above {MAX_SPI_SIZE}")


# Notification payload, RFC 2408 section 3.14:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !         Payload Length        !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !              Domain of Interpretation  (DOI)                  !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !  Protocol-ID  !   SPI Size    !      Notify Message Type      !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                Security Parameter Index (SPI)                 ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       Notification Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class NotifyPayload:
    TYPE: ClassVar[int] = PayloadType.N
    doi: int
    protocol_id: int
    notify_type: int
    spi: bytes = b""
    data: bytes = b""

    def encode_body(self, w: Writer) -> None:
        _check_notify_spi(len(self.spi))
        w.u32(self.doi, "DOI").u8(self.protocol_id, "protocol ID").u8(len(self.spi), "SPI size")
        w.u16(self.notify_type, "notify message type").put(self.spi).put(self.data)

    @classmethod
    def decode_body(cls, r: Reader) -> NotifyPayload:
        doi = r.u32("DOI")
        protocol = r.u8("protocol ID")
        spi_size = r.u8("SPI size")
        ntype = r.u16("notify message type")
        _check_notify_spi(spi_size)
        spi = r.take(spi_size, "notify SPI")
        return cls(doi, protocol, ntype, spi, r.rest())


def _check_delete_spi(protocol: int, size: int) -> None:
    """RFC 2408 section 3.15: ISAKMP SAs are named by their 16-byte cookie pair (RFC 2408 section
    2.4); AH and ESP SPIs are 4 bytes (RFC 2407 section 4.6.3)."""
    if protocol == ProtocolId.PROTO_ISAKMP:
        ok = size == 16
    elif protocol in (ProtocolId.PROTO_IPSEC_AH, ProtocolId.PROTO_IPSEC_ESP):
        ok = size == 4
    else:
        ok = 1 <= size <= MAX_SPI_SIZE
    if not ok:
        raise CodecError(f"delete: SPI size {size} invalid for protocol {protocol}")


# Delete payload, RFC 2408 section 3.15:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !         Payload Length        !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !              Domain of Interpretation  (DOI)                  !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !  Protocol-Id  !   SPI Size    !           # of SPIs           !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~               Security Parameter Index(es) (SPI)              ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class DeletePayload:
    TYPE: ClassVar[int] = PayloadType.D
    doi: int
    protocol_id: int
    spi_size: int
    spis: tuple[bytes, ...]

    def encode_body(self, w: Writer) -> None:
        _check_delete_spi(self.protocol_id, self.spi_size)
        if not self.spis:
            raise CodecError("delete payload without SPIs")
        w.u32(self.doi, "DOI").u8(self.protocol_id, "protocol ID").u8(self.spi_size, "SPI size")
        w.u16(len(self.spis), "# of SPIs")
        for spi in self.spis:
            if len(spi) != self.spi_size:
                raise CodecError(f"delete: SPI of {len(spi)} bytes, SPI size is {self.spi_size}")
            w.put(spi)

    @classmethod
    def decode_body(cls, r: Reader) -> DeletePayload:
        doi = r.u32("DOI")
        protocol = r.u8("protocol ID")
        size = r.u8("SPI size")
        count = r.u16("# of SPIs")
        _check_delete_spi(protocol, size)
        if count == 0:
            raise CodecError("delete payload without SPIs")
        if r.remaining != count * size:
            raise CodecError(f"delete: {count} SPIs of {size} bytes but {r.remaining} bytes follow")
        return cls(doi, protocol, size, tuple(r.take(size, "SPI") for _ in range(count)))


# NAT Original Address payload, RFC 3947 section 5.2:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !        Payload length         !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !   ID Type     !   RESERVED    !            RESERVED           !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !         IPv4 (4 octets) or IPv6 address (16 octets)           !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class NatOaPayload:
    TYPE: ClassVar[int] = PayloadType.NAT_OA
    address: ipaddress.IPv4Address | ipaddress.IPv6Address

    def encode_body(self, w: Writer) -> None:
        t = IdType.ID_IPV4_ADDR if self.address.version == 4 else IdType.ID_IPV6_ADDR
        w.u8(t).u8(0).u16(0).put(self.address.packed)

    @classmethod
    def decode_body(cls, r: Reader) -> NatOaPayload:
        id_type = r.u8("NAT-OA ID type")
        r.take(3, "NAT-OA reserved")
        data = r.rest()
        if id_type == IdType.ID_IPV4_ADDR and len(data) == 4:
            return cls(ipaddress.IPv4Address(data))
        if id_type == IdType.ID_IPV6_ADDR and len(data) == 16:
            return cls(ipaddress.IPv6Address(data))
        raise CodecError(f"NAT-OA: ID type {id_type} with {len(data)} bytes of address")


@dataclass(frozen=True)
class UnknownPayload:
    """A payload of a type this codec does not know, skipped by its generic header and kept raw."""

    payload_type: int
    data: bytes

    @property
    def TYPE(self) -> int:  # mirrors the ClassVar of the known payloads
        return self.payload_type

    def encode_body(self, w: Writer) -> None:
        w.put(self.data)


KnownPayload = (
    SaPayload
    | KePayload
    | IdPayload
    | CertPayload
    | CertReqPayload
    | HashPayload
    | SigPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIdPayload
    | NatDPayload
    | NatOaPayload
)
Payload = KnownPayload | UnknownPayload

KNOWN_PAYLOADS: dict[int, type[KnownPayload]] = {
    cls.TYPE: cls
    for cls in (
        SaPayload,
        KePayload,
        IdPayload,
        CertPayload,
        CertReqPayload,
        HashPayload,
        SigPayload,
        NoncePayload,
        NotifyPayload,
        DeletePayload,
        VendorIdPayload,
        NatDPayload,
        NatOaPayload,
    )
}
