"""``SystemHost``: the ``HostEnvironment`` of ``ipsecd.policy.host`` read from this Linux host.

Where each fact comes from:

- ``my_addresses``: the kernel's address list over rtnetlink, global scope only: loopback (scope
  host) and link-local addresses (scope link) are not "me" unless ``include_link_local`` (a
  filter on ``me`` matches traffic routing can send; link-local addresses need a zone), and
  addresses that are tentative or failed duplicate address detection are left out.
- ``broadcast_addresses``: the IPv4 subnet broadcast addresses of the interfaces (for the
  ``broadcast`` exemption, ``ipsecd.policy.exemptions.BroadcastAware``).
- ``resolve``: ``getaddrinfo`` (so /etc/hosts, DNS, and whatever nsswitch.conf says).
- ``dns_servers``: ``nameserver`` lines of /etc/resolv.conf (resolv.conf(5)); with
  systemd-resolved that is the local stub 127.0.0.53, which is what this host really queries.
- ``wins_servers``: Linux has no WINS client setting (only Samba's ``wins server`` option): empty
  unless given to the constructor (from ipsecd's configuration).
- ``dhcp_servers``: the server identifier (DHCP option 54, RFC 2132 section 9.7) of the newest
  lease in each dhclient lease file (``option dhcp-server-identifier A;``) and systemd-networkd
  lease file (``SERVER_ADDRESS=A``) found. DHCPv6 leases name servers by DUID, not address: skipped.
- ``gateways``: gateways of the unicast default routes of the main routing table, IPv4 first.

Kernel facts (addresses, broadcasts, gateways) are read once, on first use, so one ``SystemHost``
is one consistent snapshot; ``refresh()`` forgets them (the daemon calls it when
``ipsecd.io.netlink.ChangeMonitor`` reports a change). Files are read on every call.
"""

from __future__ import annotations

import glob
import ipaddress
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ipsecd.io.netlink import RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, Address, Netlink
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


def _unique(addrs: Sequence[IPAddress | None]) -> list[IPAddress]:
    return list(dict.fromkeys(a for a in addrs if a is not None))


def parse_resolv_conf(text: str) -> list[IPAddress]:
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


class SystemHost:
    """Host facts from the running system (see the module documentation for the sources)."""

    def __init__(
        self,
        resolv_conf: str | Path = "/etc/resolv.conf",
        *,
        lease_globs: Sequence[str] = DEFAULT_LEASE_GLOBS,
        wins: Sequence[IPAddress] = (),
        include_link_local: bool = False,
        netns: str | None = None,
    ) -> None:
        self.resolv_conf = Path(resolv_conf)
        self.lease_globs = tuple(lease_globs)
        self.wins = list(wins)
        self.include_link_local = include_link_local
        self.netns = netns  # read another network namespace's addresses and routes (by name)
        self._addresses: list[Address] | None = None
        self._gateways: list[IPAddress] | None = None

    def refresh(self) -> None:
        """Forget the kernel facts read so far; the next call reads them again."""
        self._addresses = None
        self._gateways = None

    def _kernel_addresses(self) -> list[Address]:
        if self._addresses is None:
            with Netlink(self.netns) as nl:
                self._addresses = nl.addresses()
        return self._addresses

    def my_addresses(self) -> Sequence[IPAddress]:
        scopes = {RT_SCOPE_UNIVERSE, RT_SCOPE_LINK} if self.include_link_local else {RT_SCOPE_UNIVERSE}
        found: list[IPAddress | None] = []
        for a in self._kernel_addresses():
            ip = a.ip
            if a.scope in scopes and a.usable and not ip.is_loopback and not ip.is_multicast:
                if ip.is_link_local and not self.include_link_local:
                    continue  # a 169.254/16 or fe80::/10 address configured with global scope
                found.append(ip)
        return _unique(found)

    def broadcast_addresses(self) -> Sequence[IPAddress]:
        return _unique([a.broadcast for a in self._kernel_addresses()])

    def resolve(self, name: str) -> Sequence[IPAddress]:
        """Blocking (DNS timeouts can take seconds): the daemon calls it from a worker thread."""
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):  # socket.gaierror is an OSError
            return []
        return _unique([_address(str(info[4][0])) for info in infos])

    def dns_servers(self) -> Sequence[IPAddress]:
        try:
            text = self.resolv_conf.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return parse_resolv_conf(text)

    def wins_servers(self) -> Sequence[IPAddress]:
        return list(self.wins)

    def dhcp_servers(self) -> Sequence[IPAddress]:
        found: list[IPAddress | None] = []
        for pattern in self.lease_globs:
            for path in sorted(glob.glob(pattern)):
                try:
                    text = Path(path).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                found.append(parse_lease_file(text))
        return _unique(found)

    def gateways(self) -> Sequence[IPAddress]:
        if self._gateways is None:
            with Netlink(self.netns) as nl:
                self._gateways = list(nl.default_gateways())
        return list(self._gateways)


if TYPE_CHECKING:
    _conforms: HostEnvironment = SystemHost()
