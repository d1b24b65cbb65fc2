"""tools/install-service: the unit installed for this machine verifies and its ExecStart runs (root).

systemd is not PID 1 on the test machine, so the service itself cannot be started; instead the
test runs the installed unit's ExecStart command line (with a scratch store and control socket)
in a network namespace, with $NOTIFY_SOCKET as systemd would set it, and checks READY=1, the
ExecReload signal (SIGHUP: RELOADING=1 then READY=1) and a clean stop on SIGTERM.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.netns import Lab

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "install-service"


def _install(dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(dest)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def _entries(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k, []).append(v)
    return out


def test_install_service_writes_a_unit_for_this_machine(tmp_path: Path) -> None:
    r = _install(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    unit = (tmp_path / "etc/systemd/system/ipsecd.service").read_text()
    e = _entries(unit)
    (exec_start,) = e["ExecStart"]
    binary, *rest = shlex.split(exec_start)
    assert rest == ["--config", "/etc/ipsecd", "--event-log", "/var/log/ipsecd/events.log"]
    assert os.access(binary, os.X_OK) and "shims" not in binary
    assert Path(binary).read_text().startswith("#!") and "python" in Path(binary).read_text().splitlines()[0]
    home = binary.startswith(("/root/", "/home/"))
    assert e["ProtectHome"] == ["read-only" if home else "yes"]
    # Everything else is the template's.
    template = _entries((ROOT / "systemd/ipsecd.service").read_text())
    for k in ("ExecStart", "ProtectHome"):
        template.pop(k)
        e.pop(k)
    assert e == template
    # The installed unit verifies as it is (its binary exists), with no warning about it.
    v = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "etc/systemd/system/ipsecd.service")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    assert v.returncode == 0 and "ipsecd.service" not in v.stdout + v.stderr, v.stdout + v.stderr
    assert (tmp_path / "etc/logrotate.d/ipsecd").read_text() == (
        ROOT / "config/logrotate.d/ipsecd"
    ).read_text()
    store = tmp_path / "etc/ipsecd/ipsecd.toml"
    assert store.stat().st_mode & 0o777 == 0o600
    # Idempotent: a second run keeps the store and writes the same unit.
    store.write_text("[daemon]\n# mine\n")
    assert _install(tmp_path).returncode == 0
    assert store.read_text() == "[daemon]\n# mine\n"
    assert (tmp_path / "etc/systemd/system/ipsecd.service").read_text() == unit


def test_installed_exec_start_runs_the_daemon(tmp_path: Path, lab: Lab) -> None:
    assert _install(tmp_path).returncode == 0
    e = _entries((tmp_path / "etc/systemd/system/ipsecd.service").read_text())
    argv = shlex.split(e["ExecStart"][0])
    store = tmp_path / "etc/ipsecd"
    argv[argv.index("/etc/ipsecd")] = str(store)
    argv[argv.index("/var/log/ipsecd/events.log")] = str(tmp_path / "events.log")
    argv += ["--control", str(tmp_path / "control.sock"), "--state-dir", str(tmp_path / "state")]
    host = lab.host("svc")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(20)
    with notify:
        # The console script imports the installed ipsecd; PYTHONPATH puts this checkout first, so the
        # unit is tried against the daemon of this tree (an editable install of another tree may lag).
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "PYTHONPATH": str(ROOT)}
        proc = host.popen(argv, name="ipsecd-svc", env=env)
        assert "READY=1" in notify.recv(4096).decode(), proc.output()
        proc.proc.send_signal(signal.SIGHUP)  # ExecReload=/bin/kill -HUP $MAINPID
        assert "RELOADING=1" in notify.recv(4096).decode()
        assert "READY=1" in notify.recv(4096).decode()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.output()
