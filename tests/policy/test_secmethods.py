from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod
from ipsecd.policy.secmethods import (
    LIFETIME_KB_RANGE,
    LIFETIME_S_RANGE,
    MM_GROUPS,
    format_mmsecmethod,
    format_qmsecmethod,
    parse_mmsecmethod,
    parse_qmsecmethod,
)

_AUTH = [i for i in Integrity if i is not Integrity.NONE]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ESP[3DES,SHA1]", QmSecMethod(esp_enc=EspEncryption.DES3, esp_auth=Integrity.SHA1)),
        ("esp[aes128,sha256]", QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA256)),
        ("ESP[AESGCM128]", QmSecMethod(esp_enc=EspEncryption.AESGCM128)),
        ("ESP[CHACHA20POLY1305]", QmSecMethod(esp_enc=EspEncryption.CHACHA20POLY1305)),
        ("ESP[None,SHA1]", QmSecMethod(esp_enc=EspEncryption.NONE, esp_auth=Integrity.SHA1)),
        ("AH[SHA1]", QmSecMethod(ah=Integrity.SHA1)),
        (
            "AH[SHA256]+ESP[AES128,SHA256]",
            QmSecMethod(ah=Integrity.SHA256, esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA256),
        ),
        ("AH[SHA1]+ESP[AES128,None]", QmSecMethod(ah=Integrity.SHA1, esp_enc=EspEncryption.AES128)),
        (
            " ESP[3DES,SHA1]:50000/1800 ",
            QmSecMethod(
                esp_enc=EspEncryption.DES3, esp_auth=Integrity.SHA1, lifetime_kb=50000, lifetime_s=1800
            ),
        ),
        (
            "ESP[3DES,SHA1]:100000k/29999s",
            QmSecMethod(esp_enc=EspEncryption.DES3, esp_auth=Integrity.SHA1, lifetime_s=29999),
        ),
    ],
)
def test_parse_qm(text: str, expected: QmSecMethod) -> None:
    assert parse_qmsecmethod(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "ESP[AESGCM128,SHA1]",
            "ESP[AESGCM128,SHA1]: AES-GCM carries its own integrity; write ESP[AESGCM128]",
        ),
        ("ESP[CHACHA20POLY1305,SHA256]", "carries its own integrity; write ESP[CHACHA20POLY1305]"),
        ("ESP[None,None]", "ESP[None,None] protects nothing"),
        ("ESP[AES128,None]", "encryption without integrity"),
        ("ESP[AES128]", "needs an integrity algorithm"),
        ("ESP[DES,MD5]", "single DES is not supported"),
        ("ESP[AES512,SHA1]", "unknown ESP encryption 'AES512'"),
        ("ESP[AES128,SHA3]", "unknown ESP integrity algorithm 'SHA3'"),
        ("AH[None]", "AH needs an integrity algorithm"),
        ("AH[SHA1,SHA1]", "AH takes one integrity algorithm"),
        ("ESP[AES128,SHA1]+AH[SHA1]", "write AH first"),
        ("ESP[AES128,SHA1]+ESP[3DES,SHA1]", "ESP given twice"),
        ("AH[SHA1]+ESP[3DES,SHA1]+ESP[3DES,SHA1]", "at most"),
        ("GRE[x]", "expected ESP[enc,auth]"),
        ("", "empty security method"),
        ("ESP[3DES,SHA1]:100", "lifetime must be KILOBYTES/SECONDS"),
        ("ESP[3DES,SHA1]:100/3600", "kilobytes lifetime 100 not in"),
        ("ESP[3DES,SHA1]:100000/10", "seconds lifetime 10 not in"),
    ],
)
def test_parse_qm_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_qmsecmethod(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3DES-SHA1-2", MmSecMethod(MmEncryption.DES3, Integrity.SHA1, 2)),
        ("aes128-sha256-31", MmSecMethod(MmEncryption.AES128, Integrity.SHA256, 31)),
        ("AES256-SHA384-20", MmSecMethod(MmEncryption.AES256, Integrity.SHA384, 20)),
    ],
)
def test_parse_mm(text: str, expected: MmSecMethod) -> None:
    assert parse_mmsecmethod(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("3DES-SHA1", "expected ENC-HASH-GROUP"),
        ("DES-SHA1-1", "single DES is not supported"),
        ("AES128-None-14", "unknown main-mode hash"),
        ("AES128-SHA1-5", "unsupported Diffie-Hellman group '5'"),
        ("AES128-SHA1-x", "unsupported Diffie-Hellman group"),
    ],
)
def test_parse_mm_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_mmsecmethod(text)
    assert fragment in str(info.value)


_lifetimes = st.tuples(
    st.integers(*LIFETIME_KB_RANGE),
    st.integers(*LIFETIME_S_RANGE),
)


@st.composite
def qm_methods(draw: st.DrawFn) -> QmSecMethod:
    kb, s = draw(_lifetimes)
    ah = draw(st.none() | st.sampled_from(_AUTH))
    enc = (
        draw(st.none() | st.sampled_from(list(EspEncryption)))
        if ah is not None
        else draw(st.sampled_from(list(EspEncryption)))
    )
    auth: Integrity | None = None
    if enc is not None and not enc.is_aead:
        choices = _AUTH if (ah is None or enc is EspEncryption.NONE) else [*_AUTH, None]
        auth = draw(st.sampled_from(choices))
    return QmSecMethod(ah=ah, esp_enc=enc, esp_auth=auth, lifetime_kb=kb, lifetime_s=s)


@given(qm_methods(), st.booleans())
def test_qm_round_trip(method: QmSecMethod, lower: bool) -> None:
    text = format_qmsecmethod(method)
    assert parse_qmsecmethod(text.lower() if lower else text) == method


@given(st.sampled_from(list(MmEncryption)), st.sampled_from(_AUTH), st.sampled_from(sorted(MM_GROUPS)))
def test_mm_round_trip(enc: MmEncryption, hsh: Integrity, group: int) -> None:
    method = MmSecMethod(enc, hsh, group)
    text = format_mmsecmethod(method)
    assert text == str(method)
    assert parse_mmsecmethod(text) == method
