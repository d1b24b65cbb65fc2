"""The test PKI of tools/mkcerts, imported as a module, and helpers to build odd certificates."""

from __future__ import annotations

import datetime
import importlib.machinery
import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

MKCERTS = Path(__file__).resolve().parent.parent / "tools" / "mkcerts"
NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def mkcerts() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("mkcerts", str(MKCERTS))
    spec = importlib.util.spec_from_loader("mkcerts", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


MK: Any = mkcerts()


def openssl(*args: str, data: bytes | None = None) -> bytes:
    exe = shutil.which("openssl")
    assert exe is not None, "the openssl CLI is needed for the interop evidence"
    return subprocess.run([exe, *args], input=data, capture_output=True, check=True, timeout=30).stdout
