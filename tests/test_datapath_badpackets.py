"""Bad-packet corpus: every bad packet is dropped (None), never raises, and moves exactly one counter."""

from __future__ import annotations

import struct

import pytest
from datapath_util import ipv4, ipv6, params, tcp, udp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipsecd.datapath.counters import Counters
from ipsecd.datapath.esp import EspCrypto
from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.ipheader import checksum
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, Mode, Protocol, SAParams, Transform, UdpEncap

INNER = ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1000, 80, b"x" * 100))

GCM = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, enc_len=20)
CBC = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA2_256_128, enc_len=16)
NATT = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, enc_len=20, encap=UdpEncap(4500, 4500))
AH = params(Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA1_96, enc_len=0)
ALL = {"gcm": GCM, "cbc": CBC, "natt": NATT, "ah": AH}


def _pair(p: SAParams) -> tuple[Transform, Transform]:
    return make_transform(p, Direction.OUTBOUND, "python"), make_transform(p, Direction.INBOUND, "python")


def _good(p: SAParams, n: int = 1) -> list[bytes]:
    out, _ = _pair(p)
    wires = out.protect([INNER] * n)
    assert all(w is not None for w in wires)
    return [w for w in wires if w is not None]


def _only(c: Counters, name: str, received: int = 0) -> None:
    assert c.drops() == {name: 1}, c.drops()
    assert c.packets_received == received


def _fix_ipv4_length(pkt: bytes) -> bytes:
    buf = bytearray(pkt)
    struct.pack_into("!H", buf, 2, len(buf))
    buf[10:12] = b"\x00\x00"
    struct.pack_into("!H", buf, 10, checksum(buf[:20]))
    return bytes(buf)


def _with_udp_length(pkt: bytes) -> bytes:
    buf = bytearray(_fix_ipv4_length(pkt))
    struct.pack_into("!H", buf, 24, len(buf) - 20)
    return bytes(buf)


@pytest.mark.parametrize("name", list(ALL))
def test_good_packet_is_delivered(name: str) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    assert inb.unprotect(_good(p)) == [INNER]


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("cut", [1, 7, 19, 30])
def test_truncated_is_malformed(name: str, cut: int) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    wire = _good(p)[0]
    assert inb.unprotect([wire[:cut]]) == [None]
    _only(inb.counters(), "malformed_packets")


@pytest.mark.parametrize("name", list(ALL))
def test_truncated_with_consistent_ip_length_below_minimum_is_malformed(name: str) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    wire = _good(p)[0]
    keep = 20 + (8 if p.encap else 0) + 10
    short = _with_udp_length(wire[:keep]) if p.encap else _fix_ipv4_length(wire[:keep])
    assert inb.unprotect([short]) == [None]
    _only(inb.counters(), "malformed_packets")


@pytest.mark.parametrize("name", list(ALL))
def test_truncated_esp_payload_is_not_authenticated(name: str) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    wire = _good(p)[0][:-8]
    wire = _with_udp_length(wire) if p.encap else _fix_ipv4_length(wire)
    assert inb.unprotect([wire]) == [None]
    # AH: the header says how long AH is; a shorter packet still holds it, the ICV then fails
    _only(inb.counters(), "packets_not_authenticated")


@pytest.mark.parametrize("name", list(ALL))
def test_wrong_spi(name: str) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    buf = bytearray(_good(p)[0])
    spi_at = 20 + (8 if p.encap else 0) + (4 if p.protocol == Protocol.AH else 0)
    buf[spi_at + 3] ^= 0xFF
    assert inb.unprotect([bytes(buf)]) == [None]
    _only(inb.counters(), "bad_spi_packets")


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("where", ["icv", "payload"])
def test_bad_icv(name: str, where: str) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    buf = bytearray(_good(p)[0])
    buf[-1 if where == "icv" else -40] ^= 0x01
    assert inb.unprotect([bytes(buf)]) == [None]
    _only(inb.counters(), "packets_not_authenticated")


def _seal_plain(p: SAParams, seq: int, plain: bytes) -> bytes:
    """An authentic ESP packet whose plaintext (payload + trailer) is `plain`, bypassing padding."""
    crypto = EspCrypto(p)
    header = crypto._header(seq)
    if crypto._aead is not None:
        iv = seq.to_bytes(8, "big")
        esp = header + iv + crypto._aead.encrypt(crypto.salt + iv, plain, crypto._aad(seq))
    else:
        assert crypto._cbc is not None
        iv = crypto._cbc.iv(seq)
        body = header + iv + crypto._cbc.encrypt(iv, plain)
        from ipsecd.datapath.esp import integrity_icv

        esp = body + integrity_icv(p.integ_alg, p.integ_key, body)
    return ipv4("203.0.113.1", "203.0.113.2", 50, esp)


@pytest.mark.parametrize("name", ["gcm", "cbc"])
@pytest.mark.parametrize(
    "trailer",
    [b"\x01\x02\x09\x02\x04", b"\x05\x04", b"\xff\x04"],
    ids=["wrong-pad-bytes", "pad-length-too-long", "pad-length-255"],
)
def test_bad_padding_is_not_decrypted(name: str, trailer: bytes) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    body = INNER[: len(INNER) - 3]
    plain = body + trailer
    if p.enc_alg == EncAlg.ENCR_AES_CBC:
        plain = b"\x00" * (-len(plain) % 16) + plain
    assert inb.unprotect([_seal_plain(p, 1, plain)]) == [None]
    _only(inb.counters(), "packets_not_decrypted")


def test_authentic_packet_with_bad_padding_still_moves_the_window() -> None:
    """docs/datapath.md section 5: the window commits once the ICV verified."""
    _, inb = _pair(GCM)
    bad = _seal_plain(GCM, 1, INNER[:-3] + b"\x07\x04")
    assert inb.unprotect([bad, bad]) == [None, None]
    assert inb.counters().drops() == {"packets_not_decrypted": 1, "packets_with_replay_detection": 1}


def test_tunnel_payload_that_is_not_ip_is_not_decrypted() -> None:
    _, inb = _pair(GCM)
    pad = bytes(range(1, 1 + (-(len(b"hello") + 2) % 4)))
    plain = b"hello" + pad + bytes((len(pad), 4))
    assert inb.unprotect([_seal_plain(GCM, 1, plain)]) == [None]
    _only(inb.counters(), "packets_not_decrypted")


def test_dummy_packet_next_header_59() -> None:
    _, inb = _pair(GCM)
    assert inb.unprotect([_seal_plain(GCM, 1, b"\x01\x02\x02\x3b")]) == [None]
    _only(inb.counters(), "dummy_packets")


@pytest.mark.parametrize("name", list(ALL))
def test_replayed(name: str) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    (wire,) = _good(p)
    assert inb.unprotect([wire, wire]) == [INNER, None]
    _only(inb.counters(), "packets_with_replay_detection", received=1)


def test_too_old_is_replay() -> None:
    p = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, enc_len=20, replay_window=32)
    out, inb = _pair(p)
    wires = out.protect([INNER] * 40)
    assert inb.unprotect([wires[39]]) == [INNER]
    assert inb.unprotect([wires[7], wires[8]]) == [None, INNER]
    _only(inb.counters(), "packets_with_replay_detection", received=2)


@pytest.mark.parametrize("name", list(ALL))
def test_oversized(name: str) -> None:
    p = ALL[name]
    out, inb = _pair(p)
    assert inb.unprotect([b"\x45" + bytes(70000)]) == [None]
    _only(inb.counters(), "oversized_packets")
    big = ipv4("10.0.0.1", "10.0.0.2", 17, bytes(65535 - 20))
    assert out.protect([big]) == [None]
    c = out.counters()
    assert c.drops() == {"oversized_packets": 1} and c.packets_sent == 0


@pytest.mark.parametrize("name", list(ALL))
def test_garbage(name: str) -> None:
    p = ALL[name]
    _, inb = _pair(p)
    garbage = [b"", b"\x00", b"\xff" * 64, b"\x45" * 20, b"\x60" + bytes(39), bytes(range(256))]
    assert inb.unprotect(garbage) == [None] * len(garbage)
    assert inb.counters().drops() == {"malformed_packets": len(garbage)}


def test_wrong_protocol_is_malformed() -> None:
    _, inb = _pair(GCM)
    as_ah = bytearray(_good(GCM)[0])
    as_ah[9] = 51
    udp_pkt = ipv4(proto=17, payload=udp(4500, 4500, bytes(40)))
    assert inb.unprotect([bytes(as_ah), udp_pkt]) == [None, None]
    assert inb.counters().drops() == {"malformed_packets": 2}


def test_natt_keepalive_and_ike_marker() -> None:
    _, inb = _pair(NATT)
    keepalive = ipv4(proto=17, payload=udp(4500, 4500, b"\xff"))
    ike = ipv4(proto=17, payload=udp(4500, 4500, bytes(4) + b"IKE message" * 3))
    short = ipv4(proto=17, payload=udp(4500, 4500, b"\x01\x02\x03\x04\x05"))
    assert inb.unprotect([keepalive, ike, short]) == [None, None, None]
    assert inb.counters().drops() == {
        "nat_keepalive_packets": 1,
        "non_esp_marker_packets": 1,
        "malformed_packets": 1,
    }


def test_fragments_are_malformed() -> None:
    _, inb = _pair(GCM)
    frag = bytearray(_good(GCM)[0])
    frag[6] |= 0x20  # MF
    frag[10:12] = b"\x00\x00"
    struct.pack_into("!H", frag, 10, checksum(frag[:20]))
    assert inb.unprotect([bytes(frag)]) == [None]
    _only(inb.counters(), "malformed_packets")


def test_ipv6_fragment_header_before_esp_is_malformed() -> None:
    p = params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_GCM_16, enc_len=20)
    out, _ = _pair(p)
    frag = bytes([17, 0, 0, 0, 0, 0, 0, 1]) + udp(1, 2, b"abc")
    assert out.protect([ipv6(nh=44, payload=frag)]) == [None]
    assert out.counters().drops() == {"malformed_packets": 1}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    for p in (GCM, NATT, AH):
        _, inb = _pair(p)
        assert inb.unprotect([data]) == [None]
        assert sum(inb.counters().drops().values()) == 1


GOOD = {name: _good(p, 3) for name, p in ALL.items()}


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(ALL)),
    index=st.integers(0, 2),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 40),
)
def test_fuzz_mutated_packets_count_exactly_once(
    name: str, index: int, flips: list[tuple[int, int]], cut: int
) -> None:
    _, inb = _pair(ALL[name])
    buf = bytearray(GOOD[name][index])
    for pos, mask in flips:
        buf[pos % len(buf)] ^= mask
    pkt = bytes(buf[: len(buf) - cut])
    (result,) = inb.unprotect([pkt])
    c = inb.counters()
    assert sum(c.drops().values()) + c.packets_received == 1
    if result is not None:  # only header fields that nothing authenticates may change
        if ALL[name].mode == Mode.TUNNEL:
            assert result == INNER
        else:  # transport: the delivered header is the received one; its mutable fields may differ
            assert result[20:] == INNER[20:] and result[12:20] == INNER[12:20] and result[2:6] == INNER[2:6]


PROTECT_SAS = [
    GCM,
    params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA1_96, enc_len=16),
    params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_GCM_16, enc_len=20, encap=UdpEncap(4500, 4500)),
    AH,
    params(
        Protocol.AH, Mode.TUNNEL, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA2_256_128, enc_len=0, v6_outer=True
    ),
]
SEEDS = [INNER, ipv6(nh=0, payload=bytes([6, 0, 1, 4, 0, 0, 0, 0]) + tcp(1, 2, b"v6"))]


@settings(max_examples=200, deadline=None)
@given(
    sa=st.integers(0, len(PROTECT_SAS) - 1),
    seed=st.integers(0, len(SEEDS) - 1),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=4),
    extra=st.binary(max_size=8),
)
def test_fuzz_protect_never_raises(sa: int, seed: int, flips: list[tuple[int, int]], extra: bytes) -> None:
    out = make_transform(PROTECT_SAS[sa], Direction.OUTBOUND, "python")
    buf = bytearray(SEEDS[seed] + extra)
    for pos, mask in flips:
        buf[pos % len(buf)] ^= mask
    (res,) = out.protect([bytes(buf)])
    c = out.counters()
    assert sum(c.drops().values()) + c.packets_sent == 1
    assert (res is None) == (c.packets_sent == 0)
