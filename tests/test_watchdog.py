"""systemd watchdog: WATCHDOG=1 every half of $WATCHDOG_USEC from the event loop, with STATUS=."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from ipsecd.daemon.watchdog import STATUS_INTERVAL, ServicePinger, watchdog_interval
from tests.engine_helpers import A4, B4, start_daemon, xfrm_store
from tests.netns import Lab, two_hosts


def test_watchdog_interval_from_the_environment() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None  # not us
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def _status() -> str:
    return "policy 'p': 2 SAs,\n1 IKE SAs"


def _collect(
    env: dict[str, str], rx: socket.socket, seconds: float, status_interval: float = STATUS_INTERVAL
) -> tuple[list[str], int]:
    async def run() -> int:
        loop = asyncio.get_running_loop()
        pinger = ServicePinger(loop, _status, environ=env, status_interval=status_interval)
        pinger.start()
        await asyncio.sleep(seconds)
        pinger.cancel()
        return pinger.sent

    sent = asyncio.run(run())
    got = []
    rx.setblocking(False)
    deadline = time.monotonic() + 2
    while len(got) < sent and time.monotonic() < deadline:
        try:
            got.append(rx.recv(4096).decode())
        except BlockingIOError:
            time.sleep(0.01)
    return got, sent


def test_watchdog_pings_arrive_repeatedly_with_status(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(path)
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}  # a ping every 50 ms
        got, sent = _collect(env, rx, 0.5)
    assert 5 <= sent <= 12, sent
    assert len(got) == sent
    assert all(m.splitlines() == ["WATCHDOG=1", "STATUS=policy 'p': 2 SAs, 1 IKE SAs"] for m in got), got


def test_without_watchdog_only_status_and_without_systemd_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(path)
        got, sent = _collect({"NOTIFY_SOCKET": path}, rx, 0.2)
        assert (got, sent) == ([], 0)  # READY=1 carried the first STATUS=; the next one in 30 s
        got, sent = _collect({"NOTIFY_SOCKET": path}, rx, 0.5, status_interval=0.1)
    assert STATUS_INTERVAL == 30.0
    assert 3 <= sent <= 6 and got == ["STATUS=policy 'p': 2 SAs, 1 IKE SAs"] * sent, got
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(tmp_path / "unused.sock"))
        got, sent = _collect({"WATCHDOG_USEC": "100000"}, rx, 0.2)
    assert (got, sent) == ([], 0)


@pytest.mark.root
def test_daemon_pings_the_watchdog(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real daemon under a fake systemd: READY=1, then WATCHDOG=1 repeatedly with its SA count."""
    p = two_hosts(lab)
    notify_path = lab.scratch("notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(notify_path))
        rx.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
        monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 200 ms
        start_daemon(lab, p.a, store_text=xfrm_store("esp-gcm", "transport", False, A4, B4))
        msgs = [rx.recv(4096).decode() for _ in range(6)]
    assert any("READY=1" in m for m in msgs), msgs
    pings = [m for m in msgs if m.startswith("WATCHDOG=1\n")]
    assert len(pings) >= 4, msgs
    assert "STATUS=policy None: 2 SAs, 0 IKE SAs" in pings[-1], pings
