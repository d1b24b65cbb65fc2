"""The policy store: find the files of a store, read them, validate them into a ``model.Store``.

The schema is docs/store.md; the checks are in ``ipsecd.policy.validate``. Validation collects
*every* issue (file, 1-based line, field path, message) before failing, and a store with any issue
raises ``StoreError``: nothing is partly loaded. Secrets (PSKs) never appear in issue text.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ipsecd.policy.issues import ConfigIssue, StoreError
from ipsecd.policy.model import Store
from ipsecd.policy.validate import Validator

STORE_MAIN = "ipsecd.toml"
STORE_POLICIES = "policies.toml"
STORE_DROPIN = "policies.d"


def store_files(path: str | Path) -> list[Path]:
    """The files of a store in load order: a directory's ipsecd.toml, policies.toml and
    policies.d/*.toml (name order), or the single file ``path``."""
    p = Path(path)
    if p.is_dir():
        files = [f for f in (p / STORE_MAIN, p / STORE_POLICIES) if f.is_file()]
        dropin = p / STORE_DROPIN
        if dropin.is_dir():
            files.extend(sorted(f for f in dropin.glob("*.toml") if f.is_file()))
        return files
    if p.exists():
        return [p]
    raise StoreError([ConfigIssue(str(p), 0, "", "no such file or directory")])


def edit_file_for_new_objects(path: str | Path) -> Path:
    """Where new objects go: policies.toml in a store directory, the file itself otherwise."""
    p = Path(path)
    return p / STORE_POLICIES if p.is_dir() else p


def parse_store_texts(files: Sequence[tuple[str, str]]) -> Store:
    """Parse and validate (file name, TOML text) pairs in load order (no file-mode check)."""
    return Validator().run([(name, text, None) for name, text in files])


def load_store(path: str | Path) -> Store:
    """Read a store directory or file, check PSK file modes, parse and validate."""
    inputs: list[tuple[str, str, int | None]] = []
    issues: list[ConfigIssue] = []
    for f in store_files(path):
        try:
            data = f.read_bytes()
            mode = stat.S_IMODE(os.stat(f).st_mode)
        except OSError as exc:
            issues.append(ConfigIssue(str(f), 0, "", f"cannot read: {exc.strerror}"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            issues.append(ConfigIssue(str(f), line, "", "not valid UTF-8"))
            continue
        inputs.append((str(f), text, mode))
    if issues:
        raise StoreError(issues)
    return Validator().run(inputs)


__all__ = [
    "ConfigIssue",
    "StoreError",
    "edit_file_for_new_objects",
    "load_store",
    "parse_store_texts",
    "store_files",
]
