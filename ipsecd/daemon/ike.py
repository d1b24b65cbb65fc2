"""The policy agent's IKE side: on-demand negotiation from the router's acquires, the responder,
one timer for every session, and SA installation into the data path.

``IkeManager`` owns the UDP 500 socket (bypass mark) and borrows the engine's UDP 4500 socket:
the router puts the non-ESP-marker datagrams of port 4500 into ``ike_inbox`` (RFC 3948 section
2.2) and the engine hands them here. One ``IkeV1Session`` (sans-I/O, ``ipsecd.ikev1.session``)
per peer address; its events install and remove SAs (``SADatabase.add_state``), feed the IP
Security Monitor (``MonitorState``), the event log and the Oakley log. docs/daemon-ike.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ipsecd.daemon.ike_policy import RulePick, initiator_rule, responder_auth, responder_lookup_for
from ipsecd.daemon.ike_reload import ChildInfo, RuleRef, _Child, rule_changed, rule_for
from ipsecd.daemon.ike_trace import end_reason, message_line
from ipsecd.daemon.ike_v2 import IkeV2Side
from ipsecd.daemon.monitor import MainModeSA, MonitorState, QuickModeSA
from ipsecd.daemon.router import Acquire, Router
from ipsecd.datapath.counters import Counters
from ipsecd.datapath.sa import Mode, SAParams
from ipsecd.datapath.sadb import InstalledSA, ManualState, SADatabase, SadbError
from ipsecd.ike.certs import load_certificates, load_local_credential
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev1 import events as v1
from ipsecd.ikev1.certs import CertCredentials
from ipsecd.ikev1.quick_mode import QmPolicy
from ipsecd.ikev1.selectors import TrafficSelector
from ipsecd.ikev1.session import IkeV1Session, SessionConfig
from ipsecd.io.udp import UdpSocket
from ipsecd.log import events as ev
from ipsecd.log.oakley import OakleyLog
from ipsecd.log.sinks import EventLog
from ipsecd.policy.classifier import CompiledPolicy
from ipsecd.policy.model import Store

IKE_PORT = 500  # RFC 2409 section 2 (UDP 500)
NATT_PORT = 4500  # RFC 3947 section 4
BUNDLE_REQID_BASE = 0x40000000  # reqids of negotiated AH+ESP bundles (ip-xfrm states use small ones)
BATCH = 256
IKEV2_MAJOR = 2  # RFC 7296 section 3.1: MjVer 2 in the high nibble of octet 17


def _now_wall() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _local_for(peer: str) -> str:
    """The source address the kernel would use to reach ``peer`` (a connected UDP socket)."""
    fam = socket.AF_INET6 if ":" in peer else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.connect((peer, IKE_PORT))
        return str(s.getsockname()[0])


@dataclass
class _Peer:
    session: IkeV1Session
    local: str
    peer: str
    pick: RulePick
    children: dict[int, _Child] = field(default_factory=dict)  # by our inbound SPI
    mm_ids: dict[bytes, int] = field(default_factory=dict)  # cky_i + cky_r -> monitor id
    negotiating: set[tuple[Any, ...]] = field(default_factory=set)


class IkeManager:
    """Sessions by peer address; see the module docstring."""

    def __init__(
        self,
        sadb: SADatabase,
        router: Router,
        monitor: MonitorState,
        *,
        clock: Callable[[], float],
        send_natt: Callable[[bytes, tuple[str, int], str | None], None],
        flush: Callable[[], None],
        log: Callable[[str], None],
        oakley: OakleyLog | None = None,
        events: EventLog | None = None,
        mark: int | None = None,
        dpd_interval: float = 30.0,
        dpd_retries: int = 5,
    ) -> None:
        self.sadb = sadb
        self.router = router
        self.monitor = monitor
        # An SA's counters (the engine points it at the fast path's when it carries the SA).
        self.counters_of: Callable[[InstalledSA], Counters] = lambda sa: sa.transform.counters()
        self.clock = clock
        self._send_natt = send_natt
        self._reqid = 0  # the last AH+ESP bundle's reqid, less BUNDLE_REQID_BASE
        self._flush = flush
        self.log = log
        self.oakley = oakley
        self.eventlog = events
        self.mark = mark
        self.store: Store | None = None
        self.compiled: CompiledPolicy | None = None
        self.peers: dict[str, _Peer] = {}
        self.sock: UdpSocket | None = None
        self.sock6: UdpSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next_id = 1
        self.dropped = 0  # datagrams no session could take (malformed, no rule)
        self.oakley_errors = 0
        self.dpd_interval = dpd_interval  # RFC 3706 idle time before R-U-THERE (IKEv1); IKEv2 liveness
        self.dpd_retries = dpd_retries
        self.v2 = IkeV2Side(self, clock())

    # --- set-up --------------------------------------------------------------------------------

    def set_policy(self, store: Store, compiled: CompiledPolicy) -> None:
        old, self.store, self.compiled = self.store, store, compiled
        if old is not None:
            self.prune(old, store)
        if self.oakley is not None:
            self.oakley.set_enabled(store.settings.ikelogging)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.sock = UdpSocket.open("0.0.0.0", IKE_PORT, mark=self.mark)
        loop.add_reader(self.sock.fileno(), self._on_sock, self.sock, IKE_PORT)
        try:
            self.sock6 = UdpSocket.open("::", IKE_PORT, mark=self.mark)
            loop.add_reader(self.sock6.fileno(), self._on_sock, self.sock6, IKE_PORT)
        except OSError as exc:
            self.log(f"IKE: no IPv6 socket: {exc}")
        self.router.events.subscribers.append(self._on_router_event)

    def close(self) -> None:
        now = self.clock()
        with contextlib.suppress(Exception):
            self.v2.close()
        for p in list(self.peers.values()):
            with contextlib.suppress(Exception):
                p.session.close(now)
                self._pump(p)
        if self._timer is not None:
            self._timer.cancel()
        for s in (self.sock, self.sock6):
            if s is not None:
                if self._loop is not None:
                    with contextlib.suppress(Exception):
                        self._loop.remove_reader(s.fileno())
                s.close()

    def prune(self, old: Store, new: Store) -> None:
        """After a reload: delete (DELETE to the peer) each negotiated pair whose rule changed or
        vanished (``ipsecd.daemon.ike_reload``); the others keep running untouched."""
        now = self.clock()
        for p in list(self.peers.values()):
            for spi, c in list(p.children.items()):
                if c.rule is not None and rule_changed(old, new, c.rule):
                    self.log(
                        f"IKE: reload: rule {c.rule.label} changed: deleting SA 0x{spi:08x} with {p.peer}"
                    )
                    p.session.delete_child(spi, now)
            self._pump(p)
        self.v2.prune(lambda c: c.rule is not None and rule_changed(old, new, c.rule), self.log)
        self._arm()

    # --- periodic: traffic, liveness; ipsecctl dynamic delete ---------------------------------

    def tick(self) -> None:
        """From the engine's tick: each SA pair's traffic into the monitor; inbound ESP counts as
        liveness for IKEv1 DPD (RFC 3706 section 5.4: no probe while traffic flows)."""
        now = self.clock()
        for p in self.peers.values():
            if any(self._traffic(c) for c in p.children.values()):
                p.session.note_inbound_traffic(now)
        for sa in self.v2.sas.values():
            for c in sa.children.values():
                self._traffic(c)

    def _traffic(self, c: _Child) -> bool:
        """Update the monitor's counters of one pair; True when packets came in since last time."""
        inbound = self.sadb.states.get(c.states[0]) if c.states else None
        outbound = self.sadb.states.get(c.states[1]) if len(c.states) > 1 else None
        if inbound is None or outbound is None:
            return False
        cin, cout = self.counters_of(inbound), self.counters_of(outbound)
        self.monitor.update_qm_traffic(
            c.qm_id,
            bytes_in=cin.transport_bytes_received + cin.tunnel_bytes_received,
            bytes_out=cout.transport_bytes_sent + cout.tunnel_bytes_sent,
            packets_in=cin.packets_received,
            packets_out=cout.packets_sent,
        )
        fresh = cin.packets_received != c.seen_in
        c.seen_in = cin.packets_received
        return fresh

    def delete(self, what: str, ids: list[int]) -> None:
        """``ipsecctl dynamic delete qmsas|mmsas``: a Quick Mode (child) SA pair is deleted with a
        DELETE to the peer; a main mode (IKE) SA takes everything negotiated with that peer."""
        now = self.clock()
        wanted = set(ids)
        for p in list(self.peers.values()):
            if what == "qmsas":
                for spi, c in list(p.children.items()):
                    if c.qm_id in wanted:
                        p.session.delete_child(spi, now)
            elif wanted & set(p.mm_ids.values()):
                p.session.close(now)
            self._pump(p)
        self.v2.delete(what, wanted)
        self._arm()

    # --- shared with the IKEv2 side ------------------------------------------------------------

    def trace(self, what: str, data: bytes, peer: str, port: int) -> None:
        """One Oakley line per IKE message (each step of a negotiation), from its header."""
        if self.oakley is not None and self.oakley.enabled:
            line = message_line(what, data, peer, port)
            if line is not None:
                self._oakley(line[0], **line[1])

    def send_natt(self, data: bytes, addr: tuple[str, int], source: str | None) -> None:
        self._send_natt(data, addr, source)

    def send_ike(self, data: bytes, addr: tuple[str, int], source: str | None) -> None:
        sock = self.sock6 if ":" in addr[0] else self.sock
        if sock is not None:
            sock.send(data, addr, source)

    def oakley_line(self, message: str, **fields: object) -> None:
        self._oakley(message, **fields)

    def emit(self, event: ev.Event) -> None:
        self._emit(event)

    def new_id(self) -> int:
        return self._id()

    def fail(self, peer: str, label: str, reason: str, local: str | None) -> None:
        self._fail(peer, label, reason, local)

    def negotiation_failed(
        self,
        local: str,
        peer: str,
        label: str,
        mode: ev.NegotiationMode,
        point: ev.FailurePoint,
        reason: str,
    ) -> None:
        self.monitor.count_mm("negotiation_failures")
        self._emit(ev.NegotiationFailed(mode, label, point, reason, _ip(peer), _ip(local)))
        self._oakley_failure(mode, label, point, reason)
        self.log(f"IKE: negotiation with {peer} failed: {reason}")

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    # --- receive -------------------------------------------------------------------------------

    def _on_sock(self, sock: UdpSocket, port: int) -> None:
        got = sock.recv_batch(BATCH)
        self.receive([(d.data, d.peer, d.local) for d in got], port)

    def receive(self, datagrams: list[tuple[bytes, tuple[str, int], str | None]], port: int) -> None:
        """IKE datagrams (with the non-ESP marker when ``port`` is 4500) from the sockets."""
        now = self.clock()
        touched: list[_Peer] = []
        v2_seen = False
        for data, addr, local in datagrams:
            body = data[4:] if port == NATT_PORT else data
            if len(body) < 28:
                self.dropped += 1
                self.monitor.count_mm("invalid_packets")
                continue
            peer_ip = addr[0].split("%", 1)[0]
            self.trace("received", data, peer_ip, port)
            try:
                if body[17] >> 4 == IKEV2_MAJOR:
                    self.v2.receive(data, local, (peer_ip, addr[1]), port)
                    v2_seen = True
                    continue
                p = self.peers.get(peer_ip)
                if p is None:
                    p = self._responder(peer_ip, local, now)
                    if p is None:
                        self.dropped += 1
                        continue
                p.session.receive_datagram(data, (_ip(peer_ip), addr[1]), now, port)
                touched.append(p)
            except (OSError, ValueError) as exc:  # never out of the reader: counted and dropped
                self.dropped += 1
                self.monitor.count_mm("receive_failures")
                self.log(f"IKE: datagram from {peer_ip} dropped: {type(exc).__name__}")
        for t in {id(t): t for t in touched}.values():
            self._pump(t)
            self._reap(t)
        if v2_seen:
            self.v2.pump()
        self._arm()

    def _credentials(self, pick: RulePick) -> CertCredentials:
        """The rule's ``cert`` method as IKEv1 RSA-signature credentials (docs/certificates.md);
        CertError/OSError/ValueError when the files do not load (the caller fails the negotiation)."""
        m = pick.cert
        assert m is not None and m.cert and m.key and m.rootca
        local = load_local_credential(m.cert, m.key)
        if not isinstance(local.key, rsa.RSAPrivateKey):
            raise ValueError("IKEv1 certificate authentication needs an RSA key")
        roots = load_certificates(m.rootca)
        return CertCredentials(local.cert, local.key, roots, _now_wall, local.chain)

    def _reap(self, p: _Peer) -> None:
        """A session with nothing established and nothing pending (a refused or garbage first
        message) is forgotten, so spoofed sources cannot pile up sessions."""
        idle = not p.session.ike_sas and not p.children and p.session.get_timer() is None
        if idle and self.peers.get(p.peer) is p:
            del self.peers[p.peer]

    def _responder(self, peer_ip: str, local: str | None, now: float) -> _Peer | None:
        if self.store is None or self.compiled is None:
            return None
        pick = responder_auth(self.store, self.compiled, ipaddress.ip_address(peer_ip))
        if pick is None or not pick.usable:
            self._oakley("Main Mode refused: no rule authenticates this peer", peer=peer_ip)
            self.monitor.count_mm("negotiation_failures")
            return None
        local_ip = local or _local_for(peer_ip)
        lookup = responder_lookup_for(self.store, self.compiled, pick)
        return self._new_peer(peer_ip, local_ip, pick, now, lookup)

    def _new_peer(self, peer_ip: str, local_ip: str, pick: RulePick, now: float, lookup: Any = None) -> _Peer:
        assert self.store is not None
        policy = self.store.policies[pick.policy]
        cert = self._credentials(pick) if pick.psk is None else None
        cfg = SessionConfig(
            local=(_ip(local_ip), IKE_PORT),
            peer=(_ip(peer_ip), IKE_PORT),
            mm_methods=pick.mm_methods,
            psk=(pick.psk or "").encode(),
            mm_lifetime_s=policy.mmlifetime * 60,
            mmpfs=policy.mmpfs,
            qmpermm=policy.qmpermm,
            qm_lookup=lookup,
            dpd_interval=self.dpd_interval,
            dpd_retries=self.dpd_retries,
            cert=cert,
            force_nat=pick.forceencap,  # RFC 3947 section 3.2: a NAT-D hash of another port
        )
        session = IkeV1Session(cfg, rng=os.urandom, dh=DefaultDhProvider(os.urandom), now=now)
        p = _Peer(session, local_ip, peer_ip, pick)
        self.peers[peer_ip] = p
        return p

    # --- initiate ------------------------------------------------------------------------------

    def _on_router_event(self, event: object) -> None:
        if isinstance(event, Acquire):
            try:
                self.acquire(event)
            except (OSError, ValueError) as exc:
                self.log(f"IKE: acquire for {event.dst} failed: {exc}")
                self.monitor.count_mm("acquire_failures")

    def acquire(self, acq: Acquire) -> None:
        """Start Main Mode (if needed) and Quick Mode for a negotiate filter without an SA."""
        sf = acq.filter
        if sf is None or self.store is None:
            return  # a manual policy without its SA: manual keying, not IKE
        now = self.clock()
        peer_ip = str(sf.tunnel if sf.tunnel is not None else acq.dst)
        key = (id(sf), sf.tunnel, None if sf.tunnel is not None else str(acq.dst))
        self.monitor.count_mm("total_acquire")
        self._oakley("Acquire from driver:", src=acq.src, dst=acq.dst, filter=f"{sf.policy}/{sf.rule}")
        p = self.peers.get(peer_ip)
        if p is not None and key in p.negotiating:
            return  # the router's retry while our negotiation is still running
        pick = initiator_rule(self.store, sf)
        if pick is None or not pick.usable:
            self._fail(peer_ip, f"{sf.policy}/{sf.rule}", "no usable authentication method", None)
            return
        if pick.ikeversion == 2:
            local = str(acq.src) if sf.tunnel is None else _local_for(peer_ip)
            self.v2.initiate(pick, sf, str(acq.src), str(acq.dst), local, peer_ip, key)
            self._arm()
            return
        if p is None:
            p = self._new_peer(peer_ip, str(acq.src) if sf.tunnel is None else _local_for(peer_ip), pick, now)
        fa = self.store.filteractions[sf.filteraction]
        pol = QmPolicy.from_filter_action(fa, sf)
        if sf.tunnel is None:
            # Transport mode: the SA is for this host pair (the filter's protocol and ports).
            local_ts = TrafficSelector.of(acq.src, sf.protocol, sf.srcport)
            remote_ts = TrafficSelector.of(acq.dst, sf.protocol, sf.dstport)
            pol = QmPolicy(pol.methods, pol.pfs_group, False, local_ts, remote_ts, pol.replay_window)
        p.negotiating.add(key)
        p.session.initiate(pol, now)
        self._oakley("Main Mode / Quick Mode started", peer=peer_ip, filter=f"{sf.policy}/{sf.rule}")
        self._pump(p)
        self._arm()

    # --- timers --------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._loop is None:
            return
        times = [t for p in self.peers.values() if (t := p.session.get_timer()) is not None]
        if (t2 := self.v2.timer()) is not None:
            times.append(t2)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if times:
            delay = max(0.0, min(times) - self.clock())
            self._timer = self._loop.call_later(min(delay, 60.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        for p in list(self.peers.values()):
            t = p.session.get_timer()
            if t is not None and t <= now:
                p.session.handle_timer(now)
                self._pump(p)
        t2 = self.v2.timer()
        if t2 is not None and t2 <= now:
            self.v2.handle_timer(now)
        self._arm()

    def soft_expired(self, spi: int) -> None:
        """The data path's soft lifetime of an SA we installed (either direction): rekey it."""
        if self.v2.soft_expired(spi):
            self._arm()
            return
        for p in self.peers.values():
            for c in p.children.values():
                if all(k[1] != spi for k in c.states):  # ESP or AH, either direction
                    continue
                p.session.child_soft_expired(c.inbound_spi, self.clock())
                self._pump(p)
                self._arm()
                return

    # --- output and events ---------------------------------------------------------------------

    def _pump(self, p: _Peer) -> None:
        now = self.clock()
        for data, (dst_ip, dst_port), lport in p.session.datagrams_to_send_from(now):
            addr = (str(dst_ip), dst_port)
            self.trace("sent", data, addr[0], lport)
            if lport == NATT_PORT:
                self._send_natt(data, addr, p.local)
            else:
                sock = self.sock6 if ":" in addr[0] else self.sock
                if sock is not None:
                    sock.send(data, addr, p.local)
        while (e := p.session.next_event()) is not None:
            self._event(p, e)

    def _event(self, p: _Peer, e: v1.Event) -> None:
        if isinstance(e, v1.IkeSaEstablished):
            self._mm_up(p, e)
        elif isinstance(e, v1.ChildSaEstablished):
            self._qm_up(p, e)
        elif isinstance(e, v1.ChildSaDeleted):
            self._qm_down(p, e.inbound_spi, end_reason(e.reason))
        elif isinstance(e, v1.IkeSaDeleted):
            mm_id = p.mm_ids.pop(e.cky_i + e.cky_r, None)
            if mm_id is not None:
                self.monitor.remove_mm_sa(mm_id)
            self._emit(ev.MainModeSAEnded(_ip(p.local), _ip(p.peer), end_reason(e.reason)))
            self._oakley("Main Mode SA deleted", peer=p.peer, reason=e.reason.value)
        elif isinstance(e, v1.NegotiationFailed):
            p.negotiating.clear()
            self.monitor.count_mm("negotiation_failures")
            self._emit(
                ev.NegotiationFailed(
                    e.mode, p.pick.label, e.failure_point, e.reason, _ip(p.peer), _ip(p.local)
                )
            )
            self._oakley_failure(e.mode, p.pick.label, e.failure_point, e.reason)
            self.log(f"IKE: negotiation with {p.peer} failed: {e.reason}")
        elif isinstance(e, v1.AuthenticationFailed):
            p.negotiating.clear()
            self.monitor.count_mm("authentication_failures")
            self._emit(ev.AuthenticationFailed(_ip(p.peer), "", "preshared", e.reason))
            self._oakley("authentication failed", peer=p.peer, reason=e.reason)
        elif isinstance(e, v1.PeerDead):
            self._oakley("DPD: peer dead", peer=p.peer, unanswered=e.unanswered)
            self._emit(ev.DPDPeerDead(_ip(p.peer), 0, e.unanswered))
            for spi in list(p.children):
                self._qm_down(p, spi, ev.EndReason.PEER_DEAD)
            for mm_id in p.mm_ids.values():
                self.monitor.remove_mm_sa(mm_id)
            self.peers.pop(p.peer, None)

    def _mm_up(self, p: _Peer, e: v1.IkeSaEstablished) -> None:
        now = self.clock()
        mm_id = self._id()
        p.mm_ids[e.cky_i + e.cky_r] = mm_id
        role = "initiator" if e.initiator else "responder"
        self.monitor.add_mm_sa(
            MainModeSA(
                id=mm_id,
                local=_ip(p.local),
                peer=_ip(p.peer),
                icookie=int.from_bytes(e.cky_i, "big"),
                rcookie=int.from_bytes(e.cky_r, "big"),
                auth_method="psk" if p.pick.psk is not None else "cert",
                local_identity=_local_identity(p),
                peer_identity=e.peer_id,
                encryption=e.encryption,
                integrity=e.hash,
                dh_group=e.group,
                lifetime_seconds=e.lifetime_s,
                expires_at=now + e.lifetime_s,
                role=role,
                local_port=p.session.local_port,
                peer_port=p.session.peer_addr[1],
                policy=p.pick.policy,
                rule=p.pick.rule,
            )
        )
        self.monitor.count_mm("oakley_main_mode")
        self._emit(
            ev.MainModeSAEstablished(
                _ip(p.local),
                _ip(p.peer),
                e.peer_id,
                "preshared" if p.pick.psk is not None else "certificate",
                e.encryption,
                e.hash,
                e.group,
                e.lifetime_s,
                ev.Role.INITIATOR if e.initiator else ev.Role.RESPONDER,
            )
        )
        self._oakley(
            "Main Mode SA established",
            peer=p.peer,
            role=role,
            encryption=e.encryption,
            hash=e.hash,
            group=e.group,
            natt=e.natt and (e.nat_local or e.nat_peer),  # NAT-T in use: a NAT was detected
        )

    def _install(self, src: str, dst: str, params: SAParams, reqid: int = 0) -> tuple[int, int, Any]:
        st = ManualState(_ip(src), _ip(dst), params, reqid, negotiated=True)
        self.sadb.add_state(st, self.clock())
        return st.key()

    def _qm_up(self, p: _Peer, e: v1.ChildSaEstablished) -> None:
        m = e.method
        child = ChildInfo(
            str(e.local_ts),
            str(e.remote_ts),
            e.local_ts.protocol,
            e.local_ts.port,
            e.remote_ts.port,
            m.esp_enc.name if m.esp_enc is not None else None,
            m.esp_auth.name if m.esp_auth is not None else None,
            m.ah.name if m.ah is not None else None,
            e.life_seconds,
            e.life_kilobytes,
            e.pfs_group,
            next(iter(p.mm_ids.values()), None),
            str(e.local_ts.first),
            str(e.remote_ts.first),
        )
        ah = (e.ah_inbound, e.ah_outbound) if e.ah_inbound and e.ah_outbound else None
        if not self.install_child(p.children, p.local, p.peer, p.pick, e.inbound, e.outbound, child, ah):
            return
        p.negotiating.clear()
        if e.rekey_of is not None:
            self.monitor.count_qm("rekeys")
            self._qm_down(p, e.rekey_of, ev.EndReason.REKEYED)

    def install_child(
        self,
        children: dict[int, _Child],
        local: str,
        peer: str,
        pick: RulePick,
        inbound: SAParams,
        outbound: SAParams,
        info: ChildInfo,
        ah: tuple[SAParams, SAParams] | None = None,
    ) -> bool:
        """Both directions into the SA database, the monitor record, the event and log lines, and
        the acquire's queued packets out. False (and nothing installed) when the data path refuses.
        ``ah``: the (inbound, outbound) AH half of an AH+ESP bundle; all four states share a reqid,
        which ties the outbound ESP SA to its AH SA (``Sadb.outbound_chain_for_flow``)."""
        now = self.clock()
        keys: list[tuple[int, int, Any]] = []
        reqid = 0
        if ah is not None:
            self._reqid = self._reqid % 0x3FFFFFFF + 1
            reqid = BUNDLE_REQID_BASE + self._reqid
        try:
            keys.append(self._install(peer, local, inbound, reqid))
            keys.append(self._install(local, peer, outbound, reqid))
            if ah is not None:
                keys.append(self._install(peer, local, ah[0], reqid))
                keys.append(self._install(local, peer, ah[1], reqid))
        except (SadbError, ValueError, RuntimeError) as exc:
            for k in keys:
                with contextlib.suppress(SadbError):
                    self.sadb.del_state(*k)
            self.monitor.count_mm("key_addition_failures")
            self.log(f"IKE: cannot install the SA with {peer}: {exc}")
            return False
        qm_id = self._id()
        rule = rule_for(
            self.compiled,
            info.local_addr or local,
            info.remote_addr or peer,
            info.protocol,
            info.sport,
            info.dport,
        ) or RuleRef(pick.policy, pick.rule, pick.filteraction)
        label = rule.label
        children[inbound.spi] = _Child(qm_id, keys, inbound.spi, outbound.spi, label, rule=rule)
        tunnel = inbound.mode == Mode.TUNNEL
        mode = "tunnel" if tunnel else "transport"
        self.monitor.add_qm_sa(
            QuickModeSA(
                id=qm_id,
                mmsa_id=info.mm_id,
                local=_ip(local),
                peer=_ip(peer),
                src=info.local_ts,
                dst=info.remote_ts,
                protocol=info.protocol,
                srcport=info.sport,
                dstport=info.dport,
                mode=mode,
                inbound_spi=inbound.spi,
                outbound_spi=outbound.spi,
                esp_encryption=info.esp_enc,
                esp_integrity=info.esp_integ,
                ah_integrity=info.ah,
                lifetime_seconds=info.life_s,
                lifetime_kilobytes=info.life_kb,
                expires_at=now + info.life_s,
                pfs_group=info.pfs_group,
                udp_encap=inbound.encap is not None,
                filter=label,
                filteraction=rule.filteraction,
            )
        )
        self.monitor.count_qm("key_additions", len(keys))
        self.monitor.count_mm("oakley_quick_mode")
        self._emit(
            ev.QuickModeSAEstablished(
                _ip(local),
                _ip(peer),
                label,
                "esp" if info.esp_enc is not None else "ah",
                mode,
                inbound.spi,
                outbound.spi,
                inbound.enc_alg.name,
                inbound.integ_alg.name,
                info.life_s,
                info.life_kb,
                info.pfs_group,
            )
        )
        self._oakley(
            "Quick Mode SA established",
            peer=peer,
            local_ts=info.local_ts,
            remote_ts=info.remote_ts,
            inbound_spi=f"0x{inbound.spi:08x}",
            outbound_spi=f"0x{outbound.spi:08x}",
            mode=mode,
            encap=inbound.encap is not None,
            **(
                {"ah_inbound_spi": f"0x{ah[0].spi:08x}", "ah_outbound_spi": f"0x{ah[1].spi:08x}"}
                if ah
                else {}
            ),
        )
        self._flush()  # queued packets of the acquire leave now
        return True

    def _qm_down(self, p: _Peer, inbound_spi: int, reason: ev.EndReason) -> None:
        self.remove_child(p.children, p.local, p.peer, inbound_spi, reason)

    def remove_child(
        self, children: dict[int, _Child], local: str, peer: str, inbound_spi: int, reason: ev.EndReason
    ) -> None:
        c = children.pop(inbound_spi, None)
        if c is None:
            return
        for k in c.states:
            with contextlib.suppress(SadbError):
                self.sadb.del_state(*k)
        self.monitor.remove_qm_sa(c.qm_id)
        self.monitor.count_qm("key_deletions", len(c.states))
        self._emit(
            ev.QuickModeSAEnded(_ip(local), _ip(peer), c.filter, c.inbound_spi, c.outbound_spi, reason)
        )
        self._oakley(
            "Quick Mode SA deleted", peer=peer, inbound_spi=f"0x{inbound_spi:08x}", reason=reason.value
        )

    # --- logs ----------------------------------------------------------------------------------

    def _emit(self, event: ev.Event) -> None:
        if self.eventlog is not None:
            self.eventlog.emit(event, _now_wall())

    def _oakley(self, message: str, **fields: object) -> None:
        if self.oakley is not None:
            try:
                self.oakley.log(_now_wall(), message, neg=None, **fields)
            except OSError as exc:  # logging never stops IKE
                self._oakley_error(exc)

    def _oakley_failure(
        self, mode: ev.NegotiationMode, label: str, point: ev.FailurePoint, reason: str
    ) -> None:
        if self.oakley is not None:
            try:
                self.oakley.failure(_now_wall(), mode, filter=label, point=point, reason=reason)
            except OSError as exc:
                self._oakley_error(exc)

    def _oakley_error(self, exc: OSError) -> None:
        self.oakley_errors += 1
        if self.oakley_errors == 1:
            self.log(f"IKE: cannot write the Oakley log: {exc.strerror or exc}")

    def _fail(self, peer: str, label: str, reason: str, local: str | None) -> None:
        self.monitor.count_mm("negotiation_failures")
        self._emit(
            ev.NegotiationFailed(
                ev.NegotiationMode.MAIN_MODE,
                label,
                ev.FailurePoint.ME,
                reason,
                _ip(peer),
                _ip(local) if local else None,
            )
        )
        self._oakley("negotiation not started", peer=peer, filter=label, reason=reason)
        self.log(f"IKE: {label}: {reason}")

    def status(self) -> dict[str, Any]:
        return {
            "peers": {
                ip: {
                    "local": p.local,
                    "rule": p.pick.label,
                    "ike_sas": len(p.session.ike_sas),
                    "children": len(p.children),
                    "counters": p.session.counters.as_dict(),
                }
                for ip, p in self.peers.items()
            },
            "dropped": self.dropped,
        }


def _local_identity(p: _Peer) -> str:
    cert = p.session.cfg.cert
    return p.local if cert is None else cert.certificate.subject.rfc4514_string()


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)
