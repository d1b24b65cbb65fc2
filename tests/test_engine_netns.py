"""Two ipsecd hosts in network namespaces with manual SAs: the data path on a real kernel (root).

Each case starts one daemon per namespace with the same manual SAs (both directions) and the
host's own policies, passes ping and TCP both ways, and proves with tcpdump on the veth that no
inner packet crossed the wire in clear and that only the expected IPsec packets did.
"""

from __future__ import annotations

import pytest

from tests.engine_helpers import (
    A4,
    A6,
    B4,
    B6,
    INNER_A,
    INNER_A6,
    INNER_B,
    INNER_B6,
    MARKER,
    start_daemon,
    tcp_echo,
    xfrm_store,
)
from tests.netns import Lab, two_hosts

pytestmark = pytest.mark.root

CASES = [
    ("esp-gcm", "transport", False, 4),
    ("esp-gcm", "transport", True, 4),
    ("esp-gcm", "tunnel", False, 4),
    ("esp-gcm", "tunnel", True, 4),
    ("esp-cbc", "tunnel", True, 4),
    ("ah", "transport", False, 4),
    ("ah", "tunnel", False, 4),
    ("ah+esp", "transport", False, 4),
    ("ah+esp", "tunnel", False, 4),
    ("esp-gcm", "transport", False, 6),
    ("esp-gcm", "tunnel", True, 6),
    ("ah+esp", "tunnel", False, 6),
]


@pytest.mark.parametrize(
    ("suite", "mode", "encap", "version"),
    CASES,
    ids=[f"{s}-{m}-{'udp' if e else 'raw'}-v{v}" for s, m, e, v in CASES],
)
def test_two_hosts_manual_sas(lab: Lab, suite: str, mode: str, encap: bool, version: int) -> None:
    p = two_hosts(lab)
    a, b = (A4, B4) if version == 4 else (A6, B6)
    inner_a, inner_b = (INNER_A, INNER_B) if version == 4 else (INNER_A6, INNER_B6)
    plen = 32 if version == 4 else 128
    if mode == "tunnel":
        p.a.run(["ip", "addr", "add", f"{inner_a}/{plen}", "dev", "lo"])
        p.b.run(["ip", "addr", "add", f"{inner_b}/{plen}", "dev", "lo"])
        a_in, b_in = inner_a, inner_b
    else:
        a_in, b_in = a, b
    da = start_daemon(lab, p.a, store_text=xfrm_store(suite, mode, encap, a, b))
    db = start_daemon(lab, p.b, store_text=xfrm_store(suite, mode, encap, b, a))
    cap = p.a.capture(p.link.a_ifname)
    src_a = a_in if mode == "tunnel" else None
    src_b = b_in if mode == "tunnel" else None
    ra = p.a.ping(b_in, count=3, interval=0.1, src=src_a)
    rb = p.b.ping(a_in, count=3, interval=0.1, src=src_b)
    assert (ra.received, rb.received) == (3, 3), ra.output + rb.output
    tcp_echo(p.a, p.b, b_in, src_a)
    tcp_echo(p.b, p.a, a_in, src_b, port=7001)
    cap.stop()
    # No inner packet in clear on the wire: not ICMP nor TCP, nothing with the inner addresses.
    assert cap.count("icmp or tcp or (icmp6 and not ip6[40] >= 133)") == 0  # (IPv6 ND is not ours)
    assert cap.count("ip6 and tcp") == 0
    if mode == "tunnel":
        assert cap.count(f"host {inner_a} or host {inner_b}") == 0
    if not suite.startswith("ah") or "esp" in suite:  # AH alone authenticates, it does not hide
        assert not any(MARKER in frame for frame in cap.packets())
    else:
        assert any(MARKER in frame for frame in cap.packets())  # the check can see the marker
    outer = "ah" if suite.startswith("ah") else ("udp port 4500" if encap else "esp")
    assert cap.count(outer) >= 10
    if encap:
        assert cap.count("esp") == 0  # ESP only inside UDP
    for d in (da, db):
        full = d.status()
        st, totals = full["router"], full["totals"]  # totals: the router and the fast path (if on)
        assert st["looped"] == 0 and st["protect_failed"] == 0 and st["unprotect_failed"] == 0
        assert st["bad_spi"] == 0 and st["policy_dropped"] == 0 and totals["delivered"] >= 6
        assert totals["protected"] >= 6 and st["sent_clear"] == 0
