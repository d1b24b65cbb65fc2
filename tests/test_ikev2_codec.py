"""IKEv2 codec: round trips (hypothesis), SK/SKF protection for every suite, a corpus of malformed
messages that must each raise CodecError, and the prf+ / key derivation definitions."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from ikev2_strategies import messages, payloads

from ipsecd.ike.buffers import CodecError, Reader
from ipsecd.ikev2 import crypto, message
from ipsecd.ikev2.constants import EncrId, ExchangeType, IntegId, NotifyType, PayloadType, PrfId
from ipsecd.ikev2.message import Header, Reassembler
from ipsecd.ikev2.payloads import (
    KNOWN_PAYLOADS,
    Identity,
    IdiPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    TrafficSelector,
    TsiPayload,
    UnknownPayload,
)
from ipsecd.ikev2.proposals import ProposalError, parse_esp, parse_ike

HDR = Header(b"\x01" * 8, b"\x02" * 8, ExchangeType.IKE_AUTH, 0x08, 1)
SUITES = [
    crypto.SkSuite(EncrId.ENCR_AES_CBC, 128, IntegId.AUTH_HMAC_SHA1_96),
    crypto.SkSuite(EncrId.ENCR_AES_CBC, 192, IntegId.AUTH_HMAC_SHA2_384_192),
    crypto.SkSuite(EncrId.ENCR_AES_CBC, 256, IntegId.AUTH_HMAC_SHA2_256_128),
    crypto.SkSuite(EncrId.ENCR_AES_CBC, 256, IntegId.AUTH_HMAC_SHA2_512_256),
    crypto.SkSuite(EncrId.ENCR_AES_GCM_16, 128),
    crypto.SkSuite(EncrId.ENCR_AES_GCM_16, 256),
    crypto.SkSuite(EncrId.ENCR_CHACHA20_POLY1305, None),
]


@settings(max_examples=300, deadline=None)
@given(messages)
def test_message_round_trip(m: tuple[Header, list[Payload]]) -> None:
    header, body = m
    wire = message.encode(header, body)
    got = message.decode(wire)
    assert got.header == header and list(got.payloads) == body
    assert message.encode(got.header, got.payloads) == wire


@settings(max_examples=100, deadline=None)
@given(payloads)
def test_payload_body_round_trip(p: Payload) -> None:
    body = message.payload_body(p)
    if isinstance(p, UnknownPayload):
        return
    assert KNOWN_PAYLOADS[p.TYPE](Reader(body)) == p


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"{s.encr}-{s.key_bits}-{s.integ}")
def test_sk_round_trip_and_tamper(suite: crypto.SkSuite) -> None:
    ke, ka = bytes(range(suite.enc_key_len)), bytes(range(7, 7 + suite.integ_key_len))
    inner = [IdiPayload(Identity.fqdn("a.example")), NotifyPayload(NotifyType.INITIAL_CONTACT)]
    plain = [NotifyPayload(NotifyType.COOKIE, b"x" * 8)]
    wire = message.encode_protected(HDR, inner, suite, ke, ka, bytes(suite.iv_len), plain)
    msg = message.decode(wire)
    assert msg.encrypted is not None and msg.encrypted.first_inner == PayloadType.IDi
    assert list(msg.payloads) == plain
    assert list(message.decrypt(wire, msg, suite, ke, ka).payloads) == inner
    for i in (0, 17, 30, len(wire) - 1):  # the header, a plain payload, the IV / ciphertext, the ICV
        bad = bytearray(wire)
        bad[i] ^= 1
        with pytest.raises((CodecError, crypto.CryptoError)):
            b = bytes(bad)
            message.decrypt(b, message.decode(b), suite, ke, ka)


@pytest.mark.parametrize("suite", [SUITES[0], SUITES[4], SUITES[6]], ids=["cbc", "gcm", "chacha"])
def test_fragments_reassemble(suite: crypto.SkSuite) -> None:
    ke, ka = bytes(suite.enc_key_len), bytes(suite.integ_key_len)
    inner = [TsiPayload(tuple(TrafficSelector.network(f"10.{i}.0.0/16") for i in range(30)))]
    counter = iter(range(1000))
    frags = message.encode_fragments(
        HDR, inner, suite, ke, ka, lambda n: bytes([next(counter) % 256]) * n, 200
    )
    assert len(frags) > 2 and all(len(f) <= 200 for f in frags)
    r = Reassembler()
    results = [r.add(f, message.decode(f), suite, ke, ka) for f in reversed(frags)]
    assert results[:-1] == [None] * (len(frags) - 1)
    whole = results[-1]
    assert whole is not None and list(whole.payloads) == inner


def _hdr(body: bytes, first: int, exchange: int = ExchangeType.IKE_SA_INIT, major: int = 2) -> bytes:
    h = Header(b"\x01" * 8, bytes(8), exchange, 0x08, 0, major=major)
    return h.encode(first, 28 + len(body)) + body


def _gen(nxt: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([nxt, flags]) + (4 + len(body)).to_bytes(2, "big") + body


NONCE = _gen(0, b"n" * 16)
PROP_OK = bytes([0, 0, 0, 16, 1, 1, 0, 1]) + bytes([0, 0, 0, 8, 1, 0, 0, 12])
CORPUS = {
    "short header": b"\x01" * 20,
    "length field too big": _hdr(NONCE, PayloadType.NONCE)[:-1],
    "major version 1": _hdr(NONCE, PayloadType.NONCE, major=1),
    "payload length below 4": _hdr(bytes([0, 0, 0, 3]), PayloadType.NONCE),
    "payload overruns message": _hdr(bytes([0, 0, 0, 40]) + b"n" * 16, PayloadType.NONCE),
    "trailing bytes": _hdr(NONCE + b"xx", PayloadType.NONCE),
    "nonce of 15 bytes": _hdr(_gen(0, b"n" * 15), PayloadType.NONCE),
    "nonce of 257 bytes": _hdr(_gen(0, b"n" * 257), PayloadType.NONCE),
    "empty KE": _hdr(_gen(0, bytes([0, 31, 0, 0])), PayloadType.KE),
    "IPv4 ID of 3 bytes": _hdr(_gen(0, bytes([1, 0, 0, 0]) + b"abc"), PayloadType.IDi),
    "empty ID": _hdr(_gen(0, bytes([2, 0, 0, 0])), PayloadType.IDi),
    "proposal without transforms": _hdr(_gen(0, bytes([0, 0, 0, 8, 1, 1, 0, 0])), PayloadType.SA),
    "transform count mismatch": _hdr(
        _gen(0, bytes([0, 0, 0, 16, 1, 1, 0, 2]) + bytes([0, 0, 0, 8, 1, 0, 0, 12])), PayloadType.SA
    ),
    "bad proposal last-substruc": _hdr(_gen(0, bytes([7]) + PROP_OK[1:]), PayloadType.SA),
    "bad transform last-substruc": _hdr(_gen(0, PROP_OK[:8] + bytes([5]) + PROP_OK[9:]), PayloadType.SA),
    "transform length below 8": _hdr(
        _gen(0, PROP_OK[:8] + bytes([0, 0, 0, 4]) + PROP_OK[12:]), PayloadType.SA
    ),
    "truncated attribute": _hdr(
        _gen(0, bytes([0, 0, 0, 18, 1, 1, 0, 1]) + bytes([0, 0, 0, 10, 1, 0, 0, 12, 0x80, 14])),
        PayloadType.SA,
    ),
    "notify ESP SPI of 3 bytes": _hdr(_gen(0, bytes([3, 3, 0, 1]) + b"abc"), PayloadType.N),
    "notify SPI longer than payload": _hdr(_gen(0, bytes([3, 4, 0, 1]) + b"ab"), PayloadType.N),
    "IKE delete with an SPI": _hdr(_gen(0, bytes([1, 8, 0, 1]) + bytes(8)), PayloadType.D),
    "ESP delete with SPI size 8": _hdr(_gen(0, bytes([3, 8, 0, 1]) + bytes(8)), PayloadType.D),
    "delete count beyond data": _hdr(_gen(0, bytes([3, 4, 0, 3]) + bytes(8)), PayloadType.D),
    "TS type 9": _hdr(_gen(0, bytes([1, 0, 0, 0, 9, 0, 0, 16, 0, 0, 255, 255]) + bytes(8)), PayloadType.TSi),
    "TS selector length 20 for IPv4": _hdr(
        _gen(0, bytes([1, 0, 0, 0, 7, 0, 0, 20, 0, 0, 255, 255]) + bytes(12)), PayloadType.TSi
    ),
    "zero TS count": _hdr(_gen(0, bytes([0, 0, 0, 0])), PayloadType.TSi),
    "EAP length mismatch": _hdr(_gen(0, bytes([1, 1, 0, 9, 1])), PayloadType.EAP),
    "CP attribute with R bit": _hdr(_gen(0, bytes([1, 0, 0, 0, 0x80, 1, 0, 0])), PayloadType.CP),
    "data after SK": _hdr(_gen(PayloadType.N, b"x" * 40) + NONCE, PayloadType.SK),
    "fragment 0": _hdr(_gen(0, bytes([0, 0, 0, 2]) + b"x" * 40), PayloadType.SKF),
    "fragment 3 of 2": _hdr(_gen(0, bytes([0, 3, 0, 2]) + b"x" * 40), PayloadType.SKF),
    "later fragment naming a payload": _hdr(
        _gen(PayloadType.IDi, bytes([0, 2, 0, 2]) + b"x" * 40), PayloadType.SKF
    ),
    "65 payloads": _hdr(
        b"".join(_gen(PayloadType.V if i < 64 else 0, b"") for i in range(65)), PayloadType.V
    ),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_corpus(name: str) -> None:
    with pytest.raises(CodecError):
        message.decode(CORPUS[name])


def test_unknown_critical_payload_is_reported() -> None:
    msg = message.decode(_hdr(_gen(0, b"zz", flags=0x80), 150))
    assert msg.critical_unknown == (150,)


def test_sk_with_bad_padding_or_short_body() -> None:
    s = SUITES[4]
    ke = bytes(s.enc_key_len)
    with pytest.raises(crypto.CryptoError):
        s.open(ke, b"", b"aad", b"short")
    body = s.seal(ke, b"", bytes(8), b"aad", b"\x00" * 3 + b"\x09")  # pad length 9 > plaintext
    wire_msg = message.Message(HDR, (), encrypted=message.EncryptedPayload(0, body), sk_offset=-1)
    with pytest.raises(CodecError):
        message.decrypt(b"aad", wire_msg, s, ke, b"")


def test_prf_plus_definition() -> None:
    k, s = b"key", b"seed"
    t1 = hmac.new(k, s + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(k, t1 + s + b"\x02", hashlib.sha256).digest()
    assert crypto.prf_plus(PrfId.PRF_HMAC_SHA2_256, k, s, 40) == (t1 + t2)[:40]


def test_rfc4868_prf_vector() -> None:
    # RFC 4868 section 2.7.1, PRF-HMAC-SHA-256 test case 1.
    out = crypto.prf(PrfId.PRF_HMAC_SHA2_256, b"\x0b" * 20, b"Hi There")
    assert out.hex() == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"


def test_key_lengths_of_derive() -> None:
    suite = crypto.SkSuite(EncrId.ENCR_AES_CBC, 256, IntegId.AUTH_HMAC_SHA2_256_128)
    k = crypto.derive_ike_keys(
        PrfId.PRF_HMAC_SHA2_384, suite, b"s" * 48, b"n" * 32, b"m" * 32, b"i" * 8, b"r" * 8
    )
    assert [len(x) for x in (k.sk_d, k.sk_ai, k.sk_ar, k.sk_ei, k.sk_er, k.sk_pi, k.sk_pr)] == [
        48,
        32,
        32,
        32,
        32,
        48,
        48,
    ]
    assert "sk_d" not in repr(k) or "b'" not in repr(k)
    gcm = crypto.SkSuite(EncrId.ENCR_AES_GCM_16, 128)
    assert gcm.enc_key_len == 20 and gcm.integ_key_len == 0


def test_psk_auth_definition() -> None:
    prf = PrfId.PRF_HMAC_SHA2_256
    inner = hmac.new(b"psk", b"Key Pad for IKEv2", hashlib.sha256).digest()
    maced = hmac.new(b"skp", b"\x01\x00\x00\x00\x7f\x00\x00\x01", hashlib.sha256).digest()
    want = hmac.new(inner, b"msg" + b"nonce" + maced, hashlib.sha256).digest()
    assert (
        crypto.psk_auth(prf, b"psk", b"msg", b"nonce", b"skp", Identity.address("127.0.0.1").body()) == want
    )


@pytest.mark.parametrize(
    "bad", ["aes128-foo-x25519", "sha256-x25519", "aes128gcm16-x25519", "aes100-sha1-prfsha1-x25519"]
)
def test_bad_proposal_strings(bad: str) -> None:
    with pytest.raises(ProposalError):
        parse_ike(bad)


def test_proposal_strings() -> None:
    p = parse_ike("aes256-sha384-prfsha512-ecp384-x25519")
    assert p.prf == PrfId.PRF_HMAC_SHA2_512 and p.groups == (20, 31)
    assert parse_esp("chacha20poly1305-esn").esn
    assert NoncePayload(b"n" * 16).TYPE == PayloadType.NONCE
