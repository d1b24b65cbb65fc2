"""Shared fixtures: root-only tests skip with a reason, and the network-namespace lab."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from tests import netns

ROOT_REASON = "needs root (network namespaces, TUN, raw sockets): run as root, e.g. `sudo python3 -m pytest`"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if netns.is_root():
        return
    skip = pytest.mark.skip(reason=ROOT_REASON)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into KeyboardInterrupt so context managers and fixture finalizers still run.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session: pytest.Session) -> None:
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _sigterm)
    if netns.is_root():
        # Namespaces left by a run that was SIGKILLed (their creating process is gone).
        netns.sweep_leftovers()


@pytest.fixture
def lab() -> Iterator[netns.Lab]:
    """A fresh lab of network namespaces, torn down after the test whatever happens."""
    if not netns.is_root():
        pytest.skip(ROOT_REASON)
    lb = netns.Lab()
    try:
        yield lb
    finally:
        lb.close()
