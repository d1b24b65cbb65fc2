"""Signing and verifying IKE authentication data with certificate keys (RSA and ECDSA).

IKEv1 (RFC 2409 section 5.1): SIG_I/SIG_R are the signature of HASH_I/HASH_R. For RSA the RFC says
"RSA signatures MUST be encoded as a private key encryption in PKCS #1 format and not as a
signature in PKCS #1 format (which includes the OID of the hash algorithm)": PKCS#1 v1.5 block
type 1 padding of HASH_I itself, without a DigestInfo. For ECDSA (RFC 4754 methods 9/10/11) the
signature is r | s, each the size of the group order, over HASH_I with the method's hash.

IKEv2 (RFC 7296 section 2.15, 3.8): the AUTH data signs the octets of section 2.15 (message |
nonce | prf(SK_p, ID')), computed by the exchange code. Auth method 1 is RSASSA-PKCS1-v1_5 with
SHA-1 by default ("To promote interoperability ... SHOULD use SHA-1"); methods 9/10/11 are RFC 4754
ECDSA (SHA-256/P-256, SHA-384/P-384, SHA-512/P-521, r | s); method 14 (RFC 7427 section 3) carries
an ASN.1 AlgorithmIdentifier before the signature value::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | ASN.1 Length  |   AlgorithmIdentifier ASN.1 object            |
    +-+-+-+-+-+-+-+-+                                               +
    ~                                                               ~
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Signature Value                        |
    ~                                                               ~
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

(the data of the AUTH payload after its Auth Method octet and 3 reserved octets). For ECDSA under
method 14 the signature value is the DER Ecdsa-Sig-Value, as in certificates.

The verify functions return False for any bad or malformed signature and never raise on data
received from the network; they raise ``SignatureError`` only for a local misuse (an auth method
that does not fit our key).
"""

from __future__ import annotations

import enum
import math
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from ipsecd.ike import der
from ipsecd.ike.certs import PrivateKey, PublicKey
from ipsecd.ike.constants import AuthMethod as V1AuthMethod

_native: ModuleType | None
try:  # libcrypto's RSA for DigestInfo-less signatures (ipsecd/datapath/native/rsa.c)
    from ipsecd.datapath import _native
except (ImportError, OSError):
    _native = None


class SignatureError(ValueError):
    """An auth method that cannot be used with this key, or an unsupported algorithm."""


class V2AuthMethod(enum.IntEnum):
    """IKEv2 Authentication Method, RFC 7296 section 3.8, RFC 4754, RFC 7427 section 7."""

    RSA_DIGITAL_SIGNATURE = 1
    SHARED_KEY_MESSAGE_INTEGRITY_CODE = 2
    DSS_DIGITAL_SIGNATURE = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    DIGITAL_SIGNATURE = 14


class SignatureHash(enum.IntEnum):
    """Hash Algorithm Identifiers of the SIGNATURE_HASH_ALGORITHMS notify, RFC 7427 section 4."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4


SIGNATURE_HASH_ALGORITHMS = 16431  # the notify message type, RFC 7427 section 4

_HASHES: dict[SignatureHash, Callable[[], hashes.HashAlgorithm]] = {
    SignatureHash.SHA1: hashes.SHA1,
    SignatureHash.SHA2_256: hashes.SHA256,
    SignatureHash.SHA2_384: hashes.SHA384,
    SignatureHash.SHA2_512: hashes.SHA512,
}
_HASH_OIDS = {  # RFC 3279 section 2.2.1, RFC 4055 section 2.1
    SignatureHash.SHA1: "1.3.14.3.2.26",
    SignatureHash.SHA2_256: "2.16.840.1.101.3.4.2.1",
    SignatureHash.SHA2_384: "2.16.840.1.101.3.4.2.2",
    SignatureHash.SHA2_512: "2.16.840.1.101.3.4.2.3",
}
_RSA_PKCS1_OIDS = {  # RFC 3279 section 2.2.1, RFC 4055 section 5
    SignatureHash.SHA1: "1.2.840.113549.1.1.5",
    SignatureHash.SHA2_256: "1.2.840.113549.1.1.11",
    SignatureHash.SHA2_384: "1.2.840.113549.1.1.12",
    SignatureHash.SHA2_512: "1.2.840.113549.1.1.13",
}
_ECDSA_OIDS = {  # RFC 3279 section 2.2.3, RFC 5758 section 3.2
    SignatureHash.SHA1: "1.2.840.10045.4.1",
    SignatureHash.SHA2_256: "1.2.840.10045.4.3.2",
    SignatureHash.SHA2_384: "1.2.840.10045.4.3.3",
    SignatureHash.SHA2_512: "1.2.840.10045.4.3.4",
}
RSASSA_PSS_OID = "1.2.840.113549.1.1.10"  # RFC 4055 section 3.1
MGF1_OID = "1.2.840.113549.1.1.8"

# RFC 4754 section 3 / RFC 7296: the ECDSA auth methods fix curve and hash together.
_ECDSA_METHODS: dict[int, tuple[type[ec.EllipticCurve], SignatureHash]] = {
    9: (ec.SECP256R1, SignatureHash.SHA2_256),
    10: (ec.SECP384R1, SignatureHash.SHA2_384),
    11: (ec.SECP521R1, SignatureHash.SHA2_512),
}


def _hash(h: SignatureHash) -> hashes.HashAlgorithm:
    return _HASHES[h]()


# --------------------------------------------------------------- RFC 7427 AlgorithmIdentifiers


def _null_params_algid(oid: str) -> bytes:
    return der.encode(der.SEQUENCE, der.encode_oid(oid) + der.encode(der.NULL, b""))


def rsa_pkcs1_algid(h: SignatureHash) -> bytes:
    """sha{1,256,384,512}WithRSAEncryption, parameters NULL (RFC 4055 section 5)."""
    return _null_params_algid(_RSA_PKCS1_OIDS[h])


def ecdsa_algid(h: SignatureHash) -> bytes:
    """ecdsa-with-SHA*, parameters absent (RFC 5758 section 3.2)."""
    return der.encode(der.SEQUENCE, der.encode_oid(_ECDSA_OIDS[h]))


def rsa_pss_algid(h: SignatureHash) -> bytes:
    """id-RSASSA-PSS with explicit RSASSA-PSS-params (RFC 4055 section 3.1): hashAlgorithm and
    MGF1 with the same hash, saltLength the hash size, trailerField default (omitted)."""
    hash_algid = _null_params_algid(_HASH_OIDS[h])
    mgf = der.encode(der.SEQUENCE, der.encode_oid(MGF1_OID) + hash_algid)
    params = (
        der.encode(0xA0, hash_algid)
        + der.encode(0xA1, mgf)
        + der.encode(0xA2, der.encode_uint(_hash(h).digest_size))
    )
    return der.encode(der.SEQUENCE, der.encode_oid(RSASSA_PSS_OID) + der.encode(der.SEQUENCE, params))


@dataclass(frozen=True)
class Scheme:
    """A signature scheme parsed from an AlgorithmIdentifier."""

    kind: str  # "rsa-pkcs1", "rsa-pss" or "ecdsa"
    hash: SignatureHash
    salt_length: int = 0  # rsa-pss only


def parse_algid(algid: bytes) -> Scheme:
    """The scheme of an AlgorithmIdentifier; DerError/SignatureError when malformed or unknown."""
    parts = der.children(der.read_one(algid, der.SEQUENCE))
    if not parts or parts[0][0] != der.OID or len(parts) > 2:
        raise SignatureError("malformed AlgorithmIdentifier")
    oid = der.decode_oid(parts[0][1])
    params = parts[1] if len(parts) == 2 else None
    for h, o in _RSA_PKCS1_OIDS.items():
        if oid == o:
            if params is not None and params[0] != der.NULL:  # NULL, or absent from lax encoders
                raise SignatureError("PKCS#1 v1.5 AlgorithmIdentifier with parameters")
            return Scheme("rsa-pkcs1", h)
    for h, o in _ECDSA_OIDS.items():
        if oid == o:
            if params is not None:
                raise SignatureError("ECDSA AlgorithmIdentifier with parameters")
            return Scheme("ecdsa", h)
    if oid == RSASSA_PSS_OID:
        if params is None or params[0] != der.SEQUENCE:
            raise SignatureError("RSASSA-PSS needs explicit parameters")
        return _parse_pss(params[1])
    raise SignatureError(f"unsupported signature algorithm {oid}")


def _hash_of_algid(value: bytes) -> SignatureHash:
    parts = der.children(value)
    if not parts or parts[0][0] != der.OID or len(parts) > 2 or (len(parts) == 2 and parts[1][0] != der.NULL):
        raise SignatureError("malformed hash AlgorithmIdentifier")
    oid = der.decode_oid(parts[0][1])
    for h, o in _HASH_OIDS.items():
        if o == oid:
            return h
    raise SignatureError(f"unsupported hash {oid}")


def _parse_pss(value: bytes) -> Scheme:
    h, mgf_h, salt = SignatureHash.SHA1, SignatureHash.SHA1, 20  # RFC 4055 section 3.1 defaults
    for tag, inner, _ in der.children(value):
        if tag == 0xA0:
            h = _hash_of_algid(der.read_one(inner, der.SEQUENCE))
        elif tag == 0xA1:
            mgf = der.children(der.read_one(inner, der.SEQUENCE))
            if len(mgf) != 2 or mgf[0][0] != der.OID or der.decode_oid(mgf[0][1]) != MGF1_OID:
                raise SignatureError("RSASSA-PSS with a mask generation function other than MGF1")
            if mgf[1][0] != der.SEQUENCE:
                raise SignatureError("malformed MGF1 parameters")
            mgf_h = _hash_of_algid(mgf[1][1])
        elif tag == 0xA2:
            salt = der.decode_uint(der.read_one(inner, der.INTEGER))
        elif tag == 0xA3:
            if der.decode_uint(der.read_one(inner, der.INTEGER)) != 1:
                raise SignatureError("RSASSA-PSS trailerField must be 1")
        else:
            raise SignatureError("malformed RSASSA-PSS parameters")
    if mgf_h != h:
        raise SignatureError("RSASSA-PSS with different message and MGF1 hashes")
    if salt > 1024:
        raise SignatureError("RSASSA-PSS salt length out of range")
    return Scheme("rsa-pss", h, salt)


def default_hash_for(key: PrivateKey | PublicKey, offered: Iterable[int] = ()) -> SignatureHash:
    """The hash for our method-14 signature: the one matching an ECDSA curve, else SHA2-256; among
    those the peer offered in SIGNATURE_HASH_ALGORITHMS when it sent any."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        want = {256: SignatureHash.SHA2_256, 384: SignatureHash.SHA2_384}.get(
            key.curve.key_size, SignatureHash.SHA2_512
        )
    else:
        want = SignatureHash.SHA2_256
    peer = {h for h in offered if h in SignatureHash.__members__.values()}
    if not peer or want in peer:
        return want
    for h in (SignatureHash.SHA2_256, SignatureHash.SHA2_384, SignatureHash.SHA2_512):
        if h in peer:
            return h
    return want  # the peer offered only SHA-1 or unknown hashes: we do not sign with SHA-1


def encode_signature_hashes(hs: Sequence[SignatureHash]) -> bytes:
    """Notification data of SIGNATURE_HASH_ALGORITHMS: 2-octet identifiers (RFC 7427 section 4)."""
    return b"".join(int(h).to_bytes(2, "big") for h in hs)


def parse_signature_hashes(data: bytes) -> list[int]:
    """The identifiers of a received SIGNATURE_HASH_ALGORITHMS (unknown ones kept); odd length: []."""
    if len(data) % 2:
        return []
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


# ------------------------------------------------------------------------------ raw primitives


def rsa_pkcs1_raw_sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """PKCS#1 v1.5 block type 1 signature of ``data`` itself (no DigestInfo): IKEv1 RSA signatures.

    Done by libcrypto through the native extension (blinded, constant-time exponentiation) when it
    is built; otherwise by the blinded Python fallback below, which is NOT constant-time (Python's
    ``pow`` leaks the exponent through timing): the daemon logs which one it uses.
    """
    if _native is not None:
        der_key = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            signature: bytes = _native.rsa_sign_raw(der_key, data)
            return signature
        except ValueError as exc:
            raise SignatureError(str(exc)) from None
    return _rsa_raw_pkcs1_sign(key, data)


def _rsa_raw_pkcs1_sign(
    key: rsa.RSAPrivateKey, data: bytes, rand_below: Callable[[int], int] = secrets.randbelow
) -> bytes:
    """RSA private-key operation on a PKCS#1 v1.5 block type 1 of ``data`` (no DigestInfo).

    RFC 8017 section 9.2 steps 3-5 without step 2's DigestInfo, then RSASP1 (section 5.2.1) with
    the CRT and multiplicative blinding (the ``cryptography`` package offers no DigestInfo-less
    signing). The result is checked with the public exponent before it is returned.
    """
    pub = key.public_key().public_numbers()
    priv = key.private_numbers()
    n, e = pub.n, pub.e
    k = (n.bit_length() + 7) // 8
    if len(data) > k - 11:
        raise SignatureError("data too long for the RSA key")
    em = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
    m = int.from_bytes(em, "big")
    while True:
        r = rand_below(n - 2) + 2
        if math.gcd(r, n) == 1:
            break
    blinded = (m * pow(r, e, n)) % n
    s1 = pow(blinded % priv.p, priv.dmp1, priv.p)
    s2 = pow(blinded % priv.q, priv.dmq1, priv.q)
    h = (priv.iqmp * (s1 - s2)) % priv.p
    s = ((s2 + h * priv.q) * pow(r, -1, n)) % n
    if pow(s, e, n) != m:
        raise SignatureError("RSA signature self-check failed")
    return s.to_bytes(k, "big")


def _rsa_raw_pkcs1_verify(key: rsa.RSAPublicKey, data: bytes, sig: bytes) -> bool:
    if len(sig) != (key.key_size + 7) // 8:
        return False
    try:
        return key.recover_data_from_signature(sig, padding.PKCS1v15(), None) == data
    except (InvalidSignature, ValueError):
        return False


def _rsa_pkcs1_any_hash_verify(
    key: rsa.RSAPublicKey, data: bytes, sig: bytes, ok: set[SignatureHash]
) -> bool:
    """RSASSA-PKCS1-v1_5 verification for whichever allowed hash the DigestInfo names (RFC 8017
    section 9.2: DigestInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING digest })."""
    if len(sig) != (key.key_size + 7) // 8:
        return False
    try:
        digest_info = key.recover_data_from_signature(sig, padding.PKCS1v15(), None)
        algid, digest = der.children(der.read_one(digest_info, der.SEQUENCE))
        h = _hash_of_algid(algid[1]) if algid[0] == der.SEQUENCE and digest[0] == 0x04 else None
    except (InvalidSignature, ValueError):
        return False
    if h is None or h not in ok:
        return False
    # Verify again through OpenSSL with that hash: it re-encodes the DigestInfo in DER and compares.
    return _verify(key, sig, data, (padding.PKCS1v15(), _hash(h)))


def _ecdsa_sign_rs(key: ec.EllipticCurvePrivateKey, data: bytes, h: SignatureHash) -> bytes:
    r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(_hash(h))))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _ecdsa_verify_rs(key: ec.EllipticCurvePublicKey, data: bytes, sig: bytes, h: SignatureHash) -> bool:
    size = (key.curve.key_size + 7) // 8
    if len(sig) != 2 * size:
        return False
    r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
    return _verify(key, utils.encode_dss_signature(r, s), data, ec.ECDSA(_hash(h)))


def _verify(key: PublicKey, sig: bytes, data: bytes, alg: object) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            assert isinstance(alg, tuple)
            key.verify(sig, data, alg[0], alg[1])
        else:
            assert isinstance(alg, ec.ECDSA)
            key.verify(sig, data, alg)
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


def _ecdsa_method_fits(key: PrivateKey | PublicKey, method: int) -> SignatureHash:
    curve, h = _ECDSA_METHODS[method]
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or not isinstance(
        key.curve, curve
    ):
        raise SignatureError(f"auth method {method} needs an ECDSA {curve.name} key")
    return h


# ------------------------------------------------------------------------------------- IKEv1


def ikev1_sign(key: PrivateKey, method: int, hash_data: bytes) -> bytes:
    """SIG_I/SIG_R for RSA_SIGNATURES (3) or the RFC 4754 ECDSA methods 9/10/11 over HASH_I/HASH_R."""
    if method == V1AuthMethod.RSA_SIGNATURES:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SignatureError("RSA signatures need an RSA key")
        return rsa_pkcs1_raw_sign(key, hash_data)
    if method in _ECDSA_METHODS:
        h = _ecdsa_method_fits(key, method)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return _ecdsa_sign_rs(key, hash_data, h)
    raise SignatureError(f"IKEv1 auth method {method} is not a supported signature method")


def ikev1_verify(key: PublicKey, method: int, hash_data: bytes, sig: bytes) -> bool:
    """Check a received SIG payload's data; False for any mismatch (including the wrong key type)."""
    if method == V1AuthMethod.RSA_SIGNATURES:
        return isinstance(key, rsa.RSAPublicKey) and _rsa_raw_pkcs1_verify(key, hash_data, sig)
    if method in _ECDSA_METHODS:
        try:
            h = _ecdsa_method_fits(key, method)
        except SignatureError:
            return False
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return _ecdsa_verify_rs(key, hash_data, sig, h)
    return False


# ------------------------------------------------------------------------------------- IKEv2


def ikev2_sign(
    key: PrivateKey,
    method: int,
    octets: bytes,
    h: SignatureHash | None = None,
    pss: bool = False,
) -> bytes:
    """The Authentication Data of our AUTH payload over the signed octets (RFC 7296 section 2.15).

    Method 1: RSASSA-PKCS1-v1_5 with ``h`` (default SHA-1). Methods 9/10/11: ECDSA r | s.
    Method 14: the AlgorithmIdentifier prefix and the signature; ``h`` defaults to
    ``default_hash_for(key)``; ``pss`` selects RSASSA-PSS for an RSA key.
    """
    if method == V2AuthMethod.RSA_DIGITAL_SIGNATURE:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SignatureError("auth method 1 needs an RSA key")
        return key.sign(octets, padding.PKCS1v15(), _hash(h or SignatureHash.SHA1))
    if method in _ECDSA_METHODS:
        hh = _ecdsa_method_fits(key, method)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return _ecdsa_sign_rs(key, octets, hh)
    if method != V2AuthMethod.DIGITAL_SIGNATURE:
        raise SignatureError(f"IKEv2 auth method {method} is not a supported signature method")
    h = h or default_hash_for(key)
    if isinstance(key, rsa.RSAPrivateKey):
        if pss:
            algid = rsa_pss_algid(h)
            pad: padding.AsymmetricPadding = padding.PSS(padding.MGF1(_hash(h)), _hash(h).digest_size)
        else:
            algid, pad = rsa_pkcs1_algid(h), padding.PKCS1v15()
        sig = key.sign(octets, pad, _hash(h))
    else:
        algid = ecdsa_algid(h)
        sig = key.sign(octets, ec.ECDSA(_hash(h)))  # DER Ecdsa-Sig-Value
    return bytes([len(algid)]) + algid + sig


def ikev2_verify(
    key: PublicKey,
    method: int,
    octets: bytes,
    auth_data: bytes,
    allowed: Iterable[SignatureHash] | None = None,
) -> bool:
    """Check a received AUTH payload's data against the peer certificate's key.

    ``allowed`` restricts the hashes accepted under methods 1 and 14 (e.g. the ones we announced in
    SIGNATURE_HASH_ALGORITHMS); None accepts every supported one, SHA-1 included.
    """
    ok_hashes = set(SignatureHash) if allowed is None else set(allowed)
    if method == V2AuthMethod.RSA_DIGITAL_SIGNATURE:
        # RFC 7296 section 3.8 leaves the hash open ("SHOULD ... use SHA-1"): the DigestInfo
        # inside the signature names it.
        return isinstance(key, rsa.RSAPublicKey) and _rsa_pkcs1_any_hash_verify(
            key, octets, auth_data, ok_hashes
        )
    if method in _ECDSA_METHODS:
        try:
            h = _ecdsa_method_fits(key, method)
        except SignatureError:
            return False
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return _ecdsa_verify_rs(key, octets, auth_data, h)
    if method != V2AuthMethod.DIGITAL_SIGNATURE or not auth_data:
        return False
    n = auth_data[0]
    if len(auth_data) < 1 + n:
        return False
    try:
        scheme = parse_algid(auth_data[1 : 1 + n])
    except ValueError:  # DerError and SignatureError
        return False
    sig = auth_data[1 + n :]
    if scheme.hash not in ok_hashes:
        return False
    alg = _hash(scheme.hash)
    if scheme.kind == "ecdsa":
        return isinstance(key, ec.EllipticCurvePublicKey) and _verify(key, sig, octets, ec.ECDSA(alg))
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    if scheme.kind == "rsa-pss":
        return _verify(key, sig, octets, (padding.PSS(padding.MGF1(alg), scheme.salt_length), alg))
    return _verify(key, sig, octets, (padding.PKCS1v15(), alg))
