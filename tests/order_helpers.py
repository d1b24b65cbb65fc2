"""Small builders of policy model objects for the order/classifier tests (no TOML needed)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ipsecd.policy.model import (
    Action,
    AddressSpec,
    AddrKind,
    DaemonSettings,
    Filter,
    FilterAction,
    FilterList,
    IPAddress,
    Policy,
    Rule,
    Store,
)

ME = AddressSpec(AddrKind.ME)
ANY = AddressSpec(AddrKind.ANY)


def net(text: str) -> AddressSpec:
    return AddressSpec(AddrKind.NETWORK, network=ipaddress.ip_network(text))


def rng(first: str, last: str) -> AddressSpec:
    return AddressSpec(AddrKind.RANGE, first=ipaddress.ip_address(first), last=ipaddress.ip_address(last))


def name(text: str) -> AddressSpec:
    return AddressSpec(AddrKind.DNSNAME, name=text)


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def store_of(
    rules: Sequence[tuple[str, Sequence[Filter], Action]],
    *,
    tunnel: dict[str, IPAddress] | None = None,
    inactive: Sequence[str] = (),
    ipsecexempt: int = 3,
    assigned: bool = True,
) -> Store:
    """A store with one policy "P": one rule, filter list and filter action per (name, ...) item."""
    tunnel = tunnel or {}
    lists = {}
    actions = {}
    rule_objs = []
    for rname, filters, action in rules:
        lists[f"{rname}-list"] = FilterList(f"{rname}-list", filters=tuple(filters))
        actions[f"{rname}-action"] = FilterAction(f"{rname}-action", action)
        rule_objs.append(
            Rule(
                rname,
                f"{rname}-list",
                f"{rname}-action",
                tunnel=tunnel.get(rname),
                active=rname not in inactive,
            )
        )
    policy = Policy("P", rules=tuple(rule_objs))
    settings = DaemonSettings(assigned_policy="P" if assigned else None, ipsecexempt=ipsecexempt)
    return Store(settings, lists, actions, {"P": policy})
