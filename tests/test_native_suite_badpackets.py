"""The fallback's own test module test_datapath_badpackets.py, run again against the native backend.

Every test function of that module is imported here (so pytest collects it a second time, in this
module) and an autouse fixture rebinds that module's `make_transform` so that `backend="python"` builds
the native transform instead. Nothing of the original module is edited.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import test_datapath_badpackets as suite
from test_datapath_badpackets import *  # noqa: F403

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.native import AVAILABLE, UNAVAILABLE_REASON
from ipsecd.datapath.sa import Transform

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"native module not built: {UNAVAILABLE_REASON}")


def _native_make(*args: Any, **kwargs: Any) -> Transform:
    if len(args) >= 3 and args[2] == "python":
        args = (*args[:2], "native", *args[3:])
    if kwargs.get("backend") == "python":
        kwargs["backend"] = "native"
    t = make_transform(*args, **kwargs)
    if len(args) >= 3 or "backend" in kwargs:
        assert t.backend == "native"
    return t


@pytest.fixture(autouse=True)
def _native_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(suite, "make_transform", _native_make)
    yield
