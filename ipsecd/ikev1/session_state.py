"""Bookkeeping records of ``ipsecd.ikev1.session`` (one per exchange or SA) and small helpers."""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field

from ipsecd.ike.constants import HashAlgorithm
from ipsecd.ikev1 import informational
from ipsecd.ikev1.main_mode import MainMode, Phase1Sa
from ipsecd.ikev1.payloads import IdPayload
from ipsecd.ikev1.quick_mode import ChildSa, QmPolicy, QuickMode


@dataclass
class Retx:
    data: bytes
    next_at: float
    interval: float
    sent: int = 1


@dataclass
class Mm:
    mm: MainMode
    started: float
    rekey_of: bytes | None = None  # cookies of the ISAKMP SA it replaces
    retx: Retx | None = None
    done_at: float | None = None


@dataclass
class P1:
    sa: Phase1Sa
    established: float
    soft_at: float
    hard_at: float
    qm_count: int = 0
    rekeying: bool = False
    used_mids: set[int] = field(default_factory=set)
    seen_info: deque[int] = field(default_factory=deque)
    dpd: informational.Dpd | None = None
    last_rx: float = 0.0
    dpd_next: float | None = None

    @property
    def cookies(self) -> bytes:
        return self.sa.cky_i + self.sa.cky_r


@dataclass
class Qm:
    qm: QuickMode
    p1: P1
    retx: Retx | None = None
    rekey_of: int | None = None
    done_at: float | None = None


@dataclass
class Child:
    sa: ChildSa
    policy: QmPolicy | None  # set when we initiated it: we rekey it
    rekey_at: float | None
    hard_at: float
    rekeying: bool = False


def refuse_all(local: object, remote: object) -> QmPolicy | None:
    return None


def id_text(p: IdPayload) -> str:
    try:
        if len(p.data) in (4, 16) and p.id_type in (1, 5):
            return str(ipaddress.ip_address(p.data))
        return p.data.decode("ascii", "replace")
    except ValueError:
        return p.data.hex()


def hash_name(alg: int) -> str:
    try:
        return HashAlgorithm(alg).name
    except ValueError:
        return str(alg)
