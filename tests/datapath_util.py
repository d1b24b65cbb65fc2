"""Helpers for the data-path tests: packet builders, SA factories and the vector-file reader."""

from __future__ import annotations

import struct
from ipaddress import ip_address
from pathlib import Path

from ipsecd.datapath.ipheader import checksum, l4_checksum
from ipsecd.datapath.sa import (
    ENC_INFO,
    INTEG_INFO,
    EncAlg,
    IntegAlg,
    Mode,
    Protocol,
    SAParams,
    TunnelAddrs,
    UdpEncap,
)

VECTORS = Path(__file__).resolve().parent / "vectors"


def read_vectors(name: str) -> list[dict[str, str]]:
    """Blocks of `key = value` lines separated by blank lines; '#' lines are comments."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    source = ""
    for line in (VECTORS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            source = line[1:].strip()
            continue
        if not line:
            if current:
                blocks.append(current)
            current = {}
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
        current.setdefault("source", source)
    if current:
        blocks.append(current)
    return blocks


def ipv4(
    src: str = "192.0.2.1",
    dst: str = "198.51.100.2",
    proto: int = 17,
    payload: bytes = b"",
    *,
    tos: int = 0,
    ttl: int = 64,
    ident: int = 0x1234,
    df: bool = False,
    options: bytes = b"",
) -> bytes:
    ihl = 5 + len(options) // 4
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            tos,
            ihl * 4 + len(payload),
            ident,
            0x4000 if df else 0,
            ttl,
            proto,
            0,
            ip_address(src).packed,
            ip_address(dst).packed,
        )
        + options
    )
    struct.pack_into("!H", hdr, 10, checksum(hdr))
    return bytes(hdr) + payload


def ipv6(
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    nh: int = 17,
    payload: bytes = b"",
    *,
    tclass: int = 0,
    flow: int = 0,
    hlim: int = 64,
) -> bytes:
    first = (6 << 28) | (tclass << 20) | flow
    return (
        struct.pack(
            "!IHBB16s16s", first, len(payload), nh, hlim, ip_address(src).packed, ip_address(dst).packed
        )
        + payload
    )


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def with_l4_checksum(pkt: bytes) -> bytes:
    """Fill the TCP/UDP checksum of a simple packet (no extension headers)."""
    buf = bytearray(pkt)
    version = buf[0] >> 4
    off = (buf[0] & 0x0F) * 4 if version == 4 else 40
    proto = buf[9] if version == 4 else buf[6]
    field = off + (16 if proto == 6 else 6)
    buf[field : field + 2] = b"\x00\x00"
    struct.pack_into("!H", buf, field, l4_checksum(buf, version, proto, buf[off:]))
    return bytes(buf)


def tcp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 65535, 0, 0) + data


def params(
    protocol: Protocol = Protocol.ESP,
    mode: Mode = Mode.TUNNEL,
    enc: EncAlg = EncAlg.ENCR_AES_GCM_16,
    integ: IntegAlg = IntegAlg.NONE,
    *,
    enc_len: int | None = None,
    esn: bool = False,
    encap: UdpEncap | None = None,
    v6_outer: bool = False,
    spi: int = 0x1000,
    seed: int = 1,
    **kw: object,
) -> SAParams:
    """Deterministic keys from `seed` (parity and cross-checks), random-looking but reproducible."""
    import hashlib

    def key(n: int, label: bytes) -> bytes:
        out = b""
        counter = 0
        while len(out) < n:
            out += hashlib.sha256(label + bytes([seed, counter])).digest()
            counter += 1
        return out[:n]

    ek = key(enc_len if enc_len is not None else ENC_INFO[enc].key_sizes[-1], b"enc")
    ik = key(INTEG_INFO[integ].key_len, b"integ")
    tunnel = None
    if mode == Mode.TUNNEL:
        if v6_outer:
            tunnel = TunnelAddrs(ip_address("2001:db8:f::1"), ip_address("2001:db8:f::2"))
        else:
            tunnel = TunnelAddrs(ip_address("203.0.113.1"), ip_address("203.0.113.2"))
    iv_key = key(16, b"iv") if enc in (EncAlg.ENCR_AES_CBC, EncAlg.ENCR_3DES) else b""
    return SAParams(
        spi=spi,
        protocol=protocol,
        mode=mode,
        enc_alg=enc,
        enc_key=ek,
        integ_alg=integ,
        integ_key=ik,
        esn=esn,
        encap=encap,
        tunnel=tunnel,
        iv_key=iv_key,
        **kw,  # type: ignore[arg-type]
    )


# (name, EncAlg, key length, IntegAlg): every ESP algorithm combination the issue names
ESP_SUITES = [
    ("aes128gcm", EncAlg.ENCR_AES_GCM_16, 20, IntegAlg.NONE),
    ("aes256gcm", EncAlg.ENCR_AES_GCM_16, 36, IntegAlg.NONE),
    ("chacha20poly1305", EncAlg.ENCR_CHACHA20_POLY1305, 36, IntegAlg.NONE),
    ("aes128gmac", EncAlg.ENCR_NULL_AUTH_AES_GMAC, 20, IntegAlg.NONE),
    ("aes256gmac", EncAlg.ENCR_NULL_AUTH_AES_GMAC, 36, IntegAlg.NONE),
    ("aes128cbc-sha1", EncAlg.ENCR_AES_CBC, 16, IntegAlg.AUTH_HMAC_SHA1_96),
    ("aes256cbc-sha256", EncAlg.ENCR_AES_CBC, 32, IntegAlg.AUTH_HMAC_SHA2_256_128),
    ("aes128cbc-sha384", EncAlg.ENCR_AES_CBC, 16, IntegAlg.AUTH_HMAC_SHA2_384_192),
    ("aes256cbc-sha512", EncAlg.ENCR_AES_CBC, 32, IntegAlg.AUTH_HMAC_SHA2_512_256),
    ("3des-sha1", EncAlg.ENCR_3DES, 24, IntegAlg.AUTH_HMAC_SHA1_96),
    ("3des-sha256", EncAlg.ENCR_3DES, 24, IntegAlg.AUTH_HMAC_SHA2_256_128),
    ("null-sha1", EncAlg.ENCR_NULL, 0, IntegAlg.AUTH_HMAC_SHA1_96),
    ("null-sha256", EncAlg.ENCR_NULL, 0, IntegAlg.AUTH_HMAC_SHA2_256_128),
]

AH_SUITES = [
    ("ah-sha1", IntegAlg.AUTH_HMAC_SHA1_96),
    ("ah-sha256", IntegAlg.AUTH_HMAC_SHA2_256_128),
    ("ah-sha384", IntegAlg.AUTH_HMAC_SHA2_384_192),
    ("ah-sha512", IntegAlg.AUTH_HMAC_SHA2_512_256),
    ("ah-md5", IntegAlg.AUTH_HMAC_MD5_96),
]
