"""The validator never crashes: any TOML document built from the schema's vocabulary either loads
or raises StoreError whose issues all point at a real line of the file."""

from __future__ import annotations

import tomllib

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipsecd.policy.schema import (
    AUTH_KEYS,
    DAEMON_KEYS,
    FILTER_KEYS,
    FILTERACTION_KEYS,
    POLICY_KEYS,
    RULE_KEYS,
    TOP_KEYS,
)
from ipsecd.policy.store import StoreError, parse_store_texts

_VOCAB = sorted(
    {
        *TOP_KEYS,
        *DAEMON_KEYS,
        *FILTER_KEYS,
        *FILTERACTION_KEYS,
        *POLICY_KEYS,
        *RULE_KEYS,
        *AUTH_KEYS,
        "x",
    }
)
_TEXTS = st.sampled_from(
    [
        "",
        "me",
        "any",
        "10.0.0.0/8",
        "10.0.0.1-10.0.0.0",
        "::1",
        "tcp",
        "negotiate",
        "permit",
        "psk",
        "cert",
        "kerberos",
        "ESP[AES128,SHA1]",
        "3DES-SHA1-2",
        "All IP Traffic",
        "Permit",
        "P",
        "lan",
    ]
)
_SCALARS = st.integers(-1, 70000) | st.booleans() | _TEXTS | st.floats(allow_nan=False, allow_infinity=False)
_DOCS = st.recursive(
    st.dictionaries(st.sampled_from(_VOCAB), _SCALARS | st.lists(_SCALARS, max_size=3), max_size=4),
    lambda children: st.dictionaries(
        st.sampled_from(_VOCAB), children | st.lists(children, min_size=1, max_size=3) | _SCALARS, max_size=5
    ),
    max_leaves=25,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCS)
def test_validator_never_crashes(doc: dict[str, object]) -> None:
    text = tomlkit.dumps(doc)
    tomllib.loads(text)
    n_lines = max(1, len(text.splitlines()))
    try:
        parse_store_texts([("f.toml", text)])
    except StoreError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.file == "f.toml"
            assert 1 <= issue.line <= n_lines, (issue, text)
            assert issue.field, issue
