"""The running system's host facts (``HostEnvironment``) for filter expansion.

- ``my_addresses``: the global-scope unicast addresses of every interface (``ip -j addr``);
  loopback (scope host) and link-local addresses are not "me".
- ``resolve``: ``socket.getaddrinfo``.
- ``dns_servers``: the ``nameserver`` lines of /etc/resolv.conf.
- ``gateways``: the gateways of the IPv4 and IPv6 default routes (``ip -j route``).
- ``wins_servers`` / ``dhcp_servers``: none (Linux has no WINS client; the DHCP server is not
  recorded in a standard place) -- filters naming them expand to nothing.
- ``broadcast_addresses``: the subnet broadcast addresses of the IPv4 interfaces (for the
  ``broadcast`` exemption, ``ipsecd.policy.exemptions.BroadcastAware``).

Facts are read once, on first use, so one ``SystemHost`` is one consistent snapshot.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from ipsecd.policy.model import IPAddress

IP_TIMEOUT_S = 5.0


def _ip_json(*args: str) -> list[dict[str, Any]]:
    """``ip -j ARGS`` as parsed JSON; empty when iproute2 is missing or fails."""
    try:
        r = subprocess.run(
            ["ip", "-j", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if r.returncode != 0 or not r.stdout.strip():
        return []
    try:
        data = json.loads(r.stdout)
    except ValueError:
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _addr(text: object) -> IPAddress | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


class SystemHost:
    """Host facts of the machine this runs on."""

    def __init__(self, resolv_conf: str | Path = "/etc/resolv.conf") -> None:
        self._resolv_conf = Path(resolv_conf)

    @cached_property
    def _addr_info(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for link in _ip_json("addr", "show"):
            info = link.get("addr_info")
            if isinstance(info, list):
                out.extend(i for i in info if isinstance(i, dict))
        return out

    def my_addresses(self) -> Sequence[IPAddress]:
        addrs = [_addr(i.get("local")) for i in self._addr_info if i.get("scope") == "global"]
        return list(dict.fromkeys(a for a in addrs if a is not None))

    def broadcast_addresses(self) -> Sequence[IPAddress]:
        addrs = [_addr(i.get("broadcast")) for i in self._addr_info if i.get("family") == "inet"]
        return list(dict.fromkeys(a for a in addrs if a is not None))

    def resolve(self, name: str) -> Sequence[IPAddress]:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return []
        addrs = [_addr(info[4][0]) for info in infos]
        return list(dict.fromkeys(a for a in addrs if a is not None))

    def dns_servers(self) -> Sequence[IPAddress]:
        try:
            lines = self._resolv_conf.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        found = []
        for line in lines:
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                a = _addr(words[1])
                if a is not None:
                    found.append(a)
        return list(dict.fromkeys(found))

    def wins_servers(self) -> Sequence[IPAddress]:
        return []

    def dhcp_servers(self) -> Sequence[IPAddress]:
        return []

    def gateways(self) -> Sequence[IPAddress]:
        found = []
        for family in ("-4", "-6"):
            for route in _ip_json(family, "route", "show", "default"):
                a = _addr(route.get("gateway"))
                if a is not None:
                    found.append(a)
        return list(dict.fromkeys(found))
