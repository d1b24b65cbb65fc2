"""Protected Informationals (RFC 2409 section 5.7) and the RFC 3706 DPD bookkeeping, directly."""

from __future__ import annotations

import pytest
from ikev1_session_util import pair, policy_a

from ipsecd.ike.constants import NotifyType, ProtocolId
from ipsecd.ikev1 import informational
from ipsecd.ikev1.informational import Dpd, InfoError
from ipsecd.ikev1.main_mode import Phase1Sa


def _p1s() -> tuple[Phase1Sa, Phase1Sa]:
    w = pair()
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    return w.a.ike_sas[0], w.b.ike_sas[0]


def test_protect_open_round_trip_and_tampering() -> None:
    a, b = _p1s()
    payloads = [
        informational.delete_ipsec(ProtocolId.PROTO_IPSEC_ESP, [0x1234, 0x5678]),
        informational.initial_contact(a),
    ]
    data = informational.protect(a, 77, payloads)
    got = informational.Received.of(informational.open_protected(b, data))
    assert [d.spis for d in got.deletes] == [((0x1234).to_bytes(4, "big"), (0x5678).to_bytes(4, "big"))]
    assert [n.notify_type for n in got.notifies] == [NotifyType.INITIAL_CONTACT]
    for pos in (30, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(InfoError):
            informational.open_protected(b, bytes(bad))
    with pytest.raises(InfoError):  # the message ID is in HASH(1) and the IV
        informational.open_protected(b, data[:20] + (78).to_bytes(4, "big") + data[24:])
    with pytest.raises(InfoError):
        informational.open_protected(b, data[:-1])
    with pytest.raises(InfoError):
        informational.open_protected(
            b, informational.unprotected(a.cky_i, a.cky_r, informational.error_notify(14))
        )


def test_dpd_notify_and_sequence_numbers() -> None:
    a, b = _p1s()
    n = informational.dpd_notify(a, False, 41)
    assert informational.dpd_seq(b, n) == 41
    assert informational.dpd_seq(b, informational.initial_contact(a)) is None
    d = Dpd(0x80000005)
    assert d.next_seq == 5  # RFC 3706 section 7: the top bit is left clear at the start
    assert d.probe() == 5 and d.misses == 0
    assert d.probe() == 6 and d.misses == 1  # 5 was never answered
    assert not d.acked(5) and d.acked(6) and d.misses == 0 and d.outstanding is None
    assert d.peer_probe(100) and d.peer_probe(101) and d.peer_probe(101)
    assert not d.peer_probe(50)  # an old sequence number: a replay, not answered
    assert Dpd(0).next_seq == 1
