"""ManualState.to_sa_params: algorithm and key mapping, salt placement, published vectors.

The GCM/GMAC vectors of draft-mcgrew-gcm-test-01 and the RFC 7634 ChaCha20-Poly1305 example
(tests/vectors/) are written as the ip xfrm words an administrator would type (key material =
cipher key || salt, as Linux takes it); the SAParams they give must equal the vector's own
parameters and seal the vector's plaintext to the published ESP packet byte for byte.
"""

from __future__ import annotations

import shlex
from ipaddress import ip_address

import pytest
from datapath_util import read_vectors

from ipsecd.datapath.esp import EspCrypto
from ipsecd.datapath.sa import SALT_LEN, EncAlg, IntegAlg, Mode, Protocol, SAParams, TunnelAddrs
from ipsecd.policy.manual import ManualError, ManualState, parse_state

GCM = read_vectors("gcm_esp.txt")
CHACHA = read_vectors("rfc7634_esp.txt")


def _state(text: str) -> ManualState:
    return parse_state(shlex.split(text))


@pytest.mark.parametrize("v", GCM, ids=[v["source"].split(", ")[-1] for v in GCM])
def test_rfc4106_and_rfc4543_vectors_from_ip_xfrm_words(v: dict[str, str]) -> None:
    nonce = bytes.fromhex(v["nonce"])
    salt, iv = nonce[:SALT_LEN], nonce[SALT_LEN:]
    gmac = v["algorithm"] == "AES-GMAC-ESP"
    name = "rfc4543(gcm(aes))" if gmac else "rfc4106(gcm(aes))"
    esn = len(v["seq"]) == 16
    words = (
        f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x{v['spi']} "
        f"aead '{name}' 0x{v['key']}{salt.hex()} 128" + (" flag esn" if esn else "")
    )
    params = _state(words).to_sa_params(iv_key=bytes(16))  # iv_key is ignored for AEADs
    expected = SAParams(
        spi=int(v["spi"], 16),
        protocol=Protocol.ESP,
        mode=Mode.TRANSPORT,
        enc_alg=EncAlg.ENCR_NULL_AUTH_AES_GMAC if gmac else EncAlg.ENCR_AES_GCM_16,
        enc_key=bytes.fromhex(v["key"]) + salt,
        esn=esn,
    )
    assert params == expected
    assert params.enc_key[-SALT_LEN:] == salt  # the salt is the last 4 bytes, as ip xfrm gives it
    plain = bytes.fromhex(v["plaintext"])
    pad_len, nh = plain[-2], plain[-1]
    payload = plain[: len(plain) - 2 - pad_len]
    assert EspCrypto(params).seal(int(v["seq"], 16), payload, nh, iv=iv) == bytes.fromhex(v["packet"])


def test_rfc7634_vector_from_ip_xfrm_words() -> None:
    (v,) = CHACHA
    state = _state(
        f"src 203.0.113.5 dst 192.0.2.5 proto esp spi 0x{v['spi']} mode tunnel "
        f"aead 'rfc7539esp(chacha20,poly1305)' 0x{v['key']} 128"
    )
    params = state.to_sa_params()
    assert params.enc_alg == EncAlg.ENCR_CHACHA20_POLY1305 and params.enc_key == bytes.fromhex(v["key"])
    assert params.tunnel == TunnelAddrs(ip_address("203.0.113.5"), ip_address("192.0.2.5"))
    inner = bytes.fromhex(v["inner"])
    packet = EspCrypto(params).seal(int(v["seq"], 16), inner, 4, iv=bytes.fromhex(v["iv"]))
    assert packet == bytes.fromhex(v["packet"])


KEYLENS = [
    ("aead 'rfc4106(gcm(aes))' {k} 128", (20, 28, 36)),
    ("aead 'rfc4543(gcm(aes))' {k} 128", (20, 28, 36)),
    ("aead 'rfc7539esp(chacha20,poly1305)' {k} 128", (36,)),
    ("enc 'cbc(aes)' {k} auth sha1 0x" + "11" * 20, (16, 24, 32)),
    ("enc 'cbc(des3_ede)' {k} auth sha1 0x" + "11" * 20, (24,)),
    ("enc cipher_null {k} auth sha1 0x" + "11" * 20, (0,)),
    ("enc aes 0x" + "11" * 16 + " auth-trunc 'hmac(md5)' {k} 96", (16,)),
    ("enc aes 0x" + "11" * 16 + " auth-trunc 'hmac(sha1)' {k} 96", (20,)),
    ("enc aes 0x" + "11" * 16 + " auth-trunc 'hmac(sha256)' {k} 128", (32,)),
    ("enc aes 0x" + "11" * 16 + " auth-trunc 'hmac(sha384)' {k} 192", (48,)),
    ("enc aes 0x" + "11" * 16 + " auth-trunc 'hmac(sha512)' {k} 256", (64,)),
]


@pytest.mark.parametrize(("template", "good"), KEYLENS, ids=[t.split()[1] for t, _ in KEYLENS])
def test_key_lengths(template: str, good: tuple[int, ...]) -> None:
    """Exactly the lengths of the table are accepted (0..70 bytes tried), and reach SAParams whole."""
    for n in range(71):
        text = "src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 " + template.format(k="0x" + "5a" * n)
        if n in good:
            params = _state(text).to_sa_params(bytes(16))
            assert bytes([0x5A]) * n in (params.enc_key, params.integ_key)
        else:
            with pytest.raises(ManualError, match=f"not {n}$"):
                _state(text)


def test_iv_key_only_for_cbc() -> None:
    cbc = _state(
        f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 enc aes 0x{'11' * 16} auth sha1 0x{'22' * 20}"
    )
    assert cbc.to_sa_params(b"\x07" * 16).iv_key == b"\x07" * 16
    with pytest.raises(ManualError, match="iv_key must be 16 bytes"):
        cbc.to_sa_params(b"")  # the data path's own check, passed through as a ManualError
    des = _state(
        f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 enc des3_ede 0x{'11' * 24} auth md5 0x{'22' * 16}"
    )
    assert des.to_sa_params(b"\x07" * 16).iv_key == b"\x07" * 16
    gcm = _state(f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 aead rfc4106(gcm(aes)) 0x{'11' * 20} 128")
    assert gcm.to_sa_params(b"\x07" * 16).iv_key == b""
    null = _state(
        f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 enc cipher_null '' auth sha1 0x{'22' * 20}"
    )
    params = null.to_sa_params(b"\x07" * 16)
    assert params.iv_key == b"" and params.enc_alg == EncAlg.ENCR_NULL
    assert params.integ_alg == IntegAlg.AUTH_HMAC_SHA1_96 and params.integ_key == b"\x22" * 20


def test_ah_mapping_and_ipv6_tunnel() -> None:
    s = _state(
        "src 2001:db8::1 dst 2001:db8::2 proto ah spi 0x2000 mode tunnel reqid 9 "
        f"auth-trunc 'hmac(sha512)' 0x{'33' * 64} 256 replay-window 1024 flag esn "
        "sel src 10.0.0.0/8 dst 10.1.0.0/16 proto tcp sport 1 limit packet-hard 5 limit byte-soft 7"
    )
    p = s.to_sa_params(bytes(16))
    assert p.protocol == Protocol.AH and p.mode == Mode.TUNNEL and p.spi == 0x2000
    assert p.enc_alg == EncAlg.ENCR_NULL and p.enc_key == b"" and p.iv_key == b""
    assert p.integ_alg == IntegAlg.AUTH_HMAC_SHA2_512_256 and p.icv_len == 32
    assert p.tunnel == TunnelAddrs(ip_address("2001:db8::1"), ip_address("2001:db8::2"))
    assert p.replay_window == 1024 and p.esn and p.encap is None
    (sel,) = p.selectors
    assert str(sel.src) == "10.0.0.0/8" and sel.protocol == 6 and sel.src_ports == (1, 1)
    assert sel.dst_ports == (0, 65535)
    assert p.lifetimes.hard_packets == 5 and p.lifetimes.soft_bytes == 7 and p.lifetimes.hard_bytes == 0
