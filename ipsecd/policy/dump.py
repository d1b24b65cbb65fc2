"""``ipsecctl dump``: a store as the ``ipsecctl static`` commands that recreate it.

netsh has a ``dump`` command in every context, but its ``ipsec static`` context never
implemented it; ipsecctl's does. ``dump_script(store)`` is pure: it reads a loaded ``Store`` and
returns a POSIX shell script, one ``ipsecctl "$@" static ...`` line per command (so that
``sh dump.sh --config /tmp/new`` replays it into another store). Running the script against an
empty store gives a store that loads equal to the original (tests/test_dump.py checks it on
the example store and on random stores).

Order of the commands: daemon settings; filter lists and their filters; filter actions;
policies, each followed by its rules; the authentication of built-in policies; the assignment
last (an assigned built-in policy needs its authentication first).

The script holds the preshared keys (it must recreate them): keep it private.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from ipsecd.policy import builtin
from ipsecd.policy.model import (
    PROTOCOL_NUMBERS,
    Action,
    AuthKind,
    AuthMethod,
    ConnType,
    DaemonSettings,
    Filter,
    FilterAction,
    FilterList,
    Policy,
    Rule,
    Store,
)

_PROTOCOL_NAMES = {n: name for name, n in PROTOCOL_NUMBERS.items()}
DEFAULTS = DaemonSettings()


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def _command(words: Iterable[str], params: Iterable[tuple[str, object]]) -> str:
    parts = ["ipsecctl", '"$@"', "static", *words]
    for key, value in params:
        text = _yn(value) if isinstance(value, bool) else str(value)
        parts.append(shlex.quote(f"{key}={text}"))
    return " ".join(parts)


def _auth_params(methods: Iterable[AuthMethod]) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for m in methods:
        if m.kind is AuthKind.PSK:
            out.append(("psk", m.psk or ""))
        elif m.kind is AuthKind.CERT:
            out.append(("rootca", f"{m.rootca} certmap:{_yn(m.certmap)}"))
        else:
            out.append(("kerberos", True))
    return out


def _settings(s: DaemonSettings) -> list[str]:
    out = []
    for key in ("ipsecexempt", "ikelogging", "strongcrlcheck"):
        value = getattr(s, key)
        if value != getattr(DEFAULTS, key):
            text = int(value) if isinstance(value, bool) else value
            out.append(_command(["set", "config"], [("property", key), ("value", text)]))
    return out


def _filter(fl: FilterList, f: Filter) -> str:
    params: list[tuple[str, object]] = [("filterlist", fl.name), ("srcaddr", f.src), ("dstaddr", f.dst)]
    if f.protocol:
        params.append(("protocol", _PROTOCOL_NAMES.get(f.protocol, f.protocol)))
    if f.srcport:
        params.append(("srcport", f.srcport))
    if f.dstport:
        params.append(("dstport", f.dstport))
    if not f.mirrored:
        params.append(("mirrored", False))
    if f.description:
        params.append(("description", f.description))
    return _command(["add", "filter"], params)


def _filterlist(fl: FilterList) -> list[str]:
    params: list[tuple[str, object]] = [("name", fl.name)]
    if fl.description:
        params.append(("description", fl.description))
    return [_command(["add", "filterlist"], params), *(_filter(fl, f) for f in fl.filters)]


def _filteraction(fa: FilterAction) -> str:
    params: list[tuple[str, object]] = [("name", fa.name), ("action", fa.action.value)]
    if fa.description:
        params.append(("description", fa.description))
    if fa.action is Action.NEGOTIATE:
        params.append(("qmsecmethods", " ".join(str(m) for m in fa.qmsecmethods)))
        params += [("inpass", fa.inpass), ("soft", fa.soft), ("qmpfs", fa.qmpfs)]
    return _command(["add", "filteraction"], params)


def _rule(p: Policy, r: Rule) -> str:
    params: list[tuple[str, object]] = [
        ("name", r.name),
        ("policy", p.name),
        ("filterlist", r.filterlist),
        ("filteraction", r.filteraction),
    ]
    if r.description:
        params.append(("description", r.description))
    if r.tunnel is not None:
        params.append(("tunnel", r.tunnel))
    if r.conntype is not ConnType.ALL:
        params.append(("conntype", "dialup" if r.conntype is ConnType.REMOTE else r.conntype.value))
    if not r.active:
        params.append(("activate", False))
    if r.ikeversion != 1:
        params.append(("ikeversion", r.ikeversion))
    if r.forceencap:
        params.append(("forceencap", True))
    return _command(["add", "rule"], params + _auth_params(r.auth))


def _policy(p: Policy) -> list[str]:
    params: list[tuple[str, object]] = [("name", p.name)]
    if p.description:
        params.append(("description", p.description))
    params += [
        ("pollinginterval", p.pollinginterval),
        ("mmlifetime", p.mmlifetime),
        ("qmpermm", p.qmpermm),
        ("mmsecmethods", " ".join(str(m) for m in p.mmsecmethods)),
        ("mmpfs", p.mmpfs),
        ("activatedefaultrule", p.activatedefaultrule),
    ]
    # The default response rule's methods are written out even when the store derives them from
    # the first rule: the policy is validated before its rules exist, and the loaded model is
    # the same either way.
    params += _auth_params(p.default_rule_auth)
    return [_command(["add", "policy"], params), *(_rule(p, r) for r in p.rules)]


def dump_lines(store: Store) -> list[str]:
    """The commands, without the script's header."""
    out = _settings(store.settings)
    out += [line for fl in store.filterlists.values() if not fl.builtin for line in _filterlist(fl)]
    out += [_filteraction(fa) for fa in store.filteractions.values() if not fa.builtin]
    out += [line for p in store.policies.values() if not p.builtin for line in _policy(p)]
    for name, p in store.policies.items():
        if p.builtin and p.default_rule_auth != builtin.BUILTIN_POLICIES[name].default_rule_auth:
            out.append(
                _command(["set", "defaultrule"], [("policy", name), *_auth_params(p.default_rule_auth)])
            )
    if store.settings.assigned_policy:
        out.append(_command(["set", "policy"], [("name", store.settings.assigned_policy), ("assign", True)]))
    return out


def dump_script(store: Store, source: str = "") -> str:
    """The whole script: a header and every command (see the module docstring)."""
    header = [
        "#!/bin/sh",
        f"# ipsecctl dump{' of ' + source if source else ''}: recreates the policy store.",
        "# Run it against an empty store: sh THIS_FILE --config PATH",
        "# It holds the preshared keys: keep it private (chmod 600).",
        "set -e",
    ]
    return "\n".join([*header, *dump_lines(store)]) + "\n"
