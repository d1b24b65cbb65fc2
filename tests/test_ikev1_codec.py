"""ISAKMP codec: round trips for every payload (hypothesis), a hand-built Main Mode message checked
byte by byte, and a corpus of malformed messages that must each raise CodecError."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from ikev1_strategies import messages, payloads

from ipsecd.ike.buffers import CodecError, Reader, Writer
from ipsecd.ike.constants import (
    DOI_IPSEC,
    AuthMethod,
    EncryptionAlgorithm,
    ExchangeType,
    Flag,
    GroupDescription,
    HashAlgorithm,
    IkeAttr,
    IsakmpTransformId,
    LifeType,
    NotifyType,
    PayloadType,
    ProtocolId,
    Situation,
)
from ipsecd.ikev1 import codec
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.payloads import (
    DeletePayload,
    IdPayload,
    KePayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    UnknownPayload,
    VendorIdPayload,
)
from ipsecd.ikev1.sa import Attribute, Proposal, SaPayload, Transform

ICK = bytes.fromhex("0102030405060708")


def _roundtrip(msg: Message) -> Message:
    wire = codec.encode(msg)
    back = codec.decode(wire)
    assert back == msg
    assert back.header.length == len(wire)
    assert codec.encode(back) == wire
    return back


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_every_payload_round_trips(p: Payload) -> None:
    back = _roundtrip(Message(Header(ICK, bytes(8), ExchangeType.IDENTITY_PROTECTION), (p,)))
    assert back.payloads == (p,)
    assert back.unknown == ((p.payload_type,) if isinstance(p, UnknownPayload) else ())


@settings(max_examples=200, deadline=None)
@given(messages)
def test_messages_round_trip_with_raw_payloads(msg: Message) -> None:
    back = _roundtrip(msg)
    first, body = codec.encode_payloads(msg.payloads)
    assert b"".join(back.raw_payloads) == body
    assert back.header.next_payload == first


def main_mode_1() -> Message:
    t = Transform(
        1,
        IsakmpTransformId.KEY_IKE,
        (
            Attribute(IkeAttr.ENCRYPTION_ALGORITHM, EncryptionAlgorithm.AES_CBC),
            Attribute(IkeAttr.KEY_LENGTH, 256),
            Attribute(IkeAttr.HASH_ALGORITHM, HashAlgorithm.SHA2_256),
            Attribute(IkeAttr.AUTHENTICATION_METHOD, AuthMethod.PRE_SHARED_KEY),
            Attribute(IkeAttr.GROUP_DESCRIPTION, GroupDescription.MODP_2048),
            Attribute(IkeAttr.LIFE_TYPE, LifeType.SECONDS),
            Attribute.integer(IkeAttr.LIFE_DURATION, 86400),
        ),
    )
    sa = SaPayload(DOI_IPSEC, Situation.SIT_IDENTITY_ONLY, (Proposal(1, ProtocolId.PROTO_ISAKMP, b"", (t,)),))
    return Message(
        Header(ICK, bytes(8), ExchangeType.IDENTITY_PROTECTION), (sa, VendorIdPayload(b"\xaa" * 16))
    )


# The same message assembled by hand from RFC 2408 sections 3.1-3.6 and RFC 2409 Appendix A.
MM1_HEX = "".join(
    line.replace(" ", "")
    for line in (
        "0102030405060708 0000000000000000",  # initiator cookie, responder cookie 0
        "01 10 02 00 00000000 0000006c",  # next SA, v1.0, Main Mode, no flags, M-ID 0, length 108
        "0d 00 003c",  # SA: next VID, length 60
        "00000001 00000001",  # DOI IPsec, SIT_IDENTITY_ONLY
        "00 00 0030",  # Proposal: last, length 48
        "01 01 00 01",  # #1, PROTO_ISAKMP, SPI size 0, 1 transform
        "00 00 0028",  # Transform: last, length 40
        "01 01 0000",  # #1, KEY_IKE
        "80010007 800e0100 80020004 80030001 8004000e 800b0001",  # TV: AES, 256, SHA2-256, PSK, 14, s
        "000c0004 00015180",  # Life Duration as TLV: 4 bytes, 86400
        "00 00 0014" + "aa" * 16,  # VID: last, length 20
    )
)


def test_main_mode_message_1_known_bytes() -> None:
    wire = codec.encode(main_mode_1())
    assert wire.hex() == MM1_HEX
    back = codec.decode(wire)
    sa = back.payloads[0]
    assert isinstance(sa, SaPayload)
    tr = sa.proposals[0].transforms[0]
    life = tr.attr(IkeAttr.LIFE_DURATION)
    assert life is not None and not life.is_basic and life.as_int() == 86400
    assert tr.attr(IkeAttr.KEY_LENGTH) == Attribute(IkeAttr.KEY_LENGTH, 256)
    assert tr.attr(IkeAttr.PRF) is None
    # SAi_b for HASH_I: the SA payload body without its generic header.
    assert back.raw_payloads[0][4:].hex() == MM1_HEX[64 : 64 + 2 * 56]


def test_attribute_forms() -> None:
    assert Attribute.integer(1, 65535).is_basic
    big = Attribute.integer(2, 65536)
    assert big.value == b"\x00\x01\x00\x00" and big.as_int() == 65536
    assert Attribute.integer(2, 2**40).value == (2**40).to_bytes(6, "big")
    with pytest.raises(CodecError):
        Attribute(3, b"\x00" * 9).as_int()
    with pytest.raises(CodecError):
        Attribute.integer(1, -1)
    with pytest.raises(CodecError):
        codec.encode_payloads(
            [SaPayload(1, 1, (Proposal(1, 1, b"", (Transform(1, 1, (Attribute(0x8000, 1),)),)),))]
        )


def test_id_helpers_and_nat_oa() -> None:
    ida = IdPayload.for_address(ipaddress.IPv4Address("192.0.2.1"), 17, 500)
    assert (ida.id_type, ida.data) == (1, bytes([192, 0, 2, 1]))
    idn = IdPayload.for_network(ipaddress.IPv6Network("2001:db8::/32"))
    assert idn.id_type == 6 and len(idn.data) == 32
    m = Message(
        Header(ICK, ICK, ExchangeType.QUICK_MODE, message_id=7),
        (ida, idn, NatOaPayload(ipaddress.IPv4Address("10.0.0.1"))),
    )
    _roundtrip(m)


def test_encrypted_split_and_padded_body() -> None:
    n = NotifyPayload(DOI_IPSEC, ProtocolId.PROTO_ISAKMP, NotifyType.R_U_THERE, ICK * 2, b"\x00\x00\x00\x05")
    first, body = codec.encode_payloads([n])
    padded = body + bytes(16 - len(body) % 16)
    hdr = Header(ICK, ICK, ExchangeType.INFORMATIONAL, message_id=99)
    wire = codec.encode_encrypted(hdr, first, padded)  # a stand-in ciphertext of whole blocks
    h, raw = codec.split(wire)
    assert h.encrypted and h.flags & Flag.E and raw == padded and h.next_payload == PayloadType.N
    with pytest.raises(CodecError):
        codec.decode(wire)
    msg = codec.decode_body(h, raw)
    assert msg.payloads == (n,) and msg.padding == len(padded) - len(body)
    with pytest.raises(CodecError):
        codec.decode_body(h, raw, padded=False)
    with pytest.raises(CodecError):
        codec.encode(Message(h, (n,)))


def _hdr(next_payload: int, body_len: int, *, length: int | None = None, ver: int = 0x10) -> bytes:
    total = 28 + body_len if length is None else length
    return ICK + bytes(8) + bytes([next_payload, ver, 2, 0]) + bytes(4) + total.to_bytes(4, "big")


def _msg(next_payload: int, body: bytes, **kw: int) -> bytes:
    return _hdr(next_payload, len(body), **kw) + body


def _gen(nxt: int, body: bytes, length: int | None = None) -> bytes:
    return bytes([nxt, 0]) + (len(body) + 4 if length is None else length).to_bytes(2, "big") + body


def _sa(proposals: bytes, length: int | None = None) -> bytes:
    return _gen(0, b"\x00\x00\x00\x01\x00\x00\x00\x01" + proposals, length)


def _prop(
    nxt: int, proto: int, spi: bytes, count: int, transforms: bytes, length: int | None = None
) -> bytes:
    return _gen(nxt, bytes([1, proto, len(spi), count]) + spi + transforms, length)


def _tr(nxt: int, attrs: bytes, length: int | None = None) -> bytes:
    return _gen(nxt, b"\x01\x01\x00\x00" + attrs, length)


GOOD_TR = _tr(0, bytes.fromhex("80010005"))
VALID = _msg(1, _sa(_prop(0, 1, b"", 1, GOOD_TR)))

MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "short header": VALID[:27],
    "header length below 28": _msg(0, b"", length=20),
    "header length beyond datagram": _msg(0, b"", length=29),
    "header length short of datagram": _msg(0, b"\x00", length=28),
    "major version 2": _msg(0, b"", ver=0x20),
    "truncated valid message": VALID[:-1],
    "payload length too big": _msg(13, _gen(0, b"abcd", length=9)),
    "payload length below header": _msg(13, _gen(0, b"", length=3)),
    "zero-length payload": _msg(13, _gen(0, b"", length=0)),
    "chain continues past body": _msg(13, _gen(13, b"abcd")),
    "trailing garbage": _msg(13, _gen(0, b"abcd") + b"\x00\x00"),
    "proposal at top level": _msg(2, _gen(0, b"\x01\x01\x00\x00")),
    "transform at top level": _msg(3, _gen(0, b"\x01\x01\x00\x00")),
    "SA without proposals": _msg(1, _sa(b"")),
    "SA with short DOI": _msg(1, _gen(0, b"\x00\x00\x00")),
    "SA secrecy situation": _msg(
        1, _gen(0, b"\x00\x00\x00\x01\x00\x00\x00\x02" + _prop(0, 1, b"", 1, GOOD_TR))
    ),
    "proposal count says 2, one present": _msg(1, _sa(_prop(0, 1, b"", 2, GOOD_TR))),
    "proposal count says 1, two present": _msg(1, _sa(_prop(0, 1, b"", 1, _tr(3, b"") + GOOD_TR))),
    "zero transforms": _msg(1, _sa(_prop(0, 1, b"", 0, b""))),
    "transform next says more": _msg(1, _sa(_prop(0, 1, b"", 1, _tr(3, bytes.fromhex("80010005"))))),
    "proposal next says more": _msg(1, _sa(_prop(2, 1, b"", 1, GOOD_TR))),
    "proposal followed by type 5": _msg(1, _sa(_prop(5, 1, b"", 1, GOOD_TR) + _prop(0, 1, b"", 1, GOOD_TR))),
    "proposal length too big": _msg(1, _sa(_prop(0, 1, b"", 1, GOOD_TR, length=200))),
    "proposal length too small": _msg(1, _sa(_prop(0, 1, b"", 1, GOOD_TR, length=7))),
    "transform length too big": _msg(1, _sa(_prop(0, 1, b"", 1, _tr(0, b"", length=99)))),
    "transform length below 8": _msg(1, _sa(_prop(0, 1, b"", 1, _tr(0, b"", length=4)))),
    "ESP SPI of 3 bytes": _msg(1, _sa(_prop(0, 3, b"abc", 1, GOOD_TR))),
    "ISAKMP SPI of 17 bytes": _msg(1, _sa(_prop(0, 1, b"a" * 17, 1, GOOD_TR))),
    "SPI size beyond proposal": _msg(1, _sa(_gen(0, bytes([1, 3, 40, 1]) + b"abcd"))),
    "oversized TLV attribute": _msg(1, _sa(_prop(0, 1, b"", 1, _tr(0, bytes.fromhex("000cffff00015180"))))),
    "truncated TV attribute": _msg(1, _sa(_prop(0, 1, b"", 1, _tr(0, bytes.fromhex("800100"))))),
    "too many attributes": _msg(1, _sa(_prop(0, 1, b"", 1, _tr(0, bytes.fromhex("80010005") * 65)))),
    "too many proposals": _msg(
        1, _sa(b"".join(_prop(2, 1, b"", 1, GOOD_TR) for _ in range(64)) + _prop(0, 1, b"", 1, GOOD_TR))
    ),
    "proposal numbers decreasing": _msg(
        1, _sa(_gen(2, bytes([2, 1, 0, 1]) + GOOD_TR) + _prop(0, 1, b"", 1, GOOD_TR))
    ),
    "empty KE": _msg(4, _gen(0, b"")),
    "empty hash": _msg(8, _gen(0, b"")),
    "empty SIG": _msg(9, _gen(0, b"")),
    "empty NAT-D": _msg(20, _gen(0, b"")),
    "nonce of 7 bytes": _msg(10, _gen(0, b"n" * 7)),
    "nonce of 257 bytes": _msg(10, _gen(0, b"n" * 257)),
    "ID shorter than its header": _msg(5, _gen(0, b"\x01\x00")),
    "ID_IPV4_ADDR of 5 bytes": _msg(5, _gen(0, b"\x01\x00\x00\x00" + b"\x0a" * 5)),
    "ID_FQDN empty": _msg(5, _gen(0, b"\x02\x00\x00\x00")),
    "CERT without encoding": _msg(6, _gen(0, b"")),
    "notify SPI beyond payload": _msg(11, _gen(0, b"\x00\x00\x00\x01\x03\x04\x00\x0e" + b"ab")),
    "notify SPI size 17": _msg(11, _gen(0, b"\x00\x00\x00\x01\x03\x11\x00\x0e" + b"a" * 17)),
    "notify truncated": _msg(11, _gen(0, b"\x00\x00\x00\x01\x03")),
    "delete count too big": _msg(12, _gen(0, b"\x00\x00\x00\x01\x03\x04\x00\x03" + b"a" * 8)),
    "delete count too small": _msg(12, _gen(0, b"\x00\x00\x00\x01\x03\x04\x00\x01" + b"a" * 8)),
    "delete zero SPIs": _msg(12, _gen(0, b"\x00\x00\x00\x01\x03\x04\x00\x00")),
    "delete ESP SPI size 16": _msg(12, _gen(0, b"\x00\x00\x00\x01\x03\x10\x00\x01" + b"a" * 16)),
    "delete ISAKMP SPI size 8": _msg(12, _gen(0, b"\x00\x00\x00\x01\x01\x08\x00\x01" + b"a" * 8)),
    "NAT-OA IPv4 with 16 bytes": _msg(21, _gen(0, b"\x01\x00\x00\x00" + b"a" * 16)),
    "NAT-OA bad ID type": _msg(21, _gen(0, b"\x02\x00\x00\x00" + b"a" * 4)),
    "too many payloads": _msg(13, b"".join(_gen(13, b"") for _ in range(64)) + _gen(0, b"")),
    "garbage": bytes(range(256)) * 2,
    "all ones": b"\xff" * 100,
}


def test_valid_base_of_corpus_decodes() -> None:
    assert isinstance(codec.decode(VALID).payloads[0], SaPayload)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_corpus_raises_codec_error(name: str) -> None:
    with pytest.raises(CodecError):
        codec.decode(MALFORMED[name])


def test_unknown_payload_skipped_and_flagged() -> None:
    # VID -> private-use type 130 -> VID: the unknown payload is skipped by its generic header.
    body = _gen(130, b"vid-1") + _gen(13, b"private data") + _gen(0, b"\x00" * 16)
    msg = codec.decode(_msg(13, body))
    assert msg.unknown == (130,)
    assert [type(p) for p in msg.payloads] == [VendorIdPayload, UnknownPayload, VendorIdPayload]
    assert msg.payloads[1] == UnknownPayload(130, b"private data")
    assert codec.encode(msg) == _msg(13, body)


@pytest.mark.parametrize(
    "bad",
    [
        NoncePayload(b"short"),
        IdPayload(1, 0, 0, b"\x01\x02"),
        DeletePayload(DOI_IPSEC, 3, 4, ()),
        DeletePayload(DOI_IPSEC, 3, 4, (b"abc",)),
        NotifyPayload(DOI_IPSEC, 3, 1, b"x" * 17),
        SaPayload(DOI_IPSEC, 1, ()),
        SaPayload(DOI_IPSEC, 1, (Proposal(1, 3, b"", (Transform(1, 3),)),)),
        SaPayload(DOI_IPSEC, 1, (Proposal(1, 3, b"spi!", ()),)),
        SaPayload(DOI_IPSEC, 1, (Proposal(1, 3, b"spi!", (Transform(300, 3),)),)),
        KePayload(b"k" * 70000),
    ],
)
def test_encoder_refuses_invalid_objects(bad: Payload) -> None:
    with pytest.raises(CodecError):
        codec.encode_payloads([bad])


def test_header_encode_checks() -> None:
    with pytest.raises(CodecError):
        Header(b"short", bytes(8), 2).encode(0, 0)
    with pytest.raises(CodecError):
        Header(ICK, bytes(8), 2, flags=256).encode(0, 0)
    with pytest.raises(CodecError):
        codec.encode_payloads([VendorIdPayload(b"")] * 65)


def test_buffers_never_leak_index_errors() -> None:
    r = Reader(b"\x01\x02\x03")
    assert r.u16() == 0x0102
    with pytest.raises(CodecError):
        r.u16()
    with pytest.raises(CodecError):
        r.take(-1)
    with pytest.raises(CodecError):
        Reader(b"ab", 3)
    with pytest.raises(CodecError):
        r.sub(2)
    assert r.u8() == 3 and r.remaining == 0
    r.expect_end()
    w = Writer().u8(1).u16(2).u32(3)
    with pytest.raises(CodecError):
        w.u8(256)
    with pytest.raises(CodecError):
        w.u32(-1)
    with pytest.raises(CodecError):
        w.patch_u16(6, 1)
    assert w.getvalue() == b"\x01\x00\x02\x00\x00\x00\x03"
