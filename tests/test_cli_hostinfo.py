"""The system host facts (io/hostinfo.py), the --host-facts file and the console-script launcher."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from cli_helpers import build_store, cli

from ipsecd.cli.hostfacts import HostFactsError, load_host_facts
from ipsecd.io import cli_entry
from ipsecd.io.hostinfo import SystemHost


def test_system_host_reads_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nsearch example\nnameserver bogus\n"
    )
    host = SystemHost(resolv_conf=conf)
    assert host.dns_servers() == [ipaddress.ip_address("192.0.2.53"), ipaddress.ip_address("fe80::1")]
    assert SystemHost(resolv_conf=tmp_path / "missing").dns_servers() == []
    assert host.wins_servers() == [] and host.dhcp_servers() == []


def test_system_host_addresses_are_global_unicast() -> None:
    host = SystemHost()
    for a in host.my_addresses():
        assert not a.is_loopback and not a.is_link_local
    for g in host.gateways():
        assert isinstance(g, ipaddress.IPv4Address | ipaddress.IPv6Address)
    assert ipaddress.ip_address("127.0.0.1") in host.resolve("localhost") or host.resolve("localhost")
    assert host.resolve("no-such-name.invalid") == []


def test_cli_entry_injects_the_system_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s"
    build_store(store)
    assert cli_entry.main(["--config", str(store), "static", "show", "filters", "specific=yes"]) == 0
    assert "specific filters of policy 'Site'" in capsys.readouterr().out


def test_host_facts_file(tmp_path: Path) -> None:
    f = tmp_path / "facts.toml"
    f.write_text(
        'addresses = ["192.0.2.10"]\ngateway = ["192.0.2.1"]\n[names]\n"DB.example.com." = ["198.51.100.20"]\n'
    )
    host = load_host_facts(f)
    assert host.my_addresses() == (ipaddress.ip_address("192.0.2.10"),)
    assert host.resolve("db.example.com") == (ipaddress.ip_address("198.51.100.20"),)
    for text, needle in [
        ('{"addresses": ["nope"]}', "addresses"),
        ('{"colour": []}', "unknown keys"),
        ("[1, 2]", "expected a table"),
        ("{", "facts.json"),
    ]:
        bad = tmp_path / "facts.json"
        bad.write_text(text)
        with pytest.raises(HostFactsError, match=needle):
            load_host_facts(bad)


def test_host_facts_option_errors_exit_1(tmp_path: Path) -> None:
    store = tmp_path / "s"
    build_store(store)
    bad = tmp_path / "facts.json"
    bad.write_text(json.dumps({"addresses": "192.0.2.10"}))
    from ipsecd.cli.main import run

    assert run(["--config", str(store), "--host-facts", str(bad), "static", "check"]) == 1
    assert cli(store, "show filters", host=None).rc == 0  # generic filters need no host facts
    assert cli(store, "show filters specific=yes", host=None).rc == 2
