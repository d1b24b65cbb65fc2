"""What filter expansion needs to know about the host, injected so the policy code stays pure.

``ipsecd.io.hostinfo`` implements this from the kernel (netlink, /etc/resolv.conf, the DHCP lease,
getaddrinfo); tests use ``StaticHost``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ipsecd.policy.model import IPAddress


class HostEnvironment(Protocol):
    """The host facts behind ``me``, DNS names and the dynamic keywords."""

    def my_addresses(self) -> Sequence[IPAddress]:
        """Every unicast address of this host (what ``me`` stands for)."""

    def resolve(self, name: str) -> Sequence[IPAddress]:
        """Addresses of a DNS name; empty when it does not resolve."""

    def dns_servers(self) -> Sequence[IPAddress]: ...

    def wins_servers(self) -> Sequence[IPAddress]: ...

    def dhcp_servers(self) -> Sequence[IPAddress]: ...

    def gateways(self) -> Sequence[IPAddress]:
        """Default gateways."""


@dataclass(frozen=True)
class StaticHost:
    """A host described by fixed facts (tests, offline validation)."""

    addresses: Sequence[IPAddress] = ()
    names: Mapping[str, Sequence[IPAddress]] = field(default_factory=dict)
    dns: Sequence[IPAddress] = ()
    wins: Sequence[IPAddress] = ()
    dhcp: Sequence[IPAddress] = ()
    gateway: Sequence[IPAddress] = ()

    def my_addresses(self) -> Sequence[IPAddress]:
        return self.addresses

    def resolve(self, name: str) -> Sequence[IPAddress]:
        return self.names.get(name.lower().rstrip("."), ())

    def dns_servers(self) -> Sequence[IPAddress]:
        return self.dns

    def wins_servers(self) -> Sequence[IPAddress]:
        return self.wins

    def dhcp_servers(self) -> Sequence[IPAddress]:
        return self.dhcp

    def gateways(self) -> Sequence[IPAddress]:
        return self.gateway
