"""``forceencap`` against strongSwan's charon (root): ipsecd on host a initiates to charon on host b
(and answers charon initiating), no NAT between them, with IKEv1 (RFC 3947 NAT-D) and IKEv2 (RFC
7296 section 2.23).

charon's connection says ``encap = no``, so charon does not ask for UDP encapsulation in its
configuration; but its kernel-libipsec data path needs ESP in UDP and makes charon fake its own
NAT detection hash anyway (/work/shared/notes/strongswan-in-netns.md), so the outcome "ESP in UDP
4500" alone cannot tell who forced it. What shows our forcing is charon's verdict on *our* NAT-D
payloads: with ``forceencap`` it finds "remote host is behind NAT" (our faked hash), without it
(the control case) it does not. Both ways, pings go through the tunnel and tcpdump on the link
sees UDP only (500 and 4500), never ESP (IP protocol 50).
"""

from __future__ import annotations

import pytest

from tests import strongswan
from tests.engine_helpers import INNER_A, INNER_B
from tests.netns import Lab
from tests.test_daemon_ike import _show
from tests.test_daemon_ike_strongswan import PSK, bring_up, tunnel_store

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not strongswan.available(), reason="strongSwan charon/swanctl not installed"),
]

REMOTE_NAT = "remote host is behind NAT"  # charon's log line when the peer's NAT-D did not match

# (IKE version, our main-mode method, charon's IKE proposal)
VERSIONS = [(1, "AES128-SHA1-14", "aes128-sha1-modp2048"), (2, "AES256-SHA256-14", "aes256-sha256-modp2048")]


def forced_store(version: int, mm: str, force: bool) -> str:
    store = tunnel_store("ESP[AESGCM128]", mm, version)
    if force:
        store = store.replace(
            f"  ikeversion = {version}\n", f"  ikeversion = {version}\n  forceencap = true\n"
        )
        assert store.count("forceencap = true") == 2
    return store


@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize("force", [True, False], ids=["forceencap", "control"])
@pytest.mark.parametrize(("version", "mm", "ike"), VERSIONS, ids=["ikev1", "ikev2"])
def test_forceencap_with_charon(lab: Lab, version: int, mm: str, ike: str, force: bool, role: str) -> None:
    """``role``: ours. As responder, the rule is picked by charon's address at its first message,
    so our answer already carries the faked NAT-D."""
    up = bring_up(
        lab, role, forced_store(version, mm, force), ike, "aes128gcm16", version=version, encap=False
    )
    p, charon, d, oakley, cap = up.pair, up.charon, up.daemon, up.oakley, up.cap
    assert charon.established("t", "t"), charon.list_sas()
    sas = charon.list_sas()
    assert "TUNNEL-in-UDP" in sas and "AES_GCM_16-128" in sas, sas
    ra = p.a.ping(INNER_B, count=3, interval=0.1, src=INNER_A)
    rb = p.b.ping(INNER_A, count=3, interval=0.1, src=INNER_B)
    assert (ra.received, rb.received) == (3, 3), ra.output + rb.output + charon.log_text()[-3000:]
    cap.stop()
    assert cap.count("ip proto 50") == 0, cap.lines("ip proto 50")  # no raw ESP
    assert cap.count("ip and not udp") == 0, cap.lines("ip and not udp")
    assert cap.count("udp and not port 500 and not port 4500") == 0
    assert cap.count("udp port 4500") >= 12  # 12 ESP-in-UDP echo packets, and IKE after the float
    assert cap.count(f"host {INNER_A} or host {INNER_B}") == 0
    log = charon.log_text()
    assert (REMOTE_NAT in log) is force, log[-4000:]
    st = d.status()
    assert all(s["encap"] == [4500, 4500] and s["mode"] == "tunnel" for s in st["states"]), st["states"]
    qm_rows = _show(d, "qmsas")["qmsas"]
    assert len(qm_rows) == 1 and qm_rows[0]["udp_encap"] is True, qm_rows
    [mm_row] = _show(d, "mmsas")["mmsas"]
    assert (mm_row["role"], mm_row["ike_version"], mm_row["local_port"]) == (role, version, 4500), mm_row
    assert PSK not in oakley.read_text()
