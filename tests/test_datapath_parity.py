"""Parity: the native transform and the Python fallback give byte-identical results (docs/datapath.md).

Runs only when the native extension imports; otherwise the whole module is reported as skipped
(never as passed). Every scenario feeds both backends the same parameters and the same packets and
compares outputs, `None` positions, counters and events.
"""

from __future__ import annotations

import struct
from ipaddress import ip_network

import pytest
from datapath_util import AH_SUITES, ESP_SUITES, ipv4, ipv6, params, tcp, udp, with_l4_checksum

from ipsecd.datapath.counters import Counters
from ipsecd.datapath.factory import make_transform, native_available
from ipsecd.datapath.sa import (
    Direction,
    EncAlg,
    IntegAlg,
    Lifetimes,
    Mode,
    Protocol,
    SAEvent,
    SAParams,
    Selector,
    UdpEncap,
)

if not native_available():
    pytest.skip("the native data path extension is not built/importable", allow_module_level=True)

INNERS = (
    [
        with_l4_checksum(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1000, 80, b"p" * n), tos=0x10, df=bool(n % 2)))
        for n in (0, 1, 2, 3, 13, 100, 1360)
    ]
    + [
        with_l4_checksum(ipv6("fd00::1", "fd00::2", 6, tcp(1000, 80, b"q" * n), tclass=0x22, flow=9))
        for n in (0, 5, 64, 1300)
    ]
    + [ipv4("10.0.0.1", "10.0.0.2", 17, udp(53, 53, b"udp zero checksum"))]
)

Trace = tuple[list[bytes | None], list[bytes | None], Counters, Counters, list[SAEvent], list[SAEvent]]


def _corpus(wires: list[bytes]) -> list[bytes]:
    """Valid packets, then replays, truncations, bit flips, garbage: derived deterministically."""
    good = list(wires)
    bad: list[bytes] = [wires[0], wires[-1]]  # replays
    for i, w in enumerate(wires[:6]):
        flipped = bytearray(w)
        flipped[(i * 37 + 21) % len(w)] ^= 1 << (i % 8)
        bad.append(bytes(flipped))
        bad.append(w[: max(1, len(w) - 1 - i * 7)])
        fixed = bytearray(w[: len(w) - 4 - i])
        if fixed[0] >> 4 == 4:
            struct.pack_into("!H", fixed, 2, len(fixed))
        else:
            struct.pack_into("!H", fixed, 4, len(fixed) - 40)
        bad.append(bytes(fixed))
    bad += [b"", b"\x45", bytes(64), b"\x60" + bytes(50), b"\xff" * 30, b"\x45" + bytes(70000)]
    return good[::2] + bad + good[1::2]


def _run(backend: str, p: SAParams, inners: list[bytes], initial_seq: int = 1) -> Trace:
    out = make_transform(p, Direction.OUTBOUND, backend, now=5.0, initial_seq=initial_seq)
    inb = make_transform(p, Direction.INBOUND, backend, now=5.0)
    assert out.backend == backend
    wires = out.protect(inners)
    reference = make_transform(p, Direction.OUTBOUND, "python", now=5.0, initial_seq=initial_seq).protect(
        inners
    )
    got = inb.unprotect(_corpus([w for w in reference if w is not None]))
    out.tick(10_000.0)
    inb.tick(10_000.0)
    return wires, got, out.counters(), inb.counters(), out.drain_events(), inb.drain_events()


def _same(p: SAParams, inners: list[bytes] = INNERS, initial_seq: int = 1) -> None:
    py = _run("python", p, inners, initial_seq)
    nat = _run("native", p, inners, initial_seq)
    for field, a, b in zip(
        ("protect", "unprotect", "out counters", "in counters", "out events", "in events"),
        py,
        nat,
        strict=True,
    ):
        assert a == b, field


CASES = []
for name, enc, klen, integ in ESP_SUITES:
    for mode in (Mode.TRANSPORT, Mode.TUNNEL):
        for nat in (False, True):
            for esn in (False, True):
                CASES.append(
                    (
                        f"{name}-{mode.name.lower()}-{'natt' if nat else 'plain'}{'-esn' if esn else ''}",
                        params(
                            Protocol.ESP,
                            mode,
                            enc,
                            integ,
                            enc_len=klen,
                            esn=esn,
                            encap=UdpEncap(4500, 4501) if nat else None,
                            v6_outer=esn,
                        ),
                    )
                )
for name, integ in AH_SUITES:
    for mode in (Mode.TRANSPORT, Mode.TUNNEL):
        for esn in (False, True):
            CASES.append(
                (
                    f"{name}-{mode.name.lower()}{'-esn' if esn else ''}",
                    params(Protocol.AH, mode, EncAlg.ENCR_NULL, integ, enc_len=0, esn=esn, v6_outer=esn),
                )
            )


@pytest.mark.parametrize("p", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_parity(p: SAParams) -> None:
    _same(p)


def test_parity_lifetimes_selectors_and_exhaustion() -> None:
    life = Lifetimes(
        soft_packets=3, hard_packets=6, soft_bytes=2000, hard_bytes=10**6, soft_seconds=50, hard_seconds=900
    )
    _same(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, lifetimes=life))
    sel = (Selector(ip_network("10.0.0.0/24"), ip_network("10.0.0.2/32"), 6, (0, 65535), (80, 80)),)
    _same(
        params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA1_96, selectors=sel)
    )
    _same(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16), initial_seq=(1 << 32) - 3)
    _same(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, esn=True), initial_seq=(1 << 32) - 3)
    _same(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, replay_window=4096))


def _vector_inputs() -> list[tuple[SAParams, bytes]]:
    """Published ESP packets (tests/vectors/) that a fresh inbound SA can take, wrapped in IPv4."""
    from datapath_util import read_vectors

    from ipsecd.datapath.esp import integrity_icv

    cases: list[tuple[SAParams, bytes]] = []
    for v in read_vectors("gcm_esp.txt"):
        seq = int(v["seq"], 16)
        if seq >> 32:  # a fresh window infers high bits 0 only
            continue
        nonce = bytes.fromhex(v["nonce"])
        enc = EncAlg.ENCR_NULL_AUTH_AES_GMAC if v["algorithm"] == "AES-GMAC-ESP" else EncAlg.ENCR_AES_GCM_16
        p = SAParams(
            spi=int(v["spi"], 16),
            protocol=Protocol.ESP,
            mode=Mode.TRANSPORT,
            enc_alg=enc,
            enc_key=bytes.fromhex(v["key"]) + nonce[:4],
            esn=len(v["seq"]) == 16,
        )
        cases.append((p, ipv4(proto=50, payload=bytes.fromhex(v["packet"]))))
    ik = bytes(range(20))
    for v in read_vectors("rfc3602_esp.txt"):
        p = SAParams(
            spi=int(v["spi"], 16),
            protocol=Protocol.ESP,
            mode=Mode.TRANSPORT,
            enc_alg=EncAlg.ENCR_AES_CBC,
            enc_key=bytes.fromhex(v["key"]),
            integ_alg=IntegAlg.AUTH_HMAC_SHA1_96,
            integ_key=ik,
            iv_key=bytes(16),
        )
        packet = bytes.fromhex(v["packet"])
        cases.append(
            (p, ipv4(proto=50, payload=packet + integrity_icv(IntegAlg.AUTH_HMAC_SHA1_96, ik, packet)))
        )
    for v in read_vectors("rfc7634_esp.txt"):
        p = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_CHACHA20_POLY1305, spi=int(v["spi"], 16))
        p = SAParams(**{**p.__dict__, "enc_key": bytes.fromhex(v["key"])})
        cases.append((p, ipv4(proto=50, payload=bytes.fromhex(v["packet"]))))
    return cases


def test_parity_on_published_vectors() -> None:
    cases = _vector_inputs()
    assert len(cases) >= 10
    for p, pkt in cases:
        results = []
        for backend in ("python", "native"):
            t = make_transform(p, Direction.INBOUND, backend)
            results.append((t.unprotect([pkt, pkt]), t.counters()))
        assert results[0] == results[1]
        assert results[0][0][0] is not None and results[0][0][1] is None  # delivered, then a replay
