"""The transform contract of docs/datapath.md: header fields, placement, lifetimes, selectors, counters."""

from __future__ import annotations

import struct
from ipaddress import ip_network

import pytest
from datapath_util import AH_SUITES, ESP_SUITES, ipv4, ipv6, params, tcp, udp, with_l4_checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from ipsecd.datapath.bundle import Bundle
from ipsecd.datapath.factory import make_transform, native_available
from ipsecd.datapath.ipheader import checksum, l4_checksum
from ipsecd.datapath.sa import (
    Direction,
    EncAlg,
    EventKind,
    ExpiryReason,
    IntegAlg,
    Lifetimes,
    Mode,
    Protocol,
    SAEvent,
    SAParams,
    Selector,
    Transform,
    UdpEncap,
)

V4 = with_l4_checksum(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1000, 80, b"y" * 61), tos=0xB8, df=True))
V6 = with_l4_checksum(ipv6("fd00::1", "fd00::2", 6, tcp(1000, 80, b"y" * 61), tclass=0xB8, flow=0x12345))


def pair(p: SAParams, **kw: int) -> tuple[Transform, Transform]:
    return (
        make_transform(p, Direction.OUTBOUND, "python", **kw),  # type: ignore[arg-type]
        make_transform(p, Direction.INBOUND, "python"),
    )


def one(t: Transform, pkt: bytes) -> bytes:
    (out,) = t.protect([pkt])
    assert out is not None, t.counters().drops()
    return out


def test_outer_ipv4_header_fields() -> None:
    out, inb = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16))
    w1, w2 = one(out, V4), one(out, V6)
    for seq, w, df in ((1, w1, 0x4000), (2, w2, 0x4000)):
        ver_ihl, tos, total, ident, frag, ttl, proto, _ = struct.unpack_from("!BBHHHBBH", w)
        assert (ver_ihl, tos, total, ident, frag, ttl, proto) == (0x45, 0xB8, len(w), seq, df, 64, 50)
        assert checksum(w[:20]) == 0
        assert w[12:20] == bytes([203, 0, 113, 1, 203, 0, 113, 2])
        assert struct.unpack_from("!II", w, 20) == (0x1000, seq)
        assert w[28:36] == seq.to_bytes(8, "big")  # GCM IV = the 64-bit sequence number
    no_df = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"z"), df=False)
    assert struct.unpack_from("!H", one(out, no_df), 6)[0] == 0  # DF copied from the inner header
    assert inb.unprotect([w1, w2]) == [V4, V6]


def test_outer_ipv6_header_fields() -> None:
    out, inb = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, v6_outer=True))
    w = one(out, V4)
    first, plen, nh, hlim = struct.unpack_from("!IHBB", w)
    assert first == (6 << 28) | (0xB8 << 20) and plen == len(w) - 40 and nh == 50 and hlim == 64
    assert inb.unprotect([w]) == [V4]


@pytest.mark.parametrize("v6", [False, True])
def test_udp_encapsulation_header(v6: bool) -> None:
    p = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, encap=UdpEncap(4500, 14500), v6_outer=v6)
    out, inb = pair(p)
    w = one(out, V4)
    off = 40 if v6 else 20
    assert (w[6] if v6 else w[9]) == 17
    sport, dport, length, csum = struct.unpack_from("!HHHH", w, off)
    assert (sport, dport, length) == (4500, 14500, len(w) - off)
    if v6:
        assert csum != 0 and l4_checksum(w, 6, 17, w[off : off + 6] + b"\0\0" + w[off + 8 :]) == csum
    else:
        assert csum == 0  # RFC 3948 section 2.1
    assert inb.unprotect([w]) == [V4]


@pytest.mark.parametrize(
    ("enc", "integ", "align", "iv", "icv"),
    [
        (EncAlg.ENCR_AES_GCM_16, IntegAlg.NONE, 4, 8, 16),
        (EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA2_256_128, 16, 16, 16),
        (EncAlg.ENCR_3DES, IntegAlg.AUTH_HMAC_SHA1_96, 8, 8, 12),
        (EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA2_512_256, 4, 0, 32),
    ],
)
@pytest.mark.parametrize("size", [21, 22, 23, 24, 40])
def test_padding_alignment(enc: EncAlg, integ: IntegAlg, align: int, iv: int, icv: int, size: int) -> None:
    out, _ = pair(params(Protocol.ESP, Mode.TUNNEL, enc, integ))
    inner = ipv4(proto=17, payload=bytes(size - 20))
    w = one(out, inner)
    ct_len = len(w) - 20 - 8 - iv - icv
    assert ct_len % align == 0 and ct_len - size - 2 < align  # the smallest padding
    if enc == EncAlg.ENCR_NULL:  # padding bytes visible: 1, 2, 3, ...
        pad = w[28 + size : 28 + ct_len - 2]
        assert pad == bytes(range(1, len(pad) + 1)) and w[28 + ct_len - 2] == len(pad)


def test_outputs_are_deterministic() -> None:
    """Two transforms built from the same parameters produce the same bytes (the parity baseline)."""
    for enc, integ in (
        (EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA1_96),
        (EncAlg.ENCR_CHACHA20_POLY1305, IntegAlg.NONE),
    ):
        p = params(Protocol.ESP, Mode.TUNNEL, enc, integ)
        a, _ = pair(p)
        b, _ = pair(p)
        pkts = [V4, V6, V4]
        first = a.protect(pkts)
        assert first == b.protect(pkts)
        assert len(set(first)) == 3  # sequence numbers and IVs differ per packet


def test_transport_ipv4_keeps_options_and_header_fields() -> None:
    opts = bytes([148, 4, 0, 0])  # router alert
    inner = with_l4_checksum(
        ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, b"abc"), options=opts, ttl=9, ident=77)
    )
    for p in (
        params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_GCM_16),
        params(Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA2_256_128, enc_len=0),
    ):
        out, inb = pair(p)
        w = one(out, inner)
        assert w[0] == 0x46 and w[20:24] == opts and w[8] == 9 and w[4:6] == (77).to_bytes(2, "big")
        assert w[9] == p.protocol and checksum(w[:24]) == 0
        assert inb.unprotect([w]) == [inner]


def test_ah_ignores_mutable_fields_and_rejects_source_routes() -> None:
    p = params(Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA1_96, enc_len=0)
    out, inb = pair(p)
    w = bytearray(one(out, V4))
    w[1], w[8] = 0x04, 3  # routers may change TOS and TTL; the checksum is stale and not checked
    (got,) = inb.unprotect([bytes(w)])
    assert got is not None and checksum(got[:20]) == 0
    assert got[:10] == V4[:1] + b"\x04" + V4[2:8] + b"\x03" + V4[9:10] and got[12:] == V4[12:]
    w2 = bytearray(one(out, V4))
    w2[16] ^= 1  # the destination address is immutable
    assert inb.unprotect([bytes(w2)]) == [None]
    lsrr = ipv4(proto=17, payload=udp(1, 2, b"q"), options=bytes([131, 7, 4]) + bytes(4) + b"\x00")
    assert out.protect([lsrr]) == [None]
    assert inb.counters().drops() == {"packets_not_authenticated": 1}
    assert out.counters().drops() == {"malformed_packets": 1}


def _ext(nh: int, body: bytes) -> bytes:
    """An IPv6 extension header: next header, length in 8-octet units minus one, body."""
    data = bytes([nh, (len(body) + 2) // 8 - 1]) + body
    assert len(data) % 8 == 0
    return data


def test_ipv6_transport_placement_after_routing_headers() -> None:
    hbh = _ext(60, bytes([1, 4, 0, 0, 0, 0]))  # PadN
    dst_before_rt = _ext(43, bytes([1, 4, 0, 0, 0, 0]))
    routing = _ext(60, bytes([0, 0]) + bytes(4))  # type 0 shape, segments left 0
    dst_final = _ext(6, bytes([1, 4, 0, 0, 0, 0]))
    chain = hbh + dst_before_rt + routing + dst_final + tcp(5, 6, b"data")
    inner = ipv6(nh=0, payload=chain)
    out, inb = pair(params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_GCM_16))
    w = one(out, inner)
    kept = len(hbh) + len(dst_before_rt) + len(routing)
    assert w[40 : 40 + kept - len(routing)] == hbh + dst_before_rt
    assert w[40 + kept - len(routing)] == 50  # the routing header now points at ESP
    assert w[40 + kept : 40 + kept + 4] == (0x1000).to_bytes(4, "big")
    assert inb.unprotect([w]) == [inner]


def test_ipv6_ah_zeroes_mutable_option_data() -> None:
    hbh = _ext(6, bytes([0x3E, 4, 1, 2, 3, 4]))  # option type with the change-en-route bit 0x20
    inner = ipv6(nh=0, payload=hbh + tcp(5, 6, b"abc"), hlim=9, flow=77)
    p = params(Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA2_256_128, enc_len=0)
    out, inb = pair(p)
    w = bytearray(one(out, inner))
    assert w[40] == 51 and (w[49] + 2) * 4 == 32  # 12 + 16 rounded to 8 octets
    w[44:48] = b"\x09\x09\x09\x09"  # mutable option data changed en route
    w[7] = 1  # hop limit
    got = inb.unprotect([bytes(w)])[0]
    assert got is not None and got[48:] == inner[48:]
    w[41] ^= 0  # immutable option type/length untouched; now change the payload
    w[-1] ^= 1
    assert inb.unprotect([bytes(w)]) == [None]


def test_natt_transport_fixes_tcp_and_udp_checksums() -> None:
    p = params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_GCM_16, encap=UdpEncap(4500, 4500))
    out, inb = pair(p)
    inner_tcp = with_l4_checksum(ipv4("192.168.1.10", "198.51.100.7", 6, tcp(1234, 22, b"ssh")))
    inner_udp0 = ipv4("192.168.1.10", "198.51.100.7", 17, udp(53, 53, b"dns"))  # checksum 0: none
    natted = []
    for w in out.protect([inner_tcp, inner_udp0]):
        assert w is not None
        buf = bytearray(w)
        buf[12:16] = bytes([100, 64, 0, 1])  # the NAT rewrote the source address
        buf[10:12] = b"\0\0"
        struct.pack_into("!H", buf, 10, checksum(buf[:20]))
        natted.append(bytes(buf))
    got_tcp, got_udp = inb.unprotect(natted)
    assert got_tcp is not None and got_udp is not None
    assert got_tcp[12:16] == bytes([100, 64, 0, 1])
    assert checksum(got_tcp[12:20] + struct.pack("!BBH", 0, 6, len(got_tcp) - 20) + got_tcp[20:]) == 0
    assert got_udp[26:28] == b"\0\0" and got_udp[20:26] == inner_udp0[20:26]


def test_lifetime_events_packets_and_bytes() -> None:
    life = Lifetimes(soft_packets=2, hard_packets=3, soft_bytes=10**9)
    out, _ = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, lifetimes=life))
    res = out.protect([V4] * 5)
    assert [r is not None for r in res] == [True, True, True, False, False]
    ev = out.drain_events()
    assert ev == [
        SAEvent(EventKind.SOFT_EXPIRED, 0x1000, Direction.OUTBOUND, ExpiryReason.PACKETS),
        SAEvent(EventKind.HARD_EXPIRED, 0x1000, Direction.OUTBOUND, ExpiryReason.PACKETS),
    ]
    assert out.expired and out.drain_events() == []
    assert out.counters().expired_sa_packets == 2 and out.counters().packets_sent == 3
    life_b = Lifetimes(soft_bytes=len(V4), hard_bytes=3 * len(V4) - 1)
    out_b, inb_b = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, lifetimes=life_b))
    wires = out_b.protect([V4] * 4)
    assert [w is not None for w in wires] == [True, True, True, False]
    assert [e.reason for e in out_b.drain_events()] == [ExpiryReason.BYTES, ExpiryReason.BYTES]
    assert inb_b.unprotect([w for w in wires if w]) == [V4, V4, V4]
    assert [e.kind for e in inb_b.drain_events()] == [EventKind.SOFT_EXPIRED, EventKind.HARD_EXPIRED]


def test_lifetime_seconds_by_tick() -> None:
    life = Lifetimes(soft_seconds=100, hard_seconds=200)
    out = make_transform(
        params(Protocol.ESP, Mode.TUNNEL, lifetimes=life), Direction.OUTBOUND, "python", now=1000.0
    )
    out.tick(1050.0)
    assert out.drain_events() == []
    out.tick(1100.0)
    out.tick(1150.0)
    assert [e.kind for e in out.drain_events()] == [EventKind.SOFT_EXPIRED]
    assert out.protect([V4])[0] is not None
    out.tick(1200.0)
    assert [(e.kind, e.reason) for e in out.drain_events()] == [
        (EventKind.HARD_EXPIRED, ExpiryReason.SECONDS)
    ]
    assert out.protect([V4]) == [None] and out.counters().expired_sa_packets == 1


@pytest.mark.parametrize("esn", [False, True])
def test_sequence_number_never_wraps(esn: bool) -> None:
    last = (1 << 64) - 1 if esn else (1 << 32) - 1
    p = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, esn=esn)
    out = make_transform(p, Direction.OUTBOUND, "python", initial_seq=last - 1)
    res = out.protect([V4, V4, V4, V4])
    assert [r is not None for r in res] == [True, True, False, False]
    assert res[1] is not None and struct.unpack_from("!I", res[1], 24)[0] == last & 0xFFFFFFFF
    assert out.drain_events() == [
        SAEvent(EventKind.HARD_EXPIRED, p.spi, Direction.OUTBOUND, ExpiryReason.SEQUENCE)
    ]
    assert out.counters().expired_sa_packets == 2


def test_esn_high_bits_in_icv_not_on_wire() -> None:
    """A packet with sequence number 2^32 + 1 only verifies when the receiver infers high bits 1."""
    p = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA1_96, esn=True)
    out = make_transform(p, Direction.OUTBOUND, "python", initial_seq=(1 << 32) + 1)
    w = one(out, V4)
    assert struct.unpack_from("!I", w, 24)[0] == 1
    fresh = make_transform(p, Direction.INBOUND, "python")
    assert fresh.unprotect([w]) == [None]  # inferred high bits 0: the ICV fails
    assert fresh.counters().drops() == {"packets_not_authenticated": 1}
    late = make_transform(p, Direction.INBOUND, "python")
    late._window.top = (1 << 32) - 5  # type: ignore[attr-defined]
    assert late.unprotect([w]) == [V4]


def test_selectors() -> None:
    sel = (Selector(ip_network("10.0.0.0/24"), ip_network("10.0.0.0/24"), 6, (0, 65535), (80, 80)),)
    p = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, selectors=sel)
    _, inb = pair(p)
    wrong_port = with_l4_checksum(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1000, 443, b"")))
    wrong_proto = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1000, 80, b""))
    out2, _ = pair(p)
    res = out2.protect([V4, wrong_port, wrong_proto, V6])
    assert [r is not None for r in res] == [True, False, False, False]
    assert out2.counters().drops() == {"selector_mismatch_packets": 3}
    # inbound: the peer (no selectors) sends something this SA does not carry
    loose, _ = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16))
    w_ok, w_bad = loose.protect([V4, wrong_port])
    assert inb.unprotect([w_ok, w_bad]) == [V4, None]  # type: ignore[list-item]
    assert inb.counters().drops() == {"selector_mismatch_packets": 1}


def test_counters_by_kind() -> None:
    out, inb = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16))
    inb.unprotect(out.protect([V4, V6]))  # type: ignore[arg-type]
    n = len(V4) + len(V6)
    c = out.counters()
    assert (
        c.confidential_bytes_sent,
        c.authenticated_bytes_sent,
        c.tunnel_bytes_sent,
        c.transport_bytes_sent,
    ) == (n, n, n, 0)
    r = inb.counters()
    assert (r.confidential_bytes_received, r.authenticated_bytes_received, r.tunnel_bytes_received) == (
        n,
        n,
        n,
    )
    gout, _ = pair(params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_NULL_AUTH_AES_GMAC))
    gout.protect([V4])
    g = gout.counters()
    assert (g.confidential_bytes_sent, g.authenticated_bytes_sent, g.transport_bytes_sent) == (
        0,
        len(V4),
        len(V4),
    )
    assert c.windows_names()["tunnel_bytes_sent"] == "Bytes Sent In Tunnels"
    assert c.windows_names()["packets_with_replay_detection"] == "Packets With Replay Detection"


def test_ah_esp_bundle() -> None:
    esp = params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_GCM_16, spi=0x2000)
    ah = params(
        Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA2_256_128, enc_len=0, spi=0x3000
    )
    out = Bundle(
        [make_transform(esp, Direction.OUTBOUND, "python"), make_transform(ah, Direction.OUTBOUND, "python")]
    )
    inb = Bundle(
        [make_transform(esp, Direction.INBOUND, "python"), make_transform(ah, Direction.INBOUND, "python")]
    )
    wires = out.protect([V4, b"junk", V4])
    assert wires[1] is None
    w = wires[0]
    assert w is not None and w[9] == 51 and w[20] == 50  # AH outermost, its Next Header is ESP
    assert inb.unprotect([w, wires[2] or b"", w]) == [V4, V4, None]
    with pytest.raises(ValueError):
        Bundle(
            [
                make_transform(esp, Direction.OUTBOUND, "python"),
                make_transform(ah, Direction.INBOUND, "python"),
            ]
        )


def test_factory_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    p = params()
    monkeypatch.setenv("IPSECD_NATIVE", "0")
    assert make_transform(p, Direction.OUTBOUND).backend == "python"
    monkeypatch.delenv("IPSECD_NATIVE")
    assert make_transform(p, Direction.OUTBOUND).backend == ("native" if native_available() else "python")
    if not native_available():
        with pytest.raises(RuntimeError):
            make_transform(p, Direction.OUTBOUND, "native")
    with pytest.raises(ValueError):
        make_transform(p, Direction.OUTBOUND, "fast")
    with pytest.raises(ValueError):
        make_transform(p, Direction.INBOUND, "python").protect([V4])
    with pytest.raises(ValueError):
        make_transform(p, Direction.OUTBOUND, "python").unprotect([V4])


@pytest.mark.parametrize(
    "change",
    [
        {"spi": 255},
        {"replay_window": 16},
        {"replay_window": 100},
        {"enc_key": b"short"},
        {"integ_alg": IntegAlg.AUTH_HMAC_SHA1_96, "integ_key": bytes(20)},
        {"mode": Mode.TRANSPORT},
        {"iv_key": bytes(16)},
    ],
)
def test_params_validation(change: dict[str, object]) -> None:
    base = params()
    with pytest.raises(ValueError) as err:
        SAParams(**{**base.__dict__, **change})  # type: ignore[arg-type]
    assert base.enc_key.hex() not in str(err.value)


def test_params_combinations_and_repr() -> None:
    base = params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA1_96)
    for change in (
        {"integ_alg": IntegAlg.NONE, "integ_key": b""},  # no encryption-only ESP
        {"protocol": Protocol.AH},  # AH takes no cipher
        {"iv_key": b""},  # CBC needs the IV key
    ):
        with pytest.raises(ValueError):
            SAParams(**{**base.__dict__, **change})  # type: ignore[arg-type]
    ah = params(Protocol.AH, Mode.TUNNEL, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA1_96, enc_len=0)
    with pytest.raises(ValueError):
        SAParams(**{**ah.__dict__, "encap": UdpEncap()})
    text = repr(base)
    assert base.enc_key.hex() not in text and base.integ_key.hex() not in text and "enc_key" not in text


SUITES = [(Protocol.ESP, e, k, i) for _, e, k, i in ESP_SUITES] + [
    (Protocol.AH, EncAlg.ENCR_NULL, 0, i) for _, i in AH_SUITES
]


@settings(max_examples=120, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    mode=st.sampled_from([Mode.TRANSPORT, Mode.TUNNEL]),
    v6_inner=st.booleans(),
    v6_outer=st.booleans(),
    nat=st.booleans(),
    esn=st.booleans(),
    sizes=st.lists(st.integers(0, 1500), min_size=1, max_size=6),
    proto=st.sampled_from([6, 17, 1, 58, 47]),
)
def test_roundtrip_property(
    suite: tuple[Protocol, EncAlg, int, IntegAlg],
    mode: Mode,
    v6_inner: bool,
    v6_outer: bool,
    nat: bool,
    esn: bool,
    sizes: list[int],
    proto: int,
) -> None:
    protocol, enc, klen, integ = suite
    encap = UdpEncap(4500, 4500) if nat and protocol == Protocol.ESP else None
    p = params(protocol, mode, enc, integ, enc_len=klen, esn=esn, encap=encap, v6_outer=v6_outer)
    out, inb = pair(p)
    inners = [
        ipv6(nh=proto, payload=bytes([n % 251]) * n, tclass=n % 256)
        if v6_inner
        else ipv4(proto=proto, payload=bytes([n % 251]) * n, tos=n % 256)
        for n in sizes
    ]
    wires = out.protect(inners)
    assert all(w is not None for w in wires), out.counters().drops()
    got = inb.unprotect([w for w in wires if w is not None])
    for g, i in zip(got, inners, strict=True):
        assert g is not None
        if encap is not None and mode == Mode.TRANSPORT and proto in (6, 17):  # RFC 3948 checksum fix
            field = (40 if v6_inner else 20) + (16 if proto == 6 else 6)
            assert g[:field] == i[:field] and g[field + 2 :] == i[field + 2 :]
        else:
            assert g == i
    c = inb.counters()
    assert c.packets_received == len(sizes) and c.drops() == {}
    assert (
        c.authenticated_bytes_received
        == sum(len(i) for i in inners)
        == out.counters().authenticated_bytes_sent
    )


def test_ah_ipv4_mutable_option_may_change_en_route() -> None:
    ts = bytes([68, 8, 5, 0, 0, 0, 0, 0])  # timestamp option: mutable, zeroed whole for the ICV
    inner = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"opt"), options=ts)
    p = params(Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA1_96, enc_len=0)
    out, inb = pair(p)
    w = bytearray(one(out, inner))
    w[22:28] = bytes([9, 1, 2, 3, 4, 5])  # a router filled in the timestamp
    (got,) = inb.unprotect([bytes(w)])
    assert got is not None and got[20:28] == bytes(w[20:28]) and got[28:] == inner[28:]


def test_ah_ipv6_routing_header_with_segments_left_is_malformed() -> None:
    routing = _ext(17, bytes([0, 1]) + bytes(4) + bytes(16))  # segments left 1, one address
    inner = ipv6(nh=43, payload=routing + udp(1, 2, b"rt"))
    p = params(Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA1_96, enc_len=0)
    out, _ = pair(p)
    assert out.protect([inner]) == [None]
    assert out.counters().drops() == {"malformed_packets": 1} and out.counters().packets_sent == 0


def test_bundle_against_scapy_nested_sas() -> None:
    """scapy unwraps ipsecd's AH(ESP(...)) bundle with its AH SA, then its ESP SA."""
    ipsec = pytest.importorskip("scapy.layers.ipsec")
    scapy_all = pytest.importorskip("scapy.all")
    esp = params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA1_96, spi=0x2000)
    ah = params(
        Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA2_256_128, enc_len=0, spi=0x3000
    )
    out = Bundle(
        [make_transform(esp, Direction.OUTBOUND, "python"), make_transform(ah, Direction.OUTBOUND, "python")]
    )
    (w,) = out.protect([V4])
    assert w is not None
    s_ah = ipsec.SecurityAssociation(ipsec.AH, spi=ah.spi, auth_algo="SHA2-256-128", auth_key=ah.integ_key)
    s_esp = ipsec.SecurityAssociation(
        ipsec.ESP,
        spi=esp.spi,
        crypt_algo="AES-CBC",
        crypt_key=esp.enc_key,
        auth_algo="HMAC-SHA1-96",
        auth_key=esp.integ_key,
    )
    mid = scapy_all.IP(bytes(s_ah.decrypt(scapy_all.IP(w))))
    assert bytes(scapy_all.IP(bytes(s_esp.decrypt(mid)))) == V4


@pytest.mark.parametrize("v6_outer", [False, True])
def test_oversize_boundary(v6_outer: bool) -> None:
    out, inb = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, v6_outer=v6_outer))
    sizes = list(range(65440, 65536, 3))
    res = out.protect([ipv4(proto=17, payload=bytes(n - 20)) for n in sizes])
    ok = [n for n, r in zip(sizes, res, strict=True) if r is not None]
    dropped = [n for n, r in zip(sizes, res, strict=True) if r is None]
    assert ok and dropped and max(ok) < min(dropped)
    limit = 65535 + (40 if v6_outer else 0)
    assert all(r is None or len(r) <= limit for r in res)
    assert max(len(r) for r in res if r is not None) > limit - 8  # the limit itself is reachable
    assert out.counters().oversized_packets == len(dropped)
    assert inb.unprotect([r for r in res if r is not None]) == [
        ipv4(proto=17, payload=bytes(n - 20)) for n in ok
    ]


def test_tunnel_mode_carries_inner_fragments_transport_mode_does_not() -> None:
    first = bytearray(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 80, bytes(64))))
    first[6] |= 0x20  # MF: the first fragment of a larger datagram
    later = bytearray(ipv4("10.0.0.1", "10.0.0.2", 17, bytes(64)))
    later[7] = 9  # offset 72 bytes: a non-first fragment, no ports
    for buf in (first, later):
        buf[10:12] = b"\0\0"
        struct.pack_into("!H", buf, 10, checksum(buf[:20]))
    frags = [bytes(first), bytes(later)]
    out, inb = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16))
    assert inb.unprotect(out.protect(frags)) == frags  # type: ignore[arg-type]
    port_sel = (Selector(ip_network("10.0.0.0/8"), ip_network("10.0.0.0/8"), 17, (0, 65535), (80, 80)),)
    sel_out, _ = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, selectors=port_sel))
    assert [r is not None for r in sel_out.protect(frags)] == [True, False]  # no ports in a later fragment
    tout, _ = pair(params(Protocol.ESP, Mode.TRANSPORT, EncAlg.ENCR_AES_GCM_16))
    assert tout.protect(frags) == [None, None]
    assert tout.counters().drops() == {"malformed_packets": 2}


def test_demux_peek() -> None:
    from ipsecd.datapath.demux import Peek, PeekKind, peek

    esp_out, _ = pair(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, spi=0x1234))
    natt_out, _ = pair(
        params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, spi=0x5678, encap=UdpEncap(4500, 4500))
    )
    ah_out, _ = pair(
        params(
            Protocol.AH, Mode.TRANSPORT, EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA1_96, enc_len=0, spi=0x9ABC
        )
    )
    assert peek(one(esp_out, V4)) == Peek(PeekKind.ESP, 0x1234)
    assert peek(one(natt_out, V6)) == Peek(PeekKind.ESP_IN_UDP, 0x5678)
    assert peek(one(ah_out, V6)) == Peek(PeekKind.AH, 0x9ABC)
    assert peek(ipv4(proto=17, payload=udp(4500, 4500, b"\xff"))).kind == PeekKind.NAT_KEEPALIVE
    assert peek(ipv4(proto=17, payload=udp(4500, 4500, bytes(4) + b"ike"))).kind == PeekKind.IKE
    assert peek(ipv4(proto=17, payload=udp(4500, 53, b"dns query"))).kind == PeekKind.OTHER
    assert peek(V4).kind == PeekKind.OTHER
    for junk in (b"", b"\x45", ipv4(proto=50, payload=b"abc"), ipv4(proto=17, payload=b"ab")):
        assert peek(junk).kind == PeekKind.MALFORMED
