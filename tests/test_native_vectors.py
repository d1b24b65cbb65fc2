"""Published ESP vectors decrypted by the native path (and by the fallback, for parity).

The vectors (tests/vectors/, collected by the fallback's author) carry arbitrary IVs, so they are fed to
`unprotect` inside an outer IPv4 header; the expected payload is the vector's own plaintext.
Extended-sequence-number vectors need a receiver window already near their high half and are skipped
by construction (a fresh window cannot infer it, docs/datapath.md section 5).
"""

from __future__ import annotations

import struct
from ipaddress import ip_address
from pathlib import Path

import pytest

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.native import AVAILABLE, UNAVAILABLE_REASON
from ipsecd.datapath.sa import Direction, EncAlg, Mode, Protocol, SAParams, TunnelAddrs

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"native module not built: {UNAVAILABLE_REASON}")

VECTORS = Path(__file__).parent / "vectors"


def blocks(name: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in [*(VECTORS / name).read_text().splitlines(), ""]:
        line = line.strip()
        if not line or line.startswith("#"):
            if cur and not line:
                out.append(cur)
                cur = {}
            continue
        key, _, value = line.partition("=")
        cur[key.strip()] = value.strip()
    return out


def cases() -> list[tuple[str, EncAlg, bytes, int, bytes, bytes]]:
    """(id, algorithm, enc_key incl. salt, spi, ESP packet, plaintext payload with trailer)."""
    found = []
    for i, b in enumerate(blocks("gcm_esp.txt")):
        if len(b["seq"]) != 8:
            continue
        alg = EncAlg.ENCR_AES_GCM_16 if b["algorithm"] == "AES-GCM-ESP" else EncAlg.ENCR_NULL_AUTH_AES_GMAC
        key = bytes.fromhex(b["key"]) + bytes.fromhex(b["nonce"])[:4]
        found.append(
            (
                f"gcm{i}",
                alg,
                key,
                int(b["spi"], 16),
                bytes.fromhex(b["packet"]),
                bytes.fromhex(b["plaintext"]),
            )
        )
    for i, b in enumerate(blocks("rfc7634_esp.txt")):
        if "inner" not in b or len(b.get("seq", "")) != 8:
            continue
        found.append(
            (
                f"chacha{i}",
                EncAlg.ENCR_CHACHA20_POLY1305,
                bytes.fromhex(b["key"]),
                int(b["spi"], 16),
                bytes.fromhex(b["packet"]),
                bytes.fromhex(b["inner"]),
            )
        )
    return found


CASES = cases()


def test_vectors_found() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_vector_unprotect(case: tuple[str, EncAlg, bytes, int, bytes, bytes]) -> None:
    _, alg, key, spi, packet, plain = case
    outer = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(packet), 0, 0, 64, 50, 0, bytes(4), bytes(4))
    if alg == EncAlg.ENCR_CHACHA20_POLY1305:
        payload, nh = plain, 4  # RFC 7634 appendix A: the inner packet of a tunnel
    else:
        payload, nh = plain[: len(plain) - 2 - plain[-2]], plain[-1]
    mode = Mode.TUNNEL if nh in (4, 41) else Mode.TRANSPORT
    tunnel = TunnelAddrs(ip_address("192.0.2.1"), ip_address("192.0.2.2")) if mode == Mode.TUNNEL else None
    params = SAParams(spi=spi, protocol=Protocol.ESP, mode=mode, enc_alg=alg, enc_key=key, tunnel=tunnel)
    got = {}
    for backend in ("python", "native"):
        rx = make_transform(params, Direction.INBOUND, backend)
        got[backend] = rx.unprotect([outer + packet])[0]
    assert got["native"] == got["python"]
    assert got["native"] is not None
    if mode == Mode.TUNNEL:
        assert got["native"] == payload
    else:
        assert got["native"][20:] == payload
        assert got["native"][9] == nh
