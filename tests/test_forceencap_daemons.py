"""Two ipsecd daemons (root, two namespaces on one link, no NAT) with the example stores
config/examples/forceencap-tunnel-{a,b}.toml: a tunnel rule per direction, PSK, ESP AES-128-GCM
and ``forceencap = true``. With IKEv2 (the files as shipped) and IKEv1 (the same with
``ikeversion = 1``): pings both ways pass, and tcpdump on the link sees UDP 500/4500 only, no ESP
(IP protocol 50). The control case (the same stores without ``forceencap``) sends plain ESP.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_helpers import A4, B4, INNER_A, INNER_B
from tests.netns import Lab, two_hosts
from tests.test_daemon_ike import _daemon, _show

pytestmark = pytest.mark.root

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"


def _store(side: str, version: int, force: bool) -> str:
    text = (EXAMPLES / f"forceencap-tunnel-{side}.toml").read_text()
    if version == 1:
        assert text.count("ikeversion = 2") == 2
        text = text.replace("ikeversion = 2", "ikeversion = 1")
    if not force:
        assert text.count("\n  forceencap = true\n") == 2
        text = text.replace("\n  forceencap = true\n", "\n  forceencap = false\n")
    return text.replace("[daemon]\n", "[daemon]\nikelogging = true\n", 1)


@pytest.mark.parametrize("force", [True, False], ids=["forceencap", "control"])
@pytest.mark.parametrize("version", [1, 2], ids=["ikev1", "ikev2"])
def test_two_daemons_forceencap_tunnel(lab: Lab, version: int, force: bool) -> None:
    p = two_hosts(lab)
    p.a.add_address("lo", f"{INNER_A}/32")
    p.b.add_address("lo", f"{INNER_B}/32")
    da, oak_a = _daemon(lab, p.a, _store("a", version, force))
    db, oak_b = _daemon(lab, p.b, _store("b", version, force))
    cap = p.a.capture(p.link.a_ifname)
    first = p.a.ping(INNER_B, count=1, wait=8, src=INNER_A)
    assert first.received >= 1, first.output + da.proc.output() + db.proc.output()
    ra = p.a.ping(INNER_B, count=3, interval=0.1, src=INNER_A)
    rb = p.b.ping(INNER_A, count=3, interval=0.1, src=INNER_B)
    assert (ra.received, rb.received) == (3, 3), ra.output + rb.output
    cap.stop()
    assert cap.count(f"host {INNER_A} or host {INNER_B}") == 0  # nothing in clear
    if force:
        assert cap.count("ip proto 50") == 0, cap.lines("ip proto 50")
        assert cap.count("ip and not udp") == 0, cap.lines("ip and not udp")
        assert cap.count("udp and not port 500 and not port 4500") == 0
        assert cap.count("udp port 4500") >= 12  # 12 ESP-in-UDP echo packets, and IKE after the float
    else:
        assert cap.count("ip proto 50") >= 12  # plain ESP (RFC 4303), nothing on port 4500
        assert cap.count("udp port 4500") == 0, cap.lines("udp port 4500")
    for d, peer in ((da, B4), (db, A4)):
        st = d.status()
        assert len(st["states"]) == 2, st["states"]
        want = [4500, 4500] if force else None
        assert all(s["encap"] == want and s["mode"] == "tunnel" for s in st["states"]), st["states"]
        [mm] = _show(d, "mmsas")["mmsas"]
        assert (mm["ike_version"], mm["peer"]) == (version, peer), mm
        assert (mm["local_port"], mm["peer_port"]) == ((4500, 4500) if force else (500, 500)), mm
        [qm] = _show(d, "qmsas")["qmsas"]
        assert qm["udp_encap"] is force and "GCM" in qm["esp_encryption"], qm
    logs = oak_a.read_text() + oak_b.read_text()
    assert "forceencap-example-psk" not in logs
    assert ("natt=true" in logs) is force, logs
