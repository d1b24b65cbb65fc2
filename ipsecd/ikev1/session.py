"""One IKEv1 peer, sans-I/O: Main Mode, Quick Modes, Informationals, DPD, NAT-T, retransmission and
rekeying behind the project's connection API.

    session.receive_datagram(data, addr, now, local_port=500)
    session.datagrams_to_send(now) -> [(bytes, addr)]      (``datagrams_to_send_from`` adds the port)
    session.get_timer() -> float | None;  session.handle_timer(now)
    session.next_event() -> Event | None

Time, randomness and DH are injected. Datagrams from the NAT-T port (RFC 3947 section 4) carry the
4-byte non-ESP marker (RFC 3948 section 2.2): ``receive_datagram`` strips it when ``local_port`` is
the NAT-T port, and what the session sends there has it. Everything received that does not parse,
fit a known exchange or authenticate is counted in ``counters`` and dropped; only authenticated
messages (Main Mode message 5/6 on, HASH-protected Quick Modes and Informationals) change an
established SA. Aggressive Mode (RFC 2409 section 5.4) is refused: its first message is dropped,
counted and reported.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ipsecd.datapath.sa import Protocol
from ipsecd.ike.buffers import CodecError
from ipsecd.ike.constants import (
    ISAKMP_NATT_PORT,
    ExchangeType,
    Flag,
    NotifyType,
    ProtocolId,
)
from ipsecd.ike.dh import DhProvider
from ipsecd.ikev1 import codec, informational
from ipsecd.ikev1.certs import CertCredentials
from ipsecd.ikev1.events import (
    AuthenticationFailed,
    ChildSaDeleted,
    ChildSaEstablished,
    Counters,
    DeleteReason,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    NegotiationFailed,
    NotifyReceived,
    PeerDead,
)
from ipsecd.ikev1.main_mode import Address, MainMode, MainModeConfig, Phase1Sa
from ipsecd.ikev1.payloads import IdPayload, NotifyPayload
from ipsecd.ikev1.quick_mode import ChildSa, Lookup, QmPolicy, QmState, QuickMode
from ipsecd.ikev1.session_state import P1, Child, Mm, Qm, Retx, hash_name, id_text, refuse_all
from ipsecd.log.events import FailurePoint, NegotiationMode
from ipsecd.policy.model import MmSecMethod

NON_ESP_MARKER = bytes(4)  # RFC 3948 section 2.2
KEEPALIVE = b"\xff"  # RFC 3948 section 2.3
Rng = Callable[[int], bytes]
MAX_SEEN_INFO = 256  # remembered Informational message IDs per ISAKMP SA (replays are dropped)
MAX_HALF_OPEN = 16  # Main Modes in progress per peer; more first messages are dropped (flooding)
_AUTH_NOTIFIES = (
    NotifyType.AUTHENTICATION_FAILED,
    NotifyType.INVALID_CERTIFICATE,
    NotifyType.INVALID_SIGNATURE,
)


@dataclass(frozen=True)
class SessionConfig:
    local: Address  # our IKE address and port (500)
    peer: Address  # the peer's IKE address and port
    mm_methods: tuple[MmSecMethod, ...]
    psk: bytes = field(repr=False)
    local_id: IdPayload | None = None  # default: ID_IPV4_ADDR / ID_IPV6_ADDR of ``local``
    mm_lifetime_s: int = 28800
    mmpfs: bool = False  # master-key PFS: one Quick Mode per Main Mode
    qmpermm: int = 0  # Quick Modes per Main Mode, 0 = unlimited
    natt: bool = True  # offer RFC 3947
    force_nat: bool = False  # pretend a NAT (UDP-encapsulated ESP even without one)
    local_natt_port: int = ISAKMP_NATT_PORT
    peer_natt_port: int = ISAKMP_NATT_PORT  # where to float to when we initiate
    dpd_interval: float = 0.0  # seconds of silence before R-U-THERE; 0: no DPD
    dpd_retries: int = 5  # unanswered probes before the peer is declared dead
    retransmit_initial: float = 1.0
    retransmit_backoff: float = 2.0
    retransmit_limit: int = 5  # transmissions of one message before the exchange is given up
    keepalive_interval: float = 20.0  # RFC 3948 section 2.3, when we are behind a NAT
    rekey_fraction: float = 0.9  # rekey Main and Quick Mode SAs at this fraction of the lifetime
    qm_lookup: Lookup | None = None  # responder policy: (local_ts, remote_ts) -> QmPolicy | None
    vendor_ids: tuple[bytes, ...] = ()
    cert: CertCredentials | None = None  # RSA signature authentication instead of the PSK
    initial_contact: bool = True  # RFC 2407 section 4.6.3.3, after our first Main Mode as initiator

    def __post_init__(self) -> None:
        if not self.mm_methods:
            raise ValueError("no main mode security methods")
        if not 0.0 < self.rekey_fraction < 1.0:
            raise ValueError("rekey_fraction must be between 0 and 1")
        if self.retransmit_limit < 1 or self.retransmit_initial <= 0:
            raise ValueError("retransmission settings must be positive")


class IkeV1Session:
    """All IKEv1 state shared with one peer."""

    def __init__(self, config: SessionConfig, *, rng: Rng, dh: DhProvider, now: float) -> None:
        self.cfg = config
        self._rng, self._dh = rng, dh
        self.counters = Counters()
        self.peer_addr: Address = config.peer
        self.natt_active = False
        self._mms: dict[bytes, Mm] = {}  # by initiator cookie
        self._p1s: dict[bytes, P1] = {}  # by CKY-I | CKY-R
        self._qms: dict[tuple[bytes, int], Qm] = {}
        self._children: dict[int, Child] = {}  # by our inbound SPI
        self._pending: deque[tuple[QmPolicy, int | None]] = deque()
        self._out: list[tuple[bytes, Address, int]] = []
        self._events: deque[Event] = deque()
        self._keepalive_at: float | None = None
        self._contacted = False
        self._now = now
        local_id = config.local_id or (
            config.cert.id_payload() if config.cert is not None else IdPayload.for_address(config.local[0])
        )
        self._mm_cfg = MainModeConfig(
            config.mm_methods,
            config.psk,
            local_id,
            config.mm_lifetime_s,
            vendor_ids=config.vendor_ids + ((informational.DPD_VID,) if config.dpd_interval > 0 else ()),
            natt=config.natt,
            force_nat=config.force_nat,
            cert=config.cert,
        )

    # ================================================================== public API

    @property
    def local_port(self) -> int:
        return self.cfg.local_natt_port if self.natt_active else self.cfg.local[1]

    @property
    def children(self) -> tuple[ChildSa, ...]:
        return tuple(c.sa for c in self._children.values())

    @property
    def ike_sas(self) -> tuple[Phase1Sa, ...]:
        return tuple(p.sa for p in self._p1s.values())

    def initiate(self, policy: QmPolicy, now: float) -> None:
        """Negotiate an IPsec SA for ``policy`` (Main Mode first when needed)."""
        self._now = now
        self._pending.append((policy, None))
        self._kick(now)

    def child_soft_expired(self, inbound_spi: int, now: float) -> None:
        """The data path's soft lifetime (kilobytes) fired: rekey that SA now if we own its policy."""
        c = self._children.get(inbound_spi)
        if c is not None and c.policy is not None and not c.rekeying:
            c.rekeying = True
            self._pending.append((c.policy, inbound_spi))
            self._kick(now)

    def delete_child(self, inbound_spi: int, now: float, reason: DeleteReason = DeleteReason.LOCAL) -> None:
        c = self._children.pop(inbound_spi, None)
        if c is None:
            return
        self._send_delete_child(c.sa)
        self._events.append(ChildSaDeleted(c.sa.inbound.spi, c.sa.outbound.spi, reason))

    def close(self, now: float) -> None:
        """Delete everything, telling the peer (RFC 2408 section 3.15)."""
        for spi in list(self._children):
            self.delete_child(spi, now)
        for key in list(self._p1s):
            self._delete_p1(key, DeleteReason.LOCAL, notify_peer=True)
        self._mms.clear()
        self._qms.clear()
        self._pending.clear()

    def datagrams_to_send_from(self, now: float) -> list[tuple[bytes, Address, int]]:
        """(datagram, destination, local port to send from); NAT-T port datagrams carry the marker."""
        out, self._out = self._out, []
        return out

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        return [(d, a) for d, a, _ in self.datagrams_to_send_from(now)]

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        ts: list[float] = []
        for m in self._mms.values():
            if m.retx is not None:
                ts.append(m.retx.next_at)
            if m.done_at is not None:
                ts.append(m.done_at + self._linger())
        for q in self._qms.values():
            if q.retx is not None:
                ts.append(q.retx.next_at)
            if q.done_at is not None:
                ts.append(q.done_at + self._linger())
        for p in self._p1s.values():
            ts.append(p.hard_at)
            if not p.rekeying and p.sa.initiator:
                ts.append(p.soft_at)
            if p.dpd_next is not None:
                ts.append(p.dpd_next)
        for c in self._children.values():
            ts.append(c.hard_at)
            if c.rekey_at is not None and not c.rekeying:
                ts.append(c.rekey_at)
        if self._keepalive_at is not None:
            ts.append(self._keepalive_at)
        finite = [t for t in ts if t != float("inf")]
        return min(finite) if finite else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        self._timer_exchanges(now)
        self._timer_sas(now)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._out.append((KEEPALIVE, self.peer_addr, self.cfg.local_natt_port))
            self._keepalive_at = now + self.cfg.keepalive_interval

    def note_inbound_traffic(self, now: float) -> None:
        """ESP from the peer arrived: it is alive (RFC 3706 section 5.3, DPD is needed only when idle)."""
        for p in self._p1s.values():
            self._alive(p, now)

    # ================================================================== receiving

    def receive_datagram(self, data: bytes, addr: Address, now: float, local_port: int | None = None) -> None:
        self._now = now
        natt_port = local_port is not None and local_port == self.cfg.local_natt_port
        if natt_port:
            if data == KEEPALIVE:
                return
            if data[:4] != NON_ESP_MARKER:
                self.counters.invalid_packets += 1  # ESP belongs to the data path, not here
                return
            data = data[4:]
        try:
            h, _ = codec.split(data)
        except CodecError:
            self.counters.invalid_packets += 1
            return
        # RFC 2408 section 5.1: version 1.0 only; no unknown flags, no Authentication Only (A): the
        # header is outside every HASH, so anything odd in it is dropped here.
        if (h.major, h.minor) != (1, 0) or h.flags & ~(Flag.E | Flag.C) or h.flags & Flag.A:
            self.counters.invalid_packets += 1
            return
        if h.exchange_type == ExchangeType.IDENTITY_PROTECTION:
            self._rx_main_mode(data, h, addr, now, natt_port)
        elif h.exchange_type == ExchangeType.QUICK_MODE:
            self._rx_quick_mode(data, h, addr, now, natt_port)
        elif h.exchange_type == ExchangeType.INFORMATIONAL:
            self._rx_informational(data, h, addr, now, natt_port)
        else:
            # RFC 2409 section 5.4 Aggressive Mode sends identities in clear text and allows offline
            # PSK guessing: refused, as are exchanges we do not run.
            self.counters.refused_exchanges += 1
            if h.exchange_type == ExchangeType.AGGRESSIVE and h.rcookie == bytes(8):
                self._events.append(
                    NegotiationFailed(
                        NegotiationMode.MAIN_MODE,
                        "aggressive mode refused",
                        FailurePoint.ME,
                        NotifyType.NO_PROPOSAL_CHOSEN,
                    )
                )

    def _authentic_from(self, addr: Address, natt_port: bool) -> None:
        """An authenticated message arrived: follow the peer's address (RFC 3947 section 4 port
        floating; a NAT may rebind the mapping)."""
        if natt_port:
            self.natt_active = True
            self.peer_addr = addr
        elif not self.natt_active:
            self.peer_addr = addr  # once on the NAT-T port, a message on 500 does not move us back

    def _rx_main_mode(self, data: bytes, h: codec.Header, addr: Address, now: float, natt_port: bool) -> None:
        entry = self._mms.get(h.icookie)
        if entry is None:
            if h.rcookie != bytes(8):
                self.counters.invalid_cookies += 1
                return
            if sum(1 for m in self._mms.values() if m.done_at is None) >= MAX_HALF_OPEN:
                self.counters.invalid_packets += 1
                return
            local = (self.cfg.local[0], self.cfg.local_natt_port) if natt_port else self.cfg.local
            mm = MainMode.responder(self._mm_cfg, rng=self._rng, dh=self._dh, local=local, peer=addr)
            entry = Mm(mm, now)
            step = mm.receive(data)
            if step.send is None and step.failed is None:
                self.counters.invalid_packets += 1
                return
            self._mms[h.icookie] = entry
            if not self._p1s:
                # Replies go where the request came from (the peer may use any source port).
                self.peer_addr, self.natt_active = addr, natt_port
        else:
            step = entry.mm.receive(data)
        mm = entry.mm
        if step.dropped is not None:
            if step.dropped == "retransmission":
                self.counters.duplicates += 1
                assert step.send is not None
                self._send(step.send)
            else:
                self.counters.invalid_packets += 1
            return
        if h.encrypted:
            self._authentic_from(addr, natt_port)
        if step.failed is not None:
            self._mm_failed(entry, step.failed, step.notify, h)
            return
        if mm.nat_detected and not self.natt_active and mm.is_initiator:
            # RFC 3947 section 4: the initiator floats to port 4500 from message 5 on.
            self.natt_active = True
            self.peer_addr = (self.peer_addr[0], self.cfg.peer_natt_port)
        entry.retx = None
        if step.send is not None:
            self._send(step.send)
            if step.established is None:
                entry.retx = self._retx(step.send, now)
        if step.established is not None:
            entry.done_at = now
            self._mm_established(entry, step.established, now)

    def _mm_failed(self, entry: Mm, reason: str, notify: int | None, h: codec.Header) -> None:
        entry.retx = None
        entry.done_at = self._now
        self.counters.negotiation_failures += 1
        if notify in _AUTH_NOTIFIES:
            self.counters.authentication_failures += 1
            self._events.append(AuthenticationFailed(reason))
        self._events.append(NegotiationFailed(NegotiationMode.MAIN_MODE, reason, FailurePoint.ME, notify))
        if notify == NotifyType.NO_PROPOSAL_CHOSEN:
            n = informational.error_notify(notify)
            self._send(informational.unprotected(h.icookie, h.rcookie, n))

    def _mm_established(self, entry: Mm, sa: Phase1Sa, now: float) -> None:
        life = sa.params.life_seconds or self.cfg.mm_lifetime_s
        life = min(life, self.cfg.mm_lifetime_s) if self.cfg.mm_lifetime_s else life
        p = P1(sa, now, now + life * self.cfg.rekey_fraction, now + life, last_rx=now)
        if self.cfg.dpd_interval > 0 and informational.DPD_VID in sa.peer_vendor_ids:
            p.dpd = informational.Dpd(int.from_bytes(self._rng(4), "big"))
            p.dpd_next = now + self.cfg.dpd_interval
        self._p1s[p.cookies] = p
        self.counters.main_mode_sas += 1
        if sa.nat_detected:
            self.natt_active = True
            if sa.nat_local and self._keepalive_at is None:
                self._keepalive_at = now + self.cfg.keepalive_interval
        self._events.append(
            IkeSaEstablished(
                sa.cky_i,
                sa.cky_r,
                sa.initiator,
                id_text(sa.peer_id),
                sa.cipher.name,
                hash_name(sa.params.hash),
                sa.params.group,
                life,
                sa.natt,
                sa.nat_local,
                sa.nat_peer,
                rekey=entry.rekey_of is not None,
            )
        )
        if sa.initiator and self.cfg.initial_contact and not self._contacted:
            # We have no state with this peer: tell it to drop whatever it kept from before.
            self._send(informational.protect(sa, self._mid(p), [informational.initial_contact(sa)]))
        self._contacted = True
        if entry.rekey_of is not None and entry.rekey_of in self._p1s:
            # The new ISAKMP SA is up: the old one goes (its IPsec SAs stay, RFC 2409 section 5.5).
            self._delete_p1(entry.rekey_of, DeleteReason.REKEYED, notify_peer=True)
            self.counters.rekeys += 1
        self._kick(now)

    def _find_p1(self, h: codec.Header) -> P1 | None:
        p = self._p1s.get(h.icookie + h.rcookie)
        if p is None:
            self.counters.invalid_cookies += 1
        return p

    def _rx_quick_mode(
        self, data: bytes, h: codec.Header, addr: Address, now: float, natt_port: bool
    ) -> None:
        p = self._find_p1(h)
        if p is None:
            return
        key = (p.cookies, h.message_id)
        entry = self._qms.get(key)
        if entry is None:
            if h.message_id == 0 or h.message_id in p.used_mids:
                self.counters.invalid_packets += 1  # RFC 2408 section 3.1: message IDs are unique
                return
            lookup = self.cfg.qm_lookup or refuse_all
            qm = QuickMode.responder(
                p.sa,
                h.message_id,
                lookup,
                local=self._local_addr(),
                peer=self.peer_addr,
                rng=self._rng,
                dh=self._dh,
            )
            step = qm.receive(data)
            if step.dropped is not None:
                self.counters.invalid_packets += 1
                return
            entry = Qm(qm, p)
            self._qms[key] = entry
            p.used_mids.add(h.message_id)
        else:
            step = entry.qm.receive(data)
            if step.dropped is not None:
                if step.dropped == "retransmission":
                    self.counters.duplicates += 1
                    assert step.send is not None
                    self._send(step.send)
                else:
                    self.counters.invalid_packets += 1
                return
        self._authentic_from(addr, natt_port)
        self._alive(p, now)
        entry.retx = None
        if step.failed is not None:
            self._qm_failed(entry, step.failed, step.notify, FailurePoint.ME)
            return
        if step.send is not None:
            self._send(step.send)
            if step.established is None:
                entry.retx = self._retx(step.send, now)
        if step.established is not None:
            entry.done_at = now
            self._child_established(entry, step.established, now)

    def _qm_failed(self, entry: Qm, reason: str, notify: int | None, point: FailurePoint) -> None:
        entry.retx = None
        entry.done_at = self._now
        self.counters.negotiation_failures += 1
        self._events.append(NegotiationFailed(NegotiationMode.QUICK_MODE, reason, point, notify))
        if notify is not None and point is FailurePoint.ME and entry.p1.cookies in self._p1s:
            n = informational.error_notify(notify, ProtocolId.PROTO_IPSEC_ESP)
            self._send(informational.protect(entry.p1.sa, self._mid(entry.p1), [n]))
        if entry.rekey_of is not None and entry.rekey_of in self._children:
            self._children[entry.rekey_of].rekeying = False

    def _child_established(self, entry: Qm, sa: ChildSa, now: float) -> None:
        self.counters.quick_mode_sas += 1
        pol = entry.qm.policy if entry.qm.is_initiator else None
        life = sa.life_seconds or 0
        rekey_at = now + life * self.cfg.rekey_fraction if (pol is not None and life) else None
        hard_at = now + life if life else float("inf")
        self._children[sa.inbound.spi] = Child(sa, pol, rekey_at, hard_at)
        self._events.append(
            ChildSaEstablished(
                sa.inbound,
                sa.outbound,
                sa.local_ts,
                sa.remote_ts,
                sa.method,
                sa.pfs_group,
                sa.life_seconds,
                sa.life_kilobytes,
                sa.initiator,
                sa.ah_inbound,
                sa.ah_outbound,
                rekey_of=entry.rekey_of,
            )
        )
        if entry.rekey_of is not None and entry.rekey_of in self._children:
            self.counters.rekeys += 1
            self.delete_child(entry.rekey_of, now, DeleteReason.REKEYED)

    def _rx_informational(
        self, data: bytes, h: codec.Header, addr: Address, now: float, natt_port: bool
    ) -> None:
        if not h.encrypted:
            # RFC 2408 section 5.5: unauthenticated notifications are logged, never acted on.
            self.counters.unprotected_notifies += 1
            try:
                msg = codec.decode(data)
            except CodecError:
                self.counters.invalid_packets += 1
                return
            for n in msg.payloads:
                if isinstance(n, NotifyPayload):
                    self._events.append(NotifyReceived(n.notify_type, protected=False))
            return
        p = self._find_p1(h)
        if p is None:
            return
        try:
            msg = informational.open_protected(p.sa, data)
        except informational.InfoError:
            self.counters.invalid_packets += 1
            return
        if h.message_id in p.seen_info:
            self.counters.duplicates += 1  # a replayed Informational changes nothing
            return
        p.seen_info.append(h.message_id)
        if len(p.seen_info) > MAX_SEEN_INFO:
            p.seen_info.popleft()
        self._authentic_from(addr, natt_port)
        got = informational.Received.of(msg)
        for n in got.notifies:
            self._protected_notify(p, n, now)
        self._alive(p, now)
        for d in got.deletes:
            self._peer_delete(p, d.protocol_id, d.spis)

    def _protected_notify(self, p: P1, n: NotifyPayload, now: float) -> None:
        seq = informational.dpd_seq(p.sa, n)
        if n.notify_type == NotifyType.R_U_THERE and seq is not None:
            if p.dpd is None or p.dpd.peer_probe(seq):
                ack = informational.dpd_notify(p.sa, True, seq)
                self._send(informational.protect(p.sa, self._mid(p), [ack]))
            return
        if n.notify_type == NotifyType.R_U_THERE_ACK and seq is not None:
            if p.dpd is not None:
                p.dpd.acked(seq)
            return
        if n.notify_type == NotifyType.INITIAL_CONTACT:
            # RFC 2407 section 4.6.3.3: the peer rebooted; every other SA with it is stale.
            for key in [k for k in self._p1s if k != p.cookies]:
                self._delete_p1(key, DeleteReason.PEER, notify_peer=False)
            for spi in list(self._children):
                self._drop_child(spi, DeleteReason.PEER)
            return
        self._events.append(NotifyReceived(n.notify_type, protected=True))
        if n.notify_type <= 16383:  # RFC 2408 section 3.14.1: an error; fail our pending Quick Modes
            for q in self._qms.values():
                if q.p1 is p and q.qm.is_initiator and q.qm.state is QmState.I_SENT_1:
                    q.qm.state = QmState.FAILED
                    self._qm_failed(q, f"peer sent notify {n.notify_type}", n.notify_type, FailurePoint.PEER)

    def _peer_delete(self, p: P1, protocol: int, spis: tuple[bytes, ...]) -> None:
        if protocol == ProtocolId.PROTO_ISAKMP:
            for s in spis:
                if s in self._p1s:
                    self._delete_p1(s, DeleteReason.PEER, notify_peer=False)
            return
        want = {int.from_bytes(s, "big") for s in spis}
        for spi, c in list(self._children.items()):
            outs = {c.sa.outbound.spi} | ({c.sa.ah_outbound.spi} if c.sa.ah_outbound else set())
            if outs & want:
                self._drop_child(spi, DeleteReason.PEER)

    # ================================================================== timers

    def _timer_exchanges(self, now: float) -> None:
        for key, m in list(self._mms.items()):
            if m.done_at is not None and now >= m.done_at + self._linger():
                del self._mms[key]
            elif m.retx is not None and now >= m.retx.next_at and not self._retransmit(m.retx, now):
                m.retx = None
                m.done_at = now
                self.counters.negotiation_failures += 1
                self._events.append(
                    NegotiationFailed(NegotiationMode.MAIN_MODE, "negotiation timed out", FailurePoint.PEER)
                )
                self._pending_failed_without_p1()
        for qkey, q in list(self._qms.items()):
            if q.done_at is not None and now >= q.done_at + self._linger():
                del self._qms[qkey]
            elif q.retx is not None and now >= q.retx.next_at and not self._retransmit(q.retx, now):
                q.qm.state = QmState.FAILED
                self._qm_failed(q, "negotiation timed out", None, FailurePoint.PEER)

    def _timer_sas(self, now: float) -> None:
        for key, p in list(self._p1s.items()):
            if now >= p.hard_at:
                self._delete_p1(key, DeleteReason.EXPIRED, notify_peer=True)
                continue
            if p.sa.initiator and not p.rekeying and now >= p.soft_at:
                p.rekeying = True
                self._start_mm(now, rekey_of=key)
            if p.dpd is not None and p.dpd_next is not None and now >= p.dpd_next:
                if p.dpd.outstanding is not None and p.dpd.misses + 1 >= self.cfg.dpd_retries:
                    self._peer_dead(p.dpd.misses + 1)
                    return
                seq = p.dpd.probe()
                self._send(
                    informational.protect(p.sa, self._mid(p), [informational.dpd_notify(p.sa, False, seq)])
                )
                p.dpd_next = now + self.cfg.retransmit_initial * (self.cfg.retransmit_backoff**p.dpd.misses)
        for spi, c in list(self._children.items()):
            if now >= c.hard_at:
                self.delete_child(spi, now, DeleteReason.EXPIRED)
            elif c.rekey_at is not None and not c.rekeying and now >= c.rekey_at and c.policy is not None:
                c.rekeying = True
                self._pending.append((c.policy, spi))
                self._kick(now)

    def _peer_dead(self, unanswered: int) -> None:
        """RFC 3706 section 5.5: no ACK after the retries: every SA with the peer goes, silently."""
        self._events.append(PeerDead(unanswered))
        for spi in list(self._children):
            self._drop_child(spi, DeleteReason.PEER_DEAD)
        for key in list(self._p1s):
            self._delete_p1(key, DeleteReason.PEER_DEAD, notify_peer=False)
        self._qms.clear()
        self._mms.clear()
        self._pending.clear()

    def _alive(self, p: P1, now: float) -> None:
        """Any authenticated message proves the peer alive (RFC 3706 section 5.3)."""
        p.last_rx = now
        if p.dpd is not None:
            p.dpd.outstanding = None
            p.dpd.misses = 0
            p.dpd_next = now + self.cfg.dpd_interval

    # ================================================================== starting exchanges

    def _usable_p1(self) -> P1 | None:
        best: P1 | None = None
        limit = 1 if self.cfg.mmpfs else self.cfg.qmpermm
        for p in self._p1s.values():
            if p.rekeying or (limit and p.qm_count >= limit) or self._now >= p.soft_at:
                continue
            if best is None or p.established > best.established:
                best = p
        return best

    def _kick(self, now: float) -> None:
        """Start queued Quick Modes on a usable ISAKMP SA, or a Main Mode to get one."""
        while self._pending:
            p = self._usable_p1()
            if p is None:
                if not any(m.done_at is None for m in self._mms.values()):
                    self._start_mm(now)
                return
            policy, rekey_of = self._pending.popleft()
            p.qm_count += 1
            mid = self._mid(p)
            qm = QuickMode.initiator(
                p.sa, mid, policy, local=self._local_addr(), peer=self.peer_addr, rng=self._rng, dh=self._dh
            )
            entry = Qm(qm, p, rekey_of=rekey_of)
            self._qms[(p.cookies, mid)] = entry
            data = qm.start()
            self._send(data)
            entry.retx = self._retx(data, now)

    def _start_mm(self, now: float, rekey_of: bytes | None = None) -> None:
        if not self._p1s:
            # A first Main Mode starts on port 500 (RFC 3947 section 4); it floats after NAT-D. A
            # rekey over a NAT stays on the NAT-T port the mapping is known for.
            self.natt_active = False
            self.peer_addr = self.cfg.peer
        mm = MainMode.initiator(
            self._mm_cfg, rng=self._rng, dh=self._dh, local=self._local_addr(), peer=self.peer_addr
        )
        data = mm.start().send
        assert data is not None
        entry = Mm(mm, now, rekey_of)
        self._mms[mm.cookies[0]] = entry
        self._send(data)
        entry.retx = self._retx(data, now)

    def _pending_failed_without_p1(self) -> None:
        if self._usable_p1() is None:
            for _, rekey_of in self._pending:
                if rekey_of is not None and rekey_of in self._children:
                    self._children[rekey_of].rekeying = False
            self._pending.clear()

    # ================================================================== helpers

    def _linger(self) -> float:
        """How long a finished exchange answers retransmissions from its cache."""
        return (
            self.cfg.retransmit_initial
            * (self.cfg.retransmit_backoff ** max(self.cfg.retransmit_limit - 1, 0))
            * 2
        )

    def _local_addr(self) -> Address:
        if self.natt_active:
            return (self.cfg.local[0], self.cfg.local_natt_port)
        return self.cfg.local

    def _mid(self, p: P1) -> int:
        for _ in range(64):
            mid = int.from_bytes(self._rng(4), "big")
            if mid and mid not in p.used_mids:
                p.used_mids.add(mid)
                return mid
        raise RuntimeError("random source gives no fresh message ID")

    def _send(self, data: bytes) -> None:
        if self.natt_active:
            self._out.append((NON_ESP_MARKER + data, self.peer_addr, self.cfg.local_natt_port))
        else:
            self._out.append((data, self.peer_addr, self.cfg.local[1]))

    def _retx(self, data: bytes, now: float) -> Retx:
        return Retx(data, now + self.cfg.retransmit_initial, self.cfg.retransmit_initial)

    def _retransmit(self, r: Retx, now: float) -> bool:
        """Resends with exponential backoff; False once the limit is reached (give up)."""
        if r.sent >= self.cfg.retransmit_limit:
            return False
        r.sent += 1
        r.interval *= self.cfg.retransmit_backoff
        r.next_at = now + r.interval
        self.counters.retransmissions += 1
        self._send(r.data)
        return True

    def _send_delete_child(self, sa: ChildSa) -> None:
        p = self._usable_p1() or max(self._p1s.values(), key=lambda x: x.established, default=None)
        if p is None:
            return
        proto = (
            ProtocolId.PROTO_IPSEC_ESP if sa.inbound.protocol == Protocol.ESP else ProtocolId.PROTO_IPSEC_AH
        )
        dels = [informational.delete_ipsec(proto, [sa.inbound.spi])]
        if sa.ah_inbound is not None:
            dels.append(informational.delete_ipsec(ProtocolId.PROTO_IPSEC_AH, [sa.ah_inbound.spi]))
        self._send(informational.protect(p.sa, self._mid(p), dels))

    def _drop_child(self, spi: int, reason: DeleteReason) -> None:
        c = self._children.pop(spi, None)
        if c is not None:
            self._events.append(ChildSaDeleted(c.sa.inbound.spi, c.sa.outbound.spi, reason))

    def _delete_p1(self, key: bytes, reason: DeleteReason, *, notify_peer: bool) -> None:
        p = self._p1s.pop(key, None)
        if p is None:
            return
        if notify_peer:
            self._send(informational.protect(p.sa, self._mid(p), [informational.delete_isakmp(p.sa)]))
        for qkey in [k for k, q in self._qms.items() if q.p1 is p]:
            del self._qms[qkey]
        self._events.append(IkeSaDeleted(p.sa.cky_i, p.sa.cky_r, reason))
        if not self._p1s:
            self._keepalive_at = None
