"""One IKEv2 SA, sans-I/O (RFC 7296): IKE_SA_INIT, IKE_AUTH with a pre-shared key and the first
child SA, CREATE_CHILD_SA (new child, child rekey, IKE SA rekey, PFS) and INFORMATIONAL (delete,
liveness), with retransmission and the message-ID window of one.

The owner feeds datagrams (``receive_datagram``), sends ``datagrams_to_send(now)`` (a datagram that
starts with the non-ESP marker goes out from the local NAT-T port, RFC 3948 section 2.2), arms
``get_timer()`` and calls ``handle_timer(now)``, and reads events with ``next_event()``. Time,
randomness and Diffie-Hellman are injected. A malformed, unexpected or unauthenticated datagram is
counted and dropped; once the SA is established only messages that decrypt and authenticate under
its keys change anything. The exchanges themselves are in ``ipsecd.ikev2.exchanges``.
"""

from __future__ import annotations

import datetime
import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ipsecd.ike.dh import DhProvider
from ipsecd.ikev2 import message
from ipsecd.ikev2.certauth import Credentials
from ipsecd.ikev2.child import ChildSa, ChildState
from ipsecd.ikev2.constants import NON_ESP_MARKER, ExchangeType, Flag
from ipsecd.ikev2.crypto import IkeKeys, SkSuite
from ipsecd.ikev2.events import Counters, Event, FailurePoint, NegotiationFailed, PeerDead
from ipsecd.ikev2.message import Header, Message, Reassembler
from ipsecd.ikev2.payloads import EncryptedFragmentPayload, Identity, Payload, TrafficSelector
from ipsecd.ikev2.proposals import ChildAlgorithms, IkeAlgorithms

Addr = tuple[str, int]
Rng = Callable[[int], bytes]


@dataclass(frozen=True)
class SessionConfig:
    """What one IKEv2 connection negotiates. The PSK never appears in repr()."""

    ike: tuple[IkeAlgorithms, ...]
    esp: tuple[ChildAlgorithms, ...]
    psk: bytes = field(repr=False)
    local_id: Identity
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    remote_id: Identity | None = None  # None: any identity that authenticates with the PSK
    transport: bool = False  # USE_TRANSPORT_MODE (RFC 7296 section 1.3.1)
    pfs_group: int | None = None  # KE in CREATE_CHILD_SA for new and rekeyed children
    ike_rekey_s: float = 14400.0
    child_rekey_s: float = 3600.0
    rekey_margin_s: float = 60.0  # hard lifetime = rekey time + margin
    retransmit_timeout_s: float = 1.0  # doubled for each try (RFC 7296 section 2.4)
    retransmit_tries: int = 5
    dpd_interval_s: float = 30.0  # liveness check after this long without a message from the peer
    half_open_timeout_s: float = 30.0
    force_encap: bool = False  # pretend to be behind a NAT so ESP is UDP-encapsulated
    initial_contact: bool = True
    fragment_size: int = 1280  # RFC 7383: fragment protected messages above this when possible
    remote_natt_port: int = 4500
    certs: Credentials | None = None  # certificate authentication (RFC 7427) instead of the PSK
    announce_rfc7427: bool = True  # send SIGNATURE_HASH_ALGORITHMS (else the peer signs classically)

    def __post_init__(self) -> None:
        if not self.ike or not self.esp:
            raise ValueError("a session needs IKE and ESP proposals")
        if not self.psk and self.certs is None:
            raise ValueError("a pre-shared key or certificate credentials are required")
        if not self.local_ts or not self.remote_ts:
            raise ValueError("traffic selectors are required")
        if self.retransmit_tries < 1 or self.retransmit_timeout_s <= 0:
            raise ValueError("bad retransmission settings")


class State(enum.Enum):
    INIT = "init"  # initiator: IKE_SA_INIT sent; responder: nothing received yet
    AUTH = "auth"  # initiator: IKE_AUTH sent; responder: IKE_SA_INIT answered
    ESTABLISHED = "established"
    CLOSED = "closed"


class Drop(Exception):
    """Drop the datagram being processed (counted as invalid)."""


@dataclass
class Pending:
    """Our outstanding request (window size 1, RFC 7296 section 2.3)."""

    message_id: int
    exchange: int
    datagrams: list[bytes]
    handler: Callable[[Message, float], None]
    sent_at: float
    tries: int = 1
    what: str = ""

    def deadline(self, base: float) -> float:
        return self.sent_at + base * float(2 ** (self.tries - 1))


@dataclass
class IkeSa:
    """Keys and message-ID state of one IKE SA (a rekey makes a new one)."""

    initiator: bool  # original initiator of this IKE SA (the I flag)
    spi_i: bytes
    spi_r: bytes
    prf: int = 0
    suite: SkSuite | None = None
    group: int = 0
    keys: IkeKeys | None = field(default=None, repr=False)
    next_mid: int = 0  # our next request
    peer_mid: int = 0  # the peer's next request
    last_response: tuple[int, list[bytes]] | None = field(default=None, repr=False)
    pending: Pending | None = None
    reassembly: Reassembler = field(default_factory=Reassembler)
    created: float = 0.0
    rekey_at: float = float("inf")

    @property
    def spis(self) -> tuple[bytes, bytes]:
        return self.spi_i, self.spi_r

    def out_keys(self) -> tuple[bytes, bytes]:
        assert self.keys is not None
        k = self.keys
        return (k.sk_ei, k.sk_ai) if self.initiator else (k.sk_er, k.sk_ar)

    def in_keys(self, from_initiator: bool) -> tuple[bytes, bytes]:
        assert self.keys is not None
        k = self.keys
        return (k.sk_ei, k.sk_ai) if from_initiator else (k.sk_er, k.sk_ar)


class Session:
    """One IKE SA with its child SAs. Build with ``Session.initiate`` or ``Session.respond``."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        initiator: bool,
        local: Addr,
        remote: Addr,
        now: float,
        rng: Rng,
        dh: DhProvider,
        local_natt_port: int = 4500,
        wall_clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.config = config
        self.wall_clock = wall_clock  # certificate validity; required with certificate credentials
        if config.certs is not None and wall_clock is None:
            raise ValueError("certificate authentication needs a wall clock")
        self.rng = rng
        self.dh = dh
        self.local = local
        self.remote = remote
        self.local_natt_port = local_natt_port
        self.natt = False  # IKE moved to port 4500 with the non-ESP marker
        self.nat_detected = False  # UDP encapsulation for the children (a NAT seen, or forced)
        self.behind_nat = False  # the peer's NAT_DETECTION_DESTINATION_IP did not match our address
        self.peer_behind_nat = False  # its NAT_DETECTION_SOURCE_IP did not match where it came from
        self.state = State.INIT
        self.counters = Counters()
        self.children: dict[bytes, ChildSa] = {}  # by our inbound SPI
        self.sa = IkeSa(initiator, self._new_spi(8) if initiator else bytes(8), bytes(8), created=now)
        self.old_sa: IkeSa | None = None  # after an IKE rekey, until its Delete is done
        self.extra: list[IkeSa] = []  # IKE SAs of a rekey collision, until one is deleted (2.8.2)
        self.peer_id: Identity | None = None
        self.peer_fragmentation = False
        self.peer_signature_hashes = False  # the peer announced RFC 7427 (SIGNATURE_HASH_ALGORITHMS)
        self.started = now
        self.last_drop = ""  # why the last invalid datagram was dropped (diagnostics; no secrets)
        self.last_heard = now
        self.queue: deque[Callable[[float], None]] = deque()  # requests waiting for the window
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Addr]] = []
        from ipsecd.ikev2.exchanges import Exchanges  # the exchange logic, split for size

        self.x = Exchanges(self)

    # ------------------------------------------------------------------ construction

    @classmethod
    def initiate(
        cls,
        config: SessionConfig,
        *,
        local: Addr,
        remote: Addr,
        now: float,
        rng: Rng,
        dh: DhProvider,
        local_natt_port: int = 4500,
        wall_clock: Callable[[], datetime.datetime] | None = None,
    ) -> Session:
        s = cls(
            config,
            initiator=True,
            local=local,
            remote=remote,
            now=now,
            rng=rng,
            dh=dh,
            local_natt_port=local_natt_port,
            wall_clock=wall_clock,
        )
        s.x.start_init(now)
        return s

    @classmethod
    def respond(
        cls,
        config: SessionConfig,
        *,
        local: Addr,
        remote: Addr,
        now: float,
        rng: Rng,
        dh: DhProvider,
        local_natt_port: int = 4500,
        wall_clock: Callable[[], datetime.datetime] | None = None,
    ) -> Session:
        """A responder waiting for its first IKE_SA_INIT request (give it to ``receive_datagram``)."""
        return cls(
            config,
            initiator=False,
            local=local,
            remote=remote,
            now=now,
            rng=rng,
            dh=dh,
            local_natt_port=local_natt_port,
            wall_clock=wall_clock,
        )

    # ------------------------------------------------------------------ the sans-I/O API

    @property
    def spis(self) -> tuple[bytes, bytes]:
        return self.sa.spis

    def ike_sas(self) -> list[IkeSa]:
        """The current IKE SA, then a rekeyed one awaiting its Delete and collision leftovers."""
        return [self.sa, *([self.old_sa] if self.old_sa is not None else []), *self.extra]

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """One UDP payload from ``addr`` (with the non-ESP marker if it came to port 4500)."""
        self.counters.datagrams_received += 1
        if self.state is State.CLOSED:
            self.counters.invalid_packets += 1
            return
        try:
            self._receive(data, addr, now)
        except (ValueError, Drop) as e:  # CodecError, CryptoError, DhError, ProposalError, CertError
            self.counters.invalid_packets += 1
            self.last_drop = f"{type(e).__name__}: {e}"
        self._pump(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        self.counters.datagrams_sent += len(out)
        return out

    def get_timer(self) -> float | None:
        if self.state is State.CLOSED:
            return None
        times: list[float] = []
        for sa in self.ike_sas():
            if sa.pending is not None:
                times.append(sa.pending.deadline(self.config.retransmit_timeout_s))
        if self.state is not State.ESTABLISHED:
            times.append(self.started + self.config.half_open_timeout_s)
        else:
            times.append(self.sa.rekey_at)
            if self.config.dpd_interval_s > 0 and self.sa.pending is None and not self.queue:
                times.append(self.last_heard + self.config.dpd_interval_s)
            for c in self.children.values():
                if c.state is ChildState.ACTIVE:
                    times.append(min(c.rekey_at, c.expire_at))
                elif c.state is not ChildState.DELETING:
                    times.append(c.expire_at)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        if self.state is State.CLOSED:
            return
        for sa in self.ike_sas():
            if sa.pending is None:
                continue
            p = sa.pending
            if now < p.deadline(self.config.retransmit_timeout_s):
                continue
            if p.tries >= self.config.retransmit_tries:
                sa.pending = None
                if sa is self.old_sa:
                    self.old_sa = None  # the old SA's delete went unanswered: forget it
                    continue
                if sa in self.extra:
                    self.extra.remove(sa)
                    continue
                self.give_up(
                    f"no response to {p.what or ExchangeType(p.exchange).name} after {p.tries} tries",
                    p.exchange,
                )
                return
            p.tries += 1
            p.sent_at = now
            self.counters.retransmissions += 1
            for d in p.datagrams:
                self.emit(d)
        if self.state is not State.ESTABLISHED:
            if now >= self.started + self.config.half_open_timeout_s:
                self.fail("negotiation timed out", FailurePoint.PEER, ExchangeType.IKE_SA_INIT)
            return
        self.x.timers(now)
        self._pump(now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ owner requests

    def create_child(self) -> None:
        """Queue a CREATE_CHILD_SA for another child with the configured selectors."""
        self.queue.append(self.x.start_create_child)

    def rekey_child(self, inbound_spi: int) -> None:
        spi = inbound_spi.to_bytes(4, "big")
        self.queue.append(lambda now: self.x.start_rekey_child(spi, now))

    def rekey_ike(self) -> None:
        self.queue.append(self.x.start_rekey_ike)

    def delete_child(self, inbound_spi: int) -> None:
        spi = inbound_spi.to_bytes(4, "big")
        self.queue.append(lambda now: self.x.start_delete_child(spi, now))

    def close(self) -> None:
        """Delete the IKE SA (and with it every child) with an INFORMATIONAL exchange."""
        self.queue.append(self.x.start_delete_ike)

    def liveness_check(self) -> None:
        self.queue.append(self.x.start_liveness)

    def poll(self, now: float) -> None:
        """Starts queued requests (also done after every datagram and timer)."""
        self._pump(now)

    # ------------------------------------------------------------------ used by the exchanges

    def event(self, e: Event) -> None:
        self._events.append(e)

    def emit(self, data: bytes) -> None:
        if self.natt:
            self._out.append((NON_ESP_MARKER + data, self.remote))
        else:
            self._out.append((data, self.remote))

    def header(self, sa: IkeSa, exchange: int, message_id: int, response: bool) -> Header:
        flags = (Flag.I if sa.initiator else 0) | (Flag.R if response else 0)
        return Header(sa.spi_i, sa.spi_r, exchange, flags, message_id)

    def protect(self, sa: IkeSa, header: Header, inner: Sequence[Payload]) -> list[bytes]:
        assert sa.suite is not None
        ke, ka = sa.out_keys()
        whole = message.encode_protected(header, inner, sa.suite, ke, ka, self.rng(sa.suite.iv_len))
        if (
            self.peer_fragmentation
            and len(whole) > self.config.fragment_size
            and header.exchange_type != ExchangeType.IKE_SA_INIT
        ):
            return message.encode_fragments(
                header, inner, sa.suite, ke, ka, self.rng, self.config.fragment_size
            )
        return [whole]

    def request(
        self,
        sa: IkeSa,
        exchange: int,
        inner: Sequence[Payload],
        handler: Callable[[Message, float], None],
        now: float,
        what: str = "",
    ) -> None:
        """Sends a protected request on ``sa`` (whose window must be free)."""
        assert sa.pending is None
        mid = sa.next_mid
        datagrams = self.protect(sa, self.header(sa, exchange, mid, False), inner)
        sa.pending = Pending(mid, exchange, datagrams, handler, now, what=what)
        for d in datagrams:
            self.emit(d)

    def respond_to(self, sa: IkeSa, req: Header, inner: Sequence[Payload]) -> None:
        datagrams = self.protect(sa, self.header(sa, req.exchange_type, req.message_id, True), inner)
        sa.last_response = (req.message_id, datagrams)
        for d in datagrams:
            self.emit(d)

    def fail(self, reason: str, point: FailurePoint, exchange: int, notify: int | None = None) -> None:
        self.counters.negotiation_failures += 1
        self.event(NegotiationFailed(reason, point, exchange, notify))
        self.state = State.CLOSED

    def give_up(self, reason: str, exchange: int) -> None:
        if self.state is State.ESTABLISHED:
            self.x.drop_all_children("peer dead")
            self.event(PeerDead(reason))
            self.state = State.CLOSED
        else:
            self.fail(reason, FailurePoint.PEER, exchange)

    def _new_spi(self, n: int) -> bytes:
        for _ in range(16):
            v = self.rng(n)
            if int.from_bytes(v, "big") >= 256:
                return v
        raise RuntimeError("random source returns zeros")

    def new_spi(self, n: int) -> bytes:
        return self._new_spi(n)

    # ------------------------------------------------------------------ receive path

    def _pump(self, now: float) -> None:
        while self.queue and self.state is State.ESTABLISHED and self.sa.pending is None:
            self.queue.popleft()(now)

    def _receive(self, data: bytes, addr: Addr, now: float) -> None:
        raw, marker = message.strip_marker(data)
        msg = message.decode(raw)
        h = msg.header
        if self.state is State.INIT and not self.sa.initiator:
            self.x.r_init(raw, msg, addr, now)
            return
        sa = self._sa_for(h)
        if h.exchange_type == ExchangeType.IKE_SA_INIT:
            if self.state is State.INIT and self.sa.initiator and h.is_response and sa is self.sa:
                self.x.i_init_response(raw, msg, now)
                return
            if not h.is_response and self.x.is_init_retransmission(raw):
                self.counters.duplicate_requests += 1
                self._resend(self.sa)  # our IKE_SA_INIT response was lost
                return
            raise Drop("unexpected IKE_SA_INIT")
        if sa is None or sa.keys is None or sa.suite is None:
            raise Drop("no IKE SA with these SPIs")
        if h.from_initiator == sa.initiator:
            raise Drop("I flag does not match the sender's role")
        if h.is_response:
            if (
                sa.pending is None
                or h.message_id != sa.pending.message_id
                or h.exchange_type != sa.pending.exchange
            ):
                self.counters.invalid_message_ids += 1
                raise Drop("response to no outstanding request")
        elif h.message_id != sa.peer_mid:
            if sa.last_response is not None and h.message_id == sa.last_response[0]:
                # RFC 7296 section 2.1: a retransmitted request is answered with the same response.
                self._authenticate(raw, msg, sa)
                self.counters.duplicate_requests += 1
                self._resend(sa)
                return
            self.counters.invalid_message_ids += 1
            raise Drop("request outside the window")
        plain = self._authenticate(raw, msg, sa)
        if plain is None:
            return  # a fragment; the message is not complete yet
        self.last_heard = now
        if marker and not self.natt:
            self.natt = True
        if self.natt and addr != self.remote:
            self.remote = addr  # RFC 7296 section 2.23: follow the peer's NAT mapping
        if h.is_response:
            assert sa.pending is not None
            p, sa.pending = sa.pending, None
            sa.next_mid += 1
            p.handler(plain, now)
        else:
            sa.peer_mid += 1
            self.x.request_in(sa, plain, now)

    def _authenticate(self, raw: bytes, msg: Message, sa: IkeSa) -> Message | None:
        assert sa.suite is not None
        ke, ka = sa.in_keys(msg.header.from_initiator)
        if isinstance(msg.encrypted, EncryptedFragmentPayload):
            return sa.reassembly.add(raw, msg, sa.suite, ke, ka)
        if msg.encrypted is None:
            raise Drop("unprotected message on an IKE SA")
        return message.decrypt(raw, msg, sa.suite, ke, ka)

    def _sa_for(self, h: Header) -> IkeSa | None:
        for sa in self.ike_sas():
            if h.spi_i != sa.spi_i:
                continue
            if h.spi_r == sa.spi_r or (self.state is State.INIT and sa is self.sa and h.is_response):
                return sa
        return None

    def _resend(self, sa: IkeSa) -> None:
        assert sa.last_response is not None
        for d in sa.last_response[1]:
            self.emit(d)
