"""Default exemptions: traffic that bypasses every IPsec filter (docs/policy.md).

``ipsecexempt`` takes the Windows Server 2003 values (netsh ipsec dynamic set config ipsecexempt):

====  ==============================================================
0     multicast, broadcast, RSVP, Kerberos and ISAKMP are exempt
1     multicast, broadcast and ISAKMP are exempt
2     RSVP, Kerberos and ISAKMP are exempt
3     ISAKMP only (the default)
====  ==============================================================

IKE's own traffic (UDP port 500 and the NAT-traversal port 4500, RFC 3947 / RFC 7296 section
2.23) is exempt whatever the value: the keying daemon must be able to talk before any SA exists.

What each class covers, both directions:

- ``ike``: UDP with source or destination port 500 or 4500;
- ``kerberos``: TCP or UDP with source or destination port 88;
- ``rsvp``: IP protocol 46 (RFC 2205);
- ``multicast``: destination in 224.0.0.0/4 (RFC 5771) or ff00::/8 (RFC 4291 section 2.7);
- ``broadcast``: destination 255.255.255.255 (limited broadcast, RFC 919) or one of the host's
  subnet broadcast addresses when the host environment knows them (``BroadcastAware``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ipsecd.policy.model import IPAddress

IKE = "ike"
KERBEROS = "kerberos"
RSVP = "rsvp"
MULTICAST = "multicast"
BROADCAST = "broadcast"

IKE_PORTS = frozenset({500, 4500})  # RFC 7296 section 2, RFC 3948 section 2.2
KERBEROS_PORT = 88  # RFC 4120 section 7.2
UDP = 17
TCP = 6
RSVP_PROTOCOL = 46  # RFC 2205

MULTICAST_V4 = ipaddress.IPv4Network("224.0.0.0/4")
MULTICAST_V6 = ipaddress.IPv6Network("ff00::/8")
LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

# ipsecexempt value -> the optional classes it exempts (IKE is always added).
EXEMPT_CLASSES: dict[int, frozenset[str]] = {
    0: frozenset({MULTICAST, BROADCAST, RSVP, KERBEROS}),
    1: frozenset({MULTICAST, BROADCAST}),
    2: frozenset({RSVP, KERBEROS}),
    3: frozenset(),
}
DEFAULT_IPSECEXEMPT = 3


@runtime_checkable
class BroadcastAware(Protocol):
    """A host environment that knows its subnets' directed-broadcast addresses."""

    def broadcast_addresses(self) -> Sequence[IPAddress]: ...


@dataclass(frozen=True)
class Exemptions:
    """The exemption classes in force; ``match`` says which one, if any, covers a packet."""

    classes: frozenset[str] = frozenset({IKE})
    broadcasts: frozenset[IPAddress] = field(default=frozenset())
    # Lookup tables derived in __post_init__.
    _kerberos: bool = field(init=False, repr=False, compare=False)
    _bcast4: frozenset[int] = field(init=False, repr=False, compare=False)
    _bcast6: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The dataclass stays frozen for callers; these are derived once here. IKE is never optional.
        object.__setattr__(self, "classes", frozenset(self.classes) | {IKE})
        object.__setattr__(self, "_kerberos", KERBEROS in self.classes)
        bcast = {int(a) for a in self.broadcasts if a.version == 4} | {int(LIMITED_BROADCAST)}
        object.__setattr__(self, "_bcast4", frozenset(bcast))
        object.__setattr__(self, "_bcast6", frozenset(int(a) for a in self.broadcasts if a.version == 6))

    @property
    def ipsecexempt(self) -> int | None:
        """The ipsecexempt value that gives these classes, if any."""
        for value, classes in EXEMPT_CLASSES.items():
            if classes | {IKE} == self.classes:
                return value
        return None

    def match(self, version: int, src: int, dst: int, protocol: int, sport: int, dport: int) -> str | None:
        """The exemption class covering a packet (addresses as integers), or None."""
        if protocol == UDP and (sport in IKE_PORTS or dport in IKE_PORTS):
            return IKE
        if self._kerberos and protocol in (TCP, UDP) and KERBEROS_PORT in (sport, dport):
            return KERBEROS
        classes = self.classes
        if protocol == RSVP_PROTOCOL and RSVP in classes:
            return RSVP
        if MULTICAST in classes:
            if version == 4:
                if dst >> 28 == 0xE:
                    return MULTICAST
            elif dst >> 120 == 0xFF:
                return MULTICAST
        if BROADCAST in classes:
            table = self._bcast4 if version == 4 else self._bcast6
            if dst in table:
                return BROADCAST
        return None

    def describe(self) -> list[str]:
        """One line per exemption class in force (for listings)."""
        text = {
            IKE: "IKE: UDP source or destination port 500 or 4500",
            KERBEROS: "Kerberos: TCP or UDP source or destination port 88",
            RSVP: "RSVP: IP protocol 46",
            MULTICAST: "multicast: destination 224.0.0.0/4 or ff00::/8",
            BROADCAST: "broadcast: destination 255.255.255.255"
            + "".join(f", {a}" for a in sorted(self.broadcasts, key=lambda a: (a.version, int(a)))),
        }
        order = (IKE, KERBEROS, RSVP, MULTICAST, BROADCAST)
        return [text[c] for c in order if c in self.classes]


def default_exemptions(
    ipsecexempt: int = DEFAULT_IPSECEXEMPT, broadcasts: Iterable[IPAddress] = ()
) -> Exemptions:
    """The exemptions for an ``ipsecexempt`` value 0..3 (ValueError otherwise)."""
    if ipsecexempt not in EXEMPT_CLASSES:
        raise ValueError(f"ipsecexempt must be 0, 1, 2 or 3, not {ipsecexempt}")
    return Exemptions(EXEMPT_CLASSES[ipsecexempt] | {IKE}, frozenset(broadcasts))
