"""``ipsecd --fastpath``: the daemon hands tunnel-mode ESP-in-UDP SAs to the native fast path.

The fast path (ipsecd.datapath.fastpath, docs/datapath.md "Fast path") gets a duplicate of the TUN
fd and of the IPv4 UDP 4500 socket's fd; from then on its C threads read both (the engine removes
its own readers for them). What it installs, re-computed whenever the SA database changes
(``SADatabase.generation``):

* every manual SA (store ``[xfrm]`` or ``ipsecctl xfrm``) in ESP tunnel mode with UDP
  encapsulation and an IPv4 outer header, both directions (outbound ones continue from the Python
  transform's next sequence number);
* one filter per outbound manual policy, in the SA database's order (highest weight first): a
  single-template protect policy whose SA is in the fast path -> PROTECT with that SA; any other
  policy (bypass, discard, bundles, other modes) -> SLOW. Packets no filter matches -> SLOW.

SLOW packets come back through ``drain_slow()`` and go to the Python router exactly as if read
from the TUN; IKE on port 4500 (non-ESP marker) goes to the IKE manager. A PROTECT filter whose SA
is gone or expired holds its packets (ACQUIRE): manual keying negotiates nothing, so they are
dropped and counted, never sent in clear nor through the Python copy of the SA.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable
from ipaddress import ip_network
from typing import Any

from ipsecd.datapath import fastpath as fpmod
from ipsecd.datapath.sa import Direction, Mode, Protocol
from ipsecd.datapath.sadb import InstalledSA, PolicyAction, PolicyDir, SADatabase

TOP_WEIGHT = 1 << 30


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

    def start(self) -> str:
        self.sync()
        try:
            self.fp.start()
        except Exception as exc:
            raise FastPathError(f"--fastpath: cannot start the fast-path threads: {exc}") from None
        return self.fp.features().describe()

    def owns(self, sa: InstalledSA) -> bool:
        return sa.state.key() in self.handles

    def sync(self) -> None:
        """Mirror the SA database's eligible SAs and the outbound policies (cheap when unchanged)."""
        if self.generation == self.sadb.generation:
            return
        wanted = {k: sa for k, sa in self.sadb.states.items() if eligible(sa)}
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
        self._sync_filters()
        self.generation = self.sadb.generation

    def _outbound_handle(self, tmpl: Any) -> int:
        for key, handle in self.handles.items():
            sa = self.sadb.states.get(key)
            if sa is None or sa.direction != Direction.OUTBOUND:
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
        shapes = []
        outs = [p for p in self.sadb.policies if p.direction is PolicyDir.OUT]
        for i, p in enumerate(outs):
            action, handle = fpmod.Action.SLOW, 0
            if p.action is PolicyAction.PROTECT and len(p.templates) == 1:
                t = p.templates[0]
                if t.src is not None and t.dst is not None and not t.optional:
                    handle = self._outbound_handle(t)
                    if handle:
                        action = fpmod.Action.PROTECT
            s = p.selector
            shapes.append(
                (
                    TOP_WEIGHT - i,
                    ip_network(s.src),
                    ip_network(s.dst),
                    action,
                    s.protocol,
                    s.src_ports,
                    s.dst_ports,
                    handle,
                )
            )
        old = [
            (f.weight, f.src, f.dst, f.action, f.protocol, f.src_ports, f.dst_ports, f.sa)
            for f in self.filters
        ]
        if shapes == old:
            return
        new = []
        for weight, src, dst, action, proto, sports, dports, handle in shapes:
            f = fpmod.FastFilter(self._next_filter, weight, src, dst, action, proto, sports, dports, handle)
            self._next_filter += 1
            self.fp.add_filter(f)  # the new set is in before the old one goes: no gap
            new.append(f)
        for f in self.filters:
            self.fp.remove_filter(f.filter_id)
        self.filters = new

    def on_event(self, outbound: Callable[[list[bytes]], None], ike: Callable[[list[Any]], None]) -> None:
        """The event fd is readable: drain events and the slow-path queue (bounded rounds)."""
        self.fp.drain_events()
        for _ in range(16):
            slow = self.fp.drain_slow(256)
            if not slow:
                break
            self.slow_packets += len(slow)
            out = [s.data for s in slow if s.kind == fpmod.SlowKind.OUTBOUND]
            inbox = [(s.data, s.source, None) for s in slow if s.kind == fpmod.SlowKind.INBOUND and s.source]
            self.acquire_dropped += sum(1 for s in slow if s.kind == fpmod.SlowKind.ACQUIRE)
            if out:
                outbound(out)
            if inbox:
                ike(inbox)

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
