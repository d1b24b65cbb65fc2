"""Many IKEv2 sessions behind one pair of UDP sockets, sans-I/O: the piece the daemon's IKE socket
loop drives.

- A datagram is routed by our own IKE SPI: SPIr when the sender is the original initiator (I flag),
  else SPIi (RFC 7296 section 2.6: each end chooses its SPI so it finds its SA by it). A rekeyed
  IKE SA keeps its old SPI routed until the session drops it.
- A new IKE_SA_INIT request (SPIr zero) passes the ``CookieGuard`` (COOKIE above the half-open
  threshold), then ``config_for(local, remote)`` decides whether there is policy for the peer; a
  retransmitted request reaches the half-open session it created, keyed by (SPIi, address).
- Events come out as (session, event); closed sessions are removed after their last events.

Datagrams out are (bytes, local port, remote address): bytes starting with the non-ESP marker go
out from the NAT-T port.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from ipsecd.ike.buffers import CodecError
from ipsecd.ike.dh import DhProvider
from ipsecd.ikev2 import message
from ipsecd.ikev2.constants import NON_ESP_MARKER, ExchangeType, Flag
from ipsecd.ikev2.cookies import CookieGuard
from ipsecd.ikev2.events import Event
from ipsecd.ikev2.session import Addr, Session, SessionConfig

HEADER_LEN = 28


@dataclass
class DispatchCounters:
    no_session: int = 0  # unknown SPI or not an IKE_SA_INIT request
    no_policy: int = 0  # IKE_SA_INIT from a peer without configuration
    malformed: int = 0
    cookies_sent: int = 0
    responders_created: int = 0


class Dispatcher:
    def __init__(
        self,
        config_for: Callable[[Addr, Addr], SessionConfig | None],
        *,
        rng: Callable[[int], bytes],
        dh: DhProvider,
        now: float,
        ike_port: int = 500,
        natt_port: int = 4500,
        cookie_threshold: int = 10,
        max_half_open: int = 1000,
        wall_clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._config_for = config_for
        self._wall_clock = wall_clock  # certificate validity, for sessions with certificate credentials
        self._rng = rng
        self._dh = dh
        self.ike_port = ike_port
        self.natt_port = natt_port
        self.guard = CookieGuard(rng, now, threshold=cookie_threshold)
        self.max_half_open = max_half_open
        self.sessions: list[Session] = []
        self._by_spi: dict[bytes, Session] = {}
        self._half_open: dict[tuple[bytes, Addr], Session] = {}
        self.counters = DispatchCounters()
        self._pending_replies: list[tuple[bytes, int, Addr]] = []  # COOKIE challenges (no session)
        self._indexed: dict[Session, set[bytes]] = {}
        self._half_open_key: dict[Session, tuple[bytes, Addr]] = {}

    # ------------------------------------------------------------------ API

    def initiate(self, config: SessionConfig, local: Addr, remote: Addr, now: float) -> Session:
        s = Session.initiate(
            config,
            local=local,
            remote=remote,
            now=now,
            rng=self._rng,
            dh=self._dh,
            local_natt_port=self.natt_port,
            wall_clock=self._wall_clock,
        )
        self._add(s)
        return s

    @property
    def half_open(self) -> int:
        return sum(1 for s in self.sessions if not s.established and not s.closed)

    def receive_datagram(self, data: bytes, local: Addr, remote: Addr, now: float) -> Session | None:
        """One UDP payload that arrived at ``local`` from ``remote``; returns the session it went to."""
        raw, _ = message.strip_marker(data)
        if len(raw) < HEADER_LEN:
            self.counters.malformed += 1
            return None
        spi_i, spi_r, flags = raw[0:8], raw[8:16], raw[19]
        xchg = raw[18]
        s: Session | None
        if spi_r == bytes(8) and xchg == ExchangeType.IKE_SA_INIT and not flags & Flag.R:
            s = self._half_open.get((spi_i, remote))
            if s is None:
                s = self._new_responder(raw, local, remote, now)
                if s is None:
                    return None
        else:
            ours = spi_r if flags & Flag.I else spi_i
            s = self._by_spi.get(ours)
            if s is None:
                self.counters.no_session += 1
                return None
        s.receive_datagram(data, remote, now)
        self._reindex(s)
        return s

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, int, Addr]]:
        out: list[tuple[bytes, int, Addr]] = []
        for s in self.sessions:
            for d, addr in s.datagrams_to_send(now):
                out.append((d, self.natt_port if d.startswith(NON_ESP_MARKER) else self.ike_port, addr))
        out += self._pending_replies
        self._pending_replies = []
        return out

    def get_timer(self) -> float | None:
        times = [t for s in self.sessions if (t := s.get_timer()) is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for s in list(self.sessions):
            t = s.get_timer()
            if t is not None and t <= now:
                s.handle_timer(now)
                self._reindex(s)

    def poll(self, now: float) -> None:
        for s in list(self.sessions):
            s.poll(now)
            self._reindex(s)

    def events(self) -> list[tuple[Session, Event]]:
        """Every session's new events; sessions that closed are forgotten afterwards."""
        out: list[tuple[Session, Event]] = []
        for s in list(self.sessions):
            while (e := s.next_event()) is not None:
                out.append((s, e))
            if s.closed:
                self._remove(s)
        return out

    # ------------------------------------------------------------------ internals

    def _new_responder(self, raw: bytes, local: Addr, remote: Addr, now: float) -> Session | None:
        verdict = self.guard.check(raw, remote, self.half_open, now)
        if not verdict.accept:
            if verdict.reply is not None:
                self.counters.cookies_sent += 1
                self._pending_replies.append((verdict.reply, self.ike_port, remote))
            else:
                self.counters.malformed += 1
            return None
        if self.half_open >= self.max_half_open:
            self.counters.no_session += 1
            return None
        config = self._config_for(local, remote)
        if config is None:
            self.counters.no_policy += 1
            return None
        try:
            message.decode(raw)
        except CodecError:
            self.counters.malformed += 1
            return None
        s = Session.respond(
            config,
            local=local,
            remote=remote,
            now=now,
            rng=self._rng,
            dh=self._dh,
            local_natt_port=self.natt_port,
            wall_clock=self._wall_clock,
        )
        self.counters.responders_created += 1
        self._add(s)
        self._half_open[(raw[0:8], remote)] = s
        self._half_open_key[s] = (raw[0:8], remote)
        return s

    def _add(self, s: Session) -> None:
        self.sessions.append(s)
        self._reindex(s)

    def _our_spis(self, s: Session) -> set[bytes]:
        out = set()
        for sa in s.ike_sas():
            mine = sa.spi_i if sa.initiator else sa.spi_r
            if mine != bytes(8):
                out.add(mine)
        return out

    def _reindex(self, s: Session) -> None:
        now_spis = self._our_spis(s)
        before = self._indexed.get(s, set())
        for spi in before - now_spis:
            if self._by_spi.get(spi) is s:
                del self._by_spi[spi]
        for spi in now_spis:
            self._by_spi[spi] = s
        self._indexed[s] = now_spis
        if (s.established or s.closed) and s in self._half_open_key:
            self._half_open.pop(self._half_open_key.pop(s), None)

    def _remove(self, s: Session) -> None:
        self.sessions.remove(s)
        for spi in self._indexed.pop(s, set()):
            if self._by_spi.get(spi) is s:
                del self._by_spi[spi]
        if s in self._half_open_key:
            self._half_open.pop(self._half_open_key.pop(s), None)
