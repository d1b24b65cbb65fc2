"""The IKEv2 Security Association payload with its Proposal and Transform substructures and
transform attributes (RFC 7296 section 3.3). Bodies only: the SA payload's generic header is handled
by ``ipsecd.ikev2.message``; the substructures' headers, which chain inside the body, are here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ipsecd.ike.buffers import CodecError, Reader, Writer
from ipsecd.ikev2.constants import PayloadType, TransformAttr

MAX_PROPOSALS = 64
MAX_TRANSFORMS = 64
MAX_ATTRIBUTES = 16


# Transform attribute, RFC 7296 section 3.3.5:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |A|       Attribute Type        |    AF=0  Attribute Length     |
# |F|                             |    AF=1  Attribute Value      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                   AF=0  Attribute Value                       |
# |                   AF=1  Not Transmitted                       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class Attribute:
    """``value`` as ``int``: TV form (AF=1); as ``bytes``: TLV form."""

    type: int
    value: int | bytes

    def encode(self, w: Writer) -> None:
        if not 0 <= self.type < 0x8000:
            raise CodecError(f"attribute type {self.type} out of range")
        if isinstance(self.value, int):
            w.u16(0x8000 | self.type).u16(self.value, "attribute value")
        else:
            w.u16(self.type).u16(len(self.value), "attribute length").put(self.value)

    @classmethod
    def decode(cls, r: Reader) -> Attribute:
        t = r.u16("attribute type")
        if t & 0x8000:
            return cls(t & 0x7FFF, r.u16("attribute value"))
        return cls(t, r.take(r.u16("attribute length"), "attribute value"))


# Transform substructure, RFC 7296 section 3.3.2:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Last Substruc |   RESERVED    |        Transform Length       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |Transform Type |   RESERVED    |          Transform ID         |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                      Transform Attributes                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class Transform:
    type: int
    id: int
    attributes: tuple[Attribute, ...] = ()

    @property
    def key_length(self) -> int | None:
        for a in self.attributes:
            if a.type == TransformAttr.KEY_LENGTH and isinstance(a.value, int):
                return a.value
        return None

    @classmethod
    def of(cls, ttype: int, tid: int, key_bits: int | None = None) -> Transform:
        attrs = () if key_bits is None else (Attribute(TransformAttr.KEY_LENGTH, key_bits),)
        return cls(ttype, tid, attrs)

    def encode(self, w: Writer, last: bool) -> None:
        start = len(w)
        w.u8(0 if last else 3).u8(0).u16(0).u8(self.type, "transform type").u8(0)
        w.u16(self.id, "transform ID")
        if len(self.attributes) > MAX_ATTRIBUTES:
            raise CodecError("too many transform attributes")
        for a in self.attributes:
            a.encode(w)
        w.patch_u16(start + 2, len(w) - start, "transform length")

    @classmethod
    def decode(cls, r: Reader) -> tuple[Transform, bool]:
        last = r.u8("transform last substruc")
        if last not in (0, 3):
            raise CodecError(f"transform last-substructure value {last}")
        r.u8("reserved")
        length = r.u16("transform length")
        if length < 8:
            raise CodecError(f"transform length {length} below 8")
        sub = r.sub(length - 4, "transform")
        ttype = sub.u8("transform type")
        sub.u8("reserved")
        tid = sub.u16("transform ID")
        attrs: list[Attribute] = []
        while sub.remaining:
            if len(attrs) >= MAX_ATTRIBUTES:
                raise CodecError("too many transform attributes")
            attrs.append(Attribute.decode(sub))
        return cls(ttype, tid, tuple(attrs)), last == 0


# Proposal substructure, RFC 7296 section 3.3.1:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Last Substruc |   RESERVED    |         Proposal Length       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                        SPI (variable)                         ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                        <Transforms>                           ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class Proposal:
    number: int
    protocol_id: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def of_type(self, ttype: int) -> tuple[Transform, ...]:
        return tuple(t for t in self.transforms if t.type == ttype)

    def encode(self, w: Writer, last: bool) -> None:
        if not 1 <= len(self.transforms) <= MAX_TRANSFORMS:
            raise CodecError(f"proposal with {len(self.transforms)} transforms")
        start = len(w)
        w.u8(0 if last else 2).u8(0).u16(0)
        w.u8(self.number, "proposal number").u8(self.protocol_id, "protocol ID")
        w.u8(len(self.spi), "SPI size").u8(len(self.transforms)).put(self.spi)
        for i, t in enumerate(self.transforms):
            t.encode(w, i == len(self.transforms) - 1)
        w.patch_u16(start + 2, len(w) - start, "proposal length")

    @classmethod
    def decode(cls, r: Reader) -> tuple[Proposal, bool]:
        last = r.u8("proposal last substruc")
        if last not in (0, 2):
            raise CodecError(f"proposal last-substructure value {last}")
        r.u8("reserved")
        length = r.u16("proposal length")
        if length < 8:
            raise CodecError(f"proposal length {length} below 8")
        sub = r.sub(length - 4, "proposal")
        number = sub.u8("proposal number")
        proto = sub.u8("protocol ID")
        spi_size = sub.u8("SPI size")
        count = sub.u8("number of transforms")
        spi = sub.take(spi_size, "SPI")
        if count == 0:
            raise CodecError("proposal without transforms")
        transforms: list[Transform] = []
        for i in range(count):
            t, is_last = Transform.decode(sub)
            if is_last != (i == count - 1):
                raise CodecError("transform count and last-substructure flags disagree")
            transforms.append(t)
        sub.expect_end("proposal")
        return cls(number, proto, spi, tuple(transforms)), last == 0


# Security Association payload, RFC 7296 section 3.3:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                          <Proposals>                          ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class SaPayload:
    TYPE: ClassVar[int] = PayloadType.SA
    proposals: tuple[Proposal, ...]

    def encode_body(self, w: Writer) -> None:
        if not 1 <= len(self.proposals) <= MAX_PROPOSALS:
            raise CodecError(f"SA payload with {len(self.proposals)} proposals")
        for i, p in enumerate(self.proposals):
            p.encode(w, i == len(self.proposals) - 1)

    @classmethod
    def decode_body(cls, r: Reader) -> SaPayload:
        props: list[Proposal] = []
        while True:
            if len(props) >= MAX_PROPOSALS:
                raise CodecError("too many proposals")
            p, last = Proposal.decode(r)
            props.append(p)
            if last:
                break
        return cls(tuple(props))
