"""Manual keying as text: canonical ``add`` words, store entries, JSON, ``ip xfrm list`` output,
and ``parse_xfrm_command`` for the daemon's ``xfrm`` control command (docs/manual-keying.md).

Keys are written only when the caller asks (``keys=True``): store entries need them, displays
hide them unless ``--keys`` was given.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ipsecd.policy.manual_model import (
    LIMIT_WORDS,
    Algo,
    ManualError,
    ManualPolicy,
    ManualState,
    PolicyAction,
    PolicyId,
    StateId,
    Template,
    TmplLevel,
    XfrmSelector,
)
from ipsecd.policy.manual_parse import (
    PROTO_TEXT,
    parse_policy,
    parse_policy_id,
    parse_state,
    parse_state_id,
)

HIDDEN = "(hidden)"  # stands for a key in displays without --keys (never parsed as a key)


def _hex(n: int) -> str:
    return f"0x{n:08x}"


def _key_word(key: bytes, keys: bool) -> str:
    return "0x" + key.hex() if keys else HIDDEN


def _proto_name(p: int) -> str:
    return PROTO_TEXT.get(p, str(p))


def _selector_words(sel: XfrmSelector) -> list[str]:
    out = ["src", str(sel.src), "dst", str(sel.dst)]
    if sel.proto:
        out += ["proto", _proto_name(sel.proto)]
    if sel.sport:
        out += ["sport", str(sel.sport)]
    if sel.dport:
        out += ["dport", str(sel.dport)]
    return out


def _algo_words(a: Algo, keys: bool) -> list[str]:
    out = [a.kind, a.name, _key_word(a.key, keys)]
    if a.kind in ("aead", "auth-trunc"):
        out.append(str(a.bits))
    return out


# -- canonical add words (the store's entries) ------------------------------------------------
def state_words(s: ManualState, keys: bool = True) -> list[str]:
    """The words of ``xfrm state add`` that give ``s`` back (keys as 0x hex, or hidden)."""
    out = ["src", str(s.src), "dst", str(s.dst), "proto", s.proto.value, "spi", _hex(s.spi)]
    if s.reqid:
        out += ["reqid", str(s.reqid)]
    # Always explicit: ip xfrm's own default is 0 (no anti-replay), ipsecd's is 64.
    out += ["mode", s.mode.value, "replay-window", str(s.replay_window)]
    if s.esn:
        out += ["flag", "esn"]
    for a in (s.aead, s.enc, s.auth):
        if a is not None:
            out += _algo_words(a, keys)
    if s.encap is not None:
        out += ["encap", "espinudp", str(s.encap.sport), str(s.encap.dport), str(s.encap.oa)]
    if s.sel is not None:
        out += ["sel", *_selector_words(s.sel)]
    for word in LIMIT_WORDS:
        n = getattr(s.limits, word.replace("-", "_"))
        if n:
            out += ["limit", word, str(n)]
    return out


def _template_words(t: Template) -> list[str]:
    out = ["tmpl"]
    if t.src is not None:
        out += ["src", str(t.src)]
    if t.dst is not None:
        out += ["dst", str(t.dst)]
    out += ["proto", t.proto.value]
    if t.spi:
        out += ["spi", _hex(t.spi)]
    out += ["mode", t.mode.value]
    if t.reqid:
        out += ["reqid", str(t.reqid)]
    if t.level is not TmplLevel.REQUIRED:
        out += ["level", t.level.value]
    return out


def policy_words(p: ManualPolicy) -> list[str]:
    """The words of ``xfrm policy add`` that give ``p`` back."""
    out = [*_selector_words(p.sel), "dir", p.dir.value]
    if p.action is not PolicyAction.ALLOW:
        out += ["action", p.action.value]
    if p.priority:
        out += ["priority", str(p.priority)]
    for t in p.tmpls:
        out += _template_words(t)
    return out


def state_entry(s: ManualState) -> str:
    """A store entry (``[xfrm] states = [...]``): the add words, keys included, shell-quoted."""
    return shlex.join(state_words(s, keys=True))


def policy_entry(p: ManualPolicy) -> str:
    return shlex.join(policy_words(p))


def split_entry(text: str) -> list[str]:
    """The words of a store entry, split as a POSIX shell would (quotes allowed)."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ManualError(f"cannot split into words: {exc}") from None


def parse_state_entry(text: str) -> ManualState:
    return parse_state(split_entry(text))


def parse_policy_entry(text: str) -> ManualPolicy:
    return parse_policy(split_entry(text))


# -- JSON (control replies, --json) ------------------------------------------------------------
def _sel_json(sel: XfrmSelector) -> dict[str, Any]:
    return {
        "src": str(sel.src),
        "dst": str(sel.dst),
        "proto": sel.proto,
        "sport": sel.sport,
        "dport": sel.dport,
    }


def _algo_json(a: Algo | None, keys: bool) -> dict[str, Any] | None:
    if a is None:
        return None
    d: dict[str, Any] = {"kind": a.kind, "name": a.name, "bits": a.bits}
    if keys:
        d["key"] = "0x" + a.key.hex()
    return d


def state_to_json(s: ManualState, keys: bool = False) -> dict[str, Any]:
    """A state as JSON; ``key`` members only with ``keys=True``."""
    return {
        "src": str(s.src),
        "dst": str(s.dst),
        "proto": s.proto.value,
        "spi": s.spi,
        "mode": s.mode.value,
        "reqid": s.reqid,
        "replay_window": s.replay_window,
        "esn": s.esn,
        "aead": _algo_json(s.aead, keys),
        "enc": _algo_json(s.enc, keys),
        "auth": _algo_json(s.auth, keys),
        "encap": None
        if s.encap is None
        else {"type": "espinudp", "sport": s.encap.sport, "dport": s.encap.dport, "oa": str(s.encap.oa)},
        "sel": None if s.sel is None else _sel_json(s.sel),
        "limits": {w: getattr(s.limits, w.replace("-", "_")) for w in LIMIT_WORDS},
        "words": shlex.join(state_words(s, keys)),
    }


def _tmpl_json(t: Template) -> dict[str, Any]:
    return {
        "src": None if t.src is None else str(t.src),
        "dst": None if t.dst is None else str(t.dst),
        "proto": t.proto.value,
        "spi": t.spi,
        "mode": t.mode.value,
        "reqid": t.reqid,
        "level": t.level.value,
    }


def policy_to_json(p: ManualPolicy) -> dict[str, Any]:
    return {
        **_sel_json(p.sel),
        "dir": p.dir.value,
        "action": p.action.value,
        "priority": p.priority,
        "tmpls": [_tmpl_json(t) for t in p.tmpls],
        "words": shlex.join(policy_words(p)),
    }


# -- ip xfrm list output (rendered from the JSON form, so daemon replies render the same) -------
def _sel_text(d: Mapping[str, Any]) -> str:
    text = f"src {d['src']} dst {d['dst']}"
    if d.get("proto"):
        text += f" proto {_proto_name(int(d['proto']))}"
    for port in ("sport", "dport"):
        if d.get(port):
            text += f" {port} {d[port]}"
    return text


def _algo_text(a: Mapping[str, Any]) -> str:
    text = f"{a['kind']} {a['name']} {a.get('key', HIDDEN)}"
    return text + f" {a['bits']}" if a["kind"] in ("aead", "auth-trunc") else text


def render_state(d: Mapping[str, Any]) -> str:
    """One state in the layout of ``ip xfrm state list`` (from ``state_to_json``'s dict)."""
    lines = [f"src {d['src']} dst {d['dst']}"]
    lines.append(f"\tproto {d['proto']} spi {_hex(int(d['spi']))} reqid {d['reqid']} mode {d['mode']}")
    lines.append(f"\treplay-window {d['replay_window']}" + (" flag esn" if d.get("esn") else ""))
    for slot in ("aead", "enc", "auth"):
        if d.get(slot):
            lines.append("\t" + _algo_text(d[slot]))
    if d.get("encap"):
        e = d["encap"]
        lines.append(f"\tencap type espinudp sport {e['sport']} dport {e['dport']} addr {e['oa']}")
    if d.get("sel"):
        lines.append("\tsel " + _sel_text(d["sel"]))
    limits = [f"{k} {v}" for k, v in (d.get("limits") or {}).items() if v]
    if limits:
        lines.append("\tlimit " + " limit ".join(limits))
    return "\n".join(lines)


def render_policy(d: Mapping[str, Any]) -> str:
    """One policy in the layout of ``ip xfrm policy list``."""
    block = " action block" if d.get("action") == "block" else ""
    lines = [_sel_text(d), f"\tdir {d['dir']}{block} priority {d['priority']}"]
    for t in d.get("tmpls") or ():
        ends = " ".join(f"{k} {t[k]}" for k in ("src", "dst") if t.get(k))
        lines.append(f"\ttmpl {ends}".rstrip())
        spi = f" spi {_hex(int(t['spi']))}" if t.get("spi") else ""
        level = " level use" if t.get("level") == "use" else ""
        lines.append(f"\t\tproto {t['proto']}{spi} reqid {t['reqid']} mode {t['mode']}{level}")
    return "\n".join(lines)


# -- the xfrm control command ------------------------------------------------------------------
OBJECTS = ("state", "policy")
VERBS = {
    "add": "add",
    "del": "del",
    "delete": "del",
    "list": "list",
    "show": "list",
    "ls": "list",
    "flush": "flush",
}
Payload = ManualState | ManualPolicy | StateId | PolicyId | None


@dataclass(frozen=True)
class XfrmCommand:
    """``obj`` "state" or "policy"; ``verb`` "add", "del", "list" or "flush"; ``payload``:
    ManualState / ManualPolicy (add), StateId / PolicyId (del), None (list, flush)."""

    obj: str
    verb: str
    payload: Payload = None


def parse_xfrm_command(argv: Sequence[str]) -> XfrmCommand:
    """The words after ``xfrm``: ``state|policy add|del|list|flush ...``. Raises ManualError.

    Word numbers in errors count from the first word of ``argv`` (``state`` is word 1)."""
    if not argv or argv[0].lower() not in OBJECTS:
        got = f", not {argv[0]!r}" if argv else ""
        raise ManualError(f"word 1: expected state or policy{got}")
    obj = argv[0].lower()
    if len(argv) < 2 or argv[1].lower() not in VERBS:
        got = f", not {argv[1]!r}" if len(argv) > 1 else ""
        raise ManualError(f"word 2: expected add, del, list or flush{got}")
    verb = VERBS[argv[1].lower()]
    rest = list(argv[2:])
    if verb in ("list", "flush"):
        if rest:
            raise ManualError(f"word 3 {rest[0]!r}: {obj} {verb} takes no further words in ipsecd")
        return XfrmCommand(obj, verb)
    if not rest:
        raise ManualError(f"{obj} {verb}: expected more words")
    payload: Payload
    if obj == "state":
        payload = parse_state(rest, offset=2) if verb == "add" else parse_state_id(rest, offset=2)
    else:
        payload = parse_policy(rest, offset=2) if verb == "add" else parse_policy_id(rest, offset=2)
    return XfrmCommand(obj, verb, payload)


__all__ = [
    "HIDDEN",
    "XfrmCommand",
    "parse_policy_entry",
    "parse_state_entry",
    "parse_xfrm_command",
    "policy_entry",
    "policy_to_json",
    "policy_words",
    "render_policy",
    "render_state",
    "split_entry",
    "state_entry",
    "state_to_json",
    "state_words",
]
