"""Anti-replay window (RFC 4303 section 3.4.3 and Appendix A), docs/datapath.md section 5.

The window is an integer bitmap: bit i set means sequence number `top - i` was received.
`check()` runs before the ICV is verified and changes nothing; `commit()` runs only after it verified,
so unauthenticated packets never move the window.
"""

from __future__ import annotations

MASK32 = 0xFFFFFFFF


class ReplayWindow:
    __slots__ = ("bitmap", "esn", "mask", "size", "top")

    def __init__(self, size: int, esn: bool) -> None:
        if size % 32 or not 32 <= size <= 4096:
            raise ValueError("replay window must be a multiple of 32 in 32..4096")
        self.size = size
        self.esn = esn
        self.top = 0
        self.bitmap = 0
        self.mask = (1 << size) - 1

    def infer(self, seq_low: int) -> int | None:
        """The full sequence number of a received low half (RFC 4303 Appendix A2.2), None if impossible."""
        if not self.esn:
            return seq_low
        w = self.size
        tl = self.top & MASK32
        th = self.top >> 32
        if tl >= w - 1:  # Case A: the window lies within one sequence number subspace
            seq_hi = th if seq_low >= tl - w + 1 else th + 1
        else:  # Case B: the window spans two subspaces
            seq_hi = th - 1 if seq_low >= (tl - w + 1) & MASK32 else th
        if seq_hi < 0 or seq_hi > MASK32:
            return None
        return (seq_hi << 32) | seq_low

    def check(self, seq: int) -> bool:
        """True when `seq` (the full sequence number) is new and inside or above the window."""
        if seq == 0:
            return False
        if seq > self.top:
            return True
        diff = self.top - seq
        if diff >= self.size:
            return False
        return not (self.bitmap >> diff) & 1

    def commit(self, seq: int) -> None:
        """Record an authenticated sequence number (after check() accepted it)."""
        if seq > self.top:
            shift = seq - self.top
            self.bitmap = ((self.bitmap << shift) | 1) & self.mask if shift < self.size else 1
            self.top = seq
        else:
            self.bitmap |= 1 << (self.top - seq)
