"""Shared fixtures: root-only tests skip with a reason, and the network-namespace lab."""

from __future__ import annotations

from collections.abc import Iterator

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


def pytest_sessionstart(session: pytest.Session) -> None:
    # Namespaces left by a run killed by SIGTERM or SIGKILL (their creating process is gone).
    # No SIGTERM handler is installed here on purpose: tests of the daemon's own signal handling
    # expect the default one.
    if netns.is_root():
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
