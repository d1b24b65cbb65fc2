"""Anti-replay window (RFC 4303 section 3.4.3, Appendix A) against a simple model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipsecd.datapath.replay import ReplayWindow


class Model:
    """The plain definition: accept a new sequence number inside or above a W-wide window."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()
        self.top = 0

    def accept(self, seq: int) -> bool:
        if seq == 0 or seq in self.seen or seq + self.size <= self.top:
            return False
        self.seen.add(seq)
        self.top = max(self.top, seq)
        return True


@pytest.mark.parametrize("size", [31, 0, 4097, 100])
def test_window_size_validated(size: int) -> None:
    with pytest.raises(ValueError):
        ReplayWindow(size, esn=False)


@settings(max_examples=300, deadline=None)
@given(
    size=st.sampled_from([32, 64, 96, 1024, 4096]),
    seqs=st.lists(st.integers(0, 6000), max_size=200),
    authentic=st.lists(st.booleans(), max_size=200),
)
def test_window_matches_model(size: int, seqs: list[int], authentic: list[bool]) -> None:
    w = ReplayWindow(size, esn=False)
    m = Model(size)
    for i, seq in enumerate(seqs):
        ok = w.check(seq)
        if i < len(authentic) and not authentic[i]:
            continue  # the ICV failed: nothing is committed, the model sees nothing either
        assert ok == m.accept(seq), (seq, w.top)
        if ok:
            w.commit(seq)


def test_unauthenticated_packet_never_moves_the_window() -> None:
    w = ReplayWindow(64, esn=False)
    assert w.check(1000)  # checked but never committed (bad ICV)
    assert w.top == 0 and w.check(1) and w.check(1000)


def test_window_edges() -> None:
    w = ReplayWindow(32, esn=False)
    for s in (1, 40):
        assert w.check(s)
        w.commit(s)
    assert not w.check(8)  # 40 - 8 = 32: just outside
    assert w.check(9)  # 40 - 9 = 31: the oldest slot
    w.commit(9)
    assert not w.check(9) and not w.check(40) and not w.check(1) and not w.check(0)


def test_esn_inference_appendix_a2() -> None:
    w = ReplayWindow(64, esn=True)
    # Case B near the start: top = 0, Th - 1 would be negative
    assert w.infer(5) == 5
    assert w.infer(0xFFFFFFF0) is None
    # Case A: the window inside one subspace
    w.top = (3 << 32) | 1000
    assert w.infer(999) == (3 << 32) | 999
    assert w.infer(1000 - 63) == (3 << 32) | 937
    assert w.infer(1000 - 64) == (4 << 32) | 936  # below the window: the next subspace
    assert w.infer(5000) == (3 << 32) | 5000
    # Case B: the window spans two subspaces
    w.top = (3 << 32) | 10
    assert w.infer(0xFFFFFFF0) == (2 << 32) | 0xFFFFFFF0
    assert w.infer(11) == (3 << 32) | 11
    assert w.infer(0x7FFFFFFF) == (3 << 32) | 0x7FFFFFFF
    # the highest subspace cannot be left
    w.top = (0xFFFFFFFF << 32) | 0xFFFFFF00
    assert w.infer(5) is None


def test_esn_window_across_the_32_bit_boundary() -> None:
    w = ReplayWindow(64, esn=True)
    w.top = 0xFFFFFFF0
    seqs = [0xFFFFFFF5, 0xFFFFFFFF, 3, 0xFFFFFFF8, 1, 2]
    full = []
    for low in seqs:
        s = w.infer(low)
        assert s is not None and w.check(s)
        w.commit(s)
        full.append(s)
    assert full == [0xFFFFFFF5, 0xFFFFFFFF, (1 << 32) | 3, 0xFFFFFFF8, (1 << 32) | 1, (1 << 32) | 2]
    for low in seqs:
        s = w.infer(low)
        assert s is not None and not w.check(s)
