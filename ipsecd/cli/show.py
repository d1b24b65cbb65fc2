"""The reading commands of ``ipsecctl static``: show, show filters, match, check.

They load the store with ``load_store`` (which also checks the modes of files holding preshared
keys); ``show filters specific=yes`` and ``match`` also expand the policy with the injected host
facts (``Context.host``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from ipsecd.cli import render
from ipsecd.cli.context import CliError, Context
from ipsecd.cli.grammar import Command, UsageError
from ipsecd.policy.classifier import Classifier, Match, compile_store
from ipsecd.policy.edit import KIND_TITLES
from ipsecd.policy.exemptions import BroadcastAware, default_exemptions
from ipsecd.policy.model import PORTED_PROTOCOLS, PROTOCOL_NUMBERS, IPAddress, Policy, Store
from ipsecd.policy.order import Direction, SpecificFilter, expand_policy
from ipsecd.policy.store import load_store, store_files


def _one(table: Mapping[str, Any], kind: str, name: str) -> Any:
    if name not in table:
        raise CliError(f"no {KIND_TITLES[kind]} named {name!r}")
    return table[name]


def cmd_show(ctx: Context, cmd: Command) -> int:
    store = load_store(ctx.config)
    if cmd.obj == "filters":
        return _show_filters(ctx, cmd, store)
    assigned = store.settings.assigned_policy
    name = cmd.str_arg("name")
    if cmd.obj == "all":
        if ctx.json:
            ctx.emit_json(render.store_json(store))
        else:
            ctx.say(*render.store_text(store))
        return 0
    if cmd.obj == "rule":
        pol_name = cmd.str_arg("policy")
        policies = [_one(store.policies, "policy", pol_name)] if pol_name else list(store.policies.values())
        rules = [(p.name, r) for p in policies for r in p.rules if cmd.all or r.name == name]
        if not cmd.all and not rules:
            raise CliError(f"no rule named {name!r}" + (f" in policy {pol_name!r}" if pol_name else ""))
        if ctx.json:
            ctx.emit_json({"rules": [render.rule_json(r, p) for p, r in rules]})
        else:
            ctx.say(*_joined([render.rule_text(r, p) for p, r in rules]))
        return 0
    tables: dict[str, Mapping[str, Any]] = {
        "policy": store.policies,
        "filterlist": store.filterlists,
        "filteraction": store.filteractions,
    }
    table = tables[cmd.obj]
    objs = list(table.values()) if cmd.all else [_one(table, cmd.obj, str(name))]
    if cmd.obj == "policy":
        if ctx.json:
            ctx.emit_json({"policies": [render.policy_json(p, p.name == assigned) for p in objs]})
        else:
            ctx.say(*_joined([render.policy_text(p, p.name == assigned) for p in objs]))
    elif cmd.obj == "filterlist":
        if ctx.json:
            ctx.emit_json({"filterlists": [render.filterlist_json(f) for f in objs]})
        else:
            ctx.say(*_joined([render.filterlist_text(f) for f in objs]))
    elif ctx.json:
        ctx.emit_json({"filteractions": [render.filteraction_json(f) for f in objs]})
    else:
        ctx.say(*_joined([render.filteraction_text(f) for f in objs]))
    return 0


def _joined(blocks: Sequence[list[str]]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if out:
            out.append("")
        out.extend(b)
    return out


def _policy_for(store: Store, cmd: Command) -> Policy | None:
    name = cmd.str_arg("policy")
    if name is not None:
        return _one(store.policies, "policy", name)  # type: ignore[no-any-return]
    return store.assigned


def _show_filters(ctx: Context, cmd: Command, store: Store) -> int:
    specific = bool(cmd.args.get("specific", False))
    policy = _policy_for(store, cmd)
    if policy is None:
        raise CliError("no policy is assigned (set policy name=NAME assign=yes, or pass policy=NAME)")
    if not specific:
        rows = render.generic_rows(store, policy)
        if ctx.json:
            ctx.emit_json(
                {
                    "policy": policy.name,
                    "specific": False,
                    "filters": [
                        {
                            "rule": r.name,
                            "filterlist": r.filterlist,
                            "index": i,
                            "filteraction": r.filteraction,
                            "action": store.filteractions[r.filteraction].action.value,
                            "tunnel": None if r.tunnel is None else str(r.tunnel),
                            **render.filter_json(f),
                        }
                        for r, i, f in rows
                    ],
                }
            )
        else:
            ctx.say(f"generic filters of policy {policy.name!r} ({len(rows)}):")
            current = None
            for r, i, f in rows:
                if r is not current:
                    action = store.filteractions[r.filteraction].action.value
                    ctx.say(f"  rule {r.name!r}: filter list {r.filterlist!r}, {r.filteraction} ({action})")
                    current = r
                ctx.say(*render.filter_text(f, i))
        return 0
    filters, exemptions = _compiled(ctx, store, policy)
    if ctx.json:
        ctx.emit_json(
            {
                "policy": policy.name,
                "specific": True,
                "exemptions": sorted(exemptions.classes),
                "filters": [render.specific_json(f, i) for i, f in enumerate(filters, 1)],
            }
        )
    else:
        ctx.say(f"specific filters of policy {policy.name!r}, in match order ({len(filters)}):")
        ctx.say(*render.exemptions_text(exemptions))
        ctx.say(render.SPECIFIC_HEADER)
        ctx.say(*(render.specific_text(f, i) for i, f in enumerate(filters, 1)))
    return 0


def _compiled(ctx: Context, store: Store, policy: Policy | None) -> tuple[list[SpecificFilter], Any]:
    host = ctx.need_host()
    broadcasts = host.broadcast_addresses() if isinstance(host, BroadcastAware) else ()
    exemptions = default_exemptions(store.settings.ipsecexempt, broadcasts)
    if policy is not None and policy is store.assigned:
        compiled = compile_store(store, host)
        return list(compiled.filters), compiled.exemptions
    filters = expand_policy(store, policy, host) if policy is not None else []
    return sorted(filters, key=lambda f: f.sort_key), exemptions


def _address(key: str, text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise UsageError(f"{key}: expected an IP address, not {text!r}") from None


def cmd_match(ctx: Context, cmd: Command) -> int:
    store = load_store(ctx.config)
    src = _address("srcaddr", str(cmd.args["srcaddr"]))
    dst = _address("dstaddr", str(cmd.args["dstaddr"]))
    if src.version != dst.version:
        raise UsageError("srcaddr and dstaddr must be of the same IP version")
    proto_arg = cmd.args.get("protocol")
    if proto_arg is None:
        raise UsageError("match: missing protocol= (a packet has one protocol: tcp, udp, icmp, a number)")
    if isinstance(proto_arg, str):
        if proto_arg not in PROTOCOL_NUMBERS or proto_arg == "any":
            raise UsageError(f"protocol: unknown protocol {proto_arg!r}")
        protocol = PROTOCOL_NUMBERS[proto_arg]
    else:
        protocol = cmd.int_arg("protocol")
    sport = cmd.int_arg("srcport")
    dport = cmd.int_arg("dstport")
    if (sport or dport) and protocol not in PORTED_PROTOCOLS:
        raise UsageError("srcport/dstport need protocol tcp or udp")
    direction = Direction(str(cmd.args.get("direction", "out")))
    policy = _policy_for(store, cmd)
    filters, exemptions = _compiled(ctx, store, policy)
    match: Match | None = Classifier(filters, exemptions).lookup(direction, src, dst, protocol, sport, dport)
    position = None
    if match is not None and match.filter is not None:
        position = next((i for i, f in enumerate(filters, 1) if f == match.filter), None)
    packet = {
        "direction": direction.value,
        "srcaddr": str(src),
        "dstaddr": str(dst),
        "protocol": protocol,
        "srcport": sport,
        "dstport": dport,
    }
    action = "permit" if match is None else match.action.value
    if ctx.json:
        ctx.emit_json(
            {
                "packet": packet,
                "policy": policy.name if policy else None,
                "action": action,
                "exempt": None if match is None else match.exempt,
                "matched": match is not None and match.filter is not None,
                "filter": (
                    None
                    if match is None or match.filter is None
                    else render.specific_json(match.filter, position or 0)
                ),
            }
        )
        return 0
    sp = f":{sport}" if sport else ""
    dp = f":{dport}" if dport else ""
    ctx.say(f"packet: {direction.value} {src}{sp} -> {dst}{dp} protocol {render.protocol_name(protocol)}")
    ctx.say(f"policy: {policy.name if policy else 'none assigned'}")
    if match is None:
        ctx.say("result: permit (no filter matches: not IPsec traffic)")
    elif match.exempt is not None:
        ctx.say(f"result: permit (exempt: {match.exempt})")
    else:
        f = match.filter
        assert f is not None
        ctx.say(f"result: {action} (filter action {f.filteraction!r})")
        ctx.say(f"rule: {f.rule!r}, filter list {f.filterlist!r}")
        ctx.say(render.SPECIFIC_HEADER, render.specific_text(f, position or 0))
    return 0


def _plural(n: int, word: str) -> str:
    one, _, many = word.partition("/")
    return f"{n} {one if n == 1 else (many or one + 's')}"


def cmd_check(ctx: Context, cmd: Command) -> int:
    store = load_store(ctx.config)
    files = store_files(ctx.config)
    user = {
        "policies": sum(not p.builtin for p in store.policies.values()),
        "filterlists": sum(not f.builtin for f in store.filterlists.values()),
        "filteractions": sum(not f.builtin for f in store.filteractions.values()),
        "rules": sum(len(p.rules) for p in store.policies.values() if not p.builtin),
    }
    assigned = store.settings.assigned_policy
    counts = ", ".join(
        _plural(n, word)
        for n, word in (
            (len(files), "file"),
            (user["policies"], "policy/policies"),
            (user["rules"], "rule"),
            (user["filterlists"], "filter list"),
            (user["filteractions"], "filter action"),
        )
    )
    summary = f"{ctx.config}: OK: {counts} (plus built-ins); assigned policy: {assigned or 'none'}"
    if ctx.json:
        ctx.emit_json({"ok": True, "files": [str(f) for f in files], "assigned_policy": assigned, **user})
    else:
        ctx.say(summary)
    return 0
