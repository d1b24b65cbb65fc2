"""A bounded IKEv2 initiator driver: many ``ipsecd.ikev2.Session`` initiations from one process over
one pair of UDP sockets (500 and 4500 of ``local``), one at a time or N in flight.

Used by bench/handshakes.py (setups per second against an ipsecd or a charon responder) and by the
COOKIE flood test (the legitimate peer). Create it inside the initiator's namespace
(``Host.entered()``): the sockets stay in the namespace they were made in.

Responses are routed by SPIi (RFC 7296 section 2.6: the initiator finds its SA by its own SPI);
a session counts as done once its IKE SA and its first child SA are up, and is then forgotten
without a DELETE (the responder keeps it: the same for every responder).
"""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass

from ipsecd.ike.buffers import CodecError
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2 import events as v2
from ipsecd.ikev2 import message
from ipsecd.ikev2.constants import NON_ESP_MARKER, ExchangeType, NotifyType
from ipsecd.ikev2.payloads import Identity, NotifyPayload, TrafficSelector
from ipsecd.ikev2.proposals import parse_esp, parse_ike
from ipsecd.ikev2.session import Session, SessionConfig
from tests.engine_helpers import A4, B4

PSK = "handshake-bench-psk"
A_NET, B_NET = "10.1.0.0/24", "10.2.0.0/24"


def responder_store(mm: str) -> str:
    """b's store: one tunnel rule towards a (ikeversion 2, PSK), the mirror of a's selectors."""
    return f"""[daemon]
assigned_policy = "p"
[[filterlist]]
name = "to a"
  [[filterlist.filter]]
  srcaddr = "{B_NET}"
  dstaddr = "{A_NET}"
  mirrored = false
[[filterlist]]
name = "from a"
  [[filterlist.filter]]
  srcaddr = "{A_NET}"
  dstaddr = "{B_NET}"
  mirrored = false
[[filteraction]]
name = "sec"
action = "negotiate"
qmsecmethods = ["ESP[AESGCM128]"]
[[policy]]
name = "p"
mmsecmethods = ["{mm}"]
  [[policy.rule]]
  name = "to a"
  filterlist = "to a"
  filteraction = "sec"
  tunnel = "{A4}"
  ikeversion = 2
  auth = [{{ method = "psk", psk = "{PSK}" }}]
  [[policy.rule]]
  name = "from a"
  filterlist = "from a"
  filteraction = "sec"
  tunnel = "{B4}"
  ikeversion = 2
  auth = [{{ method = "psk", psk = "{PSK}" }}]
"""


def initiator_config(local: str, ike: str, esp: str, psk: bytes, lts: str, rts: str) -> SessionConfig:
    return SessionConfig(
        ike=(parse_ike(ike),),
        esp=(parse_esp(esp),),
        psk=psk,
        local_id=Identity.address(local),
        local_ts=(TrafficSelector.network(lts),),
        remote_ts=(TrafficSelector.network(rts),),
        dpd_interval_s=0,
    )


@dataclass(frozen=True)
class RunResult:
    done: int
    failed: int
    timed_out: int
    elapsed_s: float
    cookies_seen: int  # IKE_SA_INIT responses asking for a COOKIE (RFC 7296 section 2.6)

    @property
    def per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


def is_cookie_reply(raw: bytes) -> bool:
    try:
        msg = message.decode(raw)
    except CodecError:
        return False
    return msg.header.exchange_type == ExchangeType.IKE_SA_INIT and any(
        isinstance(p, NotifyPayload) and p.notify_type == NotifyType.COOKIE for p in msg.payloads
    )


class Driver:
    def __init__(self, local: str, peer: str, config: SessionConfig) -> None:
        self.local, self.peer, self.config = local, peer, config
        self.dh = DefaultDhProvider(os.urandom)
        self.socks: dict[int, socket.socket] = {}
        for port in (500, 4500):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((local, port))
            s.setblocking(False)
            self.socks[port] = s

    def close(self) -> None:
        for s in self.socks.values():
            s.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, s: Session, now: float) -> None:
        for d, addr in s.datagrams_to_send(now):
            port = 4500 if d.startswith(NON_ESP_MARKER) else 500
            self.socks[port].sendto(d, (addr[0], int(addr[1])))

    def run(self, total: int, parallel: int, timeout_s: float) -> RunResult:
        """Set up ``total`` IKE SA + child SA pairs, at most ``parallel`` in flight; bounded by
        ``timeout_s`` (what is still in flight then counts as timed out)."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        flight: dict[bytes, Session] = {}
        started = done = failed = cookies = 0
        while (started < total or flight) and time.monotonic() < deadline:
            now = time.monotonic()
            while started < total and len(flight) < parallel:
                s = Session.initiate(
                    self.config,
                    local=(self.local, 500),
                    remote=(self.peer, 500),
                    now=now,
                    rng=os.urandom,
                    dh=self.dh,
                    local_natt_port=4500,
                )
                flight[s.ike_sas()[0].spi_i] = s
                started += 1
                self._send(s, now)
            timers = [t for s in flight.values() if (t := s.get_timer()) is not None]
            wait = max(0.0, min([*timers, now + 0.05, deadline]) - now)
            ready, _, _ = select.select(list(self.socks.values()), [], [], wait)
            now = time.monotonic()
            touched: set[bytes] = set()
            for sock in ready:
                for _ in range(64):
                    try:
                        data, addr = sock.recvfrom(65535)
                    except BlockingIOError:
                        break
                    raw = data[4:] if data.startswith(NON_ESP_MARKER) else data
                    spi = raw[0:8]
                    s = flight.get(spi)
                    if s is None:
                        continue
                    if len(raw) < 100 and is_cookie_reply(raw):
                        cookies += 1
                    s.receive_datagram(data, addr, now)
                    touched.add(spi)
            for spi, s in list(flight.items()):
                t = s.get_timer()
                if t is not None and t <= now:
                    s.handle_timer(now)
                    touched.add(spi)
            for spi in touched:
                s = flight[spi]
                self._send(s, now)
                while (e := s.next_event()) is not None:
                    if isinstance(e, (v2.NegotiationFailed, v2.ChildSaFailed)):
                        failed += 1
                        flight.pop(spi, None)
                if spi in flight and s.established and s.children:
                    done += 1
                    del flight[spi]
                elif spi in flight and s.closed:
                    failed += 1
                    del flight[spi]
        return RunResult(done, failed, len(flight), time.monotonic() - t0, cookies)
