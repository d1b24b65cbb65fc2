"""Two sans-I/O IKEv1 sessions wired together in memory, with a deterministic clock and randomness
(shared by the session, Quick Mode and fuzz tests)."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev1.events import Event
from ipsecd.ikev1.quick_mode import QmPolicy
from ipsecd.ikev1.selectors import TrafficSelector
from ipsecd.ikev1.session import IkeV1Session, SessionConfig
from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod

A_IP = ipaddress.IPv4Address("192.0.2.1")
B_IP = ipaddress.IPv4Address("198.51.100.2")
A_NET = TrafficSelector.of("10.1.0.0/24")
B_NET = TrafficSelector.of("10.2.0.0/24")
MM = MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 14)
ESP = QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA1)
GCM = QmSecMethod(esp_enc=EspEncryption.AESGCM256)


def rng(seed: str) -> Callable[[int], bytes]:
    n = [0]

    def f(k: int) -> bytes:
        out = b""
        while len(out) < k:
            n[0] += 1
            out += hashlib.sha256(f"{seed}/{n[0]}".encode()).digest()
        return out[:k]

    return f


def policy_a(
    methods: tuple[QmSecMethod, ...] = (ESP,), pfs: int | None = None, tunnel: bool = True
) -> QmPolicy:
    return QmPolicy(methods, pfs, tunnel, A_NET, B_NET)


def lookup_b(
    methods: tuple[QmSecMethod, ...] = (ESP,), pfs: int | None = None
) -> Callable[[TrafficSelector, TrafficSelector], QmPolicy | None]:
    def f(local: TrafficSelector, remote: TrafficSelector) -> QmPolicy | None:
        if B_NET.contains(local) and A_NET.contains(remote):
            return QmPolicy(methods, pfs, True, B_NET, A_NET)
        return None

    return f


def configs(**kw: object) -> tuple[SessionConfig, SessionConfig]:
    a = SessionConfig((A_IP, 500), (B_IP, 500), (MM,), b"secret psk")
    b = SessionConfig((B_IP, 500), (A_IP, 500), (MM,), b"secret psk", qm_lookup=lookup_b())
    a_kw = {k[2:]: v for k, v in kw.items() if k.startswith("a_")}
    b_kw = {k[2:]: v for k, v in kw.items() if k.startswith("b_")}
    both = {k: v for k, v in kw.items() if not k.startswith(("a_", "b_"))}
    return replace(a, **both, **a_kw), replace(b, **both, **b_kw)  # type: ignore[arg-type]


@dataclass
class Wire:
    """Delivers datagrams between two sessions; ``drop`` filters (returns True to lose a datagram)."""

    a: IkeV1Session
    b: IkeV1Session
    now: float = 0.0
    drop: Callable[[str, bytes], bool] = lambda who, d: False
    log: list[tuple[str, bytes, int]] = field(default_factory=list)
    # A NAT in front of ``a``: its source (address, port) as ``b`` sees it, per local port of ``a``.
    a_nat: dict[int, tuple[ipaddress.IPv4Address, int]] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=lambda: {"a": [], "b": []})

    def pump(self, rounds: int = 50) -> int:
        """Moves datagrams until both sides are quiet; returns how many were delivered."""
        moved = 0
        for _ in range(rounds):
            busy = False
            for name, src, dst in (("a", self.a, self.b), ("b", self.b, self.a)):
                for data, addr, lport in src.datagrams_to_send_from(self.now):
                    busy = True
                    self.log.append((name, data, lport))
                    if self.drop(name, data):
                        continue
                    src_addr = (src.cfg.local[0], lport)
                    dport = addr[1]
                    if src is self.a and lport in self.a_nat:
                        src_addr = self.a_nat[lport]
                    if src is self.b and self.a_nat:
                        back = {v: k for k, v in self.a_nat.items()}
                        assert (addr[0], addr[1]) in back, "reply to an address the NAT does not map"
                        dport = back[(addr[0], addr[1])]
                    else:
                        assert addr[0] == dst.cfg.local[0]
                    dst.receive_datagram(data, src_addr, self.now, dport)
                    moved += 1
            self.collect()
            if not busy:
                break
        return moved

    def collect(self) -> None:
        for name, s in (("a", self.a), ("b", self.b)):
            while (e := s.next_event()) is not None:
                self.events[name].append(e)

    def advance(self, to: float, rounds: int = 200) -> None:
        """Runs timers up to time ``to`` (bounded)."""
        for _ in range(rounds):
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None and t <= to]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)
            self.pump()
        self.now = to
        self.pump()

    def of(self, name: str, cls: type[Event]) -> list[Event]:
        return [e for e in self.events[name] if isinstance(e, cls)]


def pair(**kw: object) -> Wire:
    ca, cb = configs(**kw)
    a = IkeV1Session(ca, rng=rng("a"), dh=DefaultDhProvider(rng("da")), now=0.0)
    b = IkeV1Session(cb, rng=rng("b"), dh=DefaultDhProvider(rng("db")), now=0.0)
    return Wire(a, b)
