"""``ipsecd --fastpath``: the daemon hands tunnel-mode ESP-in-UDP SAs to the native fast path.

The fast path (ipsecd.datapath.fastpath, docs/datapath.md "Fast path") gets a duplicate of the TUN
fd and of the IPv4 UDP 4500 socket's fd; from then on its C threads read both (the engine removes
its own readers for them). What it installs, re-computed whenever the SA database changes
(``SADatabase.generation``):

* every manual SA (store ``[xfrm]`` or ``ipsecctl xfrm``) in ESP tunnel mode with UDP
  encapsulation and an IPv4 outer header, both directions (outbound ones continue from the Python
  transform's next sequence number);
* every SA IKE negotiated in the same shape (IKEv1 or IKEv2 tunnel mode with NAT-T or the rule's
  ``forceencap``), except the ESP half of an AH+ESP bundle;
* the filter table of ipsecd/daemon/fastpath_filters.py: manual policies, exemptions and the
  assigned policy's outbound filters in the router's order, PROTECT only where the router would
  protect with a fast-path SA, SLOW elsewhere. Packets no filter matches -> SLOW.

SLOW packets come back through ``drain_slow()`` and go to the Python router exactly as if read
from the TUN; datagrams on port 4500 that are not for a fast-path SA (IKE behind the non-ESP
marker, ESP of the router's own SAs) go to the engine's UDP handling. When the router decides to
protect with a fast-path SA (packets it queued while IKE negotiated, or a filter the table only
covers with SLOW) it hands them over (``offload``): the fast path sends them through that SA, so
one SA never has two senders. A PROTECT filter whose SA is gone or expired holds its packets
(ACQUIRE): they are dropped and counted, never sent in clear nor through the Python copy of the
SA; within one event-loop turn the table names another usable SA or goes SLOW (``_usable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable
from typing import Any

from ipsecd.daemon import fastpath_filters
from ipsecd.datapath import fastpath as fpmod
from ipsecd.datapath.counters import Counters
from ipsecd.datapath.sa import Direction, ExpiryReason, Mode, Protocol, Transform
from ipsecd.datapath.sadb import InstalledSA, SADatabase
from ipsecd.policy.classifier import Classifier


class FastPathError(RuntimeError):
    """The fast path is not available or did not start (``--fastpath`` refuses to run without it)."""


def eligible(sa: InstalledSA) -> bool:
    p = sa.state.params
    return (
        p.protocol == Protocol.ESP
        and p.mode == Mode.TUNNEL
        and p.encap is not None
        and p.tunnel is not None
        and p.tunnel.dst.version == 4
    )


class FastPathGlue:
    """Owns the `FastPath`; `sync()` mirrors the SA database, `on_event()` serves the event fd."""

    def __init__(
        self, sadb: SADatabase, tun_fd: int, udp_fd: int, *, vnet_hdr: bool = False, offload: int = 0
    ) -> None:
        if not fpmod.AVAILABLE:
            raise FastPathError(
                f"--fastpath: {fpmod.UNAVAILABLE_REASON or 'the fast-path extension is not built'}"
            )
        self.sadb = sadb
        tun_dup, udp_dup = os.dup(tun_fd), os.dup(udp_fd)
        try:
            # vnet_hdr / offload: how the engine opened the TUN (capture.open_tun): with IFF_VNET_HDR
            # the threads read TSO/USO super-packets and write coalesced ones.
            self.fp = fpmod.FastPath(tun_dup, udp_dup, vnet_hdr=vnet_hdr, offload=offload)
        except Exception as exc:
            os.close(tun_dup)
            os.close(udp_dup)
            raise FastPathError(f"--fastpath: cannot create the fast path: {exc}") from None
        self.fp.configure(default_action=fpmod.Action.SLOW, slow_queue=1024)
        self.handles: dict[tuple[int, int, Any], int] = {}  # SA-database key -> fast-path handle
        self.filters: list[fpmod.FastFilter] = []
        self.generation = -1
        self.acquire_dropped = 0
        self.refused: set[tuple[int, int, Any]] = set()  # SAs add_sa refused: the router keeps them
        self.slow_packets = 0
        self._next_filter = 1
        self.classifier: Classifier | None = None  # the assigned policy's (set_classifier)
        self._classifier_seen: Classifier | None = None
        self.by_transform: dict[int, tuple[Transform, int]] = {}  # id(outbound transform) -> handle
        self.hard_expired: set[int] = set()  # handles the fast path expired (bytes, packets, sequence)
        self.on_expiry: Callable[[int, bool], None] | None = None  # (SPI, hard): the IKE manager's rekey
        self.fp.configure(unknown_spi=fpmod.Action.SLOW)  # the router's own SAs on 4500 (transport NAT-T)

    def start(self) -> str:
        self.sync()
        try:
            self.fp.start()
        except Exception as exc:
            raise FastPathError(f"--fastpath: cannot start the fast-path threads: {exc}") from None
        return self.fp.features().describe()

    def owns(self, sa: InstalledSA) -> bool:
        return sa.state.key() in self.handles

    def set_classifier(self, classifier: Classifier | None) -> None:
        """The assigned policy's classifier (at start and after each reload): its filters follow."""
        self.classifier = classifier
        self.sync()

    def offload(self, bundle: object) -> int:
        """The router's hook: the fast-path handle of an outbound SA's transform, 0 if not ours."""
        found = self.by_transform.get(id(bundle))
        return found[1] if found is not None and found[0] is bundle else 0

    def sync(self) -> None:
        """Mirror the SA database's eligible SAs and the filter table (cheap when unchanged)."""
        if self.generation == self.sadb.generation and self._classifier_seen is self.classifier:
            return
        states = self.sadb.states
        bundled = fastpath_filters.bundled(states.values())
        wanted = {
            k: sa
            for k, sa in states.items()
            if eligible(sa) and (sa.state.reqid == 0 or (sa.state.reqid, sa.state.dst) not in bundled)
        }
        for key in [k for k in self.handles if k not in wanted]:
            self.fp.remove_sa(self.handles.pop(key))
        for key, sa in wanted.items():
            if key not in self.handles and key not in self.refused:
                seq = sa.next_seq if sa.direction == Direction.OUTBOUND else 1
                try:
                    self.handles[key] = self.fp.add_sa(sa.state.params, sa.direction, initial_seq=seq)
                except (ValueError, RuntimeError, OSError):  # stays with the Python router
                    self.refused.add(key)
        self.refused &= set(wanted)
        self.hard_expired &= set(self.handles.values())
        self.by_transform = {
            id(sa.transform): (sa.transform, self.handles[key])
            for key, sa in states.items()
            if key in self.handles and sa.direction == Direction.OUTBOUND
        }
        self._sync_filters()
        self.generation = self.sadb.generation
        self._classifier_seen = self.classifier

    def tick(self) -> None:
        """The SAs' time limits are kept by their Python transforms: expire the fast copies too."""
        for key, handle in self.handles.items():
            sa = self.sadb.states.get(key)
            if sa is not None and sa.transform.expired and handle not in self.hard_expired:
                self.fp.expire_sa(handle, hard=True)
                self.hard_expired.add(handle)
                self.generation = -1  # its filters go

    def counters(self, sa: InstalledSA) -> Counters:
        """An SA's counters: what the Python transform did plus what the fast path did."""
        mine = sa.transform.counters()
        handle = self.handles.get(sa.state.key())
        fast = self.fp.sa_counters(handle) if handle else None
        if fast is None:
            return mine
        return Counters(**{k: v + getattr(fast, k) for k, v in mine.__dict__.items()})

    def _usable(self, sa: InstalledSA, handle: int) -> bool:
        """An outbound SA a PROTECT filter may name: neither side has expired it."""
        return (
            sa.direction == Direction.OUTBOUND
            and not sa.transform.expired
            and handle not in self.hard_expired
        )

    def _outbound_handle(self, tmpl: Any) -> int:
        """A manual policy template's SA in the fast path (0: none usable, the policy goes SLOW)."""
        for key, handle in self.handles.items():
            sa = self.sadb.states.get(key)
            if sa is None or not self._usable(sa, handle):
                continue
            st = sa.state
            if (
                st.src == tmpl.src
                and st.dst == tmpl.dst
                and st.params.protocol == tmpl.protocol
                and st.params.mode == tmpl.mode
                and (tmpl.reqid == 0 or tmpl.reqid == st.reqid)
                and (tmpl.spi == 0 or tmpl.spi == st.params.spi)
            ):
                return handle
        return 0

    def _sync_filters(self) -> None:
        outbound = [
            (sa, self.handles[key])
            for key, sa in self.sadb.states.items()
            if key in self.handles and self._usable(sa, self.handles[key])
        ]
        shapes = fastpath_filters.build(self.sadb.policies, self._outbound_handle, self.classifier, outbound)
        # Keep the filters whose shape stays (no gap, no churn on a rekey); add the new ones before
        # the old ones go.
        old: dict[fastpath_filters.Shape, list[fpmod.FastFilter]] = {}
        for f in self.filters:
            old.setdefault(_shape(f), []).append(f)
        new: list[fpmod.FastFilter] = []
        for sh in shapes:
            kept = old.get(sh)
            if kept:
                new.append(kept.pop(0))
                continue
            f = fpmod.FastFilter(
                self._next_filter,
                sh.weight,
                sh.src,
                sh.dst,
                sh.action,
                sh.protocol,
                sh.src_ports,
                sh.dst_ports,
                sh.sa,
            )
            self._next_filter += 1
            self.fp.add_filter(f)
            new.append(f)
        for leftover in old.values():
            for f in leftover:
                self.fp.remove_filter(f.filter_id)
        self.filters = new

    def on_event(self, outbound: Callable[[list[bytes]], None], inbound: Callable[[list[Any]], None]) -> None:
        """The event fd is readable: drain events and the slow-path queue (bounded rounds).
        ``inbound`` gets port-4500 datagrams that are not the fast path's: (data, source, None)."""
        by_handle = {h: k for k, h in self.handles.items()}
        for ev in self.fp.drain_events():
            if ev.kind not in (fpmod.EventKind.SOFT_EXPIRED, fpmod.EventKind.HARD_EXPIRED) or ev.sa is None:
                continue
            hard = ev.kind == fpmod.EventKind.HARD_EXPIRED
            if hard:
                self.hard_expired.add(ev.sa)
                self.generation = -1  # the filters stop naming it at the next sync
            key = by_handle.get(ev.sa)
            # Time limits are the Python transform's (the engine's tick reports them): only the
            # byte, packet and sequence limits the fast path counts are news.
            if key is not None and self.on_expiry is not None and ev.reason is not ExpiryReason.SECONDS:
                self.on_expiry(key[1], hard)
        if self.generation == -1:
            self.sync()
        for _ in range(16):
            slow = self.fp.drain_slow(256)
            if not slow:
                break
            self.slow_packets += len(slow)
            out = [s.data for s in slow if s.kind == fpmod.SlowKind.OUTBOUND]
            inbox = [
                (s.data, s.source, self._local_of(s.data))
                for s in slow
                if s.kind == fpmod.SlowKind.INBOUND and s.source
            ]
            self.acquire_dropped += sum(1 for s in slow if s.kind == fpmod.SlowKind.ACQUIRE)
            if out:
                outbound(out)
            if inbox:
                inbound(inbox)

    def _local_of(self, data: bytes) -> str | None:
        """Our address a datagram the fast path passed on was sent to (its socket does not ask the
        kernel): for ESP the destination of the inbound SA its SPI names; None for IKE."""
        if len(data) < 8 or data[:4] == b"\x00\x00\x00\x00":
            return None
        sa = self.sadb.inbound_sa(int(Protocol.ESP), int.from_bytes(data[:4], "big"))
        return str(sa.state.dst) if sa is not None else None

    def seq_view(self, sa: InstalledSA) -> InstalledSA:
        """The SA as the sequence-number store must see it: the fast path sends its packets."""
        state = self.fp.sa_state(self.handles[sa.state.key()])
        if state is None:
            return sa
        sent_by_python = sa.transform.counters().packets_sent
        return dataclasses.replace(sa, initial_seq=max(1, state[0] - sent_by_python))

    def status(self) -> dict[str, Any]:
        sas = []
        for key, handle in self.handles.items():
            counters = self.fp.sa_counters(handle)
            sas.append(
                {
                    "spi": f"0x{key[1]:08x}",
                    "dst": str(key[2]),
                    "counters": counters.__dict__ if counters else None,
                }
            )
        return {
            "features": self.fp.features().describe(),
            "stats": self.fp.stats(),
            "sas": sas,
            "filters": len(self.filters),
            "filter_table": [
                {
                    "weight": f.weight,
                    "src": str(f.src),
                    "dst": str(f.dst),
                    "protocol": f.protocol,
                    "src_ports": list(f.src_ports),
                    "dst_ports": list(f.dst_ports),
                    "action": f.action.name,
                    "sa": f.sa,
                }
                for f in self.filters[:200]
            ],
            "slow_packets": self.slow_packets,
            "acquire_dropped": self.acquire_dropped,
            "refused_sas": len(self.refused),
        }

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Remove the event-fd reader, stop the threads (joined), free the SAs (keys wiped)."""
        with contextlib.suppress(Exception):
            if loop is not None:
                loop.remove_reader(self.fp.event_fd())
        with contextlib.suppress(Exception):
            self.fp.close()


def _shape(f: fpmod.FastFilter) -> fastpath_filters.Shape:
    return fastpath_filters.Shape(
        f.weight, f.src, f.dst, f.action, f.protocol, f.src_ports, f.dst_ports, f.sa
    )
