"""POSIX signals of the service, on the asyncio loop.

SIGHUP  -> reload   (systemctl reload ipsecd: re-read the store, apply it all or nothing)
SIGUSR1 -> reopen   (logrotate's postrotate: reopen events.log and oakley.log)
SIGTERM, SIGINT -> stop(signal)

The callbacks run on the event loop (loop.add_signal_handler), never inside a signal frame.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install(
    loop: asyncio.AbstractEventLoop,
    *,
    reload: Callable[[], None],
    reopen: Callable[[], None],
    stop: Callable[[signal.Signals], None],
) -> Callable[[], None]:
    """Install the handlers; returns a function that removes them again."""
    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, reopen)
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)

    def uninstall() -> None:
        for sig in (signal.SIGHUP, signal.SIGUSR1, *STOP_SIGNALS):
            loop.remove_signal_handler(sig)

    return uninstall
