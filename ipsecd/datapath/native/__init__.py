"""The native (C, OpenSSL libcrypto) ESP/AH transform: docs/datapath.md, section "Native path".

`AVAILABLE` is True when the compiled module `ipsecd.datapath._native` imported; otherwise the reason
is logged once and `ipsecd.datapath.factory.make_transform` uses the pure-Python fallback. The C code
lives next to this file (*.c, *.h) and is built by setup.py.
"""

from __future__ import annotations

import logging
from types import ModuleType

from ipsecd.datapath.counters import Counters
from ipsecd.datapath.sa import (
    FULL_PORTS,
    Direction,
    EventKind,
    ExpiryReason,
    Mode,
    Protocol,
    SAEvent,
    SAParams,
)

log = logging.getLogger(__name__)

_MAX64 = (1 << 64) - 1
_MASK32 = 0xFFFFFFFF

_mod: ModuleType | None
try:
    from ipsecd.datapath import _native as _mod
except (ImportError, OSError) as exc:  # not built, or libcrypto missing: the Python path takes over
    _mod = None
    UNAVAILABLE_REASON = f"ipsecd.datapath._native does not import: {exc}"
    log.info("native data path unavailable, using the Python fallback (%s)", UNAVAILABLE_REASON)
else:
    UNAVAILABLE_REASON = ""

AVAILABLE: bool = _mod is not None

_KINDS = {1: EventKind.SOFT_EXPIRED, 2: EventKind.HARD_EXPIRED}
_REASONS = {1: ExpiryReason.BYTES, 2: ExpiryReason.PACKETS, 3: ExpiryReason.SECONDS, 4: ExpiryReason.SEQUENCE}


def _pad16(packed: bytes) -> bytes:
    return packed + bytes(16 - len(packed))


def _clamp(value: int) -> int:
    return min(int(value), _MAX64)


def _config(params: SAParams, direction: Direction, initial_seq: int) -> tuple[int, ...]:
    """The integer configuration vector of the C SA (order: CFG_* in native/sa.h)."""
    life = params.lifetimes
    return (
        int(params.protocol),
        int(params.mode),
        int(params.enc_alg),
        int(params.integ_alg),
        params.spi,
        int(params.esn),
        params.replay_window,
        int(direction),
        initial_seq,
        int(params.encap is not None),
        params.encap.sport if params.encap else 0,
        params.encap.dport if params.encap else 0,
        params.tunnel.src.version if params.tunnel else 0,
        _clamp(life.soft_bytes),
        _clamp(life.hard_bytes),
        _clamp(life.soft_packets),
        _clamp(life.hard_packets),
    )


def _selectors(params: SAParams) -> tuple[tuple[int, bytes, int, bytes, int, int, int, int, int, int], ...]:
    return tuple(
        (
            s.src.version,
            _pad16(s.src.network_address.packed),
            s.src.prefixlen,
            _pad16(s.dst.network_address.packed),
            s.dst.prefixlen,
            s.protocol,
            *s.src_ports,
            *s.dst_ports,
        )
        for s in params.selectors
    )


class NativeTransform:
    """One direction of one SA on the C data path (the `Transform` protocol of ipsecd.datapath.sa).

    Batches run with the GIL released; the C object's own lock serialises batches on one SA.
    """

    def __init__(
        self, params: SAParams, direction: Direction, *, now: float = 0.0, initial_seq: int = 1
    ) -> None:
        if _mod is None:
            raise RuntimeError(UNAVAILABLE_REASON or "the native data path extension is not available")
        seq_max = _MAX64 if params.esn else _MASK32
        if not 1 <= initial_seq <= seq_max:
            raise ValueError("initial_seq out of range")
        self._params = params
        self._direction = Direction(direction)
        self._created = now
        self._events: list[SAEvent] = []
        tunnel = params.tunnel
        self._sa = _mod.Sa(
            _config(params, self._direction, initial_seq),
            params.enc_key,
            params.integ_key,
            params.iv_key,
            _pad16(tunnel.src.packed) if tunnel else b"",
            _pad16(tunnel.dst.packed) if tunnel else b"",
            _selectors(params),
        )
        assert params.protocol in (Protocol.ESP, Protocol.AH)
        assert params.mode in (Mode.TRANSPORT, Mode.TUNNEL)

    @property
    def params(self) -> SAParams:
        return self._params

    @property
    def direction(self) -> Direction:
        return self._direction

    @property
    def backend(self) -> str:
        return "native"

    @property
    def expired(self) -> bool:
        return bool(self._sa.state()[2])

    def protect(self, packets: list[bytes]) -> list[bytes | None]:
        if self._direction != Direction.OUTBOUND:
            raise ValueError("protect() needs an outbound transform")
        out: list[bytes | None] = self._sa.protect(packets)
        return out

    def unprotect(self, packets: list[bytes]) -> list[bytes | None]:
        if self._direction != Direction.INBOUND:
            raise ValueError("unprotect() needs an inbound transform")
        out: list[bytes | None] = self._sa.unprotect(packets)
        return out

    def counters(self) -> Counters:
        return Counters(**self._sa.counters())

    def tick(self, now: float) -> None:
        life = self._params.lifetimes
        age = now - self._created
        if life.soft_seconds and age >= life.soft_seconds:
            self._sa.expire(1, 3)
        if life.hard_seconds and age >= life.hard_seconds:
            self._sa.expire(2, 3)

    def drain_events(self) -> list[SAEvent]:
        return [
            SAEvent(_KINDS[kind], self._params.spi, self._direction, _REASONS[reason])
            for kind, reason in self._sa.drain_events()
        ]

    def close(self) -> None:
        """Free the libcrypto contexts and wipe the keys now (also done when garbage-collected)."""
        self._sa.close()

    def __repr__(self) -> str:
        return f"NativeTransform(spi=0x{self._params.spi:08x}, direction={self._direction.name})"


def make_native_transform(
    params: SAParams, direction: Direction, *, now: float = 0.0, initial_seq: int = 1
) -> NativeTransform:
    """The factory hook of docs/datapath.md section 1."""
    return NativeTransform(params, direction, now=now, initial_seq=initial_seq)


__all__ = ["AVAILABLE", "FULL_PORTS", "UNAVAILABLE_REASON", "NativeTransform", "make_native_transform"]
