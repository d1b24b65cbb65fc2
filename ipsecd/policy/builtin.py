"""The built-in filter lists, filter actions and policies present in every store.

They follow the predefined objects of Windows 2000/XP/Server 2003 ("Default IPSec policies" in the
Windows Server 2003 and XP documentation), with the substitutions described in docs/builtins.md:

- Windows authenticates the built-in rules with Kerberos, which ipsecd does not support, so the
  built-in rules and default response rules here have no authentication method. The administrator
  supplies one with a ``[[builtinauth]]`` table in the store; assigning a built-in policy that still
  lacks one is a load error that says so.
- Windows' built-in security methods include single DES and MD5; ours use AES-128 and 3DES with
  SHA-256 and SHA-1.

Built-ins carry ``builtin=True`` and are never written to store files.
"""

from __future__ import annotations

from dataclasses import replace

from ipsecd.policy.model import (
    DEFAULT_MM_METHODS_TEXT,
    PROTOCOL_NUMBERS,
    Action,
    AddressSpec,
    AddrKind,
    AuthMethod,
    Filter,
    FilterAction,
    FilterList,
    Policy,
    Rule,
)
from ipsecd.policy.secmethods import parse_mmsecmethod, parse_qmsecmethod

ALL_IP_TRAFFIC = "All IP Traffic"
ALL_ICMP_TRAFFIC = "All ICMP Traffic"
PERMIT = "Permit"
REQUEST_SECURITY = "Request Security (Optional)"
REQUIRE_SECURITY = "Require Security"
CLIENT_RESPOND_ONLY = "Client (Respond Only)"
SERVER_REQUEST_SECURITY = "Server (Request Security)"
SECURE_SERVER = "Secure Server (Require Security)"

_ME = AddressSpec(AddrKind.ME)
_ANY = AddressSpec(AddrKind.ANY)

BUILTIN_FILTERLISTS: dict[str, FilterList] = {
    ALL_IP_TRAFFIC: FilterList(
        name=ALL_IP_TRAFFIC,
        description="Matches all IP packets from this computer to any other computer "
        "(IKE and the ipsecexempt exemptions excepted).",
        filters=(Filter(src=_ME, dst=_ANY, mirrored=True),),
        builtin=True,
    ),
    ALL_ICMP_TRAFFIC: FilterList(
        name=ALL_ICMP_TRAFFIC,
        description="Matches all ICMP packets between this computer and any other computer.",
        filters=(
            Filter(src=_ME, dst=_ANY, protocol=PROTOCOL_NUMBERS["icmp"], mirrored=True),
            # Not in Windows (its IPsec of that era was IPv4 only): ICMPv6, so that a built-in
            # "permit ICMP" rule also keeps IPv6 neighbour discovery working.
            Filter(src=_ME, dst=_ANY, protocol=PROTOCOL_NUMBERS["icmpv6"], mirrored=True),
        ),
        builtin=True,
    ),
}

_STRONG = ("ESP[AES128,SHA256]", "ESP[3DES,SHA1]")

BUILTIN_FILTERACTIONS: dict[str, FilterAction] = {
    PERMIT: FilterAction(
        name=PERMIT,
        action=Action.PERMIT,
        description="Permit unsecured IP packets to pass through.",
        builtin=True,
    ),
    REQUEST_SECURITY: FilterAction(
        name=REQUEST_SECURITY,
        action=Action.NEGOTIATE,
        description="Accepts unsecured communication, but requests clients to establish trust and "
        "security methods. Will communicate insecurely to untrusted clients if they do not respond "
        "to the request.",
        qmsecmethods=tuple(parse_qmsecmethod(t) for t in (*_STRONG, "AH[SHA256]", "AH[SHA1]")),
        inpass=True,
        soft=True,
        builtin=True,
    ),
    REQUIRE_SECURITY: FilterAction(
        name=REQUIRE_SECURITY,
        action=Action.NEGOTIATE,
        description="Accepts unsecured communication, but always requires clients to establish "
        "trust and security methods. Does not communicate with untrusted clients.",
        qmsecmethods=tuple(parse_qmsecmethod(t) for t in _STRONG),
        inpass=True,
        soft=False,
        builtin=True,
    ),
}

DEFAULT_MM_METHODS = tuple(parse_mmsecmethod(t) for t in DEFAULT_MM_METHODS_TEXT)


def _rule(filterlist: str, filteraction: str) -> Rule:
    # Windows shows these rules by their filter list; ipsecd rules need names, so they take it.
    return Rule(name=filterlist, filterlist=filterlist, filteraction=filteraction)


BUILTIN_POLICIES: dict[str, Policy] = {
    CLIENT_RESPOND_ONLY: Policy(
        name=CLIENT_RESPOND_ONLY,
        description="Communicate normally (unsecured). Use the default response rule to negotiate "
        "with servers that request security. Only the requested protocol and port traffic with "
        "that server is secured.",
        mmsecmethods=DEFAULT_MM_METHODS,
        activatedefaultrule=True,
        rules=(),
        builtin=True,
    ),
    SERVER_REQUEST_SECURITY: Policy(
        name=SERVER_REQUEST_SECURITY,
        description="For all IP traffic, always request security. Allow unsecured communication "
        "with clients that do not respond to the request.",
        mmsecmethods=DEFAULT_MM_METHODS,
        activatedefaultrule=True,
        rules=(_rule(ALL_IP_TRAFFIC, REQUEST_SECURITY), _rule(ALL_ICMP_TRAFFIC, PERMIT)),
        builtin=True,
    ),
    SECURE_SERVER: Policy(
        name=SECURE_SERVER,
        description="For all IP traffic, always require security. Do not allow unsecured "
        "communication with untrusted clients.",
        mmsecmethods=DEFAULT_MM_METHODS,
        activatedefaultrule=True,
        rules=(_rule(ALL_IP_TRAFFIC, REQUIRE_SECURITY), _rule(ALL_ICMP_TRAFFIC, PERMIT)),
        builtin=True,
    ),
}


def with_auth(policy: Policy, auth: tuple[AuthMethod, ...]) -> Policy:
    """A built-in policy whose negotiating rules and default response rule use ``auth``."""
    negotiate = {n for n, fa in BUILTIN_FILTERACTIONS.items() if fa.action is Action.NEGOTIATE}
    rules = tuple(replace(r, auth=auth) if r.filteraction in negotiate else r for r in policy.rules)
    return replace(policy, rules=rules, default_rule_auth=auth)
