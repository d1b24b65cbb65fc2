"""The corpus of broken stores in tests/data/broken: every case names the exact issues it must raise.

A single-file case starts with ``# EXPECT: LINE: FIELD: message fragment`` lines; a directory case
has ``expect.txt`` with ``FILE:LINE: FIELD: message fragment`` lines (FILE relative to the store
directory). The store must fail with exactly those issues (same file, line and field, message
containing the fragment) and nothing else.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ipsecd.policy.store import ConfigIssue, StoreError, load_store

BROKEN = Path(__file__).resolve().parent.parent / "data" / "broken"
_EXPECT = re.compile(r"^(?:(?P<file>[^:]+):)?(?P<line>\d+): (?P<field>[^:]*): (?P<msg>.+)$")


def _cases() -> list[Path]:
    return sorted(p for p in BROKEN.iterdir() if p.suffix == ".toml" or p.is_dir())


def _expectations(case: Path) -> list[tuple[str, int, str, str]]:
    if case.is_dir():
        lines = (case / "expect.txt").read_text().splitlines()
    else:
        lines = [
            ln[len("# EXPECT: ") :] for ln in case.read_text().splitlines() if ln.startswith("# EXPECT: ")
        ]
    out = []
    for ln in lines:
        m = _EXPECT.match(ln.strip())
        assert m is not None, f"bad expectation {ln!r} in {case.name}"
        out.append((m["file"] or case.name, int(m["line"]), m["field"], m["msg"]))
    assert out, f"{case.name} has no expectations"
    return out


def _copy_private(case: Path, tmp: Path) -> Path:
    """Copy a case and make its files 0600 (git does not keep modes; PSK files must be private)."""
    if case.is_dir():
        dest = tmp / case.name
        shutil.copytree(case, dest, ignore=shutil.ignore_patterns("expect.txt"))
        for f in dest.rglob("*.toml"):
            f.chmod(0o600)
        return dest
    dest = tmp / case.name
    shutil.copy(case, dest)
    dest.chmod(0o600)
    return dest


def test_corpus_is_large_enough() -> None:
    assert len(_cases()) >= 25


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_broken_store_reports_exact_issues(case: Path, tmp_path: Path) -> None:
    store = _copy_private(case, tmp_path)
    with pytest.raises(StoreError) as info:
        load_store(store)
    base = store if store.is_dir() else store.parent

    def key(i: ConfigIssue) -> tuple[str, int, str]:
        return (Path(i.file).relative_to(base).as_posix(), i.line, i.field)

    got = {key(i): i.message for i in info.value.issues}
    expected = _expectations(case)
    assert set(got) == {(f, ln, fld) for f, ln, fld, _ in expected}, str(info.value)
    for f, ln, fld, fragment in expected:
        assert fragment in got[(f, ln, fld)], got[(f, ln, fld)]
    assert "SECRET" not in str(info.value)
    assert len(info.value.issues) == len(expected)
