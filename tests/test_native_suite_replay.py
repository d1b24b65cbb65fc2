"""The fallback's window tests (test_datapath_replay.py) run against the C window (native/replay.c).

`ipsecd.datapath._native.ReplayWindow` exposes the C window with the API of
`ipsecd.datapath.replay.ReplayWindow`; the imported tests are collected again here with their module's
`ReplayWindow` rebound to it. Nothing of the original module is edited.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_datapath_replay as suite
from test_datapath_replay import *  # noqa: F403

from ipsecd.datapath.native import AVAILABLE, UNAVAILABLE_REASON

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"native module not built: {UNAVAILABLE_REASON}")


@pytest.fixture(autouse=True)
def _native_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from ipsecd.datapath import _native

    monkeypatch.setattr(suite, "ReplayWindow", _native.ReplayWindow)
    yield


def test_the_window_really_is_the_c_one() -> None:
    assert type(suite.ReplayWindow(64, esn=False)).__module__ == "ipsecd.datapath._native"


def test_infer_zero_low_half_like_the_fallback() -> None:
    from ipsecd.datapath import _native
    from ipsecd.datapath.replay import ReplayWindow as PyWindow

    for esn in (False, True):
        for top in (0, 5, 1 << 32, (1 << 32) + 100):
            c, p = _native.ReplayWindow(64, esn), PyWindow(64, esn)
            c.top = p.top = top
            for low in (0, 1, 63, 64, 0xFFFFFFC1, 0xFFFFFFFF):
                assert c.infer(low) == p.infer(low), (esn, top, low)


@pytest.mark.parametrize("size", [32, 64, 4096])
def test_sized_bitmap_matches_the_fallback_at_the_extreme_windows(size: int) -> None:
    """The C bitmap is allocated for the window (2 words for 32, 256 for 4096): step for step the
    same verdicts as the fallback's window over in-window reordering, the left edge, duplicates and
    jumps that wrap the ring several times."""
    import random

    from ipsecd.datapath import _native
    from ipsecd.datapath.replay import ReplayWindow as PyWindow

    rng = random.Random(size)
    c, p = _native.ReplayWindow(size, esn=False), PyWindow(size, esn=False)
    assert c.size == size
    for _ in range(3000):
        roll = rng.random()
        top = p.top
        if roll < 0.05:
            seq = top + rng.randint(size, 9 * size)  # a jump: every block of the ring is reused
        elif roll < 0.15:
            seq = max(0, top - size + rng.randint(-2, 1))  # the left edge
        else:
            seq = max(0, top + rng.randint(-size - 8, 40))
        verdict = c.check(seq)
        assert verdict == p.check(seq), (size, top, seq)
        if verdict:
            c.commit(seq)
            p.commit(seq)
        assert c.top == p.top
    # Everything in the final window agrees too.
    for seq in range(max(0, p.top - size - 3), p.top + 3):
        assert c.check(seq) == p.check(seq), (size, p.top, seq)
