"""Negotiated SA pairs' bookkeeping, and which of them a store reload ends (docs/operations.md).

A reload keeps an IKE-negotiated SA pair only when the rule it was negotiated under is still in
the assigned policy with the same content: the rule itself, its filter list and its filter action
(``origin``, where the object was read from, does not count: the dataclasses leave it out of
``==``). Every other pair is deleted with a DELETE to the peer by ``IkeManager.prune``.

A pair's rule is found once, when it is installed, from its traffic selectors: the first (most
specific) outbound negotiate filter of the policy in force that covers them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ipsecd.policy.classifier import CompiledPolicy
from ipsecd.policy.model import Action, FilterAction, FilterList, Rule, Store
from ipsecd.policy.order import Direction


@dataclass(frozen=True)
class RuleRef:
    """The names that identify a negotiated pair's rule in a store."""

    policy: str
    rule: str
    filteraction: str

    @property
    def label(self) -> str:
        return f"{self.policy}/{self.rule}"


@dataclass
class _Child:
    """What we installed for one Quick Mode: the states' keys and the monitor record."""

    qm_id: int
    states: list[tuple[int, int, Any]]
    inbound_spi: int
    outbound_spi: int
    filter: str
    seen_in: int = 0  # inbound packets counted at the last tick
    rule: RuleRef | None = None  # what it was negotiated under (a reload that changes it ends it)


@dataclass(frozen=True)
class ChildInfo:
    """What the monitor shows of a negotiated SA pair besides its SAParams."""

    local_ts: str
    remote_ts: str
    protocol: int
    sport: int
    dport: int
    esp_enc: str | None
    esp_integ: str | None
    ah: str | None
    life_s: int
    life_kb: int
    pfs_group: int | None
    mm_id: int | None
    local_addr: str = ""  # the first address of each traffic selector (finds the pair's rule)
    remote_addr: str = ""


def rule_for(
    compiled: CompiledPolicy | None, local: str, remote: str, protocol: int, sport: int, dport: int
) -> RuleRef | None:
    """The rule of the first outbound negotiate filter covering local -> remote (None: no such)."""
    if compiled is None or not local or not remote:
        return None
    try:
        lo, re_ = ipaddress.ip_address(local), ipaddress.ip_address(remote)
    except ValueError:
        return None
    for f in compiled.filters:
        if f.action is not Action.NEGOTIATE or f.rule is None or f.version != lo.version:
            continue
        if f.direction is not Direction.OUTBOUND or lo.version != re_.version:
            continue
        if not (f.src.first <= int(lo) <= f.src.last and f.dst.first <= int(re_) <= f.dst.last):
            continue
        if f.protocol not in (0, protocol) or f.srcport not in (0, sport) or f.dstport not in (0, dport):
            continue
        return RuleRef(f.policy, f.rule, f.filteraction)
    return None


def _content(store: Store, ref: RuleRef) -> tuple[Rule, FilterList | None, FilterAction | None] | None:
    """What the pair was negotiated from, or None when the rule is gone from the assigned policy."""
    policy = store.assigned
    if policy is None or policy.name != ref.policy:
        return None
    rule = next((r for r in policy.rules if r.name == ref.rule and r.active), None)
    if rule is None or rule.filteraction != ref.filteraction:
        return None
    return rule, store.filterlists.get(rule.filterlist), store.filteractions.get(rule.filteraction)


def rule_changed(old: Store, new: Store, ref: RuleRef) -> bool:
    """True when ``ref`` vanished from the new store or its rule, filter list or action differ."""
    now = _content(new, ref)
    return now is None or now != _content(old, ref)
