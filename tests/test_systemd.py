"""The service files: systemd unit (systemd-analyze verify), logrotate, sd_notify, the ipsecd CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ipsecd import __version__
from ipsecd.daemon import main as daemon_main
from ipsecd.daemon import notify

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "ipsecd.service"
LOGROTATE = ROOT / "config" / "logrotate.d" / "ipsecd"
EXEC_START = "ExecStart=/usr/local/bin/ipsecd --config /etc/ipsecd --event-log /var/log/ipsecd/events.log"


def _tool(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}", f"/bin/{name}") if os.access(p, os.X_OK)), None
    )
    # Not a skip: tools/bootstrap installs it (APT_PACKAGES: systemd, logrotate).
    assert path is not None, f"{name} is missing: run tools/bootstrap"
    return path


def _unit_entries(text: str) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def _verify(unit_text: str, tmp_path: Path) -> tuple[int, list[str]]:
    """systemd-analyze verify on a copy; returns its status and the lines about our unit."""
    path = tmp_path / "ipsecd.service"
    path.write_text(unit_text)
    r = subprocess.run(
        [_tool("systemd-analyze"), "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )
    ours = [
        line
        for line in (r.stdout + r.stderr).splitlines()
        if "ipsecd.service" in line or str(tmp_path) in line
    ]
    return r.returncode, ours


def _runnable_copy() -> str:
    """verify insists that ExecStart's binary exists: point it at this checkout's module."""
    text = UNIT.read_text()
    assert EXEC_START in text
    args = EXEC_START.split(" ", 1)[1]
    return text.replace(EXEC_START, f"ExecStart={sys.executable} -m ipsecd.daemon.main {args}")


def test_unit_verifies(tmp_path: Path) -> None:
    rc, ours = _verify(_runnable_copy(), tmp_path)
    assert rc == 0, ours
    assert ours == [], ours  # no warning either (unknown keys only warn, with status 0)


def test_verify_catches_broken_units(tmp_path: Path) -> None:
    """The check above can fail: a typo'd key is reported, a missing binary fails."""
    rc, ours = _verify(_runnable_copy().replace("NoNewPrivileges=", "NoNewPrivilegs="), tmp_path)
    assert any("NoNewPrivilegs" in line for line in ours), ours
    missing = UNIT.read_text().replace(EXEC_START, "ExecStart=/nonexistent/ipsecd --config /etc/ipsecd")
    rc, ours = _verify(missing, tmp_path)
    assert rc != 0 and any("/nonexistent/ipsecd" in line for line in ours), ours


def test_unit_contents() -> None:
    e = _unit_entries(UNIT.read_text())
    assert e["Type"] == ["notify"]
    assert e["ExecStart"] == [
        "/usr/local/bin/ipsecd --config /etc/ipsecd --event-log /var/log/ipsecd/events.log"
    ]
    assert e["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert e["RuntimeDirectory"] == ["ipsecd"]
    assert e["LogsDirectory"] == ["ipsecd"]
    caps = e["CapabilityBoundingSet"][0].split()
    assert {"CAP_NET_ADMIN", "CAP_NET_RAW"} <= set(caps)
    assert "CAP_SYS_ADMIN" not in caps
    assert e["NoNewPrivileges"] == ["yes"]
    assert e["ProtectSystem"] == ["strict"]
    assert "/dev/net/tun rw" in e["DeviceAllow"]
    assert "AF_NETLINK" in e["RestrictAddressFamilies"][0]
    assert "PrivateDevices" not in e  # it would hide /dev/net/tun


def test_logrotate_config_parses(tmp_path: Path) -> None:
    r = subprocess.run(
        [_tool("logrotate"), "--debug", "--state", str(tmp_path / "state"), str(LOGROTATE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "error" not in out.lower(), out
    assert "SIGUSR1" in LOGROTATE.read_text()


def test_logrotate_rotates_and_runs_postrotate(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_text('{"id": 1000}\n')
    marker = tmp_path / "postrotate-ran"
    conf = LOGROTATE.read_text().replace("/var/log/ipsecd/events.log", str(log))
    conf = conf.replace(
        "systemctl kill --kill-whom=main --signal=SIGUSR1 ipsecd.service >/dev/null 2>&1 || true",
        f"touch {marker}",
    )
    conf = conf.replace("create 0640 root adm", "create 0640")
    conf_path = tmp_path / "ipsecd.conf"
    conf_path.write_text(conf)
    conf_path.chmod(0o644)
    r = subprocess.run(
        [_tool("logrotate"), "--force", "--state", str(tmp_path / "state"), str(conf_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "events.log.1").read_text() == '{"id": 1000}\n'
    assert log.exists() and log.stat().st_size == 0
    assert log.stat().st_mode & 0o777 == 0o640
    assert marker.exists(), "postrotate (the SIGUSR1 line) did not run"


# --- sd_notify ------------------------------------------------------------------------------


def _receiver(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_notify_ready_to_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with _receiver(path) as rx:
        assert notify.ready("serving 2 rules", environ={"NOTIFY_SOCKET": path})
        msg = rx.recv(4096).decode()
    assert msg.splitlines() == ["READY=1", "STATUS=serving 2 rules", f"MAINPID={os.getpid()}"]


def test_notify_abstract_socket_and_other_states() -> None:
    name = f"ipsecd-test-{os.getpid()}"
    with _receiver("\0" + name) as rx:
        env = {"NOTIFY_SOCKET": "@" + name}
        assert notify.reloading("re-reading store", environ=env)
        first = rx.recv(4096).decode().splitlines()
        assert notify.stopping(environ=env)
        assert notify.status("multi\nline", environ=env)
        assert rx.recv(4096).decode() == "STOPPING=1"
        assert rx.recv(4096).decode() == "STATUS=multi line"
    assert first[0] == "RELOADING=1"
    assert first[1].startswith("MONOTONIC_USEC=") and int(first[1].split("=")[1]) > 0
    assert first[2] == "STATUS=re-reading store"


def test_notify_without_systemd_is_a_noop() -> None:
    assert notify.ready(environ={}) is False
    assert notify.ready(environ={"NOTIFY_SOCKET": "vsock:2:1"}) is False


# --- the ipsecd command ---------------------------------------------------------------------


def test_ipsecd_version() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ipsecd.daemon.main", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 0
    assert r.stdout.strip() == f"ipsecd {__version__}"


def test_ipsecd_bad_store_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "ipsecd.toml"
    bad.write_text("[daemon]\nipsecexempt = 9\n")
    assert daemon_main.main(["--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "cannot load the store" in err and "ipsecexempt" in err
    assert daemon_main.main(["--config", str(tmp_path / "missing")]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        daemon_main.main(["--bogus"])
    assert info.value.code == 2
