"""Child SAs: traffic selector narrowing (RFC 7296 section 2.9), KEYMAT split (section 2.17) and the
two ``SAParams`` a negotiated ESP SA becomes for the data path.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ipsecd.datapath.sa import (
    EncAlg,
    IntegAlg,
    Lifetimes,
    Mode,
    Protocol,
    SAParams,
    Selector,
    TunnelAddrs,
    UdpEncap,
)
from ipsecd.ikev2.crypto import SkSuite, child_keymat
from ipsecd.ikev2.payloads import Address, TrafficSelector

# ------------------------------------------------------------------------------ traffic selectors


def _intersect(a: TrafficSelector, b: TrafficSelector) -> TrafficSelector | None:
    if a.start.version != b.start.version:
        return None
    if a.protocol and b.protocol and a.protocol != b.protocol:
        return None
    start, end = max(a.start, b.start), min(a.end, b.end)
    sp, ep = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    if int(start) > int(end) or sp > ep:
        return None
    return TrafficSelector(start, end, a.protocol or b.protocol, sp, ep)


def narrow(
    proposed: Sequence[TrafficSelector], allowed: Sequence[TrafficSelector]
) -> tuple[TrafficSelector, ...]:
    """RFC 7296 section 2.9: the responder answers with the part of the proposed selectors its
    policy allows (the intersection, possibly several selectors); empty: TS_UNACCEPTABLE."""
    out: list[TrafficSelector] = []
    for p in proposed:
        for a in allowed:
            got = _intersect(p, a)
            if got is not None and got not in out:
                out.append(got)
    return tuple(out)


def within(got: Sequence[TrafficSelector], proposed: Sequence[TrafficSelector]) -> bool:
    """Every selector of a response lies inside one we proposed (the responder may only narrow)."""
    return bool(got) and all(any(_intersect(g, p) == g for p in proposed) for g in got)


def _networks(ts: TrafficSelector) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return list(ipaddress.summarize_address_range(ts.start, ts.end))


def selectors(
    local: Sequence[TrafficSelector], remote: Sequence[TrafficSelector], outbound: bool
) -> tuple[Selector, ...]:
    """The data path selectors of one direction: each local range with each remote range."""
    out: list[Selector] = []
    for lt in local:
        for rt in remote:
            if lt.start.version != rt.start.version or (
                lt.protocol and rt.protocol and lt.protocol != rt.protocol
            ):
                continue
            proto = lt.protocol or rt.protocol
            for ln in _networks(lt):
                for rn in _networks(rt):
                    if outbound:
                        out.append(
                            Selector(
                                ln, rn, proto, (lt.start_port, lt.end_port), (rt.start_port, rt.end_port)
                            )
                        )
                    else:
                        out.append(
                            Selector(
                                rn, ln, proto, (rt.start_port, rt.end_port), (lt.start_port, lt.end_port)
                            )
                        )
    return tuple(out)


# ------------------------------------------------------------------------------ child SA records


class ChildState(enum.Enum):
    ACTIVE = "active"
    REKEYING = "rekeying"  # our CREATE_CHILD_SA with REKEY_SA for it is outstanding
    REKEYED = "rekeyed"  # replaced; waiting for its Delete
    DELETING = "deleting"


@dataclass
class ChildSa:
    """One negotiated ESP SA pair. ``our_spi`` is the inbound SPI (what the peer sends to)."""

    our_spi: bytes
    peer_spi: bytes
    inbound: SAParams
    outbound: SAParams
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    suite: SkSuite
    transport: bool
    pfs_group: int | None
    created: float
    rekey_at: float
    expire_at: float
    initiator: bool  # we initiated the exchange that created it
    nonces: tuple[bytes, bytes] = field(default=(b"", b""), repr=False)  # (Ni, Nr) of that exchange
    state: ChildState = ChildState.ACTIVE

    @property
    def spi(self) -> int:
        return int.from_bytes(self.our_spi, "big")


@dataclass(frozen=True)
class Endpoints:
    """Outer addresses and whether ESP is UDP-encapsulated (RFC 3948) with which ports."""

    local: Address
    remote: Address
    encap: bool
    local_port: int = 4500
    remote_port: int = 4500


def build_child(
    *,
    prf_id: int,
    sk_d: bytes,
    suite: SkSuite,
    esn: bool,
    initiator: bool,
    our_spi: bytes,
    peer_spi: bytes,
    ni: bytes,
    nr: bytes,
    gir: bytes | None,
    tsi: tuple[TrafficSelector, ...],
    tsr: tuple[TrafficSelector, ...],
    transport: bool,
    ends: Endpoints,
    lifetime: float,
    rekey_at: float,
    now: float,
    rng: Callable[[int], bytes],
    pfs_group: int | None = None,
) -> ChildSa:
    """KEYMAT (RFC 7296 section 2.17) split into the two directions, as ``SAParams``."""
    e, a = suite.enc_key_len, suite.integ_key_len
    km = child_keymat(prf_id, sk_d, ni, nr, 2 * (e + a), gir)
    i2r = (km[:e], km[e : e + a])
    r2i = (km[e + a : 2 * e + a], km[2 * e + a :])
    out_keys, in_keys = (i2r, r2i) if initiator else (r2i, i2r)
    local_ts, remote_ts = (tsi, tsr) if initiator else (tsr, tsi)
    mode = Mode.TRANSPORT if transport else Mode.TUNNEL
    cbc = not suite.aead
    life = Lifetimes(soft_seconds=max(0.0, rekey_at - now), hard_seconds=lifetime)

    def params(spi: bytes, keys: tuple[bytes, bytes], outbound: bool) -> SAParams:
        enc = (
            UdpEncap(ends.local_port, ends.remote_port)
            if outbound
            else UdpEncap(ends.remote_port, ends.local_port)
        )
        tunnel = None
        if not transport:
            tunnel = (
                TunnelAddrs(ends.local, ends.remote) if outbound else TunnelAddrs(ends.remote, ends.local)
            )
        return SAParams(
            spi=int.from_bytes(spi, "big"),
            protocol=Protocol.ESP,
            mode=mode,
            enc_alg=EncAlg(suite.encr),
            enc_key=keys[0],
            integ_alg=IntegAlg(suite.integ),
            integ_key=keys[1],
            esn=esn,
            encap=enc if ends.encap else None,
            tunnel=tunnel,
            iv_key=rng(16) if cbc else b"",
            lifetimes=life,
            selectors=selectors(local_ts, remote_ts, outbound),
        )

    return ChildSa(
        our_spi=our_spi,
        peer_spi=peer_spi,
        inbound=params(our_spi, in_keys, False),
        outbound=params(peer_spi, out_keys, True),
        local_ts=local_ts,
        remote_ts=remote_ts,
        suite=suite,
        transport=transport,
        pfs_group=pfs_group,
        created=now,
        rekey_at=rekey_at,
        expire_at=now + lifetime,
        initiator=initiator,
        nonces=(ni, nr),
    )
