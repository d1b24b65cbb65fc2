"""ipsecd --fastpath with the kernel offloads: the daemon's TUN has IFF_VNET_HDR and TSO/USO.

Root: two namespaces (tests/netns.py). The fast path reads TCP super-packets from the TUN and
writes coalesced ones; the Python router still writes what it decrypts (a raw-ESP tunnel SA pair
next to the fast path's ESP-in-UDP one) through the same TUN, each packet behind a virtio_net_hdr.
The persistent device is re-attached plain by a daemon without --fastpath (offloads cleared) and
with vnet_hdr again by the next --fastpath daemon.
"""

from __future__ import annotations

import pytest
from pyroute2.ethtool import Ethtool

from ipsecd.datapath import fastpath
from ipsecd.io.tun import IFF_VNET_HDR, TUN_F_TSO4, TunDevice
from tests.engine_helpers import (
    A4,
    B4,
    INNER_A,
    INNER_B,
    MARKER,
    Daemon,
    key,
    start_daemon,
    tcp_echo,
    xfrm_store,
)
from tests.netns import Host, Lab, Pair, two_hosts

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not fastpath.AVAILABLE, reason=fastpath.UNAVAILABLE_REASON),
]

# The second, raw-ESP tunnel (no UDP encapsulation: the Python router's) between other addresses.
A4_RAW, B4_RAW = "192.0.2.11", "192.0.2.12"
INNER_A2, INNER_B2 = "10.1.0.2", "10.2.0.2"
TUN = "ipsecd0"


def _raw_esp_words(me: str, peer: str, inner_me: str, inner_peer: str) -> tuple[list[str], list[str]]:
    states = []
    for src, dst, spi in ((A4_RAW, B4_RAW, 0x3000), (B4_RAW, A4_RAW, 0x4000)):
        alg = f"aead rfc4106(gcm(aes)) 0x{key(f'raw{spi}', 20)} 128"
        states.append(f"src {src} dst {dst} proto esp spi 0x{spi:x} mode tunnel {alg}")
    policies = [
        f"src {inner_me}/32 dst {inner_peer}/32 dir out tmpl src {me} dst {peer} proto esp mode tunnel",
        f"src {inner_peer}/32 dst {inner_me}/32 dir in tmpl src {peer} dst {me} proto esp mode tunnel",
    ]
    return states, policies


def _tso_expected(host: Host) -> bool:
    """Whether this kernel lets a TUN take TSO (what the daemon should then report)."""
    with host.entered():
        probe = TunDevice.open("vnetprobe0", vnet_hdr=True, up=False)
    with probe:
        return bool(probe.enable_offloads() & TUN_F_TSO4)


def _tun_flags(host: Host) -> int:
    return int(host.run(["cat", f"/sys/class/net/{TUN}/tun_flags"]).stdout.strip(), 16)


def _offloads(host: Host) -> dict[str, bool]:
    with host.entered(), Ethtool() as e:
        feats = e.get_features(TUN).features
    names = ("tx-checksum-ip-generic", "tx-tcp-segmentation", "tx-udp-segmentation")
    return {n: bool(feats[n].enable) for n in names if n in feats}


def _fast_stats(d: Daemon) -> dict[str, int]:
    fp = d.status()["fastpath"]
    assert fp is not None
    stats: dict[str, int] = fp["stats"]
    return stats


def _setup(p: Pair) -> None:
    for host, inner, inner2, raw in ((p.a, INNER_A, INNER_A2, A4_RAW), (p.b, INNER_B, INNER_B2, B4_RAW)):
        host.run(["ip", "addr", "add", f"{inner}/32", "dev", "lo"])
        host.run(["ip", "addr", "add", f"{inner2}/32", "dev", "lo"])
        host.run(
            ["ip", "addr", "add", f"{raw}/24", "dev", p.link.a_ifname if host is p.a else p.link.b_ifname]
        )


def test_offloads_super_packets_and_python_deliveries(lab: Lab) -> None:
    p = two_hosts(lab)
    _setup(p)
    tso = _tso_expected(p.a)
    da = start_daemon(
        lab, p.a, store_text=xfrm_store("esp-gcm", "tunnel", True, A4, B4), extra=("--fastpath",)
    )
    db = start_daemon(
        lab, p.b, store_text=xfrm_store("esp-gcm", "tunnel", True, B4, A4), extra=("--fastpath",)
    )
    for d, me, peer, inner_me, inner_peer in (
        (da, A4_RAW, B4_RAW, INNER_A2, INNER_B2),
        (db, B4_RAW, A4_RAW, INNER_B2, INNER_A2),
    ):
        states, policies = _raw_esp_words(me, peer, inner_me, inner_peer)
        for words in states:
            d.call("xfrm", argv=["state", "add", *words.split()])
        for words in policies:
            d.call("xfrm", argv=["policy", "add", *words.split()])
    for d in (da, db):
        features = d.status()["fastpath"]["features"]
        assert "vnet_hdr on" in features, features
        assert ("TUN TSO on" in features) == tso, features
        assert _tun_flags(d.host) & IFF_VNET_HDR
    assert "fast path: vnet_hdr on" in da.proc.output()

    cap = p.a.capture(p.link.a_ifname)
    # The fast path: TCP both ways, then 2 s of iperf3 a -> b (super-packets from a's TCP stack).
    tcp_echo(p.a, p.b, INNER_B, INNER_A)
    tcp_echo(p.b, p.a, INNER_A, INNER_B, port=7001)
    p.b.iperf3_server()
    res = p.a.iperf3_client(INNER_B, seconds=2, extra=["-B", INNER_A])
    assert res.received_bps > 0
    # The Python router: raw ESP both ways; its decrypted packets go into the vnet_hdr TUN.
    ra = p.a.ping(INNER_B2, count=3, interval=0.1, src=INNER_A2)
    assert ra.received == 3, ra.output
    tcp_echo(p.a, p.b, INNER_B2, INNER_A2, port=7002)
    cap.stop()

    assert cap.count("icmp or tcp") == 0
    assert not any(MARKER in frame for frame in cap.packets())
    assert cap.count(f"host {INNER_A} or host {INNER_B} or host {INNER_A2} or host {INNER_B2}") == 0
    assert cap.count("udp port 4500") >= 100
    assert cap.count(f"esp and host {A4_RAW} and host {B4_RAW}") >= 20  # the Python router's SA pair
    assert cap.count(f"esp and host {A4} and host {B4}") == 0  # the fast pair only ever in UDP 4500
    other = cap.lines("ip and not udp port 4500 and not esp")
    assert other == [], other

    sa, sb = _fast_stats(da), _fast_stats(db)
    if tso:  # a's kernel handed the fast path TCP super-packets; it cut them into segments
        assert sa["tun_rx_super_packets"] > 0 and sa["tun_rx_segments"] > sa["tun_rx_super_packets"], sa
    assert sb["tun_tx_coalesced"] > 0, sb  # b wrote received segments as super-packets
    assert sa["bad_spi_packets"] == sb["bad_spi_packets"] == 0
    for d in (da, db):
        st = d.status()
        router, tun = st["router"], st["tun"]
        assert router["delivered"] >= 10 and router["protected"] >= 10, router  # the raw-ESP pair
        assert tun["tx_packets"] == router["delivered"] and tun["tx_rejected"] == 0, tun
        assert st["tun_write_dropped"] == 0 and tun["rx_packets"] == 0  # the C threads read the TUN


def test_persistent_tun_reattached_plain_and_with_vnet_hdr(lab: Lab) -> None:
    """--fastpath, then --no-fastpath (a restart of the persistent device: IFF_VNET_HDR and the offloads
    cleared, or TCP checksums would reach the plain reader unfinished), then --fastpath again."""
    p = two_hosts(lab)
    for host, inner in ((p.a, INNER_A), (p.b, INNER_B)):
        host.run(["ip", "addr", "add", f"{inner}/32", "dev", "lo"])
    stores = {}
    for host, me, peer in ((p.a, A4, B4), (p.b, B4, A4)):
        path = lab.scratch(f"{host.name}-store.toml")
        path.write_text(xfrm_store("esp-gcm", "tunnel", True, me, peer))
        path.chmod(0o600)
        stores[host.name] = path
    tso = _tso_expected(p.a)
    for phase, extra in enumerate((("--fastpath",), ("--no-fastpath",), ("--fastpath",))):
        daemons = [start_daemon(lab, h, store=stores[h.name], extra=extra) for h in (p.a, p.b)]
        fast = extra == ("--fastpath",)
        for d in daemons:
            assert bool(_tun_flags(d.host) & IFF_VNET_HDR) == fast, phase
            offloads = _offloads(d.host)
            if fast:
                assert offloads.get("tx-tcp-segmentation", False) == tso, offloads
            else:
                assert not any(offloads.values()), offloads
            assert (d.status()["fastpath"] is not None) == fast
        ra = p.a.ping(INNER_B, count=2, interval=0.1, src=INNER_A)
        assert ra.received == 2, ra.output
        tcp_echo(p.a, p.b, INNER_B, INNER_A, port=7000 + phase)
        tcp_echo(p.b, p.a, INNER_A, INNER_B, port=7100 + phase)
        router = daemons[0].status()["router"]
        assert (router["delivered"] > 0) != fast, router  # plain: the Python router carried it
        for d in daemons:
            assert d.proc.stop() == 0, d.proc.output()
