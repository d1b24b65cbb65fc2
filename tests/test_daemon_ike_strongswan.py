"""The daemon's IKE against strongSwan's charon (root): ipsecd with a tunnel-mode PSK policy on host
a, charon (kernel-libipsec: tunnel mode, ESP always in UDP 4500) on host b, in both roles.

Initiator: a ping from a's inner address raises the acquire and ipsecd negotiates; responder:
``swanctl --initiate``. Then pings both ways through the tunnel, and tcpdump on the link shows
nothing but UDP (IKE on 500/4500, ESP in UDP 4500): no ICMP, no inner address.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import netns, strongswan
from tests.engine_helpers import A4, B4, INNER_A, INNER_B, Daemon, start_daemon, tcp_echo
from tests.netns import Capture, Lab, Pair, two_hosts, wait_until
from tests.test_daemon_ike import _show

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not strongswan.available(), reason="strongSwan charon/swanctl not installed"),
]

PSK = "daemon-ike-strongswan-psk"
A_NET, B_NET = "10.1.0.0/24", "10.2.0.0/24"


def tunnel_store(qm: str, mm: str, ikeversion: int = 1) -> str:
    """a's store: one rule per tunnel direction (docs/policy.md), PSK, ikeversion."""
    return f"""[daemon]
assigned_policy = "p"
ikelogging = true
[[filterlist]]
name = "to b"
  [[filterlist.filter]]
  srcaddr = "{A_NET}"
  dstaddr = "{B_NET}"
  mirrored = false
[[filterlist]]
name = "from b"
  [[filterlist.filter]]
  srcaddr = "{B_NET}"
  dstaddr = "{A_NET}"
  mirrored = false
[[filteraction]]
name = "sec"
action = "negotiate"
qmsecmethods = ["{qm}"]
[[policy]]
name = "p"
mmsecmethods = ["{mm}"]
  [[policy.rule]]
  name = "to b"
  filterlist = "to b"
  filteraction = "sec"
  tunnel = "{B4}"
  ikeversion = {ikeversion}
  auth = [{{ method = "psk", psk = "{PSK}" }}]
  [[policy.rule]]
  name = "from b"
  filterlist = "from b"
  filteraction = "sec"
  tunnel = "{A4}"
  ikeversion = {ikeversion}
  auth = [{{ method = "psk", psk = "{PSK}" }}]
"""


CASES = [
    # (id, our QM method, our MM method, charon's IKE proposal, charon's ESP proposal, swanctl text)
    (
        "aes128-sha1",
        "ESP[AES128,SHA1]",
        "AES128-SHA1-14",
        "aes128-sha1-modp2048",
        "aes128-sha1",
        "AES_CBC-128",
    ),
    ("gcm128", "ESP[AESGCM128]", "AES128-SHA1-14", "aes128-sha1-modp2048", "aes128gcm16", "AES_GCM_16-128"),
]


@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize(("name", "qm", "mm", "ike", "esp", "want"), CASES, ids=[c[0] for c in CASES])
def test_ikev1_tunnel_with_charon(
    lab: Lab, role: str, name: str, qm: str, mm: str, ike: str, esp: str, want: str
) -> None:
    run_case(lab, role, qm, mm, ike, esp, want, version=1)


@dataclass
class Up:
    """ipsecd on a and charon on b with their tunnel established; ``cap`` runs on a's link."""

    pair: Pair
    charon: strongswan.Charon
    daemon: Daemon
    oakley: Path
    cap: Capture


def bring_up(
    lab: Lab,
    role: str,
    store_text: str,
    ike: str,
    esp: str,
    *,
    version: int,
    encap: bool = True,
    extra: tuple[str, ...] = (),
) -> Up:
    """charon (kernel-libipsec, PSK, tunnel) on b, ipsecd with ``store_text`` on a, then the tunnel
    raised by ``role``: ours initiates on the first ping, or answers ``swanctl --initiate``."""
    p = two_hosts(lab)
    p.a.add_address("lo", f"{INNER_A}/32")
    p.b.add_address("lo", f"{INNER_B}/32")
    charon = strongswan.Charon(
        p.b,
        strongswan.psk_tunnel_conf(
            local_addr=B4,
            remote_addr=A4,
            local_id=B4,
            remote_id=A4,
            local_ts=B_NET,
            remote_ts=A_NET,
            psk=PSK,
            version=version,
            proposals=ike,
            esp_proposals=esp,
            encap=encap,
        ),
    ).start()
    oakley = lab.scratch("a-oakley.log")
    d = start_daemon(lab, p.a, store_text=store_text, extra=("--oakley-log", str(oakley), *extra))
    cap = p.a.capture(p.link.a_ifname)
    if role == "initiator":
        first = p.a.ping(INNER_B, count=1, wait=8, src=INNER_A)
        assert first.received >= 1, first.output + d.proc.output() + charon.log_text()[-3000:]
    else:
        charon.initiate("t", "t")
        wait_until(lambda: len(d.status()["states"]) == 2, 10, what="ipsecd's SAs")
    return Up(p, charon, d, oakley, cap)


def run_case(
    lab: Lab,
    role: str,
    qm: str,
    mm: str,
    ike: str,
    esp: str,
    want: str,
    *,
    version: int,
    fastpath: bool = False,
) -> None:
    up = bring_up(
        lab,
        role,
        tunnel_store(qm, mm, version),
        ike,
        esp,
        version=version,
        extra=("--fastpath",) if fastpath else (),
    )
    p, charon, d, oakley, cap = up.pair, up.charon, up.daemon, up.oakley, up.cap
    assert charon.established("t", "t"), charon.list_sas()
    sas = charon.list_sas()
    assert "TUNNEL-in-UDP" in sas and want in sas, sas
    ra = p.a.ping(INNER_B, count=3, interval=0.1, src=INNER_A)
    rb = p.b.ping(INNER_A, count=3, interval=0.1, src=INNER_B)
    assert (ra.received, rb.received) == (3, 3), ra.output + rb.output + charon.log_text()[-3000:]
    if fastpath:
        tcp_echo(p.a, p.b, INNER_B, INNER_A)
        tcp_echo(p.b, p.a, INNER_A, INNER_B, port=7001)
    cap.stop()
    # Only UDP on the wire (no ICMP, no raw ESP); the test traffic is IPv4 only.
    assert cap.count("ip and not udp") == 0, cap.lines("ip and not udp")
    assert cap.count("udp port 4500") >= 12  # 12 ESP-in-UDP echo packets, and IKE after the float
    assert cap.count(f"host {INNER_A} or host {INNER_B}") == 0
    st = d.status()
    assert st["router"]["looped"] == 0
    assert all(s["encap"] == [4500, 4500] and s["mode"] == "tunnel" for s in st["states"]), st["states"]
    [mm_row] = _show(d, "mmsas")["mmsas"]
    assert (mm_row["ike_version"], mm_row["role"], mm_row["peer"]) == (version, role, B4), mm_row
    qm_rows = _show(d, "qmsas")["qmsas"]
    assert len(qm_rows) == 1 and qm_rows[0]["mode"] == "tunnel", qm_rows
    log = oakley.read_text()
    assert "Quick Mode SA established" in log and "mode=tunnel" in log, log
    first = "Main Mode" if version == 1 else "IKE_SA_INIT"
    assert f"IKEv{version} {first} sent" in log and f"IKEv{version} {first} received" in log, log
    assert PSK not in log
    if fastpath:
        _carried_by_fast_path(st)


def _carried_by_fast_path(st: dict[str, Any]) -> None:
    """The negotiated SA pair is in the fast path, which carried the traffic: the Python router
    delivered nothing and protected at most the packets queued while IKE negotiated (handed to
    the fast path too: it sent them through the SA)."""
    fp = st["fastpath"]
    assert fp is not None and len(fp["sas"]) == 2, fp
    sent = sum(sa["counters"]["packets_sent"] for sa in fp["sas"])
    received = sum(sa["counters"]["packets_received"] for sa in fp["sas"])
    assert sent >= 50 and received >= 50, fp  # pings and 200 kB of TCP each way
    assert fp["stats"]["bad_spi_packets"] == 0, fp["stats"]
    assert any(f["action"] == "PROTECT" for f in fp["filter_table"]), fp["filter_table"]
    router = st["router"]
    assert router["delivered"] == 0 and router["sent_clear"] == 0, router
    assert router["protected"] == 0 and router["offloaded"] <= 3, router  # the first ping, queued
    assert st["totals"]["protected"] >= sent // 2, st["totals"]


@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize("version", [1, 2])
def test_fastpath_tunnel_with_charon(lab: Lab, role: str, version: int) -> None:
    """ipsecd --fastpath: the SAs IKE negotiates with charon go to the native fast path."""
    mm = "AES128-SHA1-14" if version == 1 else "AES256-SHA256-14"
    ike = "aes128-sha1-modp2048" if version == 1 else "aes256-sha256-modp2048"
    run_case(
        lab, role, "ESP[AESGCM128]", mm, ike, "aes128gcm16", "AES_GCM_16-128", version=version, fastpath=True
    )


V2_CASES = [
    (
        "aes128-sha1",
        "ESP[AES128,SHA1]",
        "AES128-SHA1-14",
        "aes128-sha1-modp2048",
        "aes128-sha1",
        "AES_CBC-128",
    ),
    (
        "gcm128",
        "ESP[AESGCM128]",
        "AES256-SHA256-14",
        "aes256-sha256-modp2048",
        "aes128gcm16",
        "AES_GCM_16-128",
    ),
]


@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize(("name", "qm", "mm", "ike", "esp", "want"), V2_CASES, ids=[c[0] for c in V2_CASES])
def test_ikev2_tunnel_with_charon(
    lab: Lab, role: str, name: str, qm: str, mm: str, ike: str, esp: str, want: str
) -> None:
    run_case(lab, role, qm, mm, ike, esp, want, version=2)


def test_ikev1_initiator_behind_nat_with_charon(lab: Lab) -> None:
    """ipsecd on the inside of the masquerading router (``nat_topology``) initiates to charon: NAT-D
    sees the NAT, IKE floats to 4500, ESP goes in UDP through the mapping, traffic both ways."""
    t = netns.nat_topology(lab)
    left, right = "10.0.1.2", "198.51.100.2"
    t.left.add_address("lo", f"{INNER_A}/32")
    t.right.add_address("lo", f"{INNER_B}/32")
    charon = strongswan.Charon(
        t.right,
        strongswan.psk_tunnel_conf(
            local_addr=right,
            remote_addr="%any",
            local_id=right,
            remote_id=left,
            local_ts=B_NET,
            remote_ts=A_NET,
            psk=PSK,
            version=1,
            proposals="aes128-sha1-modp2048",
            esp_proposals="aes128gcm16",
            encap=False,  # a real NAT this time: charon must find it from the NAT-D hashes
        ),
    ).start()
    store = tunnel_store("ESP[AESGCM128]", "AES128-SHA1-14").replace(f'"{B4}"', f'"{right}"')
    store = store.replace(f'"{A4}"', f'"{left}"')
    d = start_daemon(lab, t.left, store_text=store, extra=("--oakley-log", str(lab.scratch("oakley.log"))))
    cap = t.right.capture(t.outside.b_ifname)
    first = t.left.ping(INNER_B, count=1, wait=8, src=INNER_A)
    assert first.received >= 1, first.output + d.proc.output() + charon.log_text()[-3000:]
    sas = charon.list_sas()
    assert "TUNNEL-in-UDP" in sas and "198.51.100.1" in sas, sas  # charon sees the router's address
    ra = t.left.ping(INNER_B, count=3, interval=0.1, src=INNER_A)
    rb = t.right.ping(INNER_A, count=3, interval=0.1, src=INNER_B)
    assert (ra.received, rb.received) == (3, 3), ra.output + rb.output
    cap.stop()
    assert cap.count("ip and not udp") == 0, cap.lines("ip and not udp")
    assert cap.count("udp port 4500") >= 12
    [state] = [s for s in d.status()["states"] if s["direction"] == "out"]
    assert state["encap"] == [4500, 4500] and state["dst"] == right, state
