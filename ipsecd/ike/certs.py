"""Certificates for IKE authentication: our credential, the trusted roots, and the peer's chain.

Shared by IKEv1 (RFC 2409 section 5.1, signatures in Main Mode) and IKEv2 (RFC 7296 section 2.15).
Everything here is pure: files are read when asked, the time of validation is injected (``now``),
and the local-account lookup of the certificate mapping is injected too.

Path validation is our own, a subset of RFC 5280 section 6.1 (see ``validate_chain``), rather than
``cryptography.x509.verification``: that API enforces the CA/Browser-Forum web-PKI profile (SHA-1
and small keys refused, a subjectAltName required, extendedKeyUsage must be serverAuth or
clientAuth so ipsecIKE-only certificates fail, unknown extensions policed), which rejects
certificates IPsec deployments commonly use, and its errors do not say which rule failed (our
``CertificateTrustFailed`` event wants a reason). Signatures themselves are checked by the
``cryptography`` package (``verify_directly_issued_by``, ``is_signature_valid``).

Private keys never appear in a repr, an error message or a log line.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from ipsecd.ike import der
from ipsecd.ike.constants import IdType
from ipsecd.log.events import CertificateTrustFailed

E = TypeVar("E", bound=x509.ExtensionType)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# RFC 4945 section 5.1.3.12: id-kp-ipsecIKE
IPSEC_IKE_EKU = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.17")
ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")
ACCEPTED_EKUS = frozenset(
    {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, IPSEC_IKE_EKU, ANY_EKU}
)
MAX_CHAIN_DEPTH = 8  # certificates in a path, the trust anchor included
MAX_CANDIDATES = 64  # issuer candidates tried while building, over the whole search

# Extensions we process or that carry no constraint we must honour; any other critical one fails
# the path (RFC 5280 section 6.1.3 (f) via 4.2: "MUST reject ... unrecognized critical extension").
_KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
)


class CertError(ValueError):
    """A certificate, chain or key file that cannot be used: the message names the file."""


class TrustError(Exception):
    """The peer's certificate did not validate. ``reason`` is short, for CertificateTrustFailed."""

    def __init__(self, reason: str, subject: str = "", issuer: str = "") -> None:
        super().__init__(f"{reason} ({subject})" if subject else reason)
        self.reason = reason
        self.subject = subject
        self.issuer = issuer

    def event(self, peer: ipaddress.IPv4Address | ipaddress.IPv6Address) -> CertificateTrustFailed:
        """The CertificateTrustFailed event (1212) of this failure, for the peer at ``peer``."""
        return CertificateTrustFailed(peer=peer, subject=self.subject, issuer=self.issuer, reason=self.reason)


class IdentityError(Exception):
    """The peer's ID payload does not name the subject of its certificate (RFC 4945 section 3)."""


def dn(cert: x509.Certificate) -> str:
    """The subject as RFC 4514 text, for events and errors."""
    return cert.subject.rfc4514_string()


# ------------------------------------------------------------------------------------- loading


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CertError(f"cannot read {str(path)!r}: {e.strerror}") from None


def load_certificates(path: str | os.PathLike[str]) -> tuple[x509.Certificate, ...]:
    """All certificates of a PEM file (one or more) or a DER file (exactly one)."""
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            certs = tuple(x509.load_pem_x509_certificates(data))
        else:
            certs = (x509.load_der_x509_certificate(data),)
    except ValueError as e:
        raise CertError(f"{str(path)!r} holds no readable X.509 certificate ({e})") from None
    return certs


def load_crl(path: str | os.PathLike[str]) -> x509.CertificateRevocationList:
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise CertError(f"{str(path)!r} holds no readable CRL") from None


def check_key_file_mode(path: str | os.PathLike[str]) -> None:
    """Refuse a private-key file that group or others may read, as the store refuses PSK files."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as e:
        raise CertError(f"cannot read {str(path)!r}: {e.strerror}") from None
    if mode & 0o077:
        raise CertError(
            f"private key file {str(path)!r} is readable by group or others (mode {mode:04o}); "
            f"run: chmod 600 {path}"
        )


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """An unencrypted RSA or ECDSA private key, PEM (PKCS#8, PKCS#1, SEC 1) or DER (PKCS#8)."""
    check_key_file_mode(path)
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise CertError(
            f"private key file {str(path)!r} is encrypted; ipsecd needs an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's message may quote parts of the file: never pass it on.
        raise CertError(f"private key file {str(path)!r} holds no readable private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertError(f"private key file {str(path)!r}: only RSA and ECDSA keys are supported")
    return key


def same_public_key(a: PublicKey, b: object) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    if not isinstance(b, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    return a.public_bytes(serialization.Encoding.DER, fmt) == b.public_bytes(serialization.Encoding.DER, fmt)


@dataclass(frozen=True)
class LocalCredential:
    """Our certificate, the intermediates we send with it (leaf excluded) and our private key."""

    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return f"LocalCredential(subject={dn(self.cert)!r}, chain={len(self.chain)})"

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, then the intermediates: the order of the CERT payloads we send."""
        return (self.cert, *self.chain)


def load_local_credential(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> LocalCredential:
    """Our certificate file (the leaf first, optionally followed by intermediates) and its key."""
    certs = load_certificates(cert_path)
    key = load_private_key(key_path)
    if not same_public_key(key.public_key(), certs[0].public_key()):
        raise CertError(
            f"private key {str(key_path)!r} does not belong to the certificate in {str(cert_path)!r}"
        )
    chain = tuple(c for c in certs[1:] if c.subject != c.issuer)  # a root there is not sent
    return LocalCredential(certs[0], chain, key)


@dataclass(frozen=True)
class TrustAnchors:
    """The trusted roots of one authentication method and the CRLs found next to them."""

    roots: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    source: str = ""

    def __repr__(self) -> str:
        return f"TrustAnchors({self.source!r}, roots={len(self.roots)}, crls={len(self.crls)})"


def crl_files_for(rootca: str | os.PathLike[str]) -> list[Path]:
    """CRLs live next to the root CA file: every ``*.crl`` file (PEM or DER) of its directory."""
    return sorted(Path(rootca).parent.glob("*.crl"))


def load_trust(
    rootca: str | os.PathLike[str], crl_paths: Iterable[str | os.PathLike[str]] | None = None
) -> TrustAnchors:
    """The rule's ``rootca`` file (one or more root certificates) and its CRLs (no network fetching)."""
    roots = load_certificates(rootca)
    paths = crl_files_for(rootca) if crl_paths is None else [Path(p) for p in crl_paths]
    return TrustAnchors(roots, tuple(load_crl(p) for p in paths), str(rootca))


# ----------------------------------------------------------------------------- path validation


def _ext(cert: x509.Certificate, cls: type[E]) -> x509.Extension[E] | None:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    e = _ext(cert, x509.BasicConstraints)
    return e.value if e is not None else None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    e = _ext(cert, x509.KeyUsage)
    return e.value if e is not None else None


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


@dataclass(frozen=True)
class ValidatedChain:
    """A validated path, the peer's certificate first and the trust anchor last."""

    path: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.path[0]

    @property
    def root(self) -> x509.Certificate:
        return self.path[-1]


def validate_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustAnchors,
    now: datetime.datetime,
    strongcrlcheck: int = 0,
) -> ValidatedChain:
    """Build a path from ``leaf`` through ``intermediates`` (received in CERT payloads) to a root.

    RFC 5280 section 6.1, the subset IPsec needs: each signature; validity at ``now`` (the trust
    anchor's too); issuers must be CAs (basicConstraints cA, 6.1.4 (k)); pathLenConstraint
    (6.1.4 (l)/(m)); keyUsage keyCertSign on issuers when present (6.1.4 (n)); no unrecognized
    critical extension; for the end entity keyUsage, when present, digitalSignature or
    nonRepudiation, and extendedKeyUsage, when present, serverAuth, clientAuth, ipsecIKE or
    anyExtendedKeyUsage (RFC 4945 section 5.1.3.12). Name constraints and certificate policies
    are not processed: a certificate marking them critical is refused.

    ``strongcrlcheck`` (the store's [daemon] value): 0 no CRL checking; 1 fail only when a valid
    CRL lists a certificate of the path; 2 also fail when no valid CRL is available for one.

    Several issuer candidates (same name, e.g. a re-keyed CA) are tried, depth-first and bounded;
    when none yields a valid path, the error of the deepest attempt is raised.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not 0 <= strongcrlcheck <= 2:
        raise ValueError("strongcrlcheck is 0, 1 or 2")
    pool = [c for c in intermediates if c != leaf]
    budget = [MAX_CANDIDATES]
    best: list[tuple[int, TrustError]] = []

    def fail(depth: int, err: TrustError) -> None:
        if not best or depth > best[0][0]:
            best[:] = [(depth, err)]

    def finish(path: list[x509.Certificate]) -> tuple[x509.Certificate, ...] | None:
        found = tuple(path)
        try:
            _check_path(found, trust, now, strongcrlcheck)
        except TrustError as e:
            fail(len(found) + 1, e)  # a complete path fails later than any partial one
            return None
        return found

    def extend(path: list[x509.Certificate]) -> tuple[x509.Certificate, ...] | None:
        top = path[-1]
        # The peer's certificate is itself a trust anchor (configured as the rootca).
        if top in trust.roots:
            return finish(path)
        if len(path) >= MAX_CHAIN_DEPTH:
            fail(len(path), TrustError("chain too long", dn(path[0]), top.issuer.rfc4514_string()))
            return None
        anchors = [r for r in trust.roots if r.subject == top.issuer]
        others = [c for c in pool if c.subject == top.issuer and c not in path and c not in trust.roots]
        if not anchors and not others:
            fail(len(path), TrustError("no trusted root", dn(path[0]), top.issuer.rfc4514_string()))
            return None
        for cand in anchors + others:
            budget[0] -= 1
            if budget[0] < 0:
                fail(
                    len(path), TrustError("chain building gave up", dn(path[0]), top.issuer.rfc4514_string())
                )
                return None
            try:
                top.verify_directly_issued_by(cand)
            except InvalidSignature:
                fail(len(path), TrustError("bad signature", dn(top), cand.subject.rfc4514_string()))
                continue
            except (ValueError, TypeError, UnsupportedAlgorithm):
                fail(len(path), TrustError("unsupported signature", dn(top), cand.subject.rfc4514_string()))
                continue
            found = finish([*path, cand]) if cand in anchors else extend([*path, cand])
            if found is not None:
                return found
        return None

    path = extend([leaf])
    if path is None:
        raise best[0][1]
    return ValidatedChain(path)


def _check_path(
    path: tuple[x509.Certificate, ...], trust: TrustAnchors, now: datetime.datetime, strongcrlcheck: int
) -> None:
    """The per-certificate checks of RFC 5280 section 6.1.3/6.1.4 on a complete path (leaf first)."""
    leaf = path[0]
    for i, cert in enumerate(path):
        subject, issuer = dn(cert), cert.issuer.rfc4514_string()
        # RFC 5280 section 6.1.3 (a)(2): the certificate validity period includes the current time.
        if now < cert.not_valid_before_utc:
            raise TrustError("not yet valid", subject, issuer)
        if now > cert.not_valid_after_utc:
            raise TrustError("expired", subject, issuer)
        for ext in cert.extensions:
            if ext.critical and ext.oid not in _KNOWN_EXTENSIONS:
                raise TrustError(f"unsupported critical extension {ext.oid.dotted_string}", subject, issuer)
        anchor = i == len(path) - 1
        if i > 0:
            bc = _basic_constraints(cert)
            if bc is None and not anchor:  # RFC 5280 section 6.1.4 (k)
                raise TrustError("issuer is not a CA (no basicConstraints)", subject, issuer)
            if bc is not None and not bc.ca:
                raise TrustError("issuer is not a CA (basicConstraints cA false)", subject, issuer)
            ku = _key_usage(cert)
            if ku is not None and not ku.key_cert_sign:  # RFC 5280 section 6.1.4 (n)
                raise TrustError("issuer key usage lacks keyCertSign", subject, issuer)
            if bc is not None and bc.path_length is not None:
                # Non-self-issued intermediates below this CA (the leaf does not count).
                below = sum(1 for c in path[1:i] if not _self_issued(c))
                if below > bc.path_length:
                    raise TrustError("path length constraint exceeded", subject, issuer)
    _check_end_entity(leaf)
    if strongcrlcheck:
        for i in range(len(path) - 1):
            _check_revocation(path[i], path[i + 1], trust, now, strongcrlcheck)


def _check_end_entity(leaf: x509.Certificate) -> None:
    subject, issuer = dn(leaf), leaf.issuer.rfc4514_string()
    ku = _key_usage(leaf)
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        raise TrustError("key usage lacks digitalSignature", subject, issuer)
    e = _ext(leaf, x509.ExtendedKeyUsage)
    if e is not None and not ACCEPTED_EKUS.intersection(e.value):
        raise TrustError("extended key usage allows no IKE use", subject, issuer)


def _check_revocation(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    trust: TrustAnchors,
    now: datetime.datetime,
    strongcrlcheck: int,
) -> None:
    """RFC 5280 section 6.3, simplified: a complete CRL signed by the certificate's issuer, current at ``now``."""
    subject = dn(cert)
    issuer_dn = issuer.subject.rfc4514_string()
    usable = []
    for crl in trust.crls:
        if crl.issuer != issuer.subject:
            continue
        ku = _key_usage(issuer)
        if ku is not None and not ku.crl_sign:
            continue
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            continue
        nxt = crl.next_update_utc
        if crl.last_update_utc > now or (nxt is not None and now > nxt):
            continue
        usable.append(crl)
    for crl in usable:
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise TrustError("revoked", subject, issuer_dn)
    if not usable and strongcrlcheck == 2:
        raise TrustError("no valid CRL available", subject, issuer_dn)


# ----------------------------------------------------------------------------------- identity


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    e = _ext(cert, x509.SubjectAlternativeName)
    return e.value if e is not None else None


def check_identity(cert: x509.Certificate, id_type: int, id_data: bytes) -> str:
    """Check the peer's ID payload (type and data, RFC 2407 section 4.6.2 / RFC 7296 section 3.5)
    against its certificate, RFC 4945 section 3.1 and 3.2; returns the identity as text.

    ID_IPV4_ADDR/ID_IPV6_ADDR must equal a subjectAltName iPAddress, ID_FQDN a dNSName (case
    insensitive), ID_USER_FQDN (IKEv2: ID_RFC822_ADDR) an rfc822Name, ID_DER_ASN1_DN the subject
    DN (compared as X.509 names). The subject's CN is never used for FQDN matching.
    """
    sans = _sans(cert)
    try:
        t = IdType(id_type)
    except ValueError:
        raise IdentityError(f"ID type {id_type} cannot be matched to a certificate") from None
    if t in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        size = 4 if t is IdType.ID_IPV4_ADDR else 16
        if len(id_data) != size:
            raise IdentityError(f"{t.name} of {len(id_data)} bytes")
        addr = ipaddress.ip_address(id_data)
        if sans is None or addr not in sans.get_values_for_type(x509.IPAddress):
            raise IdentityError(f"{addr} is not an iPAddress subjectAltName of {dn(cert)}")
        return str(addr)
    if t in (IdType.ID_FQDN, IdType.ID_USER_FQDN):
        try:
            text = id_data.decode("ascii")
        except UnicodeDecodeError:
            raise IdentityError(f"{t.name} is not ASCII") from None
        kind: type[x509.DNSName] | type[x509.RFC822Name] = (
            x509.DNSName if t is IdType.ID_FQDN else x509.RFC822Name
        )
        names = [n.lower() for n in sans.get_values_for_type(kind)] if sans is not None else []
        if text.lower().rstrip(".") not in [n.rstrip(".") for n in names]:
            what = "dNSName" if t is IdType.ID_FQDN else "rfc822Name"
            raise IdentityError(f"{text!r} is not a {what} subjectAltName of {dn(cert)}")
        return text
    if t is IdType.ID_DER_ASN1_DN:
        # Compared as DER octets against the subject exactly as the certificate encodes it (peers
        # copy it from their certificate); a re-encoding of the parsed name is accepted too.
        subject = der.certificate_subject(cert.public_bytes(serialization.Encoding.DER))
        if id_data not in (subject, cert.subject.public_bytes()) and not _same_dn_values(id_data, subject):
            raise IdentityError(f"ID_DER_ASN1_DN {id_data.hex()[:64]} is not the subject {dn(cert)!r}")
        return dn(cert)
    raise IdentityError(f"ID type {t.name} cannot be matched to a certificate")


def _same_dn_values(a: bytes, b: bytes) -> bool:
    try:
        return der.name_values(a) == der.name_values(b)
    except der.DerError:
        return False


def own_identity(cred: LocalCredential) -> tuple[IdType, bytes]:
    """The ID payload we send with a certificate: the subject DN (ID_DER_ASN1_DN), which every
    certificate has and which needs no subjectAltName (RFC 4945 section 3.2.1)."""
    return IdType.ID_DER_ASN1_DN, cred.cert.subject.public_bytes()


# --------------------------------------------------------------------------- account mapping


def map_to_account(cert: x509.Certificate, user_exists: Callable[[str], bool]) -> str:
    """Certificate-to-account mapping (the rule's ``certmap``): the subject's CN must name an
    existing local account. Windows maps through Active Directory; on Linux we look the CN up
    with ``user_exists`` (the daemon passes a ``pwd.getpwnam`` check). Raises IdentityError."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        raise IdentityError(f"certificate mapping needs exactly one CN in {dn(cert)!r}")
    cn = cns[0].value
    if isinstance(cn, bytes):
        cn = cn.decode("utf-8", "replace")
    if not cn or "/" in cn or cn.startswith((".", "-")) or not user_exists(cn):
        raise IdentityError(f"certificate mapping: no local account {cn!r} for {dn(cert)!r}")
    return cn


def local_user_exists(name: str) -> bool:
    """The Linux lookup for ``map_to_account`` (the passwd database, through NSS)."""
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# ---------------------------------------------------------------------------------- CERTREQ


def spki_sha1(cert: x509.Certificate) -> bytes:
    """SHA-1 of the DER SubjectPublicKeyInfo: one entry of an IKEv2 CERTREQ, RFC 7296 section 3.7."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha1(spki).digest()  # the protocol's hash, not a security choice


def ikev2_certreq_data(trust: TrustAnchors) -> bytes:
    """The Certification Authority field of our IKEv2 CERTREQ: concatenated SPKI SHA-1 hashes."""
    return b"".join(spki_sha1(r) for r in trust.roots)


def parse_ikev2_certreq(data: bytes) -> list[bytes]:
    """Split a received Certification Authority field into 20-byte hashes; ValueError if ragged."""
    if len(data) % 20:
        raise ValueError(f"CERTREQ authority field of {len(data)} bytes is not a multiple of 20")
    return [data[i : i + 20] for i in range(0, len(data), 20)]


def ikev1_certreq_data(root: x509.Certificate) -> bytes:
    """IKEv1 CERT_REQUEST authority for X.509 (RFC 2408 section 3.10): the CA's DER subject DN."""
    return root.subject.public_bytes()


def certs_for_certreq(
    cred: LocalCredential,
    ikev2_hashes: Sequence[bytes] = (),
    ikev1_dns: Sequence[bytes] = (),
    issuers: Sequence[x509.Certificate] = (),
) -> tuple[x509.Certificate, ...] | None:
    """The certificates to send for a peer's CERTREQs, or None when our chain matches none.

    A request matches when it names (IKEv2: by SPKI hash, IKEv1: by DN) a CA of our chain or the
    issuer of its top certificate. The root is usually not in our chain file: an IKEv2 hash names
    a key, so pass the CA certificates we know (``issuers``, e.g. our rule's roots) to match it;
    one counts when it really issued the top of our chain. An empty request (no authority)
    matches anything. Our certificates are sent up to the requested CA.
    """
    hashes = set(ikev2_hashes)
    names = set(ikev1_dns)
    if not hashes and not names:
        return cred.certificates
    certs = cred.certificates
    for i, c in enumerate(certs):
        if i > 0 and (spki_sha1(c) in hashes or c.subject.public_bytes() in names):
            return certs[:i]
        if c.issuer.public_bytes() in names:
            return certs[: i + 1]
    top = certs[-1]
    for ca in issuers:
        if spki_sha1(ca) not in hashes or ca.subject != top.issuer:
            continue
        try:
            top.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            continue
        return certs
    return None


# ------------------------------------------------------------------------- the whole peer check


@dataclass(frozen=True)
class PeerCertificate:
    """A peer authenticated by certificate: its validated path, identity and mapped account."""

    chain: ValidatedChain
    identity: str
    account: str | None = None

    @property
    def public_key(self) -> PublicKey:
        key = self.chain.leaf.public_key()
        assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)  # checked by verify_peer
        return key


def parse_cert_payloads(ders: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """Certificates of received CERT payloads (encoding 4, X.509 Certificate - Signature: DER)."""
    out = []
    for data in ders[: MAX_CHAIN_DEPTH * 2]:
        try:
            out.append(x509.load_der_x509_certificate(data))
        except ValueError:
            raise TrustError("malformed certificate") from None
    return tuple(out)


def verify_peer(
    cert_ders: Sequence[bytes],
    trust: TrustAnchors,
    now: datetime.datetime,
    id_type: int,
    id_data: bytes,
    *,
    strongcrlcheck: int = 0,
    certmap: bool = False,
    user_exists: Callable[[str], bool] | None = None,
) -> PeerCertificate:
    """What the exchanges do with the peer's CERT payloads and ID before checking its signature.

    The end-entity certificate is the first one that is not a CA and matches the ID (RFC 7296
    section 3.6 puts it first; IKEv1 fixes no order); the others serve as intermediates. Raises
    TrustError (for the CertificateTrustFailed event) or IdentityError (AuthenticationFailed).
    The caller then verifies SIG/AUTH with ``PeerCertificate.public_key``.
    """
    received = parse_cert_payloads(cert_ders)
    if not received:
        raise TrustError("no certificate received")
    leaf = received[0]
    for c in received:
        bc = _basic_constraints(c)
        if bc is not None and bc.ca:
            continue
        try:
            check_identity(c, id_type, id_data)
        except IdentityError:
            continue
        leaf = c
        break
    if not isinstance(leaf.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise TrustError("unsupported public key type", dn(leaf), leaf.issuer.rfc4514_string())
    chain = validate_chain(leaf, [c for c in received if c is not leaf], trust, now, strongcrlcheck)
    identity = check_identity(leaf, id_type, id_data)
    account = None
    if certmap:
        if user_exists is None:
            raise ValueError("certmap needs a user_exists lookup")
        account = map_to_account(leaf, user_exists)
    return PeerCertificate(chain, identity, account)
