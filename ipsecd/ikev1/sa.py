"""The ISAKMP SA payload with its Proposals, Transforms and data attributes (RFC 2408 section 3.4-3.6,
IPsec DOI situation per RFC 2407 section 4.2). Bodies only: the generic payload header of the SA
payload is handled by ``ipsecd.ikev1.codec``; the Proposal and Transform generic headers, which chain
inside the SA body, are handled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ipsecd.ike.buffers import CodecError, Reader, Writer
from ipsecd.ike.constants import DOI_IPSEC, PayloadType, ProtocolId, Situation

MAX_PROPOSALS = 64  # per SA payload; far above any real offer, bounds decoding work
MAX_ATTRIBUTES = 64  # per transform
GENERIC_HEADER_LEN = 4


# Data attribute, RFC 2408 section 3.3:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !A!       Attribute Type        !    AF=0  Attribute Length     !
# !F!                             !    AF=1  Attribute Value      !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# .                   AF=0  Attribute Value                       .
# .                   AF=1  Not Transmitted                       .
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class Attribute:
    """``value`` as ``int``: the basic TV form (AF=1, 16-bit value); as ``bytes``: the TLV form."""

    type: int
    value: int | bytes

    @property
    def is_basic(self) -> bool:
        return isinstance(self.value, int)

    @classmethod
    def integer(cls, attr_type: int, value: int) -> Attribute:
        """TV when the value fits 16 bits, else TLV with a 4-byte (or longer) big-endian value, as
        RFC 2409 Appendix A allows for variable attributes such as Life Duration."""
        if value < 0:
            raise CodecError("attribute value must not be negative")
        if value < 1 << 16:
            return cls(attr_type, value)
        return cls(attr_type, value.to_bytes(max(4, (value.bit_length() + 7) // 8), "big"))

    def as_int(self) -> int:
        """The value as an integer; a TLV value of 1 to 8 bytes is read big-endian."""
        if isinstance(self.value, int):
            return self.value
        if not 1 <= len(self.value) <= 8:
            raise CodecError(f"attribute {self.type}: {len(self.value)}-byte value is not an integer")
        return int.from_bytes(self.value, "big")

    def encode(self, w: Writer) -> None:
        if not 0 <= self.type < 0x8000:
            raise CodecError(f"attribute type {self.type} does not fit 15 bits")
        if isinstance(self.value, int):
            w.u16(0x8000 | self.type, "attribute type")
            w.u16(self.value, "attribute value")
        else:
            w.u16(self.type, "attribute type")
            w.u16(len(self.value), "attribute length")
            w.put(self.value)

    @classmethod
    def decode(cls, r: Reader) -> Attribute:
        word = r.u16("attribute type")
        if word & 0x8000:
            return cls(word & 0x7FFF, r.u16("attribute value"))
        length = r.u16("attribute length")
        return cls(word, r.take(length, f"attribute {word} value"))


def decode_attributes(r: Reader) -> tuple[Attribute, ...]:
    attrs: list[Attribute] = []
    while r.remaining:
        if len(attrs) >= MAX_ATTRIBUTES:
            raise CodecError(f"more than {MAX_ATTRIBUTES} attributes")
        attrs.append(Attribute.decode(r))
    return tuple(attrs)


def _check_spi_size(protocol: int, size: int, where: str) -> None:
    """RFC 2407 section 4.4.1 / RFC 2408 section 2.4: ISAKMP SPIs are the cookies (0 to 16 bytes in
    a proposal), AH and ESP SPIs are 4 bytes, IPComp CPIs 2 bytes (RFC 2393; 4 is seen in the wild)."""
    if protocol in (ProtocolId.PROTO_IPSEC_AH, ProtocolId.PROTO_IPSEC_ESP):
        ok = size == 4
    elif protocol == ProtocolId.PROTO_IPCOMP:
        ok = size in (2, 4)
    else:
        ok = size <= 16
    if not ok:
        raise CodecError(f"{where}: SPI size {size} invalid for protocol {protocol}")


# Transform payload, RFC 2408 section 3.6:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !         Payload Length        !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !  Transform #  !  Transform-Id !           RESERVED2           !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                        SA Attributes                          ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class Transform:
    number: int
    transform_id: int
    attributes: tuple[Attribute, ...] = ()

    def attr(self, attr_type: int) -> Attribute | None:
        """The first attribute of ``attr_type``, if any."""
        return next((a for a in self.attributes if a.type == attr_type), None)

    def encode(self, w: Writer, last: bool) -> None:
        start = len(w)
        w.u8(0 if last else PayloadType.T, "next payload").u8(0).u16(0)
        w.u8(self.number, "transform #").u8(self.transform_id, "transform ID").u16(0)
        for a in self.attributes:
            a.encode(w)
        w.patch_u16(start + 2, len(w) - start, "transform length")

    @classmethod
    def decode(cls, r: Reader) -> tuple[Transform, int]:
        """Decodes one transform; returns it with its Next Payload value."""
        nxt = r.u8("transform next payload")
        r.u8("transform reserved")
        length = r.u16("transform length")
        if length < GENERIC_HEADER_LEN + 4:
            raise CodecError(f"transform length {length} below the 8-byte minimum")
        body = r.sub(length - GENERIC_HEADER_LEN, "transform body")
        number = body.u8("transform #")
        tid = body.u8("transform ID")
        body.u16("transform reserved2")
        return cls(number, tid, decode_attributes(body)), nxt


# Proposal payload, RFC 2408 section 3.5:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !         Payload Length        !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !  Proposal #   !  Protocol-Id  !    SPI Size   !# of Transforms!
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !                        SPI (variable)                         !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# (Transform payloads follow inside the Proposal's length.)
@dataclass(frozen=True)
class Proposal:
    number: int
    protocol_id: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def encode(self, w: Writer, last: bool) -> None:
        _check_spi_size(self.protocol_id, len(self.spi), "proposal")
        if not self.transforms:
            raise CodecError("a proposal needs at least one transform")
        start = len(w)
        w.u8(0 if last else PayloadType.P, "next payload").u8(0).u16(0)
        w.u8(self.number, "proposal #").u8(self.protocol_id, "protocol ID")
        w.u8(len(self.spi), "SPI size").u8(len(self.transforms), "# of transforms")
        w.put(self.spi)
        for i, t in enumerate(self.transforms):
            t.encode(w, last=i == len(self.transforms) - 1)
        w.patch_u16(start + 2, len(w) - start, "proposal length")

    @classmethod
    def decode(cls, r: Reader) -> tuple[Proposal, int]:
        nxt = r.u8("proposal next payload")
        r.u8("proposal reserved")
        length = r.u16("proposal length")
        if length < GENERIC_HEADER_LEN + 4:
            raise CodecError(f"proposal length {length} below the 8-byte minimum")
        body = r.sub(length - GENERIC_HEADER_LEN, "proposal body")
        number = body.u8("proposal #")
        protocol = body.u8("protocol ID")
        spi_size = body.u8("SPI size")
        count = body.u8("# of transforms")
        _check_spi_size(protocol, spi_size, "proposal")
        spi = body.take(spi_size, "proposal SPI")
        if count == 0:
            raise CodecError("proposal with zero transforms")
        transforms: list[Transform] = []
        for i in range(count):
            t, t_next = Transform.decode(body)
            transforms.append(t)
            want = 0 if i == count - 1 else PayloadType.T
            if t_next != want:
                raise CodecError(f"transform {i + 1}/{count}: next payload {t_next}, expected {want}")
        body.expect_end("proposal (transforms vs # of transforms)")
        return cls(number, protocol, spi, tuple(transforms)), nxt


# Security Association payload, RFC 2408 section 3.4 with the IPsec DOI situation of RFC 2407
# section 4.6.1:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ! Next Payload  !   RESERVED    !         Payload Length        !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !              Domain of Interpretation  (DOI)                  !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !                           Situation                           !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# (Proposal payloads follow inside the SA payload's length.)
@dataclass(frozen=True)
class SaPayload:
    """Only SIT_IDENTITY_ONLY is supported in the IPsec DOI: the secrecy and integrity situations carry
    labelled-domain fields (RFC 2407 section 4.6.1) that no peer of ours sends."""

    TYPE: ClassVar[int] = PayloadType.SA
    doi: int
    situation: int
    proposals: tuple[Proposal, ...]

    def encode_body(self, w: Writer) -> None:
        self._check_situation()
        if not self.proposals:
            raise CodecError("an SA payload needs at least one proposal")
        if len(self.proposals) > MAX_PROPOSALS:
            raise CodecError(f"more than {MAX_PROPOSALS} proposals")
        w.u32(self.doi, "DOI").u32(self.situation, "situation")
        for i, p in enumerate(self.proposals):
            p.encode(w, last=i == len(self.proposals) - 1)

    def _check_situation(self) -> None:
        if self.doi == DOI_IPSEC and self.situation & (Situation.SIT_SECRECY | Situation.SIT_INTEGRITY):
            raise CodecError("SIT_SECRECY / SIT_INTEGRITY situations are not supported")

    @classmethod
    def decode_body(cls, r: Reader) -> SaPayload:
        doi = r.u32("DOI")
        situation = r.u32("situation")
        sa = cls(doi, situation, ())
        sa._check_situation()
        proposals: list[Proposal] = []
        while True:
            if len(proposals) >= MAX_PROPOSALS:
                raise CodecError(f"more than {MAX_PROPOSALS} proposals")
            p, nxt = Proposal.decode(r)
            proposals.append(p)
            if nxt == 0:
                break
            if nxt != PayloadType.P:
                raise CodecError(f"proposal followed by payload type {nxt} inside an SA payload")
        r.expect_end("SA payload (after the last proposal)")
        numbers = [p.number for p in proposals]
        if numbers != sorted(numbers):
            # RFC 2408 section 4.2: proposal numbers are monotonically increasing.
            raise CodecError("proposal numbers are not monotonically increasing")
        return cls(doi, situation, tuple(proposals))
