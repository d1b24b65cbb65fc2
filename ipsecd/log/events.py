"""The ipsecd event catalogue: what the daemon reports, with stable numeric IDs.

Modelled on the audit events of the Windows 2000/XP/2003 IPsec policy agent and IKE service
(Security log IDs 541-547) and their Windows Vista+ successors (4650-4655, 5451-5452,
4960-4965, 5460-5465, 4709/4710).  ipsecd keeps its OWN numbering (EventId below): the values
are a public contract (monitoring rules match on them) and never change or get reused once
released.  The Windows IDs an event corresponds to are listed per event (``windows_ids``) and in
docs/events.md, for operators who know the Windows names.

Rules of this module:
- one frozen dataclass per event; every field is plain data (str, int, bool, enums, IP addresses,
  tuples of those) so it serialises to JSON without help;
- secrets (pre-shared keys, SKEYID*, KEYMAT, private keys, DH secrets) are NEVER fields of an
  event: there is no field of type bytes, and tests/test_log_events.py checks every field name
  and type against that rule;
- no clock here: the time of an event is given to the sinks by the caller (pure package).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
JSONScalar: TypeAlias = str | int | float | bool | None
JSONValue: TypeAlias = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]


class Priority(enum.IntEnum):
    """syslog(3) severities (RFC 5424 section 6.2.1, table 2); lower is more severe."""

    EMERG = 0
    ALERT = 1
    CRIT = 2
    ERR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6
    DEBUG = 7


class EventId(enum.IntEnum):
    """Stable numeric IDs.  Ranges: 1000 daemon, 1100 policy, 1200 IKE, 1300 data path."""

    DAEMON_STARTED = 1000
    DAEMON_STOPPED = 1001
    POLICY_CHANGED = 1100
    POLICY_APPLIED = 1101
    POLICY_REJECTED = 1102
    MAIN_MODE_SA_ESTABLISHED = 1200
    MAIN_MODE_SA_ENDED = 1201
    QUICK_MODE_SA_ESTABLISHED = 1202
    QUICK_MODE_SA_ENDED = 1203
    NEGOTIATION_FAILED = 1210
    AUTHENTICATION_FAILED = 1211
    CERTIFICATE_TRUST_FAILED = 1212
    SA_EXPIRED = 1220
    SA_REKEYED = 1221
    DPD_PEER_DEAD = 1230
    PACKETS_DROPPED = 1300


class NegotiationMode(enum.Enum):
    """Which exchange an IKE event is about.

    MAIN_MODE is the ISAKMP SA (RFC 2409 section 5, "Key Exchange Mode" in the Windows audit
    text; for IKEv2 the IKE SA of RFC 7296 section 1.2); QUICK_MODE is the IPsec SA
    (RFC 2409 section 5.5, "Data Protection Mode"; for IKEv2 a Child SA, RFC 7296 section 1.3).
    """

    MAIN_MODE = "main"
    QUICK_MODE = "quick"


class FailurePoint(enum.Enum):
    """Where a negotiation failed, as in the Windows 547 audit: on this host or at the peer."""

    ME = "me"
    PEER = "peer"


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class EndReason(enum.Enum):
    """Why an SA ended (main or quick mode)."""

    DELETED_LOCALLY = "deleted_locally"  # policy change, flush, shutdown, ipsecctl
    DELETED_BY_PEER = "deleted_by_peer"  # RFC 2408 section 3.15 Delete payload received
    EXPIRED = "expired"  # hard lifetime reached
    REKEYED = "rekeyed"  # replaced by a newer SA
    PEER_DEAD = "peer_dead"  # dead peer detection (RFC 3706)
    IDLE = "idle"  # idle timeout


class DropReason(enum.Enum):
    """Reasons the data path drops a packet (the Windows 4960-4965 family, plus ours)."""

    INTEGRITY = "integrity"  # ICV check failed (RFC 4303 section 3.4.4)
    REPLAY = "replay"  # sequence number seen or left of the window (RFC 4303 section 3.4.3)
    CLEARTEXT = "cleartext"  # plaintext packet matched a filter that requires security
    UNKNOWN_SPI = "unknown_spi"  # no SA for the SPI (RFC 4303 section 3.4.2)
    MALFORMED = "malformed"  # truncated or bad padding/next header
    BLOCKED = "blocked"  # a Block filter action matched
    NO_SA = "no_sa"  # outbound packet needed an SA that is not (yet) there


@dataclass(frozen=True)
class EventSpec:
    """Static description of one event ID: name, syslog priority, Windows counterparts."""

    event_id: EventId
    priority: Priority
    windows_ids: tuple[int, ...]
    meaning: str

    @property
    def name(self) -> str:
        return self.event_id.name


SPECS: Mapping[EventId, EventSpec] = {
    s.event_id: s
    for s in (
        EventSpec(
            EventId.DAEMON_STARTED, Priority.NOTICE, (4709,), "the daemon started and applied its store"
        ),
        EventSpec(EventId.DAEMON_STOPPED, Priority.NOTICE, (4710,), "the daemon stopped (reason given)"),
        EventSpec(EventId.POLICY_CHANGED, Priority.INFO, (), "the policy store changed; not yet applied"),
        EventSpec(
            EventId.POLICY_APPLIED,
            Priority.NOTICE,
            (5460, 5464, 5465),
            "a policy was applied to the data path",
        ),
        EventSpec(
            EventId.POLICY_REJECTED,
            Priority.ERR,
            (5461, 5462),
            "a policy could not be applied; nothing of it was applied, the previous one stays",
        ),
        EventSpec(
            EventId.MAIN_MODE_SA_ESTABLISHED,
            Priority.INFO,
            (541, 4650, 4651),
            "a main mode (ISAKMP / IKE) SA was established",
        ),
        EventSpec(EventId.MAIN_MODE_SA_ENDED, Priority.INFO, (543, 4655), "a main mode SA ended"),
        EventSpec(
            EventId.QUICK_MODE_SA_ESTABLISHED,
            Priority.INFO,
            (541, 5451),
            "a quick mode (IPsec / Child) SA pair was established",
        ),
        EventSpec(EventId.QUICK_MODE_SA_ENDED, Priority.INFO, (542, 5452), "a quick mode SA pair ended"),
        EventSpec(
            EventId.NEGOTIATION_FAILED,
            Priority.WARNING,
            (547, 546, 4653, 4654),
            "an IKE negotiation failed: mode, filter, failure point and reason",
        ),
        EventSpec(EventId.AUTHENTICATION_FAILED, Priority.WARNING, (545, 4653), "peer authentication failed"),
        EventSpec(
            EventId.CERTIFICATE_TRUST_FAILED,
            Priority.WARNING,
            (544, 4652),
            "the peer's certificate did not chain to a trusted root of the policy",
        ),
        EventSpec(EventId.SA_EXPIRED, Priority.INFO, (), "an SA reached its hard lifetime"),
        EventSpec(EventId.SA_REKEYED, Priority.INFO, (), "an SA was replaced by a new one before expiry"),
        EventSpec(EventId.DPD_PEER_DEAD, Priority.WARNING, (), "dead peer detection declared the peer dead"),
        EventSpec(
            EventId.PACKETS_DROPPED,
            Priority.WARNING,
            (4960, 4961, 4962, 4963, 4965),
            "summary of packets the data path dropped since the last summary, per reason",
        ),
    )
}


def _jsonable(value: object) -> JSONValue:
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, str) else value.name
    if isinstance(
        value, ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network
    ):
        return str(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    # bytes and anything else: refused, so that key material can never slip into a log.
    raise TypeError(f"event field of type {type(value).__name__} is not loggable")


@dataclass(frozen=True)
class Event:
    """Base of all events.  Subclasses set ``event_id``; their dataclass fields are the payload."""

    event_id: ClassVar[EventId]

    @property
    def spec(self) -> EventSpec:
        return SPECS[self.event_id]

    @property
    def name(self) -> str:
        return self.event_id.name

    @property
    def priority(self) -> Priority:
        return SPECS[self.event_id].priority

    def fields(self) -> dict[str, JSONValue]:
        """The payload as JSON-ready values (enums by value, addresses as text)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def summary(self) -> str:
        """One human line: NAME key=value ... (for syslog and the console)."""
        parts = [self.name]
        for key, value in self.fields().items():
            if value is None:
                continue
            if isinstance(value, dict):
                text = ",".join(f"{k}:{v}" for k, v in value.items())
            elif isinstance(value, list):
                text = ",".join(str(v) for v in value)
            else:
                text = str(value)
            if not text or any(c.isspace() for c in text) or '"' in text:
                text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
            parts.append(f"{key}={text}")
        return " ".join(parts)


# --- daemon ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonStarted(Event):
    event_id: ClassVar[EventId] = EventId.DAEMON_STARTED
    version: str
    config: str
    policy: str | None  # name of the assigned policy, None when none is assigned


@dataclass(frozen=True)
class DaemonStopped(Event):
    event_id: ClassVar[EventId] = EventId.DAEMON_STOPPED
    reason: str  # "signal SIGTERM", "fatal: ..."


# --- policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyChanged(Event):
    event_id: ClassVar[EventId] = EventId.POLICY_CHANGED
    source: str  # "ipsecctl", "file", ...
    objects: tuple[str, ...]  # names of changed policies / rules / filter lists / actions


@dataclass(frozen=True)
class PolicyApplied(Event):
    event_id: ClassVar[EventId] = EventId.POLICY_APPLIED
    policy: str | None
    rules: int
    filters: int


@dataclass(frozen=True)
class PolicyRejected(Event):
    event_id: ClassVar[EventId] = EventId.POLICY_REJECTED
    policy: str | None
    error: str  # the clear error, never containing secrets


# --- IKE ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MainModeSAEstablished(Event):
    event_id: ClassVar[EventId] = EventId.MAIN_MODE_SA_ESTABLISHED
    local: IPAddress
    peer: IPAddress
    peer_identity: str  # ID payload as text (RFC 2407 section 4.6.2), or certificate subject
    auth_method: str  # "preshared", "certificate", ...
    encryption: str
    integrity: str
    dh_group: int
    lifetime_seconds: int
    role: Role
    ike_version: int = 1
    certificate: bool = False  # True when a certificate authenticated the peer (Windows 4651)


@dataclass(frozen=True)
class MainModeSAEnded(Event):
    event_id: ClassVar[EventId] = EventId.MAIN_MODE_SA_ENDED
    local: IPAddress
    peer: IPAddress
    reason: EndReason


@dataclass(frozen=True)
class QuickModeSAEstablished(Event):
    event_id: ClassVar[EventId] = EventId.QUICK_MODE_SA_ESTABLISHED
    local: IPAddress
    peer: IPAddress
    filter: str  # the filter (policy/rule/filter list) that the SA protects
    protocol: str  # "esp" or "ah"
    encapsulation: str  # "transport" or "tunnel"
    inbound_spi: int  # SPIs are public (on the wire), not secrets
    outbound_spi: int
    encryption: str
    integrity: str
    lifetime_seconds: int
    lifetime_kilobytes: int
    pfs_group: int | None = None


@dataclass(frozen=True)
class QuickModeSAEnded(Event):
    event_id: ClassVar[EventId] = EventId.QUICK_MODE_SA_ENDED
    local: IPAddress
    peer: IPAddress
    filter: str
    inbound_spi: int
    outbound_spi: int
    reason: EndReason


@dataclass(frozen=True)
class NegotiationFailed(Event):
    """The Windows 547 event: which mode, which filter, failure point (me/peer) and reason."""

    event_id: ClassVar[EventId] = EventId.NEGOTIATION_FAILED
    mode: NegotiationMode
    filter: str
    failure_point: FailurePoint
    reason: str  # e.g. "no proposal chosen", "negotiation timed out"
    peer: IPAddress
    local: IPAddress | None = None
    notify: str | None = None  # RFC 2408 section 3.14.1 / RFC 7296 section 3.10.1 notify type name


@dataclass(frozen=True)
class AuthenticationFailed(Event):
    event_id: ClassVar[EventId] = EventId.AUTHENTICATION_FAILED
    peer: IPAddress
    peer_identity: str
    auth_method: str
    reason: str  # e.g. "hash mismatch (pre-shared keys differ?)"; never the key itself


@dataclass(frozen=True)
class CertificateTrustFailed(Event):
    event_id: ClassVar[EventId] = EventId.CERTIFICATE_TRUST_FAILED
    peer: IPAddress
    subject: str
    issuer: str
    reason: str  # "no trusted root", "expired", "revoked", ...


@dataclass(frozen=True)
class SAExpired(Event):
    event_id: ClassVar[EventId] = EventId.SA_EXPIRED
    mode: NegotiationMode
    peer: IPAddress
    spi: int | None  # quick mode SAs; None for main mode
    limit: str  # "seconds" or "kilobytes"


@dataclass(frozen=True)
class SARekeyed(Event):
    event_id: ClassVar[EventId] = EventId.SA_REKEYED
    mode: NegotiationMode
    peer: IPAddress
    old_spi: int | None
    new_spi: int | None


@dataclass(frozen=True)
class DPDPeerDead(Event):
    """RFC 3706 (IKEv1) / RFC 7296 section 2.4 liveness: the peer stopped answering."""

    event_id: ClassVar[EventId] = EventId.DPD_PEER_DEAD
    peer: IPAddress
    idle_seconds: int
    retries: int


# --- data path ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PacketsDropped(Event):
    """A periodic summary (never one event per packet): counts per DropReason value."""

    event_id: ClassVar[EventId] = EventId.PACKETS_DROPPED
    interval_seconds: int
    counts: tuple[tuple[DropReason, int], ...]
    peer: IPAddress | None = None

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)

    def fields(self) -> dict[str, JSONValue]:
        out = super().fields()
        out["counts"] = {reason.value: n for reason, n in self.counts}
        out["total"] = self.total
        return out


ALL_EVENTS: tuple[type[Event], ...] = (
    DaemonStarted,
    DaemonStopped,
    PolicyChanged,
    PolicyApplied,
    PolicyRejected,
    MainModeSAEstablished,
    MainModeSAEnded,
    QuickModeSAEstablished,
    QuickModeSAEnded,
    NegotiationFailed,
    AuthenticationFailed,
    CertificateTrustFailed,
    SAExpired,
    SARekeyed,
    DPDPeerDead,
    PacketsDropped,
)
