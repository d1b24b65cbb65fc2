"""ruff and mypy --strict stay clean: the suite fails when they do not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_clean() -> None:
    r = _run("ruff", "check", "ipsecd", "tests", "bench", "tools")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_clean() -> None:
    r = _run("ruff", "format", "--check", "ipsecd", "tests", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_clean() -> None:
    r = _run("mypy")
    assert r.returncode == 0, r.stdout + r.stderr
