"""Outbound sequence numbers that survive a restart of the daemon (manual keying).

A manually keyed SA outlives the daemon at the peer: a restarted daemon that began again at
sequence number 1 would have its packets refused by the peer's anti-replay window (RFC 4303
section 3.4.3) until it passed the old numbers. So the daemon *reserves* numbers ahead, in blocks,
in a small state file written before they are used: the file always holds, per outbound SA, a
number above every sequence number already sent. A restarted daemon (even after SIGKILL) starts
there. The cost: at most one block of numbers skipped per restart.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ipsecd.datapath.sadb import InstalledSA, ManualState

BLOCK = 1 << 20  # numbers reserved at a time
LOW_WATER = 1 << 19  # reserve again when fewer than this many remain
SEQ_MAX = 0xFFFFFFFF


def _key(state: ManualState) -> str:
    p = state.params
    return f"{int(p.protocol)}/{p.spi:08x}/{state.src}/{state.dst}"


class SeqStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.reserved: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                self.reserved = {str(k): int(v) for k, v in data.items()}

    def initial_seq(self, state: ManualState) -> int:
        """Where a (re)installed outbound SA starts; reserves its first block at once."""
        start = max(1, self.reserved.get(_key(state), 1))
        limit = (1 << 64) - 1 if state.params.esn else SEQ_MAX
        start = min(start, limit)
        self.reserved[_key(state)] = min(start + BLOCK, limit)
        self.save()
        return start

    def update(self, sas: list[InstalledSA]) -> None:
        """Reserve another block for SAs running low; one write for all of them."""
        changed = False
        for sa in sas:
            if sa.state.negotiated:
                continue  # IKE keys: a restart negotiates new ones, nothing to reserve
            key = _key(sa.state)
            nxt = sa.next_seq
            if self.reserved.get(key, 0) - nxt < LOW_WATER:
                self.reserved[key] = nxt + BLOCK
                changed = True
        if changed:
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.reserved))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
