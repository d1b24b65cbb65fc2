from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest

from ipsecd.policy import builtin
from ipsecd.policy.model import (
    Action,
    AddressSpec,
    AddrKind,
    AuthKind,
    AuthMethod,
    ConnType,
    DaemonSettings,
    EspEncryption,
    Filter,
    FilterAction,
    FilterList,
    Integrity,
    MmEncryption,
    MmSecMethod,
    QmSecMethod,
    Rule,
)
from ipsecd.policy.store import (
    ConfigIssue,
    StoreError,
    edit_file_for_new_objects,
    load_store,
    parse_store_texts,
    store_files,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example"


def _private_copy(src: Path, dest: Path) -> Path:
    """Copy a store and chmod 600 its files: git does not keep file modes."""
    shutil.copytree(src, dest)
    for f in dest.rglob("*.toml"):
        f.chmod(0o600)
    return dest


def test_example_store_loads(tmp_path: Path) -> None:
    store = load_store(_private_copy(EXAMPLE, tmp_path / "etc"))
    policy = store.assigned
    assert policy is not None and policy.name == "Branch office"
    assert [r.name for r in policy.rules] == [
        "To head office",
        "From head office",
        "Servers",
        "No telnet",
        "ICMP",
    ]
    tunnel = policy.rules[0]
    assert tunnel.tunnel == ipaddress.ip_address("198.51.100.1")
    assert tunnel.auth[0].kind is AuthKind.PSK and tunnel.auth[0].psk == "change-me-branch-to-head-office"
    assert "change-me" not in repr(store)
    servers = store.filterlists["Server subnet"].filters
    assert servers[0].dst == AddressSpec(AddrKind.NETWORK, network=ipaddress.ip_network("10.1.20.0/24"))
    assert (servers[0].protocol, servers[0].dstport, servers[1].dstport) == (6, 1433, 443)
    assert policy.rules[2].conntype is ConnType.LAN
    assert store.filteractions["Block"].action is Action.BLOCK
    assert policy.default_rule_auth == tunnel.auth
    assert store.settings.ipsecexempt == 3


def test_example_store_in_git_mode_is_refused_with_chmod_hint(tmp_path: Path) -> None:
    dest = _private_copy(EXAMPLE, tmp_path / "etc")
    (dest / "policies.toml").chmod(0o644)
    with pytest.raises(StoreError) as info:
        load_store(dest)
    (issue,) = info.value.issues
    assert issue.file == str(dest / "policies.toml")
    assert issue.field.endswith(".psk") and "mode 0644" in issue.message
    assert f"chmod 600 {dest / 'policies.toml'}" in issue.message
    assert "change-me" not in str(info.value)


def test_group_readable_file_without_psk_is_fine(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[daemon]\nipsecexempt = 1\n")
    f.chmod(0o644)
    assert load_store(f).settings.ipsecexempt == 1


GOOD = """\
[daemon]
assigned_policy = "P"
ipsecexempt = 0
ikelogging = true
strongcrlcheck = 2

[[filterlist]]
name = "L"
description = "d"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "10.0.0.1-10.0.0.9"
  protocol = 17
  srcport = 500
  mirrored = false
  [[filterlist.filter]]
  srcaddr = "Host.Example.COM."
  dstaddr = "gateway"
  protocol = "ICMP"

[[filteraction]]
name = "N"
action = "Negotiate"
qmsecmethods = ["ah[sha256]+esp[aes128,sha256]", "ESP[AESGCM256]:200000/7200"]
inpass = true
qmpfs = true

[[policy]]
name = "P"
pollinginterval = 60
mmlifetime = 60
mmsecmethods = ["AES128-SHA256-31"]
mmpfs = true
defaultruleauth = [{ method = "cert", rootca = "ca.pem", certmap = true }]
  [[policy.rule]]
  name = "r"
  description = "rd"
  filterlist = "L"
  filteraction = "N"
  auth = [{ method = "psk", psk = "pw" }]
  conntype = "remote"
  activate = false
  ikeversion = 2

[[builtinauth]]
policy = "Client (Respond Only)"
auth = [{ method = "psk", psk = "client" }]
"""


def test_good_store_to_model(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here\n")
    name = str(tmp_path / "store.toml")
    store = parse_store_texts([(name, GOOD)])
    assert store.settings == DaemonSettings("P", 0, True, 2)
    assert store.filterlists["L"] == FilterList(
        "L",
        "d",
        (
            Filter(
                AddressSpec(AddrKind.ME),
                AddressSpec(
                    AddrKind.RANGE,
                    first=ipaddress.ip_address("10.0.0.1"),
                    last=ipaddress.ip_address("10.0.0.9"),
                ),
                17,
                500,
                0,
                False,
            ),
            Filter(AddressSpec(AddrKind.DNSNAME, name="host.example.com"), AddressSpec(AddrKind.GATEWAY), 1),
        ),
    )
    assert store.filteractions["N"] == FilterAction(
        "N",
        Action.NEGOTIATE,
        "",
        (
            QmSecMethod(ah=Integrity.SHA256, esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA256),
            QmSecMethod(esp_enc=EspEncryption.AESGCM256, lifetime_kb=200000, lifetime_s=7200),
        ),
        inpass=True,
        qmpfs=True,
    )
    p = store.policies["P"]
    assert (p.pollinginterval, p.mmlifetime, p.qmpermm, p.mmpfs) == (60, 60, 1, True)
    assert p.mmsecmethods == (MmSecMethod(MmEncryption.AES128, Integrity.SHA256, 31),)
    assert p.default_rule_auth == (AuthMethod(AuthKind.CERT, rootca=str(tmp_path / "ca.pem"), certmap=True),)
    assert p.rules == (
        Rule("r", "L", "N", (AuthMethod(AuthKind.PSK, psk="pw"),), None, ConnType.REMOTE, False, "rd", 2),
    )
    # Origins point at the declaring lines.
    assert (p.origin.file, p.origin.line, p.origin.path) == (name, 28, "policy[0]")
    assert p.rules[0].origin.line == 35
    assert store.filterlists["L"].filters[1].origin.line == 16
    # Built-ins are always there; builtinauth gives the built-in policy its methods.
    assert set(builtin.BUILTIN_POLICIES) <= set(store.policies)
    assert store.policies["Client (Respond Only)"].default_rule_auth[0].psk == "client"
    assert store.filteractions["Permit"].builtin


def test_defaults_when_keys_are_absent() -> None:
    store = parse_store_texts([("s.toml", '[[policy]]\nname = "P"\nactivatedefaultrule = false\n')])
    p = store.policies["P"]
    assert (p.pollinginterval, p.mmlifetime, p.qmpermm, p.mmpfs) == (180, 480, 0, False)
    assert p.mmsecmethods == builtin.DEFAULT_MM_METHODS
    assert store.settings == DaemonSettings()
    assert store.assigned is None


def test_directory_store_file_order(tmp_path: Path) -> None:
    (tmp_path / "policies.d").mkdir()
    for name in ("policies.d/20-b.toml", "policies.d/10-a.toml", "policies.toml", "ipsecd.toml"):
        (tmp_path / name).write_text("")
    (tmp_path / "policies.d" / "README").write_text("ignored")
    assert [p.relative_to(tmp_path).as_posix() for p in store_files(tmp_path)] == [
        "ipsecd.toml",
        "policies.toml",
        "policies.d/10-a.toml",
        "policies.d/20-b.toml",
    ]
    assert edit_file_for_new_objects(tmp_path) == tmp_path / "policies.toml"
    assert edit_file_for_new_objects(tmp_path / "x.toml") == tmp_path / "x.toml"
    assert set(load_store(tmp_path).policies) == set(builtin.BUILTIN_POLICIES)


def test_missing_store_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        load_store(tmp_path / "nope")
    assert info.value.issues == (ConfigIssue(str(tmp_path / "nope"), 0, "", "no such file or directory"),)


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_bytes(b"[daemon]\n# \xff\n")
    with pytest.raises(StoreError, match=r"s.toml:2: not valid UTF-8"):
        load_store(f)


def test_references_across_files_resolve(tmp_path: Path) -> None:
    (tmp_path / "ipsecd.toml").write_text('[daemon]\nassigned_policy = "P"\n')
    (tmp_path / "policies.toml").write_text(
        '[[policy]]\nname = "P"\nactivatedefaultrule = false\n'
        '  [[policy.rule]]\n  name = "r"\n  filterlist = "L"\n  filteraction = "Permit"\n'
    )
    (tmp_path / "policies.d").mkdir()
    (tmp_path / "policies.d" / "lists.toml").write_text('[[filterlist]]\nname = "L"\n')
    store = load_store(tmp_path)
    assert store.assigned is not None and store.assigned.rules[0].filterlist == "L"


def test_every_issue_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ipsecd.toml").write_text('[daemon]\nassigned_policy = "Nope"\nipsecexempt = 7\nbogus = 1\n')
    (tmp_path / "policies.toml").write_text(
        "[[filterlist]]\n"
        'name = "L"\n'
        "  [[filterlist.filter]]\n"
        '  srcaddr = "10.0.0.1"\n'
        '  dstaddr = "::1"\n'
        "  dstport = 99999\n"
        "[[filteraction]]\n"
        'name = "F"\n'
        'action = "negotiate"\n'
        'qmsecmethods = ["ESP[AESGCM128,SHA1]"]\n'
    )
    (tmp_path / "policies.d").mkdir()
    (tmp_path / "policies.d" / "x.toml").write_text(
        '[[filterlist]]\nname = "L"\n[[policy]]\nname = "P"\n[oops\n'
    )
    with pytest.raises(StoreError) as info:
        load_store(tmp_path)
    got = [(Path(i.file).relative_to(tmp_path).as_posix(), i.line, i.field) for i in info.value.issues]
    assert got == [
        ("ipsecd.toml", 2, "daemon.assigned_policy"),
        ("ipsecd.toml", 3, "daemon.ipsecexempt"),
        ("ipsecd.toml", 4, "daemon.bogus"),
        ("policies.toml", 5, "filterlist[0].filter[0].dstaddr"),
        ("policies.toml", 6, "filterlist[0].filter[0].dstport"),
        ("policies.toml", 10, "filteraction[0].qmsecmethods[0]"),
        ("policies.d/x.toml", 5, ""),
    ]
    assert len(str(info.value).splitlines()) == 7


def test_schema_example_in_docs_is_valid(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    store = parse_store_texts([("doc.toml", example.replace("/etc/ipsecd/ca.pem", str(ca)))])
    rule = store.policies["Site policy"].rules[0]
    assert rule.tunnel == ipaddress.ip_address("192.0.2.1")
    assert [a.kind for a in rule.auth] == [AuthKind.PSK, AuthKind.CERT]
