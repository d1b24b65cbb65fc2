"""Certificate authentication for IKE_AUTH: RFC 7427 digital signatures (AUTH method 14; methods 1
and 9-11 with a peer that does not announce RFC 7427), the X.509
CERT and CERTREQ payload contents (RFC 7296 sections 3.6, 3.7) and identity checks.

AUTH data of method 14 (RFC 7427 section 3):

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | ASN.1 Length  | AlgorithmIdentifier ASN.1 object                |
    +-+-+-+-+-+-+-+-+                                                 ~
    ~                       Signature Value                           ~
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Signed: the InitiatorSignedOctets / ResponderSignedOctets of RFC 7296 section 2.15. RSA keys sign
with PKCS#1 v1.5, ECDSA keys with a DER ECDSA-Sig-Value; SHA-256/384/512. The peer's certificate
must be issued directly by one of the trusted CAs (no intermediate chains), be valid at the given
wall-clock time, and name the peer's identity (subject DN, or a subjectAltName IP/DNS/e-mail).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ipsecd.ikev2.constants import AuthMethod, IdType
from ipsecd.ikev2.payloads import Identity

# RFC 7427 Appendix A: OIDs (content octets) of the signature algorithms.
_OIDS: dict[bytes, tuple[str, str]] = {
    bytes.fromhex("2a864886f70d01010b"): ("rsa", "sha256"),
    bytes.fromhex("2a864886f70d01010c"): ("rsa", "sha384"),
    bytes.fromhex("2a864886f70d01010d"): ("rsa", "sha512"),
    bytes.fromhex("2a8648ce3d040302"): ("ecdsa", "sha256"),
    bytes.fromhex("2a8648ce3d040303"): ("ecdsa", "sha384"),
    bytes.fromhex("2a8648ce3d040304"): ("ecdsa", "sha512"),
}
# RFC 4754 section 7: the AUTH method fixes curve and hash; r and s are each field-sized.
_ECDSA_CLASSIC: dict[str, tuple[int, hashes.HashAlgorithm, int]] = {
    "secp256r1": (AuthMethod.ECDSA_SHA256_P256, hashes.SHA256(), 32),
    "secp384r1": (AuthMethod.ECDSA_SHA384_P384, hashes.SHA384(), 48),
    "secp521r1": (AuthMethod.ECDSA_SHA512_P521, hashes.SHA512(), 66),
}
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class CertError(ValueError):
    """A certificate or signature that does not verify (the message never holds key material)."""


def _algorithm_identifier(scheme: str, hash_name: str) -> bytes:
    oid = next(o for o, v in _OIDS.items() if v == (scheme, hash_name))
    body = bytes([0x06, len(oid)]) + oid + (b"\x05\x00" if scheme == "rsa" else b"")
    return bytes([0x30, len(body)]) + body


def _parse_algorithm_identifier(der: bytes) -> tuple[str, str]:
    # SEQUENCE { OBJECT IDENTIFIER, [parameters] }: short-form lengths only (all of these are short).
    if len(der) < 4 or der[0] != 0x30 or der[1] != len(der) - 2 or der[2] != 0x06:
        raise CertError("malformed AlgorithmIdentifier")
    oid = der[4 : 4 + der[3]]
    rest = der[4 + der[3] :]
    if len(oid) != der[3] or rest not in (b"", b"\x05\x00") or oid not in _OIDS:
        raise CertError("unsupported signature algorithm")
    return _OIDS[oid]


@dataclass(frozen=True)
class Credentials:
    """Our certificate (DER) with its private key, and the CAs we trust for the peer."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    cert: bytes = field(repr=False)
    trusted: tuple[bytes, ...] = field(repr=False)
    hash_name: str = "sha256"

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes, ca_pems: tuple[bytes, ...]) -> Credentials:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CertError("only RSA and ECDSA keys are supported")
        cert = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
        cas = tuple(
            x509.load_pem_x509_certificate(p).public_bytes(serialization.Encoding.DER) for p in ca_pems
        )
        return cls(key, cert, cas)

    def identity_dn(self) -> Identity:
        """ID_DER_ASN1_DN of our certificate's subject."""
        return Identity(
            IdType.ID_DER_ASN1_DN, x509.load_der_x509_certificate(self.cert).subject.public_bytes()
        )

    def certreq(self) -> bytes:
        """CERTREQ data: the SHA-1 hashes of the trusted CAs' SubjectPublicKeyInfo (section 3.7)."""
        out = b""
        for der in self.trusted:
            spki = (
                x509.load_der_x509_certificate(der)
                .public_key()
                .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            )
            out += hashlib.sha1(spki).digest()
        return out

    def sign_classic(self, octets: bytes) -> tuple[int, bytes]:
        """(AUTH method, data) without RFC 7427, for a peer that did not announce
        SIGNATURE_HASH_ALGORITHMS: RSA_DIGITAL_SIGNATURE (RFC 7296 section 3.8: PKCS#1 v1.5 with
        SHA-1) or ECDSA_SHA256_P256 / 384_P384 / 512_P521 (RFC 4754: r | s, each field-sized)."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            return AuthMethod.RSA_DIGITAL_SIGNATURE, self.key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
        method, h, size = _ECDSA_CLASSIC[self.key.curve.name]
        r, s_ = decode_dss_signature(self.key.sign(octets, ec.ECDSA(h)))
        return method, r.to_bytes(size, "big") + s_.to_bytes(size, "big")

    def sign(self, octets: bytes) -> bytes:
        """AUTH data of method 14 over ``octets``."""
        h = _HASHES[self.hash_name]
        if isinstance(self.key, rsa.RSAPrivateKey):
            alg = _algorithm_identifier("rsa", self.hash_name)
            sig = self.key.sign(octets, padding.PKCS1v15(), h)
        else:
            alg = _algorithm_identifier("ecdsa", self.hash_name)
            sig = self.key.sign(octets, ec.ECDSA(h))
        return bytes([len(alg)]) + alg + sig


def verify_certificate(
    cert_der: bytes, trusted: tuple[bytes, ...], when: datetime.datetime
) -> x509.Certificate:
    """The peer's end-entity certificate, if a trusted CA issued it and it is valid ``when``."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as e:
        raise CertError("undecodable certificate") from e
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise CertError("certificate not valid now")
    for ca_der in trusted:
        ca = x509.load_der_x509_certificate(ca_der)
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return cert
    raise CertError("certificate not issued by a trusted CA")


def identity_matches(cert: x509.Certificate, ident: Identity) -> bool:
    """The ID payload names this certificate (RFC 7296 section 3.5 / RFC 4945 section 3.1)."""
    if ident.id_type == IdType.ID_DER_ASN1_DN:
        return cert.subject.public_bytes() == ident.data
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if ident.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        return ipaddress.ip_address(ident.data) in san.get_values_for_type(x509.IPAddress)
    text = ident.data.decode("ascii", "replace").lower()
    if ident.id_type == IdType.ID_FQDN:
        return text in [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    if ident.id_type == IdType.ID_RFC822_ADDR:
        return text in [n.lower() for n in san.get_values_for_type(x509.RFC822Name)]
    return False


def verify_classic(cert: x509.Certificate, method: int, auth_data: bytes, octets: bytes) -> None:
    """Checks AUTH data of method 1 (RSA, SHA-1) or 9-11 (RFC 4754 ECDSA); raises CertError."""
    pub = cert.public_key()
    try:
        if method == AuthMethod.RSA_DIGITAL_SIGNATURE and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(auth_data, octets, padding.PKCS1v15(), hashes.SHA1())
            return
        if isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name in _ECDSA_CLASSIC:
            want, h, size = _ECDSA_CLASSIC[pub.curve.name]
            if method == want and len(auth_data) == 2 * size:
                r, s_ = int.from_bytes(auth_data[:size], "big"), int.from_bytes(auth_data[size:], "big")
                pub.verify(encode_dss_signature(r, s_), octets, ec.ECDSA(h))
                return
    except InvalidSignature:
        raise CertError("signature does not verify") from None
    raise CertError(f"AUTH method {method} does not fit the certificate's key")


def verify_signature(cert: x509.Certificate, auth_data: bytes, octets: bytes) -> None:
    """Checks AUTH data of method 14; raises CertError."""
    if not auth_data or len(auth_data) < 1 + auth_data[0]:
        raise CertError("truncated signature AUTH data")
    scheme, hash_name = _parse_algorithm_identifier(auth_data[1 : 1 + auth_data[0]])
    sig = auth_data[1 + auth_data[0] :]
    pub = cert.public_key()
    h = _HASHES[hash_name]
    try:
        if scheme == "rsa" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(sig, octets, padding.PKCS1v15(), h)
        elif scheme == "ecdsa" and isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, octets, ec.ECDSA(h))
        else:
            raise CertError("signature algorithm does not fit the certificate's key")
    except InvalidSignature:
        raise CertError("signature does not verify") from None
