"""Where events go: a JSON-lines file, syslog (journald reads /dev/log), or several at once.

Pure package: no clock, no sockets.  The caller passes the time of each event (an aware
datetime); syslog goes through the standard ``syslog`` module (libc's syslog(3), which writes to
/dev/log where journald or rsyslog listens).  ``reopen()`` closes and reopens files so that
logrotate's rename-then-SIGUSR1 works: the daemon calls ``EventLog.reopen()`` on SIGUSR1.

JSON-lines record (one object per line, UTF-8, keys in this order)::

    {"time": "2026-11-27T12:24:02.123Z", "id": 1210, "name": "NEGOTIATION_FAILED",
     "priority": "warning", "fields": {"mode": "main", "filter": "...", ...}}
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import syslog as _syslog
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from ipsecd.log.events import Event, JSONValue, Priority

DEFAULT_EVENTS_PATH = Path("/var/log/ipsecd/events.log")


class EventSink(Protocol):
    def emit(self, event: Event, when: _dt.datetime) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


def format_time(when: _dt.datetime) -> str:
    """RFC 3339 UTC time with milliseconds, e.g. 2026-11-27T12:24:02.123Z."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("event time must be timezone-aware (pass datetime.now(timezone.utc))")
    utc = when.astimezone(_dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def event_record(event: Event, when: _dt.datetime) -> dict[str, JSONValue]:
    """The JSON object written for one event."""
    return {
        "time": format_time(when),
        "id": int(event.event_id),
        "name": event.name,
        "priority": event.priority.name.lower(),
        "fields": event.fields(),
    }


# Characters that JSON may leave raw but that some line readers (str.splitlines, editors)
# treat as line breaks; escaped so that one record is one line for every reader.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def event_line(event: Event, when: _dt.datetime) -> str:
    """One JSON line, newline-terminated; non-ASCII kept as UTF-8, no embedded line breaks."""
    text = json.dumps(event_record(event, when), ensure_ascii=False, separators=(",", ":"))
    return text.translate(_LINE_BREAKS) + "\n"


class JsonLinesSink:
    """Appends one JSON object per line to ``path``.

    The file is opened lazily (first event) with O_APPEND, and each line is written with a
    single write(2), so concurrent readers (tail -F) never see half lines from us.
    ``reopen()`` after logrotate renamed the file starts a new file at ``path``.
    """

    def __init__(
        self,
        path: Path | str = DEFAULT_EVENTS_PATH,
        *,
        mode: int = 0o640,
        min_priority: Priority = Priority.DEBUG,
        create_parent: bool = False,
    ) -> None:
        self.path = Path(path)
        self.mode = mode
        self.min_priority = min_priority
        self.create_parent = create_parent
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            if self.create_parent:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, self.mode)
        return self._fd

    def emit(self, event: Event, when: _dt.datetime) -> None:
        if event.priority > self.min_priority:
            return
        data = event_line(event, when).encode("utf-8")
        fd = self._open()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def reopen(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


SyslogWriter = Callable[[int, str], None]

_SYSLOG_LEVEL = {
    Priority.EMERG: _syslog.LOG_EMERG,
    Priority.ALERT: _syslog.LOG_ALERT,
    Priority.CRIT: _syslog.LOG_CRIT,
    Priority.ERR: _syslog.LOG_ERR,
    Priority.WARNING: _syslog.LOG_WARNING,
    Priority.NOTICE: _syslog.LOG_NOTICE,
    Priority.INFO: _syslog.LOG_INFO,
    Priority.DEBUG: _syslog.LOG_DEBUG,
}


def syslog_message(event: Event) -> str:
    """``[1210] NEGOTIATION_FAILED mode=main filter=... reason="no proposal chosen"``."""
    return f"[{int(event.event_id)}] {event.summary()}"


class SyslogSink:
    """Sends events to syslog(3) with the event's priority and the daemon facility.

    journald stores them with SYSLOG_IDENTIFIER=ipsecd and PRIORITY; the event ID is the
    bracketed number at the start of the message.  ``writer`` replaces ``syslog.syslog`` in
    tests.  The time is the receiver's (syslog stamps it); ``when`` is not used here.
    """

    def __init__(
        self,
        ident: str = "ipsecd",
        *,
        facility: int = _syslog.LOG_DAEMON,
        min_priority: Priority = Priority.INFO,
        writer: SyslogWriter | None = None,
    ) -> None:
        self.ident = ident
        self.facility = facility
        self.min_priority = min_priority
        self._writer = writer
        self._opened = False

    def _ensure_open(self) -> None:
        if self._writer is None and not self._opened:
            _syslog.openlog(self.ident, _syslog.LOG_PID | _syslog.LOG_NDELAY, self.facility)
            self._opened = True

    def emit(self, event: Event, when: _dt.datetime) -> None:
        del when  # syslog timestamps on reception
        if event.priority > self.min_priority:
            return
        priority = _SYSLOG_LEVEL[event.priority] | self.facility
        message = syslog_message(event)
        if self._writer is not None:
            self._writer(priority, message)
            return
        self._ensure_open()
        _syslog.syslog(priority, message)

    def reopen(self) -> None:
        self.close()
        self._ensure_open()

    def close(self) -> None:
        if self._opened:
            _syslog.closelog()
            self._opened = False


class EventLog:
    """Fans events out to sinks.  A failing sink (disk full, log dir gone) is counted and
    skipped: logging must never take the IKE service down.  ``errors`` counts failures per sink
    index and ``last_error`` keeps the latest message for ``ipsecctl show status``.
    """

    def __init__(self, sinks: Iterable[EventSink] = ()) -> None:
        self.sinks: list[EventSink] = list(sinks)
        self.errors: list[int] = [0] * len(self.sinks)
        self.last_error: str | None = None

    def add(self, sink: EventSink) -> None:
        self.sinks.append(sink)
        self.errors.append(0)

    def _guard(self, index: int, action: Callable[[], None]) -> None:
        try:
            action()
        except (OSError, ValueError) as exc:
            self.errors[index] += 1
            self.last_error = f"{type(self.sinks[index]).__name__}: {exc}"

    def emit(self, event: Event, when: _dt.datetime) -> None:
        format_time(when)  # a naive time is the caller's bug: raise here, not per sink
        for i, sink in enumerate(self.sinks):
            self._guard(i, functools.partial(sink.emit, event, when))

    def reopen(self) -> None:
        for i, sink in enumerate(self.sinks):
            self._guard(i, sink.reopen)

    def close(self) -> None:
        for i, sink in enumerate(self.sinks):
            self._guard(i, sink.close)
