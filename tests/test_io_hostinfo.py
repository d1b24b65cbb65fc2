"""SystemHost reads host facts from the kernel and the usual files."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from ipsecd.io.hostinfo import SystemHost, parse_lease_file, parse_resolv_conf
from ipsecd.io.netlink import ChangeMonitor
from ipsecd.policy.host import HostEnvironment
from tests import netns

DHCLIENT = """\
lease {
  interface "eth0";
  fixed-address 10.0.0.50;
  option dhcp-server-identifier 10.0.0.1;
  renew 4 2026/11/26 10:00:00;
}
lease {
  interface "eth0";
  fixed-address 10.0.0.51;
  option dhcp-server-identifier 10.0.0.2;
}
"""
NETWORKD = (
    "# This is private data. Do not parse.\nADDRESS=10.1.0.9\nSERVER_ADDRESS=10.1.0.1\nROUTER=10.1.0.254\n"
)


def test_resolv_conf_parsing() -> None:
    text = "# comment\n; other comment\nsearch example.com\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nnameserver bogus\nnameserver 10.255.255.53\noptions edns0\n"
    assert parse_resolv_conf(text) == [ip_address("10.255.255.53"), ip_address("fe80::1")]
    assert parse_resolv_conf("") == []


def test_lease_files(tmp_path: Path) -> None:
    assert parse_lease_file(DHCLIENT) == ip_address("10.0.0.2")  # the newest lease wins
    assert parse_lease_file(NETWORKD) == ip_address("10.1.0.1")
    assert parse_lease_file("garbage {") is None
    (tmp_path / "dhclient.eth0.leases").write_text(DHCLIENT)
    (tmp_path / "2").write_text(NETWORKD)
    (tmp_path / "3").write_text("nothing here")
    host = SystemHost(lease_globs=(str(tmp_path / "dhclient*.leases"), str(tmp_path / "[0-9]")))
    assert host.dhcp_servers() == [ip_address("10.0.0.2"), ip_address("10.1.0.1")]
    assert SystemHost(lease_globs=(str(tmp_path / "none*"),)).dhcp_servers() == []


def test_files_and_configured_wins(tmp_path: Path) -> None:
    rc = tmp_path / "resolv.conf"
    rc.write_text("nameserver 192.0.2.53\nnameserver 2001:db8::53\n")
    host: HostEnvironment = SystemHost(resolv_conf=rc, wins=(ip_address("192.0.2.137"),))
    assert host.dns_servers() == [ip_address("192.0.2.53"), ip_address("2001:db8::53")]
    assert host.wins_servers() == [ip_address("192.0.2.137")]
    assert SystemHost().wins_servers() == []  # Linux has no system-wide WINS setting
    assert SystemHost(resolv_conf=tmp_path / "missing").dns_servers() == []


def test_resolve_numeric_and_bad_names() -> None:
    h = SystemHost()
    assert h.resolve("192.0.2.7") == [ip_address("192.0.2.7")]
    assert h.resolve("2001:db8::7") == [ip_address("2001:db8::7")]
    assert h.resolve("") == []
    assert h.resolve("a" * 300) == []


@pytest.mark.root
def test_system_host_in_a_namespace(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    a = p.a
    with a.entered():
        # No route to any DNS server yet: an unknown name fails fast; /etc/hosts still answers.
        assert SystemHost().resolve("no-such-host.invalid") == []
        assert ip_address("127.0.0.1") in SystemHost().resolve("localhost")
    a.add_address("lo", "10.9.9.9/32")
    a.add_address(p.link.a_ifname, "fe80::99/64")  # nodad: usable at once
    a.add_route("default", via="192.0.2.2")
    a.add_route("::/0", via="2001:db8::2")
    with a.entered():
        host = SystemHost()
        mine = host.my_addresses()
        gws = host.gateways()
        with_ll = SystemHost(include_link_local=True).my_addresses()
    assert set(mine) == {ip_address("192.0.2.1"), ip_address("2001:db8::1"), ip_address("10.9.9.9")}
    assert gws == [ip_address("192.0.2.2"), ip_address("2001:db8::2")]
    assert ip_address("fe80::99") in with_ll and set(mine) < set(with_ll)
    # The same facts read from outside, naming the namespace.
    by_name = SystemHost(netns=a.ns)
    assert set(by_name.my_addresses()) == set(mine) and by_name.gateways() == gws
    assert SystemHost(netns=p.b.ns).gateways() == []
    # Broadcast addresses of the IPv4 subnets (brd set explicitly, as DHCP clients do).
    a.run(["ip", "addr", "add", "198.51.100.9/24", "brd", "+", "dev", p.link.a_ifname])
    assert ip_address("198.51.100.255") not in by_name.broadcast_addresses()  # a snapshot...
    assert ip_address("198.51.100.9") not in by_name.my_addresses()
    by_name.refresh()  # ...until refreshed
    assert ip_address("198.51.100.255") in by_name.broadcast_addresses()
    assert ip_address("198.51.100.9") in by_name.my_addresses()


def _wait_event(mon: ChangeMonitor, kind: str, seen: set[str]) -> None:
    def got() -> bool:
        seen.update(mon.drain())
        return kind in seen

    netns.wait_until(got, 3, what=f"a {kind} event")


@pytest.mark.root
def test_change_monitor_sees_address_and_route_changes(lab: netns.Lab) -> None:
    h = lab.host("m")
    with h.entered():
        mon = ChangeMonitor()
    with mon:
        assert mon.drain() == set()  # nothing yet: returns at once
        seen: set[str] = set()
        h.add_address("lo", "10.9.9.9/32")
        _wait_event(mon, "newaddr", seen)
        h.run("ip route add 10.8.0.0/16 dev lo")
        _wait_event(mon, "newroute", seen)
        h.run("ip addr del 10.9.9.9/32 dev lo")
        _wait_event(mon, "deladdr", seen)
        assert "overflow" not in seen
