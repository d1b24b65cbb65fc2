"""Map field paths of a TOML document to 1-based line numbers.

TOML parsers (tomllib, tomlkit) give values but no positions, and every store error must name a line.
``TomlLocator`` scans text that tomllib has already accepted and records the line where each field
path starts, in the path syntax the store validator uses::

    daemon.ipsecexempt                       key line in [daemon]
    policy[0]                                the [[policy]] header
    policy[0].rule[1].filterlist             key line in the 2nd [[policy.rule]] of the 1st policy
    policy[0].rule[1].auth[0].psk            key inside an inline table inside an array
    filteraction[2].qmsecmethods[1]          line where the 2nd array element starts

Array-of-tables indexes count per parent, as TOML defines them (``[[policy.rule]]`` restarts at 0
under each ``[[policy]]``). ``line_of`` falls back to the nearest recorded ancestor, so a missing key
reports the line of its table header.
"""

from __future__ import annotations

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_END = frozenset(",]}\n#")


class TomlLocator:
    """Line numbers of the field paths of one TOML text (assumed syntactically valid)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line = 1
        self._lines: dict[str, int] = {}
        self._aot_last: dict[str, int] = {}  # concrete array-of-tables path -> last index
        self._scan()

    @property
    def paths(self) -> dict[str, int]:
        return dict(self._lines)

    def line_of(self, path: str) -> int:
        """The line of ``path``, or of its nearest recorded ancestor; 1 when nothing matches."""
        p = path
        while p:
            if p in self._lines:
                return self._lines[p]
            p = _parent(p)
        return 1

    # -- scanning ------------------------------------------------------------------------------

    def _peek(self, offset: int = 0) -> str:
        i = self._pos + offset
        return self._text[i] if i < len(self._text) else ""

    def _advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self._pos < len(self._text):
                if self._text[self._pos] == "\n":
                    self._line += 1
                self._pos += 1

    def _skip_blank(self, newlines: bool) -> None:
        """Skip spaces, tabs, comments and (if asked) newlines."""
        while self._pos < len(self._text):
            c = self._text[self._pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self._advance()
            elif c == "#":
                while self._pos < len(self._text) and self._text[self._pos] != "\n":
                    self._pos += 1
            else:
                return

    def _record(self, path: str, line: int) -> None:
        self._lines.setdefault(path, line)

    def _scan(self) -> None:
        table = ""
        while True:
            self._skip_blank(newlines=True)
            if self._pos >= len(self._text):
                return
            line = self._line
            if self._text.startswith("[[", self._pos):
                self._advance(2)
                keys = self._key()
                self._skip_blank(newlines=False)
                self._advance(2)  # ]]
                table = self._concrete(keys, new_element=True)
                self._record(table[: table.rindex("[")], line)  # the array: its first element
                self._record(table, line)
            elif self._peek() == "[":
                self._advance()
                keys = self._key()
                self._skip_blank(newlines=False)
                self._advance()  # ]
                table = self._concrete(keys, new_element=False)
                self._record(table, line)
            else:
                keys = self._key()
                path = _join(table, ".".join(keys))
                self._record(path, line)
                self._skip_blank(newlines=False)
                self._advance()  # =
                self._skip_blank(newlines=False)
                self._value(path)
            # The rest of the line is blank or a comment.
            self._skip_blank(newlines=False)
            while self._pos < len(self._text) and self._text[self._pos] != "\n":
                self._advance()

    def _concrete(self, keys: list[str], new_element: bool) -> str:
        """The concrete path of a table header: ancestors that are arrays of tables get their
        current index; ``[[...]]`` appends a new element to the last key."""
        path = ""
        for i, key in enumerate(keys):
            path = _join(path, key)
            last = i == len(keys) - 1
            if last and new_element:
                idx = self._aot_last.get(path, -1) + 1
                self._aot_last[path] = idx
                path = f"{path}[{idx}]"
            elif path in self._aot_last:
                path = f"{path}[{self._aot_last[path]}]"
        return path

    def _key(self) -> list[str]:
        """A dotted key: bare or quoted parts separated by dots."""
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            c = self._peek()
            if c in ('"', "'"):
                start = self._pos + 1
                self._string()
                parts.append(self._text[start : self._pos - 1])
            else:
                start = self._pos
                while self._pos < len(self._text) and self._text[self._pos] in _BARE:
                    self._pos += 1
                parts.append(self._text[start : self._pos])
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return parts
            self._advance()

    def _string(self) -> None:
        """Skip a basic, literal or multi-line string starting at the current position."""
        quote = self._peek()
        if self._text.startswith(quote * 3, self._pos):
            self._advance(3)
            while self._pos < len(self._text):
                if quote == '"' and self._peek() == "\\":
                    self._advance(2)
                elif self._text.startswith(quote * 3, self._pos):
                    self._advance(3)
                    # Up to two more quotes may belong to the content.
                    while self._peek() == quote:
                        self._advance()
                    return
                else:
                    self._advance()
            return
        self._advance()
        while self._pos < len(self._text):
            c = self._peek()
            if quote == '"' and c == "\\":
                self._advance(2)
            elif c == quote:
                self._advance()
                return
            elif c == "\n":
                return
            else:
                self._advance()

    def _value(self, path: str) -> None:
        c = self._peek()
        if c in ('"', "'"):
            self._string()
        elif c == "[":
            self._advance()
            index = 0
            while self._pos < len(self._text):
                self._skip_blank(newlines=True)
                if self._peek() == "]":
                    self._advance()
                    return
                if self._peek() == ",":
                    self._advance()
                    continue
                elem = f"{path}[{index}]"
                self._record(elem, self._line)
                self._value(elem)
                index += 1
        elif c == "{":
            self._advance()
            while self._pos < len(self._text):
                self._skip_blank(newlines=False)
                if self._peek() == "}":
                    self._advance()
                    return
                if self._peek() == ",":
                    self._advance()
                    continue
                if self._peek() in ("", "\n"):  # not valid TOML; do not loop forever
                    return
                line = self._line
                keys = self._key()
                key_path = _join(path, ".".join(keys))
                self._record(key_path, line)
                self._skip_blank(newlines=False)
                self._advance()  # =
                self._skip_blank(newlines=False)
                self._value(key_path)
        else:
            start = self._pos
            while self._pos < len(self._text) and self._text[self._pos] not in _SCALAR_END:
                self._pos += 1
            if self._pos == start:  # not valid TOML; make progress anyway
                self._advance()


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _parent(path: str) -> str:
    """``a[0].b[1]`` -> ``a[0].b`` -> ``a[0]`` -> ``a`` -> ``""``."""
    if path.endswith("]"):
        return path[: path.rindex("[")]
    dot = path.rfind(".")
    return path[:dot] if dot >= 0 else ""
