"""The ip xfrm parser of manual keying: every algorithm and option, errors, round trips."""

from __future__ import annotations

import ipaddress
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipsecd.datapath.sa import EncAlg, IntegAlg
from ipsecd.policy.manual import (
    HIDDEN,
    Algo,
    Encap,
    Limits,
    ManualError,
    ManualPolicy,
    ManualState,
    PolicyAction,
    PolicyDir,
    PolicyId,
    StateId,
    Template,
    TmplLevel,
    XfrmMode,
    XfrmProto,
    XfrmSelector,
    parse_policy,
    parse_policy_entry,
    parse_state,
    parse_state_entry,
    parse_xfrm_command,
    policy_entry,
    policy_to_json,
    policy_words,
    render_policy,
    render_state,
    state_entry,
    state_to_json,
    state_words,
)

# Recognisable key bytes: no error message nor display without keys may contain them.
K16 = "0x" + "a5" * 16
K20 = "0x" + "a5" * 20
K24 = "0x" + "a5" * 24
K28 = "0x" + "a5" * 28
K32 = "0x" + "a5" * 32
K36 = "0x" + "a5" * 36
K48 = "0x" + "a5" * 48
K64 = "0x" + "a5" * 64
ID = "src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000"
AEAD = f"aead 'rfc4106(gcm(aes))' {K20} 128"


def state(text: str) -> ManualState:
    return parse_state(shlex.split(text))


# -- every algorithm ---------------------------------------------------------------------------
ALGOS = [
    # (algorithm words, enc alg, integ alg, key bytes)
    (f"aead 'rfc4106(gcm(aes))' {K20} 128", EncAlg.ENCR_AES_GCM_16, IntegAlg.NONE, 20),
    (f"aead 'rfc4106(gcm(aes))' {K28} 128", EncAlg.ENCR_AES_GCM_16, IntegAlg.NONE, 28),
    (f"aead 'rfc4106(gcm(aes))' {K36} 128", EncAlg.ENCR_AES_GCM_16, IntegAlg.NONE, 36),
    (f"aead 'rfc4543(gcm(aes))' {K20} 128", EncAlg.ENCR_NULL_AUTH_AES_GMAC, IntegAlg.NONE, 20),
    (f"aead 'rfc4543(gcm(aes))' {K36} 128", EncAlg.ENCR_NULL_AUTH_AES_GMAC, IntegAlg.NONE, 36),
    (f"aead 'rfc7539esp(chacha20,poly1305)' {K36} 128", EncAlg.ENCR_CHACHA20_POLY1305, IntegAlg.NONE, 36),
    (
        f"enc 'cbc(aes)' {K16} auth-trunc 'hmac(sha256)' {K32} 128",
        EncAlg.ENCR_AES_CBC,
        IntegAlg.AUTH_HMAC_SHA2_256_128,
        16,
    ),
    (
        f"enc 'cbc(aes)' {K24} auth-trunc 'hmac(sha1)' {K20} 96",
        EncAlg.ENCR_AES_CBC,
        IntegAlg.AUTH_HMAC_SHA1_96,
        24,
    ),
    (
        f"enc 'cbc(aes)' {K32} auth-trunc 'hmac(sha384)' {K48} 192",
        EncAlg.ENCR_AES_CBC,
        IntegAlg.AUTH_HMAC_SHA2_384_192,
        32,
    ),
    (
        f"enc 'cbc(des3_ede)' {K24} auth-trunc 'hmac(sha512)' {K64} 256",
        EncAlg.ENCR_3DES,
        IntegAlg.AUTH_HMAC_SHA2_512_256,
        24,
    ),
    (
        f"enc 'cbc(des3_ede)' {K24} auth-trunc 'hmac(md5)' {K16} 96",
        EncAlg.ENCR_3DES,
        IntegAlg.AUTH_HMAC_MD5_96,
        24,
    ),
    (f"enc cipher_null '' auth 'hmac(sha1)' {K20}", EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA1_96, 0),
    (f"enc 'ecb(cipher_null)' '' auth hmac(md5) {K16}", EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_MD5_96, 0),
    (f"enc aes {K16} auth sha384 {K48}", EncAlg.ENCR_AES_CBC, IntegAlg.AUTH_HMAC_SHA2_384_192, 16),
    (f"enc des3_ede {K24} auth sha512 {K64}", EncAlg.ENCR_3DES, IntegAlg.AUTH_HMAC_SHA2_512_256, 24),
    (f"enc cipher_null 0x auth-trunc sha256 {K32} 128", EncAlg.ENCR_NULL, IntegAlg.AUTH_HMAC_SHA2_256_128, 0),
]


@pytest.mark.parametrize(("words", "enc", "integ", "keylen"), ALGOS, ids=[a[0].split()[1] for a in ALGOS])
def test_every_algorithm(words: str, enc: EncAlg, integ: IntegAlg, keylen: int) -> None:
    s = state(f"{ID} {words}")
    p = s.to_sa_params(iv_key=bytes(16))
    assert p.enc_alg == enc and p.integ_alg == integ and len(p.enc_key) == keylen
    assert p.enc_key == bytes([0xA5]) * keylen
    assert p.integ_key == (bytes([0xA5]) * p.integ_info.key_len)
    # canonical names on the way out, parsed back to the same object
    assert parse_state(state_words(s)) == s
    for a in (s.aead, s.enc, s.auth):
        assert a is None or "(" in a.name


def test_ah_states() -> None:
    s = state(f"src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x2000 auth-trunc 'hmac(sha256)' {K32} 128")
    assert s.proto is XfrmProto.AH and s.auth is not None and s.aead is None and s.enc is None
    p = s.to_sa_params()
    assert p.enc_alg == EncAlg.ENCR_NULL and p.integ_alg == IntegAlg.AUTH_HMAC_SHA2_256_128
    s1 = state(f"src 2001:db8::1 dst 2001:db8::2 proto ah spi 300 auth hmac(sha1) {K20} mode tunnel")
    assert (
        s1.spi == 300
        and s1.mode is XfrmMode.TUNNEL
        and s1.auth == Algo("auth", "hmac(sha1)", b"\xa5" * 20, 96)
    )


def test_ascii_keys_as_ip_xfrm_takes_them() -> None:
    s = state(
        "src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 enc aes 0123456789abcdef auth sha1 01234567890123456789"
    )
    assert s.enc is not None and s.enc.key == b"0123456789abcdef"
    assert s.auth is not None and s.auth.key == b"01234567890123456789"


# -- every option ------------------------------------------------------------------------------
def test_every_state_option() -> None:
    s = state(
        f"proto esp dst 192.0.2.2 spi 4096 src 192.0.2.1 mode tunnel reqid 0x10 replay-window 4096 flag esn "
        f"aead rfc4106(gcm(aes)) {K20} 128 encap espinudp 4500 4501 0.0.0.0 "
        "sel src 10.1.0.0/16 dst 10.2.0.0/24 proto udp sport 53 dport 5353 "
        "limit time-soft 10 limit time-hard 20 limit byte-soft 100 limit byte-hard 200 "
        "limit packet-soft 1 limit packet-hard 18446744073709551615"
    )
    assert (s.src, s.dst, s.spi, s.reqid) == (
        ipaddress.ip_address("192.0.2.1"),
        ipaddress.ip_address("192.0.2.2"),
        0x1000,
        16,
    )
    assert s.mode is XfrmMode.TUNNEL and s.replay_window == 4096 and s.esn
    assert s.encap == Encap(4500, 4501, ipaddress.IPv4Address("0.0.0.0"))
    assert s.sel == XfrmSelector(
        ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("10.2.0.0/24"), 17, 53, 5353
    )
    assert s.limits == Limits(10, 20, 100, 200, 1, 2**64 - 1)
    p = s.to_sa_params()
    assert p.tunnel is not None and str(p.tunnel.src) == "192.0.2.1" and str(p.tunnel.dst) == "192.0.2.2"
    assert p.encap is not None and (p.encap.sport, p.encap.dport) == (4500, 4501)
    assert p.replay_window == 4096 and p.esn
    (sel,) = p.selectors
    assert sel.protocol == 17 and sel.src_ports == (53, 53) and sel.dst_ports == (5353, 5353)
    lt = p.lifetimes
    assert (lt.soft_seconds, lt.hard_seconds, lt.soft_bytes, lt.hard_bytes) == (10.0, 20.0, 100, 200)
    assert (lt.soft_packets, lt.hard_packets) == (1, 2**64 - 1)
    assert parse_state(state_words(s)) == s


def test_defaults() -> None:
    s = state(f"{ID} aead rfc4106(gcm(aes)) {K20} 128")
    assert s.mode is XfrmMode.TRANSPORT and s.reqid == 0 and s.replay_window == 64 and not s.esn
    assert s.encap is None and s.sel is None and s.limits == Limits()
    p = s.to_sa_params()
    assert p.tunnel is None and p.selectors == () and p.encap is None and p.replay_window == 64


def test_selector_ports_zero_mean_any_and_icmp() -> None:
    s = state(
        f"{ID} mode tunnel aead rfc4106(gcm(aes)) {K20} 128 sel src ::/0 dst 2001:db8::/32 proto ipv6-icmp"
    )
    (sel,) = s.to_sa_params().selectors
    assert sel.protocol == 58 and sel.src_ports == (0, 65535) and sel.dst_ports == (0, 65535)
    assert "proto ipv6-icmp" in render_state(state_to_json(s))


def test_every_policy_option() -> None:
    p = parse_policy(
        shlex.split(
            "src 10.1.0.0/16 dst 10.2.0.0/16 proto tcp sport 1024 dport 22 dir fwd action allow priority 7 "
            "tmpl src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel reqid 3 level use "
            "tmpl proto ah"
        )
    )
    assert p.dir is PolicyDir.FWD and p.action is PolicyAction.ALLOW and p.priority == 7
    assert p.sel.proto == 6 and (p.sel.sport, p.sel.dport) == (1024, 22)
    esp, ah = p.tmpls
    assert esp == Template(
        XfrmProto.ESP,
        ipaddress.ip_address("192.0.2.1"),
        ipaddress.ip_address("192.0.2.2"),
        0x1000,
        XfrmMode.TUNNEL,
        3,
        TmplLevel.USE,
    )
    assert ah == Template(XfrmProto.AH)
    assert parse_policy(policy_words(p)) == p
    block = parse_policy(shlex.split("src 0.0.0.0/0 dst 192.0.2.9/32 dir in action block"))
    assert block.action is PolicyAction.BLOCK and block.tmpls == ()


def test_commands_from_tutorials_paste() -> None:
    """Typical hand-keyed ip xfrm commands, as tutorials write them (ptype main, short names)."""
    s = parse_xfrm_command(
        shlex.split(
            "state add src 192.168.1.1 dst 192.168.1.2 proto esp spi 0x00000301 mode tunnel "
            "auth md5 0x96358c90783bbfa3d7b196ceabe0536b "
            "enc des3_ede 0xf6ddb555acfd9d77b03ea3843f2653255afe8eb5573965df"
        )
    ).payload
    assert isinstance(s, ManualState) and s.enc is not None and s.enc.name == "cbc(des3_ede)"
    p = parse_xfrm_command(
        shlex.split(
            "policy add src 192.168.1.1 dst 192.168.1.2 dir out ptype main "
            "tmpl src 192.168.1.1 dst 192.168.1.2 proto esp mode tunnel"
        )
    ).payload
    assert isinstance(p, ManualPolicy) and p.tmpls[0].matches(s)
    d = parse_xfrm_command(shlex.split("policy delete src 192.168.1.1/32 dst 192.168.1.2 dir out ptype main"))
    assert d.payload == p.key


def test_template_matching() -> None:
    s = state(f"{ID} mode tunnel reqid 5 aead rfc4106(gcm(aes)) {K20} 128")
    a1, a2 = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
    assert Template(XfrmProto.ESP, a1, a2, 0, XfrmMode.TUNNEL).matches(s)
    assert Template(XfrmProto.ESP, a1, a2, 0x1000, XfrmMode.TUNNEL, 5).matches(s)
    assert not Template(XfrmProto.ESP, a1, a2, 0x1001, XfrmMode.TUNNEL).matches(s)
    assert not Template(XfrmProto.ESP, a1, a2, 0, XfrmMode.TUNNEL, 6).matches(s)
    assert not Template(XfrmProto.ESP, a2, a1, 0, XfrmMode.TUNNEL).matches(s)
    assert not Template(XfrmProto.ESP).matches(s)  # transport template, tunnel state
    assert not Template(XfrmProto.AH, a1, a2, 0, XfrmMode.TUNNEL).matches(s)


# -- errors ------------------------------------------------------------------------------------
ERRORS = [
    ("state add src 192.0.2.1 dst 192.0.2.2 proto esp", "a state needs spi"),
    (f"state add {ID} spi 5", "word 11 'spi': spi given twice"),
    (f"state add {ID}", "proto esp needs aead"),
    (f"state add {ID} enc aes {K16}", "ESP without integrity is not supported"),
    (f"state add {ID} aead rfc4106(gcm(aes)) {K20} 128 auth sha1 {K20}", "carries its own integrity"),
    (
        f"state add {ID} aead rfc4106(gcm(aes)) {K20} 96",
        "word 14 '96': rfc4106(gcm(aes)): the only ICV length in bits ipsecd supports is 128",
    ),
    (
        f"state add {ID} aead rfc4106(gcm(aes)) {K16} 128",
        "must be 20, 28 or 36 bytes (the cipher key followed by the 4-byte salt), not 16",
    ),
    (
        f"state add {ID} aead 'rfc4309(ccm(aes))' {K20} 128",
        "word 12 'rfc4309(ccm(aes))': unsupported aead algorithm",
    ),
    (f"state add {ID} enc 'cbc(des)' {K16} auth sha1 {K20}", "unsupported enc algorithm"),
    (f"state add {ID} enc aes {K16} auth 'hmac(sha256)' {K32}", "auth-trunc hmac(sha256) KEY 128"),
    (
        f"state add {ID} enc aes {K16} auth-trunc sha1 {K20} 128",
        "the only truncation length in bits ipsecd supports is 96",
    ),
    (f"state add {ID} enc aes {K16} auth sha1 {K16}", "hmac(sha1): the key must be 20 bytes, not 16"),
    (f"state add {ID} enc aes {K16} enc aes {K16}", "a second enc algorithm"),
    (f"state add {ID} enc aes {K16} auth sha1 {K20} auth-trunc sha1 {K20} 96", "a second auth/auth-trunc"),
    (
        f"state add {ID} enc aes 0x{'a5' * 15}a auth sha1 {K20}",
        "(key, not shown): the cbc(aes) key: odd number of hex digits",
    ),
    (
        f"state add {ID} enc aes 0x{'a5' * 15}zz auth sha1 {K20}",
        "(key, not shown): the cbc(aes) key: not valid hex",
    ),
    (f"state add {ID} enc aes", "after 'aes': expected the cbc(aes) key"),
    (f"state add {ID} aead rfc4106(gcm(aes)) {K20}", "after the key: expected the ICV length"),
    (
        "state add src 192.0.2.1 dst 2001:db8::1 proto esp spi 0x1000 aead rfc4106(gcm(aes)) " + K20 + " 128",
        "same address family",
    ),
    (
        "state add src 192.0.2.1 dst 192.0.2.300 proto esp spi 0x1000",
        "word 6 '192.0.2.300': expected the dst address",
    ),
    (
        "state add src 192.0.2.1 dst 192.0.2.2 proto comp spi 0x1000",
        "word 8 'comp': expected the IPsec protocol: esp or ah",
    ),
    ("state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 255", "word 10 '255': SPIs 0..255 are reserved"),
    ("state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100000000", "the SPI must be in 0..4294967295"),
    ("state add src 192.0.2.1 dst 192.0.2.2 proto esp spi ten", "word 10 'ten': expected the SPI: a number"),
    (f"state add {ID} mode beet", "word 12 'beet': expected the mode: transport or tunnel"),
    (f"state add {ID} replay-window 33", "multiple of 32 in 32..4096"),
    (f"state add {ID} replay-window 8192", "multiple of 32 in 32..4096"),
    (f"state add {ID} flag noecn", "only the esn flag is supported"),
    (f"state add {ID} flag", "after 'flag': expected esn"),
    (f"state add {ID} encap espinudp-nonike 4500 4500 0.0.0.0", "only espinudp"),
    (f"state add {ID} encap espinudp 0 4500 0.0.0.0", "encapsulation source port must be in 1..65535"),
    (f"state add {ID} encap espinudp 4500 4500", "expected the original address"),
    (f"state add {ID} sel dst 10.0.0.0/8", "sel needs both src and dst"),
    (f"state add {ID} sel src 10.0.0.0/8 dst 10.0.0.0/8 sport 80", "sport needs proto tcp, udp"),
    (f"state add {ID} sel src 10.0.0.1/8 dst 10.0.0.0/8", "host bits set (did you mean 10.0.0.0/8?)"),
    (f"state add {ID} sel src 10.0.0.0/8 dst ::/0", "not of the same address family"),
    (f"state add {ID} sel proto tcp proto udp", "proto given twice in sel"),
    (f"state add {ID} sel mode", "expected src, dst, proto, sport or dport after sel"),
    (f"state add {ID} limit time-use-soft 5", "expected a limit"),
    (
        f"state add {ID} {AEAD} limit time-soft 50 limit time-hard 10",
        "limit time-soft 50 is above time-hard 10",
    ),
    (f"state add {ID} limit byte-soft 1 limit byte-soft 2", "limit byte-soft given twice"),
    (f"state add {ID} mark 7", "word 11 'mark': not supported by ipsecd"),
    (f"state add {ID} if_id 7", "not supported by ipsecd"),
    (f"state add {ID} offload dev eth0 dir out", "not supported by ipsecd"),
    (f"state add {ID} bogus", "word 11 'bogus': unknown word"),
    (
        f"state add src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x1000 aead rfc4106(gcm(aes)) {K20} 128",
        "proto ah takes only",
    ),
    ("state add src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x1000", "proto ah needs an auth-trunc"),
    (
        f"state add src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x1000 auth sha1 {K20} encap espinudp 1 2 0.0.0.0",
        "cannot be UDP-encapsulated",
    ),
    ("state del src 192.0.2.1 proto esp spi 0x1000", "state del needs dst"),
    (
        "state del dst 192.0.2.2 proto esp spi 0x1000 mode tunnel",
        "word 9 'mode': expected src, dst, proto or spi",
    ),
    ("state list all", "word 3 'all': state list takes no further words"),
    ("state flush proto esp", "takes no further words"),
    ("state", "word 2: expected add, del, list or flush"),
    ("state get", "word 2: expected add, del, list or flush, not 'get'"),
    ("monitor", "word 1: expected state or policy, not 'monitor'"),
    ("", "word 1: expected state or policy"),
    ("state add", "state add: expected more words"),
    ("policy add src 10.0.0.0/8 dir out", "a policy needs both src and dst"),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16", "a policy needs dir"),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir up", "expected the direction: out or in or fwd"),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out action reject",
        "expected the action: allow or block",
    ),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out action block tmpl proto esp",
        "a block policy takes no tmpl",
    ),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl mode tunnel",
        "word 9 'tmpl': this tmpl needs proto",
    ),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl proto esp mode tunnel",
        "a tunnel-mode tmpl needs src and dst",
    ),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl src 192.0.2.1 dst 2001:db8::1 proto esp",
        "tmpl src and dst are not of the same",
    ),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl src 2001:db8::1 dst 2001:db8::2 proto esp",
        "tmpl 1: a transport-mode tmpl's addresses must be IPv4 like the traffic it carries",
    ),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl src 2001:db8::1 dst 2001:db8::2 proto esp "
        "mode tunnel tmpl src 10.0.0.1 dst 10.0.0.2 proto ah",
        "tmpl 2: a transport-mode tmpl's addresses must be IPv6",
    ),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl src 0.0.0.0 dst 10.0.0.2 proto esp mode tunnel",
        "tunnel endpoint 0.0.0.0 must be a unicast address",
    ),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl src 10.0.0.1 dst 10.0.0.2 proto esp mode tunnel "
        "level use",
        "tmpl 1: level use needs mode transport in an out policy",
    ),
    ("state add src 0.0.0.0 dst 10.0.0.2 proto esp spi 0x1000 mode tunnel", "needs unicast src and dst"),
    (f"state add {ID} {AEAD} sel src ::/0 dst ::/0", "sel: a transport-mode state carries IPv4 traffic only"),
    (
        "policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl proto esp level optional",
        "expected the level: required or use",
    ),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl proto esp priority 3", "unknown word in tmpl"),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out " + "tmpl proto esp " * 7, "at most 6 templates"),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out ptype sub", "word 10 'sub': only ptype main"),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out index 8", "word 9 'index': not supported by ipsecd"),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16 dir out dir in", "dir given twice"),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16 dport 22 dir out", "dport needs proto tcp"),
    ("policy add src 10.0.0.0/8 dst 10.1.0.0/16 proto 256 dir out", "expected the upper-layer protocol"),
    ("policy del src 10.0.0.0/8 dst 10.1.0.0/16", "policy del needs dir"),
    (
        "policy del src 10.0.0.0/8 dst 10.1.0.0/16 dir out tmpl proto esp",
        "word 9 'tmpl': unknown word (expected src, dst, proto, sport, dport, dir)",
    ),
]


@pytest.mark.parametrize(("text", "fragment"), ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors_name_the_word_and_never_the_key(text: str, fragment: str) -> None:
    with pytest.raises(ManualError) as info:
        parse_xfrm_command(shlex.split(text))
    message = str(info.value)
    assert fragment in message, message
    assert "a5a5" not in message.lower()


def test_repr_and_displays_hide_keys() -> None:
    s = state(f"{ID} enc aes {K16} auth-trunc sha256 {K32} 128")
    assert "a5a5" not in repr(s).lower() and "a5a5" not in repr(s.to_sa_params(bytes(16))).lower()
    hidden = state_to_json(s)
    assert "a5a5" not in str(hidden).lower() and HIDDEN in hidden["words"]
    assert "key" not in hidden["enc"] and "key" not in hidden["auth"]
    assert "a5a5" not in render_state(hidden)
    assert "a5a5" not in " ".join(state_words(s, keys=False))
    shown = state_to_json(s, keys=True)
    assert shown["enc"]["key"] == K16 and shown["auth"]["key"] == K32
    assert K32 in render_state(shown)
    assert parse_state_entry(shown["words"]) == s


def test_render_layout() -> None:
    s = state(
        f"{ID} mode tunnel reqid 2 flag esn aead rfc4106(gcm(aes)) {K20} 128 encap espinudp 4500 4500 0.0.0.0"
    )
    assert render_state(state_to_json(s)).splitlines() == [
        "src 192.0.2.1 dst 192.0.2.2",
        "\tproto esp spi 0x00001000 reqid 2 mode tunnel",
        "\treplay-window 64 flag esn",
        f"\taead rfc4106(gcm(aes)) {HIDDEN} 128",
        "\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0",
    ]
    p = parse_policy(shlex.split("src 10.1.0.0/16 dst 10.2.0.0/16 dir out action block priority 9"))
    assert render_policy(policy_to_json(p)).splitlines() == [
        "src 10.1.0.0/16 dst 10.2.0.0/16",
        "\tdir out action block priority 9",
    ]


def test_command_verbs_and_ids() -> None:
    add = parse_xfrm_command(shlex.split(f"STATE ADD {ID} aead rfc4106(gcm(aes)) {K20} 128"))
    assert (add.obj, add.verb) == ("state", "add") and isinstance(add.payload, ManualState)
    for alias in ("del", "delete", "DELETE"):
        cmd = parse_xfrm_command(["state", alias, "dst", "192.0.2.2", "proto", "esp", "spi", "0x1000"])
        assert cmd.verb == "del" and cmd.payload == StateId(
            ipaddress.ip_address("192.0.2.2"), XfrmProto.ESP, 0x1000
        )
        assert isinstance(add.payload, ManualState) and add.payload.matches(cmd.payload)
    other_src = parse_xfrm_command(
        shlex.split("state del src 192.0.2.9 dst 192.0.2.2 proto esp spi 4096")
    ).payload
    assert isinstance(other_src, StateId) and not add.payload.matches(other_src)
    for alias in ("list", "show", "ls"):
        assert parse_xfrm_command(["policy", alias]).verb == "list"
    assert parse_xfrm_command(["policy", "flush"]).payload is None
    pdel = parse_xfrm_command(
        shlex.split("policy delete src 10.0.0.0/8 dst 10.1.0.0/16 proto tcp dport 22 dir in")
    )
    padd = parse_policy(
        shlex.split("src 10.0.0.0/8 dst 10.1.0.0/16 proto tcp dport 22 dir in tmpl proto esp")
    )
    assert isinstance(pdel.payload, PolicyId) and padd.key == pdel.payload


# -- round trips -------------------------------------------------------------------------------
_v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
_unicast4 = _v4.filter(lambda a: not (a.is_unspecified or a.is_multicast))
_unicast6 = _v6.filter(lambda a: not (a.is_unspecified or a.is_multicast))


@st.composite
def _nets(
    draw: st.DrawFn, version: int
) -> (
    tuple[ipaddress.IPv4Network, ipaddress.IPv4Network] | tuple[ipaddress.IPv6Network, ipaddress.IPv6Network]
):
    bits = 32 if version == 4 else 128
    out = []
    for _ in range(2):
        plen = draw(st.integers(0, bits))
        raw = draw(st.integers(0, 2**bits - 1)) >> (bits - plen) << (bits - plen) if plen else 0
        net = ipaddress.IPv4Network((raw, plen)) if version == 4 else ipaddress.IPv6Network((raw, plen))
        out.append(net)
    return (out[0], out[1])  # type: ignore[return-value]


@st.composite
def _selectors(draw: st.DrawFn) -> XfrmSelector:
    src, dst = draw(_nets(draw(st.sampled_from([4, 6]))))
    proto = draw(st.sampled_from([0, 1, 6, 17, 47, 58, 132, 200]))
    ported = proto in (6, 17, 132)
    sport = draw(st.integers(0, 65535)) if ported else 0
    dport = draw(st.integers(0, 65535)) if ported else 0
    return XfrmSelector(src, dst, proto, sport, dport)


_CIPHERS = [
    ("aead", "rfc4106(gcm(aes))", (20, 28, 36), 128),
    ("aead", "rfc4543(gcm(aes))", (20, 28, 36), 128),
    ("aead", "rfc7539esp(chacha20,poly1305)", (36,), 128),
    ("enc", "cbc(aes)", (16, 24, 32), 0),
    ("enc", "cbc(des3_ede)", (24,), 0),
    ("enc", "ecb(cipher_null)", (0,), 0),
]
_AUTHS = [
    ("hmac(md5)", 16, 96),
    ("hmac(sha1)", 20, 96),
    ("hmac(sha256)", 32, 128),
    ("hmac(sha384)", 48, 192),
    ("hmac(sha512)", 64, 256),
]


@st.composite
def _states(draw: st.DrawFn) -> ManualState:
    v6 = draw(st.booleans())
    src, dst = draw(_unicast6 if v6 else _unicast4), draw(_unicast6 if v6 else _unicast4)
    proto = draw(st.sampled_from(XfrmProto))
    aead = enc = auth = None
    if proto is XfrmProto.ESP:
        kind, name, sizes, bits = draw(st.sampled_from(_CIPHERS))
        algo = Algo(
            kind,
            name,
            draw(st.binary(min_size=n, max_size=n)) if (n := draw(st.sampled_from(sizes))) else b"",
            bits,
        )
        aead, enc = (algo, None) if kind == "aead" else (None, algo)
    if enc is not None or proto is XfrmProto.AH:
        name, klen, bits = draw(st.sampled_from(_AUTHS))
        trunc = name == "hmac(sha256)" or draw(st.booleans())
        auth = Algo(
            "auth-trunc" if trunc else "auth", name, draw(st.binary(min_size=klen, max_size=klen)), bits
        )
    lim = [draw(st.integers(0, 2**64 - 1)) for _ in range(6)]
    for i in (0, 2, 4):  # soft <= hard when both are set
        if lim[i] and lim[i + 1] and lim[i] > lim[i + 1]:
            lim[i], lim[i + 1] = lim[i + 1], lim[i]
    mode = draw(st.sampled_from(XfrmMode))
    sel = draw(st.none() | _selectors())
    if sel is not None and mode is XfrmMode.TRANSPORT and sel.src.version != src.version:
        sel = None  # Linux (and ipsecd) keep the family in transport mode
    encap = None
    if proto is XfrmProto.ESP and draw(st.booleans()):
        encap = Encap(draw(st.integers(1, 65535)), draw(st.integers(1, 65535)), draw(_v4 | _v6))
    return ManualState(
        src,
        dst,
        proto,
        draw(st.integers(256, 2**32 - 1)),
        mode,
        draw(st.integers(0, 2**32 - 1)),
        aead,
        enc,
        auth,
        draw(st.sampled_from([32, 64, 128, 4096]) | st.integers(1, 128).map(lambda n: 32 * n)),
        draw(st.booleans()),
        encap,
        sel,
        Limits(*lim),
    )


@st.composite
def _policies(draw: st.DrawFn) -> ManualPolicy:
    sel = draw(_selectors())
    action = draw(st.sampled_from(PolicyAction))
    direction = draw(st.sampled_from(PolicyDir))
    tmpls = []
    if action is PolicyAction.ALLOW:
        family = sel.src.version
        for _ in range(draw(st.integers(0, 6))):
            mode = draw(st.sampled_from(XfrmMode))
            v6 = draw(st.booleans()) if mode is XfrmMode.TUNNEL else family == 6
            family = 6 if v6 else 4
            need = mode is XfrmMode.TUNNEL or draw(st.booleans())
            pool = _unicast6 if v6 else _unicast4
            a = draw(pool) if need else None
            b = draw(pool) if need else None
            spi = draw(st.just(0) | st.integers(256, 2**32 - 1))
            level = draw(st.sampled_from(TmplLevel))
            if direction is PolicyDir.OUT and mode is XfrmMode.TUNNEL:
                level = TmplLevel.REQUIRED  # Linux (and ipsecd) refuse optional tunnels on output
            tmpls.append(
                Template(
                    draw(st.sampled_from(XfrmProto)),
                    a,
                    b,
                    spi,
                    mode,
                    draw(st.integers(0, 2**32 - 1)),
                    level,
                )
            )
    return ManualPolicy(sel, direction, action, draw(st.integers(0, 2**32 - 1)), tuple(tmpls))


@settings(max_examples=300, deadline=None)
@given(_states())
def test_state_round_trip(s: ManualState) -> None:
    assert parse_state(state_words(s)) == s
    assert parse_state_entry(state_entry(s)) == s
    assert parse_xfrm_command(["state", "add", *state_words(s)]).payload == s
    s.to_sa_params(bytes(16))  # every parsed state is accepted by the data path


@settings(max_examples=300, deadline=None)
@given(_policies())
def test_policy_round_trip(p: ManualPolicy) -> None:
    assert parse_policy(policy_words(p)) == p
    assert parse_policy_entry(policy_entry(p)) == p
