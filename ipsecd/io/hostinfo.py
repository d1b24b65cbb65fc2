"""``SystemHost``: the ``HostEnvironment`` of ``ipsecd.policy.host`` read from this Linux host.

Where each fact comes from:

- ``my_addresses``: the kernel's address list over rtnetlink, loopback excluded, IPv6 link-local
  excluded unless asked for (a filter on ``me`` matches traffic that routing can send; link-local
  addresses are per link and would need a scope), addresses that failed DAD excluded.
- ``resolve``: ``getaddrinfo`` (so /etc/hosts, DNS, and whatever nsswitch.conf says).
- ``dns_servers``: ``nameserver`` lines of /etc/resolv.conf (resolv.conf(5)); with
  systemd-resolved that is the local stub 127.0.0.53, which is what this host really queries.
- ``wins_servers``: Linux has no system-wide WINS setting (only Samba's ``wins server`` option):
  empty unless given to the constructor (from ipsecd's configuration).
- ``dhcp_servers``: the server identifier (DHCP option 54, RFC 2132 section 9.7) of the newest
  lease in each dhclient lease file (``option dhcp-server-identifier A;``) and systemd-networkd
  lease file (``SERVER_ADDRESS=A``) found. DHCPv6 leases name servers by DUID, not address: skipped.
- ``gateways``: gateways of the unicast default routes of the main routing table, IPv4 first.

Every fact is read when asked (no cache): the caller decides when to re-expand filters.
"""

from __future__ import annotations

import glob
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ipsecd.io.netlink import Netlink
from ipsecd.policy.model import IPAddress

if TYPE_CHECKING:
    from ipsecd.policy.host import HostEnvironment

DEFAULT_LEASE_GLOBS: tuple[str, ...] = (
    "/var/lib/dhcp/dhclient*.leases",  # Debian's isc-dhcp-client
    "/var/lib/dhclient/*.lease*",  # Red Hat family
    "/var/lib/NetworkManager/*.lease",  # NetworkManager's internal dhclient format
    "/run/systemd/netif/leases/*",  # systemd-networkd
)

_DHCLIENT_SERVER = re.compile(r"option\s+dhcp-server-identifier\s+([0-9.]+)\s*;")
_NETWORKD_SERVER = re.compile(r"^SERVER_ADDRESS=(\S+)\s*$", re.MULTILINE)


def _address(text: str) -> IPAddress | None:
    """An address without any IPv6 zone (``fe80::1%eth0``); None if it is not one."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0].strip())
    except ValueError:
        return None


def _unique(addrs: Sequence[IPAddress | None]) -> tuple[IPAddress, ...]:
    out: list[IPAddress] = []
    for a in addrs:
        if a is not None and a not in out:
            out.append(a)
    return tuple(out)


def parse_resolv_conf(text: str) -> tuple[IPAddress, ...]:
    """``nameserver`` addresses in order; comments (# or ;) and malformed lines ignored."""
    found: list[IPAddress | None] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            found.append(_address(words[1]))
    return _unique(found)


def parse_lease_file(text: str) -> IPAddress | None:
    """The DHCP server of the newest lease in a dhclient or systemd-networkd lease file."""
    m = _NETWORKD_SERVER.search(text)
    if m:
        return _address(m.group(1))
    servers = _DHCLIENT_SERVER.findall(text)  # dhclient appends leases: the last one is newest
    return _address(servers[-1]) if servers else None


@dataclass(frozen=True)
class SystemHost:
    """Host facts from the running system (see the module documentation for the sources)."""

    resolv_conf: Path = Path("/etc/resolv.conf")
    lease_globs: tuple[str, ...] = DEFAULT_LEASE_GLOBS
    wins: tuple[IPAddress, ...] = ()
    include_link_local: bool = False
    netns: str | None = None  # read another network namespace's addresses and routes (by name)

    def my_addresses(self) -> Sequence[IPAddress]:
        with Netlink(self.netns) as nl:
            found = nl.addresses()
        out: list[IPAddress | None] = []
        for a in found:
            ip = a.ip
            if ip.is_loopback or ip.is_multicast or not a.usable:
                continue
            if ip.is_link_local and ip.version == 6 and not self.include_link_local:
                continue
            out.append(ip)
        return _unique(out)

    def resolve(self, name: str) -> Sequence[IPAddress]:
        """Blocking (DNS timeouts can take seconds): the daemon calls it from a worker thread."""
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            return ()
        return _unique([_address(str(info[4][0])) for info in infos])

    def dns_servers(self) -> Sequence[IPAddress]:
        try:
            text = self.resolv_conf.read_text(errors="replace")
        except OSError:
            return ()
        return parse_resolv_conf(text)

    def wins_servers(self) -> Sequence[IPAddress]:
        return self.wins

    def dhcp_servers(self) -> Sequence[IPAddress]:
        found: list[IPAddress | None] = []
        for pattern in self.lease_globs:
            for path in sorted(glob.glob(pattern)):
                try:
                    text = Path(path).read_text(errors="replace")
                except OSError:
                    continue
                found.append(parse_lease_file(text))
        return _unique(found)

    def gateways(self) -> Sequence[IPAddress]:
        with Netlink(self.netns) as nl:
            return tuple(nl.default_gateways())


if TYPE_CHECKING:
    _conforms: HostEnvironment = SystemHost()
