"""Event sinks: JSON lines file (reopen after rename), syslog, the fan-out EventLog."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import syslog
from pathlib import Path

import pytest

from ipsecd.log import events as ev
from ipsecd.log.sinks import (
    EventLog,
    JsonLinesSink,
    SyslogSink,
    event_line,
    format_time,
)

T0 = dt.datetime(2026, 11, 27, 12, 24, 2, 123456, tzinfo=dt.UTC)
PEER = ipaddress.ip_address("192.0.2.7")


def _failed(reason: str = "no proposal chosen") -> ev.NegotiationFailed:
    return ev.NegotiationFailed(
        mode=ev.NegotiationMode.QUICK_MODE,
        filter="web/rule1/f1",
        failure_point=ev.FailurePoint.ME,
        reason=reason,
        peer=PEER,
    )


def _read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_format_time() -> None:
    assert format_time(T0) == "2026-11-27T12:24:02.123Z"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert format_time(T0.astimezone(plus2)) == "2026-11-27T12:24:02.123Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(dt.datetime(2026, 1, 1))


def test_json_lines_record(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "events.log")
    sink.emit(_failed(), T0)
    sink.emit(ev.DaemonStopped(reason="signal SIGTERM"), T0 + dt.timedelta(seconds=1))
    sink.close()
    records = _read(tmp_path / "events.log")
    assert records[0] == {
        "time": "2026-11-27T12:24:02.123Z",
        "id": 1210,
        "name": "NEGOTIATION_FAILED",
        "priority": "warning",
        "fields": {
            "mode": "quick",
            "filter": "web/rule1/f1",
            "failure_point": "me",
            "reason": "no proposal chosen",
            "peer": "192.0.2.7",
            "local": None,
            "notify": None,
        },
    }
    assert records[1]["id"] == 1001 and records[1]["priority"] == "notice"
    assert list(records[0]) == ["time", "id", "name", "priority", "fields"]


def test_newlines_and_unicode_stay_on_one_line(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "e.log")
    sink.emit(_failed("bad\nline \u00e9\u2028\x85"), T0)
    sink.close()
    text = (tmp_path / "e.log").read_text(encoding="utf-8")
    assert text.count("\n") == 1
    assert _read(tmp_path / "e.log")[0]["fields"]["reason"] == "bad\nline \u00e9\u2028\x85"  # type: ignore[index]


def test_file_mode_and_append(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    path.write_text('{"old": true}\n')
    sink = JsonLinesSink(path, mode=0o600)
    sink.emit(_failed(), T0)
    sink.close()
    assert len(path.read_text().splitlines()) == 2  # appended, not truncated
    fresh = JsonLinesSink(tmp_path / "new.log", mode=0o640)
    old = os.umask(0o022)
    try:
        fresh.emit(_failed(), T0)
    finally:
        os.umask(old)
        fresh.close()
    assert (tmp_path / "new.log").stat().st_mode & 0o777 == 0o640


def test_reopen_after_logrotate_rename(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    sink = JsonLinesSink(path)
    sink.emit(_failed("one"), T0)
    os.rename(path, tmp_path / "events.log.1")  # what logrotate does
    sink.emit(_failed("two"), T0)  # still goes to the renamed file until reopen
    sink.reopen()  # SIGUSR1
    sink.emit(_failed("three"), T0)
    sink.close()
    assert [r["fields"]["reason"] for r in _read(tmp_path / "events.log.1")] == ["one", "two"]  # type: ignore[index]
    assert [r["fields"]["reason"] for r in _read(path)] == ["three"]  # type: ignore[index]


def test_min_priority_filters(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "e.log", min_priority=ev.Priority.WARNING)
    sink.emit(ev.PolicyChanged(source="x", objects=()), T0)  # INFO: dropped
    sink.emit(_failed(), T0)  # WARNING: kept
    sink.close()
    assert [r["id"] for r in _read(tmp_path / "e.log")] == [1210]


def test_missing_directory_error_and_create_parent(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        JsonLinesSink(tmp_path / "nodir" / "e.log").emit(_failed(), T0)
    sink = JsonLinesSink(tmp_path / "made" / "e.log", create_parent=True)
    sink.emit(_failed(), T0)
    sink.close()
    assert len(_read(tmp_path / "made" / "e.log")) == 1


def test_syslog_sink_priority_and_message() -> None:
    sent: list[tuple[int, str]] = []
    sink = SyslogSink(writer=lambda prio, msg: sent.append((prio, msg)))
    sink.emit(_failed(), T0)
    sink.emit(ev.DaemonStarted(version="0.1.0", config="/etc/ipsecd", policy=None), T0)
    sink.emit(ev.SARekeyed(mode=ev.NegotiationMode.MAIN_MODE, peer=PEER, old_spi=None, new_spi=None), T0)
    assert sent[0] == (
        syslog.LOG_WARNING | syslog.LOG_DAEMON,
        '[1210] NEGOTIATION_FAILED mode=quick filter=web/rule1/f1 failure_point=me reason="no proposal chosen" '
        "peer=192.0.2.7",
    )
    assert sent[1][0] == syslog.LOG_NOTICE | syslog.LOG_DAEMON
    assert sent[1][1] == "[1000] DAEMON_STARTED version=0.1.0 config=/etc/ipsecd"
    assert sent[2][0] == syslog.LOG_INFO | syslog.LOG_DAEMON
    debug_only = SyslogSink(min_priority=ev.Priority.ERR, writer=lambda p, m: sent.append((p, m)))
    debug_only.emit(_failed(), T0)
    assert len(sent) == 3


def test_syslog_sink_real_module_does_not_raise() -> None:
    # Without a /dev/log listener libc drops the message silently; it must not raise.
    sink = SyslogSink(ident="ipsecd-test")
    sink.emit(ev.DaemonStopped(reason="test"), T0)
    sink.reopen()
    sink.close()


class _Broken:
    def emit(self, event: ev.Event, when: dt.datetime) -> None:
        raise OSError(28, "No space left on device")

    def reopen(self) -> None:
        raise OSError(2, "gone")

    def close(self) -> None:
        pass


def test_event_log_isolates_failing_sinks(tmp_path: Path) -> None:
    good = JsonLinesSink(tmp_path / "e.log")
    log = EventLog([_Broken(), good])
    log.emit(_failed(), T0)
    log.emit(_failed(), T0)
    log.reopen()
    log.close()
    assert log.errors == [3, 0]
    assert log.last_error is not None and "gone" in log.last_error
    assert len(_read(tmp_path / "e.log")) == 2
    with pytest.raises(ValueError):
        log.emit(_failed(), dt.datetime(2026, 1, 1))  # naive time: the caller's bug


def test_event_line_is_compact_json() -> None:
    line = event_line(ev.DaemonStopped(reason="x"), T0)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line)["fields"] == {"reason": "x"}
