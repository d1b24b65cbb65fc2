"""A fake engine for the monitor tests: the real control server, a MonitorState filled with
realistic SAs and counters, on its own event loop in a thread."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipsecd.cli.dynamic import DynamicContext
from ipsecd.cli.main import run
from ipsecd.daemon.control import ControlError, ControlServer
from ipsecd.daemon.monitor import MainModeSA, MonitorConfig, MonitorState, QuickModeSA, SaKeys
from ipsecd.policy.classifier import compile_store
from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import Store
from ipsecd.policy.store import parse_store_texts

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example"
ME = ipaddress.ip_address("192.0.2.10")
HEAD = ipaddress.ip_address("198.51.100.1")
SERVER = ipaddress.ip_address("10.1.20.5")
HOST = StaticHost(addresses=(ME,), dns=(ipaddress.ip_address("192.0.2.53"),))
EXAMPLE_PSK = "change-me-branch-to-head-office"

# Keys of the fake SAs (test values, recognisable in the Wireshark export).
ENC_IN = bytes(range(32))
AUTH_IN = bytes(range(100, 132))
ENC_OUT = bytes(range(32, 64))
AUTH_OUT = bytes(range(132, 164))
GCM_KEY = bytes(range(200, 220))  # 16-byte key + 4-byte salt (RFC 4106 section 8.1)


def example_store() -> Store:
    files = sorted(EXAMPLE.glob("*.toml"))
    return parse_store_texts([(str(f), f.read_text()) for f in files])


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeEngine:
    """Fills the state like the engine would, and answers its callbacks."""

    state: MonitorState
    deleted: list[tuple[str, list[int]]] = field(default_factory=list)
    configs: list[MonitorConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state.on_delete = self.delete
        self.state.on_config = self.config

    def delete(self, what: str, ids: list[int]) -> None:
        self.deleted.append((what, ids))
        for i in ids:
            if what == "mmsas":
                self.state.remove_mm_sa(i)
            else:
                self.state.remove_qm_sa(i)
                self.state.count_qm("key_deletions", 2)

    def config(self, new: MonitorConfig) -> None:
        if new.ipsecexempt == 0 and new.ikelogging:
            raise ControlError("conflict", "fake engine refuses ipsecexempt 0 with ikelogging")
        self.configs.append(new)

    def fill(self) -> None:
        s, now = self.state, self.state.clock()
        store = example_store()
        s.set_policy(store, compile_store(store, HOST))
        s.add_mm_sa(
            MainModeSA(
                id=1,
                local=ME,
                peer=HEAD,
                icookie=0x1F2E3D4C5B6A7988,
                rcookie=0x0123456789ABCDEF,
                auth_method="psk",
                local_identity="192.0.2.10",
                peer_identity="198.51.100.1",
                encryption="AES256",
                integrity="SHA256",
                dh_group=14,
                lifetime_seconds=28800,
                expires_at=now + 27000,
                policy="Branch office",
                rule="To head office",
            )
        )
        s.add_mm_sa(
            MainModeSA(
                id=2,
                local=ME,
                peer=SERVER,
                icookie=0xAAAA0000BBBB1111,
                rcookie=0xCCCC2222DDDD3333,
                auth_method="psk",
                local_identity="192.0.2.10",
                peer_identity="10.1.20.5",
                encryption="AES128",
                integrity="SHA256",
                dh_group=19,
                lifetime_seconds=28800,
                expires_at=now + 28000,
                role="responder",
                ike_version=2,
                peer_port=4500,
                local_port=4500,
            )
        )
        s.add_qm_sa(
            QuickModeSA(
                id=10,
                mmsa_id=1,
                local=ME,
                peer=HEAD,
                src="10.1.0.0/16",
                dst="10.2.0.0/16",
                protocol=0,
                srcport=0,
                dstport=0,
                mode="tunnel",
                inbound_spi=0xC0FFEE01,
                outbound_spi=0x0BADF00D,
                esp_encryption="AES256",
                esp_integrity="SHA256",
                ah_integrity=None,
                lifetime_seconds=3600,
                lifetime_kilobytes=100000,
                expires_at=now + 3000,
                pfs_group=14,
                filter="Branch office/To head office",
                filteraction="Require AES",
            ),
            SaKeys(ENC_IN, AUTH_IN, ENC_OUT, AUTH_OUT),
        )
        s.add_qm_sa(
            QuickModeSA(
                id=11,
                mmsa_id=2,
                local=ME,
                peer=SERVER,
                src="192.0.2.10",
                dst="10.1.20.5",
                protocol=6,
                srcport=0,
                dstport=443,
                mode="transport",
                inbound_spi=0x00001001,
                outbound_spi=0x00002002,
                esp_encryption="AESGCM128",
                esp_integrity=None,
                ah_integrity=None,
                lifetime_seconds=3600,
                lifetime_kilobytes=100000,
                expires_at=now + 3500,
                udp_encap=True,
                filter="Branch office/Servers",
                filteraction="Require AES",
            ),
            SaKeys(GCM_KEY, b"", GCM_KEY[::-1], b""),
        )
        s.update_qm_traffic(10, bytes_in=1_048_576, bytes_out=524_288, packets_in=800, packets_out=400)
        s.update_qm_traffic(11, bytes_in=4096, bytes_out=8192, packets_in=4, packets_out=8)
        for name, n in (
            ("oakley_main_mode", 2),
            ("oakley_quick_mode", 2),
            ("total_acquire", 3),
            ("negotiation_failures", 1),
            ("authentication_failures", 1),
            ("total_get_spi", 2),
            ("key_additions", 2),
        ):
            s.count_mm(name, n)
        s.set_mm_gauge("connection_list_size", 2)
        for name, n in (
            ("key_additions", 4),
            ("rekeys", 1),
            ("bad_spi_packets", 3),
            ("packets_with_replay_detection", 1),
            ("confidential_bytes_sent", 532_480),
            ("confidential_bytes_received", 1_052_672),
            ("authenticated_bytes_sent", 532_480),
            ("authenticated_bytes_received", 1_052_672),
            ("transport_bytes_sent", 8192),
            ("transport_bytes_received", 4096),
            ("tunnel_bytes_sent", 524_288),
            ("tunnel_bytes_received", 1_048_576),
        ):
            s.count_qm(name, n)


@contextmanager
def fake_daemon(
    path: Path, fill: bool = True, **server_options: Any
) -> Iterator[tuple[MonitorState, FakeEngine]]:
    """The real ControlServer with a MonitorState and a FakeEngine, in a thread."""
    clock = FakeClock()
    state = MonitorState(clock, wall_clock=lambda: 1796300000.0)
    state.started_at = clock.now - 3600
    engine = FakeEngine(state)
    if fill:
        engine.fill()
    state.store_source = "config/example"
    server = ControlServer(path, **server_options)
    state.register(server)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10), "server did not start"
    if failure:
        raise failure[0]
    try:
        yield state, engine
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive()


@dataclass(frozen=True)
class Out:
    rc: int
    out: str
    err: str


def ctl(sock: Path, *argv: str) -> Out:
    """Run ``ipsecctl --control SOCK ARGV...`` in-process."""
    out, err = io.StringIO(), io.StringIO()
    rc = run(["--control", str(sock), *argv], out=out, err=err)
    return Out(rc, out.getvalue(), err.getvalue())


def dynamic_context(sock: Path, **kw: object) -> tuple[DynamicContext, io.StringIO]:
    out = io.StringIO()
    ctx = DynamicContext(control=sock, json=False, out=out, err=io.StringIO(), **kw)  # type: ignore[arg-type]
    return ctx, out
