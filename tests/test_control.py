"""The control protocol: server in an asyncio loop on a thread, the synchronous client in the test."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from ipsecd.daemon.control import (
    MAX_REQUEST_BYTES,
    ControlClient,
    ControlConnectionError,
    ControlError,
    ControlServer,
    GroupAuthorizer,
    PeerCred,
    Request,
    parse_request,
)

ROOT = os.geteuid() == 0


@contextmanager
def running(server: ControlServer) -> Iterator[ControlServer]:
    """Run ``server`` on its own event loop in a thread; stop and close it afterwards."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "server did not start"
    if failure:
        thread.join(5)
        raise failure[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive()


def _raw_exchange(path: Path, data: bytes, timeout: float = 5.0) -> list[dict[str, object]]:
    """Send raw bytes, half-close, and read every answer line until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        # the server may refuse (busy, permission) and close before reading what we send
        with suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    return [json.loads(line) for line in buf.splitlines() if line.strip()]


def _server(tmp_path: Path, **kw: object) -> ControlServer:
    server = ControlServer(tmp_path / "run" / "control.sock", **kw)  # type: ignore[arg-type]

    def show(req: Request) -> object:
        return {"what": req.args.get("what"), "uid": req.peer.uid}

    async def slow(req: Request) -> object:
        await asyncio.sleep(float(req.args.get("seconds", 0)))  # type: ignore[arg-type]
        return "done"

    def boom(req: Request) -> object:
        raise RuntimeError("secret-psk-should-not-leak")

    def refuse(req: Request) -> object:
        raise ControlError("invalid_args", "what must be one of mmsas, qmsas")

    def bad_result(req: Request) -> object:
        return {b"bytes"}

    server.register("show", show)  # type: ignore[arg-type]
    server.register("slow", slow)  # type: ignore[arg-type]
    server.register("boom", boom)  # type: ignore[arg-type]
    server.register("refuse", refuse)  # type: ignore[arg-type]
    server.register("bad-result", bad_result)  # type: ignore[arg-type]
    return server


def test_call_round_trip_and_builtins(tmp_path: Path) -> None:
    with running(_server(tmp_path)) as server, ControlClient(server.path, timeout=5) as client:
        assert client.call("show", what="mmsas") == {"what": "mmsas", "uid": os.geteuid()}
        assert client.call("ping") == {"pong": True, "protocol": 1}
        helped = client.call("help")
        assert isinstance(helped, dict)
        assert {"show", "ping", "help", "slow"} <= set(helped["commands"])  # type: ignore[arg-type]
        assert client.call("slow", seconds=0.01) == "done"
        # several requests on one connection, answered in order
        for i in range(20):
            assert client.call("show", what=f"n{i}") == {"what": f"n{i}", "uid": os.geteuid()}


def test_error_answers_keep_the_connection(tmp_path: Path) -> None:
    with running(_server(tmp_path)) as server, ControlClient(server.path, timeout=5) as client:
        with pytest.raises(ControlError) as info:
            client.call("nope")
        assert info.value.code == "unknown_command"
        with pytest.raises(ControlError) as info:
            client.call("refuse")
        assert (info.value.code, info.value.message) == ("invalid_args", "what must be one of mmsas, qmsas")
        with pytest.raises(ControlError) as info:
            client.call("boom")
        assert info.value.code == "internal_error"
        assert "secret-psk" not in info.value.message
        with pytest.raises(ControlError) as info:
            client.call("bad-result")
        assert info.value.code == "internal_error"
        # the same connection still works after all those
        assert client.call("ping") == {"pong": True, "protocol": 1}
        assert server.stats.errors == 4


def test_handler_errors_reported_to_on_error(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    server = _server(tmp_path, on_error=lambda cmd, exc: seen.append((cmd, str(exc))))
    with running(server), ControlClient(server.path) as client, pytest.raises(ControlError):
        client.call("boom")
    assert seen == [("boom", "secret-psk-should-not-leak")]


def test_handler_timeout(tmp_path: Path) -> None:
    with running(_server(tmp_path, handler_timeout=0.2)) as server, ControlClient(server.path) as client:
        with pytest.raises(ControlError) as info:
            client.call("slow", seconds=5)
        assert info.value.code == "timeout"
        assert client.call("ping") == {"pong": True, "protocol": 1}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json\n", "parse_error"),
        (b"\xff\xfe{}\n", "parse_error"),
        (b"[1, 2]\n", "invalid_request"),
        (b'"show"\n', "invalid_request"),
        (b'{"id": 1}\n', "invalid_request"),
        (b'{"id": 1, "command": ""}\n', "invalid_request"),
        (b'{"id": 1, "command": 5}\n', "invalid_request"),
        (b'{"id": 1, "command": "show", "args": [1]}\n', "invalid_request"),
        (b'{"id": 1, "command": "show", "arg": {}}\n', "invalid_request"),
        (b'{"id": [1], "command": "show"}\n', "invalid_request"),
        (b'{"id": true, "command": "show"}\n', "invalid_request"),
        (b'{"id": 1, "command": "show", "args": {"x": NaN}}\n', "parse_error"),
        pytest.param(b"[" * 50000 + b"\n", "parse_error", id="deep-nesting"),
    ],
)
def test_malformed_requests_get_errors(tmp_path: Path, line: bytes, code: str) -> None:
    with running(_server(tmp_path)) as server:
        answers = _raw_exchange(server.path, line + b'{"id": "after", "command": "ping"}\n')
    assert len(answers) == 2, answers
    assert answers[0]["ok"] is False
    assert answers[0]["error"]["code"] == code  # type: ignore[index]
    # the server keeps serving the same connection after a malformed request
    assert answers[1] == {"id": "after", "ok": True, "result": {"pong": True, "protocol": 1}}


def test_error_answer_echoes_the_id_when_known(tmp_path: Path) -> None:
    with running(_server(tmp_path)) as server:
        answers = _raw_exchange(server.path, b'{"id": "x7", "command": "show", "args": 3}\n')
    assert answers[0]["id"] == "x7"


def test_blank_lines_ignored_and_partial_line_at_eof_dropped(tmp_path: Path) -> None:
    with running(_server(tmp_path)) as server:
        answers = _raw_exchange(server.path, b'\n\n{"id": 1, "command": "ping"}\n{"id": 2, "comm')
        assert [a["id"] for a in answers] == [1]
        # and the server is still up for the next client
        with ControlClient(server.path) as client:
            assert client.call("ping") == {"pong": True, "protocol": 1}


def test_oversize_request_answered_then_closed(tmp_path: Path) -> None:
    with running(_server(tmp_path, max_request_bytes=1024)) as server:
        big = json.dumps({"id": 1, "command": "show", "args": {"what": "x" * 5000}}).encode() + b"\n"
        answers = _raw_exchange(server.path, big + b'{"id": 2, "command": "ping"}\n')
        assert len(answers) == 1
        assert answers[0]["error"]["code"] == "request_too_large"  # type: ignore[index]
        # the daemon survives and serves others; requests under the limit pass
        with ControlClient(server.path) as client:
            assert client.call("show", what="y" * 500) == {"what": "y" * 500, "uid": os.geteuid()}


def test_default_request_limit_is_64k(tmp_path: Path) -> None:
    with running(_server(tmp_path)) as server, ControlClient(server.path) as client:
        assert client.call("show", what="z" * (MAX_REQUEST_BYTES - 200))["what"] == "z" * (  # type: ignore[index]
            MAX_REQUEST_BYTES - 200
        )
        with pytest.raises(ControlError) as info:
            client.call("show", what="z" * MAX_REQUEST_BYTES)
        assert info.value.code == "request_too_large"


def test_socket_mode_and_group(tmp_path: Path) -> None:
    gid = os.getegid() if not ROOT else grp.getgrnam("nogroup").gr_gid
    with running(_server(tmp_path, group=gid)) as server:
        st = server.path.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == gid
        assert st.st_uid == os.geteuid()
    assert not server.path.exists(), "the socket file is removed on close"


def test_unknown_group_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ControlServer(tmp_path / "c.sock", group="no-such-group-ipsecd")


def test_stale_socket_replaced_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: what a crashed daemon leaves
    with running(_server(tmp_path)) as server:
        with ControlClient(server.path) as client:
            assert client.call("ping") == {"pong": True, "protocol": 1}
        with pytest.raises(RuntimeError, match="another daemon"):
            _server(tmp_path)._bind()
    path.write_text("not a socket")
    with pytest.raises(RuntimeError, match="not a socket"):
        _server(tmp_path)._bind()
    assert path.read_text() == "not a socket"


def test_idle_connections_are_closed(tmp_path: Path) -> None:
    with running(_server(tmp_path, idle_timeout=0.2)) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(server.path))
            assert s.recv(1) == b""  # closed by the server after 0.2 s of silence
        with ControlClient(server.path) as client:
            assert client.call("ping") == {"pong": True, "protocol": 1}


def test_too_many_connections_answered_busy(tmp_path: Path) -> None:
    with running(_server(tmp_path, max_connections=1)) as server, ControlClient(server.path) as first:
        assert first.call("ping") == {"pong": True, "protocol": 1}  # first is now active
        answers = _raw_exchange(server.path, b'{"id": 1, "command": "ping"}\n')
        assert answers == [
            {"id": None, "ok": False, "error": {"code": "busy", "message": "too many connections"}}
        ]
        assert first.call("ping") == {"pong": True, "protocol": 1}


def test_broken_authorizer_does_not_kill_the_server(tmp_path: Path) -> None:
    calls: list[int] = []

    def authorizer(cred: PeerCred) -> bool:
        calls.append(cred.uid)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return True

    seen: list[str] = []
    server = _server(tmp_path, authorizer=authorizer, on_error=lambda cmd, exc: seen.append(cmd))
    with running(server):
        assert _raw_exchange(server.path, b'{"id": 1, "command": "ping"}\n') == []
        with ControlClient(server.path) as client:
            assert client.call("ping") == {"pong": True, "protocol": 1}
    assert seen == ["<connection>"]


def test_client_errors_without_daemon(tmp_path: Path) -> None:
    with pytest.raises(ControlConnectionError, match="is ipsecd running"):
        ControlClient(tmp_path / "missing.sock").call("ping")


def test_client_timeout_against_a_silent_server(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        client = ControlClient(path, timeout=0.3)
        with pytest.raises(ControlConnectionError, match="no answer"):
            client.call("ping")


def test_register_rejects_duplicates_and_bad_names(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "c.sock")
    with pytest.raises(ValueError):
        server.register("ping", lambda r: None)
    with pytest.raises(ValueError):
        server.register("Show Me", lambda r: None)


def test_parse_request_defaults() -> None:
    peer = PeerCred(1, 0, 0)
    req = parse_request(b'{"command": "show"}', peer)
    assert (req.id, req.command, req.args, req.peer) == (None, "show", {}, peer)


def test_group_authorizer_rules() -> None:
    me = os.geteuid()
    nobody = 65534
    assert GroupAuthorizer(None)(PeerCred(1, 0, 0))
    assert GroupAuthorizer(None)(PeerCred(1, me, 0))
    other_uid = nobody if me != nobody else 65533
    assert not GroupAuthorizer(None)(PeerCred(os.getpid(), other_uid, 4242))
    # primary gid matching the configured group
    assert GroupAuthorizer(4242)(PeerCred(999999999, other_uid, 4242))
    # supplementary groups read from /proc/<pid>/status of the peer (here: this process)
    my_groups = os.getgroups()
    if my_groups:
        assert GroupAuthorizer(my_groups[0])(PeerCred(os.getpid(), other_uid, 4243))
    assert not GroupAuthorizer(4244)(PeerCred(999999999, other_uid, 4243))


_CHILD = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print(json.dumps({"connect": "EACCES"}))
    sys.exit(0)
try:
    s.sendall(b'{"id": 1, "command": "ping"}\n')
except (BrokenPipeError, ConnectionResetError):
    pass  # a denied client: the server already answered and closed
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    buf += chunk
print(buf.decode().strip())
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ipsecd-ctl-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# The test interpreter may live under /root (pyenv), which other users cannot reach; Debian's
# python3 (pulled in by python3-dev in tools/bootstrap) is world-executable.
SYSTEM_PYTHON = "/usr/bin/python3"


def _as_user(path: Path, uid: int, gid: int) -> dict[str, object]:
    assert os.access(SYSTEM_PYTHON, os.X_OK), "Debian's python3 is missing: run tools/bootstrap"
    r = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", _CHILD, str(path)],
        user=uid,
        group=gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout)
    return result


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root to run clients as other users (CI runs as root)")
def test_peer_credentials_checked(shared_dir: Path) -> None:
    nogroup = grp.getgrnam("nogroup").gr_gid
    # mode 0666 so that the connect() succeeds and the SO_PEERCRED check is what decides
    server = ControlServer(shared_dir / "run" / "control.sock", mode=0o666, group=nogroup)
    with running(server):
        denied = _as_user(server.path, 65534, 4321)
        assert denied["ok"] is False
        assert denied["error"]["code"] == "permission_denied"  # type: ignore[index]
        allowed = _as_user(server.path, 65534, nogroup)
        assert allowed == {"id": 1, "ok": True, "result": {"pong": True, "protocol": 1}}
        assert server.stats.denied == 1


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root to run clients as other users (CI runs as root)")
def test_mode_bits_keep_others_out(shared_dir: Path) -> None:
    server = ControlServer(shared_dir / "run" / "control.sock")  # 0660 root:root
    with running(server):
        assert _as_user(server.path, 65534, 65534) == {"connect": "EACCES"}
        assert server.stats.connections == 0
