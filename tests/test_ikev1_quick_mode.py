"""Quick Mode between two in-memory sessions: ESP / AH / AH+ESP, tunnel and transport, PFS, NAT-T
encapsulation, RESPONDER-LIFETIME, failures, selectors; and the negotiated SAParams run through
ipsecd.datapath (one side protects, the other unprotects)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from ikev1_session_util import A_NET, B_NET, ESP, GCM, lookup_b, pair, policy_a

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.sa import Direction, EncAlg, IntegAlg, Mode, Protocol, SAParams
from ipsecd.ike.constants import IdType, NotifyType
from ipsecd.ikev1.events import ChildSaEstablished, IkeSaEstablished, NegotiationFailed
from ipsecd.ikev1.payloads import IdPayload
from ipsecd.ikev1.selectors import TrafficSelector, datapath_selectors, selectors_of_filter
from ipsecd.log.events import FailurePoint
from ipsecd.policy.model import EspEncryption, Integrity, QmSecMethod

AH = QmSecMethod(ah=Integrity.SHA256)
AH_ESP = QmSecMethod(ah=Integrity.SHA1, esp_enc=EspEncryption.AES256, esp_auth=Integrity.SHA256)
DES3 = QmSecMethod(esp_enc=EspEncryption.DES3, esp_auth=Integrity.MD5)
GMAC = QmSecMethod(esp_enc=EspEncryption.AESGMAC128)


def _children(w: object) -> tuple[ChildSaEstablished, ChildSaEstablished]:
    ca = w.of("a", ChildSaEstablished)  # type: ignore[attr-defined]
    cb = w.of("b", ChildSaEstablished)  # type: ignore[attr-defined]
    assert len(ca) == 1 and len(cb) == 1, (ca, cb)
    assert isinstance(ca[0], ChildSaEstablished) and isinstance(cb[0], ChildSaEstablished)
    return ca[0], cb[0]


def _same_keys(x: SAParams, y: SAParams) -> None:
    assert (x.spi, x.protocol, x.mode, x.enc_alg, x.integ_alg) == (
        y.spi,
        y.protocol,
        y.mode,
        y.enc_alg,
        y.integ_alg,
    )
    assert x.enc_key == y.enc_key and x.integ_key == y.integ_key


def _packet(src: str, dst: str, n: int) -> bytes:
    payload = bytes([n]) * 40
    hdr = bytearray(20)
    hdr[0], hdr[8], hdr[9] = 0x45, 64, 17
    hdr[2:4] = (28 + len(payload)).to_bytes(2, "big")
    hdr[12:16] = ipaddress.IPv4Address(src).packed
    hdr[16:20] = ipaddress.IPv4Address(dst).packed
    s = sum(int.from_bytes(hdr[i : i + 2], "big") for i in range(0, 20, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    hdr[10:12] = (~s & 0xFFFF).to_bytes(2, "big")
    udp = (
        (1000).to_bytes(2, "big")
        + (2000).to_bytes(2, "big")
        + (8 + len(payload)).to_bytes(2, "big")
        + bytes(2)
    )
    return bytes(hdr) + udp + payload


def _traffic(out: SAParams, inb: SAParams, src: str, dst: str) -> None:
    """``out`` protects, ``inb`` (the peer's view of the same SA) unprotects."""
    tx = make_transform(out, Direction.OUTBOUND, "python")
    rx = make_transform(inb, Direction.INBOUND, "python")
    for n in range(3):
        p = _packet(src, dst, n)
        wire = tx.protect([p])[0]
        assert wire is not None
        assert rx.unprotect([wire])[0] == p


@pytest.mark.parametrize(
    ("method", "tunnel", "pfs"),
    [
        (ESP, True, None),
        (ESP, False, None),
        (GCM, True, 14),
        (DES3, True, None),
        (GMAC, False, None),
        (AH, False, None),
        (AH_ESP, True, 14),
        (AH_ESP, False, None),
    ],
    ids=lambda v: str(v),
)
def test_quick_mode_variants_agree_and_carry_traffic(
    method: QmSecMethod, tunnel: bool, pfs: int | None
) -> None:
    w = pair(b_qm_lookup=lookup_b((method,), pfs))
    # The responder's lookup says tunnel; transport is tested by giving both sides transport.
    if not tunnel:
        lb = lookup_b((method,), pfs)
        w.b.cfg = replace(w.b.cfg, qm_lookup=lambda lo, re: replace(lb(lo, re), tunnel=False))  # type: ignore[type-var]
    w.a.initiate(policy_a((GCM, method) if method is not GCM else (method,), pfs, tunnel), 0.0)
    w.pump()
    a, b = _children(w)
    assert a.method == method and a.pfs_group == pfs and b.pfs_group == pfs
    _same_keys(a.outbound, b.inbound)
    _same_keys(a.inbound, b.outbound)
    assert a.outbound.mode == (Mode.TUNNEL if tunnel else Mode.TRANSPORT)
    assert a.outbound.encap is None  # no NAT between the two
    want_proto = Protocol.AH if method is AH else Protocol.ESP
    assert a.outbound.protocol == want_proto
    if method is AH_ESP:
        assert a.ah_outbound is not None and b.ah_inbound is not None
        _same_keys(a.ah_outbound, b.ah_inbound)
        assert a.ah_outbound.integ_alg == IntegAlg.AUTH_HMAC_SHA1_96
    else:
        assert a.ah_outbound is None
    _traffic(a.outbound, b.inbound, "10.1.0.5", "10.2.0.7")
    _traffic(b.outbound, a.inbound, "10.2.0.7", "10.1.0.5")
    assert a.outbound.lifetimes.hard_seconds == method.lifetime_s
    assert a.outbound.lifetimes.hard_bytes == method.lifetime_kb * 1024
    if a.outbound.enc_alg in (EncAlg.ENCR_AES_CBC, EncAlg.ENCR_3DES):
        assert len(a.outbound.iv_key) == 16 and a.outbound.iv_key != b.inbound.iv_key


def test_nat_traversal_encapsulates_and_floats_to_4500() -> None:
    w = pair(a_force_nat=True)
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    a, b = _children(w)
    ike = w.of("a", IkeSaEstablished)[0]
    assert isinstance(ike, IkeSaEstablished) and ike.natt and ike.nat_local
    ike_b = w.of("b", IkeSaEstablished)[0]
    assert isinstance(ike_b, IkeSaEstablished) and ike_b.nat_peer and not ike_b.nat_local
    assert a.outbound.encap is not None and (a.outbound.encap.sport, a.outbound.encap.dport) == (4500, 4500)
    assert b.inbound.encap == a.outbound.encap
    # Messages 1-4 on port 500 without the marker; from message 5 on, port 4500 with it.
    ports = [(who, lport, data[:4] == bytes(4)) for who, data, lport in w.log]
    assert ports[:4] == [("a", 500, False), ("b", 500, False), ("a", 500, False), ("b", 500, False)]
    assert all(lport == 4500 and marker for _, lport, marker in ports[4:])
    _traffic(a.outbound, b.inbound, "10.1.0.5", "10.2.0.7")
    # We are "behind the NAT": keep-alives every 20 s (RFC 3948 section 2.3), the peer sends none.
    w.log.clear()
    w.advance(61.0)
    keepalives = [(who, lport) for who, data, lport in w.log if data == b"\xff"]
    assert keepalives == [("a", 4500)] * 3


def test_responder_lifetime_shortens_the_initiator_sa() -> None:
    short = replace(ESP, lifetime_s=600, lifetime_kb=5000)
    w = pair(b_qm_lookup=lookup_b((short,)))
    w.a.initiate(policy_a((ESP,)), 0.0)
    w.pump()
    a, b = _children(w)
    assert (a.life_seconds, a.life_kilobytes) == (600, 5000) == (b.life_seconds, b.life_kilobytes)
    assert a.outbound.lifetimes.hard_seconds == 600.0


def test_no_proposal_chosen_fails_both_sides_with_the_notify() -> None:
    w = pair(b_qm_lookup=lookup_b((AH,)))
    w.a.initiate(policy_a((ESP,)), 0.0)
    w.pump()
    fa = [e for e in w.of("a", NegotiationFailed) if isinstance(e, NegotiationFailed)]
    fb = [e for e in w.of("b", NegotiationFailed) if isinstance(e, NegotiationFailed)]
    assert [(e.failure_point, e.notify) for e in fa] == [(FailurePoint.PEER, NotifyType.NO_PROPOSAL_CHOSEN)]
    assert [(e.failure_point, e.notify) for e in fb] == [(FailurePoint.ME, NotifyType.NO_PROPOSAL_CHOSEN)]
    assert not w.of("a", ChildSaEstablished) and not w.of("b", ChildSaEstablished)
    assert w.a.counters.negotiation_failures == 1 and w.b.counters.negotiation_failures == 1


def test_selectors_outside_the_responder_policy_are_refused() -> None:
    w = pair()
    w.a.initiate(replace(policy_a(), remote_ts=TrafficSelector.of("10.9.0.0/16")), 0.0)
    w.pump()
    fb = w.of("b", NegotiationFailed)
    assert len(fb) == 1 and isinstance(fb[0], NegotiationFailed)
    assert fb[0].notify == NotifyType.INVALID_ID_INFORMATION
    assert not w.b.children


def test_pfs_required_by_responder_but_not_offered() -> None:
    w = pair(b_qm_lookup=lookup_b((ESP,), pfs=14))
    w.a.initiate(policy_a((ESP,), None), 0.0)
    w.pump()
    assert not w.b.children and w.of("b", NegotiationFailed)


def test_traffic_selector_id_round_trip() -> None:
    cases = [
        TrafficSelector.of("10.1.2.3/32", 17, 500),
        TrafficSelector.of("10.0.0.0/8"),
        TrafficSelector(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.100"), 6, 0),
        TrafficSelector.of("2001:db8::/48"),
        TrafficSelector.of("2001:db8::1/128", 58),
    ]
    for ts in cases:
        p = ts.to_id()
        assert TrafficSelector.from_id(p) == ts
    assert cases[0].to_id().id_type == IdType.ID_IPV4_ADDR
    assert cases[2].to_id().id_type == IdType.ID_IPV4_ADDR_RANGE
    assert A_NET.contains(TrafficSelector.of("10.1.0.128/25")) and not A_NET.contains(B_NET)
    with pytest.raises(ValueError):
        TrafficSelector.from_id(IdPayload(IdType.ID_FQDN, 0, 0, b"example.org"))
    with pytest.raises(ValueError):  # a non-contiguous mask
        TrafficSelector.from_id(
            IdPayload(IdType.ID_IPV4_ADDR_SUBNET, 0, 0, bytes([10, 0, 0, 0, 255, 0, 255, 0]))
        )
    sel = datapath_selectors(cases[2], B_NET)
    assert len(sel) == len(cases[2].networks()) and all(s.protocol == 6 for s in sel)


def test_selectors_of_a_specific_filter() -> None:
    from ipsecd.policy.model import Action, AddressSpec, AddrKind, Filter
    from ipsecd.policy.order import AddressRange, Direction, SpecificFilter

    flt = Filter(AddressSpec(AddrKind.ME), AddressSpec(AddrKind.ANY))
    sf = SpecificFilter(
        Direction.OUTBOUND,
        AddressRange.of_network(ipaddress.IPv4Network("10.1.0.0/24")),
        AddressRange.of_address(ipaddress.IPv4Address("10.2.0.9")),
        6,
        0,
        443,
        Action.NEGOTIATE,
        "r",
        "fl",
        "fa",
        1,
        0,
        flt,
    )
    local, remote = selectors_of_filter(sf)
    assert local == TrafficSelector.of("10.1.0.0/24", 6, 0)
    assert remote == TrafficSelector.of("10.2.0.9/32", 6, 443)


def test_a_real_nat_in_front_of_the_initiator_is_detected() -> None:
    """RFC 3947 section 3.2: b sees a's packets from 203.0.113.9 with other ports; both sides see the
    NAT on a's side, a floats to 4500 and b answers the translated port."""
    pub = ipaddress.IPv4Address("203.0.113.9")
    w = pair(b_peer=(pub, 500))
    w.a_nat = {500: (pub, 40500), 4500: (pub, 44500)}
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    a, b = _children(w)
    ia, ib = w.of("a", IkeSaEstablished)[0], w.of("b", IkeSaEstablished)[0]
    assert isinstance(ia, IkeSaEstablished) and isinstance(ib, IkeSaEstablished)
    assert (ia.nat_local, ia.nat_peer, ib.nat_local, ib.nat_peer) == (True, False, False, True)
    assert b.outbound.encap is not None and b.outbound.encap.dport == 44500
    assert b.outbound.tunnel is not None and b.outbound.tunnel.dst == pub
    assert a.outbound.encap is not None and a.outbound.encap.sport == 4500


def test_qmpfs_uses_the_main_mode_group_and_policy_from_a_filter_action() -> None:
    from ipsecd.ikev1.quick_mode import PFS_MAIN_MODE_GROUP, QmPolicy
    from ipsecd.policy.model import Action, AddressSpec, AddrKind, Filter, FilterAction
    from ipsecd.policy.order import AddressRange, Direction, SpecificFilter

    sf = SpecificFilter(
        Direction.OUTBOUND,
        AddressRange.of_network(ipaddress.IPv4Network("10.1.0.0/24")),
        AddressRange.of_network(ipaddress.IPv4Network("10.2.0.0/24")),
        0,
        0,
        0,
        Action.NEGOTIATE,
        "r",
        "fl",
        "fa",
        1,
        0,
        Filter(AddressSpec(AddrKind.ME), AddressSpec(AddrKind.ANY)),
        tunnel=ipaddress.IPv4Address("198.51.100.2"),
    )
    fa = FilterAction("fa", Action.NEGOTIATE, qmsecmethods=(GCM, ESP), qmpfs=True)
    pol = QmPolicy.from_filter_action(fa, sf)
    assert pol.methods == (GCM, ESP) and pol.pfs_group == PFS_MAIN_MODE_GROUP and pol.tunnel
    assert (pol.local_ts, pol.remote_ts) == (A_NET, B_NET)
    w = pair(b_qm_lookup=lookup_b((ESP,), PFS_MAIN_MODE_GROUP))
    w.a.initiate(pol, 0.0)
    w.pump()
    a, b = _children(w)
    assert a.pfs_group == 14 == b.pfs_group  # the Main Mode group of ikev1_session_util.MM
    assert a.method == ESP  # GCM first, but the responder only takes ESP


def test_quick_mode_without_id_payloads_protects_the_phase1_addresses() -> None:
    """RFC 2409 section 5.5: without IDci/IDcr the selectors are the ISAKMP peers' addresses."""
    from ipsecd.ikev1.quick_mode import QmPolicy

    seen: list[tuple[TrafficSelector, TrafficSelector]] = []

    def lookup(local: TrafficSelector, remote: TrafficSelector) -> QmPolicy | None:
        seen.append((local, remote))
        return QmPolicy((ESP,), None, False)

    w = pair(b_qm_lookup=lookup)
    w.a.initiate(QmPolicy((ESP,), None, False), 0.0)
    w.pump()
    a, b = _children(w)
    assert seen == [(TrafficSelector.of("198.51.100.2/32"), TrafficSelector.of("192.0.2.1/32"))]
    assert (a.local_ts, a.remote_ts) == (
        TrafficSelector.of("192.0.2.1/32"),
        TrafficSelector.of("198.51.100.2/32"),
    )
    assert a.outbound.mode == Mode.TRANSPORT and a.outbound.tunnel is None
    _traffic(a.outbound, b.inbound, "192.0.2.1", "198.51.100.2")


def test_ipv6_outer_addresses_with_nat_traversal() -> None:
    a6, b6 = ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8::2")
    w = pair(a_local=(a6, 500), a_peer=(b6, 500), b_local=(b6, 500), b_peer=(a6, 500), a_force_nat=True)
    w.b.cfg = replace(w.b.cfg, qm_lookup=lookup_b((GCM,)))
    w.a.initiate(policy_a((GCM,)), 0.0)
    w.pump()
    a, b = _children(w)
    assert a.outbound.tunnel is not None and (a.outbound.tunnel.src, a.outbound.tunnel.dst) == (a6, b6)
    assert a.outbound.encap is not None and b.inbound.encap is not None
    assert w.b.ike_sas[0].peer_id == IdPayload.for_address(a6)
    _traffic(a.outbound, b.inbound, "10.1.0.5", "10.2.0.7")
    _traffic(b.outbound, a.inbound, "10.2.0.7", "10.1.0.5")


def test_responder_lookup_from_ordered_filters() -> None:
    from ipsecd.ikev1.qm_policy import responder_lookup
    from ipsecd.ikev1.quick_mode import PFS_MAIN_MODE_GROUP
    from ipsecd.policy.model import Action, AddressSpec, AddrKind, Filter, FilterAction
    from ipsecd.policy.order import AddressRange, Direction, SpecificFilter

    generic = Filter(AddressSpec(AddrKind.ME), AddressSpec(AddrKind.ANY))

    def sf(
        src: str, dst: str, action: Action, fa: str, proto: int = 0, direction: Direction = Direction.OUTBOUND
    ) -> SpecificFilter:
        return SpecificFilter(
            direction,
            AddressRange.of_network(ipaddress.ip_network(src)),
            AddressRange.of_network(ipaddress.ip_network(dst)),
            proto, 0, 0, action, "r", "fl", fa, 1, 0, generic,
        )  # fmt: skip

    filters = [
        sf("10.2.0.0/24", "10.1.0.9/32", Action.BLOCK, "block"),
        sf("10.2.0.0/24", "10.1.0.0/24", Action.NEGOTIATE, "strong", proto=6),
        sf("10.1.0.0/24", "10.2.0.0/24", Action.NEGOTIATE, "strong", direction=Direction.INBOUND),
        sf("10.2.0.0/16", "10.1.0.0/16", Action.NEGOTIATE, "pfs"),
    ]
    actions = {
        "strong": FilterAction("strong", Action.NEGOTIATE, qmsecmethods=(GCM,)),
        "pfs": FilterAction("pfs", Action.NEGOTIATE, qmsecmethods=(ESP,), qmpfs=True),
    }
    lookup = responder_lookup(filters, actions)
    local, remote = TrafficSelector.of("10.2.0.0/24"), TrafficSelector.of("10.1.0.0/24")
    pol = lookup(local, remote)  # any protocol: not inside the TCP-only filter, so the /16 one
    assert pol is not None and pol.methods == (ESP,) and pol.pfs_group == PFS_MAIN_MODE_GROUP
    assert (pol.local_ts, pol.remote_ts) == (local, remote) and not pol.tunnel
    tcp = lookup(TrafficSelector.of("10.2.0.0/24", 6), TrafficSelector.of("10.1.0.0/24", 6))
    assert tcp is not None and tcp.methods == (GCM,) and tcp.pfs_group is None
    assert lookup(TrafficSelector.of("10.2.0.0/24"), TrafficSelector.of("10.1.0.9/32")) is None  # blocked
    assert lookup(TrafficSelector.of("10.3.0.0/24"), remote) is None  # no filter
    # End to end: the responder session decides with it.
    w = pair(b_qm_lookup=lookup)
    w.a.initiate(policy_a((GCM, ESP), PFS_MAIN_MODE_GROUP, tunnel=False), 0.0)  # the rule has no tunnel
    w.pump()
    a, b = _children(w)
    assert a.method == ESP and b.pfs_group == 14


def test_transport_ids_behind_a_nat_are_moved_to_the_translated_address() -> None:
    """RFC 3947 section 5.2: in transport mode over a NAT the initiator's IDs and NAT-OA carry its
    private address; the responder looks up, and protects, the address the NAT gave it (what its
    packets carry after decapsulation)."""
    from ipsecd.ikev1.quick_mode import QmPolicy

    pub = ipaddress.IPv4Address("203.0.113.9")
    seen: list[tuple[TrafficSelector, TrafficSelector]] = []

    def lookup(local: TrafficSelector, remote: TrafficSelector) -> QmPolicy | None:
        seen.append((local, remote))
        return QmPolicy((ESP,), None, False) if remote == TrafficSelector.of(f"{pub}/32") else None

    w = pair(b_peer=(pub, 500), b_qm_lookup=lookup)
    w.a_nat = {500: (pub, 40500), 4500: (pub, 44500)}
    mine, theirs = TrafficSelector.of("192.0.2.1/32"), TrafficSelector.of("198.51.100.2/32")
    w.a.initiate(QmPolicy((ESP,), None, False, mine, theirs), 0.0)
    w.pump()
    a, b = _children(w)
    assert seen == [(theirs, TrafficSelector.of(f"{pub}/32"))]
    assert (a.local_ts, a.remote_ts) == (mine, theirs)
    assert (b.local_ts, b.remote_ts) == (theirs, TrafficSelector.of(f"{pub}/32"))
    assert a.outbound.mode == Mode.TRANSPORT and a.outbound.encap is not None
    assert b.outbound.encap is not None and b.outbound.encap.dport == 44500
    assert b.inbound.selectors == datapath_selectors(TrafficSelector.of(f"{pub}/32"), theirs)


def test_transport_ids_without_a_nat_are_not_moved() -> None:
    from ipsecd.ikev1.quick_mode import QmPolicy

    seen: list[tuple[TrafficSelector, TrafficSelector]] = []

    def lookup(local: TrafficSelector, remote: TrafficSelector) -> QmPolicy | None:
        seen.append((local, remote))
        return QmPolicy((ESP,), None, False)

    w = pair(b_qm_lookup=lookup)
    mine, theirs = TrafficSelector.of("192.0.2.1/32"), TrafficSelector.of("198.51.100.2/32")
    w.a.initiate(QmPolicy((ESP,), None, False, mine, theirs), 0.0)
    w.pump()
    a, b = _children(w)
    assert seen == [(theirs, mine)] and a.outbound.encap is None and b.remote_ts == mine
