"""Run a block of code with the calling thread inside another network namespace.

Python 3.11 has no ``os.setns``: this calls setns(2) through ctypes. Only the calling thread moves
(a network namespace is per thread), and it moves back when the block ends. Sockets, TUN devices
and netlink handles created inside the block belong to the namespace for their whole life.
Namespaces are named as by ``ip netns`` (a bind mount under /run/netns).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000  # <linux/sched.h>

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into {what}: {os.strerror(err)}")


@contextmanager
def netns_entered(name: str) -> Iterator[None]:
    """Move the calling thread into network namespace ``name`` for the block, then back."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid network namespace name {name!r}")
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise OSError(2, f"no network namespace named {name!r}") from None
        try:
            _setns(target, name)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own, "the original network namespace")
    finally:
        os.close(own)
