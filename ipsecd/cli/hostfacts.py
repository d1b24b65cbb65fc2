"""``--host-facts FILE``: host facts from a small JSON or TOML file instead of the running system.

For tests and offline previews of ``show filters`` and ``match``. Keys (all optional)::

    addresses = ["192.0.2.10", "2001:db8::10"]       # what "me" stands for
    names = { "www.example.com" = ["198.51.100.7"] }  # DNS names
    dns = ["192.0.2.53"]
    wins = []
    dhcp = []
    gateway = ["192.0.2.1"]
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path
from typing import Any

from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import IPAddress

_LIST_KEYS = ("addresses", "dns", "wins", "dhcp", "gateway")


class HostFactsError(Exception):
    pass


def _addresses(path: Path, key: str, value: Any) -> tuple[IPAddress, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HostFactsError(f"{path}: {key}: expected a list of addresses")
    try:
        return tuple(ipaddress.ip_address(v) for v in value)
    except ValueError as exc:
        raise HostFactsError(f"{path}: {key}: {exc}") from None


def load_host_facts(path: str | Path) -> StaticHost:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise HostFactsError(f"{p}: {exc.strerror}") from None
    try:
        data: Any = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise HostFactsError(f"{p}: {exc}") from None
    if not isinstance(data, dict):
        raise HostFactsError(f"{p}: expected a table of host facts")
    unknown = sorted(set(data) - {*_LIST_KEYS, "names"})
    if unknown:
        raise HostFactsError(f"{p}: unknown keys {unknown}")
    lists = {k: _addresses(p, k, data.get(k, [])) for k in _LIST_KEYS}
    names_raw = data.get("names", {})
    if not isinstance(names_raw, dict):
        raise HostFactsError(f"{p}: names: expected a table of name = [addresses]")
    names = {str(k).lower().rstrip("."): _addresses(p, f"names.{k}", v) for k, v in names_raw.items()}
    return StaticHost(
        addresses=lists["addresses"],
        names=names,
        dns=lists["dns"],
        wins=lists["wins"],
        dhcp=lists["dhcp"],
        gateway=lists["gateway"],
    )
