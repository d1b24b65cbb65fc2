"""The Oakley-style negotiation log: a text trace of IKE negotiations, for troubleshooting.

Windows wrote such a trace to %windir%\\debug\\oakley.log when "ikelogging" was on; an operator
matched the mode and filter of a failed-negotiation audit (event 547) to the lines here.  ipsecd
keeps the idea, with its own wording:

    2026-11-27 12:24:02.123 [7] Acquire from driver: src=10.0.0.1 dst=10.0.0.2 filter=web/r1/f1
    2026-11-27 12:24:02.125 [7] MM start as initiator peer=10.0.0.2 icookie=0x1f2e3d4c5b6a7988
    2026-11-27 12:24:02.125 [7] MM SA proposal #1 offered: AES-CBC-128 SHA1 MODP-2048 preshared 28800s
    2026-11-27 12:24:02.300 [7] MM failed point=peer reason="no proposal chosen"

Rules:
- off unless enabled (the ``ikelogging`` setting); when off nothing is opened or written;
- the caller passes every timestamp (pure package, no clock);
- size-capped: when a line would push the file past ``max_bytes`` the file is renamed to
  ``<path>.old`` (replacing the previous one) and a new file is started, so at most about
  2 x max_bytes are on disk;
- secrets never land in the file: values of secret-named fields are replaced, every line passes
  through a ``Redactor`` that knows the secrets registered by the IKE code (PSKs, keys) and
  removes them in raw, hex and base64 form, and bytes are never formatted (only their length).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ipsecd.log.events import FailurePoint, NegotiationMode

DEFAULT_OAKLEY_PATH = Path("/var/log/ipsecd/oakley.log")
DEFAULT_MAX_BYTES = 1024 * 1024
REDACTED = "<redacted>"

# Field names whose values are secret whatever their type (checked on the lower-cased name).
_SECRET_NAME = re.compile(
    r"psk|pre_?shared|secret|passw|skeyid|keymat|private|shared_key|dh_?key|g_?xy|"
    r"(^|_)(enc|auth|integ|encryption|integrity|session)?_?keys?($|_)|"
    r"(^|_)sk_?(d|a[ir]|e[ir]|p[ir])($|_)"  # RFC 7296 section 2.14 SK_d, SK_ai, SK_ei, SK_pi, ...
)
# ... unless the name only describes a key (its length, its ID, its exchange payload).
_HARMLESS_SUFFIX = ("_length", "_len", "_bits", "_size", "_id", "_index", "_exchange")


def is_secret_name(name: str) -> bool:
    """True when a field called ``name`` may hold key material or a password."""
    lowered = name.lower()
    if lowered.endswith(_HARMLESS_SUFFIX):
        return False
    return _SECRET_NAME.search(lowered) is not None


class Secret:
    """Holds a secret so that repr(), str() and f-strings never show it.

    ``reveal()`` returns the bytes for the crypto code; nothing else should ever call it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes | str) -> None:
        self._value = value.encode("utf-8") if isinstance(value, str) else bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))


class Redactor:
    """Removes registered secrets from text, in every form they are likely to be printed."""

    def __init__(self, secrets: Iterable[bytes | str | Secret] = ()) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for s in secrets:
            self.add(s)

    def add(self, secret: bytes | str | Secret) -> None:
        if isinstance(secret, Secret):
            raw = secret.reveal()
        elif isinstance(secret, str):
            raw = secret.encode("utf-8")
        else:
            raw = bytes(secret)
        if not raw:
            return
        forms = {raw.hex(), raw.hex().upper(), raw.hex(":"), raw.hex(" ")}
        forms.add(base64.b64encode(raw).decode("ascii").rstrip("="))
        with contextlib.suppress(UnicodeDecodeError):
            forms.add(raw.decode("utf-8"))
        forms.add(repr(raw))  # b'...' as an f-string of bytes would print it
        self._forms.update(f for f in forms if f)
        self._pattern = None

    def scrub(self, text: str) -> str:
        if not self._forms:
            return text
        if self._pattern is None:
            # One pass, longest form first, so that a secret inside another one is not
            # half-replaced and the marker itself is never rescanned.
            ordered = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(f) for f in ordered))
        return self._pattern.sub(REDACTED, text)

    def __len__(self) -> int:
        return len(self._forms)


def format_value(name: str, value: object) -> str:
    """A field value as log text: secrets and bytes never printed, text quoted when needed."""
    if is_secret_name(name) or isinstance(value, Secret):
        return REDACTED
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, bool) or value is None:
        text = str(value).lower()
    elif isinstance(value, int) and name.endswith(("cookie", "spi", "message_id")):
        text = f"0x{value:x}"
    elif isinstance(value, NegotiationMode | FailurePoint):
        text = value.value
    elif isinstance(value, list | tuple):
        text = ",".join(format_value(name, v) for v in value)
    else:
        text = str(value)
    if not text or any(c.isspace() for c in text) or '"' in text:
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def redact_mapping(values: Mapping[str, object]) -> dict[str, str]:
    """All values of ``values`` formatted for a log, secret-named ones replaced."""
    return {k: format_value(k, v) for k, v in values.items()}


def _timestamp(when: _dt.datetime) -> str:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("log time must be timezone-aware")
    utc = when.astimezone(_dt.UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}"


def _one_line(text: str) -> str:
    # A peer-chosen identity must not be able to forge log lines.
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


_MODE_TAG = {NegotiationMode.MAIN_MODE: "MM", NegotiationMode.QUICK_MODE: "QM"}


class OakleyLog:
    """The negotiation trace file.  Not thread-safe: the daemon writes from its event loop."""

    def __init__(
        self,
        path: Path | str = DEFAULT_OAKLEY_PATH,
        *,
        enabled: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        redactor: Redactor | None = None,
        mode: int = 0o640,
    ) -> None:
        if max_bytes < 1024:
            raise ValueError("oakley log max_bytes must be at least 1024")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.redactor = redactor if redactor is not None else Redactor()
        self.mode = mode
        self._enabled = enabled
        self._fd: int | None = None
        self._size = 0
        self.rotations = 0

    @property
    def old_path(self) -> Path:
        return self.path.with_name(self.path.name + ".old")

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, enabled: bool) -> None:
        """The ``ikelogging`` switch; turning it off closes the file."""
        self._enabled = enabled
        if not enabled:
            self.close()

    # -- file handling ---------------------------------------------------------------------

    def _open(self) -> int:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, self.mode)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _rotate(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):  # removed behind our back: start anew
            os.replace(self.path, self.old_path)
        self.rotations += 1

    def _write(self, line: str) -> None:
        data = line.encode("utf-8")
        fd = self._open()
        if self._size > 0 and self._size + len(data) > self.max_bytes:
            self._rotate()
            fd = self._open()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self._size += len(data)

    def reopen(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------

    def log(self, when: _dt.datetime, message: str, *, neg: int | None = None, **fields: object) -> None:
        """One line: time, optional negotiation number, message, then key=value fields."""
        if not self._enabled:
            return
        parts = [_timestamp(when)]
        if neg is not None:
            parts.append(f"[{neg}]")
        parts.append(message)
        parts.extend(f"{k}={v}" for k, v in redact_mapping(fields).items())
        line = self.redactor.scrub(_one_line(" ".join(parts)))
        # Cap one line at a quarter of the file so rotation always makes progress.
        limit = self.max_bytes // 4
        if len(line) > limit:
            line = line[: limit - 14] + " <truncated>"
        self._write(line + "\n")

    def acquire(
        self, when: _dt.datetime, *, src: object, dst: object, filter: str, neg: int | None = None
    ) -> None:
        """The data path asked for an SA (an outbound packet matched a Negotiate filter)."""
        self.log(when, "Acquire from driver:", neg=neg, src=src, dst=dst, filter=filter)

    def step(
        self,
        when: _dt.datetime,
        mode: NegotiationMode,
        step: str,
        *,
        neg: int | None = None,
        **fields: object,
    ) -> None:
        """A main mode / quick mode step, e.g. ``step(t, MAIN_MODE, "sent msg 1", peer=...)``."""
        self.log(when, f"{_MODE_TAG[mode]} {step}", neg=neg, **fields)

    def proposal(
        self,
        when: _dt.datetime,
        mode: NegotiationMode,
        number: int,
        transforms: Sequence[str],
        *,
        verdict: str = "offered",
        neg: int | None = None,
        **fields: object,
    ) -> None:
        """An SA proposal: ``verdict`` is offered, received, accepted or rejected."""
        text = " ".join(_one_line(t) for t in transforms) or "(no transforms)"
        self.log(when, f"{_MODE_TAG[mode]} SA proposal #{number} {verdict}: {text}", neg=neg, **fields)

    def failure(
        self,
        when: _dt.datetime,
        mode: NegotiationMode,
        *,
        filter: str,
        point: FailurePoint,
        reason: str,
        neg: int | None = None,
        **fields: object,
    ) -> None:
        """The failure line an operator looks for after a NEGOTIATION_FAILED event."""
        self.log(
            when,
            f"{_MODE_TAG[mode]} failed",
            neg=neg,
            filter=filter,
            point=point,
            reason=reason,
            **fields,
        )
