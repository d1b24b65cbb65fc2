"""Which rule of the assigned policy IKE uses with a peer: the initiator's (the filter that raised
the acquire) and the responder's (by the peer's address, then by its Quick Mode IDs).

Pure: no sockets, no clock. docs/daemon-ike.md, "The responder's rule choice".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipsecd.datapath.sa import IPAddress
from ipsecd.ikev1.qm_policy import responder_lookup
from ipsecd.ikev1.quick_mode import Lookup, QmPolicy
from ipsecd.ikev1.selectors import TrafficSelector, selectors_of_filter
from ipsecd.policy.builtin import DEFAULT_MM_METHODS, REQUEST_SECURITY
from ipsecd.policy.classifier import CompiledPolicy
from ipsecd.policy.model import AuthKind, AuthMethod, MmSecMethod, Policy, Rule, Store
from ipsecd.policy.order import Direction, SpecificFilter

DEFAULT_RESPONSE = "<Dynamic>"  # the default response rule's name in events and the monitor


@dataclass(frozen=True)
class RulePick:
    """The rule chosen for a peer, and what IKE needs from it. The PSK never appears in repr."""

    policy: str
    rule: str
    filteraction: str
    mm_methods: tuple[MmSecMethod, ...]
    psk: str | None = field(repr=False)
    ikeversion: int = 1
    default_response: bool = False
    cert: AuthMethod | None = None  # a ``cert`` method with our certificate and key, when no PSK
    forceencap: bool = False  # the rule's ``forceencap``: fake our NAT-D hash (docs/daemon-ike.md)

    @property
    def usable(self) -> bool:
        return self.psk is not None or self.cert is not None

    @property
    def label(self) -> str:
        return f"{self.policy}/{self.rule}"


def _psk(auth: tuple[AuthMethod, ...]) -> str | None:
    """The first pre-shared key among the rule's methods (PSK first, then certificates)."""
    for a in auth:
        if a.kind is AuthKind.PSK and a.psk:
            return a.psk
    return None


def _cert(auth: tuple[AuthMethod, ...]) -> AuthMethod | None:
    """The first certificate method naming our certificate and key (RSA signatures, IKEv1)."""
    for a in auth:
        if a.kind is AuthKind.CERT and a.cert and a.key and a.rootca:
            return a
    return None


def _usable(auth: tuple[AuthMethod, ...]) -> bool:
    return _psk(auth) is not None or _cert(auth) is not None


def _mm(policy: Policy) -> tuple[MmSecMethod, ...]:
    return policy.mmsecmethods or DEFAULT_MM_METHODS


def _pick(policy: Policy, rule: Rule) -> RulePick:
    psk = _psk(rule.auth)
    cert = None if psk is not None else _cert(rule.auth)
    return RulePick(
        policy.name,
        rule.name,
        rule.filteraction,
        _mm(policy),
        psk,
        rule.ikeversion,
        cert=cert,
        forceencap=rule.forceencap,
    )


def initiator_rule(store: Store, sf: SpecificFilter) -> RulePick | None:
    """The rule of the specific filter that raised the acquire."""
    policy = store.policies.get(sf.policy)
    if policy is None:
        return None
    for rule in policy.rules:
        if rule.name == sf.rule and rule.active:
            return _pick(policy, rule)
    return None


def _covers(f: SpecificFilter, peer: IPAddress) -> bool:
    if f.version != peer.version:
        return False
    side = f.dst if f.direction is Direction.OUTBOUND else f.src
    return side.first <= int(peer) <= side.last


def responder_auth(store: Store, compiled: CompiledPolicy, peer: IPAddress) -> RulePick | None:
    """Main Mode responder: the first active rule (policy order) whose tunnel endpoint is the peer,
    then the first whose negotiate filters cover the peer's address, then the default response
    rule when the policy activates it; None when nothing authenticates this peer."""
    if compiled.policy is None:
        return None
    policy = store.policies.get(compiled.policy)
    if policy is None:
        return None
    active = [r for r in policy.rules if r.active]
    for rule in active:
        if rule.tunnel is not None and rule.tunnel == peer and _usable(rule.auth):
            return _pick(policy, rule)
    for rule in active:
        if rule.tunnel is not None or not _usable(rule.auth):
            continue
        if any(f.rule == rule.name and f.tunnel is None and _covers(f, peer) for f in compiled.filters):
            return _pick(policy, rule)
    if policy.activatedefaultrule and _usable(policy.default_rule_auth):
        psk = _psk(policy.default_rule_auth)
        return RulePick(
            policy.name,
            DEFAULT_RESPONSE,
            REQUEST_SECURITY,
            _mm(policy),
            psk,
            default_response=True,
            cert=None if psk is not None else _cert(policy.default_rule_auth),
        )
    return None


def responder_lookup_for(store: Store, compiled: CompiledPolicy, pick: RulePick) -> Lookup:
    """Quick Mode responder: the specific filters decide (``qm_policy.responder_lookup``); when none
    matches (no filter at all, not a block or permit one) and the default response rule is active, a <Dynamic> filter for exactly the peer's IDs
    with the default response methods (Request Security's)."""
    base = responder_lookup(compiled.filters, store.filteractions)
    policy = store.policies.get(pick.policy)
    fa = store.filteractions.get(REQUEST_SECURITY)
    dynamic = policy is not None and policy.activatedefaultrule and fa is not None and bool(fa.qmsecmethods)

    outbound = [selectors_of_filter(f) for f in compiled.filters if f.direction is Direction.OUTBOUND]

    def lookup(local: TrafficSelector, remote: TrafficSelector) -> QmPolicy | None:
        found = base(local, remote)
        if found is not None or not dynamic:
            return found
        if any(fl.contains(local) and fr.contains(remote) for fl, fr in outbound):
            return None  # a specific filter decided (block or permit): no <Dynamic> filter
        assert fa is not None
        tunnel = local.first != local.last or remote.first != remote.last
        return QmPolicy(fa.qmsecmethods, None, tunnel, local, remote)

    return lookup
