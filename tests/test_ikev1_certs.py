"""Main Mode with RSA signatures and X.509 certificates between two in-memory sessions, and the
certificate checks: chain to the trusted root, validity, key usage, ID binding, signature."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from ikev1_pki import NOW, leaf, root
from ikev1_session_util import A_IP, B_IP, pair, policy_a

from ipsecd.ike.constants import AuthMethod, CertEncoding, IdType, NotifyType
from ipsecd.ikev1.certs import (
    CertCredentials,
    CertError,
    dn_values,
    rsa_sign_raw,
    rsa_verify_raw,
    verify_peer,
)
from ipsecd.ikev1.events import ChildSaEstablished, IkeSaEstablished, NegotiationFailed
from ipsecd.ikev1.payloads import CertPayload, IdPayload


def creds(issued: object, roots: tuple[object, ...], when: dt.datetime = NOW) -> CertCredentials:
    return CertCredentials(issued.cert, issued.key, tuple(r.cert for r in roots), lambda: when)  # type: ignore[attr-defined]


def _der(c: object) -> CertPayload:
    from cryptography.hazmat.primitives import serialization

    return CertPayload(CertEncoding.X509_SIGNATURE, c.cert.public_bytes(serialization.Encoding.DER))  # type: ignore[attr-defined]


def test_certificate_main_mode_then_quick_mode() -> None:
    ca = root()
    a_cert, b_cert = leaf(ca, "alice", serial=10), leaf(ca, "bob", serial=11)
    w = pair(a_cert=creds(a_cert, (ca,)), b_cert=creds(b_cert, (ca,)), psk=b"")
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    ia, ib = w.of("a", IkeSaEstablished), w.of("b", IkeSaEstablished)
    assert len(ia) == 1 and len(ib) == 1
    assert w.of("a", ChildSaEstablished) and w.of("b", ChildSaEstablished)
    sa_a, sa_b = w.a.ike_sas[0], w.b.ike_sas[0]
    assert sa_a.params.auth_method == AuthMethod.RSA_SIGNATURES
    assert (
        sa_a.peer_cert_subject == "CN=bob,O=ipsecd test"
        and sa_b.peer_cert_subject == "CN=alice,O=ipsecd test"
    )
    assert sa_a.peer_id.id_type == IdType.ID_DER_ASN1_DN


@pytest.mark.parametrize("problem", ["untrusted", "expired", "no-signature-usage", "wrong-key"])
def test_bad_certificate_fails_authentication(problem: str) -> None:
    ca, other = root(), root("Other Root")
    b_cert = leaf(ca, "bob", serial=11)
    a_roots = (ca,)
    if problem == "untrusted":
        b_cert = leaf(other, "bob-other", serial=12)
    elif problem == "expired":
        b_cert = leaf(ca, "bob-old", serial=13, days=(-60, -30))
    elif problem == "no-signature-usage":
        b_cert = leaf(ca, "bob-enc", serial=14, signature_usage=False)
    b_creds = creds(b_cert, (ca, other))
    if problem == "wrong-key":
        # b presents bob's certificate but signs with another key.
        mallory = leaf(ca, "mallory", serial=15)
        b_creds = CertCredentials(mallory.cert, mallory.key, (ca.cert,), lambda: NOW)
        object.__setattr__(b_creds, "certificate", b_cert.cert)
    w = pair(a_cert=creds(leaf(ca, "alice", serial=10), a_roots), b_cert=b_creds, psk=b"")
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    assert not w.a.ike_sas
    fails = [e for e in w.of("a", NegotiationFailed) if isinstance(e, NegotiationFailed)]
    want = NotifyType.INVALID_SIGNATURE if problem == "wrong-key" else NotifyType.INVALID_CERTIFICATE
    assert [f.notify for f in fails] == [want]
    assert w.a.counters.negotiation_failures == 1


def test_verify_peer_id_binding_and_time() -> None:
    ca = root()
    bob = leaf(ca, "bob", ip="198.51.100.2", serial=20)
    dn = IdPayload(IdType.ID_DER_ASN1_DN, 0, 0, bob.cert.subject.public_bytes())
    assert verify_peer([_der(bob)], dn, [ca.cert], NOW) == bob.cert
    assert verify_peer([_der(bob)], IdPayload.for_address(B_IP), [ca.cert], NOW) == bob.cert
    with pytest.raises(CertError, match="ID payload"):
        verify_peer([_der(bob)], IdPayload.for_address(A_IP), [ca.cert], NOW)
    with pytest.raises(CertError, match="ID payload"):
        verify_peer([_der(bob)], IdPayload(IdType.ID_FQDN, 0, 0, b"bob.example"), [ca.cert], NOW)
    with pytest.raises(CertError):
        verify_peer([_der(bob)], dn, [ca.cert], NOW + dt.timedelta(days=400))
    with pytest.raises(CertError, match="does not verify: malformed certificate"):
        verify_peer([CertPayload(CertEncoding.X509_SIGNATURE, b"\x30\x03junk")], dn, [ca.cert], NOW)
    with pytest.raises(CertError, match=r"no X\.509"):
        verify_peer([CertPayload(CertEncoding.PGP, b"x")], dn, [ca.cert], NOW)
    assert ipaddress.ip_address("198.51.100.2") == B_IP


def test_raw_pkcs1_signature_round_trip() -> None:
    key = leaf(root(), "signer", serial=30).key
    data = bytes(range(20))
    sig = rsa_sign_raw(key, data)
    assert len(sig) == 256 and rsa_verify_raw(key.public_key(), sig, data)
    assert not rsa_verify_raw(key.public_key(), sig, data[:-1] + b"\x00")
    assert not rsa_verify_raw(key.public_key(), sig[:-1] + bytes([sig[-1] ^ 1]), data)
    with pytest.raises(CertError):
        rsa_sign_raw(key, bytes(250))


def test_credentials_refuse_a_key_that_is_not_the_certificates() -> None:
    ca = root()
    with pytest.raises(ValueError, match="does not belong"):
        CertCredentials(leaf(ca, "x", serial=40).cert, leaf(ca, "y", serial=41).key, (ca.cert,), lambda: NOW)
    assert "key=" not in repr(creds(leaf(ca, "x", serial=40), (ca,)))


def _tlv(tag: int, value: bytes) -> bytes:
    assert len(value) < 128
    return bytes([tag, len(value)]) + value


def test_dn_id_matches_whatever_string_type_the_peer_encodes() -> None:
    """strongSwan sends a configured DN with PrintableString where the certificate has UTF8String."""
    ca = root()
    bob = leaf(ca, "bob", serial=50)
    o = _tlv(0x30, _tlv(0x06, bytes([0x55, 0x04, 0x0A])) + _tlv(0x13, b"ipsecd test"))
    cn = _tlv(0x30, _tlv(0x06, bytes([0x55, 0x04, 0x03])) + _tlv(0x13, b"bob"))
    der = _tlv(0x30, _tlv(0x31, o) + _tlv(0x31, cn))
    assert der != bob.cert.subject.public_bytes()
    assert dn_values(der) == [("2.5.4.10", "ipsecd test"), ("2.5.4.3", "bob")]
    assert verify_peer([_der(bob)], IdPayload(IdType.ID_DER_ASN1_DN, 0, 0, der), [ca.cert], NOW) == bob.cert
    wrong = _tlv(0x30, _tlv(0x31, o) + _tlv(0x31, cn.replace(b"bob", b"eve")))
    with pytest.raises(CertError, match="ID payload"):
        verify_peer([_der(bob)], IdPayload(IdType.ID_DER_ASN1_DN, 0, 0, wrong), [ca.cert], NOW)
    for bad in (b"", b"\x30", b"\x30\x05\x31\x00", der[:-1], b"\x31\x00"):
        with pytest.raises(CertError):
            dn_values(bad)
