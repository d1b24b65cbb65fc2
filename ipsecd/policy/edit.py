"""Editing the TOML files of a policy store in place, keeping their comments and layout.

``ipsecctl static add|set|delete`` work on a ``StoreEditor``: it parses every store file with
tomlkit (which keeps comments, blank lines, key order and formatting), finds objects by name in
whichever file declares them, and applies changes to those documents only. Nothing touches the
disk until ``write()``; the caller first validates ``texts()`` as a whole with the loader
(``ipsecd.policy.store.parse_store_texts``), so a rejected edit changes nothing.

``write()`` rewrites only the files that were changed, each one atomically: a temporary file in
the same directory, mode 0600 from its creation, fsync, rename over the old file, fsync of the
directory. (A change that spans several files -- a rename that updates references, ``delete
all`` -- is atomic per file, not across files.)

Layout limits (tomlkit's): an array of tables whose entries are interleaved with other tables in
one file (``[[filterlist]]``, ``[[policy]]``, ``[[filterlist]]``) is regrouped when that file is
rewritten; ``regrouped_files()`` names such files so the CLI can say so. Files that are not
changed are never rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Array, Comment, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

OBJECT_KINDS = ("filterlist", "filteraction", "policy")
KIND_TITLES = {
    "filterlist": "filter list",
    "filteraction": "filter action",
    "policy": "policy",
    "builtinauth": "authentication of built-in policy",
}
# The key that names an object of each kind ([[builtinauth]] is keyed by the policy it is for).
NAME_KEYS = {"filterlist": "name", "filteraction": "name", "policy": "name", "builtinauth": "policy"}


class EditError(Exception):
    """An edit that cannot be applied to the store files (unknown object, duplicate name, ...)."""


@dataclass
class StoreFile:
    """One file of the store: its path, its text as read (None: it does not exist yet), its document."""

    path: Path
    original: str | None
    doc: TOMLDocument
    dirty: bool = False
    regroups: bool = False  # tomlkit would not write the original layout back unchanged

    @classmethod
    def read(cls, path: Path) -> StoreFile:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, None, tomlkit.document())
        try:
            doc = tomlkit.parse(text)
        except Exception as exc:  # tomlkit raises several ParseError subclasses
            raise EditError(f"{path}: not valid TOML: {exc}") from exc
        return cls(path, text, doc, regroups=doc.as_string() != text)

    def text(self) -> str:
        """The file's text as it would be written (the original when unchanged)."""
        if not self.dirty and self.original is not None:
            return self.original
        return self.doc.as_string()


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` by ``text``: temp file (created with ``mode``), fsync, rename, fsync dir."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on a store for one read-edit-write cycle.

    The lock is ``flock`` on the store's directory (the file's directory for a single-file store,
    the nearest existing ancestor for a store not created yet), so it leaves no lock file behind.
    It does not wait: a second concurrent edit fails at once with EditError.
    """
    d = Path(path)
    if d.suffix == ".toml" or d.is_file():
        d = d.parent
    while not d.is_dir() and d != d.parent:
        d = d.parent
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EditError(f"{d}: another ipsecctl is editing this store; try again") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _aot(container: TOMLDocument | Table, key: str) -> AoT | None:
    item = container.get(key)
    return item if isinstance(item, AoT) else None


def _name_of(table: Any, kind: str = "policy") -> Any:
    return table.get(NAME_KEYS[kind]) if isinstance(table, Table) else None


def _new_table(values: Mapping[str, Any]) -> Table:
    t = tomlkit.table()
    for k, v in values.items():
        if v is not None:
            t[k] = v
    return t


def _set_values(table: Table, values: Mapping[str, Any]) -> None:
    """Set keys in place (keeping their comments); None removes a key."""
    for k, v in values.items():
        if v is None:
            if k in table:
                del table[k]
        else:
            table[k] = v


def _append(container: TOMLDocument | Table, key: str, table: Table) -> None:
    """Append a table to the array of tables ``key``, keeping blank lines between tables.

    The blank line that separated the old last table from whatever follows it moves to the end of
    the new table; a table that followed nothing gets one before the new table.
    """
    aot = _aot(container, key)
    if aot is None and key in container:
        raise EditError(f"{key!r} is not an array of tables")
    last: TOMLDocument | Table = container if aot is None or not len(aot) else aot[-1]
    text = last.as_string()
    if text.endswith("\n\n"):
        table.add(tomlkit.nl())  # the separation now follows the new table
    elif text:
        table.trivia.indent = "\n" + table.trivia.indent  # a blank line before the new table
    if aot is None:
        # parsed=True: tomlkit then adds no separators of its own; the ones above are enough.
        container[key] = AoT([table], parsed=True)
    else:
        aot.append(table)


def _deepest_last(table: Table) -> Table:
    """The table whose body ends the text of ``table`` (its last nested table, recursively)."""
    body = table.value.body
    if body and body[-1][0] is not None:
        last = body[-1][1]
        if isinstance(last, AoT) and len(last):
            return _deepest_last(last[-1])
        if isinstance(last, Table):
            return _deepest_last(last)
    return table


def _pop_trailing(table: Table) -> list[Comment | Whitespace]:
    """Remove and return the comments (and blank lines) that end a table's text.

    tomlkit attaches a comment that precedes a table header, or ends the file, to the end of the
    table before it; when that table is deleted, the comment must stay.
    """
    body = _deepest_last(table).value.body
    out: list[Comment | Whitespace] = []
    while body and body[-1][0] is None:
        item = body[-1][1]
        if not isinstance(item, Comment | Whitespace):
            break
        body.pop()
        out.append(item)
    out.reverse()
    return out if any(isinstance(i, Comment) for i in out) else []


def _remove_at(container: TOMLDocument | Table, key: str, aot: AoT, i: int) -> None:
    """Delete table ``i`` of ``aot`` (the array ``key`` of ``container``), keeping the comments
    that tomlkit had attached to its end."""
    # Comments earlier deletions moved into this table's header indent go on with the rest.
    lead = [
        tomlkit.comment(line.strip()[1:].strip())
        for line in aot[i].trivia.indent.splitlines()
        if line.strip()
    ]
    trailing = lead + _pop_trailing(aot[i])
    del aot[i]
    if i > 0:
        dest = _deepest_last(aot[i - 1])
        for item in trailing:
            dest.add(item)
    elif len(aot):
        nxt = aot[0]
        nxt.trivia.indent = "".join(item.as_string() for item in trailing) + nxt.trivia.indent
    if not len(aot):
        del container[key]
        if not trailing:
            return
        dest2: TOMLDocument | Table = (
            container if isinstance(container, TOMLDocument) else _deepest_last(container)
        )
        for item in trailing:
            dest2.add(item)


class StoreEditor:
    """The editable documents of a store.

    ``files``: the store's files in load order (missing ones are treated as empty);
    ``new_objects``: where added objects go (``policies.toml``, or the single store file);
    ``settings_file``: where ``[daemon]`` goes when no file has one yet (``ipsecd.toml``).
    """

    def __init__(self, files: Sequence[Path], new_objects: Path, settings_file: Path) -> None:
        self.files: list[StoreFile] = [StoreFile.read(Path(p)) for p in files]
        self._new_objects = self._file(Path(new_objects))
        self._settings_default = Path(settings_file)

    # -- files -------------------------------------------------------------------------------
    def _file(self, path: Path) -> StoreFile:
        for f in self.files:
            if f.path == path:
                return f
        f = StoreFile.read(path)
        self.files.append(f)
        return f

    def texts(self) -> list[tuple[str, str]]:
        """(file name, text) of every file that exists or will exist, in load order."""
        return [(str(f.path), f.text()) for f in self.files if f.original is not None or f.dirty]

    def changed(self) -> list[StoreFile]:
        return [f for f in self.files if f.dirty and f.text() != f.original]

    def regrouped_files(self) -> list[Path]:
        """Changed files whose interleaved tables tomlkit could not keep in place."""
        return [f.path for f in self.changed() if f.regroups]

    def write(self) -> list[Path]:
        """Write the changed files atomically (mode 0600); returns their paths."""
        written = []
        for f in self.changed():
            atomic_write(f.path, f.text())
            f.original = f.text()
            f.dirty = False
            written.append(f.path)
        return written

    # -- top-level objects -------------------------------------------------------------------
    def _each(self, kind: str) -> Iterator[tuple[StoreFile, AoT, int, Table]]:
        for f in self.files:
            aot = _aot(f.doc, kind)
            if aot is None:
                continue
            for i, t in enumerate(aot):
                yield f, aot, i, t

    def names(self, kind: str) -> list[str]:
        return [str(_name_of(t, kind)) for _, _, _, t in self._each(kind) if _name_of(t, kind) is not None]

    def find(self, kind: str, name: str) -> tuple[StoreFile, Table] | None:
        for f, _, _, t in self._each(kind):
            if _name_of(t, kind) == name:
                return f, t
        return None

    def get(self, kind: str, name: str) -> tuple[StoreFile, Table]:
        found = self.find(kind, name)
        if found is None:
            raise EditError(f"no {KIND_TITLES[kind]} named {name!r} in the store files")
        return found

    def add(self, kind: str, values: Mapping[str, Any]) -> None:
        name = str(values["name"])
        found = self.find(kind, name)
        if found is not None:
            raise EditError(f"a {KIND_TITLES[kind]} named {name!r} already exists (in {found[0].path})")
        _append(self._new_objects.doc, kind, _new_table(values))
        self._new_objects.dirty = True

    def update(self, kind: str, name: str, values: Mapping[str, Any]) -> None:
        f, t = self.get(kind, name)
        _set_values(t, values)
        f.dirty = True

    def remove(self, kind: str, name: str) -> None:
        for f, aot, i, t in self._each(kind):
            if _name_of(t, kind) == name:
                _remove_at(f.doc, kind, aot, i)
                f.dirty = True
                return
        raise EditError(f"no {KIND_TITLES[kind]} named {name!r} in the store files")

    def remove_all(self, kind: str) -> int:
        n = 0
        for f in self.files:
            aot = _aot(f.doc, kind)
            if aot is not None:
                n += len(aot)
                for i in reversed(range(len(aot))):
                    _remove_at(f.doc, kind, aot, i)
                f.dirty = True
        return n

    def rename(self, kind: str, old: str, new: str) -> None:
        """Rename an object and every reference to it (rules, the assigned policy)."""
        if old == new:
            return
        found = self.find(kind, new)
        if found is not None:
            raise EditError(f"a {KIND_TITLES[kind]} named {new!r} already exists (in {found[0].path})")
        self.update(kind, old, {"name": new})
        if kind in ("filterlist", "filteraction"):
            for f, _, _, policy in self._each("policy"):
                for rule in _aot(policy, "rule") or ():
                    if rule.get(kind) == old:
                        rule[kind] = new
                        f.dirty = True
        elif self.setting("assigned_policy") == old:
            self.set_setting("assigned_policy", new)

    # -- rules and filters -------------------------------------------------------------------
    def rules(self, policy: str) -> list[Table]:
        _, p = self.get("policy", policy)
        return list(_aot(p, "rule") or ())

    def find_rule(self, policy: str, name: str) -> Table | None:
        for r in self.rules(policy):
            if _name_of(r) == name:
                return r
        return None

    def add_rule(self, policy: str, values: Mapping[str, Any]) -> None:
        f, p = self.get("policy", policy)
        if self.find_rule(policy, str(values["name"])) is not None:
            raise EditError(f"policy {policy!r} already has a rule named {values['name']!r}")
        _append(p, "rule", _new_table(values))
        f.dirty = True

    def update_rule(self, policy: str, name: str, values: Mapping[str, Any]) -> None:
        f, _ = self.get("policy", policy)
        rule = self.find_rule(policy, name)
        if rule is None:
            raise EditError(f"policy {policy!r} has no rule named {name!r}")
        newname = values.get("name")
        if newname is not None and newname != name and self.find_rule(policy, str(newname)) is not None:
            raise EditError(f"policy {policy!r} already has a rule named {newname!r}")
        _set_values(rule, values)
        f.dirty = True

    def remove_rules(self, policy: str, name: str | None) -> int:
        """Remove the rule ``name`` of a policy, or all its rules when ``name`` is None."""
        f, p = self.get("policy", policy)
        aot = _aot(p, "rule")
        doomed = [i for i, r in enumerate(aot or ()) if name is None or _name_of(r) == name]
        if name is not None and not doomed:
            raise EditError(f"policy {policy!r} has no rule named {name!r}")
        if aot is not None and doomed:
            for i in reversed(doomed):
                _remove_at(p, "rule", aot, i)
            f.dirty = True
        return len(doomed)

    def filters(self, filterlist: str) -> list[Table]:
        _, fl = self.get("filterlist", filterlist)
        return list(_aot(fl, "filter") or ())

    def add_filter(self, filterlist: str, values: Mapping[str, Any]) -> None:
        f, fl = self.get("filterlist", filterlist)
        _append(fl, "filter", _new_table(values))
        f.dirty = True

    def remove_filters(self, filterlist: str, indexes: Sequence[int]) -> None:
        f, fl = self.get("filterlist", filterlist)
        aot = _aot(fl, "filter")
        if aot is None or not indexes:
            return
        for i in sorted(set(indexes), reverse=True):
            _remove_at(fl, "filter", aot, i)
        f.dirty = True

    # -- [[builtinauth]]: authentication for a built-in policy ----------------------------------
    def set_builtin_auth(self, policy: str, auth: Any) -> None:
        """Give the built-in policy ``policy`` its authentication methods (replacing earlier ones)."""
        for f in self.files:
            for t in _aot(f.doc, "builtinauth") or ():
                if t.get("policy") == policy:
                    t["auth"] = auth
                    f.dirty = True
                    return
        _append(self._new_objects.doc, "builtinauth", _new_table({"policy": policy, "auth": auth}))
        self._new_objects.dirty = True

    # -- [daemon] settings -------------------------------------------------------------------
    def _settings_table(self, create: bool) -> tuple[StoreFile, Table] | None:
        for f in self.files:
            t = f.doc.get("daemon")
            if isinstance(t, Table):
                return f, t
        if not create:
            return None
        f = self._file(self._settings_default)
        t = tomlkit.table()
        if f.doc.body and not f.doc.as_string().endswith("\n\n"):
            f.doc.add(tomlkit.nl())
        f.doc["daemon"] = t
        return f, t

    def setting(self, key: str) -> Any:
        found = self._settings_table(create=False)
        return None if found is None else found[1].get(key)

    def set_setting(self, key: str, value: Any) -> None:
        """Set a ``[daemon]`` key (None removes it)."""
        if value is None and self.setting(key) is None:
            return
        found = self._settings_table(create=value is not None)
        assert found is not None
        _set_values(found[1], {key: value})
        found[0].dirty = True

    # -- whole objects (export / import) -----------------------------------------------------
    def object_tables(self, kind: str) -> list[Table]:
        return [t for _, _, _, t in self._each(kind)]

    def replace_or_add(self, kind: str, table: Table) -> bool:
        """Put an object (a whole table) into the store: replaced in place if its name exists.

        Returns True when an existing object was replaced.
        """
        name = _name_of(table, kind)
        for f, aot, i, t in self._each(kind):
            if _name_of(t, kind) == name:
                if not table.as_string().endswith("\n\n") and i + 1 < len(aot):
                    table.add(tomlkit.nl())
                aot[i] = table
                f.dirty = True
                return True
        _append(self._new_objects.doc, kind, table)
        self._new_objects.dirty = True
        return False

    # -- [xfrm]: manual-keying entries, arrays of strings (docs/manual-keying.md) -------------
    def xfrm_entries(self, key: str) -> list[tuple[StoreFile, int, str]]:
        """(file, index, text) of every string of ``[xfrm] key`` (``states`` or ``policies``)."""
        out = []
        for f in self.files:
            arr = _xfrm_array(f.doc, key)
            for i, item in enumerate(arr if arr is not None else ()):
                if isinstance(item, str):
                    out.append((f, i, str(item)))
        return out

    def add_xfrm(self, key: str, text: str) -> Path:
        """Append an entry to ``[xfrm] key``: in the first file that has that array, else the first
        file with an ``[xfrm]`` table, else the file for new objects. Returns the file's path."""
        files = [f for f in self.files if _xfrm_array(f.doc, key) is not None]
        files = files or [f for f in self.files if isinstance(f.doc.get("xfrm"), Table)]
        f = files[0] if files else self._new_objects
        table = f.doc.get("xfrm")
        if not isinstance(table, Table):
            if "xfrm" in f.doc:
                raise EditError(f"{f.path}: 'xfrm' is not a table")
            if f.doc.body and not f.doc.as_string().endswith("\n\n"):
                f.doc.add(tomlkit.nl())
            table = tomlkit.table()
            f.doc["xfrm"] = table
        arr = _xfrm_array(f.doc, key)
        if arr is None:
            if key in table:
                raise EditError(f"{f.path}: xfrm.{key} is not an array")
            arr = tomlkit.array()
            arr.multiline(True)
            table[key] = arr
            arr = _xfrm_array(f.doc, key)
            assert arr is not None
        arr.append(text)
        f.dirty = True
        return f.path

    def remove_xfrm(self, key: str, doomed: Sequence[tuple[StoreFile, int]]) -> None:
        """Remove the entries ``(file, index)`` of ``[xfrm] key`` (as ``xfrm_entries`` numbers them)."""
        for f in self.files:
            arr = _xfrm_array(f.doc, key)
            indexes = sorted({i for g, i in doomed if g is f}, reverse=True)
            if arr is None or not indexes:
                continue
            for i in indexes:
                del arr[i]
            f.dirty = True


def _xfrm_array(doc: TOMLDocument, key: str) -> Array | None:
    table = doc.get("xfrm")
    if not isinstance(table, Table):
        return None
    arr = table.get(key)
    return arr if isinstance(arr, Array) else None
