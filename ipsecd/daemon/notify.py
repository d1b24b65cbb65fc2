"""sd_notify(3) by hand: tell systemd (Type=notify) that the daemon is ready, reloading, ...

The protocol: one datagram of newline-separated VAR=value assignments sent to the AF_UNIX socket
named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).  Without
$NOTIFY_SOCKET (not started by systemd) every call is a no-op returning False.

The engine calls ``ready()`` once the store is applied and the control socket listens,
``reloading()`` / ``ready()`` around a SIGHUP reload, and ``stopping()`` on shutdown.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used on this platform


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. "READY=1\\nSTATUS=...") to systemd; False when there is nobody."""
    env = os.environ if environ is None else environ
    target = env.get("NOTIFY_SOCKET", "")
    address = _address(target) if target else None
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode("utf-8"))
    return True


def _status(text: str | None) -> str:
    return "" if text is None else "\nSTATUS=" + text.replace("\n", " ")


def ready(status: str | None = None, *, environ: Mapping[str, str] | None = None) -> bool:
    return notify(f"READY=1{_status(status)}\nMAINPID={os.getpid()}", environ=environ)


def reloading(status: str | None = None, *, environ: Mapping[str, str] | None = None) -> bool:
    # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload; older ones ignore it.
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}{_status(status)}", environ=environ)


def stopping(status: str | None = None, *, environ: Mapping[str, str] | None = None) -> bool:
    return notify(f"STOPPING=1{_status(status)}", environ=environ)


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    return notify(_status(text).lstrip("\n"), environ=environ)
