"""IKEv2 under the same policy agent: rules with ``ikeversion = 2`` negotiate with
``ipsecd.ikev2`` (one ``Dispatcher`` for every IKE SA), and the children land in the data path
through the ``IkeManager`` (the same install, monitor, event and log paths as Quick Mode SAs).

Initiator: the acquire's filter gives the rule (PSK, ``mmsecmethods`` -> IKE proposals with
``ike_from_mm``, the filter action's methods -> ESP proposals with ``child_from_qm``), the traffic
selectors (the filter's ranges in tunnel mode, the two hosts with USE_TRANSPORT_MODE otherwise).
Responder: ``config_for`` picks the rule by the peer's address (``responder_auth``); its filters
give the selectors the responder narrows to (RFC 7296 section 2.9). docs/daemon-ike.md.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ipsecd.daemon.ike_policy import RulePick, responder_auth
from ipsecd.daemon.ike_reload import ChildInfo, _Child
from ipsecd.daemon.monitor import MainModeSA
from ipsecd.ike.certs import load_certificates, load_local_credential
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2 import events as v2
from ipsecd.ikev2.certauth import Credentials
from ipsecd.ikev2.dispatch import Dispatcher
from ipsecd.ikev2.payloads import Identity, TrafficSelector
from ipsecd.ikev2.proposals import ProposalError, child_from_qm, ike_from_mm
from ipsecd.ikev2.session import Session, SessionConfig
from ipsecd.log import events as ev
from ipsecd.policy.order import Direction, SpecificFilter

if TYPE_CHECKING:
    from ipsecd.daemon.ike import IkeManager

NATT_PORT = 4500
ID_DER_ASN1_DN = 9  # RFC 7296 section 3.5


@dataclass
class _Sa:
    """One IKEv2 session's bookkeeping in the daemon."""

    local: str
    peer: str
    pick: RulePick
    children: dict[int, _Child] = field(default_factory=dict)
    mm_id: int | None = None
    key: tuple[Any, ...] | None = None  # the acquire being negotiated


def _range_ts(version: int, first: int, last: int, protocol: int, port: int) -> TrafficSelector:
    mk = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    lo, hi = (port, port) if port else (0, 65535)
    return TrafficSelector(mk(first), mk(last), protocol, lo, hi)


def _host_ts(addr: str, protocol: int, port: int) -> TrafficSelector:
    a = ipaddress.ip_address(addr)
    lo, hi = (port, port) if port else (0, 65535)
    return TrafficSelector(a, a, protocol, lo, hi)


def _id_text(ident: Identity) -> str:
    """An identity for the monitor: addresses and names as text; a DER DN (RFC 7296 section 3.5
    ID_DER_ASN1_DN) as its printable characters, as the IKEv1 side shows it."""
    if ident.id_type == ID_DER_ASN1_DN:
        return "".join(chr(b) if 32 <= b < 127 else "." for b in ident.data)
    return str(ident)


def _credentials(pick: RulePick) -> Credentials:
    """The rule's ``cert`` method as IKEv2 credentials (RFC 7427 signatures, RSA or ECDSA)."""
    m = pick.cert
    assert m is not None and m.cert and m.key and m.rootca
    local = load_local_credential(m.cert, m.key)
    if not isinstance(local.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("IKEv2 certificates need an RSA or ECDSA key")
    der = serialization.Encoding.DER
    roots = tuple(c.public_bytes(der) for c in load_certificates(m.rootca))
    return Credentials(local.key, local.cert.public_bytes(der), roots)


M = TypeVar("M")
T = TypeVar("T")


class IkeV2Side:
    def __init__(self, mgr: IkeManager, now: float) -> None:
        self.mgr = mgr
        self.dispatcher = Dispatcher(
            self._config_for,
            rng=os.urandom,
            dh=DefaultDhProvider(os.urandom),
            now=now,
            wall_clock=lambda: datetime.datetime.now(datetime.UTC),
        )
        self.sas: dict[int, _Sa] = {}  # by id(session)
        self._picked: _Sa | None = None  # set by _config_for for the responder being created
        self.refused = 0
        self._skipped: set[tuple[str, str]] = set()  # (rule, method) already logged as unusable

    # --- configuration -------------------------------------------------------------------------

    def _config(
        self,
        pick: RulePick,
        local: str,
        peer: str,
        local_ts: tuple[TrafficSelector, ...],
        remote_ts: tuple[TrafficSelector, ...],
        transport: bool,
    ) -> SessionConfig | None:
        store = self.mgr.store
        if store is None or not pick.usable:
            return None
        creds: Credentials | None = None
        if pick.psk is None:
            try:
                creds = _credentials(pick)
            except (OSError, ValueError) as exc:
                self.mgr.log(f"IKEv2: {pick.label}: cannot load the certificate: {exc}")
                return None
        fa = store.filteractions.get(pick.filteraction)
        if fa is None:
            return None
        # Methods IKEv2 cannot express (AH, 3DES ESP, ...) are skipped, not fatal: the rule is
        # negotiated with the rest, as an IKEv1 peer would be offered the whole list.
        ike = self._usable(pick.label, pick.mm_methods, ike_from_mm)
        pfs = (pick.mm_methods[0].group,) if fa.qmpfs and pick.mm_methods else ()
        esp = self._usable(pick.label, fa.qmsecmethods, lambda q: child_from_qm(q, pfs))
        if not ike or not esp:
            self.mgr.log(
                f"IKEv2: {pick.label}: no {'main' if not ike else 'quick'} mode method IKEv2 can use"
            )
            return None
        policy = store.policies[pick.policy]
        life = min((q.lifetime_s for q in fa.qmsecmethods), default=3600)
        return SessionConfig(
            ike=ike,
            esp=esp,
            psk=(pick.psk or "").encode(),
            local_id=Identity.address(local) if creds is None else creds.identity_dn(),
            certs=creds,
            local_ts=local_ts,
            remote_ts=remote_ts,
            transport=transport,
            pfs_group=pfs[0] if pfs else None,
            ike_rekey_s=float(policy.mmlifetime * 60),
            child_rekey_s=float(life) * 0.9,
            rekey_margin_s=float(life) * 0.1,
            dpd_interval_s=self.mgr.dpd_interval,
            force_encap=pick.forceencap,  # RFC 7296 section 2.23: a faked NAT_DETECTION_SOURCE_IP
        )

    def _usable(self, label: str, methods: Sequence[M], convert: Callable[[M], T]) -> tuple[T, ...]:
        out: list[T] = []
        for m in methods:
            try:
                out.append(convert(m))
            except ProposalError as exc:
                if (label, str(m)) not in self._skipped:
                    self._skipped.add((label, str(m)))
                    self.mgr.log(f"IKEv2: {label}: {exc}: skipped")
        return tuple(out)

    def _config_for(self, local: tuple[str, int], remote: tuple[str, int]) -> SessionConfig | None:
        mgr = self.mgr
        if mgr.store is None or mgr.compiled is None:
            return None
        peer = remote[0].split("%", 1)[0]
        pick = responder_auth(mgr.store, mgr.compiled, ipaddress.ip_address(peer))
        if pick is None or pick.ikeversion != 2:
            self.refused += 1
            return None
        mine = [
            f
            for f in mgr.compiled.filters
            if f.rule == pick.rule and f.policy == pick.policy and f.direction is Direction.OUTBOUND
        ]
        if mine and mine[0].tunnel is not None:
            lts = tuple(_range_ts(f.version, f.src.first, f.src.last, f.protocol, f.srcport) for f in mine)
            rts = tuple(_range_ts(f.version, f.dst.first, f.dst.last, f.protocol, f.dstport) for f in mine)
            cfg = self._config(pick, local[0], peer, lts, rts, False)
        else:
            p0 = mine[0] if mine else None
            proto, sp, dp = (p0.protocol, p0.srcport, p0.dstport) if p0 else (0, 0, 0)
            cfg = self._config(
                pick, local[0], peer, (_host_ts(local[0], proto, sp),), (_host_ts(peer, proto, dp),), True
            )
        if cfg is not None:
            self._picked = _Sa(local[0], peer, pick)
        return cfg

    # --- driving -------------------------------------------------------------------------------

    def initiate(
        self,
        pick: RulePick,
        sf: SpecificFilter,
        src: str,
        dst: str,
        local: str,
        peer: str,
        key: tuple[Any, ...],
    ) -> None:
        for sa in self.sas.values():
            if sa.key == key:
                return  # already negotiating this acquire
        if sf.tunnel is not None:
            lts = (_range_ts(sf.version, sf.src.first, sf.src.last, sf.protocol, sf.srcport),)
            rts = (_range_ts(sf.version, sf.dst.first, sf.dst.last, sf.protocol, sf.dstport),)
            cfg = self._config(pick, local, peer, lts, rts, False)
        else:
            cfg = self._config(
                pick,
                local,
                peer,
                (_host_ts(src, sf.protocol, sf.srcport),),
                (_host_ts(dst, sf.protocol, sf.dstport),),
                True,
            )
        if cfg is None:
            self.mgr.fail(peer, pick.label, "no IKEv2 configuration for this rule", local)
            return
        now = self.mgr.clock()
        s = self.dispatcher.initiate(cfg, (local, 500), (peer, 500), now)
        self.sas[id(s)] = _Sa(local, peer, pick, key=key)
        self.mgr.oakley_line("IKE_SA_INIT sent", peer=peer, filter=pick.label)
        self.pump()

    def receive(self, data: bytes, local: str | None, remote: tuple[str, int], port: int) -> None:
        now = self.mgr.clock()
        loc = local or "0.0.0.0"
        self._picked = None
        s = self.dispatcher.receive_datagram(data, (loc, port), remote, now)
        if s is not None and id(s) not in self.sas and self._picked is not None:
            self.sas[id(s)] = self._picked
        self._picked = None

    def timer(self) -> float | None:
        return self.dispatcher.get_timer()

    def handle_timer(self, now: float) -> None:
        self.dispatcher.handle_timer(now)
        self.pump()

    def soft_expired(self, spi: int) -> bool:
        for s in self.dispatcher.sessions:
            sa = self.sas.get(id(s))
            if sa is None:
                continue
            for c in sa.children.values():
                if spi in (c.inbound_spi, c.outbound_spi):
                    s.rekey_child(c.inbound_spi)
                    s.poll(self.mgr.clock())
                    self.pump()
                    return True
        return False

    def delete(self, what: str, ids: set[int]) -> None:
        for s in list(self.dispatcher.sessions):
            sa = self.sas.get(id(s))
            if sa is None:
                continue
            if what == "qmsas":
                for spi, c in list(sa.children.items()):
                    if c.qm_id in ids:
                        s.delete_child(spi)
            elif sa.mm_id in ids:
                s.close()
            s.poll(self.mgr.clock())
        self.pump()

    def prune(self, changed: Callable[[_Child], bool], log: Callable[[str], None]) -> None:
        """A reload: an INFORMATIONAL Delete (RFC 7296 section 1.4.1) for each child ``changed``."""
        for s in list(self.dispatcher.sessions):
            sa = self.sas.get(id(s))
            if sa is None:
                continue
            for spi, c in list(sa.children.items()):
                if changed(c):
                    log(
                        f"IKEv2: reload: rule {sa.pick.label} changed: deleting SA 0x{spi:08x} with {sa.peer}"
                    )
                    s.delete_child(spi)
            s.poll(self.mgr.clock())
        self.pump()

    def close(self) -> None:
        for s in list(self.dispatcher.sessions):
            s.close()
        self.pump()

    def pump(self) -> None:
        mgr = self.mgr
        now = mgr.clock()
        for data, lport, addr in self.dispatcher.datagrams_to_send(now):
            mgr.trace("sent", data, addr[0], lport)
            if lport == NATT_PORT:
                mgr.send_natt(data, addr, None)
            else:
                mgr.send_ike(data, addr, None)
        for s, e in self.dispatcher.events():
            sa = self.sas.get(id(s))
            if sa is not None:
                self._event(s, sa, e)
            if s.closed:
                self.sas.pop(id(s), None)

    # --- events --------------------------------------------------------------------------------

    def _event(self, s: Session, sa: _Sa, e: v2.Event) -> None:
        mgr = self.mgr
        if isinstance(e, v2.IkeSaEstablished):
            self._ike_up(s, sa, e)
        elif isinstance(e, (v2.ChildSaEstablished, v2.ChildSaRekeyed)):
            self._child_up(sa, e)
        elif isinstance(e, v2.ChildSaDeleted):
            mgr.remove_child(sa.children, sa.local, sa.peer, e.inbound_spi, ev.EndReason.DELETED_BY_PEER)
        elif isinstance(e, v2.IkeSaDeleted):
            if sa.mm_id is not None:
                mgr.monitor.remove_mm_sa(sa.mm_id)
            for spi in list(sa.children):
                mgr.remove_child(sa.children, sa.local, sa.peer, spi, ev.EndReason.DELETED_BY_PEER)
            mgr.oakley_line("IKE SA deleted", peer=sa.peer, reason=e.reason)
        elif isinstance(e, (v2.NegotiationFailed, v2.ChildSaFailed)):
            sa.key = None
            mode = (
                ev.NegotiationMode.MAIN_MODE
                if isinstance(e, v2.NegotiationFailed)
                else ev.NegotiationMode.QUICK_MODE
            )
            point = ev.FailurePoint.ME if e.failure_point is v2.FailurePoint.LOCAL else ev.FailurePoint.PEER
            mgr.negotiation_failed(sa.local, sa.peer, sa.pick.label, mode, point, e.reason)
        elif isinstance(e, v2.PeerDead):
            mgr.oakley_line("liveness check: peer dead", peer=sa.peer, reason=e.reason)
            mgr.emit(ev.DPDPeerDead(ipaddress.ip_address(sa.peer), 0, 0))
            for spi in list(sa.children):
                mgr.remove_child(sa.children, sa.local, sa.peer, spi, ev.EndReason.PEER_DEAD)
            if sa.mm_id is not None:
                mgr.monitor.remove_mm_sa(sa.mm_id)

    def _ike_up(self, s: Session, sa: _Sa, e: v2.IkeSaEstablished) -> None:
        mgr = self.mgr
        now = mgr.clock()
        if sa.local == "0.0.0.0":
            sa.local = str(s.local[0])
        sa.mm_id = mgr.new_id()
        parts = e.algorithms.split("/")
        group = s.sa.group
        role = "initiator" if e.initiator else "responder"
        life = int(s.config.ike_rekey_s)
        mgr.monitor.add_mm_sa(
            MainModeSA(
                id=sa.mm_id,
                local=ipaddress.ip_address(sa.local),
                peer=ipaddress.ip_address(sa.peer),
                icookie=int.from_bytes(e.spi_i, "big"),
                rcookie=int.from_bytes(e.spi_r, "big"),
                auth_method="psk" if sa.pick.psk is not None else "cert",
                local_identity=_id_text(e.local_id),
                peer_identity=_id_text(e.peer_id),
                encryption=parts[0],
                integrity=parts[1] if len(parts) > 1 else "",
                dh_group=group,
                lifetime_seconds=life,
                expires_at=now + life,
                ike_version=2,
                role=role,
                local_port=NATT_PORT if s.natt else 500,
                peer_port=int(s.remote[1]),
                policy=sa.pick.policy,
                rule=sa.pick.rule,
            )
        )
        mgr.monitor.count_mm("oakley_main_mode")
        mgr.emit(
            ev.MainModeSAEstablished(
                ipaddress.ip_address(sa.local),
                ipaddress.ip_address(sa.peer),
                _id_text(e.peer_id),
                "preshared" if sa.pick.psk is not None else "certificate",
                parts[0],
                parts[1] if len(parts) > 1 else "",
                group,
                life,
                ev.Role.INITIATOR if e.initiator else ev.Role.RESPONDER,
                ike_version=2,
            )
        )
        mgr.oakley_line("IKE SA established", peer=sa.peer, role=role, algorithms=e.algorithms, natt=e.natt)

    def _child_up(self, sa: _Sa, e: v2.ChildSaEstablished | v2.ChildSaRekeyed) -> None:
        lts, rts = e.local_ts[0], e.remote_ts[0]
        info = ChildInfo(
            ", ".join(f"{t.start}-{t.end}" for t in e.local_ts),
            ", ".join(f"{t.start}-{t.end}" for t in e.remote_ts),
            lts.protocol,
            lts.start_port if lts.start_port == lts.end_port else 0,
            rts.start_port if rts.start_port == rts.end_port else 0,
            e.inbound.enc_alg.name,
            e.inbound.integ_alg.name,
            None,
            int(e.inbound.lifetimes.hard_seconds),
            0,
            e.pfs_group,
            sa.mm_id,
            str(lts.start),
            str(rts.start),
        )
        if sa.local == "0.0.0.0" and e.inbound.tunnel is not None:
            sa.local = str(e.inbound.tunnel.dst)
        if self.mgr.install_child(sa.children, sa.local, sa.peer, sa.pick, e.inbound, e.outbound, info):
            sa.key = None
            if isinstance(e, v2.ChildSaRekeyed):
                self.mgr.monitor.count_qm("rekeys")
