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
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import verification

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


def _parse(payloads: Sequence[CertPayload]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for p in payloads:
        if p.encoding != CertEncoding.X509_SIGNATURE:
            continue  # RFC 2408 section 3.9: other encodings are not ours to use
        try:
            certs.append(x509.load_der_x509_certificate(p.data))
        except ValueError as e:
            raise CertError(f"certificate does not parse: {e}") from None
    if not certs:
        raise CertError("no X.509 signature certificate")
    return certs


def _is_ca(c: x509.Certificate) -> bool:
    try:
        return bool(c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_peer(
    payloads: Sequence[CertPayload],
    peer_id: IdPayload,
    roots: Sequence[x509.Certificate],
    now: dt.datetime,
) -> x509.Certificate:
    """The peer's end-entity certificate, verified; raises CertError."""
    certs = _parse(payloads)
    leaf = next((c for c in certs if not _is_ca(c)), certs[0])
    others = [c for c in certs if c is not leaf]
    builder = (
        verification.PolicyBuilder()
        .store(verification.Store(list(roots)))
        .time(now)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
    )
    try:
        builder.build_client_verifier().verify(leaf, others)
    except (verification.VerificationError, ValueError) as e:
        raise CertError(f"certificate chain does not verify: {e}") from None
    # The verifier checked the chain's validity periods at ``now``; the leaf again, explicitly.
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CertError("certificate outside its validity period")
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (ku.digital_signature or ku.content_commitment):
            raise CertError("certificate key usage does not allow signatures")
    except x509.ExtensionNotFound:
        pass  # RFC 5280 section 4.2.1.3: without the extension, any use is allowed
    if not isinstance(leaf.public_key(), rsa.RSAPublicKey):
        raise CertError("certificate key is not RSA")
    if not _binds(leaf, peer_id):
        raise CertError("ID payload does not match the certificate")
    return leaf


def _binds(cert: x509.Certificate, p: IdPayload) -> bool:
    """RFC 2407 section 4.6.2 identities against the certificate (RFC 4945 section 3.1 practice)."""
    if p.id_type == IdType.ID_DER_ASN1_DN:
        # Peers re-encode a configured DN (PrintableString for UTF8String...): compare the values.
        if p.data == cert.subject.public_bytes():
            return True
        try:
            return dn_values(p.data) == [(a.oid.dotted_string, str(a.value)) for a in cert.subject]
        except CertError:
            return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if p.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        return ipaddress.ip_address(p.data) in san.get_values_for_type(x509.IPAddress)
    text = p.data.decode("ascii", "replace").lower()
    if p.id_type == IdType.ID_FQDN:
        return text in [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    if p.id_type == IdType.ID_USER_FQDN:
        return text in [n.lower() for n in san.get_values_for_type(x509.RFC822Name)]
    return False


def _der_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One DER TLV at ``pos``: (tag, value, next position); raises CertError when malformed."""
    if pos + 2 > len(data):
        raise CertError("DER: truncated")
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 3 or pos + k > len(data):
            raise CertError("DER: bad length")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise CertError("DER: truncated value")
    return tag, data[pos : pos + n], pos + n


def _oid_text(b: bytes) -> str:
    if not b:
        raise CertError("DER: empty OID")
    parts = [b[0] // 40, b[0] % 40] if b[0] < 80 else [2, b[0] - 80]
    v = 0
    for byte in b[1:]:
        v = (v << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(v)
            v = 0
    return ".".join(map(str, parts))


def dn_values(der: bytes) -> list[tuple[str, str]]:
    """(OID, text) of each attribute of a DER Name (RFC 5280 section 4.1.2.4), string types ignored."""
    tag, body, end = _der_tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise CertError("DN is not one DER SEQUENCE")
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        tag, rdn, pos = _der_tlv(body, pos)
        if tag != 0x31:
            raise CertError("DN: RDN is not a SET")
        rpos = 0
        while rpos < len(rdn):
            tag, atv, rpos = _der_tlv(rdn, rpos)
            otag, oid, vpos = _der_tlv(atv, 0)
            _, value, vend = _der_tlv(atv, vpos)
            if tag != 0x30 or otag != 0x06 or vend != len(atv):
                raise CertError("DN: malformed attribute")
            out.append((_oid_text(oid), value.decode("utf-8", "replace")))
        if len(out) > 64:
            raise CertError("DN: too many attributes")
    return out


def subject_text(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()
