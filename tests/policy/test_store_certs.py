"""The store's certificate method with our own certificate and key (docs/certificates.md)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from ipsecd.ike import certs
from ipsecd.policy.model import AuthKind
from ipsecd.policy.store import StoreError, load_store
from tests.cert_helpers import MK

STORE = """\
[[policy]]
name = "P"
  [[policy.rule]]
  name = "r"
  filterlist = "All IP Traffic"
  filteraction = "Require Security"
  auth = [{ method = "cert", rootca = "pki/ca.pem", cert = "pki/ipsecd-ecdsa-chain.pem", key = "pki/ipsecd-ecdsa.key" }]
"""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    MK.build_pki(tmp_path / "pki", datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC), rsa_kind="rsa1024")
    f = tmp_path / "ipsecd.toml"
    f.write_text(STORE)
    f.chmod(0o600)
    return f


def test_cert_and_key_are_loaded_as_absolute_paths(store: Path) -> None:
    s = load_store(store)
    (method,) = s.policies["P"].rules[0].auth
    assert method.kind is AuthKind.CERT
    assert method.cert == str(store.parent / "pki" / "ipsecd-ecdsa-chain.pem")
    assert method.key == str(store.parent / "pki" / "ipsecd-ecdsa.key")
    # ...and they are what ipsecd.ike.certs loads.
    assert method.cert is not None and method.key is not None and method.rootca is not None
    cred = certs.load_local_credential(method.cert, method.key)
    assert len(cred.chain) == 1
    assert certs.load_trust(method.rootca).roots[0].subject == cred.chain[0].issuer


def test_key_readable_by_others_is_refused(store: Path) -> None:
    key = store.parent / "pki" / "ipsecd-ecdsa.key"
    key.chmod(0o644)
    with pytest.raises(StoreError) as e:
        load_store(store)
    (issue,) = e.value.issues
    assert issue.field == "policy[0].rule[0].auth[0].key"
    assert "mode 0644" in issue.message and f"chmod 600 {key}" in issue.message
    assert "PRIVATE" not in str(e.value)
