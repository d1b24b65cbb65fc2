"""The policy views of the IP Security Monitor: main/quick mode filters and policies, rules.

Pure functions from the loaded ``Store`` and its ``CompiledPolicy`` to JSON-able dicts (keys in
docs/monitor.md). Windows' IP Security Monitor splits the active policy into:

- *main mode filters*: one per address pair of a negotiate rule (no protocol or ports), with
  the authentication methods and the main mode policy (here: the policy's mmsecmethods);
- *quick mode filters*: every filter with protocol and ports, its filter action (the quick mode
  policy) and the action taken;
- *main mode policies* (the policy's main mode security methods, lifetime, quick modes per main
  mode) and *quick mode policies* (each negotiate filter action's security methods, PFS).

Each filter list comes as *generic* filters (as written, with ``me`` and keywords) and as
*specific* filters (expanded, one direction, with weights) from ``ipsecd.policy.order``.
"""

from __future__ import annotations

from typing import Any

from ipsecd.policy.classifier import CompiledPolicy
from ipsecd.policy.model import Action, AuthKind, AuthMethod, Filter, Policy, Rule, Store
from ipsecd.policy.order import SpecificFilter

View = dict[str, Any]


def auth_view(a: AuthMethod) -> View:
    """An authentication method without its secret (the PSK is never shown)."""
    if a.kind is AuthKind.PSK:
        return {"method": "psk"}
    if a.kind is AuthKind.CERT:
        return {"method": "cert", "rootca": a.rootca, "certmap": a.certmap}
    return {"method": a.kind.value}


def _active_rules(store: Store, policy: Policy) -> list[tuple[Rule, list[Filter], Action]]:
    rows: list[tuple[Rule, list[Filter], Action]] = []
    for rule in policy.rules:
        fl = store.filterlists.get(rule.filterlist)
        fa = store.filteractions.get(rule.filteraction)
        if rule.active and fl is not None and fa is not None:
            rows.append((rule, list(fl.filters), fa.action))
    return rows


def _generic(rule: Rule, flt: Filter, index: int, policy: str, action: Action, main: bool) -> View:
    view: View = {
        "type": "generic",
        "name": f"{policy}/{rule.name}/{index}",
        "policy": policy,
        "rule": rule.name,
        "filterlist": rule.filterlist,
        "srcaddr": str(flt.src),
        "dstaddr": str(flt.dst),
        "mirrored": flt.mirrored,
        "tunnel": None if rule.tunnel is None else str(rule.tunnel),
        "conntype": rule.conntype.value,
    }
    if main:
        view["auth"] = [auth_view(a) for a in rule.auth]
        view["mmpolicy"] = policy
    else:
        view.update(
            {
                "protocol": flt.protocol,
                "srcport": flt.srcport,
                "dstport": flt.dstport,
                "action": action.value,
                "qmpolicy": rule.filteraction,
            }
        )
    return view


def _specific(f: SpecificFilter, position: int, main: bool) -> View:
    view: View = {
        "type": "specific",
        "name": f"{f.policy}/{f.rule}",
        "position": position,
        "direction": f.direction.value,
        "srcaddr": str(f.src),
        "dstaddr": str(f.dst),
        "weight": f.weight,
        "policy": f.policy,
        "rule": f.rule,
        "filterlist": f.filterlist,
        "tunnel": None if f.tunnel is None else str(f.tunnel),
        "mirror": f.mirror,
    }
    if main:
        view["mmpolicy"] = f.policy
    else:
        view.update(
            {
                "protocol": f.protocol,
                "srcport": f.srcport,
                "dstport": f.dstport,
                "action": f.action.value,
                "qmpolicy": f.filteraction,
            }
        )
    return view


def _mm_weight(f: SpecificFilter) -> int:
    # A main mode filter has addresses only: the address part of the weight (docs/policy.md).
    return f.weight - f.weight % 100


def filter_views(store: Store, compiled: CompiledPolicy) -> tuple[list[View], list[View]]:
    """``(mmfilters, qmfilters)``: generic then specific filters of the applied policy."""
    policy = store.policies.get(compiled.policy) if compiled.policy else None
    if policy is None:
        return [], []
    mm: list[View] = []
    qm: list[View] = []
    for rule, filters, action in _active_rules(store, policy):
        for i, flt in enumerate(filters, 1):
            qm.append(_generic(rule, flt, i, policy.name, action, main=False))
            if action is Action.NEGOTIATE:
                mm.append(_generic(rule, flt, i, policy.name, action, main=True))
    seen: set[tuple[str, str, str, str | None]] = set()
    mm_specific: list[View] = []
    for position, f in enumerate(compiled.filters, 1):
        qm.append(_specific(f, position, main=False))
        if f.action is not Action.NEGOTIATE:
            continue
        key = (f.direction.value, str(f.src), str(f.dst), None if f.tunnel is None else str(f.tunnel))
        if key in seen:
            continue  # one main mode filter per address pair
        seen.add(key)
        view = _specific(f, len(mm_specific) + 1, main=True)
        view["weight"] = _mm_weight(f)
        mm_specific.append(view)
    return mm + mm_specific, qm


def mmpolicy_views(store: Store, compiled: CompiledPolicy) -> list[View]:
    policy = store.policies.get(compiled.policy) if compiled.policy else None
    if policy is None:
        return []
    return [
        {
            "name": policy.name,
            "mmlifetime_minutes": policy.mmlifetime,
            "qmpermm": policy.qmpermm,
            "mmpfs": policy.mmpfs,
            "mmsecmethods": [
                {"encryption": m.encryption.value, "integrity": m.hash.value, "dh_group": m.group}
                for m in policy.mmsecmethods
            ],
        }
    ]


def qmpolicy_views(store: Store, compiled: CompiledPolicy) -> list[View]:
    policy = store.policies.get(compiled.policy) if compiled.policy else None
    if policy is None:
        return []
    out: list[View] = []
    seen: set[str] = set()
    for rule, _filters, action in _active_rules(store, policy):
        fa = store.filteractions[rule.filteraction]
        if action is not Action.NEGOTIATE or fa.name in seen:
            continue
        seen.add(fa.name)
        out.append(
            {
                "name": fa.name,
                "qmpfs": fa.qmpfs,
                "inpass": fa.inpass,
                "soft": fa.soft,
                "qmsecmethods": [
                    {
                        "text": str(m),
                        "ah": None if m.ah is None else m.ah.value,
                        "esp_encryption": None if m.esp_enc is None else m.esp_enc.value,
                        "esp_integrity": None if m.esp_auth is None else m.esp_auth.value,
                        "lifetime_kilobytes": m.lifetime_kb,
                        "lifetime_seconds": m.lifetime_s,
                    }
                    for m in fa.qmsecmethods
                ],
            }
        )
    return out


def rule_views(store: Store, compiled: CompiledPolicy) -> list[View]:
    policy = store.policies.get(compiled.policy) if compiled.policy else None
    if policy is None:
        return []
    counts: dict[str | None, int] = {}
    for f in compiled.filters:
        counts[f.rule] = counts.get(f.rule, 0) + 1
    return [
        {
            "name": rule.name,
            "policy": policy.name,
            "type": "tunnel" if rule.tunnel is not None else "transport",
            "filterlist": rule.filterlist,
            "filteraction": rule.filteraction,
            "action": action.value,
            "tunnel": None if rule.tunnel is None else str(rule.tunnel),
            "conntype": rule.conntype.value,
            "auth": [auth_view(a) for a in rule.auth],
            "ikeversion": rule.ikeversion,
            "forceencap": rule.forceencap,
            "filters": [
                {
                    "srcaddr": str(f.src),
                    "dstaddr": str(f.dst),
                    "protocol": f.protocol,
                    "srcport": f.srcport,
                    "dstport": f.dstport,
                    "mirrored": f.mirrored,
                }
                for f in filters
            ],
            "generic_filters": len(filters),
            "specific_filters": counts.get(rule.name, 0),
        }
        for rule, filters, action in _active_rules(store, policy)
    ]
