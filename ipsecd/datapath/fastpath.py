"""The threaded native fast path (docs/datapath.md, section "Fast path").

A `FastPath` owns a TUN file descriptor and an ESP-in-UDP socket (port 4500) and moves packets
between them in two C threads that never take the GIL: TUN -> filter table -> outbound SA ->
sendmmsg (UDP GSO), and recvmmsg (UDP GRO) -> SPI -> inbound SA -> TUN. Python installs SAs (from
the same `SAParams` as `make_transform`) and filters, and reads what the threads report through
`event_fd()` (an eventfd for `loop.add_reader`) + `drain_events()` / `drain_slow()`.

Filters are exact-or-prefix: (source prefix, destination prefix, protocol, port ranges) -> action,
the highest weight wins (then the oldest). Anything richer stays in Python: give it a SLOW filter and
the packets arrive in `drain_slow()`. A PROTECT filter without a usable SA raises an ACQUIRE event and
holds the packet in the slow-path queue (bounded): nothing leaves in clear.

This module imports no socket/select/time (tests/test_import_direction.py): callers pass the fds.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING

from ipsecd.datapath.counters import Counters
from ipsecd.datapath.native import _config, _pad16, _selectors
from ipsecd.datapath.sa import FULL_PORTS, Direction, ExpiryReason, Mode, Protocol, SAParams

if TYPE_CHECKING:
    from ipsecd.datapath._fastpath import FastPath as _CFastPath

log = logging.getLogger(__name__)

_mod: ModuleType | None
try:
    from ipsecd.datapath import _fastpath as _mod
except (ImportError, OSError) as exc:  # not built: the daemon's Python router is the data path
    _mod = None
    UNAVAILABLE_REASON = f"ipsecd.datapath._fastpath does not import: {exc}"
else:
    UNAVAILABLE_REASON = ""

AVAILABLE: bool = _mod is not None

# TUNSETOFFLOAD flags (<linux/if_tun.h>)
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40


class Action(enum.IntEnum):
    """What a filter does with a cleartext packet read from the TUN."""

    DROP = 0  # block
    PROTECT = 1  # through the bound SA; none bound or expired: ACQUIRE, held, never sent in clear
    SLOW = 2  # to Python (drain_slow)


class EventKind(enum.IntEnum):
    ACQUIRE = 1  # a PROTECT filter matched without a usable SA (rate-limited per filter)
    SOFT_EXPIRED = 2
    HARD_EXPIRED = 3
    SLOW_PATH = 4  # packets wait in drain_slow()


class SlowKind(enum.IntEnum):
    OUTBOUND = 1  # a cleartext TUN packet for a SLOW filter (or the SLOW default)
    ACQUIRE = 2  # a cleartext TUN packet held while its SA is negotiated
    INBOUND = 3  # a non-ESP payload on the ESP socket (non-ESP marker: IKE, RFC 3948 section 2.2)


_REASONS = {1: ExpiryReason.BYTES, 2: ExpiryReason.PACKETS, 3: ExpiryReason.SECONDS, 4: ExpiryReason.SEQUENCE}
_REASON_CODES = {v: k for k, v in _REASONS.items()}


@dataclass(frozen=True)
class FastFilter:
    """One fast-path filter. `sa` is the handle from `add_sa` (0: none yet, PROTECT acquires)."""

    filter_id: int
    weight: int
    src: IPv4Network | IPv6Network
    dst: IPv4Network | IPv6Network
    action: Action
    protocol: int = 0
    src_ports: tuple[int, int] = FULL_PORTS
    dst_ports: tuple[int, int] = FULL_PORTS
    sa: int = 0

    def __post_init__(self) -> None:
        if self.src.version != self.dst.version:
            raise ValueError("filter source and destination must be of the same address family")
        if not 0 <= self.filter_id <= 0xFFFFFFFF or not -(2**31) <= self.weight < 2**31:
            raise ValueError("filter id or weight out of range")
        if not 0 <= self.protocol <= 255:
            raise ValueError("filter protocol out of range")
        for lo, hi in (self.src_ports, self.dst_ports):
            if not 0 <= lo <= hi <= 65535:
                raise ValueError("filter port range out of range")


@dataclass(frozen=True)
class FastEvent:
    kind: EventKind
    filter_id: int | None = None  # ACQUIRE
    sa: int | None = None  # SOFT/HARD_EXPIRED
    reason: ExpiryReason | None = None


@dataclass(frozen=True)
class SlowPacket:
    kind: SlowKind
    filter_id: int  # OUTBOUND / ACQUIRE: the filter (0: the default action)
    source: tuple[str, int] | None  # INBOUND: who sent it
    data: bytes


@dataclass(frozen=True)
class Features:
    """What the kernel and the descriptors gave the fast path (the daemon logs `describe()`)."""

    vnet_hdr: bool
    tun_offload: int
    udp_gso: bool
    udp_gro: bool

    @property
    def tso(self) -> bool:
        return bool(self.tun_offload & (TUN_F_TSO4 | TUN_F_TSO6))

    @property
    def uso(self) -> bool:
        return bool(self.tun_offload & (TUN_F_USO4 | TUN_F_USO6))

    def describe(self) -> str:
        def on(flag: bool) -> str:
            return "on" if flag else "off (fallback)"

        return (
            f"vnet_hdr {on(self.vnet_hdr)}, TUN TSO {on(self.tso)}, TUN USO {on(self.uso)}, "
            f"UDP GSO {on(self.udp_gso)}, UDP GRO {on(self.udp_gro)}"
        )


@dataclass(frozen=True)
class TunHandle:
    fd: int
    name: str
    vnet_hdr: bool
    offload: int


def _need() -> ModuleType:
    if _mod is None:
        raise RuntimeError(UNAVAILABLE_REASON or "the fast-path extension is not available")
    return _mod


def open_tun(name: str, *, vnet_hdr: bool = True) -> TunHandle:
    """Create TUN `name` (IFF_TUN | IFF_NO_PI, IFF_VNET_HDR with TSO/USO offloads when the kernel
    accepts them; otherwise plain packets). The fd is non-blocking; hand it to `FastPath`."""
    fd, ifname, vnet, offload = _need().open_tun(name, vnet_hdr)
    return TunHandle(fd, ifname, vnet, offload)


class FastPath:
    """The fast path over `tun_fd` and `udp_fd`; it owns both from here on (closed by `close()`)."""

    def __init__(self, tun_fd: int, udp_fd: int, *, vnet_hdr: bool = False, offload: int = 0) -> None:
        self._fp: _CFastPath = _need().FastPath(tun_fd, udp_fd, vnet_hdr, offload)
        self._directions: dict[int, tuple[Direction, int]] = {}

    @classmethod
    def over_tun(cls, tun: TunHandle, udp_fd: int) -> FastPath:
        return cls(tun.fd, udp_fd, vnet_hdr=tun.vnet_hdr, offload=tun.offload)

    # --- tables ---

    def add_sa(self, params: SAParams, direction: Direction, *, initial_seq: int = 1) -> int:
        """Install one direction of an SA (tunnel mode, ESP in UDP); returns its handle.
        Outbound datagrams go to tunnel.dst, port encap.dport."""
        if params.protocol != Protocol.ESP or params.mode != Mode.TUNNEL or params.encap is None:
            raise ValueError("the fast path carries tunnel-mode, UDP-encapsulated ESP only")
        assert params.tunnel is not None
        seq_max = (1 << 64) - 1 if params.esn else 0xFFFFFFFF
        if not 1 <= initial_seq <= seq_max:
            raise ValueError("initial_seq out of range")
        outbound = Direction(direction) == Direction.OUTBOUND
        handle = self._fp.add_sa(
            outbound,
            _config(params, Direction(direction), initial_seq),
            params.enc_key,
            params.integ_key,
            params.iv_key,
            _pad16(params.tunnel.src.packed),
            _pad16(params.tunnel.dst.packed),
            _selectors(params),
            params.tunnel.dst.packed if outbound else b"",
            params.encap.dport if outbound else 0,
        )
        self._directions[handle] = (Direction(direction), params.spi)
        return handle

    def remove_sa(self, handle: int) -> bool:
        """Remove an SA: its contexts are freed and its key copies wiped. Filters bound to it
        acquire from now on."""
        self._directions.pop(handle, None)
        return self._fp.del_sa(handle)

    def expire_sa(self, handle: int, *, hard: bool, reason: ExpiryReason = ExpiryReason.SECONDS) -> bool:
        """Time-based expiry (the caller owns the clock); raises the event like a byte limit."""
        return self._fp.expire_sa(handle, 2 if hard else 1, _REASON_CODES[reason])

    def add_filter(self, f: FastFilter) -> None:
        self._fp.add_rule(
            f.filter_id,
            f.weight,
            f.src.version,
            _pad16(f.src.network_address.packed),
            f.src.prefixlen,
            _pad16(f.dst.network_address.packed),
            f.dst.prefixlen,
            f.protocol,
            *f.src_ports,
            *f.dst_ports,
            int(f.action),
            f.sa,
        )

    def remove_filter(self, filter_id: int) -> bool:
        return self._fp.del_rule(filter_id)

    def bind_filter(self, filter_id: int, sa: int) -> bool:
        """Point a PROTECT filter at SA handle `sa` (0 unbinds: it acquires again)."""
        return self._fp.bind_rule(filter_id, sa)

    def configure(
        self,
        *,
        default_action: Action | None = None,
        batch: int | None = None,
        slow_queue: int | None = None,
        acquire_interval: float | None = None,
        nice: int | None = None,
        rt_priority: int | None = None,
        unknown_spi: Action | None = None,
    ) -> None:
        """Default action for packets no filter matches (DROP or SLOW; DROP unless set), TUN reads
        per batch, slow-path queue bound (at most 1024), seconds between ACQUIREs of one filter,
        and the nice value the threads take at `start()` (root may go below 0: they stand in for
        the kernel's softirq work; a refusal is counted in `priority_failed`), or instead a
        SCHED_RR priority (1..99, 0 = off) so a wake-up never waits for a busy CPU's time slice.
        `unknown_spi`: what an ESP-in-UDP datagram with an SPI not in the tables becomes: DROP
        (counted in `bad_spi_packets`, the default) or SLOW (also counted, and queued as an INBOUND
        slow packet with its source address, for SAs the caller keeps itself)."""
        kwargs: dict[str, float] = {}
        if default_action is not None:
            kwargs["default_action"] = int(default_action)
        if batch is not None:
            kwargs["batch"] = batch
        if slow_queue is not None:
            kwargs["slow_queue"] = slow_queue
        if acquire_interval is not None:
            kwargs["acquire_interval"] = float(acquire_interval)
        if nice is not None:
            kwargs["nice"] = nice
        if rt_priority is not None:
            kwargs["rt_priority"] = rt_priority
        if unknown_spi is not None:
            kwargs["unknown_spi"] = int(unknown_spi)
        self._fp.configure(**kwargs)  # type: ignore[arg-type]

    # --- threads ---

    def start(self) -> None:
        self._fp.start()

    def stop(self) -> None:
        """Stop and join both threads (they wake up at least every 200 ms)."""
        self._fp.stop()

    def close(self) -> None:
        """Stop, free every SA (keys wiped) and filter, close the TUN, socket and event fds."""
        self._fp.close()

    def __enter__(self) -> FastPath:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def inject(self, packets: list[bytes], sa: int = 0) -> int:
        """Send plain IP packets through the outbound path (filters, SAs, GSO) from Python, e.g. the
        ACQUIRE-held ones from `drain_slow()` once their SA is bound. Needs the threads running.
        With `sa` (an outbound handle) the packets skip the filters and go through that SA (the
        caller already classified them); if it is gone or expired they are dropped and counted
        (`protect_drops`)."""
        return self._fp.inject(packets, sa)

    # --- reports ---

    def event_fd(self) -> int:
        """Readable when events are pending; `drain_events()` re-arms it."""
        return self._fp.event_fd()

    def drain_events(self) -> list[FastEvent]:
        out: list[FastEvent] = []
        for kind, a, b in self._fp.drain_events():
            k = EventKind(kind)
            if k == EventKind.ACQUIRE:
                out.append(FastEvent(k, filter_id=a))
            elif k in (EventKind.SOFT_EXPIRED, EventKind.HARD_EXPIRED):
                out.append(FastEvent(k, sa=a, reason=_REASONS.get(b)))
            else:
                out.append(FastEvent(k))
        return out

    def drain_slow(self, max_packets: int = 256) -> list[SlowPacket]:
        return [
            SlowPacket(SlowKind(k), aux, src, data) for k, aux, src, data in self._fp.drain_slow(max_packets)
        ]

    def stats(self) -> dict[str, int]:
        return self._fp.stats()

    def sa_counters(self, handle: int) -> Counters | None:
        got = self._fp.sa_counters(handle)
        return None if got is None else Counters(**got[0])

    def sa_state(self, handle: int) -> tuple[int, int, bool] | None:
        """(next sequence number, highest received sequence number, expired)."""
        got = self._fp.sa_counters(handle)
        return None if got is None else (got[1], got[2], bool(got[3]))

    def features(self) -> Features:
        f = self._fp.features()
        return Features(bool(f["vnet_hdr"]), int(f["tun_offload"]), bool(f["udp_gso"]), bool(f["udp_gro"]))

    def table_sizes(self) -> dict[str, int]:
        """sas, rules; sa_entry_bytes (the fixed SA entry, either direction; OpenSSL's cipher
        context comes on top), replay_bitmap_bytes (the inbound SAs' bitmaps, summed: outbound SAs
        have none), rule_entry_bytes."""
        return self._fp.table_sizes()


__all__ = [
    "AVAILABLE",
    "UNAVAILABLE_REASON",
    "Action",
    "EventKind",
    "FastEvent",
    "FastFilter",
    "FastPath",
    "Features",
    "SlowKind",
    "SlowPacket",
    "TunHandle",
    "open_tun",
]
