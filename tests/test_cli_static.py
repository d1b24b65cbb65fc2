"""ipsecctl static against tmp stores: a store built only with commands, its order and matches,
set/delete, show, check, exit codes, and preshared keys never printed."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from cli_helpers import HOST, PSK, build_store, cli, ok

from ipsecd.cli.main import main
from ipsecd.policy.order import compute_weight
from ipsecd.policy.store import load_store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("built") / "store"
    build_store(d)
    return d


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the store built only with ipsecctl commands (modes kept)."""
    return Path(shutil.copytree(built, tmp_path / "store"))


def _specific(store: Path) -> list[dict[str, object]]:
    data = json.loads(ok(store, "show filters specific=yes", json=True))
    assert data["policy"] == "Site" and data["specific"] is True
    return list(data["filters"])


def test_store_built_by_commands_orders_filters_most_specific_first(store: Path) -> None:
    filters = _specific(store)
    got = [
        (f["rule"], f["direction"], f["dstaddr"] if f["direction"] == "out" else f["srcaddr"])
        for f in filters
    ]
    assert got == [
        ("web", "out", "192.0.2.7"),
        ("web", "in", "192.0.2.7"),
        ("block7", "out", "192.0.2.7"),
        ("block7", "in", "192.0.2.7"),
        ("web", "out", "192.0.2.0/24"),
        ("web", "in", "192.0.2.0/24"),
        ("subnet", "out", "192.0.2.0/24"),
        ("subnet", "in", "192.0.2.0/24"),
    ]
    weights = [f["weight"] for f in filters]
    assert weights == sorted(weights, reverse=True)
    assert [f["position"] for f in filters] == list(range(1, 9))
    # The weights are the documented formula's (docs/policy.md), not numbers made up here.
    from ipsecd.policy.order import AddressRange

    host = AddressRange(4, int(HOST.addresses[0]), int(HOST.addresses[0]))
    assert filters[0]["weight"] == compute_weight(host, AddressRange(4, 0xC0000207, 0xC0000207), 6, 0, 443)
    assert filters[6]["weight"] == compute_weight(host, AddressRange(4, 0xC0000200, 0xC00002FF), 0, 0, 0)


@pytest.mark.parametrize(
    ("packet", "action", "rule", "exempt"),
    [
        (
            "srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=tcp srcport=3333 dstport=443",
            "negotiate",
            "web",
            None,
        ),
        (
            "srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=tcp srcport=3333 dstport=80",
            "block",
            "block7",
            None,
        ),
        (
            "srcaddr=192.0.2.10 dstaddr=192.0.2.9 protocol=tcp srcport=3333 dstport=443",
            "negotiate",
            "web",
            None,
        ),
        (
            "srcaddr=192.0.2.10 dstaddr=192.0.2.9 protocol=udp srcport=3333 dstport=53",
            "permit",
            "subnet",
            None,
        ),
        (
            "srcaddr=192.0.2.7 dstaddr=192.0.2.10 protocol=tcp srcport=443 dstport=3333 direction=in",
            "negotiate",
            "web",
            None,
        ),
        ("srcaddr=192.0.2.7 dstaddr=192.0.2.10 protocol=icmp direction=in", "block", "block7", None),
        ("srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=udp srcport=500 dstport=500", "permit", None, "ike"),
        ("srcaddr=192.0.2.10 dstaddr=198.51.100.1 protocol=tcp srcport=1 dstport=443", "permit", None, None),
    ],
)
def test_match(store: Path, packet: str, action: str, rule: str | None, exempt: str | None) -> None:
    data = json.loads(ok(store, f"match {packet}", json=True))
    assert data["action"] == action
    assert data["exempt"] == exempt
    assert data["matched"] is (rule is not None)
    assert (data["filter"] or {}).get("rule") == rule
    if rule is not None:
        # The winner is the first filter of the ordered list that covers the packet.
        assert data["filter"] == _specific(store)[data["filter"]["position"] - 1]


def test_match_text_names_filter_rule_and_action(store: Path) -> None:
    out = ok(store, "match srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=tcp srcport=3333 dstport=80")
    assert "result: block (filter action 'Block')" in out
    assert "rule: 'block7', filter list 'Host7'" in out
    assert "exempt: ike" in ok(store, "match srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=udp srcport=4500")
    assert "no filter matches" in ok(store, "match srcaddr=192.0.2.10 dstaddr=203.0.113.1 protocol=tcp")


def test_show_filters_text(store: Path) -> None:
    generic = ok(store, "show filters")
    assert "generic filters of policy 'Site' (4)" in generic
    assert "filter 1: me port any -> 192.0.2.0/24 port 443 protocol tcp mirrored yes" in generic
    specific = ok(store, "show filters specific=yes").splitlines()
    assert specific[1] == "exempt before every filter:"
    rows = [line for line in specific if line[:4].strip().isdigit()]
    assert len(rows) == 8 and "web / Require AES" in rows[0] and "(mirror)" in rows[1]


def test_show_filters_of_an_unassigned_policy(store: Path) -> None:
    data = json.loads(
        ok(store, 'show filters specific=yes policy="Secure Server (Require Security)"', json=True)
    )
    assert data["policy"] == "Secure Server (Require Security)"
    assert {f["filteraction"] for f in data["filters"]} == {"Require Security", "Permit"}


def test_host_facts_needed_for_expansion(store: Path, tmp_path: Path) -> None:
    r = cli(store, "show filters specific=yes", host=None)
    assert r.rc == 2 and "--host-facts" in r.err and r.out == ""
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"addresses": ["192.0.2.10"]}))
    assert main(["--config", str(store), "--host-facts", str(facts), "static", "show", "filters"]) == 0


def test_set_and_rename_follow_references(store: Path) -> None:
    ok(store, "set filteraction name=Block newname=Deny description=nope")
    ok(store, 'set filterlist name=Host7 newname="Host 7"')
    # A tunnel rule needs unmirrored filters: the loader's check runs on every edit.
    r = cli(store, "set rule name=block7 policy=Site tunnel=192.0.2.99")
    assert r.rc == 1 and "tunnel filters must not be mirrored" in r.err
    ok(store, 'delete filter filterlist="Host 7" srcaddr=me dstaddr=192.0.2.7')
    ok(store, 'add filter filterlist="Host 7" srcaddr=me dstaddr=192.0.2.7 mirrored=no')
    ok(store, "set rule name=block7 policy=Site newname=deny7 tunnel=192.0.2.99 conntype=lan activate=no")
    ok(store, "set policy name=Site newname=Campus mmlifetime=60 qmpermm=1 mmpfs=yes")
    s = load_store(store)
    assert s.settings.assigned_policy == "Campus"
    rule = next(r for r in s.policies["Campus"].rules if r.name == "deny7")
    assert (rule.filteraction, rule.filterlist, str(rule.tunnel), rule.active) == (
        "Deny",
        "Host 7",
        "192.0.2.99",
        False,
    )
    assert rule.conntype.value == "lan"
    assert s.policies["Campus"].mmlifetime == 60 and s.policies["Campus"].mmpfs
    ok(store, "set rule name=deny7 policy=Campus tunnel=none")
    assert next(r for r in load_store(store).policies["Campus"].rules if r.name == "deny7").tunnel is None


def test_set_rule_auth_replaces_methods_and_defaultrule(store: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    r = cli(store, "set rule name=web policy=Site rootca=/nonexistent/ca.pem")
    assert r.rc == 1 and "does not exist" in r.err
    ok(store, f'set rule name=web policy=Site rootca="{ca} certmap:yes"')
    web = next(r for r in load_store(store).policies["Site"].rules if r.name == "web")
    assert [(a.kind.value, a.rootca, a.certmap) for a in web.auth] == [("cert", str(ca), True)]
    ok(store, "set defaultrule policy=Site activate=yes psk=another-secret")
    pol = load_store(store).policies["Site"]
    assert pol.activatedefaultrule and [a.kind.value for a in pol.default_rule_auth] == ["psk"]


def test_assign_and_unassign(store: Path) -> None:
    ok(store, "set policy name=Site assign=no")
    assert load_store(store).settings.assigned_policy is None
    # A built-in policy may be assigned once it has an authentication method (no Kerberos here).
    r = cli(store, 'set policy name="Server (Request Security)" assign=yes')
    assert r.rc == 1 and "[[builtinauth]]" in r.err
    assert cli(store, 'set defaultrule policy="Server (Request Security)" activate=no psk=x').rc == 1
    ok(store, 'set defaultrule policy="Server (Request Security)" psk=builtin-secret')
    ok(store, 'set policy name="Server (Request Security)" assign=yes')
    assert load_store(store).settings.assigned_policy == "Server (Request Security)"
    ok(store, 'set rule name="All IP Traffic" policy="Server (Request Security)" psk=other-secret')
    assert (store / "policies.toml").read_text().count("[[builtinauth]]") == 1


def test_builtins_cannot_be_changed(store: Path) -> None:
    r = cli(store, "set filteraction name=Permit qmpfs=yes")
    assert r.rc == 1 and "built-in" in r.err
    assert cli(store, 'delete filterlist name="All IP Traffic"').rc == 1


def test_delete_filter_matches_by_addresses_like_netsh(store: Path) -> None:
    # The filter was added as dstaddr=192.0.2.0 dstmask=255.255.255.0; the prefix form matches it.
    ok(store, 'delete filter filterlist="Web farm" srcaddr=me dstaddr=192.0.2.0/24 protocol=tcp dstport=443')
    filters = load_store(store).filterlists["Web farm"].filters
    assert [str(f.dst) for f in filters] == ["192.0.2.7/32"]
    r = cli(store, 'delete filter filterlist="Web farm" srcaddr=me dstaddr=192.0.2.7 protocol=udp')
    assert r.rc == 1 and "no filter" in r.err
    assert "deleted 1 filter" in ok(store, 'delete filter filterlist="Web farm" srcaddr=ME dstaddr=192.0.2.7')
    assert load_store(store).filterlists["Web farm"].filters == ()


def test_delete_rule_policy_filterlist_filteraction(store: Path) -> None:
    ok(store, "delete rule name=block7 policy=Site")
    ok(store, "delete filterlist name=Host7")
    ok(store, "delete filteraction name=Block")
    s = load_store(store)
    assert [r.name for r in s.policies["Site"].rules] == ["web", "subnet"]
    assert "Host7" not in s.filterlists and "Block" not in s.filteractions
    ok(store, "delete rule all policy=Site")
    assert load_store(store).policies["Site"].rules == ()
    assert "it was assigned" in ok(store, "delete policy name=Site")
    s = load_store(store)
    assert "Site" not in s.policies and s.settings.assigned_policy is None


def test_delete_all_keeps_settings(store: Path) -> None:
    (store / "ipsecd.toml").write_text((store / "ipsecd.toml").read_text() + "ipsecexempt = 1\n")
    out = ok(store, "delete all")
    assert "deleted 1 policies, 3 filter lists and 2 filter actions" in out
    s = load_store(store)
    assert all(p.builtin for p in s.policies.values()) and all(f.builtin for f in s.filterlists.values())
    assert s.settings.assigned_policy is None and s.settings.ipsecexempt == 1
    assert "OK" in ok(store, "check")


def test_check_summary_and_errors(store: Path, tmp_path: Path) -> None:
    out = ok(store, "check")
    assert out.count("\n") == 1
    assert (
        "OK: 2 files, 1 policy, 3 rules, 3 filter lists, 2 filter actions" in out
        and "assigned policy: Site" in out
    )
    data = json.loads(ok(store, "check", json=True))
    assert data["ok"] is True and data["rules"] == 3 and data["assigned_policy"] == "Site"
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[filterlist]]\nname = "x"\n\n[[filterlist.filter]]\nsrcaddr = "me"\ndstaddr = "any"\ndstport = 80\n'
    )
    r = cli(bad, "check")
    assert r.rc == 1 and r.out == "" and f"{bad}:7: filterlist[0].filter[0].dstport:" in r.err
    r = cli(tmp_path / "missing", "check")
    assert r.rc == 1 and "no such file" in r.err


def test_exit_codes_and_stderr(store: Path) -> None:
    for command, rc in [
        ("add policy", 2),
        ("bogus", 2),
        ("match srcaddr=1.2.3.4 dstaddr=::1 protocol=tcp", 2),
        ("match srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=icmp dstport=80", 2),
        ("set policy name=Nope mmpfs=yes", 1),
        ("add filterlist name=Host7", 1),
        ("show policy name=Nope", 1),
        ("add rule name=x policy=Site filterlist=Nope filteraction=Block", 1),
    ]:
        r = cli(store, command)
        assert (r.rc, r.out) == (rc, ""), command
        assert r.err.startswith("ipsecctl: "), command
    r = cli(store, "add filterlist name=Z", json=True)
    assert r.rc == 2 and "--json" in r.err


def test_main_without_static_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show"]) == 2
    assert "expected 'static'" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "static COMMAND" in capsys.readouterr().out
    assert main(["--nonsense", "static", "check"]) == 2


def test_single_file_store(tmp_path: Path) -> None:
    f = tmp_path / "all.toml"
    ok(f, "add filterlist name=L")
    ok(f, "add filter filterlist=L srcaddr=me dstaddr=10.0.0.0/8")
    ok(f, "add policy name=P activatedefaultrule=no assign=yes")
    ok(f, "add rule name=r policy=P filterlist=L filteraction=Permit")
    assert list(tmp_path.iterdir()) == [f]
    assert load_store(f).settings.assigned_policy == "P"


def test_files_are_written_mode_0600(store: Path) -> None:
    for f in store.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def _all_outputs(store: Path) -> list[str]:
    outs = []
    for command in [
        "show all",
        "show policy all",
        "show policy name=Site",
        "show rule all",
        "show rule name=web policy=Site",
        "show filterlist all",
        "show filteraction all",
        "show filters",
        "show filters specific=yes",
        "check",
        "match srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=tcp dstport=443",
    ]:
        for as_json in (False, True):
            r = cli(store, command, json=as_json)
            assert r.rc == 0, (command, r.err)
            outs += [r.out, r.err]
    return outs


def test_psk_never_printed(store: Path) -> None:
    outs = _all_outputs(store)
    assert all(PSK not in o for o in outs)
    assert "preshared key (set)" in ok(store, "show rule name=web policy=Site")
    rules = json.loads(ok(store, "show rule all policy=Site", json=True))["rules"]
    assert rules[0]["auth"] == [{"method": "psk", "psk": "(set)"}]
    # Errors about a rule with a PSK do not show it either.
    for command in [
        f"add rule name=web policy=Site filterlist=Host7 filteraction=Block psk={PSK}",
        f"add rule name=w2 policy=Site filterlist=Nope filteraction=Block psk={PSK}",
        f"set rule name=nope policy=Site psk={PSK}",
        f"add rule name=w3 policy=Site filterlist=Host7 filteraction=Block psk={PSK} psk={PSK}",
    ]:
        r = cli(store, command)
        assert r.rc != 0 and PSK not in r.out + r.err


FILTER_KEYS = {"srcaddr", "dstaddr", "protocol", "srcport", "dstport", "mirrored", "description"}
SPECIFIC_KEYS = {
    "position",
    "direction",
    "srcaddr",
    "dstaddr",
    "protocol",
    "srcport",
    "dstport",
    "action",
    "weight",
    "policy",
    "rule",
    "filterlist",
    "filteraction",
    "tunnel",
    "mirror",
}
RULE_KEYS = {
    "name",
    "policy",
    "description",
    "filterlist",
    "filteraction",
    "auth",
    "tunnel",
    "conntype",
    "activate",
    "ikeversion",
    "forceencap",
}
POLICY_KEYS = {
    "name",
    "description",
    "builtin",
    "assigned",
    "pollinginterval",
    "mmlifetime",
    "qmpermm",
    "mmsecmethods",
    "mmpfs",
    "activatedefaultrule",
    "defaultruleauth",
    "rules",
}
FILTERLIST_KEYS = {"name", "description", "builtin", "filters"}
FILTERACTION_KEYS = {"name", "description", "builtin", "action", "qmsecmethods", "inpass", "soft", "qmpfs"}


def test_json_keys_are_the_documented_ones(store: Path) -> None:
    """The keys of docs/ipsecctl.md's "JSON output" section."""
    data = json.loads(ok(store, "show all", json=True))
    assert set(data) == {"settings", "policies", "filterlists", "filteractions"}
    assert set(data["settings"]) == {"assigned_policy", "ipsecexempt", "ikelogging", "strongcrlcheck"}
    assert all(set(p) == POLICY_KEYS for p in data["policies"])
    assert all(set(r) == RULE_KEYS for p in data["policies"] for r in p["rules"])
    assert all(set(f) == FILTERLIST_KEYS for f in data["filterlists"])
    assert all(set(x) == FILTER_KEYS for f in data["filterlists"] for x in f["filters"])
    assert all(set(f) == FILTERACTION_KEYS for f in data["filteractions"])
    for command, key in [
        ("show policy name=Site", "policies"),
        ("show rule all", "rules"),
        ("show filterlist name=Host7", "filterlists"),
        ("show filteraction all", "filteractions"),
    ]:
        assert list(json.loads(ok(store, command, json=True))) == [key]
    generic = json.loads(ok(store, "show filters", json=True))
    assert set(generic) == {"policy", "specific", "filters"} and generic["specific"] is False
    extra = {"rule", "filterlist", "index", "filteraction", "action", "tunnel"}
    assert all(set(f) == FILTER_KEYS | extra for f in generic["filters"])
    specific = json.loads(ok(store, "show filters specific=yes", json=True))
    assert set(specific) == {"policy", "specific", "exemptions", "filters"} and specific["exemptions"] == [
        "ike"
    ]
    assert all(set(f) == SPECIFIC_KEYS for f in specific["filters"])
    match = json.loads(
        ok(store, "match srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=tcp dstport=443", json=True)
    )
    assert set(match) == {"packet", "policy", "action", "exempt", "matched", "filter"}
    assert set(match["packet"]) == {"direction", "srcaddr", "dstaddr", "protocol", "srcport", "dstport"}
    assert set(match["filter"]) == SPECIFIC_KEYS
    check = json.loads(ok(store, "check", json=True))
    assert set(check) == {
        "ok",
        "files",
        "assigned_policy",
        "policies",
        "rules",
        "filterlists",
        "filteractions",
    }


def test_expansion_errors_exit_1_with_the_filter_origin(store: Path) -> None:
    ok(store, "add filterlist name=Db")
    ok(store, "add filter filterlist=Db srcaddr=me dstaddr=nowhere.example.net")
    ok(store, "add rule name=db policy=Site filterlist=Db filteraction=Block")
    r = cli(store, "show filters specific=yes")
    assert r.rc == 1 and r.out == ""
    assert "policies.toml:" in r.err and "dstaddr" in r.err and "does not resolve" in r.err
    r = cli(store, "match srcaddr=192.0.2.10 dstaddr=192.0.2.7 protocol=tcp")
    assert r.rc == 1 and "does not resolve" in r.err


def test_add_policy_with_default_rule_auth(tmp_path: Path) -> None:
    store = tmp_path / "s"
    r = cli(store, "add policy name=P")  # the default response rule needs authentication
    assert (
        r.rc == 1
        and r.err.startswith("ipsecctl: edit rejected, nothing written")
        and "defaultruleauth" in r.err
    )
    assert not store.exists() or list(store.iterdir()) == []
    ok(store, f"add policy name=P psk={PSK}")
    pol = load_store(store).policies["P"]
    assert pol.activatedefaultrule and [a.kind.value for a in pol.default_rule_auth] == ["psk"]
    assert PSK not in ok(store, "show policy name=P") and "preshared key (set)" in ok(
        store, "show policy name=P"
    )
