from __future__ import annotations

import ipaddress

import pytest

from ipsecd.policy import builtin
from ipsecd.policy.addrspec import parse_address
from ipsecd.policy.model import Action, AddrKind, AuthKind
from ipsecd.policy.store import StoreError, parse_store_texts


def test_builtin_objects_follow_windows() -> None:
    fl = builtin.BUILTIN_FILTERLISTS
    assert set(fl) == {"All IP Traffic", "All ICMP Traffic"}
    (all_ip,) = fl["All IP Traffic"].filters
    assert (all_ip.src.kind, all_ip.dst.kind, all_ip.protocol, all_ip.mirrored) == (
        AddrKind.ME,
        AddrKind.ANY,
        0,
        True,
    )
    assert [f.protocol for f in fl["All ICMP Traffic"].filters] == [1, 58]
    fa = builtin.BUILTIN_FILTERACTIONS
    assert fa["Permit"].action is Action.PERMIT and not fa["Permit"].qmsecmethods
    req = fa["Request Security (Optional)"]
    assert (req.action, req.inpass, req.soft) == (Action.NEGOTIATE, True, True)
    must = fa["Require Security"]
    assert (must.action, must.inpass, must.soft) == (Action.NEGOTIATE, True, False)
    assert must.qmsecmethods and all(m.esp_enc is not None for m in must.qmsecmethods)
    pol = builtin.BUILTIN_POLICIES
    assert pol["Client (Respond Only)"].rules == () and pol["Client (Respond Only)"].activatedefaultrule
    assert [(r.filterlist, r.filteraction) for r in pol["Server (Request Security)"].rules] == [
        ("All IP Traffic", "Request Security (Optional)"),
        ("All ICMP Traffic", "Permit"),
    ]
    assert [(r.filterlist, r.filteraction) for r in pol["Secure Server (Require Security)"].rules] == [
        ("All IP Traffic", "Require Security"),
        ("All ICMP Traffic", "Permit"),
    ]
    everything = [*fl.values(), *fa.values(), *pol.values()]
    assert all(o.builtin for o in everything)
    # No Kerberos, no auth until the administrator supplies one.
    assert all(not r.auth for p in pol.values() for r in p.rules)


def test_assigned_builtin_policy_with_builtinauth() -> None:
    text = (
        '[daemon]\nassigned_policy = "Server (Request Security)"\n'
        '[[builtinauth]]\npolicy = "Server (Request Security)"\nauth = [{ method = "psk", psk = "k" }]\n'
    )
    store = parse_store_texts([("s.toml", text)])
    policy = store.assigned
    assert policy is not None and policy.builtin
    negotiate, permit = policy.rules
    assert negotiate.auth[0].kind is AuthKind.PSK and permit.auth == ()
    assert policy.default_rule_auth == negotiate.auth
    # The module-level built-in stays untouched.
    assert builtin.BUILTIN_POLICIES["Server (Request Security)"].default_rule_auth == ()


def test_builtinauth_twice_is_an_error() -> None:
    entry = '[[builtinauth]]\npolicy = "Client (Respond Only)"\nauth = [{ method = "psk", psk = "k" }]\n'
    with pytest.raises(StoreError, match=r"s.toml:5: builtinauth\[1\].policy: .* already given"):
        parse_store_texts([("s.toml", entry + entry)])


@pytest.mark.parametrize(
    ("text", "mask", "kind", "value"),
    [
        ("ME", None, AddrKind.ME, None),
        ("dhcp", None, AddrKind.DHCP, None),
        ("192.0.2.7", None, AddrKind.NETWORK, "192.0.2.7/32"),
        ("192.0.2.0", "255.255.255.0", AddrKind.NETWORK, "192.0.2.0/24"),
        ("2001:db8::", "32", AddrKind.NETWORK, "2001:db8::/32"),
        ("2001:db8::/48", None, AddrKind.NETWORK, "2001:db8::/48"),
        ("fe80::1-fe80::9", None, AddrKind.RANGE, "fe80::1-fe80::9"),
        ("web-1.example.org", None, AddrKind.DNSNAME, "web-1.example.org"),
    ],
)
def test_parse_address(text: str, mask: str | None, kind: AddrKind, value: str | None) -> None:
    spec = parse_address(text, mask)
    assert spec.kind is kind
    if value is not None:
        assert str(spec) == value
    if kind is AddrKind.NETWORK:
        assert spec.network == ipaddress.ip_network(value)


@pytest.mark.parametrize(
    ("text", "mask", "fragment"),
    [
        ("10.0.0.1-2001:db8::1", None, "cannot mix IPv4 and IPv6"),
        ("10.0.0.1-foo", None, "two IP addresses"),
        ("10.0.0.0/8", "255.0.0.0", "already has a prefix"),
        ("10.0.0.1", "255.0.0.0", "did you mean 10.0.0.0/8"),
        ("under_score.example", None, "is not an address"),
        ("1.2.3", None, "not a valid IP address"),
        ("", None, "empty address"),
    ],
)
def test_parse_address_errors(text: str, mask: str | None, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(text, mask)
    assert fragment in str(info.value)
