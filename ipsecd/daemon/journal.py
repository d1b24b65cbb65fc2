"""An event sink speaking journald's native protocol, so events are searchable by field.

    journalctl IPSECD_EVENT_ID=1210
    journalctl MESSAGE_ID=<the event's message id> IPSECD_PEER=192.0.2.7

Each event is one datagram to /run/systemd/journal/socket made of ``FIELD=value`` lines
(values with a line break use the binary form: name, newline, 64-bit little-endian length,
value, newline).  Fields: MESSAGE (the same one-line summary syslog gets), PRIORITY,
SYSLOG_IDENTIFIER, SYSLOG_FACILITY, MESSAGE_ID (a stable 128-bit ID per event kind, derived from
the event name), IPSECD_EVENT_ID, IPSECD_EVENT, and IPSECD_<FIELD> for each event field.
Where journald does not run, use ipsecd.log.sinks.SyslogSink instead.
"""

from __future__ import annotations

import datetime as _dt
import json
import socket
import struct
import uuid
from pathlib import Path

from ipsecd.log.events import Event, EventId, Priority
from ipsecd.log.sinks import syslog_message

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# Namespace for MESSAGE_ID values; the IDs below must never change once published.
_NAMESPACE = uuid.UUID("6b1f3c2e-2f0a-4d6e-9c71-5a1d0e3b8f42")
SYSLOG_FACILITY_DAEMON = 3


def message_id(event_id: EventId) -> str:
    """The journald MESSAGE_ID of an event kind: 32 lower-case hex digits, stable."""
    return uuid.uuid5(_NAMESPACE, f"ipsecd.{event_id.name}").hex


def _field(name: str, value: str) -> bytes:
    data = value.encode("utf-8")
    if b"\n" in data:
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def journal_datagram(event: Event, *, identifier: str = "ipsecd") -> bytes:
    parts = [
        _field("MESSAGE", syslog_message(event)),
        _field("PRIORITY", str(int(event.priority))),
        _field("SYSLOG_IDENTIFIER", identifier),
        _field("SYSLOG_FACILITY", str(SYSLOG_FACILITY_DAEMON)),
        _field("MESSAGE_ID", message_id(event.event_id)),
        _field("IPSECD_EVENT_ID", str(int(event.event_id))),
        _field("IPSECD_EVENT", event.name),
    ]
    for key, value in event.fields().items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(_field("IPSECD_" + key.upper(), text))
    return b"".join(parts)


class JournalSink:
    """Sends events to journald; errors (no journald, message too large) raise OSError, which
    ipsecd.log.sinks.EventLog counts without stopping the daemon."""

    def __init__(
        self,
        path: Path | str = JOURNAL_SOCKET,
        *,
        identifier: str = "ipsecd",
        min_priority: Priority = Priority.INFO,
    ) -> None:
        self.path = str(path)
        self.identifier = identifier
        self.min_priority = min_priority
        self._sock: socket.socket | None = None

    def emit(self, event: Event, when: _dt.datetime) -> None:
        del when  # journald stamps the reception time itself
        if event.priority > self.min_priority:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.sendto(journal_datagram(event, identifier=self.identifier), self.path)

    def reopen(self) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()
