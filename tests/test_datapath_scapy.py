"""Cross-checks against scapy's SecurityAssociation (an independent ESP/AH implementation; tests only).

For every algorithm, both modes, IPv4 and IPv6, ESP with and without UDP encapsulation, with and
without ESN, and AH: scapy decrypts what ipsecd protects and ipsecd unprotects what scapy encrypts.
"""

from __future__ import annotations

import pytest
from datapath_util import AH_SUITES, ESP_SUITES, ipv4, ipv6, params, tcp, with_l4_checksum

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, Mode, Protocol, SAParams, UdpEncap

scapy_all = pytest.importorskip("scapy.all")
scapy_ipsec = pytest.importorskip("scapy.layers.ipsec")

SCAPY_ENC = {
    EncAlg.ENCR_AES_GCM_16: "AES-GCM",
    EncAlg.ENCR_CHACHA20_POLY1305: "CHACHA20-POLY1305",
    EncAlg.ENCR_NULL_AUTH_AES_GMAC: "AES-NULL-GMAC",
    EncAlg.ENCR_AES_CBC: "AES-CBC",
    EncAlg.ENCR_3DES: "3DES",
    EncAlg.ENCR_NULL: "NULL",
}
SCAPY_AUTH = {
    IntegAlg.NONE: None,
    IntegAlg.AUTH_HMAC_SHA1_96: "HMAC-SHA1-96",
    IntegAlg.AUTH_HMAC_SHA2_256_128: "SHA2-256-128",
    IntegAlg.AUTH_HMAC_SHA2_384_192: "SHA2-384-192",
    IntegAlg.AUTH_HMAC_SHA2_512_256: "SHA2-512-256",
    IntegAlg.AUTH_HMAC_MD5_96: "HMAC-MD5-96",
}


def _inner(version: int) -> bytes:
    if version == 4:
        return with_l4_checksum(
            ipv4("10.1.0.1", "10.2.0.2", 6, tcp(40000, 443, b"ipsecd" * 7), tos=0x28, ttl=31)
        )
    return with_l4_checksum(
        ipv6("fd00:1::1", "fd00:2::2", 6, tcp(40000, 443, b"ipsecd" * 7), tclass=0x28, flow=7)
    )


def _scapy_sa(p: SAParams, version: int) -> object:
    kw: dict[str, object] = {}
    if p.tunnel is not None:
        ip_cls = scapy_all.IP if p.tunnel.src.version == 4 else scapy_all.IPv6
        kw["tunnel_header"] = ip_cls(src=str(p.tunnel.src), dst=str(p.tunnel.dst))
    if p.encap is not None:
        kw["nat_t_header"] = scapy_all.UDP(sport=p.encap.sport, dport=p.encap.dport)
    if p.protocol == Protocol.AH:
        return scapy_ipsec.SecurityAssociation(
            scapy_ipsec.AH,
            spi=p.spi,
            auth_algo=SCAPY_AUTH[p.integ_alg],
            auth_key=p.integ_key,
            esn_en=p.esn,
            **kw,
        )
    return scapy_ipsec.SecurityAssociation(
        scapy_ipsec.ESP,
        spi=p.spi,
        crypt_algo=SCAPY_ENC[p.enc_alg],
        crypt_key=p.enc_key,
        auth_algo=SCAPY_AUTH[p.integ_alg],
        auth_key=p.integ_key or None,
        esn_en=p.esn,
        **kw,
    )


def _roundtrip(p: SAParams, version: int) -> None:
    inner = _inner(version)
    sa = _scapy_sa(p, version)
    out = make_transform(p, Direction.OUTBOUND, "python")
    inb = make_transform(p, Direction.INBOUND, "python")
    outer_version = p.tunnel.src.version if p.tunnel is not None else version
    ip_cls = scapy_all.IP if outer_version == 4 else scapy_all.IPv6
    inner_cls = scapy_all.IP if version == 4 else scapy_all.IPv6
    # ipsecd -> scapy (twice: the second packet uses sequence number 2 and a fresh IV)
    for _ in range(2):
        (wire,) = out.protect([inner])
        assert wire is not None, out.counters().drops()
        got = sa.decrypt(ip_cls(wire))
        assert bytes(inner_cls(bytes(got))) == inner
    # scapy -> ipsecd
    for seq in (1, 2, 5):
        wire = bytes(sa.encrypt(inner_cls(inner), seq_num=seq))
        assert inb.unprotect([wire]) == [inner], inb.counters().drops()
    c = inb.counters()
    assert c.packets_received == 3 and c.drops() == {}
    assert out.counters().packets_sent == 2


def _esp_cases() -> list[tuple[tuple[str, EncAlg, int, IntegAlg], Mode, bool, int, bool]]:
    """Every ESP suite x both modes x with/without NAT-T; IPv4/IPv6 and ESN rotate over them so that
    every combination of the four appears for each mode (the full product is 4x slower, ms each)."""
    cases = []
    for i, suite in enumerate(ESP_SUITES):
        for m, mode in enumerate((Mode.TRANSPORT, Mode.TUNNEL)):
            for n, nat in enumerate((False, True)):
                k = i + m + n
                cases.append((suite, mode, nat, 6 if k % 2 else 4, bool((i // 2 + n) % 2)))
    return cases


ESP_CASES = _esp_cases()


@pytest.mark.parametrize(
    ("suite", "mode", "nat", "version", "esn"),
    ESP_CASES,
    ids=[
        f"{c[0][0]}-{c[1].name.lower()}-{'natt' if c[2] else 'plain'}-v{c[3]}{'-esn' if c[4] else ''}"
        for c in ESP_CASES
    ],
)
def test_esp_against_scapy(
    suite: tuple[str, EncAlg, int, IntegAlg], mode: Mode, nat: bool, version: int, esn: bool
) -> None:
    _, enc, klen, integ = suite
    p = params(
        Protocol.ESP,
        mode,
        enc,
        integ,
        enc_len=klen,
        esn=esn,
        encap=UdpEncap(4500, 4500) if nat else None,
        v6_outer=version == 6,
    )
    _roundtrip(p, version)


def test_esp_cases_cover_every_combination() -> None:
    for mode in (Mode.TRANSPORT, Mode.TUNNEL):
        combos = {(c[2], c[3], c[4]) for c in ESP_CASES if c[1] == mode}
        assert len(combos) == 8, combos
    assert {(c[0][0], c[1], c[2]) for c in ESP_CASES} == {
        (s[0], m, n) for s in ESP_SUITES for m in (Mode.TRANSPORT, Mode.TUNNEL) for n in (False, True)
    }


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("mode", [Mode.TRANSPORT, Mode.TUNNEL])
@pytest.mark.parametrize("suite", AH_SUITES, ids=[s[0] for s in AH_SUITES])
def test_ah_against_scapy(suite: tuple[str, IntegAlg], mode: Mode, version: int) -> None:
    _, integ = suite
    esn = (version == 6) != (mode == Mode.TUNNEL)
    p = params(Protocol.AH, mode, EncAlg.ENCR_NULL, integ, enc_len=0, esn=esn, v6_outer=version == 6)
    _roundtrip(p, version)


def test_tunnel_across_families_against_scapy() -> None:
    """IPv6 inside an IPv4 tunnel and IPv4 inside an IPv6 tunnel."""
    _roundtrip(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, v6_outer=False), 6)
    _roundtrip(params(Protocol.ESP, Mode.TUNNEL, EncAlg.ENCR_AES_GCM_16, v6_outer=True), 4)
