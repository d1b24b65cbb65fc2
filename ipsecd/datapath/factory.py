"""Backend selection for SA transforms (docs/datapath.md section 1)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ipsecd.datapath.sa import Direction, SAParams, Transform


def _native() -> ModuleType | None:
    try:
        mod = importlib.import_module("ipsecd.datapath.native")
    except ImportError:
        return None
    return mod if getattr(mod, "AVAILABLE", False) else None


def native_available() -> bool:
    """True when the compiled extension imports (regardless of IPSECD_NATIVE)."""
    return _native() is not None


def make_transform(
    params: SAParams,
    direction: Direction,
    backend: str = "auto",
    *,
    now: float = 0.0,
    initial_seq: int = 1,
) -> Transform:
    """Build one direction of an SA on the native path when possible, else on the Python fallback.

    backend: "auto" (native unless IPSECD_NATIVE=0 or it does not import), "native" (RuntimeError when
    absent) or "python".
    """
    if backend not in ("auto", "native", "python"):
        raise ValueError(f"unknown backend {backend!r}")
    if backend == "native" or (
        backend == "auto" and os.environ.get("IPSECD_NATIVE", "1") != "0" and native_available()
    ):
        native = _native()
        if native is None:
            raise RuntimeError("the native data path extension is not available")
        t: Transform = native.make_native_transform(params, direction, now=now, initial_seq=initial_seq)
        return t
    from ipsecd.datapath.fallback import PyTransform

    return PyTransform(params, direction, now=now, initial_seq=initial_seq)
