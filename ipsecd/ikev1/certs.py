"""X.509 certificates and RSA signatures for Main Mode (RFC 2409 section 5.1, RFC 2408 sections
3.9-3.10 and 3.12, identities per RFC 2407 section 4.6.2).

The signature of IKEv1 with RSA is PKCS#1 v1.5 type 1 padding of the bare HASH_I / HASH_R, without
the DigestInfo of RFC 8017 section 9.2 (the hash is the negotiated PRF's output, not a digest of a
message): signing is the RSA private operation on that block, verification recovers the block and
compares. A peer certificate must chain to a configured trusted root (``cryptography``'s X.509
verification at an injected time), be within its validity, allow digital signatures (key usage) and
bind the peer's ID payload (subject DN, or an IP / DNS / e-mail subjectAltName).
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ipsecd.ike import certs as ike_certs
from ipsecd.ike import der
from ipsecd.ike.constants import CertEncoding, IdType
from ipsecd.ike.signatures import SignatureError, rsa_pkcs1_raw_sign
from ipsecd.ikev1.payloads import CertPayload, CertReqPayload, IdPayload


class CertError(ValueError):
    """A certificate or signature that does not authenticate the peer (never contains key material)."""


@dataclass(frozen=True)
class CertCredentials:
    """Our certificate, its key and the roots we trust; ``clock`` gives the wall-clock time (UTC) at
    which certificates are checked (injected: pure code reads no clock)."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey = field(repr=False)
    trusted_roots: tuple[x509.Certificate, ...]
    clock: Callable[[], dt.datetime]
    intermediates: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.key, rsa.RSAPrivateKey):
            raise ValueError("only RSA keys are supported for IKEv1 signatures")
        if self.key.public_key().public_numbers() != self.certificate.public_key().public_numbers():  # type: ignore[union-attr]
            raise ValueError("the private key does not belong to the certificate")
        if not self.trusted_roots:
            raise ValueError("no trusted root certificate")

    def id_payload(self) -> IdPayload:
        """RFC 2407 section 4.6.2.9: ID_DER_ASN1_DN, the DER of our subject."""
        return IdPayload(IdType.ID_DER_ASN1_DN, 0, 0, self.certificate.subject.public_bytes())

    def cert_payloads(self) -> tuple[CertPayload, ...]:
        der = serialization.Encoding.DER
        chain = (self.certificate, *self.intermediates)
        return tuple(CertPayload(CertEncoding.X509_SIGNATURE, c.public_bytes(der)) for c in chain)

    def cert_requests(self) -> tuple[CertReqPayload, ...]:
        """RFC 2408 section 3.10: one request per trusted root, naming it by its subject DN."""
        return tuple(
            CertReqPayload(CertEncoding.X509_SIGNATURE, r.subject.public_bytes()) for r in self.trusted_roots
        )

    def sign(self, data: bytes) -> bytes:
        return rsa_sign_raw(self.key, data)


def rsa_sign_raw(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """EMSA-PKCS1-v1_5 without the DigestInfo of RFC 8017 section 9.2 step 2: see
    ipsecd.ike.signatures.rsa_pkcs1_raw_sign (libcrypto when the native extension is built)."""
    try:
        return rsa_pkcs1_raw_sign(key, data)
    except SignatureError as exc:
        raise CertError(str(exc)) from None


def rsa_verify_raw(key: rsa.RSAPublicKey, signature: bytes, data: bytes) -> bool:
    try:
        got = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return False
    return hmac.compare_digest(got, data)


def verify_peer(
    payloads: Sequence[CertPayload],
    peer_id: IdPayload,
    roots: Sequence[x509.Certificate],
    now: dt.datetime,
) -> x509.Certificate:
    """The peer's end-entity certificate, verified; raises CertError.

    Path validation, validity, key usage and the ID binding are ipsecd.ike.certs' (one RFC 5280
    subset for IKEv1 and IKEv2); IKEv1 Main Mode signatures here are RSA only.
    """
    ders = [p.data for p in payloads if p.encoding == CertEncoding.X509_SIGNATURE]
    if not ders:
        raise CertError("no X.509 signature certificate")
    try:
        got = ike_certs.verify_peer(
            ders, ike_certs.TrustAnchors(tuple(roots)), now, int(peer_id.id_type), peer_id.data
        )
    except ike_certs.IdentityError as e:
        raise CertError(f"ID payload does not match the certificate: {e}") from None
    except ike_certs.TrustError as e:
        raise CertError(f"certificate chain does not verify: {e}") from None
    leaf = got.chain.leaf
    if not isinstance(leaf.public_key(), rsa.RSAPublicKey):
        raise CertError("certificate key is not RSA")
    return leaf


def dn_values(name_der: bytes) -> list[tuple[str, str]]:
    """(OID, text) of each attribute of a DER Name; raises CertError when malformed."""
    try:
        return der.name_values(name_der)
    except der.DerError as e:
        raise CertError(f"DN: {e}") from None


def subject_text(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()
