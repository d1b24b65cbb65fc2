"""daemon/signals.py (SIGHUP/SIGUSR1/SIGTERM on the loop) and daemon/journal.py (native journald)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import signal
import socket
import struct
from pathlib import Path

from ipsecd.daemon import signals
from ipsecd.daemon.journal import JournalSink, journal_datagram, message_id
from ipsecd.log import events as ev
from ipsecd.log.sinks import EventLog

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def test_signals_reach_the_callbacks() -> None:
    seen: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def stop(sig: signal.Signals) -> None:
            seen.append(f"stop {sig.name}")
            done.set()

        uninstall = signals.install(
            loop, reload=lambda: seen.append("reload"), reopen=lambda: seen.append("reopen"), stop=stop
        )
        try:
            for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM):
                os.kill(os.getpid(), sig)
                await asyncio.sleep(0.05)
            await asyncio.wait_for(done.wait(), 5)
        finally:
            uninstall()

    before = signal.getsignal(signal.SIGTERM)
    asyncio.run(scenario())
    assert seen == ["reload", "reopen", "stop SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) == before


def _parse(datagram: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        head, _, tail = rest.partition(b"\n")
        if b"=" in head:
            name, _, value = head.partition(b"=")
            fields[name.decode()] = value.decode()
            rest = tail
        else:  # binary form: NAME\n<le64 length><value>\n
            (length,) = struct.unpack("<Q", tail[:8])
            fields[head.decode()] = tail[8 : 8 + length].decode()
            assert tail[8 + length : 9 + length] == b"\n"
            rest = tail[9 + length :]
    return fields


def _failed(reason: str) -> ev.NegotiationFailed:
    return ev.NegotiationFailed(
        mode=ev.NegotiationMode.MAIN_MODE,
        filter="web/r1/f1",
        failure_point=ev.FailurePoint.PEER,
        reason=reason,
        peer=ipaddress.ip_address("192.0.2.7"),
    )


def test_journal_datagram_fields() -> None:
    fields = _parse(journal_datagram(_failed("no proposal chosen")))
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "ipsecd"
    assert fields["IPSECD_EVENT_ID"] == "1210"
    assert fields["IPSECD_EVENT"] == "NEGOTIATION_FAILED"
    assert fields["IPSECD_MODE"] == "main"
    assert fields["IPSECD_PEER"] == "192.0.2.7"
    assert fields["MESSAGE"].startswith("[1210] NEGOTIATION_FAILED mode=main")
    assert fields["MESSAGE_ID"] == message_id(ev.EventId.NEGOTIATION_FAILED)
    assert "IPSECD_LOCAL" not in fields  # None values are left out
    multi = _parse(journal_datagram(_failed("line one\nline two")))
    assert multi["IPSECD_REASON"] == "line one\nline two"


def test_message_ids_stable_and_distinct() -> None:
    ids = {message_id(e) for e in ev.EventId}
    assert len(ids) == len(ev.EventId)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # published values: changing the namespace or the naming breaks journalctl filters
    assert message_id(ev.EventId.DAEMON_STARTED) == "330d2591e7c35ed2a084aa06ecc893ab"
    assert message_id(ev.EventId.NEGOTIATION_FAILED) == "b4227343331f5da4ae805aa2c9ea39f8"


def test_journal_sink_sends_and_failures_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(path))
        rx.settimeout(5)
        sink = JournalSink(path)
        sink.emit(_failed("x"), T0)
        sink.emit(ev.PolicyChanged(source="x", objects=()), T0)  # info: sent
        sink.emit(ev.PolicyChanged(source="x", objects=("a",)), T0)
        assert _parse(rx.recv(65536))["IPSECD_EVENT_ID"] == "1210"
        assert _parse(rx.recv(65536))["IPSECD_OBJECTS"] == "[]"
        assert _parse(rx.recv(65536))["IPSECD_OBJECTS"] == '["a"]'
        sink.close()
    log = EventLog([JournalSink(tmp_path / "no-journald.sock")])
    log.emit(_failed("x"), T0)
    assert log.errors == [1]
