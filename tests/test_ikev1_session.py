"""The per-peer IKEv1 session, two instances in memory with a deterministic clock: retransmission and
give-up, duplicates answered from the cache, qmpermm / mmpfs, Quick Mode and Main Mode rekeying
(new SA before the old one goes), DELETE, DPD, refused Aggressive Mode, unprotected notifies."""

from __future__ import annotations

from collections.abc import Callable

from ikev1_session_util import ESP, pair, policy_a

from ipsecd.ike.constants import ExchangeType, NotifyType
from ipsecd.ikev1 import codec, informational
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    DeleteReason,
    IkeSaDeleted,
    IkeSaEstablished,
    NegotiationFailed,
    NotifyReceived,
    PeerDead,
)
from ipsecd.ikev1.payloads import NotifyPayload
from ipsecd.log.events import FailurePoint, NegotiationMode


def _xchg(data: bytes) -> int:
    d = data[4:] if data[:4] == bytes(4) else data
    return codec.split(d)[0].exchange_type


def _drop_nth(who: str, kind: int, nth: set[int]) -> Callable[[str, bytes], bool]:
    seen = [0]

    def f(name: str, data: bytes) -> bool:
        if name != who or data == b"\xff" or _xchg(data) != kind:
            return False
        seen[0] += 1
        return seen[0] in nth

    return f


def test_lost_messages_are_retransmitted_with_backoff() -> None:
    w = pair()
    w.drop = _drop_nth("a", ExchangeType.IDENTITY_PROTECTION, {1, 2})  # message 1 lost twice
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    assert not w.of("a", ChildSaEstablished)
    w.advance(0.99)
    assert w.a.counters.retransmissions == 0
    w.advance(1.0)  # first retransmission after 1 s (lost), the next after 2 s more
    assert w.a.counters.retransmissions == 1 and not w.of("a", IkeSaEstablished)
    w.advance(3.0)
    assert w.a.counters.retransmissions == 2
    assert w.of("a", ChildSaEstablished) and w.of("b", ChildSaEstablished)


def test_gives_up_after_the_retransmission_limit() -> None:
    w = pair(retransmit_limit=3)
    w.drop = lambda who, d: who == "a"
    w.a.initiate(policy_a(), 0.0)
    w.advance(100.0)
    fails = w.of("a", NegotiationFailed)
    assert len(fails) == 1 and isinstance(fails[0], NegotiationFailed)
    assert fails[0].mode is NegotiationMode.MAIN_MODE and fails[0].reason == "negotiation timed out"
    assert w.a.counters.retransmissions == 2 and w.a.get_timer() is None


def test_lost_hash3_the_responder_retransmits_and_the_initiator_answers_from_its_cache() -> None:
    w = pair()
    w.drop = _drop_nth("a", ExchangeType.QUICK_MODE, {2})  # HASH(3) lost once
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    assert w.of("a", ChildSaEstablished) and not w.of("b", ChildSaEstablished)
    w.advance(1.5)
    assert w.b.counters.retransmissions == 1 and w.a.counters.duplicates == 1
    assert w.of("b", ChildSaEstablished) and len(w.of("a", ChildSaEstablished)) == 1


def test_lost_message_6_is_resent_from_the_cache() -> None:
    w = pair()
    w.drop = _drop_nth("b", ExchangeType.IDENTITY_PROTECTION, {3})
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    assert w.of("b", IkeSaEstablished) and not w.of("a", IkeSaEstablished)
    w.advance(1.0)
    assert w.b.counters.duplicates == 1 and w.of("a", ChildSaEstablished)
    assert len(w.of("b", IkeSaEstablished)) == 1


def test_several_quick_modes_per_main_mode_and_qmpermm() -> None:
    w = pair()
    for _ in range(3):
        w.a.initiate(policy_a(), 0.0)
    w.pump()
    assert len(w.of("a", IkeSaEstablished)) == 1 and len(w.of("a", ChildSaEstablished)) == 3
    w2 = pair(a_qmpermm=2)
    for _ in range(3):
        w2.a.initiate(policy_a(), 0.0)
        w2.pump()
    assert len(w2.of("a", IkeSaEstablished)) == 2 and len(w2.of("a", ChildSaEstablished)) == 3


def test_mmpfs_runs_one_main_mode_per_quick_mode() -> None:
    w = pair(a_mmpfs=True)
    for _ in range(2):
        w.a.initiate(policy_a(), 0.0)
        w.pump()
    assert len(w.of("a", IkeSaEstablished)) == 2 and len(w.of("b", ChildSaEstablished)) == 2


def test_quick_mode_rekey_before_the_soft_lifetime_new_sa_first() -> None:
    w = pair()
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    first = w.of("a", ChildSaEstablished)[0]
    assert isinstance(first, ChildSaEstablished)
    w.advance(ESP.lifetime_s * 0.9 - 1)
    assert len(w.of("a", ChildSaEstablished)) == 1
    w.advance(ESP.lifetime_s * 0.9 + 1)
    kinds = [type(e).__name__ for e in w.events["a"]]
    assert kinds[-2:] == ["ChildSaEstablished", "ChildSaDeleted"]
    new = w.of("a", ChildSaEstablished)[1]
    assert isinstance(new, ChildSaEstablished) and new.rekey_of == first.inbound.spi
    gone = w.of("a", ChildSaDeleted)[0]
    assert isinstance(gone, ChildSaDeleted) and gone.reason is DeleteReason.REKEYED
    assert gone.inbound_spi == first.inbound.spi
    # The responder learned of the rekey by our DELETE.
    b_gone = w.of("b", ChildSaDeleted)
    assert len(b_gone) == 1 and isinstance(b_gone[0], ChildSaDeleted)
    assert b_gone[0].reason is DeleteReason.PEER and b_gone[0].outbound_spi == first.inbound.spi
    assert [c.inbound.spi for c in w.a.children] == [new.inbound.spi]
    assert w.a.counters.rekeys == 1


def test_main_mode_rekey_replaces_the_isakmp_sa_and_keeps_ipsec_sas() -> None:
    w = pair(mm_lifetime_s=1000)
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    old = w.a.ike_sas[0]
    w.advance(901.0)
    ikes = w.of("a", IkeSaEstablished)
    assert len(ikes) == 2 and isinstance(ikes[1], IkeSaEstablished) and ikes[1].rekey
    gone = w.of("b", IkeSaDeleted)
    assert len(gone) == 1 and isinstance(gone[0], IkeSaDeleted) and gone[0].cky_i == old.cky_i
    assert len(w.a.ike_sas) == 1 and w.a.ike_sas[0].cky_i != old.cky_i
    assert len(w.a.children) == 1 and len(w.b.children) == 1
    # Quick Modes now run on the new ISAKMP SA.
    w.a.initiate(policy_a(), w.now)
    w.pump()
    assert len(w.b.children) == 2


def test_delete_and_close_reach_the_peer() -> None:
    w = pair()
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    spi = w.a.children[0].inbound.spi
    w.a.delete_child(spi, 1.0)
    w.pump()
    assert not w.a.children and not w.b.children
    w.a.close(2.0)
    w.pump()
    assert not w.b.ike_sas
    d = w.of("b", IkeSaDeleted)
    assert len(d) == 1 and isinstance(d[0], IkeSaDeleted) and d[0].reason is DeleteReason.PEER


def test_replayed_delete_changes_nothing() -> None:
    w = pair()
    w.a.initiate(policy_a(), 0.0)
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    w.a.delete_child(w.a.children[0].inbound.spi, 1.0)
    out = w.a.datagrams_to_send_from(1.0)
    assert len(out) == 1
    data, addr, lport = out[0]
    w.b.receive_datagram(data, (w.a.cfg.local[0], lport), 1.0, addr[1])
    assert len(w.b.children) == 1
    w.b.receive_datagram(data, (w.a.cfg.local[0], lport), 1.0, addr[1])
    assert len(w.b.children) == 1 and w.b.counters.duplicates == 1


def test_dpd_declares_a_silent_peer_dead_and_spares_a_live_one() -> None:
    w = pair(dpd_interval=10.0, dpd_retries=3)
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    w.advance(35.0)  # probes answered: R-U-THERE / R-U-THERE-ACK
    assert not w.of("a", PeerDead) and len(w.a.children) == 1
    w.drop = lambda who, d: who == "b"
    w.advance(100.0)
    dead = w.of("a", PeerDead)
    assert len(dead) == 1 and isinstance(dead[0], PeerDead) and dead[0].unanswered == 3
    assert not w.a.children and not w.a.ike_sas
    reasons = {e.reason for e in w.of("a", ChildSaDeleted) if isinstance(e, ChildSaDeleted)}
    assert reasons == {DeleteReason.PEER_DEAD}


def test_dpd_only_when_both_announce_it() -> None:
    w = pair(a_dpd_interval=10.0)
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    w.drop = lambda who, d: True
    w.advance(200.0)
    assert not w.of("a", PeerDead)


def test_aggressive_mode_is_refused() -> None:
    w = pair()
    agg = codec.encode(Message(Header(b"\x01" * 8, bytes(8), ExchangeType.AGGRESSIVE), ()))
    w.b.receive_datagram(agg, (w.a.cfg.local[0], 500), 0.0, 500)
    w.collect()
    assert w.b.counters.refused_exchanges == 1
    f = w.of("b", NegotiationFailed)
    assert len(f) == 1 and isinstance(f[0], NegotiationFailed) and f[0].reason == "aggressive mode refused"
    assert f[0].failure_point is FailurePoint.ME
    assert w.b.datagrams_to_send(0.0) == [] and w.b.get_timer() is None


def test_unprotected_notify_is_reported_and_changes_nothing() -> None:
    w = pair()
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    sa = w.b.ike_sas[0]
    n = NotifyPayload(1, 3, NotifyType.INVALID_SPI, bytes(4))
    w.a.receive_datagram(informational.unprotected(sa.cky_i, sa.cky_r, n), (sa_ip(w), 500), 1.0, 500)
    w.collect()
    assert w.a.counters.unprotected_notifies == 1 and len(w.a.children) == 1
    got = w.of("a", NotifyReceived)
    assert len(got) == 1 and isinstance(got[0], NotifyReceived) and not got[0].protected


def sa_ip(w: object) -> object:
    return w.b.cfg.local[0]  # type: ignore[attr-defined]


def test_wrong_psk_never_establishes() -> None:
    w = pair(b_psk=b"other secret")
    w.a.initiate(policy_a(), 0.0)
    w.advance(100.0)
    assert not w.a.ike_sas and not w.b.ike_sas
    assert w.b.counters.invalid_packets >= 1  # message 5 does not decrypt
    assert w.of("a", NegotiationFailed)


def test_unknown_cookies_are_counted() -> None:
    w = pair()
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    qm = codec.encode(Message(Header(b"\x09" * 8, b"\x08" * 8, ExchangeType.QUICK_MODE, 0, 7), ()))
    w.b.receive_datagram(qm, (w.a.cfg.local[0], 500), 1.0, 500)
    w.b.receive_datagram(b"\x00" * 10, (w.a.cfg.local[0], 500), 1.0, 500)
    assert w.b.counters.invalid_cookies == 1 and w.b.counters.invalid_packets == 1


def test_initial_contact_after_a_restart_clears_the_stale_sas() -> None:
    from ikev1_session_util import rng

    from ipsecd.ike.dh import DefaultDhProvider
    from ipsecd.ikev1.session import IkeV1Session

    w = pair()
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    old_child = w.b.children[0]
    # a restarts: a fresh session with the same configuration, no memory of the old SAs.
    w.a = IkeV1Session(w.a.cfg, rng=rng("a-rebooted"), dh=DefaultDhProvider(rng("da2")), now=5.0)
    w.now = 5.0
    w.a.initiate(policy_a(), 5.0)
    w.pump()
    assert len(w.b.ike_sas) == 1 and len(w.b.children) == 1
    assert w.b.children[0].inbound.spi != old_child.inbound.spi
    gone = [e for e in w.of("b", ChildSaDeleted) if isinstance(e, ChildSaDeleted)]
    assert [(e.inbound_spi, e.reason) for e in gone] == [(old_child.inbound.spi, DeleteReason.PEER)]
    assert [e.reason for e in w.of("b", IkeSaDeleted) if isinstance(e, IkeSaDeleted)] == [DeleteReason.PEER]


def test_first_message_flood_is_bounded() -> None:
    from ipsecd.ike.constants import AuthMethod
    from ipsecd.ike.proposals import mm_sa_payload
    from ipsecd.ikev1.session import MAX_HALF_OPEN

    w = pair()
    sa = mm_sa_payload(w.b.cfg.mm_methods, [AuthMethod.PRE_SHARED_KEY], 28800)
    for i in range(MAX_HALF_OPEN + 10):
        m1 = codec.encode(
            Message(Header(i.to_bytes(8, "big"), bytes(8), ExchangeType.IDENTITY_PROTECTION), (sa,))
        )
        w.b.receive_datagram(m1, (w.a.cfg.local[0], 500), 0.0, 500)
    assert len(w.b.datagrams_to_send(0.0)) == MAX_HALF_OPEN
    assert w.b.counters.invalid_packets == 10
    w.advance(200.0)  # the half-open exchanges give up and are forgotten
    assert w.b.get_timer() is None


def test_no_secret_in_reprs() -> None:
    w = pair()
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    child = w.of("a", ChildSaEstablished)[0]
    assert isinstance(child, ChildSaEstablished)
    texts = [
        repr(w.a.cfg),
        repr(child),
        repr(w.a.ike_sas[0]),
        repr(w.a.children[0]),
        *map(repr, w.events["b"]),
    ]
    for secret in (
        b"secret psk",
        child.outbound.enc_key,
        child.outbound.integ_key,
        w.a.ike_sas[0].keys.skeyid_d,
    ):
        for t in texts:
            assert secret.hex() not in t and repr(secret)[2:-1] not in t
