"""Two ipsecd hosts in network namespaces with manual SAs: the data path on a real kernel (root).

Each case starts one daemon per namespace with the same manual SAs (both directions) and the
host's own policies, passes ping and TCP both ways, and proves with tcpdump on the veth that no
inner packet crossed the wire in clear and that only the expected IPsec packets did.
"""

from __future__ import annotations

import pytest

from tests.engine_helpers import A4, B4, INNER_A, INNER_B, MARKER, start_daemon, tcp_echo, xfrm_store
from tests.netns import Lab, two_hosts

pytestmark = pytest.mark.root

CASES = [
    ("esp-gcm", "transport", False),
    ("esp-gcm", "transport", True),
    ("esp-gcm", "tunnel", False),
    ("esp-gcm", "tunnel", True),
    ("esp-cbc", "tunnel", True),
    ("ah", "transport", False),
    ("ah", "tunnel", False),
    ("ah+esp", "transport", False),
    ("ah+esp", "tunnel", False),
]


@pytest.mark.parametrize(
    ("suite", "mode", "encap"), CASES, ids=[f"{s}-{m}-{'udp' if e else 'raw'}" for s, m, e in CASES]
)
def test_two_hosts_manual_sas(lab: Lab, suite: str, mode: str, encap: bool) -> None:
    p = two_hosts(lab)
    if mode == "tunnel":
        p.a.run(["ip", "addr", "add", f"{INNER_A}/32", "dev", "lo"])
        p.b.run(["ip", "addr", "add", f"{INNER_B}/32", "dev", "lo"])
        a_in, b_in = INNER_A, INNER_B
    else:
        a_in, b_in = A4, B4
    da = start_daemon(lab, p.a, store_text=xfrm_store(suite, mode, encap, A4, B4))
    db = start_daemon(lab, p.b, store_text=xfrm_store(suite, mode, encap, B4, A4))
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
    assert cap.count("icmp or tcp") == 0
    if mode == "tunnel":
        assert cap.count(f"host {INNER_A} or host {INNER_B}") == 0
    if not suite.startswith("ah") or "esp" in suite:  # AH alone authenticates, it does not hide
        assert not any(MARKER in frame for frame in cap.packets())
    else:
        assert any(MARKER in frame for frame in cap.packets())  # the check can see the marker
    outer = "ah" if suite.startswith("ah") else ("udp port 4500" if encap else "esp")
    assert cap.count(outer) >= 10
    if encap:
        assert cap.count("esp") == 0  # ESP only inside UDP
    for d in (da, db):
        st = d.status()["router"]
        assert st["looped"] == 0 and st["protect_failed"] == 0 and st["unprotect_failed"] == 0
        assert st["bad_spi"] == 0 and st["policy_dropped"] == 0 and st["delivered"] >= 6
        assert st["protected"] >= 6 and st["sent_clear"] == 0
