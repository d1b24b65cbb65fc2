"""The codec, DH and crypto pieces composed the way a Main Mode (PSK) + Quick Mode exchange uses
them (RFC 2409 sections 5, 5.4, 5.5 and Appendix B): both sides derive the same keys, each decrypts
and verifies what the other encrypted and hashed, and the IV chains line up. No state machine here:
the test plays both peers by hand."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ipsecd.ike import crypto
from ipsecd.ike.constants import (
    DOI_IPSEC,
    AuthMethod,
    EncapsulationMode,
    EncryptionAlgorithm,
    EspTransformId,
    ExchangeType,
    HashAlgorithm,
    IkeAttr,
    IpsecAttr,
    IsakmpTransformId,
    ProtocolId,
)
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev1 import codec
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.payloads import HashPayload, IdPayload, KePayload, NoncePayload
from ipsecd.ikev1.sa import Attribute, Proposal, SaPayload, Transform


def rng_from(seed: bytes):  # type: ignore[no-untyped-def]
    counter = [0]

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            counter[0] += 1
            out += hashlib.sha256(seed + counter[0].to_bytes(4, "big")).digest()
        return out[:n]

    return rng


@pytest.mark.parametrize(
    ("enc", "bits", "alg", "group"),
    [
        (EncryptionAlgorithm.TRIPLE_DES_CBC, None, HashAlgorithm.SHA, 2),
        (EncryptionAlgorithm.AES_CBC, 128, HashAlgorithm.SHA, 14),
        (EncryptionAlgorithm.AES_CBC, 256, HashAlgorithm.SHA2_256, 19),
        (EncryptionAlgorithm.AES_CBC, 256, HashAlgorithm.SHA2_384, 31),
    ],
)
def test_main_mode_psk_and_quick_mode(enc: int, bits: int | None, alg: int, group: int) -> None:
    psk = b"a pre-shared key"
    cky_i, cky_r = b"I" * 8, b"R" * 8
    cipher = crypto.cbc_cipher(enc, bits)
    attrs = [Attribute(IkeAttr.ENCRYPTION_ALGORITHM, enc)]
    if bits:
        attrs.append(Attribute(IkeAttr.KEY_LENGTH, bits))
    attrs += [
        Attribute(IkeAttr.HASH_ALGORITHM, alg),
        Attribute(IkeAttr.AUTHENTICATION_METHOD, AuthMethod.PRE_SHARED_KEY),
        Attribute(IkeAttr.GROUP_DESCRIPTION, group),
    ]
    sa_i = SaPayload(
        DOI_IPSEC,
        1,
        (
            Proposal(
                1, ProtocolId.PROTO_ISAKMP, b"", (Transform(1, IsakmpTransformId.KEY_IKE, tuple(attrs)),)
            ),
        ),
    )
    mm1 = codec.decode(
        codec.encode(Message(Header(cky_i, bytes(8), ExchangeType.IDENTITY_PROTECTION), (sa_i,)))
    )
    sai_b = mm1.raw_payloads[0][4:]  # what both sides hash: the initiator's SA body as sent

    # Messages 3 and 4: KE and nonces.
    dh_i = DefaultDhProvider(rng_from(b"i")).generate(group)
    dh_r = DefaultDhProvider(rng_from(b"r")).generate(group)
    ni, nr = rng_from(b"ni")(16), rng_from(b"nr")(24)
    mm3 = codec.decode(
        codec.encode(Message(Header(cky_i, cky_r, 2), (KePayload(dh_i.public_value()), NoncePayload(ni))))
    )
    ke_i, n_i = mm3.payloads
    assert isinstance(ke_i, KePayload) and isinstance(n_i, NoncePayload)
    gxi, gxr = dh_i.public_value(), dh_r.public_value()

    def keys(gxy: bytes) -> crypto.Phase1Keys:
        skeyid = crypto.skeyid_psk(alg, psk, ni, nr)
        return crypto.derive_phase1(alg, skeyid, gxy, cky_i, cky_r, cipher.key_size)

    k_i = keys(dh_i.shared_secret(gxr))
    k_r = keys(dh_r.shared_secret(ke_i.data))
    assert k_i == k_r

    # Message 5: IDii and HASH_I, encrypted with the Phase 1 IV.
    idii = IdPayload(1, 17, 500, bytes([192, 0, 2, 1]))
    first, idii_raw = codec.encode_payloads([idii])
    h_i = crypto.hash_i(alg, k_i.skeyid, gxi, gxr, cky_i, cky_r, sai_b, idii_raw[4:])
    first, body = codec.encode_payloads([idii, HashPayload(h_i)])
    iv = crypto.phase1_iv(alg, gxi, gxr, cipher.block_size)
    ct, iv_i = crypto.cbc_encrypt(cipher, k_i.enc_key, iv, body)
    mm5 = codec.encode_encrypted(Header(cky_i, cky_r, 2), first, ct)

    hdr, received = codec.split(mm5)
    assert hdr.encrypted
    pt, iv_r = crypto.cbc_decrypt(
        cipher, k_r.enc_key, crypto.phase1_iv(alg, ke_i.data, gxr, cipher.block_size), received
    )
    msg5 = codec.decode_body(hdr, pt)
    got_id, got_hash = msg5.payloads
    assert got_id == idii
    assert isinstance(got_hash, HashPayload)
    expect = crypto.hash_i(alg, k_r.skeyid, ke_i.data, gxr, cky_i, cky_r, sai_b, msg5.raw_payloads[0][4:])
    assert hmac.compare_digest(expect, got_hash.data)
    assert iv_r == iv_i  # both chains continue from the last ciphertext block

    # Message 6: IDir and HASH_R, IV = last block of message 5.
    idir = IdPayload(1, 17, 500, bytes([192, 0, 2, 2]))
    _, idir_raw = codec.encode_payloads([idir])
    h_r = crypto.hash_r(alg, k_r.skeyid, gxr, gxi, cky_r, cky_i, sai_b, idir_raw[4:])
    first6, body6 = codec.encode_payloads([idir, HashPayload(h_r)])
    ct6, last_p1_r = crypto.cbc_encrypt(cipher, k_r.enc_key, iv_r, body6)
    pt6, last_p1_i = crypto.cbc_decrypt(cipher, k_i.enc_key, iv_i, ct6)
    msg6 = codec.decode_body(Header(cky_i, cky_r, 2, next_payload=first6), pt6)
    assert isinstance(msg6.payloads[1], HashPayload) and msg6.payloads[1].data == h_r
    assert last_p1_i == last_p1_r

    # Quick Mode message 1: HASH(1) over the payloads after HASH, Phase 2 IV from M-ID.
    mid = 0x5A5A0001
    spi_i = b"\x11\x22\x33\x44"
    esp = Transform(
        1,
        EspTransformId.ESP_AES,
        (
            Attribute(IpsecAttr.ENCAPSULATION_MODE, EncapsulationMode.TUNNEL),
            Attribute(IpsecAttr.AUTH_ALGORITHM, 2),
            Attribute(IpsecAttr.KEY_LENGTH, 128),
        ),
    )
    qm_sa = SaPayload(DOI_IPSEC, 1, (Proposal(1, ProtocolId.PROTO_IPSEC_ESP, spi_i, (esp,)),))
    ni2 = rng_from(b"ni2")(16)
    rest = [qm_sa, NoncePayload(ni2), idii, idir]
    _, rest_b = codec.encode_payloads(rest)
    hash1 = crypto.qm_hash1(alg, k_i.skeyid_a, mid, rest_b)
    first_q, body_q = codec.encode_payloads([HashPayload(hash1), *rest])
    ct_q, _ = crypto.cbc_encrypt(
        cipher, k_i.enc_key, crypto.phase2_iv(alg, last_p1_i, mid, cipher.block_size), body_q
    )
    wire_q = codec.encode_encrypted(
        Header(cky_i, cky_r, ExchangeType.QUICK_MODE, message_id=mid), first_q, ct_q
    )

    hq, ctq = codec.split(wire_q)
    ptq, _ = crypto.cbc_decrypt(
        cipher, k_r.enc_key, crypto.phase2_iv(alg, last_p1_r, hq.message_id, cipher.block_size), ctq
    )
    qm1 = codec.decode_body(hq, ptq)
    assert isinstance(qm1.payloads[0], HashPayload)
    assert qm1.payloads[0].data == crypto.qm_hash1(
        alg, k_r.skeyid_a, hq.message_id, b"".join(qm1.raw_payloads[1:])
    )
    assert qm1.payloads[1] == qm_sa

    # KEYMAT for the responder's inbound SA (SPI chosen by the initiator here) agrees on both sides.
    nr2 = rng_from(b"nr2")(16)
    km_i = crypto.keymat(alg, k_i.skeyid_d, ProtocolId.PROTO_IPSEC_ESP, spi_i, ni2, nr2, 16 + 20)
    km_r = crypto.keymat(alg, k_r.skeyid_d, ProtocolId.PROTO_IPSEC_ESP, spi_i, ni2, nr2, 16 + 20)
    assert km_i == km_r and len(km_i) == 36
