"""The policy store: load TOML files, validate every object, build a ``model.Store``.

Interface commit: the signatures are final; validation follows in later commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ipsecd.policy.model import Store

STORE_MAIN = "ipsecd.toml"
STORE_POLICIES = "policies.toml"
STORE_DROPIN = "policies.d"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem of a store: file, 1-based line (0: the whole file), dotted field path."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class StoreError(Exception):
    """Every issue found in a store; str() lists them one per line."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


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
    """Parse and validate (file name, TOML text) pairs in load order."""
    raise NotImplementedError("store validation is being written on the load branch")


def load_store(path: str | Path) -> Store:
    """Read a store directory or file, check PSK file modes, parse and validate."""
    raise NotImplementedError("store validation is being written on the load branch")
