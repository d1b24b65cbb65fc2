"""ISAKMP messages: the header (RFC 2408 section 3.1), the generic payload header (section 3.2) and
the payload chain.

Decoding a datagram: ``split`` checks the header and returns it with the body; an unencrypted body
goes to ``decode_payloads`` (``decode`` does both). An encrypted body (flag E) is decrypted by the
caller with ``ipsecd.ike.crypto`` and the plaintext given to ``decode_payloads(..., padded=True)``.
Every failure is a ``CodecError``; nothing else escapes (tests/test_ikev1_codec_fuzz.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipsecd.ike.buffers import CodecError, Reader, Writer
from ipsecd.ike.constants import ISAKMP_MAJOR_VERSION, ISAKMP_MINOR_VERSION, Flag, PayloadType
from ipsecd.ikev1.payloads import KNOWN_PAYLOADS, Payload, UnknownPayload
from ipsecd.ikev1.sa import GENERIC_HEADER_LEN

HEADER_LEN = 28
MAX_PAYLOADS = 64  # per message: bounds the work on one datagram
# Payload types that only occur nested in an SA payload, never in the message chain.
_NESTED_ONLY = frozenset({int(PayloadType.P), int(PayloadType.T)})


# ISAKMP header, RFC 2408 section 3.1:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !                          Initiator                            !
# !                            Cookie                             !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !                          Responder                            !
# !                            Cookie                             !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !  Next Payload ! MjVer ! MnVer ! Exchange Type !     Flags     !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !                          Message ID                           !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# !                            Length                             !
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class Header:
    """``next_payload`` and ``length`` are what was received; the encoder computes its own."""

    icookie: bytes
    rcookie: bytes
    exchange_type: int
    flags: int = 0
    message_id: int = 0
    next_payload: int = field(default=0, compare=False)
    major: int = ISAKMP_MAJOR_VERSION
    minor: int = ISAKMP_MINOR_VERSION
    length: int = field(default=0, compare=False)

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & Flag.E)

    def encode(self, next_payload: int, body_len: int) -> bytes:
        if len(self.icookie) != 8 or len(self.rcookie) != 8:
            raise CodecError("cookies must be 8 bytes")
        if not (0 <= self.major < 16 and 0 <= self.minor < 16):
            raise CodecError("version nibbles out of range")
        w = Writer().put(self.icookie).put(self.rcookie)
        w.u8(next_payload, "next payload").u8(self.major << 4 | self.minor)
        w.u8(self.exchange_type, "exchange type").u8(self.flags, "flags")
        w.u32(self.message_id, "message ID").u32(HEADER_LEN + body_len, "message length")
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> Header:
        icookie = r.take(8, "initiator cookie")
        rcookie = r.take(8, "responder cookie")
        nxt = r.u8("next payload")
        ver = r.u8("version")
        xchg = r.u8("exchange type")
        flags = r.u8("flags")
        mid = r.u32("message ID")
        length = r.u32("message length")
        return cls(icookie, rcookie, xchg, flags, mid, nxt, ver >> 4, ver & 0x0F, length)


@dataclass(frozen=True)
class Message:
    """A decoded (or to-be-encoded) ISAKMP message.

    ``raw_payloads`` holds each received payload's bytes, generic header included, in order: the
    hash computations need them exactly as sent (SAi_b is ``raw_payloads[i][4:]``; Quick Mode HASH(1)
    covers ``b"".join(raw_payloads[1:])``). ``unknown`` lists the payload types that were skipped;
    ``padding`` the bytes after the last payload of a decrypted body.
    """

    header: Header
    payloads: tuple[Payload, ...]
    raw_payloads: tuple[bytes, ...] = field(default=(), compare=False, repr=False)
    unknown: tuple[int, ...] = field(default=(), compare=False)
    padding: int = field(default=0, compare=False)

    def find(self, cls: type[Payload]) -> tuple[Payload, ...]:
        return tuple(p for p in self.payloads if isinstance(p, cls))


def split(data: bytes) -> tuple[Header, bytes]:
    """Checks the header against the datagram and returns (header, body).

    RFC 2408 section 5.1: the Length field must equal the message length; it must cover the header.
    """
    r = Reader(data)
    h = Header.decode(r)
    if h.length < HEADER_LEN:
        raise CodecError(f"message length {h.length} below the {HEADER_LEN}-byte header")
    if h.length != len(data):
        raise CodecError(f"header length {h.length} but datagram of {len(data)} bytes")
    return h, r.rest()


def decode_payloads(
    first: int, body: bytes, *, padded: bool = False
) -> tuple[tuple[Payload, ...], tuple[bytes, ...], tuple[int, ...], int]:
    """Walks the payload chain from ``first``; returns (payloads, raw payloads, unknown types,
    padding). ``padded``: bytes may follow the last payload (a decrypted body's padding)."""
    r = Reader(body)
    payloads: list[Payload] = []
    raws: list[bytes] = []
    unknown: list[int] = []
    nxt = first
    while nxt != PayloadType.NONE:
        if len(payloads) >= MAX_PAYLOADS:
            raise CodecError(f"more than {MAX_PAYLOADS} payloads")
        if nxt in _NESTED_ONLY:
            raise CodecError(f"payload type {nxt} outside an SA payload")
        start = r.offset
        following = r.u8("next payload")
        r.u8("reserved")
        length = r.u16("payload length")
        if length < GENERIC_HEADER_LEN:
            raise CodecError(f"payload length {length} below the generic header")
        sub = r.sub(length - GENERIC_HEADER_LEN, f"payload type {nxt}")
        cls = KNOWN_PAYLOADS.get(nxt)
        if cls is None:
            payloads.append(UnknownPayload(nxt, sub.rest()))
            unknown.append(nxt)
        else:
            payloads.append(cls.decode_body(sub))
            sub.expect_end(f"payload type {nxt}")
        raws.append(body[start : r.offset])
        nxt = following
    if r.remaining and not padded:
        raise CodecError(f"{r.remaining} bytes after the last payload")
    return tuple(payloads), tuple(raws), tuple(unknown), r.remaining


def decode(data: bytes) -> Message:
    """Decodes an unencrypted IKEv1 message. Encrypted ones: ``split``, decrypt, ``decode_body``."""
    h, body = split(data)
    if h.major != ISAKMP_MAJOR_VERSION:
        raise CodecError(f"ISAKMP major version {h.major}, not {ISAKMP_MAJOR_VERSION}")
    if h.encrypted:
        raise CodecError("message is encrypted: decrypt the body first")
    return decode_body(h, body, padded=False)


def decode_body(header: Header, body: bytes, *, padded: bool = True) -> Message:
    """Decodes a (decrypted) body against its header."""
    payloads, raws, unknown, padding = decode_payloads(header.next_payload, body, padded=padded)
    return Message(header, payloads, raws, unknown, padding)


def encode_payloads(payloads: tuple[Payload, ...] | list[Payload]) -> tuple[int, bytes]:
    """Encodes a payload chain; returns (type of the first payload, bytes)."""
    if len(payloads) > MAX_PAYLOADS:
        raise CodecError(f"more than {MAX_PAYLOADS} payloads")
    w = Writer()
    for i, p in enumerate(payloads):
        nxt = payloads[i + 1].TYPE if i + 1 < len(payloads) else PayloadType.NONE
        if p.TYPE in _NESTED_ONLY or p.TYPE == PayloadType.NONE:
            raise CodecError(f"payload type {p.TYPE} cannot be in the message chain")
        start = len(w)
        w.u8(nxt, "next payload").u8(0).u16(0)
        p.encode_body(w)
        w.patch_u16(start + 2, len(w) - start, "payload length")
    first = payloads[0].TYPE if payloads else PayloadType.NONE
    return int(first), w.getvalue()


def encode(message: Message) -> bytes:
    """Encodes an unencrypted message (the E flag must be clear)."""
    if message.header.encrypted:
        raise CodecError("encode() builds plaintext messages; use encode_encrypted()")
    first, body = encode_payloads(message.payloads)
    return message.header.encode(first, len(body)) + body


def encode_encrypted(header: Header, first: int, ciphertext: bytes) -> bytes:
    """A message whose body was encrypted by the caller; sets the E flag."""
    h = Header(
        header.icookie,
        header.rcookie,
        header.exchange_type,
        header.flags | Flag.E,
        header.message_id,
        major=header.major,
        minor=header.minor,
    )
    return h.encode(first, len(ciphertext)) + ciphertext
