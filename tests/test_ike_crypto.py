"""IKEv1 crypto: HMAC vectors (RFC 2202, RFC 4231), AES-CBC vectors (NIST SP 800-38A F.2), and the
RFC 2409 derivations cross-checked against an independent computation written here from the RFC
formulas with the ``cryptography`` package's HMAC and hashes (not the module's hmac/hashlib path)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from hypothesis import given, settings
from hypothesis import strategies as st

from ipsecd.ike import crypto
from ipsecd.ike.constants import EncryptionAlgorithm, HashAlgorithm

H = HashAlgorithm
_C_HASH: dict[int, type[hashes.HashAlgorithm]] = {
    H.MD5: hashes.MD5,
    H.SHA: hashes.SHA1,
    H.SHA2_256: hashes.SHA256,
    H.SHA2_384: hashes.SHA384,
    H.SHA2_512: hashes.SHA512,
}
ALL_HASHES = sorted(_C_HASH)


def ref_prf(alg: int, key: bytes, data: bytes) -> bytes:
    m = c_hmac.HMAC(key, _C_HASH[alg]())
    m.update(data)
    return m.finalize()


def ref_hash(alg: int, data: bytes) -> bytes:
    d = hashes.Hash(_C_HASH[alg]())
    d.update(data)
    return d.finalize()


def det(label: str, n: int) -> bytes:
    """Deterministic test bytes."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


# ------------------------------------------------------------------ published vectors


@pytest.mark.parametrize(
    ("alg", "key", "data", "mac"),
    [
        # RFC 2202 test cases 1 and 2 (HMAC-MD5, HMAC-SHA-1).
        (H.MD5, b"\x0b" * 16, b"Hi There", "9294727a3638bb1c13f48ef8158bfc9d"),
        (H.MD5, b"Jefe", b"what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738"),
        (H.SHA, b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
        (H.SHA, b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        # RFC 4231 test case 2 (HMAC-SHA-256/384/512).
        (
            H.SHA2_256,
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            H.SHA2_384,
            b"Jefe",
            b"what do ya want for nothing?",
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
            "8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            H.SHA2_512,
            b"Jefe",
            b"what do ya want for nothing?",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ],
)
def test_prf_hmac_vectors(alg: int, key: bytes, data: bytes, mac: str) -> None:
    assert crypto.prf(alg, key, data).hex() == mac


SP800_38A_PT = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
SP800_38A_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


@pytest.mark.parametrize(
    ("bits", "key", "ct"),
    [
        (  # F.2.1 CBC-AES128.Encrypt, first two blocks
            128,
            "2b7e151628aed2a6abf7158809cf4f3c",
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2",
        ),
        (  # F.2.5 CBC-AES256.Encrypt, first two blocks
            256,
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
        ),
    ],
)
def test_aes_cbc_vectors_and_iv_chaining(bits: int, key: str, ct: str) -> None:
    c = crypto.cbc_cipher(EncryptionAlgorithm.AES_CBC, bits)
    k = bytes.fromhex(key)
    whole, nxt = crypto.cbc_encrypt(c, k, SP800_38A_IV, SP800_38A_PT)
    assert whole.hex() == ct
    assert nxt == whole[-16:]
    # Chaining: the second block encrypted alone with the IV left by the first gives the same bytes.
    first, iv2 = crypto.cbc_encrypt(c, k, SP800_38A_IV, SP800_38A_PT[:16])
    second, _ = crypto.cbc_encrypt(c, k, iv2, SP800_38A_PT[16:])
    assert first + second == whole
    pt, div = crypto.cbc_decrypt(c, k, SP800_38A_IV, whole)
    assert pt == SP800_38A_PT and div == nxt


# ------------------------------------------------------------------ RFC 2409 derivations


@pytest.mark.parametrize("alg", ALL_HASHES)
def test_phase1_psk_derivation_matches_rfc_formulas(alg: int) -> None:
    psk, ni, nr, gxy = det("psk", 19), det("ni", 16), det("nr", 32), det("gxy", 256)
    cky_i, cky_r = det("ci", 8), det("cr", 8)
    skeyid = crypto.skeyid_psk(alg, psk, ni, nr)
    assert skeyid == ref_prf(alg, psk, ni + nr)
    keys = crypto.derive_phase1(alg, skeyid, gxy, cky_i, cky_r, 16)
    d = ref_prf(alg, skeyid, gxy + cky_i + cky_r + bytes([0]))
    a = ref_prf(alg, skeyid, d + gxy + cky_i + cky_r + bytes([1]))
    e = ref_prf(alg, skeyid, a + gxy + cky_i + cky_r + bytes([2]))
    assert (keys.skeyid_d, keys.skeyid_a, keys.skeyid_e) == (d, a, e)
    assert keys.enc_key == e[:16]
    assert len({d, a, e}) == 3
    assert psk.hex() not in repr(keys) and e.hex() not in repr(keys)


@pytest.mark.parametrize("alg", ALL_HASHES)
def test_phase1_signature_skeyid(alg: int) -> None:
    ni, nr, gxy = det("ni", 20), det("nr", 20), det("gxy", 32)
    assert crypto.skeyid_sig(alg, ni, nr, gxy) == ref_prf(alg, ni + nr, gxy)


@pytest.mark.parametrize(
    ("alg", "enc", "bits", "needed"),
    [
        (H.SHA, EncryptionAlgorithm.TRIPLE_DES_CBC, None, 24),  # 20 < 24: expansion
        (H.MD5, EncryptionAlgorithm.AES_CBC, 256, 32),  # 16 < 32: expansion
        (H.SHA, EncryptionAlgorithm.AES_CBC, 256, 32),
        (H.SHA, EncryptionAlgorithm.AES_CBC, 128, 16),  # no expansion
        (H.SHA2_256, EncryptionAlgorithm.AES_CBC, 256, 32),  # exactly enough
        (H.SHA2_512, EncryptionAlgorithm.AES_CBC, 192, 24),
    ],
)
def test_appendix_b_key_expansion(alg: int, enc: int, bits: int | None, needed: int) -> None:
    c = crypto.cbc_cipher(enc, bits)
    assert c.key_size == needed
    e = det("skeyid_e", crypto.digest_size(alg))
    key = crypto.encryption_key(alg, e, c.key_size)
    if len(e) >= needed:
        assert key == e[:needed]
    else:
        k1 = ref_prf(alg, e, b"\x00")
        k2 = ref_prf(alg, e, k1)
        k3 = ref_prf(alg, e, k2)
        assert key == (k1 + k2 + k3)[:needed]
    assert len(key) == needed


@pytest.mark.parametrize("alg", ALL_HASHES)
def test_ivs_hashes_and_quick_mode_match_rfc_formulas(alg: int) -> None:
    gxi, gxr = det("gxi", 128), det("gxr", 128)
    cky_i, cky_r = det("ci", 8), det("cr", 8)
    skeyid, skeyid_a, skeyid_d = det("s", 20), det("sa", 20), det("sd", 20)
    sai_b, idii_b, idir_b = det("sai", 52), det("idi", 8), det("idr", 8)
    ni, nr, mid = det("ni", 16), det("nr", 24), 0x01020304
    for block in (8, 16):
        assert crypto.phase1_iv(alg, gxi, gxr, block) == ref_hash(alg, gxi + gxr)[:block]
        last = det("last", block)
        assert crypto.phase2_iv(alg, last, mid, block) == ref_hash(alg, last + mid.to_bytes(4, "big"))[:block]
    assert crypto.hash_i(alg, skeyid, gxi, gxr, cky_i, cky_r, sai_b, idii_b) == ref_prf(
        alg, skeyid, gxi + gxr + cky_i + cky_r + sai_b + idii_b
    )
    assert crypto.hash_r(alg, skeyid, gxr, gxi, cky_r, cky_i, sai_b, idir_b) == ref_prf(
        alg, skeyid, gxr + gxi + cky_r + cky_i + sai_b + idir_b
    )
    rest = det("rest", 300)
    m = mid.to_bytes(4, "big")
    assert crypto.qm_hash1(alg, skeyid_a, mid, rest) == ref_prf(alg, skeyid_a, m + rest)
    assert crypto.qm_hash2(alg, skeyid_a, mid, ni, rest) == ref_prf(alg, skeyid_a, m + ni + rest)
    assert crypto.qm_hash3(alg, skeyid_a, mid, ni, nr) == ref_prf(alg, skeyid_a, b"\x00" + m + ni + nr)
    assert crypto.informational_hash(alg, skeyid_a, mid, rest) == ref_prf(alg, skeyid_a, m + rest)
    # KEYMAT without and with PFS, expanded to 64 bytes (AES-256 + HMAC-SHA-256 keys).
    spi = bytes.fromhex("c0ffee01")
    for gqm in (None, det("gqm", 256)):
        km = crypto.keymat(alg, skeyid_d, 3, spi, ni, nr, 64, gqm)
        seed = (gqm or b"") + bytes([3]) + spi + ni + nr
        blocks = [ref_prf(alg, skeyid_d, seed)]
        while sum(map(len, blocks)) < 64:
            blocks.append(ref_prf(alg, skeyid_d, blocks[-1] + seed))
        assert km == b"".join(blocks)[:64]
        assert crypto.keymat(alg, skeyid_d, 3, spi, ni, nr, 16, gqm) == km[:16]


def test_pfs_changes_keymat_and_spi_direction_matters() -> None:
    a = crypto.keymat(H.SHA, b"d" * 20, 3, b"\x00\x00\x00\x01", b"n" * 16, b"m" * 16, 36)
    b = crypto.keymat(H.SHA, b"d" * 20, 3, b"\x00\x00\x00\x02", b"n" * 16, b"m" * 16, 36)
    c = crypto.keymat(H.SHA, b"d" * 20, 3, b"\x00\x00\x00\x01", b"n" * 16, b"m" * 16, 36, b"g" * 128)
    assert len({a, b, c}) == 3


@settings(max_examples=60, deadline=None)
@given(
    enc=st.sampled_from(
        [
            (EncryptionAlgorithm.TRIPLE_DES_CBC, None),
            (EncryptionAlgorithm.AES_CBC, 128),
            (EncryptionAlgorithm.AES_CBC, 192),
            (EncryptionAlgorithm.AES_CBC, 256),
        ]
    ),
    body=st.binary(min_size=0, max_size=200),
    seed=st.binary(min_size=1, max_size=8),
)
def test_cbc_round_trip_zero_padding(enc: tuple[int, int | None], body: bytes, seed: bytes) -> None:
    c = crypto.cbc_cipher(*enc)
    key = hashlib.sha512(seed).digest()[: c.key_size]
    iv = hashlib.sha256(seed).digest()[: c.block_size]
    ct, nxt = crypto.cbc_encrypt(c, key, iv, body)
    assert len(ct) % c.block_size == 0 and len(ct) - len(body) < c.block_size
    pt, nxt2 = crypto.cbc_decrypt(c, key, iv, ct) if ct else (b"", iv)
    assert pt == body + bytes(len(ct) - len(body))
    assert nxt == nxt2


def test_cipher_and_key_errors() -> None:
    aes = crypto.cbc_cipher(EncryptionAlgorithm.AES_CBC, 128)
    des3 = crypto.cbc_cipher(EncryptionAlgorithm.TRIPLE_DES_CBC)
    assert (des3.key_size, des3.block_size, des3.name) == (24, 8, "3DES-CBC")
    for bad in [
        (EncryptionAlgorithm.AES_CBC, None),
        (EncryptionAlgorithm.AES_CBC, 64),
        (1, None),
        (EncryptionAlgorithm.TRIPLE_DES_CBC, 128),
    ]:
        with pytest.raises(crypto.CryptoError):
            crypto.cbc_cipher(*bad)
    with pytest.raises(crypto.CryptoError):
        crypto.cbc_decrypt(aes, b"k" * 16, b"i" * 16, b"x" * 15)
    with pytest.raises(crypto.CryptoError):
        crypto.cbc_decrypt(aes, b"k" * 16, b"i" * 16, b"")
    with pytest.raises(crypto.CryptoError):
        crypto.cbc_encrypt(aes, b"k" * 15, b"i" * 16, b"x")
    with pytest.raises(crypto.CryptoError):
        crypto.cbc_encrypt(aes, b"k" * 16, b"i" * 8, b"x")
    with pytest.raises(crypto.CryptoError) as e:
        crypto.cbc_encrypt(des3, b"A" * 16 + b"B" * 8, b"i" * 8, b"x")  # K1 == K2
    assert "AAAA" not in str(e.value)
    with pytest.raises(crypto.CryptoError):
        crypto.prf(HashAlgorithm.TIGER, b"k", b"d")
    with pytest.raises(crypto.CryptoError):
        crypto.derive_phase1(H.SHA, b"s", b"g", b"short", b"x" * 8, 16)
    with pytest.raises(crypto.CryptoError):
        crypto.phase1_iv(H.MD5, b"a", b"b", 32)
    with pytest.raises(crypto.CryptoError):
        crypto.qm_hash1(H.SHA, b"a", 1 << 32, b"")
