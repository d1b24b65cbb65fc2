"""The control protocol: JSON lines over a Unix stream socket (docs/control.md).

One request per line, one response per line, in order, on a connection that may carry many::

    -> {"id": 7, "command": "show", "args": {"what": "mmsas"}}
    <- {"id": 7, "ok": true, "result": [...]}
    <- {"id": 7, "ok": false, "error": {"code": "unknown_command", "message": "..."}}

The server (``ControlServer``, asyncio) dispatches to handlers that the engine registers; it
answers every malformed request with an error and never lets one crash it.  Who may talk to it:
root, the daemon's own user, and members of the configured group, checked per connection with
SO_PEERCRED (on top of the socket's 0660 mode and group ownership).

The client (``ControlClient``) is synchronous and small: ipsecctl imports this module only for
it (the CLI may import nothing else of ipsecd.daemon), so nothing here starts an event loop or
touches the daemon's state at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import grp
import inspect
import itertools
import json
import os
import pwd
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None
RequestId: TypeAlias = str | int | None

PROTOCOL_VERSION = 1
DEFAULT_SOCKET_PATH = Path("/run/ipsecd/control.sock")
MAX_REQUEST_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_COMMAND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")


class ErrorCode(enum.Enum):
    """Error codes of the protocol (``error.code``); handlers may use their own codes too."""

    PARSE_ERROR = "parse_error"  # the line is not JSON (or not UTF-8)
    INVALID_REQUEST = "invalid_request"  # JSON, but not a request object
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_ARGS = "invalid_args"  # the handler refused the arguments
    REQUEST_TOO_LARGE = "request_too_large"  # line longer than the limit: connection closed
    PERMISSION_DENIED = "permission_denied"  # peer not root nor in the group: closed
    BUSY = "busy"  # too many connections: closed
    TIMEOUT = "timeout"  # the handler took too long
    INTERNAL_ERROR = "internal_error"  # the handler failed; details in the daemon's log


class ControlError(Exception):
    """An error answer.  Handlers raise it to refuse a request; the client raises it when the
    daemon answered ``ok: false``.  The message must be safe to show (never a secret)."""

    def __init__(self, code: ErrorCode | str, message: str, *, request_id: RequestId = None) -> None:
        self.code = code.value if isinstance(code, ErrorCode) else code
        self.message = message
        self.request_id = request_id
        super().__init__(f"{self.code}: {message}")


class ControlConnectionError(Exception):
    """The client could not reach the daemon, or the exchange broke (timeout, bad answer)."""


@dataclass(frozen=True)
class PeerCred:
    """SO_PEERCRED of a connected client (socket(7), struct ucred)."""

    pid: int
    uid: int
    gid: int


_UCRED = struct.Struct("3i")


def peer_credentials(sock: socket.socket) -> PeerCred:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid=pid, uid=uid, gid=gid)


def resolve_group(group: str | int | None) -> int | None:
    """A group name or number to a gid; a clear error for an unknown name."""
    if group is None or isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"control socket group {group!r} does not exist") from None


def _supplementary_groups(pid: int) -> set[int]:
    """The peer process's supplementary groups, from /proc/<pid>/status (empty if gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:] if g.isdigit()}
    except OSError:
        pass
    return set()


class GroupAuthorizer:
    """Allows root, the daemon's own effective uid, and members of ``group``."""

    def __init__(self, group: str | int | None = None) -> None:
        self.gid = resolve_group(group)

    def __call__(self, cred: PeerCred) -> bool:
        if cred.uid == 0 or cred.uid == os.geteuid():
            return True
        if self.gid is None:
            return False
        if cred.gid == self.gid or self.gid in _supplementary_groups(cred.pid):
            return True
        try:
            user = pwd.getpwuid(cred.uid).pw_name
            return user in grp.getgrgid(self.gid).gr_mem
        except KeyError:
            return False


@dataclass(frozen=True)
class Request:
    id: RequestId
    command: str
    args: dict[str, JSONValue]
    peer: PeerCred


Handler: TypeAlias = Callable[[Request], "JSONValue | Awaitable[JSONValue]"]


def _dumps(obj: object) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode()


def error_response(req_id: RequestId, code: ErrorCode | str, message: str) -> dict[str, Any]:
    code_text = code.value if isinstance(code, ErrorCode) else code
    return {"id": req_id, "ok": False, "error": {"code": code_text, "message": message}}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_request(line: bytes, peer: PeerCred) -> Request:
    """Decode and validate one request line; raises ControlError with the right code."""
    try:
        obj = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ControlError(ErrorCode.PARSE_ERROR, f"request is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ControlError(ErrorCode.INVALID_REQUEST, "request must be a JSON object")
    req_id = obj.get("id")
    if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, str | int)):
        raise ControlError(ErrorCode.INVALID_REQUEST, "id must be a string, an integer or null")
    unknown = set(obj) - {"id", "command", "args"}
    if unknown:
        message = f"unknown request keys: {sorted(unknown)}"
        raise ControlError(ErrorCode.INVALID_REQUEST, message, request_id=req_id)
    command = obj.get("command")
    if not isinstance(command, str) or not command:
        message = "command must be a non-empty string"
        raise ControlError(ErrorCode.INVALID_REQUEST, message, request_id=req_id)
    args = obj.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ControlError(ErrorCode.INVALID_REQUEST, "args must be a JSON object", request_id=req_id)
    return Request(id=req_id, command=command, args=args, peer=peer)


@dataclass
class ServerStats:
    connections: int = 0
    active: int = 0
    requests: int = 0
    errors: int = 0
    denied: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


class ControlServer:
    """asyncio server of the control protocol.  ``register()`` handlers, then ``start()``."""

    def __init__(
        self,
        path: Path | str = DEFAULT_SOCKET_PATH,
        *,
        mode: int = 0o660,
        group: str | int | None = None,
        authorizer: Callable[[PeerCred], bool] | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_connections: int = 32,
        idle_timeout: float = 60.0,
        handler_timeout: float = 30.0,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.mode = mode
        self.gid = resolve_group(group)
        self.authorizer = authorizer if authorizer is not None else GroupAuthorizer(self.gid)
        self.max_request_bytes = max_request_bytes
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.handler_timeout = handler_timeout
        self.on_error = on_error
        self.stats = ServerStats()
        self._handlers: dict[str, Handler] = {}
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False  # close() started: new connections are closed at once
        self.register("ping", self._ping)
        self.register("help", self._help)

    # -- handlers --------------------------------------------------------------------------

    def register(self, command: str, handler: Handler) -> None:
        if not command or not set(command) <= _COMMAND_CHARS:
            raise ValueError(f"bad command name {command!r}")
        if command in self._handlers:
            raise ValueError(f"command {command!r} is already registered")
        self._handlers[command] = handler

    @property
    def commands(self) -> list[str]:
        return sorted(self._handlers)

    def _ping(self, request: Request) -> JSONValue:
        return {"pong": True, "protocol": PROTOCOL_VERSION}

    def _help(self, request: Request) -> JSONValue:
        return {"commands": list(self.commands), "protocol": PROTOCOL_VERSION}

    async def handle_line(self, line: bytes, peer: PeerCred) -> dict[str, Any]:
        """One request line in, one response object out; never raises."""
        self.stats.requests += 1
        req_id: RequestId = None
        command = ""
        try:
            request = parse_request(line, peer)
            req_id, command = request.id, request.command
            handler = self._handlers.get(request.command)
            if handler is None:
                raise ControlError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {request.command!r}")
            result = handler(request)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.handler_timeout)
            response: dict[str, Any] = {"id": req_id, "ok": True, "result": result}
            try:
                json.dumps(response, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise RuntimeError(f"handler returned a non-JSON result: {exc}") from exc
            return response
        except ControlError as err:
            return self._count(
                error_response(
                    err.request_id if err.request_id is not None else req_id, err.code, err.message
                )
            )
        except TimeoutError:
            return self._count(error_response(req_id, ErrorCode.TIMEOUT, "the command took too long"))
        except Exception as exc:
            self._report(command, exc)
            # The message stays generic: exception text might carry data we must not echo.
            message = f"command {command!r} failed; see the daemon's log"
            return self._count(error_response(req_id, ErrorCode.INTERNAL_ERROR, message))

    def _report(self, command: str, exc: BaseException) -> None:
        if self.on_error is not None:
            with contextlib.suppress(Exception):  # a broken logger must not break the server
                self.on_error(command, exc)

    def _count(self, response: dict[str, Any]) -> dict[str, Any]:
        self.stats.errors += 1
        code = response["error"]["code"]
        self.stats.by_code[code] = self.stats.by_code.get(code, 0) + 1
        return response

    # -- connections -----------------------------------------------------------------------

    async def _send(self, writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
        writer.write(_dumps(response))
        await writer.drain()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted while close() runs: no task that nobody would await
            writer.close()
            return
        # Track the task from its creation, so that close() can cancel even unstarted ones.
        task = asyncio.get_running_loop().create_task(self._client(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self.stats.active += 1
        try:
            await self._serve(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the peer went away or idled out
        except Exception as exc:  # never let one connection's surprise reach the loop
            self._report("<connection>", exc)
        finally:
            self.stats.active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        cred = peer_credentials(sock) if sock is not None else PeerCred(-1, -1, -1)
        if not self.authorizer(cred):
            self.stats.denied += 1
            message = f"uid {cred.uid} is neither root nor a member of the control group"
            await self._send(writer, self._count(error_response(None, ErrorCode.PERMISSION_DENIED, message)))
            return
        if self.stats.active > self.max_connections:
            await self._send(
                writer, self._count(error_response(None, ErrorCode.BUSY, "too many connections"))
            )
            return
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), self.idle_timeout)
            except ValueError:  # asyncio.LimitOverrunError surfaces as ValueError from readline
                message = f"request longer than {self.max_request_bytes} bytes"
                await self._send(
                    writer, self._count(error_response(None, ErrorCode.REQUEST_TOO_LARGE, message))
                )
                return
            if not line:
                return  # EOF
            if not line.endswith(b"\n"):
                return  # EOF in the middle of a line: nobody left to answer
            if not line.strip():
                continue  # blank lines are ignored
            response = await self.handle_line(line, cred)
            await self._send(writer, response)

    # -- life cycle ------------------------------------------------------------------------

    def _remove_stale(self) -> None:
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{self.path} exists and is not a socket; not removing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            self.path.unlink(missing_ok=True)  # left over by a daemon that died
            return
        finally:
            probe.close()
        raise RuntimeError(f"another daemon is answering on {self.path}")

    def _bind(self) -> socket.socket:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)  # never a moment with a wider mode than 0600
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old_umask)
            if self.gid is not None:
                os.chown(self.path, -1, self.gid)
            os.chmod(self.path, self.mode)
            sock.listen(16)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._inode = self.path.stat().st_ino
        return sock

    async def start(self) -> None:
        self._closing = False
        sock = self._bind()
        self._server = await asyncio.start_unix_server(
            self._on_connect, sock=sock, limit=self.max_request_bytes
        )

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        # Remove the socket file only if it is still ours (not a newer daemon's).
        with contextlib.suppress(FileNotFoundError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ControlClient:
    """Synchronous client: ``ControlClient(path).call("show", what="mmsas")``.

    One connection, opened on first use and reused; ``timeout`` bounds each call (connect,
    send and the whole answer).  Raises ControlError when the daemon answers an error and
    ControlConnectionError when it cannot be reached or the answer is broken.
    """

    def __init__(
        self,
        path: Path | str = DEFAULT_SOCKET_PATH,
        *,
        timeout: float = 10.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._ids = itertools.count(1)

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                sock.connect(str(self.path))
            except FileNotFoundError:
                sock.close()
                raise ControlConnectionError(f"{self.path} does not exist: is ipsecd running?") from None
            except ConnectionRefusedError:
                sock.close()
                raise ControlConnectionError(f"{self.path}: connection refused: is ipsecd running?") from None
            except PermissionError:
                sock.close()
                raise ControlConnectionError(
                    f"{self.path}: permission denied (run as root or as a member of the ipsecd group)"
                ) from None
            except OSError as exc:
                sock.close()
                raise ControlConnectionError(f"{self.path}: {exc.strerror or exc}") from None
            self._sock = sock
            self._buffer = b""
        return self._sock

    def _read_line(self, sock: socket.socket, deadline: float) -> bytes:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlConnectionError("the daemon closed the connection")
            self._buffer += chunk
            if len(self._buffer) > self.max_response_bytes:
                raise ControlConnectionError("answer larger than the response limit")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def request(self, command: str, args: dict[str, JSONValue] | None = None) -> JSONValue:
        req_id = next(self._ids)
        payload = _dumps({"id": req_id, "command": command, "args": args or {}})
        deadline = time.monotonic() + self.timeout
        sock = self._connect(deadline)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            # The server may have refused us (permission, busy) and closed before reading:
            # its answer is still in our receive buffer, read it below.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(payload)
            line = self._read_line(sock, deadline)
        except TimeoutError:
            self.close()
            raise ControlConnectionError(f"no answer to {command!r} within {self.timeout:g} s") from None
        except ControlConnectionError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise ControlConnectionError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            response = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.close()
            raise ControlConnectionError("the daemon sent an answer that is not JSON") from None
        if not isinstance(response, dict) or "ok" not in response:
            self.close()
            raise ControlConnectionError("the daemon sent an answer that is not a response object")
        error = response.get("error")
        if response["ok"] is not True:
            if response.get("id") is None:
                self.close()  # connection-level errors: the server has closed its end
            if isinstance(error, dict):
                raise ControlError(str(error.get("code", "unknown")), str(error.get("message", "")))
            raise ControlError("unknown", "the daemon reported an error without details")
        if response.get("id") != req_id:
            self.close()
            raise ControlConnectionError(f"answer id {response.get('id')!r} does not match request {req_id}")
        result: JSONValue = response.get("result")
        return result

    def call(self, command: str, /, **args: JSONValue) -> JSONValue:
        return self.request(command, dict(args))

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()
        self._buffer = b""

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
