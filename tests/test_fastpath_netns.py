"""The fast path between two network namespaces (root): tests/fastpath_peer.py on both ends.

AES-128-GCM tunnel-mode SAs, ESP in UDP port 4500, 10.1.0.0/24 (a) <-> 10.2.0.0/24 (b) over a veth
192.0.2.1 <-> 192.0.2.2. Ping and iperf3 TCP pass both ways, the veth carries nothing but UDP 4500
(and never the cleartext), and a fast-path host talks to a host whose packets come from the Python
fallback transform (parity on the wire, both directions).
"""

from __future__ import annotations

import json
import re

import pytest

from ipsecd.datapath import fastpath as fpmod
from tests import netns
from tests.fastpath_peer import A_INNER, B_INNER, start_pair

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not fpmod.AVAILABLE, reason=fpmod.UNAVAILABLE_REASON or "not built"),
]

PATTERN = "c0ffee11"  # ping -p: a payload we must never see on the veth


def _ping_both_ways(pair: netns.Pair, count: int = 5) -> None:
    for host, dst, src in ((pair.a, B_INNER, A_INNER), (pair.b, A_INNER, B_INNER)):
        r = host.run(
            [
                "ping",
                "-n",
                "-c",
                str(count),
                "-i",
                "0.05",
                "-W",
                "2",
                "-w",
                "10",
                "-p",
                PATTERN,
                "-I",
                src,
                dst,
            ],
            timeout=20,
            check=False,
        )
        res = netns.parse_ping(r.stdout + r.stderr)
        assert res.received == count, r.stdout


def _closed_in(proc: netns.Background) -> float:
    proc.stop()
    m = re.search(r"closed in ([\d.]+) s", proc.output())
    assert m is not None, proc.output()
    return float(m.group(1))


def test_fast_path_tunnel_carries_ping_and_tcp_both_ways_as_udp_4500_only(lab: netns.Lab) -> None:
    pair, pa, pb = start_pair(lab, ("fast", "fast"))
    assert "vnet_hdr on" in pa.output() or "vnet_hdr off" in pa.output()  # the feature report
    cap = pair.a.capture(pair.link.a_ifname, "ip")
    _ping_both_ways(pair)
    for client, server, dst, src in ((pair.a, pair.b, B_INNER, A_INNER), (pair.b, pair.a, A_INNER, B_INNER)):
        server.iperf3_server(bind=dst)
        res = client.iperf3_client(dst, seconds=1.5, extra=["-B", src])
        assert res.received_bps > 50e6, res
    lines = cap.lines()
    assert len(lines) > 100
    assert cap.count("ip and not udp port 4500") == 0, cap.lines("ip and not udp port 4500")[:5]
    raw = b"".join(cap.packets())
    assert bytes.fromhex(PATTERN) * 4 not in raw  # the ping pattern never crosses in clear
    assert _closed_in(pa) < 1.0 and _closed_in(pb) < 1.0
    sa, sb = _stats(pa), _stats(pb)
    for st in (sa, sb):
        assert st["tun_tx_errors"] == st["unprotect_drops"] == st["udp_tx_errors"] == 0, st
    if "TUN TSO on" in pa.output():  # the kernel handed over TCP super-packets: segmented here
        assert sa["tun_rx_super_packets"] > 0 and sa["tun_rx_segments"] > sa["tun_rx_super_packets"]
        assert sb["tun_tx_coalesced"] > 0  # and b wrote coalesced ones back
    if "UDP GSO on" in pa.output():
        assert sa["udp_tx_gso_messages"] > 0
    if "UDP GRO on" in pb.output():
        assert sb["udp_rx_gro_messages"] > 0


def _stats(proc: netns.Background) -> dict[str, int]:
    m = re.search(r"^stats (.*)$", proc.output(), re.MULTILINE)
    assert m is not None, proc.output()
    out: dict[str, int] = json.loads(m.group(1))
    return out


@pytest.mark.parametrize("fast_side", ["a", "b"])
def test_fast_path_interoperates_with_the_python_fallback(lab: netns.Lab, fast_side: str) -> None:
    modes = ("fast", "python") if fast_side == "a" else ("python", "fast")
    pair, pa, pb = start_pair(lab, modes)
    cap = pair.a.capture(pair.link.a_ifname, "ip")
    _ping_both_ways(pair)
    pair.b.iperf3_server(bind=B_INNER)
    res = pair.a.iperf3_client(B_INNER, seconds=1, extra=["-B", A_INNER])
    assert res.received_bps > 1e6, res
    assert cap.count("ip and not udp port 4500") == 0
    fast = pa if fast_side == "a" else pb
    assert _closed_in(fast) < 1.0
    stats = fast.output()
    # Everything the Python side sent was accepted by the fast path, and the other way round.
    assert re.search(r'"unprotect_drops": 0', stats), stats
    assert re.search(r'"tun_tx_packets": [1-9]', stats), stats


def test_without_vnet_hdr_the_plain_packet_path_works(lab: netns.Lab) -> None:
    pair, pa, _pb = start_pair(lab, ("fast", "fast"), vnet=False)
    assert "vnet_hdr off" in pa.output()
    _ping_both_ways(pair, 3)
    pair.b.iperf3_server(bind=B_INNER)
    res = pair.a.iperf3_client(B_INNER, seconds=1, extra=["-B", A_INNER])
    assert res.received_bps > 50e6, res
    assert '"tun_rx_super_packets": 0' in (pa.stop(), pa.output())[1]
