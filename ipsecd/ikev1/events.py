"""What an IKEv1 session reports to the daemon: frozen event dataclasses and the IP Security Monitor
counters. Events carry plain data; keys only inside ``SAParams`` (whose repr hides them)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

from ipsecd.datapath.sa import SAParams
from ipsecd.ikev1.selectors import TrafficSelector
from ipsecd.log.events import FailurePoint, NegotiationMode
from ipsecd.policy.model import QmSecMethod

Addr = tuple[str, int]


class Event:
    """Base class of the session's events."""


@dataclass(frozen=True)
class IkeSaEstablished(Event):
    cky_i: bytes
    cky_r: bytes
    initiator: bool
    peer_id: str
    encryption: str
    hash: str
    group: int
    lifetime_s: int
    natt: bool
    nat_local: bool
    nat_peer: bool
    rekey: bool = False


class DeleteReason(enum.Enum):
    LOCAL = "deleted locally"
    PEER = "deleted by peer"
    EXPIRED = "expired"
    REKEYED = "rekeyed"
    PEER_DEAD = "peer dead"


@dataclass(frozen=True)
class IkeSaDeleted(Event):
    cky_i: bytes
    cky_r: bytes
    reason: DeleteReason


@dataclass(frozen=True)
class ChildSaEstablished(Event):
    """One Quick Mode result. ``inbound``/``outbound``: ESP (or AH alone); ``ah_*``: the AH half of an
    AH+ESP bundle. ``rekey_of``: the inbound SPI of the SA this one replaces."""

    inbound: SAParams
    outbound: SAParams
    local_ts: TrafficSelector
    remote_ts: TrafficSelector
    method: QmSecMethod
    pfs_group: int | None
    life_seconds: int
    life_kilobytes: int
    initiator: bool
    ah_inbound: SAParams | None = None
    ah_outbound: SAParams | None = None
    rekey_of: int | None = None


@dataclass(frozen=True)
class ChildSaDeleted(Event):
    inbound_spi: int
    outbound_spi: int
    reason: DeleteReason


@dataclass(frozen=True)
class NegotiationFailed(Event):
    """The Windows 547 event: mode, reason, failure point (``ME``: we refused or gave up; ``PEER``: the
    peer said no), and the notify type when there was one."""

    mode: NegotiationMode
    reason: str
    failure_point: FailurePoint
    notify: int | None = None


@dataclass(frozen=True)
class AuthenticationFailed(Event):
    reason: str


@dataclass(frozen=True)
class PeerDead(Event):
    unanswered: int


@dataclass(frozen=True)
class NotifyReceived(Event):
    """A notify that changed nothing (unprotected errors, status), for the log."""

    notify_type: int
    protected: bool


@dataclass
class Counters:
    """IP Security Monitor statistics of one session (Windows names in the comments)."""

    invalid_packets: int = 0  # "Invalid Packets Received"
    invalid_cookies: int = 0  # "Invalid Cookies Received"
    negotiation_failures: int = 0  # "Main/Quick Mode Negotiation Failures"
    authentication_failures: int = 0  # "Authentication Failures"
    main_mode_sas: int = 0  # "Main Mode SAs" established
    quick_mode_sas: int = 0  # "Quick Mode SAs" established
    retransmissions: int = 0
    duplicates: int = 0  # retransmitted peer messages answered from the cache
    unprotected_notifies: int = 0
    refused_exchanges: int = 0  # Aggressive Mode and other exchange types we do not run
    rekeys: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
