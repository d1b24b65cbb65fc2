"""The systemd watchdog and periodic status (sd_notify(3), sd_watchdog_enabled(3)).

With ``WatchdogSec=`` in the unit, systemd passes ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the
process meant to ping) and kills and restarts the service when no ``WATCHDOG=1`` arrives within
that time. ``ServicePinger`` sends ``WATCHDOG=1`` from the engine's event loop every half of it, so
a wedged loop (not merely a live process) stops the pings; each ping carries ``STATUS=`` with the
SA counts for ``systemctl status``. Without the watchdog it still refreshes ``STATUS=`` every
``status_interval`` seconds (``STATUS_INTERVAL``) when ``$NOTIFY_SOCKET`` is set; with neither it does nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

from ipsecd.daemon import notify

STATUS_INTERVAL = 30.0  # seconds between STATUS= updates without a watchdog


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when not asked for."""
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class ServicePinger:
    """WATCHDOG=1 and STATUS= on a timer of the running loop; ``cancel()`` stops it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        status: Callable[[], str],
        *,
        environ: Mapping[str, str] | None = None,
        log: Callable[[str], None] = lambda _msg: None,
        status_interval: float = STATUS_INTERVAL,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.loop = loop
        self.status = status
        self.log = log
        self.interval = watchdog_interval(self.environ)
        self.status_interval = status_interval
        self.sent = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return bool(self.environ.get("NOTIFY_SOCKET"))

    def start(self) -> None:
        """The first message one interval after READY=1 (which carries its own STATUS=)."""
        if self.active:
            self._schedule()

    def _schedule(self) -> None:
        delay = self.interval if self.interval is not None else self.status_interval
        self._timer = self.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        try:
            state = "STATUS=" + self.status().replace("\n", " ")
            if self.interval is not None:
                state = "WATCHDOG=1\n" + state
            if notify.notify(state, environ=self.environ):
                self.sent += 1
        except OSError as exc:  # systemd gone or the socket full: try again next time
            self.log(f"sd_notify failed: {exc}")
        finally:
            self._schedule()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
