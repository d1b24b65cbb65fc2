"""Conformance against published vectors (tests/vectors/, source and section above each vector).

Encryption side: `EspCrypto.seal` with the vector's IV must give the published ESP packet byte for
byte (ipsecd's own IVs are deterministic counters, so the vector's IV is passed in). Decryption side:
the published packet, wrapped in an IPv4 header, goes through `unprotect` and must give the payload.
"""

from __future__ import annotations

import struct

import pytest
from datapath_util import ipv4, params, read_vectors

from ipsecd.datapath.esp import EspCrypto, integrity_icv
from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.fallback import PyTransform
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, Mode, Protocol, SAParams

GCM = read_vectors("gcm_esp.txt")
CBC = read_vectors("rfc3602_esp.txt")
CHACHA = read_vectors("rfc7634_esp.txt")
HMAC = read_vectors("hmac.txt")


def _transport(
    enc: EncAlg, key: bytes, spi: int, esn: bool, integ: IntegAlg = IntegAlg.NONE, ik: bytes = b""
) -> SAParams:
    return SAParams(
        spi=spi,
        protocol=Protocol.ESP,
        mode=Mode.TRANSPORT,
        enc_alg=enc,
        enc_key=key,
        integ_alg=integ,
        integ_key=ik,
        esn=esn,
        iv_key=bytes(16) if enc in (EncAlg.ENCR_AES_CBC, EncAlg.ENCR_3DES) else b"",
    )


def _inbound_at(p: SAParams, seq: int) -> PyTransform:
    """An inbound fallback transform whose window already expects `seq` (ESN high bits inferred)."""
    t = PyTransform(p, Direction.INBOUND)
    if seq > 1:
        t._window.top = seq - 1  # white-box: place the window as if seq - 1 had been received
    return t


def test_vector_files_are_complete() -> None:
    assert len(GCM) == 9 and len(CBC) == 4 and len(CHACHA) == 1 and len(HMAC) == 9
    for v in GCM + CBC + CHACHA + HMAC:
        assert v["source"].startswith(("draft-mcgrew-gcm-test-01", "RFC")), v


@pytest.mark.parametrize("v", GCM, ids=[v["source"].split(", ")[-1] for v in GCM])
def test_gcm_gmac_draft_vectors(v: dict[str, str]) -> None:
    nonce = bytes.fromhex(v["nonce"])
    key = bytes.fromhex(v["key"]) + nonce[:4]
    spi = int(v["spi"], 16)
    esn = len(v["seq"]) == 16
    seq = int(v["seq"], 16)
    enc = EncAlg.ENCR_NULL_AUTH_AES_GMAC if v["algorithm"] == "AES-GMAC-ESP" else EncAlg.ENCR_AES_GCM_16
    plain = bytes.fromhex(v["plaintext"])
    packet = bytes.fromhex(v["packet"])
    pad_len, nh = plain[-2], plain[-1]
    payload = plain[: len(plain) - 2 - pad_len]
    p = _transport(enc, key, spi, esn)
    # encryption: byte-exact ESP packet, padding included
    assert EspCrypto(p).seal(seq, payload, nh, iv=nonce[4:]) == packet
    # decryption through the whole inbound path
    outer = ipv4(proto=50, payload=packet)
    t = _inbound_at(p, seq)
    (inner,) = t.unprotect([outer])
    assert inner is not None, t.counters().drops()
    assert inner[9] == nh and inner[20:] == payload
    assert struct.unpack_from("!H", inner, 2)[0] == len(inner)


@pytest.mark.parametrize("v", CBC, ids=[v["source"].split(", ")[-1].split(" (")[0] for v in CBC])
def test_rfc3602_aes_cbc_packets(v: dict[str, str]) -> None:
    key = bytes.fromhex(v["key"])
    spi, seq = int(v["spi"], 16), int(v["seq"], 16)
    payload, nh = bytes.fromhex(v["payload"]), int(v["next_header"], 16)
    packet = bytes.fromhex(v["packet"])
    ik = bytes(range(20))
    p = _transport(EncAlg.ENCR_AES_CBC, key, spi, False, IntegAlg.AUTH_HMAC_SHA1_96, ik)
    sealed = EspCrypto(p).seal(seq, payload, nh, iv=bytes.fromhex(v["iv"]))
    # RFC 3602 section 4 packets carry no ICV: ours is appended after exactly the published bytes
    assert sealed[:-12] == packet
    assert sealed[-12:] == integrity_icv(IntegAlg.AUTH_HMAC_SHA1_96, ik, packet)
    (inner,) = _inbound_at(p, seq).unprotect([ipv4(proto=50, payload=sealed)])
    assert inner is not None and inner[9] == nh and inner[20:] == payload


def test_rfc7634_chacha20_poly1305_example() -> None:
    (v,) = CHACHA
    key = bytes.fromhex(v["key"])
    spi, seq = int(v["spi"], 16), int(v["seq"], 16)
    inner_pkt, packet = bytes.fromhex(v["inner"]), bytes.fromhex(v["packet"])
    p = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_CHACHA20_POLY1305, spi=spi)
    p = SAParams(**{**p.__dict__, "enc_key": key})
    assert EspCrypto(p).seal(seq, inner_pkt, 4, iv=bytes.fromhex(v["iv"])) == packet
    t = _inbound_at(p, seq)
    assert t.unprotect([ipv4(proto=50, payload=packet)]) == [inner_pkt]
    assert t.counters().packets_received == 1


@pytest.mark.parametrize("v", HMAC, ids=[v["source"].split(", ")[-1] for v in HMAC])
def test_hmac_icv_vectors(v: dict[str, str]) -> None:
    alg = IntegAlg[v["alg"]]
    icv = integrity_icv(alg, bytes.fromhex(v["key"]), bytes.fromhex(v["data"]))
    assert icv == bytes.fromhex(v["icv"])


def test_tampered_vector_is_not_authenticated() -> None:
    v = GCM[0]
    nonce = bytes.fromhex(v["nonce"])
    p = _transport(EncAlg.ENCR_AES_GCM_16, bytes.fromhex(v["key"]) + nonce[:4], int(v["spi"], 16), False)
    bad = bytearray(bytes.fromhex(v["packet"]))
    bad[20] ^= 1
    t = make_transform(p, Direction.INBOUND, "python")
    assert t.unprotect([ipv4(proto=50, payload=bytes(bad))]) == [None]
    assert t.counters().drops() == {"packets_not_authenticated": 1}
