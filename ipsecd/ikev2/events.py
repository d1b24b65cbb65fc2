"""What an IKEv2 session reports to its owner (``Session.next_event()``), and its counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ipsecd.datapath.sa import SAParams
from ipsecd.ikev2.payloads import Identity, TrafficSelector


class FailurePoint(enum.Enum):
    """Where a negotiation failed, as the IP Security Monitor shows it: our side or the peer's."""

    LOCAL = "local computer"
    PEER = "peer"


@dataclass(frozen=True)
class IkeSaEstablished:
    spi_i: bytes
    spi_r: bytes
    initiator: bool
    local_id: Identity
    peer_id: Identity
    algorithms: str  # e.g. "ENCR_AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE25519"
    natt: bool
    peer_fragmentation: bool


@dataclass(frozen=True)
class IkeSaRekeyed:
    old_spis: tuple[bytes, bytes]
    new_spis: tuple[bytes, bytes]
    algorithms: str


@dataclass(frozen=True)
class IkeSaDeleted:
    reason: str
    by_peer: bool


@dataclass(frozen=True)
class ChildSaEstablished:
    inbound: SAParams
    outbound: SAParams
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    algorithms: str
    pfs_group: int | None
    initiator: bool


@dataclass(frozen=True)
class ChildSaRekeyed:
    """``old_inbound_spi``'s pair is replaced by the new one (the old stays until it is deleted)."""

    old_inbound_spi: int
    old_outbound_spi: int
    inbound: SAParams
    outbound: SAParams
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    algorithms: str
    pfs_group: int | None


@dataclass(frozen=True)
class ChildSaDeleted:
    inbound_spi: int
    outbound_spi: int
    reason: str


@dataclass(frozen=True)
class ChildSaFailed:
    """A child SA could not be made; the IKE SA stays (RFC 7296 section 2.21.3)."""

    reason: str
    notify: int | None
    failure_point: FailurePoint


@dataclass(frozen=True)
class NegotiationFailed:
    """The IKE SA could not be set up (IKE_SA_INIT or IKE_AUTH)."""

    reason: str
    failure_point: FailurePoint
    exchange: int
    notify: int | None = None


@dataclass(frozen=True)
class PeerDead:
    """Requests went unanswered after all retransmissions (RFC 7296 section 2.4)."""

    reason: str


@dataclass(frozen=True)
class InitialContact:
    """The peer sent INITIAL_CONTACT: other IKE SAs with this identity are stale (section 3.10.1)."""

    peer_id: Identity


Event = (
    IkeSaEstablished
    | IkeSaRekeyed
    | IkeSaDeleted
    | ChildSaEstablished
    | ChildSaRekeyed
    | ChildSaDeleted
    | ChildSaFailed
    | NegotiationFailed
    | PeerDead
    | InitialContact
)


@dataclass
class Counters:
    """Per-session statistics, named after the IP Security Monitor's IKE counters."""

    datagrams_received: int = 0
    datagrams_sent: int = 0
    invalid_packets: int = 0  # malformed, unexpected or not authenticating: dropped
    authentication_failures: int = 0
    retransmissions: int = 0
    duplicate_requests: int = 0  # answered from the cached response
    invalid_message_ids: int = 0
    key_additions: int = 0  # child SAs made
    key_deletions: int = 0
    rekeys: int = 0  # IKE and child rekeys completed
    negotiation_failures: int = 0
    liveness_checks: int = 0
