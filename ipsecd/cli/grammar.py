"""The ``netsh ipsec static`` grammar of ``ipsecctl static``: ``VERB OBJECT key=value ...``.

netsh parameters are ``key=value`` words (the shell has already removed the quotes around values
with spaces, such as ``qmsecmethods="ESP[3DES,SHA1] AH[SHA1]"``); a few commands also take a bare
``all`` word (``delete policy all``, ``show filterlist all``). Keywords, parameter names, booleans
(``yes``/``no``/``y``/``n``) and enum values are case-insensitive, as in netsh; names and
descriptions are kept as typed. This module only checks the *shape* of a command (known parameters,
required ones present, numbers are numbers, booleans are booleans); what the values mean is checked
by the store loader when the edited store is validated as a whole.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class UsageError(Exception):
    """A command that does not fit the grammar (exit status 2)."""


class T(enum.Enum):
    """Parameter value types."""

    STR = "text"
    BOOL = "yes|no"
    INT = "a number"
    PORT = "a port number 0..65535"
    LIST = "space-separated list"
    PROTOCOL = "a protocol name or number"
    CONNTYPE = "all|lan|dialup"
    ACTION = "permit|block|negotiate"
    IKEVERSION = "1|2"
    AUTH = "authentication"  # psk= / rootca= / kerberos=: collected in order of appearance
    DIRECTION = "out|in"


_POLICY = {
    "name": T.STR,
    "description": T.STR,
    "mmpfs": T.BOOL,
    "qmpermm": T.INT,
    "mmlifetime": T.INT,
    "activatedefaultrule": T.BOOL,
    "pollinginterval": T.INT,
    "assign": T.BOOL,
    "mmsecmethods": T.LIST,
}
_FILTERLIST = {"name": T.STR, "description": T.STR}
_FILTER = {
    "filterlist": T.STR,
    "srcaddr": T.STR,
    "dstaddr": T.STR,
    "description": T.STR,
    "protocol": T.PROTOCOL,
    "mirrored": T.BOOL,
    "srcmask": T.STR,
    "dstmask": T.STR,
    "srcport": T.PORT,
    "dstport": T.PORT,
}
_FILTERACTION = {
    "name": T.STR,
    "description": T.STR,
    "qmpfs": T.BOOL,
    "inpass": T.BOOL,
    "soft": T.BOOL,
    "action": T.ACTION,
    "qmsecmethods": T.LIST,
}
_RULE = {
    "name": T.STR,
    "policy": T.STR,
    "filterlist": T.STR,
    "filteraction": T.STR,
    "tunnel": T.STR,
    "conntype": T.CONNTYPE,
    "activate": T.BOOL,
    "description": T.STR,
    "kerberos": T.AUTH,
    "psk": T.AUTH,
    "rootca": T.AUTH,
    "ikeversion": T.IKEVERSION,
    "forceencap": T.BOOL,  # ipsecd extension: UDP-encapsulated ESP without a NAT (docs/store.md)
}
_DEFAULTRULE = {"policy": T.STR, "activate": T.BOOL, "kerberos": T.AUTH, "psk": T.AUTH, "rootca": T.AUTH}
_MATCH = {
    "srcaddr": T.STR,
    "dstaddr": T.STR,
    "protocol": T.PROTOCOL,
    "srcport": T.PORT,
    "dstport": T.PORT,
    "direction": T.DIRECTION,
    "policy": T.STR,
}


@dataclass(frozen=True)
class Syntax:
    """One command form: its parameters, the required ones, and whether a bare ``all`` is allowed."""

    params: Mapping[str, T]
    required: frozenset[str] = frozenset()
    all_word: bool = False  # ``all`` may replace ``name=``


def _s(params: Mapping[str, T], required: Sequence[str] = (), all_word: bool = False) -> Syntax:
    return Syntax(dict(params), frozenset(required), all_word)


GRAMMAR: dict[tuple[str, str], Syntax] = {
    # psk=/rootca=/kerberos= on a policy (not netsh): the default response rule's authentication.
    ("add", "policy"): _s({**_POLICY, "kerberos": T.AUTH, "psk": T.AUTH, "rootca": T.AUTH}, ["name"]),
    ("add", "filterlist"): _s(_FILTERLIST, ["name"]),
    ("add", "filter"): _s(_FILTER, ["filterlist", "srcaddr", "dstaddr"]),
    ("add", "filteraction"): _s(_FILTERACTION, ["name"]),
    ("add", "rule"): _s(_RULE, ["name", "policy", "filterlist", "filteraction"]),
    ("set", "policy"): _s({**_POLICY, "newname": T.STR}, ["name"]),
    ("set", "filterlist"): _s({**_FILTERLIST, "newname": T.STR}, ["name"]),
    ("set", "filteraction"): _s({**_FILTERACTION, "newname": T.STR}, ["name"]),
    ("set", "rule"): _s({**_RULE, "newname": T.STR}, ["name", "policy"]),
    ("set", "defaultrule"): _s(_DEFAULTRULE, ["policy"]),
    # ipsecd: the [daemon] settings that netsh keeps in the dynamic context (set config).
    ("set", "config"): _s({"property": T.STR, "value": T.STR}, ["property", "value"]),
    ("delete", "policy"): _s({"name": T.STR}, ["name"], all_word=True),
    ("delete", "filterlist"): _s({"name": T.STR}, ["name"], all_word=True),
    # ``delete filter`` matches on addresses, protocol, ports and mirroring (no description).
    ("delete", "filter"): _s(
        {k: v for k, v in _FILTER.items() if k != "description"}, ["filterlist", "srcaddr", "dstaddr"]
    ),
    ("delete", "filteraction"): _s({"name": T.STR}, ["name"], all_word=True),
    ("delete", "rule"): _s({"name": T.STR, "policy": T.STR}, ["name", "policy"], all_word=True),
    ("delete", "all"): _s({}),
    ("show", "all"): _s({}),
    ("show", "policy"): _s({"name": T.STR}, ["name"], all_word=True),
    ("show", "filterlist"): _s({"name": T.STR}, ["name"], all_word=True),
    ("show", "filteraction"): _s({"name": T.STR}, ["name"], all_word=True),
    ("show", "rule"): _s({"name": T.STR, "policy": T.STR}, ["name"], all_word=True),
    ("show", "filters"): _s({"specific": T.BOOL, "policy": T.STR}),
    ("exportpolicy", ""): _s({"file": T.STR}, ["file"]),
    ("importpolicy", ""): _s({"file": T.STR}, ["file"]),
    ("check", ""): _s({}),
    ("match", ""): _s(_MATCH, ["srcaddr", "dstaddr"]),
}

VERBS_WITH_OBJECT = ("add", "set", "delete", "show")
OBJECTS = {
    "add": ("policy", "filterlist", "filter", "filteraction", "rule"),
    "set": ("policy", "filterlist", "filteraction", "rule", "defaultrule", "config"),
    "delete": ("policy", "filterlist", "filter", "filteraction", "rule", "all"),
    "show": ("all", "policy", "rule", "filterlist", "filteraction", "filters"),
}

Value = str | int | bool | tuple[str, ...]


@dataclass(frozen=True)
class Command:
    """A parsed ``ipsecctl static`` command.

    ``args`` holds the typed parameters (``str``, ``int``, ``bool`` or a tuple of words for lists);
    ``auth`` the authentication parameters in the order typed, as ``(kind, value)`` with kind
    ``psk``, ``rootca`` or ``kerberos``; ``all`` is true for the bare ``all`` word.
    """

    verb: str
    obj: str = ""
    args: Mapping[str, Value] = field(default_factory=dict)
    auth: tuple[tuple[str, str], ...] = ()
    all: bool = False

    def str_arg(self, key: str, default: str | None = None) -> str | None:
        v = self.args.get(key, default)
        if v is not None and not isinstance(v, str):  # pragma: no cover - grammar guarantees it
            raise TypeError(key)
        return v

    def int_arg(self, key: str, default: int = 0) -> int:
        v = self.args.get(key, default)
        if not isinstance(v, int):  # pragma: no cover - grammar guarantees it
            raise TypeError(key)
        return v

    def has(self, key: str) -> bool:
        return key in self.args


_YES = {"yes", "y"}
_NO = {"no", "n"}


def parse_bool(key: str, text: str) -> bool:
    low = text.strip().lower()
    if low in _YES:
        return True
    if low in _NO:
        return False
    raise UsageError(f"{key}: expected yes or no, not {text!r}")


def _parse_int(key: str, text: str, lo: int, hi: int, what: str) -> int:
    t = text.strip()
    if not t.isdigit():
        raise UsageError(f"{key}: expected {what}, not {text!r}")
    n = int(t)
    if not lo <= n <= hi:
        raise UsageError(f"{key}: {n} is out of range ({lo}..{hi})")
    return n


def _convert(key: str, kind: T, text: str) -> Value:
    if kind is T.BOOL:
        return parse_bool(key, text)
    if kind is T.INT:
        return _parse_int(key, text, 0, 2**31 - 1, "a number")
    if kind is T.PORT:
        return _parse_int(key, text, 0, 65535, "a port number")
    if kind is T.IKEVERSION:
        return _parse_int(key, text, 1, 2, "1 or 2")
    if kind is T.LIST:
        return tuple(text.split())
    if kind is T.PROTOCOL:
        t = text.strip().lower()
        return _parse_int(key, t, 0, 255, "a protocol number") if t.isdigit() else t
    if kind is T.CONNTYPE:
        t = text.strip().lower()
        # netsh says "dialup" for what the store calls "remote" (remote-access connections).
        mapped = {"all": "all", "lan": "lan", "dialup": "remote", "remote": "remote"}.get(t)
        if mapped is None:
            raise UsageError(f"{key}: expected all, lan or dialup, not {text!r}")
        return mapped
    if kind in (T.ACTION, T.DIRECTION):
        t = text.strip().lower()
        allowed = kind.value.split("|")
        if t not in allowed:
            raise UsageError(f"{key}: expected {' or '.join(allowed)}, not {text!r}")
        return t
    return text


def parse_command(words: Sequence[str]) -> Command:
    """Parse the words after ``static`` into a Command, or raise UsageError."""
    if not words:
        raise UsageError("missing command: add, set, delete, show, check, match, exportpolicy, importpolicy")
    verb = words[0].lower()
    rest = list(words[1:])
    obj = ""
    if verb in VERBS_WITH_OBJECT:
        if not rest or "=" in rest[0]:
            raise UsageError(f"{verb}: missing object: {' | '.join(OBJECTS[verb])}")
        obj = rest.pop(0).lower()
        if obj not in OBJECTS[verb]:
            hint = (
                " (netsh has no 'set filter': delete the filter and add the new one)"
                if obj == "filter"
                else ""
            )
            raise UsageError(f"{verb} {obj}: unknown object; expected {' | '.join(OBJECTS[verb])}{hint}")
    elif (verb, "") not in GRAMMAR:
        raise UsageError(f"unknown command {words[0]!r}")
    syntax = GRAMMAR[(verb, obj)]
    where = f"{verb} {obj}".strip()
    args: dict[str, Value] = {}
    auth: list[tuple[str, str]] = []
    all_word = False
    for position, word in enumerate(rest, 1):
        key, eq, value = word.partition("=")
        key = key.strip().lower()
        if not eq:
            if key == "all" and syntax.all_word and not all_word:
                all_word = True
                continue
            # A bare word may be a mistyped secret (psk "x"): name it only when it is a keyword.
            shown = repr(word) if key in syntax.params or key == "all" else f"word {position}"
            raise UsageError(f"{where}: expected key=value, not a bare word ({shown})")
        kind = syntax.params.get(key)
        if kind is None:
            known = ", ".join(sorted(syntax.params)) or "none"
            raise UsageError(f"{where}: unknown parameter {key!r} (parameters: {known})")
        if kind is T.AUTH:
            if key == "kerberos":
                if parse_bool(key, value):
                    auth.append(("kerberos", ""))
            elif key == "psk" and any(k == "psk" for k, _ in auth):
                raise UsageError(f"{where}: psk given twice")
            else:
                auth.append((key, value))
            continue
        if key in args:
            raise UsageError(f"{where}: {key} given twice")
        args[key] = _convert(key, kind, value)
    if all_word and "name" in args:
        raise UsageError(f"{where}: give either name= or all, not both")
    missing = sorted(r for r in syntax.required if r not in args and not (r == "name" and all_word))
    if missing:
        raise UsageError(f"{where}: missing {', '.join(m + '=' for m in missing)}")
    return Command(verb, obj, args, tuple(auth), all_word)
