"""Log rotation as config/logrotate.d/ipsecd does it: rename, then SIGUSR1 (root).

Two daemons negotiate (IKEv1, PSK) so that both the event log and the Oakley log are open and
written; the files are renamed as logrotate renames them, and SIGUSR1 makes the daemon let go of
the renamed files: afterwards no descriptor of the process points at them, and the event log is
open again at its configured path.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.engine_helpers import A4, B4, start_daemon
from tests.netns import Lab, two_hosts, wait_until
from tests.test_daemon_ike import psk_store

pytestmark = pytest.mark.root


def _open_files(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.add(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return out


def test_sigusr1_reopens_the_event_and_oakley_logs(lab: Lab) -> None:
    p = two_hosts(lab)
    logs = {h: (lab.scratch(f"{h}-events.log"), lab.scratch(f"{h}-oakley.log")) for h in ("a", "b")}
    da = start_daemon(
        lab,
        p.a,
        store_text=psk_store(B4),
        extra=("--event-log", str(logs["a"][0]), "--oakley-log", str(logs["a"][1])),
    )
    start_daemon(
        lab,
        p.b,
        store_text=psk_store(A4),
        extra=("--event-log", str(logs["b"][0]), "--oakley-log", str(logs["b"][1])),
    )
    assert p.a.ping(B4, count=1, wait=5).received == 1
    events, oakley = logs["a"]
    wait_until(lambda: "QUICK_MODE_SA_ESTABLISHED" in events.read_text(), 5, what="the quick mode event")
    assert "Quick Mode SA established" in oakley.read_text()
    # The daemon runs as `python3 -m ...` under `ip netns exec`: its pid is the Background's.
    pid = da.proc.pid
    assert {str(events), str(oakley)} <= _open_files(pid)
    rotated = [Path(f"{f}.1") for f in (events, oakley)]
    for f, r in zip((events, oakley), rotated, strict=True):
        f.rename(r)
    assert {str(r) for r in rotated} <= _open_files(pid)  # still writing to the renamed files
    os.kill(pid, signal.SIGUSR1)
    da.proc.wait_output("log files reopened", 10)
    wait_until(lambda: not ({str(r) for r in rotated} & _open_files(pid)), 5, what="the old files closed")
    assert events.exists() and str(events) in _open_files(pid)  # a new event log at the path
    assert "QUICK_MODE_SA_ESTABLISHED" in rotated[0].read_text()
    # Still serving: traffic passes under the SA negotiated before the rotation.
    assert p.a.ping(B4, count=2, interval=0.1).received == 2


def test_start_and_stop_events_with_the_applied_policy(lab: Lab) -> None:
    """DAEMON_STARTED and POLICY_APPLIED (the store applied at start) open the event log;
    DAEMON_STOPPED with the signal closes it (docs/events.md 1000, 1001, 1101)."""
    p = two_hosts(lab)
    events = lab.scratch("a-events.log")
    d = start_daemon(lab, p.a, store_text=psk_store(B4), extra=("--event-log", str(events)))
    wait_until(lambda: "POLICY_APPLIED" in events.read_text(), 5, what="POLICY_APPLIED")
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["name"] for e in lines[:2]] == ["DAEMON_STARTED", "POLICY_APPLIED"], lines
    assert lines[0]["fields"]["config"] == str(d.store), lines[0]
    assert lines[1]["fields"]["filters"] > 0 and lines[1]["fields"]["policy"], lines[1]
    assert d.proc.stop() == 0
    last = json.loads(events.read_text().splitlines()[-1])
    assert (last["name"], last["fields"]["reason"]) == ("DAEMON_STOPPED", "signal SIGTERM"), last
