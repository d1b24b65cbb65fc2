"""IKEv1's DigestInfo-less RSA signatures through libcrypto (ipsecd/datapath/native/rsa.c)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ipsecd.datapath import native
from ipsecd.ike import signatures
from ipsecd.ike.signatures import SignatureError, rsa_pkcs1_raw_sign

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="the native extension is not built")


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("size", [1, 20, 32, 48, 64, 245])
def test_native_signature_equals_the_python_fallback(key: rsa.RSAPrivateKey, size: int) -> None:
    data = bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256))
    data = data[:size]
    sig = rsa_pkcs1_raw_sign(key, data)
    assert signatures._native is not None  # the native path is what rsa_pkcs1_raw_sign used
    # PKCS#1 v1.5 signatures are deterministic: libcrypto and the blinded fallback must agree.
    assert sig == signatures._rsa_raw_pkcs1_sign(key, data)
    assert key.public_key().recover_data_from_signature(sig, padding.PKCS1v15(), None) == data


def test_too_long_data_is_a_clear_error(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SignatureError):
        rsa_pkcs1_raw_sign(key, b"\x01" * 246)  # 256 - 11 = 245 bytes at most


def test_garbage_key_is_refused() -> None:
    from ipsecd.datapath import _native

    with pytest.raises(ValueError, match="not a DER RSA private key"):
        _native.rsa_sign_raw(b"\x30\x03\x02\x01\x00", b"x")


def test_ec_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from ipsecd.datapath import _native

    der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError):
        _native.rsa_sign_raw(der, b"x")
