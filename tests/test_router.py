"""The packet router without a kernel: classification, acquire events, queues, soft fallback,
SA bundles and the inbound policy check (ipsecd/daemon/router.py)."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

from ipsecd.daemon.router import Acquire, Router, SoftAssociation
from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.ipheader import ipv4_header_checksum
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, Mode, Protocol, SAParams, Selector
from ipsecd.datapath.sadb import ManualState, PolicyAction, PolicyDir, SADatabase, SecurityPolicy, Template
from ipsecd.io.nft import CAPTURE, DROP, PASS, SOFT_DROP, NftMatch, NftRule
from ipsecd.policy.classifier import compile_store
from ipsecd.policy.host import StaticHost
from ipsecd.policy.store import parse_store_texts

A = ipaddress.IPv4Address("192.0.2.1")
B = ipaddress.IPv4Address("192.0.2.2")
C = ipaddress.IPv4Address("192.0.2.3")
HOST = StaticHost(addresses=[A])
KEY = bytes(range(20))


def store(soft: bool = False, inpass: bool = False) -> str:
    return f"""
[daemon]
assigned_policy = "p"
[[filterlist]]
name = "to b"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "192.0.2.2"
[[filterlist]]
name = "to c"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "192.0.2.3"
[[filterlist]]
name = "tcp 22"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "any"
  protocol = "tcp"
  dstport = 22
[[filteraction]]
name = "sec"
action = "negotiate"
qmsecmethods = ["ESP[AESGCM128]"]
soft = {str(soft).lower()}
inpass = {str(inpass).lower()}
[[filteraction]]
name = "blk"
action = "block"
[[policy]]
name = "p"
  [[policy.rule]]
  name = "secure b"
  filterlist = "to b"
  filteraction = "sec"
  auth = [{{ method = "psk", psk = "x" }}]
  [[policy.rule]]
  name = "secure c"
  filterlist = "to c"
  filteraction = "sec"
  auth = [{{ method = "psk", psk = "x" }}]
  [[policy.rule]]
  name = "no ssh"
  filterlist = "tcp 22"
  filteraction = "blk"
"""


def ipv4(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, proto: int, payload: bytes) -> bytes:
    total = 20 + len(payload)
    head = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0, src.packed, dst.packed))
    ipv4_header_checksum(head)
    return bytes(head) + payload


def icmp(src: ipaddress.IPv4Address = A, dst: ipaddress.IPv4Address = B, n: int = 0) -> bytes:
    return ipv4(src, dst, 1, struct.pack("!BBHHH", 8, 0, 0, 1, n) + b"x" * 32)


def tcp(dport: int, src: ipaddress.IPv4Address = A, dst: ipaddress.IPv4Address = B) -> bytes:
    return ipv4(src, dst, 6, struct.pack("!HHIIBBHHH", 40000, dport, 0, 0, 0x50, 2, 1000, 0, 0))


def make_router(soft: bool = False, **kw: float) -> Router:
    st = parse_store_texts([("s.toml", store(soft=soft))])
    compiled = compile_store(st, HOST)
    sadb = SADatabase(lambda: [A], backend="python")
    router = Router(compiled.classifier, sadb, **kw)  # type: ignore[arg-type]
    router.soft_actions = {name: fa.soft for name, fa in st.filteractions.items()}
    return router


def esp(spi: int, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address) -> ManualState:
    params = SAParams(
        spi=spi, protocol=Protocol.ESP, mode=Mode.TRANSPORT, enc_alg=EncAlg.ENCR_AES_GCM_16, enc_key=KEY
    )
    return ManualState(src, dst, params)


def test_negotiate_without_sa_queues_and_raises_one_acquire() -> None:
    r = make_router(queue_per_flow=4)
    out = r.outbound([icmp(n=i) for i in range(10)], now=100.0)
    assert len(out) == 0
    assert (r.stats.queued, r.stats.queue_dropped, r.stats.acquires) == (4, 6, 1)
    events = r.events.drain()
    assert len(events) == 1 and isinstance(events[0], Acquire)
    acq = events[0]
    assert (acq.src, acq.dst, acq.protocol, acq.soft) == (A, B, 1, False)
    assert acq.filter is not None and acq.filter.rule == "secure b" and acq.when == 100.0
    # A retry is raised while the negotiation is pending, then the queue expires.
    r.tick(100.0 + r.acquire_retry)
    assert [type(e) for e in r.events.drain()] == [Acquire]
    r.tick(100.0 + r.acquire_timeout)
    assert r.stats.queue_dropped == 10 and not r.pending


def test_sa_installed_later_flushes_the_queue_protected() -> None:
    r = make_router()
    r.outbound([icmp(n=1), icmp(n=2)], now=0.0)
    r.sadb.add_state(esp(0x1000, A, B))
    out = r.tick(1.0)
    assert len(out.raw4) == 2 and all(p[9] == 50 for p, _ in out.raw4)
    assert {dst for _, dst in out.raw4} == {str(B)}
    assert r.stats.protected == 2 and not r.pending
    # Later packets go straight out protected; ESP sequence numbers continue.
    out = r.outbound([icmp(n=3)], now=2.0)
    assert struct.unpack_from("!I", out.raw4[0][0], 24)[0] == 3


def test_soft_falls_back_to_clear_and_records_a_soft_association() -> None:
    r = make_router(soft=True, soft_timeout=3.0)
    r.outbound([icmp(dst=C)], now=10.0)
    assert r.tick(12.0).raw4 == []
    out = r.tick(13.0)
    assert out.raw4 == [(icmp(dst=C), str(C))]
    kinds = [type(e) for e in r.events.drain()]
    assert kinds == [Acquire, SoftAssociation]
    assert r.stats.soft_fallbacks == 1
    out = r.outbound([icmp(dst=C, n=5)], now=14.0)  # the association lets the flow go in clear
    assert len(out.raw4) == 1 and r.stats.sent_clear == 2


def test_block_filter_drops_and_counts_port_granular() -> None:
    r = make_router()
    r.sadb.add_state(esp(0x1000, A, B))
    other = ipaddress.IPv4Address("198.51.100.9")
    out = r.outbound([tcp(22, dst=other), tcp(80, dst=other), tcp(22), tcp(80)], now=0.0)
    assert r.stats.blocked == 1  # TCP 22 to anyone else
    # To b, the /32 filter outweighs the port filter (docs/policy.md): both protected.
    assert [p[9] for p, _ in out.raw4] == [6, 50, 50]


def test_unclassified_traffic_is_sent_as_is_and_own_ipsec_counts_as_a_loop() -> None:
    r = make_router()
    other = ipaddress.IPv4Address("198.51.100.9")
    out = r.outbound([icmp(dst=other), ipv4(A, other, 50, b"\0" * 16)], now=0.0)
    assert len(out.raw4) == 2 and r.stats.looped == 1 and r.stats.sent_clear == 2


def test_inbound_decapsulates_and_checks_the_policy() -> None:
    r = make_router()
    r.sadb.add_state(esp(0x2000, B, A))
    peer = make_transform(esp(0x2000, B, A).params, Direction.OUTBOUND, "python")
    wire = peer.protect([icmp(B, A, n=i) for i in range(3)])
    delivered = r.inbound([w for w in wire if w is not None], now=0.0)
    assert delivered == [icmp(B, A, n=i) for i in range(3)]
    # An "in" policy that wants AH: ESP alone does not satisfy it (RFC 4301 section 5.2).
    sel = Selector(ipaddress.ip_network("192.0.2.2/32"), ipaddress.ip_network("192.0.2.1/32"))
    r.sadb.add_policy(
        SecurityPolicy(sel, PolicyDir.IN, PolicyAction.PROTECT, (Template(Protocol.AH, Mode.TRANSPORT),))
    )
    wire = peer.protect([icmp(B, A, n=9)])
    assert r.inbound([wire[0] or b""], now=0.0) == []
    assert r.stats.policy_dropped == 1
    # An unknown SPI is a Bad SPI Packet.
    wire = make_transform(esp(0x7777, B, A).params, Direction.OUTBOUND, "python").protect([icmp(B, A)])
    assert r.inbound([wire[0] or b""], now=0.0) == [] and r.stats.bad_spi == 1


def test_udp_encapsulated_esp_and_ike_on_the_natt_port() -> None:
    r = make_router()
    st = esp(0x2000, B, A)
    from ipsecd.datapath.sa import UdpEncap

    params = SAParams(
        spi=0x2000,
        protocol=Protocol.ESP,
        mode=Mode.TRANSPORT,
        enc_alg=EncAlg.ENCR_AES_GCM_16,
        enc_key=KEY,
        encap=UdpEncap(4500, 4500),
    )
    r.sadb.add_state(ManualState(st.src, st.dst, params))
    wire = make_transform(params, Direction.OUTBOUND, "python").protect([icmp(B, A)])[0]
    assert wire is not None
    payload = wire[28:]  # after the outer IPv4 and UDP headers
    datagrams = [
        (payload, (str(B), 4500), str(A)),
        (b"\0\0\0\0ike", (str(B), 4500), str(A)),
        (b"\xff", (str(B), 4500), str(A)),
    ]
    pkts = r.udp_to_packets(datagrams)
    [got] = r.inbound(pkts, now=0.0)
    # Transport mode over UDP: the socket does not give the outer header's ID (nor its TOS).
    want = icmp(B, A)
    assert got[:4] + got[6:10] + got[12:] == want[:4] + want[6:10] + want[12:]
    assert (r.stats.ike_packets, r.stats.keepalives) == (1, 1) and len(r.ike_inbox) == 1


def test_nft_rules_follow_the_policy_order() -> None:
    from ipsecd.daemon.engine_config import Loaded, nft_config
    from ipsecd.io.nft import build_ruleset

    st = parse_store_texts([("s.toml", store(soft=True))])
    compiled = compile_store(st, HOST)
    sel = Selector(
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("10.9.0.0/16"), 6, (0, 65535), (443, 443)
    )
    pol = SecurityPolicy(sel, PolicyDir.OUT, PolicyAction.BYPASS)
    cfg = nft_config("tun9", Loaded(st, compiled, [], [pol]))
    verdicts = [r.verdict for r in cfg.outbound]
    assert verdicts == [PASS, CAPTURE, CAPTURE, CAPTURE]  # manual policy first, then by weight
    assert [r.verdict for r in cfg.inbound] == [SOFT_DROP, SOFT_DROP, DROP]
    text = build_ruleset(cfg)
    assert "ip saddr 10.0.0.0/8 ip daddr 10.9.0.0/16 meta l4proto 6 th dport 443 counter accept" in text
    assert "ip saddr 192.0.2.1 meta l4proto 6 th dport 22 counter meta mark set 0x4d5c0002 accept" in text
    assert "ip saddr @soft4 ip saddr 192.0.2.2 ip daddr 192.0.2.1 counter accept" in text
    assert 'meta mark 0x4d5c0002 oifname != "tun9" counter drop' in text
    assert text.index("ip daddr 192.0.2.2 counter meta mark") < text.index("th dport 22")  # by weight


def test_nft_match_ranges() -> None:
    m = NftMatch(4, (int(A), int(C)), (0, 2**32 - 1), 17, (1000, 2000), (53, 53))
    assert m.expr() == "ip saddr 192.0.2.1-192.0.2.3 meta l4proto 17 th sport 1000-2000 th dport 53"
    assert NftMatch(6, (0, 2**128 - 1), (0, 2**128 - 1)).expr() == "meta nfproto ipv6"
    assert NftRule(m, DROP).verdict == DROP


def test_nft_inbound_verdicts_follow_the_filter_action() -> None:
    from ipsecd.daemon.engine_config import Loaded, nft_config
    from ipsecd.io.nft import ACCEPT

    for inpass, soft, want in ((True, False, ACCEPT), (False, True, SOFT_DROP), (False, False, DROP)):
        st = parse_store_texts([("s.toml", store(soft=soft, inpass=inpass))])
        cfg = nft_config("tun9", Loaded(st, compile_store(st, HOST), [], []))
        # negotiate filters (b, c) take the action's verdict; the block filter always drops.
        assert [r.verdict for r in cfg.inbound] == [want, want, DROP]


def test_negotiated_ah_esp_bundle_shares_a_reqid_and_goes_out_as_ah_over_esp() -> None:
    """An outbound ESP SA and AH SA with one reqid (the IKE daemon's AH+ESP bundle) protect a
    negotiate filter's traffic together: ESP inside, AH outside (RFC 4301 section 4.5); an SA of
    another reqid is left alone."""
    r = make_router()
    ah = SAParams(
        spi=0x2001,
        protocol=Protocol.AH,
        mode=Mode.TRANSPORT,
        integ_alg=IntegAlg.AUTH_HMAC_SHA1_96,
        integ_key=KEY,
    )
    e = esp(0x2000, A, B)
    r.sadb.add_state(ManualState(A, B, e.params, reqid=7))
    r.sadb.add_state(ManualState(A, B, ah, reqid=7))
    r.sadb.add_state(ManualState(A, B, dataclasses.replace(ah, spi=0x3001), reqid=8))
    out = r.outbound([icmp(n=1)], now=0.0)
    [(pkt, _)] = out.raw4
    assert pkt[9] == 51 and pkt[20] == 50  # AH, its Next Header ESP
    assert struct.unpack_from("!I", pkt, 24)[0] == 0x2001
    # The peer's side: AH then ESP removed, the ICMP delivered.
    peer = SADatabase(lambda: [B], backend="python")
    peer.add_state(ManualState(A, B, e.params, reqid=7))
    peer.add_state(ManualState(A, B, ah, reqid=7))
    rb = Router(make_router().classifier, peer)
    assert rb.inbound([pkt], now=0.0) == [icmp(n=1)]
