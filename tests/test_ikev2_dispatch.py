"""The IKEv2 dispatcher: many sessions between two hosts in memory, routed by SPI, with COOKIEs."""

from __future__ import annotations

import random

from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2.dispatch import Dispatcher
from ipsecd.ikev2.events import (
    ChildSaEstablished,
    ChildSaRekeyed,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaRekeyed,
)
from ipsecd.ikev2.payloads import Identity, TrafficSelector
from ipsecd.ikev2.proposals import parse_esp, parse_ike
from ipsecd.ikev2.session import Addr, SessionConfig

A, B = "192.0.2.1", "192.0.2.2"


def cfg(me: str, n: int, mirrored: bool) -> SessionConfig:
    lts, rts = (f"10.2.{n}.0/24", f"10.1.{n}.0/24") if mirrored else (f"10.1.{n}.0/24", f"10.2.{n}.0/24")
    return SessionConfig(
        ike=(parse_ike("aes128gcm16-prfsha256-x25519"),),
        esp=(parse_esp("aes128gcm16"),),
        psk=b"dispatch-psk",
        local_id=Identity.address(me),
        local_ts=(TrafficSelector.network(lts),),
        remote_ts=(TrafficSelector.network(rts),),
        dpd_interval_s=0,
    )


class Net:
    def __init__(self, threshold: int = 10, policy: bool = True) -> None:
        r = random.Random(11)
        dh = DefaultDhProvider(r.randbytes)
        # B answers anyone from A with one wide policy (it narrows each child to the request).
        wide = SessionConfig(
            ike=(parse_ike("aes128gcm16-prfsha256-x25519"),),
            esp=(parse_esp("aes128gcm16"),),
            psk=b"dispatch-psk",
            local_id=Identity.address(B),
            local_ts=(TrafficSelector.network("10.2.0.0/16"),),
            remote_ts=(TrafficSelector.network("10.1.0.0/16"),),
            dpd_interval_s=0,
        )

        def policy_for(local: Addr, remote: Addr) -> SessionConfig | None:
            return wide if policy and remote[0] == A else None

        self.a = Dispatcher(lambda local, remote: None, rng=r.randbytes, dh=dh, now=0.0)
        self.b = Dispatcher(policy_for, rng=r.randbytes, dh=dh, now=0.0, cookie_threshold=threshold)
        self.ev: dict[str, list[object]] = {"a": [], "b": []}

    def run(self, now: float = 0.0) -> None:
        for _ in range(40):
            moved = False
            for who, x, y, src, dst in (("a", self.a, self.b, A, B), ("b", self.b, self.a, B, A)):
                x.poll(now)
                for d, port, addr in x.datagrams_to_send(now):
                    assert addr[0] == dst
                    moved = True
                    y.receive_datagram(d, (dst, addr[1]), (src, port), now)
                self.ev[who] += [e for _, e in x.events()]
            if not moved:
                return

    def count(self, who: str, cls: type) -> int:
        return sum(isinstance(e, cls) for e in self.ev[who])


def test_many_sessions_routed_by_spi_through_rekeys() -> None:
    net = Net()
    sessions = [net.a.initiate(cfg(A, n, False), (A, 500), (B, 500), 0.0) for n in range(4)]
    net.run()
    assert net.count("a", IkeSaEstablished) == net.count("b", IkeSaEstablished) == 4
    assert net.count("b", ChildSaEstablished) == 4 and net.b.counters.responders_created == 4
    sessions[1].rekey_ike()
    net.b.sessions[2].rekey_ike()  # the responder side rekeys another one
    net.run(1.0)
    assert net.count("a", IkeSaRekeyed) == net.count("b", IkeSaRekeyed) == 2
    for s in sessions:  # every session still reachable under its (new) SPIs
        s.rekey_child(next(iter(s.children.values())).spi)
    net.run(2.0)
    assert net.count("a", ChildSaRekeyed) == 4 and net.count("b", ChildSaRekeyed) == 4
    assert net.a.counters.no_session == net.b.counters.no_session == 0
    sessions[0].close()
    net.run(3.0)
    assert net.count("b", IkeSaDeleted) == 1 and len(net.b.sessions) == 3 and len(net.a.sessions) == 3


def test_cookies_above_the_half_open_threshold() -> None:
    net = Net(threshold=0)
    net.a.initiate(cfg(A, 1, False), (A, 500), (B, 500), 0.0)
    net.run()
    assert net.count("a", IkeSaEstablished) == 1 and net.b.counters.cookies_sent == 1
    assert net.b.guard.challenges_sent == 1


def test_no_policy_and_unknown_spi() -> None:
    net = Net(policy=False)
    net.a.initiate(cfg(A, 1, False), (A, 500), (B, 500), 0.0)
    net.run()
    assert net.b.counters.no_policy >= 1 and not net.b.sessions
    bogus = (
        bytes(range(8))
        + bytes(range(8, 16))
        + bytes([46, 0x20, 37, 0x08])
        + bytes(4)
        + (28).to_bytes(4, "big")
    )
    assert net.b.receive_datagram(bogus, (B, 500), (A, 500), 0.0) is None
    assert net.b.receive_datagram(b"short", (B, 500), (A, 500), 0.0) is None
    assert net.b.counters.no_session == 1 and net.b.counters.malformed == 1
