"""The import direction of DEVELOPERS.md: only io/ and daemon/ touch sockets, asyncio or the clock.

Pure packages (policy, ike, ikev1, ikev2, datapath, log) never import the kernel-facing packages
(io, daemon) nor the CLI; the CLI may reach the daemon only through ipsecd.daemon.control (the
control protocol client) and never imports io/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ipsecd"
IMPURE = {"io", "daemon"}
# Modules that reach the network, the event loop or the wall clock.
FORBIDDEN_STDLIB = {"socket", "asyncio", "selectors", "select", "ssl", "time", "asyncio_dgram", "pyroute2"}
PURE = {"policy", "ike", "ikev1", "ikev2", "datapath", "log"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the package
                pkg = path.relative_to(ROOT.parent).with_suffix("").parts[: -node.level]
                base = ".".join(pkg)
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
    return found


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    return rel[0] if len(rel) > 1 else ""


def _violations() -> list[str]:
    bad: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        pkg = _package_of(path)
        if pkg in IMPURE:
            continue
        for line, mod in _imports(path):
            top = mod.split(".")[0]
            where = f"{path.relative_to(ROOT.parent)}:{line} imports {mod}"
            if pkg in PURE or pkg == "":
                if top in FORBIDDEN_STDLIB:
                    bad.append(where + " (pure code must not touch sockets, asyncio or the clock)")
                if mod.startswith(("ipsecd.io", "ipsecd.daemon", "ipsecd.cli")):
                    bad.append(where + " (pure code must not import io/, daemon/ or cli/)")
            elif pkg == "cli":
                if mod.startswith("ipsecd.io"):
                    bad.append(where + " (the CLI must not touch the kernel)")
                if mod.startswith("ipsecd.daemon") and not mod.startswith("ipsecd.daemon.control"):
                    bad.append(where + " (the CLI reaches the daemon only through ipsecd.daemon.control)")
                if top in FORBIDDEN_STDLIB - {"socket"}:
                    bad.append(where + " (the CLI must not run an event loop or read the clock directly)")
    return bad


def test_import_direction() -> None:
    assert _violations() == []


def test_checker_catches_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself must be able to fail."""
    fake = tmp_path / "ipsecd"
    (fake / "policy").mkdir(parents=True)
    (fake / "policy" / "bad.py").write_text("import socket\nfrom ipsecd.io import tun\n")
    (fake / "cli").mkdir()
    (fake / "cli" / "bad.py").write_text("from ipsecd.daemon.engine import Engine\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    found = _violations()
    assert len(found) == 3, found
