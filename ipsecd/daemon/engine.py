"""The daemon's asyncio engine: store -> classifier -> kernel plumbing -> packet loops -> control.

Start: load the store (a bad store is an error before anything on the host changes), compile the
assigned policy with ``SystemHost``, open (or reattach to) the persistent TUN device, install the
policy-routing table and rules (``ipsecd.io.capture``) and the nftables table
(``ipsecd.io.nft``), open the sockets (raw ESP/AH, UDP 4500 shared with IKE, a raw IP sender),
all marked with the bypass mark so the daemon's own packets are never captured, then serve the
control socket and tell systemd it is ready.

Packets: every socket is a reader on the loop; each callback drains a batch (up to ``BATCH``) and
hands it to ``ipsecd.daemon.router.Router`` in one call (never one packet per callback).

Stop (SIGTERM/SIGINT): sockets and the control socket close; the capture (TUN device, rules, nft
table) stays in place so nothing the policy protects leaves in clear while the daemon is away
(fail closed), unless ``flush_on_exit``. SIGHUP: reload the store, applied whole or not at all;
the same path polls the store every ``pollinginterval`` (``--poll-interval``; ipsecd.policy.poll).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime
import ipaddress
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from ipsecd import __version__
from ipsecd.daemon import notify
from ipsecd.daemon import signals as daemon_signals
from ipsecd.daemon.control import ControlServer
from ipsecd.daemon.engine_config import (
    EngineConfig,
    EngineError,
    Loaded,
    _soft_actions,
    auto_tun_mtu,
    compile_loaded,
    flush_all,
    load_config,
    nft_config,
    to_networks,
)
from ipsecd.daemon.fastpath_glue import FastPathGlue
from ipsecd.daemon.ike import IkeManager
from ipsecd.daemon.monitor import MonitorState
from ipsecd.daemon.router import EventChannel, Outgoing, Router, SoftAssociation
from ipsecd.daemon.seqstore import SeqStore
from ipsecd.daemon.storepoll import StorePoller, read_store_contents
from ipsecd.daemon.watchdog import ServicePinger
from ipsecd.daemon.xfrm import XfrmHandler
from ipsecd.datapath.counters import Counters
from ipsecd.datapath.sa import Direction as SaDirection
from ipsecd.datapath.sa import EventKind, Protocol
from ipsecd.datapath.sadb import (
    InstalledSA,
    ManualState,
    SADatabase,
    SadbError,
    SecurityPolicy,
)
from ipsecd.io import capture, nft
from ipsecd.io.hostinfo import SystemHost
from ipsecd.io.netlink import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, ChangeMonitor
from ipsecd.io.raw import RawIpSocket
from ipsecd.io.tun import TunDevice
from ipsecd.io.udp import UdpSocket
from ipsecd.log.events import DaemonStarted, DaemonStopped, Event
from ipsecd.log.oakley import DEFAULT_OAKLEY_PATH, OakleyLog
from ipsecd.log.sinks import EventLog, JsonLinesSink
from ipsecd.policy.issues import StoreError
from ipsecd.policy.model import Store
from ipsecd.policy.poll import applied_event

BATCH = 256
TICK = 0.25
IPPROTO_RAW = 255
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>: as root, past net.core.rmem_max
SO_SNDBUFFORCE = 32
SOCKET_BUFFER = 4 << 20


class Engine:
    _log_files: tuple[OakleyLog | EventLog, ...] = ()  # reopened on SIGUSR1 (logrotate)

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.log = cfg.log
        self.host = SystemHost()
        self.events = EventChannel()
        # pyroute2's synchronous API refuses to run inside a running asyncio loop: every netlink
        # call goes through one worker thread (control-plane work only, never per packet).
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self.seqs = SeqStore(cfg.state_dir / "sequence.json")
        self.sadb = SADatabase(
            lambda: self.sync(self.host.my_addresses), backend=cfg.backend, initial_seq=self.seqs.initial_seq
        )
        self.loaded: Loaded | None = None
        self.router: Router | None = None
        self.tun: TunDevice | None = None
        self.sockets: dict[str, Any] = {}
        self.control: ControlServer | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._config_states: list[ManualState] = []
        self._config_policies: list[SecurityPolicy] = []
        self.tun_write_dropped = 0
        # Reader callbacks per source: packets / callbacks is the mean batch size.
        self.callbacks: collections.Counter[str] = collections.Counter()
        self.xfrm = XfrmHandler(self)
        self.monitor = MonitorState(time.monotonic, time.time)
        self.monitor.store_source = str(cfg.store)
        self._last_counters: dict[int, Counters] = {}
        self._monitor: ChangeMonitor | None = None
        self._recompile: asyncio.TimerHandle | None = None
        self.ike: IkeManager | None = None
        self.fast: FastPathGlue | None = None
        self._fast_sync_due = False
        self.eventlog: EventLog | None = None  # --event-log: IKE and policy events
        self.poller = StorePoller(
            cfg.store,
            cfg.poll_interval,
            compile=self._compile,
            apply=self._apply,
            filters=lambda loaded: len(loaded.compiled.filters),
            emit=self._emit,
            log=self.log,
        )

    # --- setup ---------------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a netlink-using call on the worker thread and wait for it."""
        return self._worker.submit(fn, *args).result(timeout=60)

    def apply_kernel(self, loaded: Loaded) -> None:
        """nft table (one transaction) and the to-NET rules for tunnel destinations."""
        loaded = self._with_runtime_policies(loaded)  # ipsecctl xfrm policies: nft and to-NET rules
        nft.apply(nft.build_ruleset(nft_config(self.cfg.tun, loaded)))
        if self.router is not None:  # the table was re-made: its soft-association sets too
            for assoc in self.router.soft.values():
                nft.add_soft_peer(assoc.peer)
        self.sync(capture.setup, self.cfg.tun, to_networks(loaded))
        if self.fast is not None:  # the SA database changed: the fast path's tables follow
            self.fast.sync()

    def _with_runtime_policies(self, loaded: Loaded) -> Loaded:
        """The loaded configuration with the policies installed at run time (ipsecctl xfrm)."""
        return Loaded(loaded.store, loaded.compiled, loaded.states, list(self.sadb.policies))

    def refresh_kernel(self) -> None:
        if self.loaded is not None:
            self.apply_kernel(self.loaded)

    def _install_manual(self, states: Sequence[ManualState], policies: Sequence[SecurityPolicy]) -> None:
        now = self.now()
        for st in states:
            self.sadb.add_state(st, now)
        for p in policies:
            self.sadb.add_policy(p)

    def _remove_manual(self, states: Sequence[ManualState], policies: Sequence[SecurityPolicy]) -> None:
        for st in states:
            with contextlib.suppress(SadbError):
                self.sadb.del_state(int(st.params.protocol), st.params.spi, st.dst)
        for p in policies:
            with contextlib.suppress(SadbError):
                self.sadb.del_policy(p.selector, p.direction)

    def _make_router(self, loaded: Loaded) -> Router:
        router = Router(
            loaded.compiled.classifier, self.sadb, self.events, soft_timeout=self.cfg.soft_timeout
        )
        router.soft_actions = {name: fa.soft for name, fa in loaded.store.filteractions.items()}
        return router

    def _open_sockets(self) -> None:
        mark = nft.BYPASS_MARK
        s = self.sockets
        s["esp4"] = RawIpSocket.open(int(Protocol.ESP), 4, mark=mark)
        s["ah4"] = RawIpSocket.open(int(Protocol.AH), 4, mark=mark)
        s["udp4"] = UdpSocket.open("0.0.0.0", 4500, mark=mark, gso=True, gro=True)
        sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_RAW)
        sender.setsockopt(socket.SOL_SOCKET, 36, mark)  # SO_MARK
        s["send4"] = RawIpSocket(sender, IPPROTO_RAW)
        try:
            s["esp6"] = RawIpSocket.open(int(Protocol.ESP), 6, mark=mark)
            s["ah6"] = RawIpSocket.open(int(Protocol.AH), 6, mark=mark)
            s["udp6"] = UdpSocket.open("::", 4500, mark=mark, gso=True, gro=True)
            sender6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_RAW)
            sender6.setsockopt(socket.SOL_SOCKET, 36, mark)
            s["send6"] = RawIpSocket(sender6, IPPROTO_RAW)
        except OSError as exc:  # no IPv6 on this host
            self.log(f"IPv6 sockets unavailable: {exc}")
        for sock in s.values():  # bursts of a fast sender must not overflow the default buffers
            for opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
                with contextlib.suppress(OSError):
                    sock.sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)

    def _close_sockets(self) -> None:
        for sock in self.sockets.values():
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets.clear()

    # --- packet loops --------------------------------------------------------------------------

    def _on_tun(self) -> None:
        assert self.tun is not None and self.router is not None
        pkts = self.tun.read_batch(BATCH)
        self.callbacks["tun"] += 1
        if pkts:
            self._send(self.router.outbound(pkts, self.now()))

    def _on_fast(self) -> None:
        assert self.fast is not None and self.router is not None
        self.callbacks["fastpath"] += 1
        router = self.router
        self.fast.on_event(lambda pkts: self._send(router.outbound(pkts, self.now())), self._udp_in)

    def _fast_changed(self) -> None:
        """The SA database changed: the fast path's tables follow within this event-loop turn."""
        loop = self._loop
        if self.fast is not None and loop is not None and not loop.is_closed() and not self._fast_sync_due:
            self._fast_sync_due = True
            loop.call_soon(self._fast_sync)

    def _fast_sync(self) -> None:
        self._fast_sync_due = False
        if self.fast is not None:
            self.fast.sync()

    def _on_raw4(self, name: str) -> None:
        assert self.router is not None
        got = self.sockets[name].recv_batch(BATCH)
        self.callbacks[name] += 1
        if got:
            self._deliver(self.router.inbound([p.data for p in got], self.now()))

    def _on_raw6(self, name: str) -> None:
        from ipsecd.datapath.ipheader import outer_ipv6

        assert self.router is not None
        sock: RawIpSocket = self.sockets[name]
        got = sock.recv_batch(BATCH)
        pkts = []
        for p in got:
            if p.local is None:
                continue
            src, dst = ipaddress.IPv6Address(p.peer.split("%")[0]), ipaddress.IPv6Address(p.local)
            pkts.append(outer_ipv6(src.packed, dst.packed, 0, sock.protocol, len(p.data)) + p.data)
        if pkts:
            self._deliver(self.router.inbound(pkts, self.now()))

    def _on_udp(self, name: str) -> None:
        assert self.router is not None
        got = self.sockets[name].recv_batch(BATCH)
        self.callbacks[name] += 1
        if got:
            self._udp_in([(d.data, d.peer, d.local) for d in got])

    def _udp_in(self, datagrams: list[tuple[bytes, tuple[str, int], str | None]]) -> None:
        """Port-4500 datagrams: ESP in UDP to the router, IKE (non-ESP marker) to the IKE side."""
        assert self.router is not None
        pkts = self.router.udp_to_packets(datagrams)
        if pkts:
            self._deliver(self.router.inbound(pkts, self.now()))
        inbox = self.router.ike_inbox
        if inbox and self.ike is not None:
            self.ike.receive(list(inbox), 4500)  # RFC 3948 non-ESP marker: IKE on 4500
        inbox.clear()

    def _deliver(self, pkts: list[bytes]) -> None:
        if pkts and self.tun is not None:
            done = self.tun.write_batch(pkts)
            self.tun_write_dropped += len(pkts) - done

    def _send(self, out: Outgoing) -> None:
        s = self.sockets
        if out.fast and self.fast is not None:  # protected with a fast-path SA: it sends them
            for handle, pkts in out.fast:
                self.fast.fp.inject(pkts, sa=handle)
        if out.raw4:
            s["send4"].send_batch(out.raw4)
        if out.udp4:
            s["udp4"].send_batch(out.udp4)
        if out.raw6:
            for payload, dst, src, proto in out.raw6:
                sock = s.get("esp6" if proto == int(Protocol.ESP) else "ah6")
                if sock is not None:
                    sock.send(payload, dst, src)
        if out.udp6 and "udp6" in s:
            s["udp6"].send_batch(out.udp6)
        if out.clear6 and "send6" in s:
            s["send6"].send_batch(out.clear6)

    def _tick(self) -> None:
        if self._loop is None or self.router is None:
            return
        now = self.now()
        try:
            if self.fast is not None:
                self.fast.tick()
                self.fast.sync()
            self._send(self.router.tick(now))
            outbound = []
            soft_spis: list[int] = []
            seen: dict[int, Counters] = {}
            for sa in self.sadb.states.values():
                sa.transform.tick(now)
                for sa_event in sa.transform.drain_events():
                    if self.ike is not None and sa_event.kind is EventKind.SOFT_EXPIRED:
                        soft_spis.append(sa_event.spi)
                if sa.direction == SaDirection.OUTBOUND:
                    outbound.append(self.fast.seq_view(sa) if self.fast and self.fast.owns(sa) else sa)
                # Quick mode statistics of `ipsecctl dynamic show stats`: counter deltas.
                counters = self.fast.counters(sa) if self.fast is not None else sa.transform.counters()
                seen[id(sa)] = counters
                before = self._last_counters.get(id(sa))
                if before is not None and counters != before:
                    self.monitor.add_datapath_counters(
                        Counters(**{k: v - getattr(before, k) for k, v in counters.__dict__.items()})
                    )
                elif before is None:
                    self.monitor.add_datapath_counters(counters)
            self._last_counters = seen
            for spi in soft_spis:  # SA soft expiry from the data path: rekey (after the loop)
                assert self.ike is not None
                self.ike.soft_expired(spi)
            if self.ike is not None:
                self.ike.tick()
            self.seqs.update(outbound)
            self.monitor.set_mm_gauge("active_acquire", len(self.router.pending))
        finally:
            self._loop.call_later(TICK, self._tick)

    def _on_event(self, event: object) -> None:
        if isinstance(event, SoftAssociation):
            try:
                nft.add_soft_peer(event.peer)
            except nft.NftError as exc:
                self.log(f"soft association {event.peer}: {exc}")
            self.log(f"soft association: {event.local} -> {event.peer} in clear (rule {event.rule})")

    # --- control -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        r = self.router
        return {
            "policy": self.loaded.compiled.policy if self.loaded else None,
            "filters": len(self.loaded.compiled.filters) if self.loaded else 0,
            "tun": {"name": self.cfg.tun, **(self.tun.stats.__dict__ if self.tun else {})},
            "tun_write_dropped": self.tun_write_dropped,
            "callbacks": dict(self.callbacks),
            "router": dict(r.stats.__dict__) if r else {},
            "totals": self._totals(),
            "states": [self._summary(sa) for sa in self.sadb.states.values()],
            "policies": len(self.sadb.policies),
            "acquires": [
                {"src": str(e.src), "dst": str(e.dst), "protocol": e.protocol, "soft": e.soft}
                for e in self.events.pending()
                if not isinstance(e, SoftAssociation)
            ],
            "soft_associations": [
                {"local": str(a.local), "peer": str(a.peer), "rule": a.rule}
                for a in (r.soft.values() if r else [])
            ],
            "sockets": {k: v.stats.__dict__ for k, v in self.sockets.items()},
            "ike": self.ike.status() if self.ike is not None else None,
            "ikev2": self._ikev2_status(),
            "fastpath": self.fast.status() if self.fast is not None else None,
        }

    def _summary(self, sa: InstalledSA) -> dict[str, Any]:
        out = sa.summary()
        if self.fast is not None and self.fast.owns(sa):
            out["counters"] = dict(self.fast.counters(sa).__dict__)
            out["fastpath"] = True
        return out

    def _totals(self) -> dict[str, int]:
        """Packets protected, delivered and blocked by the router and the fast path together."""
        stats = self.router.stats if self.router is not None else None
        totals = {
            "protected": stats.protected if stats else 0,
            "delivered": stats.delivered if stats else 0,
            "blocked": stats.blocked if stats else 0,
        }
        if self.fast is not None:
            fast = self.fast.fp.stats()
            totals["delivered"] += fast["tun_tx_packets"]
            totals["blocked"] += fast["rule_drops"]
            for handle in self.fast.handles.values():
                counters = self.fast.fp.sa_counters(handle)
                totals["protected"] += counters.packets_sent if counters else 0
        return totals

    def _service_status(self) -> str:
        """systemctl status's line: the policy, and the SAs in the data path and in IKE."""
        ike = self.ike.status()["peers"].values() if self.ike is not None else []
        mm = sum(p["ike_sas"] for p in ike) + (len(self.ike.v2.sas) if self.ike is not None else 0)
        policy = self.loaded.compiled.policy if self.loaded else None
        return f"policy {policy!r}: {len(self.sadb.states)} SAs, {mm} IKE SAs"

    def _ikev2_status(self) -> dict[str, Any] | None:
        """The IKEv2 dispatcher: sessions, half-open ones, and its counters (COOKIEs sent, ...)."""
        if self.ike is None:
            return None
        d = self.ike.v2.dispatcher
        return {
            "sessions": len(d.sessions),
            "half_open": d.half_open,
            "cookie_threshold": d.guard.threshold,
            "cookies_rejected": d.guard.cookies_rejected,
            **d.counters.__dict__,
        }

    def reload(self, source: str = "reload") -> bool:
        """SIGHUP: re-read everything and apply it whole, or keep the running configuration."""
        notify.reloading("reloading the store")
        self.host.refresh()
        ok = self.refresh_store(force=True, source=source)
        notify.ready("running" if ok else "running (reload failed)")
        return ok

    def refresh_store(self, *, force: bool, source: str) -> bool:
        return self.poller.refresh(self.now(), force=force, source=source)

    def _poll_tick(self) -> None:
        """The polling timer: apply the store if it changed (ipsecd.daemon.storepoll)."""
        try:
            self.refresh_store(force=False, source="poll")
        except Exception as exc:  # never a busy loop, never a dead timer
            self.log(f"store poll failed: {type(exc).__name__}: {exc}")
            self.poller.postpone(self.now())
        finally:
            self._schedule_poll()

    def _schedule_poll(self) -> None:
        if self._loop is not None and self._stop is not None and not self._stop.is_set():
            self.poller.schedule(self._loop, self.now(), self._poll_tick)

    def _compile(self, store: Store) -> Loaded:
        loaded: Loaded = self.sync(compile_loaded, store, self.host)
        return loaded

    def _emit(self, event: Event) -> None:
        if self.eventlog is not None:
            self.eventlog.emit(event, datetime.datetime.now(datetime.UTC))

    def _apply(self, loaded: Loaded) -> str | None:
        """Install a compiled store; None, or why the kernel refused it (the old one stays)."""
        # Keep what did not change (an SA re-created would restart its sequence numbers). What
        # ipsecctl installed at run time and the store now holds too (xfrm --persist) counts as
        # the configuration's own: kept or replaced, never added twice.
        old_states, old_policies = list(self._config_states), list(self._config_policies)
        known = {st.key() for st in old_states}
        old_states += [
            self.sadb.states[st.key()].state
            for st in loaded.states
            if st.key() not in known and st.key() in self.sadb.states
        ]
        wanted, known_p = {p.key() for p in loaded.policies}, {p.key() for p in old_policies}
        old_policies += [p for p in self.sadb.policies if p.key() in wanted and p.key() not in known_p]
        same_states = {st.key() for st in old_states} & {st.key() for st in loaded.states}
        same_states = {
            k
            for k in same_states
            if next(o.source for o in old_states if o.key() == k)
            == next(n.source for n in loaded.states if n.key() == k)
        }
        gone = [st for st in old_states if st.key() not in same_states]
        new = [st for st in loaded.states if st.key() not in same_states]
        self._remove_manual(gone, old_policies)
        try:
            self._install_manual(new, loaded.policies)
            self.apply_kernel(loaded)
        except (SadbError, nft.NftError, OSError) as exc:
            self._remove_manual(new, loaded.policies)
            self._install_manual(gone, old_policies)
            if self.loaded is not None:
                self.apply_kernel(self.loaded)
            return str(exc)
        kept = {st.key(): st for st in old_states if st.key() in same_states}
        loaded.states = [kept.get(st.key(), st) for st in loaded.states]
        self.loaded = loaded
        self._config_states, self._config_policies = loaded.states, loaded.policies
        self.monitor.set_policy(loaded.store, loaded.compiled)
        if self.ike is not None:
            self.ike.set_policy(loaded.store, loaded.compiled)
        if self.router is None:
            self.router = self._make_router(loaded)
        else:  # keep queues, pending acquires, soft associations and counters
            self.router.set_policy(loaded.compiled.classifier, _soft_actions(loaded.store))
        if self.fast is not None:
            self.fast.set_classifier(loaded.compiled.classifier)
        self.log(f"reloaded: policy {loaded.compiled.policy!r}, {len(loaded.compiled.filters)} filters")
        return None

    # --- life cycle ----------------------------------------------------------------------------

    async def run(self) -> int:
        cfg = self.cfg
        try:
            files = read_store_contents(cfg.store)
        except StoreError as exc:
            raise EngineError(f"cannot load the store {cfg.store}:\n{exc}") from None
        loaded = self.sync(load_config, cfg, self.host, files)  # EngineError before anything changes
        self.poller.start(files, loaded.store, self.now())
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        try:
            self._install_manual(loaded.states, loaded.policies)
        except SadbError as exc:
            raise EngineError(f"bad manual keying: {exc}") from None
        self._config_states, self._config_policies = loaded.states, loaded.policies
        self.loaded = loaded
        try:
            mtu = cfg.tun_mtu if cfg.tun_mtu is not None else self.sync(auto_tun_mtu, cfg.tun)
            # --fastpath: IFF_VNET_HDR + TSO/USO (TunDevice adds the header to our writes); refused
            # by the kernel: plain, and the "fast path: vnet_hdr off (fallback), ..." line says so.
            self.tun = capture.open_tun(cfg.tun, mtu, vnet_hdr=cfg.fastpath)
            self.apply_kernel(loaded)
            self._open_sockets()
            self.control = ControlServer(cfg.control, group=cfg.control_group, on_error=self._control_error)
            if cfg.fastpath:  # fail closed: no fast path, no daemon (the capture stays in place)
                tun, udp = self.tun, self.sockets["udp4"]
                self.fast = FastPathGlue(
                    self.sadb, tun.fileno(), udp.fileno(), vnet_hdr=tun.vnet_hdr, offload=tun.offload
                )
                self.fast.set_classifier(loaded.compiled.classifier)
                self.log(f"fast path: {self.fast.start()}")
                self.sadb.on_change = self._fast_changed
        except (OSError, nft.NftError, ValueError, RuntimeError) as exc:
            # Whatever was installed stays (fail closed); the sockets and the device fd close.
            if self.fast is not None:
                self.fast.close()
            self._close_sockets()
            if self.tun is not None:
                self.tun.close()
            raise EngineError(f"cannot set up the data path: {exc}") from None
        self.router = self._make_router(loaded)
        if self.fast is not None:
            self.router.offload = self.fast.offload
        self.events.subscribers.append(self._on_event)
        self.control.register("datapath", lambda req: self.status())
        self.control.register("xfrm", self.xfrm.handle)
        self.monitor.set_policy(loaded.store, loaded.compiled)
        self.monitor.register(self.control)
        try:
            await self.control.start()
        except (OSError, RuntimeError) as exc:
            self._close_sockets()
            if self.tun is not None:
                self.tun.close()
            raise EngineError(f"cannot serve the control socket: {exc}") from None
        if self.fast is None:
            loop.add_reader(self.tun.fileno(), self._on_tun)
        else:  # the fast path's threads read the TUN and UDP 4500 (IPv4); slow packets come back here
            loop.add_reader(self.fast.fp.event_fd(), self._on_fast)
        for name in self.sockets:
            if name == "udp4" and self.fast is not None:
                continue
            if name.startswith(("esp", "ah")):
                cb = self._on_raw4 if name.endswith("4") else self._on_raw6
                loop.add_reader(self.sockets[name].fileno(), cb, name)
            elif name.startswith("udp"):
                loop.add_reader(self.sockets[name].fileno(), self._on_udp, name)
        self._start_ike(loop, loaded)
        loop.call_later(TICK, self._tick)
        self._monitor = ChangeMonitor(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        loop.add_reader(self._monitor.fileno(), self._on_netlink)
        stop_signal: list[signal.Signals] = []

        def stop(sig: signal.Signals) -> None:
            stop_signal.append(sig)
            assert self._stop is not None
            self._stop.set()

        uninstall = daemon_signals.install(
            loop, reload=self._reload_signal, reopen=self._reopen_logs, stop=stop
        )
        self.log(
            f"ready: policy {loaded.compiled.policy!r}, {len(loaded.compiled.filters)} filters, "
            f"{len(self.sadb.states)} SAs, {len(self.sadb.policies)} manual policies, tun {self.tun.name}, "
            f"backend {self._backend_name()}, pid {os.getpid()}"
        )
        notify.ready("running")
        self._emit(DaemonStarted(version=__version__, config=str(cfg.store), policy=loaded.compiled.policy))
        self._emit(applied_event(loaded.store, len(loaded.compiled.filters)))
        pinger = ServicePinger(loop, self._service_status, log=self.log)  # WATCHDOG=1, STATUS=
        pinger.start()
        self._schedule_poll()
        try:
            await self._stop.wait()
        finally:
            pinger.cancel()
            notify.stopping()
            uninstall()
            self._emit(DaemonStopped(reason=f"signal {stop_signal[0].name}" if stop_signal else "request"))
            await self.shutdown()
        self.log(f"stopped by {stop_signal[0].name if stop_signal else 'request'}")
        return 0

    def _reopen_logs(self) -> None:
        """SIGUSR1, logrotate's postrotate: new files at the log paths (the old ones were renamed)."""
        for f in self._log_files:
            f.reopen()
        self.log("log files reopened")

    def _flush_ike(self) -> None:
        """IKE installed SAs: the fast path takes them now, then the queued packets go out."""
        if self.fast is not None:
            self.fast.sync()
        if self.router is not None:
            self._send(self.router.tick(self.now()))

    def _start_ike(self, loop: asyncio.AbstractEventLoop, loaded: Loaded) -> None:
        """The IKE side (``ipsecd.daemon.ike``): UDP 500, and IKE from the 4500 socket."""
        assert self.router is not None
        oakley = OakleyLog(self.cfg.oakley_log or DEFAULT_OAKLEY_PATH)
        events = EventLog([JsonLinesSink(self.cfg.event_log)]) if self.cfg.event_log else None
        self.eventlog = events
        self._log_files = (oakley, events) if events else (oakley,)
        self.ike = IkeManager(
            self.sadb,
            self.router,
            self.monitor,
            clock=self.now,
            send_natt=self._send_natt,
            flush=self._flush_ike,
            log=self.log,
            oakley=oakley,
            events=events,
            mark=nft.BYPASS_MARK,
            dpd_interval=self.cfg.dpd_interval,
            dpd_retries=self.cfg.dpd_retries,
        )
        # RFC 7296 section 2.6: above this many half-open IKE SAs, answer with a COOKIE and keep nothing.
        self.ike.v2.dispatcher.guard.threshold = self.cfg.ike_cookie_threshold
        self.ike.set_policy(loaded.store, loaded.compiled)
        self.monitor.on_delete = self.ike.delete
        if self.fast is not None:  # traffic and byte lifetimes of fast-path SAs are counted there
            self.ike.counters_of = self.fast.counters
            ike = self.ike
            self.fast.on_expiry = lambda spi, hard: ike.soft_expired(spi)
        try:
            self.ike.start(loop)
        except OSError as exc:
            raise EngineError(f"cannot open the IKE socket (UDP 500): {exc}") from None

    def _send_natt(self, data: bytes, addr: tuple[str, int], source: str | None) -> None:
        sock = self.sockets.get("udp6" if ":" in addr[0] else "udp4")
        if sock is not None:
            sock.send(data, addr, source)

    def _on_netlink(self) -> None:
        """Addresses changed: "me" means something else now; recompile (debounced)."""
        assert self._monitor is not None and self._loop is not None
        if self._monitor.drain() & {"newaddr", "deladdr", "overflow"} and self._recompile is None:
            self._recompile = self._loop.call_later(0.5, self._address_change)

    def _address_change(self) -> None:
        self._recompile = None
        before = set(self.sync(self.host.my_addresses))
        self.host.refresh()
        if set(self.sync(self.host.my_addresses)) == before:
            return  # e.g. an IPv6 address finished duplicate address detection: same "me"
        self.log("addresses changed: recompiling the policy")
        self.reload(source="addresses")

    def _reload_signal(self) -> None:
        self.reload()

    def _backend_name(self) -> str:
        from ipsecd.datapath.factory import native_available

        if self.cfg.backend == "python" or os.environ.get("IPSECD_NATIVE") == "0":
            return "python"
        return "native" if native_available() else "python"

    def _control_error(self, command: str, exc: BaseException) -> None:
        self.log(f"control command {command!r} failed: {type(exc).__name__}")

    async def shutdown(self) -> None:
        loop = self._loop
        if loop is not None and self.tun is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.tun.fileno())
            for sock in self.sockets.values():
                with contextlib.suppress(Exception):
                    loop.remove_reader(sock.fileno())
            if self._monitor is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self._monitor.fileno())
                self._monitor.close()
            if self._recompile is not None:
                self._recompile.cancel()
        self.poller.cancel()
        if self.ike is not None:
            with contextlib.suppress(Exception):
                self.ike.close()
        if self.control is not None:
            await self.control.close()
        self.sadb.on_change = None
        if self.fast is not None:
            self.fast.close(loop)
            self.fast = None
            if self.router is not None:
                self.router.offload = None
        self._close_sockets()
        if self.tun is not None:
            self.tun.close()
        if self.cfg.flush_on_exit:
            self.sync(flush_all, self.cfg.tun)
        self._worker.shutdown(wait=False)
