"""Certificate authentication costs per IKE handshake, against OpenSSL references in the same run.

    python3 bench/certs.py [--seconds 1]

- IKEv1 RSA signature (PKCS#1 type 1 without DigestInfo, computed in Python with CRT and blinding)
  against OpenSSL's RSASSA-PKCS1-v1_5 signature with the same 2048-bit key (the IKEv2 method 1
  path): the price of the RFC 2409 encoding the cryptography package cannot produce.
- validate_chain of a 3-certificate path with CRL checking (strongcrlcheck 2) against the two
  bare signature verifications it cannot avoid (verify_directly_issued_by, OpenSSL).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ipsecd.ike import certs, signatures
from ipsecd.ike.constants import AuthMethod
from tests.cert_helpers import MK


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second over about ``seconds`` (at least 10 calls)."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while n < 10 or time.perf_counter() < deadline:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=1.0)
    a = p.parse_args()
    now = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
    with tempfile.TemporaryDirectory() as d:
        MK.build_pki(Path(d), now)
        key = certs.load_private_key(Path(d) / "ipsecd-rsa.key")
        assert not isinstance(key, signatures.ec.EllipticCurvePrivateKey)
        trust = certs.load_trust(Path(d) / "ca.pem")
        leaf = certs.load_certificates(Path(d) / "ipsecd-rsa.pem")[0]
        inter = certs.load_certificates(Path(d) / "int.pem")[0]
    hash_i = b"\x5a" * 20

    ours = rate(lambda: signatures.ikev1_sign(key, AuthMethod.RSA_SIGNATURES, hash_i), a.seconds)
    ref = rate(lambda: key.sign(hash_i, padding.PKCS1v15(), hashes.SHA1()), a.seconds)
    print(f"RSA-2048 sign, OpenSSL PKCS#1 v1.5 (reference):  {ref:8.0f}/s")
    print(f"RSA-2048 sign, IKEv1 raw PKCS#1 in Python:       {ours:8.0f}/s, ratio {ours / ref:.2f}")

    def bare() -> None:
        leaf.verify_directly_issued_by(inter)
        inter.verify_directly_issued_by(trust.roots[0])

    ref = rate(bare, a.seconds)
    ours = rate(lambda: certs.validate_chain(leaf, [inter], trust, now, strongcrlcheck=2), a.seconds)
    print(f"two signature verifications (reference):         {ref:8.0f}/s")
    print(f"validate_chain, 3 certificates, 2 CRLs:          {ours:8.0f}/s, ratio {ours / ref:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
