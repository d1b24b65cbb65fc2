"""A small test PKI built with ``cryptography``: a root CA and RSA end-entity certificates (shared by
the certificate unit tests and the strongSwan interop test)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipsecd test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    del label  # one key per label, generated once per test run
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def root(cn: str = "Test Root", *, now: dt.datetime | None = None) -> Issued:
    t = NOW if now is None else now
    key = rsa_key("root:" + cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(t - dt.timedelta(days=1))
        .not_valid_after(t + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def leaf(
    ca: Issued,
    cn: str,
    *,
    ip: str | None = None,
    serial: int = 2,
    days: tuple[int, int] = (-1, 30),
    signature_usage: bool = True,
) -> Issued:
    key = rsa_key("leaf:" + cn)
    b = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(
            x509.KeyUsage(
                signature_usage, False, not signature_usage, False, False, False, False, False, False
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if ip is not None:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return Issued(b.sign(ca.key, hashes.SHA256()), key)
