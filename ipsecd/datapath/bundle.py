"""An SA bundle (RFC 4301 section 4.5): ESP then AH on output, AH then ESP on input."""

from __future__ import annotations

from collections.abc import Sequence

from ipsecd.datapath.sa import Transform


class Bundle:
    """Chain transforms of one direction; protect in list order, unprotect in reverse order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        if not transforms:
            raise ValueError("a bundle needs at least one transform")
        directions = {t.direction for t in transforms}
        if len(directions) != 1:
            raise ValueError("all transforms of a bundle must have the same direction")
        self.transforms = list(transforms)

    def protect(self, packets: list[bytes]) -> list[bytes | None]:
        return self._run(packets, self.transforms, outbound=True)

    def unprotect(self, packets: list[bytes]) -> list[bytes | None]:
        return self._run(packets, self.transforms[::-1], outbound=False)

    @staticmethod
    def _run(packets: list[bytes], chain: list[Transform], outbound: bool) -> list[bytes | None]:
        current: list[bytes | None] = list(packets)
        for t in chain:
            alive = [i for i, p in enumerate(current) if p is not None]
            batch = [p for p in current if p is not None]
            done = t.protect(batch) if outbound else t.unprotect(batch)
            nxt: list[bytes | None] = [None] * len(current)
            for i, p in zip(alive, done, strict=True):
                nxt[i] = p
            current = nxt
        return current
