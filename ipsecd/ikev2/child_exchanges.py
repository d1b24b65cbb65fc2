"""Child SA and INFORMATIONAL exchanges of an IKEv2 session (RFC 7296 sections 1.3 and 1.4).

    CREATE_CHILD_SA  HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi], TSi, TSr}  -->
                     <--  HDR, SK {SA, Nr, [KEr], TSi, TSr}
    IKE SA rekey     HDR, SK {SA, Ni, KEi}  -->  <--  HDR, SK {SA, Nr, KEr}
    INFORMATIONAL    HDR, SK {[N,] [D,] ...}  -->  <--  HDR, SK {[N,] [D,] ...}

Also the child SA helpers IKE_AUTH shares (building, installing, narrowing), and the timers (rekey,
expiry, liveness). ``ipsecd.ikev2.exchanges`` adds IKE_SA_INIT and IKE_AUTH on top.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from ipsecd.ike.dh import DhKey, public_value_length
from ipsecd.ikev2 import crypto
from ipsecd.ikev2.child import ChildSa, ChildState, Endpoints, build_child, narrow, within
from ipsecd.ikev2.constants import (
    NOTIFY_ERROR_MAX,
    EncrId,
    ExchangeType,
    IntegId,
    NotifyType,
    PrfId,
    ProtocolId,
)
from ipsecd.ikev2.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaRekeyed,
    FailurePoint,
    IkeSaDeleted,
    IkeSaRekeyed,
)
from ipsecd.ikev2.message import Message
from ipsecd.ikev2.payloads import (
    DeletePayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TrafficSelector,
    TsiPayload,
    TsrPayload,
)
from ipsecd.ikev2.proposals import (
    Choice,
    check_response,
    child_sa_payload,
    choose_child,
    choose_ike,
    ike_sa_payload,
)
from ipsecd.ikev2.session import Drop, IkeSa, State

if TYPE_CHECKING:
    from ipsecd.ikev2.session import Session

NONCE_LEN = 32
REKEY_IKE = "IKE SA rekey"


def _one(msg: Message, cls: type, what: str) -> Payload:
    found = msg.find(cls)
    if len(found) != 1:
        raise Drop(f"expected one {what} payload, got {len(found)}")
    return found[0]


def _opt(msg: Message, cls: type) -> Payload | None:
    found = msg.find(cls)
    return found[0] if found else None


def _notifies(msg: Message) -> dict[int, NotifyPayload]:
    out: dict[int, NotifyPayload] = {}
    for p in msg.payloads:
        if isinstance(p, NotifyPayload):
            out.setdefault(p.notify_type, p)
    return out


def _error(msg: Message) -> NotifyPayload | None:
    return next((n for t, n in _notifies(msg).items() if t <= NOTIFY_ERROR_MAX), None)


def _name(enum_cls: type, value: int) -> str:
    try:
        return str(enum_cls(value).name)
    except ValueError:
        return str(value)


def describe(suite: crypto.SkSuite, prf: int | None, group: int | None) -> str:
    parts = [_name(EncrId, suite.encr) + (f"-{suite.key_bits}" if suite.key_bits else "")]
    if not suite.aead:
        parts.append(_name(IntegId, suite.integ))
    if prf is not None:
        parts.append(_name(PrfId, prf))
    if group is not None:
        parts.append(f"DH{group}")
    return "/".join(parts)


class ChildExchanges:
    def __init__(self, s: Session) -> None:
        self.s = s
        self.ni = self.nr = b""
        self.dh: DhKey | None = None
        self.offer: SaPayload | None = None
        self.init_request = b""  # RealMessage1 (RFC 7296 section 2.15)
        self.init_response = b""  # RealMessage2
        self.cookie: bytes | None = None
        self.init_retries = 0
        self.choice: Choice | None = None
        self.child_offer: SaPayload | None = None
        self.child_spi = b""
        self.collisions: dict[bytes, ChildSa] = {}
        # The peer's new IKE SA made while our own IKE rekey was outstanding: (SA, algorithms, nonces).
        self.ike_collision: tuple[IkeSa, str, tuple[bytes, bytes]] | None = (
            None  # old SPI -> child the peer made by rekeying it
        )

    def _child_request(self, spi: bytes, pfs_group: int | None) -> list[Payload]:
        s = self.s
        self.child_spi = spi
        self.child_offer = child_sa_payload(s.config.esp, spi, pfs_group)
        out: list[Payload] = []
        if s.config.transport:
            out.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        return [*out, self.child_offer]

    # ================================================================ child SAs

    def _new_child_spi(self) -> bytes:
        for _ in range(16):
            spi = self.s.new_spi(4)
            if spi not in self.s.children:
                return spi
        raise RuntimeError("no free SPI")

    def _endpoints(self) -> Endpoints:
        s = self.s
        encap = s.nat_detected or s.natt
        return Endpoints(
            ipaddress.ip_address(s.local[0]),
            ipaddress.ip_address(s.remote[0]),
            encap,
            s.local_natt_port,
            s.remote[1] if s.natt else s.config.remote_natt_port,
        )

    def _jitter(self, base: float) -> float:
        # Up to 10% earlier, so both ends rarely rekey at once (RFC 7296 section 2.8.1).
        return base * (1.0 - 0.1 * self.s.rng(1)[0] / 255)

    def _make_child(
        self,
        choice: Choice,
        initiator: bool,
        our_spi: bytes,
        ni: bytes,
        nr: bytes,
        gir: bytes | None,
        tsi: tuple[TrafficSelector, ...],
        tsr: tuple[TrafficSelector, ...],
        transport: bool,
        now: float,
    ) -> ChildSa:
        s = self.s
        assert s.sa.keys is not None
        cfg = s.config
        return build_child(
            prf_id=s.sa.prf,
            sk_d=s.sa.keys.sk_d,
            suite=choice.suite,
            esn=choice.esn,
            initiator=initiator,
            our_spi=our_spi,
            peer_spi=choice.peer_spi,
            ni=ni,
            nr=nr,
            gir=gir,
            tsi=tsi,
            tsr=tsr,
            transport=transport,
            ends=self._endpoints(),
            lifetime=cfg.child_rekey_s + cfg.rekey_margin_s,
            rekey_at=now + self._jitter(cfg.child_rekey_s),
            now=now,
            rng=s.rng,
            pfs_group=choice.group,
        )

    def _install(self, child: ChildSa, rekeyed: ChildSa | None) -> None:
        s = self.s
        s.children[child.our_spi] = child
        s.counters.key_additions += 1
        algs = describe(child.suite, None, child.pfs_group)
        if rekeyed is None:
            s.event(
                ChildSaEstablished(
                    child.inbound,
                    child.outbound,
                    child.local_ts,
                    child.remote_ts,
                    algs,
                    child.pfs_group,
                    child.initiator,
                )
            )
            return
        s.counters.rekeys += 1
        rekeyed.state = ChildState.REKEYED
        rekeyed.expire_at = min(rekeyed.expire_at, child.created + s.config.rekey_margin_s)
        s.event(
            ChildSaRekeyed(
                rekeyed.inbound.spi,
                rekeyed.outbound.spi,
                child.inbound,
                child.outbound,
                child.local_ts,
                child.remote_ts,
                algs,
                child.pfs_group,
            )
        )

    def _child_responder(
        self,
        msg: Message,
        n: dict[int, NotifyPayload],
        ni: bytes,
        nr: bytes,
        gir: bytes | None,
        now: float,
        ke_group: int | None = None,
        rekeyed: ChildSa | None = None,
        create: bool = False,
    ) -> tuple[list[Payload], ChildSa | None]:
        """Responder side of a child negotiation: the response payloads (or an error notify)."""
        s = self.s
        sa_p, tsi, tsr = _opt(msg, SaPayload), _opt(msg, TsiPayload), _opt(msg, TsrPayload)
        if not (isinstance(sa_p, SaPayload) and isinstance(tsi, TsiPayload) and isinstance(tsr, TsrPayload)):
            return [NotifyPayload(NotifyType.INVALID_SYNTAX)], None

        def refuse(code: int, why: str) -> tuple[list[Payload], ChildSa | None]:
            s.event(ChildSaFailed(why, code, FailurePoint.LOCAL))
            return [NotifyPayload(code)], None

        choice = choose_child(sa_p, s.config.esp, ke_group)
        if choice is None or (create and s.config.pfs_group is not None and ke_group is None):
            return refuse(NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable ESP proposal")
        transport = NotifyType.USE_TRANSPORT_MODE in n and s.config.transport
        if s.config.transport and not transport:
            return refuse(NotifyType.NO_PROPOSAL_CHOSEN, "transport mode required")
        got_i = narrow(tsi.selectors, s.config.remote_ts)
        got_r = narrow(tsr.selectors, s.config.local_ts)
        if not got_i or not got_r:
            return refuse(NotifyType.TS_UNACCEPTABLE, "traffic selectors unacceptable")
        our_spi = self._new_child_spi()
        child = self._make_child(choice, False, our_spi, ni, nr, gir, got_i, got_r, transport, now)
        if rekeyed is not None and rekeyed.state is ChildState.REKEYING:
            self.collisions[rekeyed.our_spi] = child  # RFC 7296 section 2.8.1: decided later
        self._install(child, rekeyed)
        out: list[Payload] = [NotifyPayload(NotifyType.USE_TRANSPORT_MODE)] if transport else []
        proposal = Proposal(
            choice.proposal.number, choice.proposal.protocol_id, our_spi, choice.proposal.transforms
        )
        out += [SaPayload((proposal,)), TsiPayload(child.remote_ts), TsrPayload(child.local_ts)]
        return out, child

    def _child_response(
        self,
        msg: Message,
        n: dict[int, NotifyPayload],
        ni: bytes,
        nr: bytes,
        gir: bytes | None,
        dh_group: int | None,
        now: float,
        rekeyed: ChildSa | None,
    ) -> ChildSa | None:
        """Initiator side: checks the responder's SA and selectors and installs the child."""
        s = self.s
        err = _error(msg)
        if err is not None:
            s.event(
                ChildSaFailed(
                    f"peer refused the child SA: {_name(NotifyType, err.notify_type)}",
                    err.notify_type,
                    FailurePoint.PEER,
                )
            )
            return None
        sa_p, tsi, tsr = _opt(msg, SaPayload), _opt(msg, TsiPayload), _opt(msg, TsrPayload)
        assert self.child_offer is not None
        try:
            if not (
                isinstance(sa_p, SaPayload) and isinstance(tsi, TsiPayload) and isinstance(tsr, TsrPayload)
            ):
                raise ValueError("response lacks SA or traffic selectors")
            choice = check_response(self.child_offer, sa_p)
            if len(choice.peer_spi) != 4 or choice.group != dh_group:
                raise ValueError("bad SPI or DH group in the response")
            want_i, want_r = (
                (rekeyed.local_ts, rekeyed.remote_ts) if rekeyed else (s.config.local_ts, s.config.remote_ts)
            )
            if not within(tsi.selectors, want_i) or not within(tsr.selectors, want_r):
                raise ValueError("responder widened the traffic selectors")
            transport = NotifyType.USE_TRANSPORT_MODE in n
            if transport != s.config.transport:
                raise ValueError("encapsulation mode differs from the policy")
        except ValueError as e:
            s.event(ChildSaFailed(str(e), None, FailurePoint.PEER))
            return None
        child = self._make_child(
            choice, True, self.child_spi, ni, nr, gir, tsi.selectors, tsr.selectors, transport, now
        )
        self._install(child, rekeyed)
        return child

    def r_informational(self, sa: IkeSa, msg: Message, now: float) -> None:
        s = self.s
        out: list[Payload] = []
        closing = False
        for d in msg.find(DeletePayload):
            assert isinstance(d, DeletePayload)
            if d.protocol_id == ProtocolId.IKE:
                closing = True
            elif d.protocol_id == ProtocolId.ESP:
                ours = []
                for spi in d.spis:
                    child = next((c for c in s.children.values() if c.peer_spi == spi), None)
                    if child is None:
                        continue
                    if child.state is not ChildState.DELETING:
                        ours.append(child.our_spi)  # RFC 7296 section 1.4.1: answer with our SPI
                    self._remove(child, "deleted by the peer")
                if ours:
                    out.append(DeletePayload(ProtocolId.ESP, tuple(ours)))
        s.respond_to(sa, msg.header, out)
        if closing:
            if sa is s.old_sa:
                s.old_sa = None  # the rekeyed IKE SA is gone; the new one carries on
            elif sa in s.extra:
                s.extra.remove(sa)  # a redundant IKE SA of a rekey collision
            else:
                self.drop_all_children("IKE SA deleted by the peer")
                s.event(IkeSaDeleted("deleted by the peer", True))
                s.state = State.CLOSED

    def _remove(self, child: ChildSa, reason: str) -> None:
        s = self.s
        if s.children.pop(child.our_spi, None) is not None:
            s.counters.key_deletions += 1
            s.event(ChildSaDeleted(child.inbound.spi, child.outbound.spi, reason))

    def drop_all_children(self, reason: str) -> None:
        for c in list(self.s.children.values()):
            self._remove(c, reason)

    def _ke(self, msg: Message) -> KePayload | None:
        ke = _opt(msg, KePayload)
        if ke is not None:
            assert isinstance(ke, KePayload)
            if len(ke.data) != public_value_length(ke.group):
                raise Drop("key exchange data of the wrong length")
        return ke if isinstance(ke, KePayload) else None

    def r_create_child_sa(self, msg: Message, now: float) -> None:
        s = self.s
        sa_p, nonce = _one(msg, SaPayload, "SA"), _one(msg, NoncePayload, "Nonce")
        assert isinstance(sa_p, SaPayload) and isinstance(nonce, NoncePayload)
        ke = self._ke(msg)
        if sa_p.proposals[0].protocol_id == ProtocolId.IKE:
            self.r_rekey_ike(msg, sa_p, nonce.data, ke, now)
            return
        n = _notifies(msg)
        rekeyed = None
        if NotifyType.REKEY_SA in n:
            spi = n[NotifyType.REKEY_SA].spi
            rekeyed = next((c for c in s.children.values() if c.peer_spi == spi), None)
            if rekeyed is None or rekeyed.state in (ChildState.REKEYED, ChildState.DELETING):
                s.respond_to(
                    s.sa,
                    msg.header,
                    [NotifyPayload(NotifyType.CHILD_SA_NOT_FOUND, protocol_id=ProtocolId.ESP, spi=spi)],
                )
                return
        nr = s.rng(NONCE_LEN)
        gir = None
        extra: list[Payload] = []
        if ke is not None:
            dh = s.dh.generate(ke.group)
            gir = dh.shared_secret(ke.data)
            extra.append(KePayload(ke.group, dh.public_value()))
        body, child = self._child_responder(
            msg, n, nonce.data, nr, gir, now, ke.group if ke else None, rekeyed, True
        )
        if child is None:
            s.respond_to(s.sa, msg.header, body)
            return
        out = [*body, NoncePayload(nr), *extra]
        s.respond_to(s.sa, msg.header, out)

    # ================================================================ our CREATE_CHILD_SA requests

    def start_create_child(self, now: float, rekey: ChildSa | None = None) -> None:
        s = self.s
        cfg = s.config
        ni = s.rng(NONCE_LEN)
        group = cfg.pfs_group
        dh = s.dh.generate(group) if group is not None else None
        inner: list[Payload] = []
        if rekey is not None:
            inner.append(NotifyPayload(NotifyType.REKEY_SA, protocol_id=ProtocolId.ESP, spi=rekey.our_spi))
            rekey.state = ChildState.REKEYING
        inner += self._child_request(self._new_child_spi(), group)
        inner.append(NoncePayload(ni))
        if dh is not None and group is not None:
            inner.append(KePayload(group, dh.public_value()))
        local_ts, remote_ts = (rekey.local_ts, rekey.remote_ts) if rekey else (cfg.local_ts, cfg.remote_ts)
        inner += [TsiPayload(local_ts), TsrPayload(remote_ts)]

        def done(msg: Message, t: float) -> None:
            n = _notifies(msg)
            nonce, ke = _opt(msg, NoncePayload), self._ke(msg)
            gir = None
            if _error(msg) is None:
                if not isinstance(nonce, NoncePayload):
                    raise Drop("CREATE_CHILD_SA response without a nonce")
                if dh is not None:
                    if ke is None or ke.group != group:
                        raise Drop("CREATE_CHILD_SA response without the KE payload")
                    gir = dh.shared_secret(ke.data)
            nr = nonce.data if isinstance(nonce, NoncePayload) else b""
            child = self._child_response(msg, n, ni, nr, gir, group if dh else None, t, rekey)
            if rekey is None:
                return
            if child is None:
                if rekey.state is ChildState.REKEYING:
                    rekey.state = ChildState.ACTIVE
                    rekey.rekey_at = t + self._backoff()  # try again a little later
                if NotifyType.CHILD_SA_NOT_FOUND in n:
                    self._remove(rekey, "unknown to the peer")
                return
            self._resolve_collision(rekey, child)
            s.queue.appendleft(lambda t2: self.start_delete_child(rekey.our_spi, t2))

        s.request(s.sa, ExchangeType.CREATE_CHILD_SA, inner, done, now, "CREATE_CHILD_SA")

    def _resolve_collision(self, old: ChildSa, ours: ChildSa) -> None:
        """RFC 7296 section 2.8.1: both ends rekeyed ``old``; the new SA whose exchange has the
        lowest of the four nonces is redundant and is deleted by the end that initiated it."""
        theirs = self.collisions.pop(old.our_spi, None)
        if theirs is None:
            return
        if min(ours.nonces) < min(theirs.nonces):
            self.s.queue.append(lambda t: self.start_delete_child(ours.our_spi, t))

    def _delete_task(self, spi: bytes) -> Callable[[float], None]:
        return lambda t: self.start_delete_child(spi, t)

    def _backoff(self) -> float:
        return 2.0 + 8.0 * self.s.rng(1)[0] / 255

    def _rekey_task(self, spi: bytes) -> Callable[[float], None]:
        return lambda t: self.start_rekey_child(spi, t)

    def start_rekey_child(self, spi: bytes, now: float) -> None:
        child = self.s.children.get(spi)
        if child is None or child.state is not ChildState.ACTIVE:
            return
        self.start_create_child(now, rekey=child)

    # ================================================================ IKE SA rekey (section 1.3.2)

    def start_rekey_ike(self, now: float, group: int | None = None) -> None:
        s = self.s
        group = group or s.sa.group
        new_spi = s.new_spi(8)
        offer = ike_sa_payload(s.config.ike, spi=new_spi, group=group)
        ni = s.rng(NONCE_LEN)
        dh = s.dh.generate(group)
        inner: list[Payload] = [offer, NoncePayload(ni), KePayload(group, dh.public_value())]
        s.sa.rekey_at = float("inf")

        def done(msg: Message, t: float) -> None:
            n = _notifies(msg)
            theirs, self.ike_collision = self.ike_collision, None
            if _error(msg) is not None:
                if theirs is not None:
                    # The peer refused ours but we made its new IKE SA: that one survives, and the
                    # peer, its initiator, deletes the old IKE SA.
                    s.extra.remove(theirs[0])
                    self._adopt_ike(theirs[0], theirs[1], t)
                    return
                if NotifyType.INVALID_KE_PAYLOAD in n:
                    data = n[NotifyType.INVALID_KE_PAYLOAD].data
                    g = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
                    if g != group and any(g in a.groups for a in s.config.ike):
                        s.queue.appendleft(lambda t2: self.start_rekey_ike(t2, g))
                        return
                s.sa.rekey_at = t + self._backoff()  # RFC 7296 section 2.25: retry after a random delay
                return
            sa_p, nonce, ke = _one(msg, SaPayload, "SA"), _one(msg, NoncePayload, "Nonce"), self._ke(msg)
            assert isinstance(sa_p, SaPayload) and isinstance(nonce, NoncePayload)
            choice = check_response(offer, sa_p)
            if ke is None or ke.group != group or choice.group != group or len(choice.peer_spi) != 8:
                raise Drop("bad IKE rekey response")
            ours = self._derive_ike(
                IkeSa(True, new_spi, choice.peer_spi), choice, ni, nonce.data, dh.shared_secret(ke.data), t
            )
            algs = describe(choice.suite, choice.prf, choice.group)
            if theirs is not None and min(ni, nonce.data) < min(theirs[2]):
                # RFC 7296 section 2.8.2: both ends rekeyed the IKE SA; the new SA whose exchange
                # has the lowest of the four nonces is redundant and its initiator (we) deletes it.
                s.extra.remove(theirs[0])
                self._adopt_ike(theirs[0], theirs[1], t)
                s.extra.append(ours)
                s.request(
                    ours,
                    ExchangeType.INFORMATIONAL,
                    [DeletePayload(ProtocolId.IKE)],
                    lambda m, t3: self._forget(ours),
                    t,
                    "Delete of a redundant IKE SA",
                )
                return
            # Ours survives (the peer deletes its redundant one, if any): we delete the old IKE SA.
            self._adopt_ike(ours, algs, t)
            old = s.old_sa
            assert old is not None

            def deleted(m: Message, t3: float) -> None:
                s.old_sa = None

            s.request(
                old,
                ExchangeType.INFORMATIONAL,
                [DeletePayload(ProtocolId.IKE)],
                deleted,
                t,
                "Delete of the old IKE SA",
            )

        s.request(s.sa, ExchangeType.CREATE_CHILD_SA, inner, done, now, REKEY_IKE)

    def _forget(self, sa: IkeSa) -> None:
        if sa in self.s.extra:
            self.s.extra.remove(sa)

    def _derive_ike(self, new: IkeSa, choice: Choice, ni: bytes, nr: bytes, gir: bytes, now: float) -> IkeSa:
        """RFC 7296 section 2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the old PRF;
        the new IKE SA's message IDs start at 0."""
        s = self.s
        old = s.sa
        assert old.keys is not None and choice.prf is not None and choice.group is not None
        seed = crypto.skeyseed_rekey(old.prf, old.keys.sk_d, gir, ni, nr)
        new.keys = crypto.derive_ike_keys(choice.prf, choice.suite, seed, ni, nr, new.spi_i, new.spi_r)
        new.prf, new.suite, new.group = choice.prf, choice.suite, choice.group
        new.created, new.rekey_at = now, now + self._jitter(s.config.ike_rekey_s)
        return new

    def _adopt_ike(self, new: IkeSa, algs: str, now: float) -> None:
        """The new IKE SA takes over; the children move to it (they only keep its keys' SK_d)."""
        s = self.s
        old = s.sa
        old.rekey_at = float("inf")
        s.sa, s.old_sa = new, old
        s.counters.rekeys += 1
        s.event(IkeSaRekeyed(old.spis, new.spis, algs))

    def r_rekey_ike(self, msg: Message, sa_p: SaPayload, ni: bytes, ke: KePayload | None, now: float) -> None:
        s = self.s
        if ke is None:
            s.respond_to(s.sa, msg.header, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
            return
        choice = choose_ike(sa_p, s.config.ike, ke.group)
        if choice is None or len(choice.peer_spi) != 8:
            s.respond_to(s.sa, msg.header, [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)])
            return
        assert choice.group is not None
        if choice.group != ke.group:
            s.respond_to(
                s.sa,
                msg.header,
                [NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, choice.group.to_bytes(2, "big"))],
            )
            return
        dh = s.dh.generate(choice.group)
        gir = dh.shared_secret(ke.data)
        nr = s.rng(NONCE_LEN)
        new_spi = s.new_spi(8)
        prop = Proposal(choice.proposal.number, ProtocolId.IKE, new_spi, choice.proposal.transforms)
        s.respond_to(
            s.sa,
            msg.header,
            [SaPayload((prop,)), NoncePayload(nr), KePayload(choice.group, dh.public_value())],
        )
        new = self._derive_ike(IkeSa(False, choice.peer_spi, new_spi), choice, ni, nr, gir, now)
        algs = describe(choice.suite, choice.prf, choice.group)
        if s.sa.pending is not None and s.sa.pending.what == REKEY_IKE:
            # Our own IKE rekey is outstanding: decide when its response comes (section 2.8.2).
            s.extra.append(new)
            self.ike_collision = (new, algs, (ni, nr))
            return
        self._adopt_ike(new, algs, now)

    # ================================================================ INFORMATIONAL requests

    def start_delete_child(self, spi: bytes, now: float) -> None:
        s = self.s
        child = s.children.get(spi)
        if child is None or child.state is ChildState.DELETING:
            return
        child.state = ChildState.DELETING

        def done(msg: Message, t: float) -> None:
            self._remove(child, "deleted")

        s.request(
            s.sa, ExchangeType.INFORMATIONAL, [DeletePayload(ProtocolId.ESP, (spi,))], done, now, "Delete"
        )

    def start_delete_ike(self, now: float) -> None:
        s = self.s

        def done(msg: Message, t: float) -> None:
            self.drop_all_children("IKE SA deleted")
            s.event(IkeSaDeleted("deleted", False))
            s.state = State.CLOSED

        s.request(
            s.sa,
            ExchangeType.INFORMATIONAL,
            [DeletePayload(ProtocolId.IKE)],
            done,
            now,
            "Delete of the IKE SA",
        )

    def start_liveness(self, now: float) -> None:
        s = self.s
        s.counters.liveness_checks += 1
        s.request(s.sa, ExchangeType.INFORMATIONAL, [], lambda m, t: None, now, "liveness check")

    # ================================================================ timers

    def timers(self, now: float) -> None:
        s = self.s
        if now >= s.sa.rekey_at:
            s.sa.rekey_at = float("inf")
            s.queue.append(self.start_rekey_ike)
        for c in list(s.children.values()):
            if c.state is ChildState.ACTIVE and now >= c.rekey_at:
                c.rekey_at = float("inf")
                s.queue.append(self._rekey_task(c.our_spi))
            elif now >= c.expire_at:
                if c.state is ChildState.ACTIVE:  # its rekey never completed: the hard lifetime ends it
                    c.expire_at = float("inf")
                    s.queue.append(self._delete_task(c.our_spi))
                elif c.state is not ChildState.DELETING:
                    self._remove(c, "expired")
        cfg = s.config
        if (
            cfg.dpd_interval_s > 0
            and now >= s.last_heard + cfg.dpd_interval_s
            and s.sa.pending is None
            and not s.queue
        ):
            s.last_heard = now
            s.queue.append(self.start_liveness)
