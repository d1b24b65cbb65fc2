"""IKEv2 messages: the IKE header (RFC 7296 section 3.1), the generic payload header (section 3.2),
the payload chain, the Encrypted payload (section 3.14; RFC 5282 for the AEADs) and the Encrypted
Fragment payload with reassembly (RFC 7383).

``decode`` checks the header against the datagram and walks the chain; an SK or SKF payload, which
must be last, stops the walk and is kept as ``Message.encrypted``. ``decrypt`` authenticates and
decrypts it and decodes the inner chain. Every failure is a ``CodecError`` or ``CryptoError``
(both ``ValueError``); tests/test_ikev2_codec_fuzz.py checks that nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ipsecd.ike.buffers import CodecError, Reader, Writer
from ipsecd.ikev2.constants import IKEV2_MAJOR_VERSION, IKEV2_MINOR_VERSION, Flag, PayloadType
from ipsecd.ikev2.crypto import CryptoError, SkSuite
from ipsecd.ikev2.payloads import (
    GENERIC_HEADER_LEN,
    KNOWN_PAYLOADS,
    EncryptedFragmentPayload,
    EncryptedPayload,
    Payload,
    UnknownPayload,
)

HEADER_LEN = 28
MAX_PAYLOADS = 64
MAX_MESSAGE = 65535
MAX_FRAGMENTS = 64
_CRITICAL = 0x80


# IKE header, RFC 7296 section 3.1:
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                       IKE SA Initiator's SPI                  |
# |                                                               |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                       IKE SA Responder's SPI                  |
# |                                                               |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                          Message ID                           |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                            Length                             |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
@dataclass(frozen=True)
class Header:
    """``next_payload`` and ``length`` are what was received; the encoder computes its own."""

    spi_i: bytes
    spi_r: bytes
    exchange_type: int
    flags: int = 0
    message_id: int = 0
    next_payload: int = field(default=0, compare=False)
    major: int = IKEV2_MAJOR_VERSION
    minor: int = IKEV2_MINOR_VERSION
    length: int = field(default=0, compare=False)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & Flag.R)

    @property
    def from_initiator(self) -> bool:
        """The I flag: sent by the original initiator of the IKE SA."""
        return bool(self.flags & Flag.I)

    def encode(self, next_payload: int, total_len: int) -> bytes:
        if len(self.spi_i) != 8 or len(self.spi_r) != 8:
            raise CodecError("IKE SPIs must be 8 bytes")
        if not (0 <= self.major < 16 and 0 <= self.minor < 16):
            raise CodecError("version nibbles out of range")
        w = Writer().put(self.spi_i).put(self.spi_r)
        w.u8(next_payload, "next payload").u8(self.major << 4 | self.minor)
        w.u8(self.exchange_type, "exchange type").u8(self.flags, "flags")
        w.u32(self.message_id, "message ID").u32(total_len, "message length")
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> Header:
        spi_i, spi_r = r.take(8, "initiator SPI"), r.take(8, "responder SPI")
        nxt, ver, xchg, flags = r.u8("next payload"), r.u8("version"), r.u8("exchange type"), r.u8("flags")
        mid, length = r.u32("message ID"), r.u32("message length")
        return cls(spi_i, spi_r, xchg, flags, mid, nxt, ver >> 4, ver & 0x0F, length)


@dataclass(frozen=True)
class Message:
    """A decoded message. ``payloads`` are the plaintext chain (or, after ``decrypt``, the inner one);
    ``raw`` each payload's bytes with its generic header (RealMessage / AUTH need exact bytes);
    ``encrypted`` the SK or SKF payload, ``sk_offset`` where its generic header starts."""

    header: Header
    payloads: tuple[Payload, ...]
    raw: tuple[bytes, ...] = field(default=(), compare=False, repr=False)
    encrypted: EncryptedPayload | EncryptedFragmentPayload | None = field(default=None, compare=False)
    sk_offset: int = field(default=0, compare=False)

    def find(self, cls: type) -> tuple[Payload, ...]:
        return tuple(p for p in self.payloads if isinstance(p, cls))

    @property
    def critical_unknown(self) -> tuple[int, ...]:
        """Unknown payload types sent with the critical bit (RFC 7296 section 2.5)."""
        return tuple(p.type for p in self.payloads if isinstance(p, UnknownPayload) and p.critical)


def _walk(
    first: int, body: bytes, *, padded: bool = False, allow_sk: bool = True
) -> tuple[list[Payload], list[bytes], EncryptedPayload | EncryptedFragmentPayload | None, int]:
    r = Reader(body)
    payloads: list[Payload] = []
    raws: list[bytes] = []
    nxt = first
    while nxt != PayloadType.NONE:
        if len(payloads) >= MAX_PAYLOADS:
            raise CodecError(f"more than {MAX_PAYLOADS} payloads")
        start = r.offset
        following = r.u8("next payload")
        critical = bool(r.u8("flags") & _CRITICAL)
        length = r.u16("payload length")
        if length < GENERIC_HEADER_LEN:
            raise CodecError(f"payload length {length} below the generic header")
        sub = r.sub(length - GENERIC_HEADER_LEN, f"payload type {nxt}")
        if nxt in (PayloadType.SK, PayloadType.SKF):
            if not allow_sk:
                raise CodecError("encrypted payload inside an encrypted payload")
            # RFC 7296 section 3.14: the Encrypted payload is the last one; its Next Payload field
            # names the first payload inside.
            enc: EncryptedPayload | EncryptedFragmentPayload
            if nxt == PayloadType.SK:
                enc = EncryptedPayload.decode_body(sub, following)
            else:
                enc = EncryptedFragmentPayload.decode_body(sub, following)
            if r.remaining:
                raise CodecError("data after the encrypted payload")
            return payloads, raws, enc, start
        decoder = KNOWN_PAYLOADS.get(nxt)
        if decoder is None:
            payloads.append(UnknownPayload(nxt, sub.rest(), critical))
        else:
            p = decoder(sub)
            sub.expect_end(f"payload type {nxt}")
            payloads.append(p)
        raws.append(body[start : r.offset])
        nxt = following
    if r.remaining and not padded:
        raise CodecError(f"{r.remaining} bytes after the last payload")
    return payloads, raws, None, 0


def decode(data: bytes) -> Message:
    """Decodes a datagram (without a non-ESP marker) up to an SK/SKF payload."""
    if len(data) > MAX_MESSAGE:
        raise CodecError("message too long")
    r = Reader(data)
    h = Header.decode(r)
    if h.major != IKEV2_MAJOR_VERSION:
        raise CodecError(f"IKE major version {h.major}, not {IKEV2_MAJOR_VERSION}")
    if h.length != len(data):
        raise CodecError(f"header length {h.length} but datagram of {len(data)} bytes")
    payloads, raws, enc, off = _walk(h.next_payload, r.rest())
    return Message(h, tuple(payloads), tuple(raws), enc, HEADER_LEN + off if enc is not None else 0)


def encode_chain(payloads: Sequence[Payload], last_next: int = PayloadType.NONE) -> tuple[int, bytes]:
    """Encodes a payload chain; returns (type of the first payload, bytes)."""
    if len(payloads) > MAX_PAYLOADS:
        raise CodecError(f"more than {MAX_PAYLOADS} payloads")
    w = Writer()
    for i, p in enumerate(payloads):
        nxt = payloads[i + 1].TYPE if i + 1 < len(payloads) else last_next
        if p.TYPE in (PayloadType.NONE, PayloadType.SK, PayloadType.SKF):
            raise CodecError(f"payload type {p.TYPE} cannot be encoded in a plain chain")
        start = len(w)
        critical = _CRITICAL if isinstance(p, UnknownPayload) and p.critical else 0
        w.u8(nxt, "next payload").u8(critical).u16(0)
        p.encode_body(w)
        w.patch_u16(start + 2, len(w) - start, "payload length")
    first = payloads[0].TYPE if payloads else last_next
    return int(first), w.getvalue()


def encode(header: Header, payloads: Sequence[Payload]) -> bytes:
    """An unprotected message (IKE_SA_INIT)."""
    first, body = encode_chain(payloads)
    if HEADER_LEN + len(body) > MAX_MESSAGE:
        raise CodecError("message too long")
    return header.encode(first, HEADER_LEN + len(body)) + body


def payload_body(payload: Payload) -> bytes:
    """A payload's body without its generic header (RestOfIDPayload and the like)."""
    return encode_chain([payload])[1][GENERIC_HEADER_LEN:]


# Encrypted and Authenticated payload, RFC 7296 section 3.14 (RFC 5282 section 3 for the AEADs,
# whose IV is 8 bytes and whose ICV is the AEAD tag; the associated data is the message from the IKE
# header through the SK generic header):
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                     Initialization Vector                     |
# |         (length is block size for encryption algorithm)       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                    Encrypted IKE Payloads                     ~
# +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |               |             Padding (0-255 octets)            |
# +-+-+-+-+-+-+-+-+                               +-+-+-+-+-+-+-+-+
# |                                               |  Pad Length   |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                    Integrity Checksum Data                    ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
def _pad(suite: SkSuite, inner: bytes) -> bytes:
    # RFC 7296 section 3.14: padding so the plaintext fills whole blocks, then the Pad Length byte.
    n = (-(len(inner) + 1)) % suite.block
    return inner + bytes(n) + bytes([n])


def encode_protected(
    header: Header,
    inner: Sequence[Payload],
    suite: SkSuite,
    enc_key: bytes,
    integ_key: bytes,
    iv: bytes,
    plain: Sequence[Payload] = (),
) -> bytes:
    """A message whose ``inner`` payloads travel in an SK payload after the ``plain`` ones."""
    first_inner, inner_b = encode_chain(inner)
    plaintext = _pad(suite, inner_b)
    first, plain_b = encode_chain(plain, PayloadType.SK)
    sk_len = GENERIC_HEADER_LEN + suite.iv_len + len(plaintext) + suite.icv_len
    total = HEADER_LEN + len(plain_b) + sk_len
    if total > MAX_MESSAGE:
        raise CodecError("message too long")
    sk_hdr = Writer().u8(first_inner).u8(0).u16(sk_len, "SK payload length").getvalue()
    aad = header.encode(first if plain else PayloadType.SK, total) + plain_b + sk_hdr
    return aad + suite.seal(enc_key, integ_key, iv, aad, plaintext)


def _unpad(pt: bytes) -> bytes:
    if not pt:
        raise CodecError("empty plaintext")
    n = pt[-1]
    if n + 1 > len(pt):
        raise CodecError("pad length beyond the plaintext")
    return pt[: -(n + 1)]


def decrypt(data: bytes, msg: Message, suite: SkSuite, enc_key: bytes, integ_key: bytes) -> Message:
    """Authenticates and decrypts the SK payload of ``msg`` (decoded from ``data``); the result has
    the inner payloads. Raises CryptoError when it does not authenticate."""
    if not isinstance(msg.encrypted, EncryptedPayload):
        raise CodecError("message has no SK payload")
    aad = data[: msg.sk_offset + GENERIC_HEADER_LEN]
    inner = _unpad(suite.open(enc_key, integ_key, aad, msg.encrypted.data))
    payloads, raws, _, _ = _walk(msg.encrypted.first_inner, inner, allow_sk=False)
    return Message(msg.header, tuple(payloads), tuple(raws))


# ---------------------------------------------------------------- fragments, RFC 7383


def encode_fragments(
    header: Header,
    inner: Sequence[Payload],
    suite: SkSuite,
    enc_key: bytes,
    integ_key: bytes,
    rng: Callable[[int], bytes],
    max_size: int,
) -> list[bytes]:
    """The message as SKF fragments of at most ``max_size`` bytes each (RFC 7383 section 2.5).

    Every fragment is protected on its own; the first names the first inner payload.
    """
    first_inner, inner_b = encode_chain(inner)
    fixed = HEADER_LEN + GENERIC_HEADER_LEN + 4 + suite.iv_len + suite.icv_len + 1 + suite.block
    room = max_size - fixed
    if room < 16:
        raise CodecError("fragment size too small")
    room -= room % max(suite.block, 1)
    chunks = [inner_b[i : i + room] for i in range(0, len(inner_b), room)] or [b""]
    if len(chunks) > MAX_FRAGMENTS:
        raise CodecError("too many fragments")
    out = []
    for n, chunk in enumerate(chunks, start=1):
        plaintext = _pad(suite, chunk)
        skf_len = GENERIC_HEADER_LEN + 4 + suite.iv_len + len(plaintext) + suite.icv_len
        total = HEADER_LEN + skf_len
        w = Writer().u8(first_inner if n == 1 else 0).u8(0).u16(skf_len).u16(n).u16(len(chunks))
        aad = header.encode(PayloadType.SKF, total) + w.getvalue()
        out.append(aad + suite.seal(enc_key, integ_key, rng(suite.iv_len), aad, plaintext))
    return out


@dataclass
class Reassembler:
    """Collects the fragments of one message (RFC 7383 section 2.6); keyed by message ID."""

    message_id: int = -1
    total: int = 0
    first_inner: int = 0
    parts: dict[int, bytes] = field(default_factory=dict, repr=False)
    header: Header | None = None

    def add(
        self, data: bytes, msg: Message, suite: SkSuite, enc_key: bytes, integ_key: bytes
    ) -> Message | None:
        """Adds one authenticated fragment; returns the whole message once complete."""
        frag = msg.encrypted
        if not isinstance(frag, EncryptedFragmentPayload):
            raise CodecError("not a fragment")
        if frag.total > MAX_FRAGMENTS:
            raise CodecError("too many fragments")
        aad = data[: msg.sk_offset + GENERIC_HEADER_LEN + 4]
        pt = _unpad(suite.open(enc_key, integ_key, aad, frag.data))
        if msg.header.message_id != self.message_id or frag.total > self.total:
            # RFC 7383 section 2.6.1: a higher Total Fragments restarts the collection.
            self.message_id, self.total, self.parts, self.first_inner = (
                msg.header.message_id,
                frag.total,
                {},
                0,
            )
        elif frag.total < self.total:
            return None
        self.parts.setdefault(frag.number, pt)
        if frag.number == 1:
            self.first_inner = frag.first_inner
            self.header = msg.header
        if len(self.parts) < self.total or self.header is None:
            return None
        inner = b"".join(self.parts[i] for i in range(1, self.total + 1))
        payloads, raws, _, _ = _walk(self.first_inner, inner, allow_sk=False)
        header = replace(self.header)
        self.message_id, self.total, self.parts = -1, 0, {}
        return Message(header, tuple(payloads), tuple(raws))


def strip_marker(data: bytes) -> tuple[bytes, bool]:
    """RFC 3948 section 2.2: IKE on port 4500 starts with four zero bytes (an IKE SPIi is never
    zero). Returns (IKE message, whether the marker was there)."""
    if len(data) >= 4 and data[:4] == bytes(4):
        return data[4:], True
    return data, False


__all__ = ["CodecError", "CryptoError"]
