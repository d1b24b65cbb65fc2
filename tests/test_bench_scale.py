"""The helpers tests/fastpath_peer.py gained for bench/scale.py (no root): the K-tunnel sets of both
ends mirror each other, the generator's packets and its round-robin schedule."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv4Network

import pytest

from ipsecd.datapath.sa import Mode, Protocol, UdpEncap
from tests.fastpath_peer import (
    GEN_PORTS,
    GEN_SRC,
    MAX_TUNNELS,
    _checksum,
    gen_packets,
    gen_schedule,
    main,
    tunnel_host,
    tunnel_set,
)


def test_tunnel_sets_mirror_each_other() -> None:
    a, b = tunnel_set(300, "a"), tunnel_set(300, "b")
    assert len(a) == len(b) == 300
    for k, (ta, tb) in enumerate(zip(a, b, strict=True)):
        # What a sends, b receives with the same SPI and key, and the other way round.
        assert ta.out_sa == tb.in_sa and ta.in_sa == tb.out_sa
        assert ta.out_sa.spi != ta.in_sa.spi and ta.out_sa.enc_key != ta.in_sa.enc_key
        assert ta.out_sa.tunnel is not None and tb.out_sa.tunnel is not None
        assert (str(ta.out_sa.tunnel.src), str(ta.out_sa.tunnel.dst)) == ("192.0.2.1", "192.0.2.2")
        assert (str(tb.out_sa.tunnel.src), str(tb.out_sa.tunnel.dst)) == ("192.0.2.2", "192.0.2.1")
        # a's filter (local -> remote) is b's (remote -> local): tunnel k protects b's host k.
        assert (ta.local, ta.remote) == (tb.remote, tb.local)
        assert ta.remote == IPv4Network(f"{tunnel_host(k)}/32")
        assert ta.local == IPv4Network("10.1.0.0/16")
    spis = [t.out_sa.spi for t in a] + [t.in_sa.spi for t in a]
    keys = [t.out_sa.enc_key for t in a] + [t.in_sa.enc_key for t in a]
    hosts = [t.remote for t in a]
    assert len(set(spis)) == len(spis) == 600
    assert len(set(keys)) == len(keys) == 600
    assert len(set(hosts)) == 300
    # What FastPath.add_sa requires: tunnel-mode ESP in UDP 4500.
    for t in a + b:
        for sa in (t.out_sa, t.in_sa):
            assert (sa.protocol, sa.mode, sa.encap) == (Protocol.ESP, Mode.TUNNEL, UdpEncap(4500, 4500))


def test_tunnel_set_is_a_prefix_of_a_bigger_one() -> None:
    # K=1 and K=1000 runs of bench/scale.py use the same first tunnel.
    assert tunnel_set(5, "a") == tunnel_set(1000, "a")[:5]
    assert tunnel_host(0) == IPv4Address("10.2.0.1")
    assert tunnel_host(255) == IPv4Address("10.2.1.0")
    assert tunnel_host(MAX_TUNNELS - 1) in IPv4Network("10.2.0.0/16")


@pytest.mark.parametrize("bad", [0, -1, MAX_TUNNELS + 1])
def test_tunnel_set_rejects_bad_counts(bad: int) -> None:
    with pytest.raises(ValueError):
        tunnel_set(bad, "a")


def test_tunnel_set_rejects_bad_side() -> None:
    with pytest.raises(ValueError):
        tunnel_set(1, "c")


def test_gen_packets_are_valid_ipv4_udp_to_each_host() -> None:
    pkts = gen_packets(300, 1388)
    assert len(pkts) == 300
    for k, p in enumerate(pkts):
        assert len(p) == 1388
        assert p[0] == 0x45 and int.from_bytes(p[2:4], "big") == 1388 and p[9] == 17
        assert _checksum(p[:20]) == 0  # RFC 1071: a correct header sums to all ones
        assert IPv4Address(p[12:16]) == IPv4Address(GEN_SRC)
        assert IPv4Address(p[16:20]) == tunnel_host(k)
        assert (int.from_bytes(p[20:22], "big"), int.from_bytes(p[22:24], "big")) == GEN_PORTS
        assert int.from_bytes(p[24:26], "big") == 1388 - 20
    with pytest.raises(ValueError):
        gen_packets(1, 20)


@pytest.mark.parametrize(("count", "burst"), [(1, 1), (1000, 1), (1000, 64), (7, 3), (10000, 1)])
def test_gen_schedule_covers_every_tunnel_evenly(count: int, burst: int) -> None:
    batches = gen_schedule(count, burst, 64)
    assert all(len(b) == 64 for b in batches)
    flat = [k for b in batches for k in b]
    per = Counter(flat)
    assert set(per) == set(range(count))
    assert len(set(per.values())) == 1  # every tunnel gets the same share of a cycle
    # Runs of `burst` packets per tunnel, tunnels in turn (wrapping around at the cycle's end).
    for i in range(0, len(flat), burst):
        assert flat[i : i + burst] == [(i // burst) % count] * burst


def test_peer_refuses_generator_options_it_cannot_honour() -> None:
    base = [
        "--tun",
        "x",
        "--tun-addr",
        "10.1.0.1",
        "--local-net",
        "10.1.0.0/16",
        "--remote-net",
        "10.2.0.0/16",
    ]
    base += ["--local", "192.0.2.1", "--peer", "192.0.2.2"]
    with pytest.raises(SystemExit):
        main([*base, "--mode", "python", "--tunnels", "3"])
    with pytest.raises(SystemExit):
        main([*base, "--tunnels", "3", "--generate", "1", "--gen-tunnels", "4"])
