"""Cross-check with the real iproute2 (root only, in a scratch network namespace): the words
ipsecd writes (store entries, ``state_words``) are ip-xfrm(8) syntax that ``ip xfrm`` itself
accepts, and policies installed by ``ip xfrm policy add`` read back as ipsecd renders them.

This machine's kernel has no ESP/AH (the reason ipsecd has its own data path), so ``ip xfrm
state add`` ends with the kernel's "Requested ... not found" (exit status 2) once iproute2 has
parsed the command; a word iproute2 does not understand fails earlier with exit status 255 and
"argument ... is wrong". A kernel that does have ESP installs the state (exit 0), which is
accepted too and listed back. Policies need no crypto: they are installed and listed.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Iterator
from ipaddress import ip_network

import netns
import pytest
from hypothesis import HealthCheck, given, settings
from test_manual_parse import _policies, _states

from ipsecd.policy.manual import (
    ManualPolicy,
    ManualState,
    parse_policy,
    parse_state,
    policy_to_json,
    policy_words,
    render_policy,
    state_words,
)

pytestmark = pytest.mark.skipif(
    not netns.is_root() or shutil.which("ip") is None, reason="needs root and iproute2 (CI runs as root)"
)

K = {n: "0x" + "5a" * n for n in (16, 20, 24, 32, 36, 48, 64)}
STATES = [
    f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel reqid 5 replay-window 128 flag esn "
    f"aead 'rfc4106(gcm(aes))' {K[20]} 128 encap espinudp 4500 4501 0.0.0.0 "
    "sel src 10.1.0.0/16 dst 10.2.0.0/16 proto tcp sport 1024 dport 22 "
    "limit time-soft 100 limit time-hard 200 limit byte-soft 1000 limit byte-hard 2000 "
    "limit packet-soft 10 limit packet-hard 20",
    f"src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x1001 aead 'rfc4543(gcm(aes))' {K[36]} 128",
    f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1002 aead 'rfc7539esp(chacha20,poly1305)' {K[36]} 128",
    f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1003 enc 'cbc(aes)' {K[32]} auth-trunc 'hmac(sha256)' {K[32]} 128",
    f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1004 enc 'cbc(des3_ede)' {K[24]} auth-trunc 'hmac(sha384)' {K[48]} 192",
    f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1005 enc cipher_null '' auth-trunc 'hmac(sha512)' {K[64]} 256",
    f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1006 enc aes {K[16]} auth md5 {K[16]}",
    f"src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x1007 mode tunnel auth 'hmac(sha1)' {K[20]}",
]


@pytest.fixture(scope="module")
def host() -> Iterator[netns.Host]:
    with netns.Lab() as lab:
        yield lab.host("xfrm")


def test_iproute2_rejects_what_is_not_its_syntax(host: netns.Host) -> None:
    """The oracle itself: a word iproute2 does not know gives exit status 255."""
    r = host.run(["ip", "xfrm", "state", "add", *shlex.split(STATES[0]), "bogusword"], check=False)
    assert r.returncode == 255 and "bogusword" in r.stderr


@pytest.mark.parametrize("text", STATES, ids=[s.split()[7] for s in STATES])
def test_canonical_state_words_are_ip_xfrm_syntax(host: netns.Host, text: str) -> None:
    s = parse_state(shlex.split(text))
    words = state_words(s, keys=True)
    r = host.run(["ip", "xfrm", "state", "add", *words], check=False)
    if r.returncode == 0:  # a kernel with ESP/AH: the state is there
        listed = host.run(["ip", "xfrm", "state", "list"]).stdout
        assert f"spi 0x{s.spi:08x}" in listed
        host.run(["ip", "xfrm", "state", "flush"])
    else:
        assert r.returncode == 2 and "Requested" in r.stderr, r.stderr
    # the words ipsecd wrote parse back to the same state
    assert parse_state(words) == s


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_states())
def test_generated_state_words_are_ip_xfrm_syntax(host: netns.Host, s: ManualState) -> None:
    r = host.run(["ip", "xfrm", "state", "add", *state_words(s, keys=True)], check=False)
    if r.returncode == 0:
        host.run(["ip", "xfrm", "state", "flush"])
    else:
        assert r.returncode == 2 and "Requested" in r.stderr, r.stderr


def _ip_policy_list(host: netns.Host) -> str:
    return host.run(["ip", "xfrm", "policy", "list"]).stdout


def _check_installed(host: netns.Host, p: ManualPolicy) -> None:
    host.run(["ip", "xfrm", "policy", "flush"])
    host.run(["ip", "xfrm", "policy", "add", *policy_words(p)])
    listed = [ln.strip() for ln in _ip_policy_list(host).splitlines()]
    ours = [ln.strip() for ln in render_policy(policy_to_json(p)).splitlines()]
    head = listed[0].split()  # addresses compared as addresses (inet_ntop may write ::0.1.0.0)
    assert head[0] == "src" and head[2] == "dst", listed
    assert (ip_network(head[1]), ip_network(head[3])) == (p.sel.src, p.sel.dst), listed
    assert listed[1].removesuffix(" ptype main") == ours[1], (listed, ours)
    ip_tmpls = [ln for ln in listed if ln.startswith("proto ")]
    our_tmpls = [ln.removesuffix(" level use") for ln in ours if ln.startswith("proto ")]
    assert ip_tmpls == our_tmpls, (listed, ours)
    assert sum(ln == "level use" for ln in listed) == sum(t.level.value == "use" for t in p.tmpls)


def test_policy_from_the_brief(host: netns.Host) -> None:
    p = parse_policy(
        shlex.split(
            "src 10.1.0.0/16 dst 10.2.0.0/16 proto tcp dport 22 dir out priority 10 "
            "tmpl src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel reqid 5 "
            "tmpl proto ah mode transport level use"
        )
    )
    _check_installed(host, p)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_policies())
def test_generated_policies_install_and_list_back(host: netns.Host, p: ManualPolicy) -> None:
    _check_installed(host, p)
