"""Text and JSON renderings of policy objects for ``ipsecctl static show`` and ``match``.

The JSON keys are documented in docs/ipsecctl.md and are stable. A preshared key is never
rendered: text says ``preshared key (set)``, JSON says ``{"method": "psk", "psk": "(set)"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ipsecd.policy.exemptions import Exemptions
from ipsecd.policy.model import (
    AuthKind,
    AuthMethod,
    DaemonSettings,
    Filter,
    FilterAction,
    FilterList,
    Policy,
    Rule,
    Store,
)
from ipsecd.policy.order import SpecificFilter

PSK_SET = "(set)"

_PROTOCOL_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 50: "esp", 51: "ah", 47: "gre"}


def protocol_name(n: int) -> str:
    return "any" if n == 0 else _PROTOCOL_NAMES.get(n, str(n))


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def _port(n: int) -> str:
    return "any" if n == 0 else str(n)


# -- JSON ------------------------------------------------------------------------------------
def auth_json(a: AuthMethod) -> dict[str, Any]:
    if a.kind is AuthKind.PSK:
        return {"method": "psk", "psk": PSK_SET}
    if a.kind is AuthKind.CERT:
        return {"method": "cert", "rootca": a.rootca, "certmap": a.certmap}
    return {"method": a.kind.value}


def filter_json(f: Filter) -> dict[str, Any]:
    return {
        "srcaddr": str(f.src),
        "dstaddr": str(f.dst),
        "protocol": f.protocol,
        "srcport": f.srcport,
        "dstport": f.dstport,
        "mirrored": f.mirrored,
        "description": f.description,
    }


def filterlist_json(fl: FilterList) -> dict[str, Any]:
    return {
        "name": fl.name,
        "description": fl.description,
        "builtin": fl.builtin,
        "filters": [filter_json(f) for f in fl.filters],
    }


def filteraction_json(fa: FilterAction) -> dict[str, Any]:
    return {
        "name": fa.name,
        "description": fa.description,
        "builtin": fa.builtin,
        "action": fa.action.value,
        "qmsecmethods": [str(m) for m in fa.qmsecmethods],
        "inpass": fa.inpass,
        "soft": fa.soft,
        "qmpfs": fa.qmpfs,
    }


def rule_json(r: Rule, policy: str) -> dict[str, Any]:
    return {
        "name": r.name,
        "policy": policy,
        "description": r.description,
        "filterlist": r.filterlist,
        "filteraction": r.filteraction,
        "auth": [auth_json(a) for a in r.auth],
        "tunnel": None if r.tunnel is None else str(r.tunnel),
        "conntype": r.conntype.value,
        "activate": r.active,
        "ikeversion": r.ikeversion,
        "forceencap": r.forceencap,
    }


def policy_json(p: Policy, assigned: bool) -> dict[str, Any]:
    return {
        "name": p.name,
        "description": p.description,
        "builtin": p.builtin,
        "assigned": assigned,
        "pollinginterval": p.pollinginterval,
        "mmlifetime": p.mmlifetime,
        "qmpermm": p.qmpermm,
        "mmsecmethods": [str(m) for m in p.mmsecmethods],
        "mmpfs": p.mmpfs,
        "activatedefaultrule": p.activatedefaultrule,
        "defaultruleauth": [auth_json(a) for a in p.default_rule_auth],
        "rules": [rule_json(r, p.name) for r in p.rules],
    }


def settings_json(s: DaemonSettings) -> dict[str, Any]:
    return {
        "assigned_policy": s.assigned_policy,
        "ipsecexempt": s.ipsecexempt,
        "ikelogging": s.ikelogging,
        "strongcrlcheck": s.strongcrlcheck,
    }


def specific_json(f: SpecificFilter, position: int) -> dict[str, Any]:
    return {
        "position": position,
        "direction": f.direction.value,
        "srcaddr": str(f.src),
        "dstaddr": str(f.dst),
        "protocol": f.protocol,
        "srcport": f.srcport,
        "dstport": f.dstport,
        "action": f.action.value,
        "weight": f.weight,
        "policy": f.policy,
        "rule": f.rule,
        "filterlist": f.filterlist,
        "filteraction": f.filteraction,
        "tunnel": None if f.tunnel is None else str(f.tunnel),
        "mirror": f.mirror,
    }


def store_json(store: Store) -> dict[str, Any]:
    assigned = store.settings.assigned_policy
    return {
        "settings": settings_json(store.settings),
        "policies": [policy_json(p, p.name == assigned) for p in store.policies.values()],
        "filterlists": [filterlist_json(f) for f in store.filterlists.values()],
        "filteractions": [filteraction_json(f) for f in store.filteractions.values()],
    }


# -- text ------------------------------------------------------------------------------------
def _field(label: str, value: object) -> str:
    return f"  {label:<22}: {value}"


def _title(kind: str, name: str, builtin: bool) -> str:
    return f"{kind} {name!r}" + (" (built-in)" if builtin else "")


def auth_text(a: AuthMethod) -> str:
    if a.kind is AuthKind.PSK:
        return "preshared key (set)"
    return str(a)


def filter_text(f: Filter, i: int) -> list[str]:
    proto = protocol_name(f.protocol)
    line = (
        f"    filter {i}: {f.src} port {_port(f.srcport)} -> {f.dst} port {_port(f.dstport)}"
        f" protocol {proto} mirrored {_yn(f.mirrored)}"
    )
    return [line + (f"  ({f.description})" if f.description else "")]


def filterlist_text(fl: FilterList) -> list[str]:
    out = [_title("filter list", fl.name, fl.builtin)]
    if fl.description:
        out.append(_field("description", fl.description))
    out.append(_field("filters", len(fl.filters)))
    for i, f in enumerate(fl.filters, 1):
        out.extend(filter_text(f, i))
    return out


def filteraction_text(fa: FilterAction) -> list[str]:
    out = [_title("filter action", fa.name, fa.builtin)]
    if fa.description:
        out.append(_field("description", fa.description))
    out.append(_field("action", fa.action.value))
    if fa.qmsecmethods:
        out.append(_field("qmsecmethods", " ".join(str(m) for m in fa.qmsecmethods)))
    out.append(_field("inpass", _yn(fa.inpass)))
    out.append(_field("soft", _yn(fa.soft)))
    out.append(_field("qmpfs", _yn(fa.qmpfs)))
    return out


def rule_text(r: Rule, policy: str) -> list[str]:
    out = [f"rule {r.name!r} of policy {policy!r}"]
    if r.description:
        out.append(_field("description", r.description))
    out.append(_field("filterlist", r.filterlist))
    out.append(_field("filteraction", r.filteraction))
    out.append(_field("auth", ", ".join(auth_text(a) for a in r.auth) or "none"))
    out.append(_field("tunnel", r.tunnel if r.tunnel is not None else "none (transport mode)"))
    out.append(_field("conntype", r.conntype.value))
    out.append(_field("activate", _yn(r.active)))
    out.append(_field("ikeversion", r.ikeversion))
    out.append(_field("forceencap", _yn(r.forceencap)))
    return out


def policy_text(p: Policy, assigned: bool, with_rules: bool = True) -> list[str]:
    out = [_title("policy", p.name, p.builtin)]
    if p.description:
        out.append(_field("description", p.description))
    out.append(_field("assigned", _yn(assigned)))
    out.append(_field("pollinginterval", f"{p.pollinginterval} minutes"))
    out.append(_field("mmlifetime", f"{p.mmlifetime} minutes"))
    out.append(_field("qmpermm", p.qmpermm or "unlimited"))
    if p.mmsecmethods:
        out.append(_field("mmsecmethods", " ".join(str(m) for m in p.mmsecmethods)))
    out.append(_field("mmpfs", _yn(p.mmpfs)))
    out.append(_field("activatedefaultrule", _yn(p.activatedefaultrule)))
    if p.default_rule_auth:
        out.append(_field("defaultrule auth", ", ".join(auth_text(a) for a in p.default_rule_auth)))
    out.append(_field("rules", len(p.rules)))
    if with_rules:
        for r in p.rules:
            out.extend("  " + line for line in rule_text(r, p.name))
    return out


def settings_text(s: DaemonSettings) -> list[str]:
    return [
        "daemon settings",
        _field("assigned policy", s.assigned_policy or "none"),
        _field("ipsecexempt", s.ipsecexempt),
        _field("ikelogging", _yn(s.ikelogging)),
        _field("strongcrlcheck", s.strongcrlcheck),
    ]


def store_text(store: Store) -> list[str]:
    out = settings_text(store.settings)
    assigned = store.settings.assigned_policy
    for p in store.policies.values():
        out += ["", *policy_text(p, p.name == assigned)]
    for fl in store.filterlists.values():
        out += ["", *filterlist_text(fl)]
    for fa in store.filteractions.values():
        out += ["", *filteraction_text(fa)]
    return out


SPECIFIC_HEADER = (
    f"{'#':>4} {'dir':3} {'source':<24} {'sport':>5} {'destination':<24} {'dport':>5} {'proto':<6}"
    f" {'action':<9} {'weight':>6}  rule / filter action"
)


def specific_text(f: SpecificFilter, position: int) -> str:
    tunnel = f" tunnel {f.tunnel}" if f.tunnel is not None else ""
    return (
        f"{position:>4} {f.direction.value:3} {f.src!s:<24} {_port(f.srcport):>5} {f.dst!s:<24}"
        f" {_port(f.dstport):>5} {protocol_name(f.protocol):<6} {f.action.value:<9} {f.weight:>6}"
        f"  {f.rule} / {f.filteraction}{tunnel}{' (mirror)' if f.mirror else ''}"
    )


def exemptions_text(ex: Exemptions) -> list[str]:
    return ["exempt before every filter:", *(f"  {line}" for line in ex.describe())]


def generic_rows(store: Store, policy: Policy) -> Sequence[tuple[Rule, int, Filter]]:
    rows: list[tuple[Rule, int, Filter]] = []
    for r in policy.rules:
        fl = store.filterlists.get(r.filterlist)
        if not r.active or fl is None:
            continue
        rows.extend((r, i, f) for i, f in enumerate(fl.filters, 1))
    return rows
