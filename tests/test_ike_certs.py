"""ipsecd.ike.certs: loading, RFC 5280 path validation, CRLs, identities, certmap, CERTREQ."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ipsecd.ike import certs, der
from ipsecd.ike.certs import CertError, IdentityError, TrustAnchors, TrustError, validate_chain
from ipsecd.ike.constants import IdType
from tests.cert_helpers import DAY, MK, NOW, openssl


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pki")
    paths = MK.build_pki(out, NOW)
    loaded: dict[str, Any] = {"dir": out}
    for stem, p in paths.items():
        loaded[stem] = certs.load_certificates(p)[0]
        loaded[stem + ".key"] = certs.load_private_key(out / f"{stem}.key")
    return loaded


def anchors(pki: dict[str, Any], crls: bool = False) -> TrustAnchors:
    rootca = pki["dir"] / "ca.pem"
    return certs.load_trust(rootca) if crls else certs.load_trust(rootca, crl_paths=[])


def issuer(pki: dict[str, Any], stem: str) -> tuple[x509.Certificate, Any]:
    return pki[stem], pki[stem + ".key"]


def host(pki: dict[str, Any], **kw: Any) -> x509.Certificate:
    """A P-256 host certificate from the intermediate, overridable."""
    args: dict[str, Any] = {
        "serial": 0x2000,
        "not_before": NOW - DAY,
        "not_after": NOW + DAY,
        "san_ips": ["192.0.2.7"],
        "san_dns": ["host.test"],
    }
    args.update(kw)
    iss = args.pop("issuer", issuer(pki, "int"))
    return MK.make_cert(MK.name(args.pop("cn", "host.test")), MK.make_key("p256"), iss, **args)


def reason(exc: pytest.ExceptionInfo[TrustError]) -> str:
    return exc.value.reason


# ------------------------------------------------------------------------------------- chains


@pytest.mark.parametrize("stem", ["ipsecd-rsa", "ipsecd-ecdsa", "strongswan-rsa", "strongswan-ecdsa"])
def test_good_chain_through_the_intermediate(pki: dict[str, Any], stem: str) -> None:
    chain = validate_chain(pki[stem], [pki["int"]], anchors(pki), NOW)
    assert chain.path == (pki[stem], pki["int"], pki["ca"])
    assert chain.leaf is pki[stem] and chain.root == pki["ca"]


def test_good_chain_agrees_with_openssl(pki: dict[str, Any]) -> None:
    d: Path = pki["dir"]
    out = openssl("verify", "-attime", str(int(NOW.timestamp())), "-CAfile", str(d / "ca.pem"),
                  "-untrusted", str(d / "int.pem"), str(d / "ipsecd-rsa.pem"))  # fmt: skip
    assert out.strip().endswith(b": OK")


def test_extra_unrelated_intermediates_are_ignored(pki: dict[str, Any]) -> None:
    chain = validate_chain(pki["ipsecd-rsa"], [pki["ipsecd-ecdsa"], pki["int"], pki["ca"]], anchors(pki), NOW)
    assert len(chain.path) == 3


def test_expired_and_not_yet_valid(pki: dict[str, Any]) -> None:
    cert = pki["ipsecd-rsa"]
    with pytest.raises(TrustError) as e:
        validate_chain(
            cert, [pki["int"]], anchors(pki), cert.not_valid_after_utc + datetime.timedelta(seconds=1)
        )
    assert reason(e) == "expired"
    with pytest.raises(TrustError) as e:
        validate_chain(
            cert, [pki["int"]], anchors(pki), cert.not_valid_before_utc - datetime.timedelta(seconds=1)
        )
    assert reason(e) == "not yet valid"
    # Exactly at the bounds it is valid (RFC 5280 section 4.1.2.5: the period is inclusive).
    validate_chain(cert, [pki["int"]], anchors(pki), cert.not_valid_before_utc)
    validate_chain(cert, [pki["int"]], anchors(pki), cert.not_valid_after_utc)


def test_expired_intermediate(pki: dict[str, Any]) -> None:
    inter = MK.make_cert(MK.name("old intermediate"), pki["int.key"], issuer(pki, "ca"), serial=77,
                         not_before=NOW - 10 * DAY, not_after=NOW - DAY, ca=True, pathlen=0)  # fmt: skip
    leaf = host(pki, issuer=(inter, pki["int.key"]), not_after=NOW + 10 * DAY)
    with pytest.raises(TrustError) as e:
        validate_chain(leaf, [inter], anchors(pki), NOW)
    assert reason(e) == "expired" and "old intermediate" in e.value.subject


def test_wrong_root(pki: dict[str, Any], tmp_path: Path) -> None:
    other = MK.build_pki(tmp_path / "other", NOW, rsa_kind="rsa1024")
    other_root = certs.load_trust(other["ca"], crl_paths=[])
    with pytest.raises(TrustError) as e:  # same CA names, other keys: the signature gives it away
        validate_chain(pki["ipsecd-rsa"], [pki["int"]], other_root, NOW)
    assert reason(e) == "bad signature"
    stranger = MK.make_cert(MK.name("stranger", org="elsewhere"), MK.make_key("p256"), None, serial=5,
                            not_before=NOW - DAY, not_after=NOW + DAY)  # fmt: skip
    with pytest.raises(TrustError) as e:  # a self-signed peer certificate we do not trust
        validate_chain(stranger, [], anchors(pki), NOW)
    assert reason(e) == "no trusted root"


def test_missing_intermediate(pki: dict[str, Any]) -> None:
    with pytest.raises(TrustError) as e:
        validate_chain(pki["ipsecd-rsa"], [], anchors(pki), NOW)
    assert reason(e) == "no trusted root"
    assert e.value.issuer == pki["int"].subject.rfc4514_string()


def test_ca_without_basic_constraints(pki: dict[str, Any]) -> None:
    key = MK.make_key("p256")
    inter = MK.make_cert(MK.name("no-bc intermediate"), key, issuer(pki, "ca"), serial=78, not_before=NOW - DAY,
                         not_after=NOW + DAY, ca=True, basic_constraints=False)  # fmt: skip
    leaf = host(pki, issuer=(inter, key))
    with pytest.raises(TrustError) as e:
        validate_chain(leaf, [inter], anchors(pki), NOW)
    assert reason(e) == "issuer is not a CA (no basicConstraints)"


def test_end_entity_used_as_issuer(pki: dict[str, Any]) -> None:
    ee = pki["ipsecd-ecdsa"]
    leaf = host(pki, issuer=(ee, pki["ipsecd-ecdsa.key"]))
    with pytest.raises(TrustError) as e:
        validate_chain(leaf, [ee, pki["int"]], anchors(pki), NOW)
    assert reason(e) == "issuer is not a CA (basicConstraints cA false)"


def test_end_entity_without_digital_signature(pki: dict[str, Any]) -> None:
    ku = MK._key_usage(key_encipherment=True)
    with pytest.raises(TrustError) as e:
        validate_chain(host(pki, key_usage=ku), [pki["int"]], anchors(pki), NOW)
    assert reason(e) == "key usage lacks digitalSignature"
    # nonRepudiation alone is accepted, and so is a certificate without keyUsage
    validate_chain(host(pki, key_usage=MK._key_usage(non_repudiation=True)), [pki["int"]], anchors(pki), NOW)
    validate_chain(host(pki, key_usage=None), [pki["int"]], anchors(pki), NOW)


def test_extended_key_usage(pki: dict[str, Any]) -> None:
    code_signing = x509.oid.ExtendedKeyUsageOID.CODE_SIGNING
    with pytest.raises(TrustError) as e:
        validate_chain(host(pki, eku=[code_signing]), [pki["int"]], anchors(pki), NOW)
    assert reason(e) == "extended key usage allows no IKE use"
    for ok in (
        [certs.IPSEC_IKE_EKU],
        [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH],
        [code_signing, certs.ANY_EKU],
    ):
        validate_chain(host(pki, eku=ok), [pki["int"]], anchors(pki), NOW)
    validate_chain(host(pki, eku=None), [pki["int"]], anchors(pki), NOW)


def test_path_length_exceeded(pki: dict[str, Any]) -> None:
    # The intermediate has pathLen 0: a second intermediate below it is one too many.
    key = MK.make_key("p256")
    sub = MK.make_cert(MK.name("sub intermediate"), key, issuer(pki, "int"), serial=79, not_before=NOW - DAY,
                       not_after=NOW + DAY, ca=True)  # fmt: skip
    leaf = host(pki, issuer=(sub, key))
    with pytest.raises(TrustError) as e:
        validate_chain(leaf, [sub, pki["int"]], anchors(pki), NOW)
    assert reason(e) == "path length constraint exceeded"
    assert "intermediate CA" in e.value.subject


def test_issuer_without_key_cert_sign(pki: dict[str, Any]) -> None:
    key = MK.make_key("p256")
    inter = MK.make_cert(MK.name("no-ku intermediate"), key, issuer(pki, "ca"), serial=80, not_before=NOW - DAY,
                         not_after=NOW + DAY, ca=True, pathlen=0,
                         key_usage=MK._key_usage(digital_signature=True))  # fmt: skip
    with pytest.raises(TrustError) as e:
        validate_chain(host(pki, issuer=(inter, key)), [inter], anchors(pki), NOW)
    assert reason(e) == "issuer key usage lacks keyCertSign"


def test_unknown_critical_extension_refused(pki: dict[str, Any]) -> None:
    key = MK.make_key("p256")
    b = (
        x509.CertificateBuilder()
        .subject_name(MK.name("odd"))
        .issuer_name(pki["int"].subject)
        .public_key(key.public_key())
        .serial_number(81)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True
        )
    )

    cert = b.sign(pki["int.key"], hashes.SHA256())
    with pytest.raises(TrustError) as e:
        validate_chain(cert, [pki["int"]], anchors(pki), NOW)
    assert reason(e) == "unsupported critical extension 1.3.6.1.4.1.99999.1"


def test_now_must_be_aware(pki: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="timezone"):
        validate_chain(pki["ipsecd-rsa"], [pki["int"]], anchors(pki), NOW.replace(tzinfo=None))


# --------------------------------------------------------------------------------------- CRLs


def test_crls_are_found_next_to_the_root(pki: dict[str, Any]) -> None:
    trust = anchors(pki, crls=True)
    assert len(trust.crls) == 2
    assert [p.name for p in certs.crl_files_for(pki["dir"] / "ca.pem")] == ["ca.crl", "int.crl"]


@pytest.mark.parametrize(
    ("mode", "stem", "with_crls", "expect"),
    [
        (0, "revoked", True, None),  # off: a revoked certificate passes
        (1, "revoked", True, "revoked"),
        (2, "revoked", True, "revoked"),
        (1, "ipsecd-rsa", True, None),
        (2, "ipsecd-rsa", True, None),
        (0, "ipsecd-rsa", False, None),
        (1, "ipsecd-rsa", False, None),  # 1: no CRL is not a failure
        (2, "ipsecd-rsa", False, "no valid CRL available"),  # 2: it is
    ],
)
def test_strongcrlcheck(
    pki: dict[str, Any], mode: int, stem: str, with_crls: bool, expect: str | None
) -> None:
    trust = anchors(pki, crls=with_crls)
    if expect is None:
        validate_chain(pki[stem], [pki["int"]], trust, NOW, strongcrlcheck=mode)
    else:
        with pytest.raises(TrustError) as e:
            validate_chain(pki[stem], [pki["int"]], trust, NOW, strongcrlcheck=mode)
        assert reason(e) == expect


def test_stale_or_forged_crl_is_not_valid(pki: dict[str, Any]) -> None:
    trust = anchors(pki, crls=True)
    late = NOW + 8 * DAY  # after nextUpdate (7 days), still within the certificate's validity
    with pytest.raises(TrustError) as e:
        validate_chain(pki["ipsecd-rsa"], [pki["int"]], trust, late, strongcrlcheck=2)
    assert reason(e) == "no valid CRL available"
    validate_chain(pki["revoked"], [pki["int"]], trust, late, strongcrlcheck=1)  # stale CRL not used
    # A CRL with the intermediate's name but signed by another key is ignored.
    forged = MK.make_crl(
        (pki["int"], MK.make_key("rsa1024")), [], this_update=NOW - DAY, next_update=NOW + DAY
    )
    with pytest.raises(TrustError) as e:
        validate_chain(pki["ipsecd-rsa"], [pki["int"]], TrustAnchors(trust.roots, (forged,)), NOW, 2)
    assert reason(e) == "no valid CRL available"


def test_crl_agrees_with_openssl(pki: dict[str, Any]) -> None:
    d: Path = pki["dir"]
    args = ["verify", "-attime", str(int(NOW.timestamp())), "-crl_check", "-CAfile", str(d / "ca.pem"),
            "-untrusted", str(d / "int.pem"), "-CRLfile", str(d / "int.crl")]  # fmt: skip
    assert openssl(*args, str(d / "ipsecd-rsa.pem")).strip().endswith(b": OK")

    with pytest.raises(subprocess.CalledProcessError) as e:
        openssl(*args, str(d / "revoked.pem"))
    assert b"revoked" in e.value.stdout + e.value.stderr


# ----------------------------------------------------------------------------------- loading


def test_key_file_mode_is_checked(pki: dict[str, Any], tmp_path: Path) -> None:
    src = pki["dir"] / "ipsecd-rsa.key"
    key = tmp_path / "host.key"
    key.write_bytes(src.read_bytes())
    for mode in (0o640, 0o604, 0o644):
        key.chmod(mode)
        with pytest.raises(CertError) as e:
            certs.load_private_key(key)
        msg = str(e.value)
        assert str(key) in msg and f"{mode:04o}" in msg and f"chmod 600 {key}" in msg
        assert "PRIVATE" not in msg and src.read_text()[40:80] not in msg
    key.chmod(0o600)
    certs.load_private_key(key)
    key.chmod(0o400)
    certs.load_private_key(key)


def test_key_errors_never_quote_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n")
    bad.chmod(0o600)
    with pytest.raises(CertError) as e:
        certs.load_private_key(bad)
    assert "U0VDUkVU" not in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(CertError, match="cannot read"):
        certs.load_private_key(tmp_path / "absent.key")


def test_encrypted_key_refused(pki: dict[str, Any], tmp_path: Path) -> None:
    enc = pki["ipsecd-ecdsa.key"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    p = tmp_path / "enc.key"
    p.write_bytes(enc)
    p.chmod(0o600)
    with pytest.raises(CertError, match="encrypted"):
        certs.load_private_key(p)


def test_local_credential_pem_and_der(pki: dict[str, Any], tmp_path: Path) -> None:
    d: Path = pki["dir"]
    cred = certs.load_local_credential(d / "ipsecd-rsa-chain.pem", d / "ipsecd-rsa.key")
    assert cred.cert == pki["ipsecd-rsa"] and cred.chain == (pki["int"],)
    assert cred.certificates == (pki["ipsecd-rsa"], pki["int"])
    text = repr(cred)
    assert "ipsecd.test" in text and "key" not in text.lower().replace("localcredential", "")
    der_cert, der_key = tmp_path / "c.der", tmp_path / "k.der"
    der_cert.write_bytes(pki["ipsecd-ecdsa"].public_bytes(serialization.Encoding.DER))
    der_key.write_bytes(
        pki["ipsecd-ecdsa.key"].private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    der_key.chmod(0o600)
    cred2 = certs.load_local_credential(der_cert, der_key)
    assert cred2.cert == pki["ipsecd-ecdsa"] and cred2.chain == ()
    with pytest.raises(CertError, match="does not belong"):
        certs.load_local_credential(d / "ipsecd-rsa.pem", d / "ipsecd-ecdsa.key")
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(CertError, match=r"no readable X\.509"):
        certs.load_certificates(junk)


# ---------------------------------------------------------------------------------- identity


def test_identity_ip_fqdn_rfc822_dn(pki: dict[str, Any]) -> None:
    cert = host(
        pki, san_ips=["192.0.2.7", "2001:db8::7"], san_dns=["Host.Test"], san_emails=["vpn@host.test"]
    )
    ip4 = ipaddress.ip_address("192.0.2.7").packed
    assert certs.check_identity(cert, IdType.ID_IPV4_ADDR, ip4) == "192.0.2.7"
    assert certs.check_identity(cert, IdType.ID_IPV6_ADDR, ipaddress.ip_address("2001:db8::7").packed)
    assert certs.check_identity(cert, IdType.ID_FQDN, b"host.test") == "host.test"
    assert certs.check_identity(cert, IdType.ID_USER_FQDN, b"vpn@host.test") == "vpn@host.test"
    subject_der = der.certificate_subject(cert.public_bytes(serialization.Encoding.DER))
    assert subject_der == cert.subject.public_bytes()
    assert "CN=host.test" in certs.check_identity(cert, IdType.ID_DER_ASN1_DN, subject_der)
    bad = [
        (IdType.ID_IPV4_ADDR, ipaddress.ip_address("192.0.2.8").packed),
        (IdType.ID_IPV4_ADDR, b"\x01\x02\x03"),
        (IdType.ID_FQDN, b"other.test"),
        (IdType.ID_FQDN, b"\xff"),
        (IdType.ID_USER_FQDN, b"host.test"),
        (IdType.ID_DER_ASN1_DN, MK.name("host.test", org="other").public_bytes()),
        (IdType.ID_KEY_ID, b"abc"),
        (IdType.ID_IPV4_ADDR_SUBNET, b"\x00" * 8),
        (200, b""),
    ]
    for t, data in bad:
        with pytest.raises(IdentityError):
            certs.check_identity(cert, t, data)


def test_fqdn_never_matches_the_cn(pki: dict[str, Any]) -> None:
    cert = host(pki, cn="only-cn.test", san_dns=[], san_ips=[])
    with pytest.raises(IdentityError, match="dNSName"):
        certs.check_identity(cert, IdType.ID_FQDN, b"only-cn.test")


def test_own_identity_is_the_subject_dn(pki: dict[str, Any]) -> None:
    d: Path = pki["dir"]
    cred = certs.load_local_credential(d / "ipsecd-rsa.pem", d / "ipsecd-rsa.key")
    t, data = certs.own_identity(cred)
    assert t is IdType.ID_DER_ASN1_DN
    assert certs.check_identity(cred.cert, t, data)


# -------------------------------------------------------------------------------- certmap


def test_certmap_cn_must_be_a_local_account(pki: dict[str, Any]) -> None:
    users = {"alice"}
    assert certs.map_to_account(host(pki, cn="alice"), users.__contains__) == "alice"
    for cn in ("bob", "../alice", "-alice"):
        with pytest.raises(IdentityError, match="no local account"):
            certs.map_to_account(host(pki, cn=cn), lambda n: True if n == "alice" else n in users)
    two = MK.make_cert(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "a"), x509.NameAttribute(x509.NameOID.COMMON_NAME, "b")]),
        MK.make_key("p256"), None, serial=3, not_before=NOW, not_after=NOW + DAY,
    )  # fmt: skip
    with pytest.raises(IdentityError, match="exactly one CN"):
        certs.map_to_account(two, lambda n: True)


def test_local_user_exists_reads_passwd() -> None:
    assert certs.local_user_exists("root")
    assert not certs.local_user_exists("no-such-user-ipsecd-test")


# -------------------------------------------------------------------------------- CERTREQ


def test_certreq_hash_is_sha1_of_the_spki_as_openssl_computes_it(pki: dict[str, Any]) -> None:
    d: Path = pki["dir"]
    spki = openssl("x509", "-in", str(d / "ca.pem"), "-noout", "-pubkey")
    spki_der = openssl("pkey", "-pubin", "-outform", "DER", data=spki)
    assert certs.spki_sha1(pki["ca"]) == hashlib.sha1(spki_der).digest()
    trust = anchors(pki)
    assert certs.ikev2_certreq_data(trust) == hashlib.sha1(spki_der).digest()
    assert certs.parse_ikev2_certreq(certs.ikev2_certreq_data(trust) * 2) == [certs.spki_sha1(pki["ca"])] * 2
    with pytest.raises(ValueError, match="multiple of 20"):
        certs.parse_ikev2_certreq(b"\x00" * 21)


def test_certs_for_certreq(pki: dict[str, Any]) -> None:
    d: Path = pki["dir"]
    cred = certs.load_local_credential(d / "ipsecd-rsa-chain.pem", d / "ipsecd-rsa.key")
    both = (pki["ipsecd-rsa"], pki["int"])
    assert certs.certs_for_certreq(cred) == both  # empty CERTREQ: anything
    assert certs.certs_for_certreq(cred, [certs.spki_sha1(pki["int"])]) == (pki["ipsecd-rsa"],)
    assert certs.certs_for_certreq(cred, [b"\x01" * 20]) is None
    root_hash = [certs.spki_sha1(pki["ca"])]
    assert certs.certs_for_certreq(cred, root_hash) is None  # the root's key is not in our chain file
    assert certs.certs_for_certreq(cred, root_hash, issuers=anchors(pki).roots) == both
    impostor = MK.make_cert(pki["ca"].subject, MK.make_key("p256"), None, serial=1, not_before=NOW,
                            not_after=NOW + DAY, ca=True)  # fmt: skip
    assert certs.certs_for_certreq(cred, [certs.spki_sha1(impostor)], issuers=[impostor]) is None
    assert certs.certs_for_certreq(cred, ikev1_dns=[certs.ikev1_certreq_data(pki["ca"])]) == both
    assert certs.certs_for_certreq(cred, ikev1_dns=[pki["int"].subject.public_bytes()]) == (
        pki["ipsecd-rsa"],
    )
    assert certs.certs_for_certreq(cred, ikev1_dns=[MK.name("x").public_bytes()]) is None


# -------------------------------------------------------------------------- verify_peer


def _ders(*cs: x509.Certificate) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in cs]


def test_verify_peer_then_its_signature(pki: dict[str, Any]) -> None:
    from ipsecd.ike import signatures as sg

    d: Path = pki["dir"]
    peer = certs.load_local_credential(d / "strongswan-ecdsa-chain.pem", d / "strongswan-ecdsa.key")
    t, idd = IdType.ID_FQDN, b"strongswan.test"
    # IKEv1 fixes no order: the intermediate first must work too.
    for order in (peer.certificates, tuple(reversed(peer.certificates))):
        got = certs.verify_peer(_ders(*order), anchors(pki, crls=True), NOW, t, idd, strongcrlcheck=2)
        assert got.identity == "strongswan.test" and got.account is None
        assert got.chain.path == (pki["strongswan-ecdsa"], pki["int"], pki["ca"])
    auth = sg.ikev2_sign(peer.key, sg.V2AuthMethod.DIGITAL_SIGNATURE, b"octets")
    assert sg.ikev2_verify(got.public_key, sg.V2AuthMethod.DIGITAL_SIGNATURE, b"octets", auth)
    mapped = certs.verify_peer(
        _ders(*peer.certificates),
        anchors(pki),
        NOW,
        t,
        idd,
        certmap=True,
        user_exists={"strongswan.test"}.__contains__,
    )
    assert mapped.account == "strongswan.test"


def test_verify_peer_failures(pki: dict[str, Any]) -> None:
    t, idd = IdType.ID_IPV4_ADDR, ipaddress.ip_address("192.0.2.2").packed
    chain = _ders(pki["strongswan-rsa"], pki["int"])
    with pytest.raises(TrustError, match="no certificate"):
        certs.verify_peer([], anchors(pki), NOW, t, idd)
    with pytest.raises(TrustError) as e:
        certs.verify_peer([b"\x30\x03junk"], anchors(pki), NOW, t, idd)
    assert reason(e) == "malformed certificate"
    with pytest.raises(IdentityError):  # the ID names another host
        certs.verify_peer(chain, anchors(pki), NOW, t, ipaddress.ip_address("192.0.2.1").packed)
    with pytest.raises(TrustError) as e:
        certs.verify_peer(_ders(pki["revoked"], pki["int"]), anchors(pki, crls=True), NOW, IdType.ID_FQDN,
                          b"revoked.test", strongcrlcheck=1)  # fmt: skip
    assert reason(e) == "revoked" and "revoked.test" in e.value.subject
    with pytest.raises(IdentityError, match="no local account"):
        certs.verify_peer(chain, anchors(pki), NOW, t, idd, certmap=True, user_exists=lambda n: False)


def test_web_pki_verifier_rejects_ipsec_certificates(pki: dict[str, Any]) -> None:
    """Why ipsecd validates paths itself (docs/certificates.md): the web-PKI verifier of the
    cryptography package refuses an ipsecIKE-only certificate and one without subjectAltName,
    both of which are fine for IKE (RFC 4945)."""
    from cryptography.x509 import verification as v

    policy = v.PolicyBuilder().store(v.Store([pki["ca"]])).time(NOW)
    for odd in (host(pki, eku=[certs.IPSEC_IKE_EKU]), host(pki, san_ips=[], san_dns=[])):
        with pytest.raises(v.VerificationError):
            policy.build_client_verifier().verify(odd, [pki["int"]])
        validate_chain(odd, [pki["int"]], anchors(pki), NOW)
    policy.build_client_verifier().verify(host(pki), [pki["int"]])  # an ordinary one passes both


def test_peer_certificate_configured_as_the_root(pki: dict[str, Any], tmp_path: Path) -> None:
    """A self-signed peer certificate given as rootca is a path of one, still fully checked."""
    key = MK.make_key("p256")
    selfsigned = MK.make_cert(MK.name("peer"), key, None, serial=9, not_before=NOW - DAY, not_after=NOW + DAY,
                              san_dns=["peer.test"])  # fmt: skip
    trust = TrustAnchors((selfsigned,))
    assert validate_chain(selfsigned, [], trust, NOW).path == (selfsigned,)
    with pytest.raises(TrustError) as e:
        validate_chain(selfsigned, [], trust, NOW + 2 * DAY)
    assert reason(e) == "expired"
    with pytest.raises(TrustError) as e:  # a CA certificate is no end entity (keyUsage keyCertSign only)
        validate_chain(pki["ca"], [], anchors(pki), NOW)
    assert reason(e) == "key usage lacks digitalSignature"


def test_issuer_cycle_and_long_chains_terminate(pki: dict[str, Any]) -> None:
    kx, ky = MK.make_key("p256"), MK.make_key("p256")
    cx = MK.make_cert(MK.name("X"), kx, None, serial=11, not_before=NOW - DAY, not_after=NOW + DAY, ca=True)
    cy = MK.make_cert(
        MK.name("Y"), ky, (cx, kx), serial=12, not_before=NOW - DAY, not_after=NOW + DAY, ca=True
    )
    cx2 = MK.make_cert(
        MK.name("X"), kx, (cy, ky), serial=13, not_before=NOW - DAY, not_after=NOW + DAY, ca=True
    )
    leaf = host(pki, issuer=(cx, kx))
    with pytest.raises(TrustError) as e:  # X <- Y <- X ... never reaches our root
        validate_chain(leaf, [cy, cx2, cx], anchors(pki), NOW)
    assert reason(e) in ("no trusted root", "chain too long")
    # A chain longer than MAX_CHAIN_DEPTH is refused even when it would reach the root.
    chain, iss = [], (pki["ca"], pki["ca.key"])
    for i in range(certs.MAX_CHAIN_DEPTH):
        k = MK.make_key("p256")
        c = MK.make_cert(MK.name(f"level {i}"), k, iss, serial=100 + i, not_before=NOW - DAY, not_after=NOW + DAY,
                         ca=True)  # fmt: skip
        chain.append(c)
        iss = (c, k)
    with pytest.raises(TrustError) as e:
        validate_chain(host(pki, issuer=iss), chain, anchors(pki), NOW)
    assert reason(e) == "chain too long"


def test_trust_error_becomes_the_event(pki: dict[str, Any]) -> None:
    from ipsecd.log.events import CertificateTrustFailed, EventId

    with pytest.raises(TrustError) as e:
        validate_chain(pki["revoked"], [pki["int"]], anchors(pki, crls=True), NOW, strongcrlcheck=1)
    event = e.value.event(ipaddress.ip_address("192.0.2.9"))
    assert isinstance(event, CertificateTrustFailed) and event.event_id is EventId.CERTIFICATE_TRUST_FAILED
    assert (event.reason, event.subject) == ("revoked", "CN=revoked.test,O=ipsecd test")
    assert event.issuer == "CN=ipsecd test intermediate CA,O=ipsecd test"


def test_strongswan_pki_tool_agrees(tmp_path: Path) -> None:
    """strongSwan's own validator (``pki --verify``, package strongswan-pki from tools/bootstrap)
    accepts the test PKI, and, with int.crl, rejects the revoked certificate, as we do. It uses
    the wall clock, so this PKI is made for now."""
    import shutil

    exe = shutil.which("pki")
    if exe is None:
        pytest.skip("strongSwan's pki tool is not installed (tools/bootstrap installs strongswan-pki)")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    MK.build_pki(tmp_path, now)

    def pki_verify(stem: str) -> subprocess.CompletedProcess[str]:
        args = [exe, "--verify", "--in", f"{stem}.pem", "--cacert", "ca.pem", "--cacert", "int.pem",
                "--crl", "int.crl", "--crl", "ca.crl"]  # fmt: skip
        return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    trust = certs.load_trust(tmp_path / "ca.pem")
    inter = certs.load_certificates(tmp_path / "int.pem")
    for stem in ("ipsecd-rsa", "ipsecd-ecdsa", "strongswan-rsa", "strongswan-ecdsa"):
        out = pki_verify(stem)
        assert out.returncode == 0 and "certificate not revoked" in out.stdout, out.stdout + out.stderr
        validate_chain(
            certs.load_certificates(tmp_path / f"{stem}.pem")[0], inter, trust, now, strongcrlcheck=2
        )
    out = pki_verify("revoked")
    assert out.returncode != 0 and "certificate untrusted" in out.stdout, out.stdout + out.stderr
    with pytest.raises(TrustError, match="revoked"):
        validate_chain(
            certs.load_certificates(tmp_path / "revoked.pem")[0], inter, trust, now, strongcrlcheck=2
        )
