"""Parse and format security-method strings (netsh ``qmsecmethods`` / ``mmsecmethods``).

Quick mode: ``ESP[enc,auth]``, ``AH[auth]`` or ``AH[auth]+ESP[enc,auth]``, optionally followed by
``:KILOBYTES/SECONDS`` (netsh also writes ``:100000k/3600s``; both forms are accepted). Combined-mode
ciphers carry their own integrity and take no auth: ``ESP[AESGCM128]``, ``ESP[CHACHA20POLY1305]``.
Main mode: ``ENC-HASH-GROUP`` such as ``3DES-SHA1-2`` or ``AES128-SHA256-31``.

Input is case-insensitive; output uses the canonical spelling of the enums in ``model``.
"""

from __future__ import annotations

import re

from ipsecd.policy.model import (
    EspEncryption,
    Integrity,
    MmEncryption,
    MmSecMethod,
    QmSecMethod,
)

DEFAULT_LIFETIME_KB = 100_000
DEFAULT_LIFETIME_S = 3_600
# Rekey bounds ("generate a new key every"): 20480 KB .. 2147483647 KB, 300 s .. 172800 s (48 hours).
# Believed to match Windows' custom security method dialog; not verified against it.
LIFETIME_KB_RANGE = (20_480, 2_147_483_647)
LIFETIME_S_RANGE = (300, 172_800)

# IANA "Transform Type 4 - Key Exchange Method" / IKEv1 group numbers we implement:
# RFC 2409 section 6 (1, 2), RFC 3526 (14, 15, 16), RFC 5903 (19, 20, 21), RFC 8031 (31).
MM_GROUPS = frozenset({1, 2, 14, 15, 16, 19, 20, 21, 31})

_ESP_BY_NAME = {e.value.upper(): e for e in EspEncryption}
_INTEG_BY_NAME = {i.value.upper(): i for i in Integrity}
_MM_ENC_BY_NAME = {e.value.upper(): e for e in MmEncryption}
_PART = re.compile(r"^(AH|ESP)\[([^\[\]]*)\]$", re.IGNORECASE)
_LIFETIME = re.compile(r"^(\d+)K?/(\d+)S?$", re.IGNORECASE)


def _names(values: list[str]) -> str:
    return ", ".join(values)


_ESP_NAMES = _names([e.value for e in EspEncryption])
_INTEG_NAMES = _names([i.value for i in Integrity if i is not Integrity.NONE])


def _integrity(text: str, whole: str, where: str) -> Integrity:
    found = _INTEG_BY_NAME.get(text.strip().upper())
    if found is None:
        raise ValueError(f"{whole}: unknown {where} algorithm {text.strip()!r} (one of None, {_INTEG_NAMES})")
    return found


def _parse_lifetime(text: str, whole: str) -> tuple[int, int]:
    m = _LIFETIME.match(text.strip())
    if m is None:
        raise ValueError(f"{whole}: lifetime must be KILOBYTES/SECONDS, e.g. :100000/3600")
    kb, s = int(m.group(1)), int(m.group(2))
    if not LIFETIME_KB_RANGE[0] <= kb <= LIFETIME_KB_RANGE[1]:
        raise ValueError(
            f"{whole}: kilobytes lifetime {kb} not in {LIFETIME_KB_RANGE[0]}..{LIFETIME_KB_RANGE[1]}"
        )
    if not LIFETIME_S_RANGE[0] <= s <= LIFETIME_S_RANGE[1]:
        raise ValueError(f"{whole}: seconds lifetime {s} not in {LIFETIME_S_RANGE[0]}..{LIFETIME_S_RANGE[1]}")
    return kb, s


def parse_qmsecmethod(text: str) -> QmSecMethod:
    """Parse one quick-mode security method; ValueError with a message naming the text."""
    whole = text.strip()
    if not whole:
        raise ValueError("empty security method")
    body, sep, life = whole.partition(":")
    kb, s = DEFAULT_LIFETIME_KB, DEFAULT_LIFETIME_S
    if sep:
        kb, s = _parse_lifetime(life, whole)
    ah: Integrity | None = None
    esp_enc: EspEncryption | None = None
    esp_auth: Integrity | None = None
    parts = [p.strip() for p in body.split("+")]
    if len(parts) > 2:
        raise ValueError(f"{whole}: at most AH[...]+ESP[...]")
    seen: list[str] = []
    for part in parts:
        m = _PART.match(part)
        if m is None:
            raise ValueError(f"{whole}: expected ESP[enc,auth], AH[auth] or AH[auth]+ESP[enc,auth]")
        proto = m.group(1).upper()
        args = [a.strip() for a in m.group(2).split(",")]
        if proto in seen:
            raise ValueError(f"{whole}: {proto} given twice")
        if proto == "AH" and seen:
            raise ValueError(f"{whole}: write AH first: AH[auth]+ESP[enc,auth]")
        seen.append(proto)
        if proto == "AH":
            if len(args) != 1 or not args[0]:
                raise ValueError(f"{whole}: AH takes one integrity algorithm, e.g. AH[SHA256]")
            ah = _integrity(args[0], whole, "AH integrity")
            if ah is Integrity.NONE:
                raise ValueError(f"{whole}: AH needs an integrity algorithm ({_INTEG_NAMES})")
            continue
        enc_name = args[0].upper()
        enc = _ESP_BY_NAME.get(enc_name)
        if enc is None:
            if enc_name == "DES":
                raise ValueError(f"{whole}: single DES is not supported; use 3DES or AES")
            raise ValueError(f"{whole}: unknown ESP encryption {args[0]!r} (one of {_ESP_NAMES})")
        esp_enc = enc
        if enc.is_aead:
            if len(args) != 1:
                raise ValueError(
                    f"{whole}: {enc.value} carries its own integrity; write ESP[{enc.value}]"
                    if not enc.name.startswith("AESGCM")
                    else f"{whole}: AES-GCM carries its own integrity; write ESP[{enc.value}]"
                )
            continue
        if len(args) != 2:
            raise ValueError(
                f"{whole}: ESP[{enc.value},auth] needs an integrity algorithm, e.g. ESP[{enc.value},SHA256]"
            )
        esp_auth = _integrity(args[1], whole, "ESP integrity")
    if esp_enc is EspEncryption.NONE and esp_auth is Integrity.NONE:
        raise ValueError(f"{whole}: ESP[None,None] protects nothing")
    if esp_enc is not None and not esp_enc.is_aead and esp_auth is Integrity.NONE and ah is None:
        raise ValueError(
            f"{whole}: encryption without integrity is not allowed; add an integrity algorithm "
            f"(ESP[{esp_enc.value},SHA256]) or AH (AH[SHA256]+ESP[{esp_enc.value},None])"
        )
    if esp_auth is Integrity.NONE:
        esp_auth = None
    return QmSecMethod(ah=ah, esp_enc=esp_enc, esp_auth=esp_auth, lifetime_kb=kb, lifetime_s=s)


def format_qmsecmethod(method: QmSecMethod) -> str:
    """The canonical text of a quick-mode method; the lifetime is written only when not the default."""
    parts = []
    if method.ah is not None:
        parts.append(f"AH[{method.ah.value}]")
    if method.esp_enc is not None:
        if method.esp_enc.is_aead:
            parts.append(f"ESP[{method.esp_enc.value}]")
        else:
            auth = method.esp_auth.value if method.esp_auth is not None else "None"
            parts.append(f"ESP[{method.esp_enc.value},{auth}]")
    text = "+".join(parts)
    if (method.lifetime_kb, method.lifetime_s) != (DEFAULT_LIFETIME_KB, DEFAULT_LIFETIME_S):
        text += f":{method.lifetime_kb}/{method.lifetime_s}"
    return text


def parse_mmsecmethod(text: str) -> MmSecMethod:
    """Parse ``ENC-HASH-GROUP``; ValueError with a message naming the text."""
    whole = text.strip()
    fields = whole.split("-")
    if len(fields) != 3:
        raise ValueError(f"{whole or repr(text)}: expected ENC-HASH-GROUP, e.g. AES128-SHA256-14")
    enc_t, hash_t, group_t = (f.strip() for f in fields)
    enc = _MM_ENC_BY_NAME.get(enc_t.upper())
    if enc is None:
        hint = "; single DES is not supported" if enc_t.upper() == "DES" else ""
        names = _names([e.value for e in MmEncryption])
        raise ValueError(f"{whole}: unknown main-mode encryption {enc_t!r} (one of {names}){hint}")
    hsh = _INTEG_BY_NAME.get(hash_t.upper())
    if hsh is None or hsh is Integrity.NONE:
        raise ValueError(f"{whole}: unknown main-mode hash {hash_t!r} (one of {_INTEG_NAMES})")
    if not group_t.isdigit() or int(group_t) not in MM_GROUPS:
        groups = ", ".join(str(g) for g in sorted(MM_GROUPS))
        raise ValueError(f"{whole}: unsupported Diffie-Hellman group {group_t!r} (one of {groups})")
    return MmSecMethod(encryption=enc, hash=hsh, group=int(group_t))


def format_mmsecmethod(method: MmSecMethod) -> str:
    return f"{method.encryption.value}-{method.hash.value}-{method.group}"
