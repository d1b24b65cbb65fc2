"""The sans-I/O Main Mode PSK exchange: initiator and responder objects talking to each other,
retransmissions, malformed input dropped without state change, and the failure paths."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipsecd.ike.constants import NotifyType
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev1 import codec
from ipsecd.ikev1.codec import Message
from ipsecd.ikev1.main_mode import MainMode, MainModeConfig, MmState, Phase1Sa, Step
from ipsecd.ikev1.payloads import IdPayload
from ipsecd.ikev1.sa import Proposal, SaPayload, Transform
from ipsecd.policy.model import Integrity, MmEncryption, MmSecMethod

A = MmSecMethod(MmEncryption.AES256, Integrity.SHA256, 14)
B = MmSecMethod(MmEncryption.DES3, Integrity.SHA1, 2)
C = MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 19)
D = MmSecMethod(MmEncryption.AES192, Integrity.SHA512, 31)
ID_I = IdPayload.for_address(ipaddress.IPv4Address("192.0.2.1"))
ID_R = IdPayload.for_address(ipaddress.IPv4Address("192.0.2.2"))


def rng(seed: str) -> Callable[[int], bytes]:
    n = [0]

    def f(k: int) -> bytes:
        out = b""
        while len(out) < k:
            n[0] += 1
            out += hashlib.sha256(f"{seed}/{n[0]}".encode()).digest()
        return out[:k]

    return f


def pair(
    i_methods: tuple[MmSecMethod, ...] = (A,),
    r_methods: tuple[MmSecMethod, ...] = (A,),
    i_psk: bytes = b"shared secret",
    r_psk: bytes = b"shared secret",
) -> tuple[MainMode, MainMode]:
    ini = MainMode.initiator(
        MainModeConfig(i_methods, i_psk, ID_I, vendor_ids=(b"ipsecd",)),
        rng=rng("i"),
        dh=DefaultDhProvider(rng("di")),
    )
    res = MainMode.responder(
        MainModeConfig(r_methods, r_psk, ID_R), rng=rng("r"), dh=DefaultDhProvider(rng("dr"))
    )
    return ini, res


def run(ini: MainMode, res: MainMode) -> tuple[Phase1Sa | None, Phase1Sa | None, list[Step]]:
    steps = [ini.start()]
    to_res = True
    done_i = done_r = None
    for _ in range(10):
        data = steps[-1].send
        if data is None:
            break
        step = (res if to_res else ini).receive(data)
        steps.append(step)
        if step.established:
            if to_res:
                done_r = step.established
            else:
                done_i = step.established
        to_res = not to_res
    return done_i, done_r, steps


@pytest.mark.parametrize("method", [A, B, C, D], ids=str)
def test_initiator_and_responder_agree(method: MmSecMethod) -> None:
    ini, res = pair((B, method), (method,))
    sa_i, sa_r, steps = run(ini, res)
    assert sa_i is not None and sa_r is not None
    assert len([s for s in steps if s.send]) == 6
    assert sa_i.keys == sa_r.keys and sa_i.last_block == sa_r.last_block
    assert (sa_i.cky_i, sa_i.cky_r) == (sa_r.cky_i, sa_r.cky_r)
    assert sa_i.peer_id == ID_R and sa_r.peer_id == ID_I
    assert sa_r.peer_vendor_ids == (b"ipsecd",)
    assert sa_i.params.group == method.group and sa_i.initiator and not sa_r.initiator
    assert ini.state is MmState.ESTABLISHED and res.state is MmState.ESTABLISHED
    assert b"shared secret" not in repr(sa_i).encode() and "shared" not in repr(ini._cfg)
    # Encrypted messages 5 and 6 carry the E flag; messages 1-4 do not.
    flags = [codec.split(s.send)[0].encrypted for s in steps if s.send]
    assert flags == [False, False, False, False, True, True]


def test_retransmissions_repeat_the_last_reply_without_state_change() -> None:
    ini, res = pair()
    m1 = ini.start().send
    assert m1 is not None
    m2 = res.receive(m1).send
    again = res.receive(m1)
    assert again.send == m2 and again.dropped == "retransmission" and res.state is MmState.R_SA_SENT
    assert m2 is not None
    m3 = ini.receive(m2).send
    assert m3 is not None
    m4 = res.receive(m3).send
    assert res.receive(m3).send == m4
    assert m4 is not None
    m5 = ini.receive(m4).send
    assert m5 is not None
    s6 = res.receive(m5)
    assert s6.established is not None
    assert res.receive(m5).send == s6.send  # our message 6 was lost: resend it
    assert s6.send is not None
    assert ini.receive(s6.send).established is not None


def _mutations(data: bytes, first: bool) -> list[bytes]:
    """Broken variants of ``data`` at the message level. (A changed byte inside an unauthenticated
    payload is a different but valid message; message 1 with another cookie is a new exchange.)"""
    return [
        *([] if first else [bytes([data[0] ^ 1]) + data[1:]]),  # initiator cookie
        b"",
        data[:27],
        data[:-1],
        data + b"\x00",
        data[:18] + bytes([data[18] ^ 0xFF]) + data[19:],  # exchange type
        data[:20] + b"\x00\x00\x00\x01" + data[24:],  # message ID
        data[:16] + b"\x03" + data[17:],  # first payload: a Transform, only valid inside an SA
    ]


def test_malformed_and_unexpected_input_is_dropped_and_exchange_goes_on() -> None:
    ini, res = pair()
    order = [ini.start().send]
    parties = [res, ini]
    k = 0
    established = 0
    while order[-1] is not None and k < 6:
        party = parties[k % 2]
        good = order[-1]
        state = party.state
        for bad in _mutations(good, k == 0):
            step = party.receive(bad)
            assert step.established is None and step.failed is None, (k, step)
            assert step.dropped and party.state is state
        step = party.receive(good)
        established += step.established is not None
        order.append(step.send)
        k += 1
    assert established == 2


@pytest.mark.parametrize("which", [5, 6])
def test_corrupted_ciphertext_never_establishes(which: int) -> None:
    ini, res = pair()
    msgs = [ini.start().send]
    parties = [res, ini, res, ini, res, ini]
    for n in range(1, 7):
        data = msgs[-1]
        assert data is not None
        if n == which:
            step = parties[n - 1].receive(data[:-5] + bytes([data[-5] ^ 0x80]) + data[-4:])
            assert step.established is None
            assert step.dropped or step.notify == NotifyType.AUTHENTICATION_FAILED
            return
        msgs.append(parties[n - 1].receive(data).send)
    raise AssertionError("not reached")


def test_no_proposal_chosen() -> None:
    ini, res = pair((A,), (B, C))
    m1 = ini.start().send
    assert m1 is not None
    step = res.receive(m1)
    assert step.failed == "no proposal chosen" and step.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert res.state is MmState.FAILED and step.send is None
    assert res.receive(m1).dropped


def test_wrong_psk_never_establishes() -> None:
    ini, res = pair(i_psk=b"one key", r_psk=b"another key")
    sa_i, sa_r, steps = run(ini, res)
    assert sa_i is None and sa_r is None
    last = steps[-1]
    assert (
        last.dropped and "pre-shared key" in last.dropped
    ) or last.notify == NotifyType.AUTHENTICATION_FAILED
    assert "one key" not in repr(steps) and "another" not in repr(steps)


def test_bad_hash_fails_with_authentication_failed() -> None:
    ini, res = pair()
    ini._hash = lambda of_initiator, id_body: bytes(32)  # type: ignore[method-assign]
    _, _, steps = run(ini, res)
    assert steps[-1].failed and steps[-1].notify == NotifyType.AUTHENTICATION_FAILED
    assert res.state is MmState.FAILED


def test_initiator_refuses_a_transform_it_did_not_offer() -> None:
    ini, _ = pair((A,), (A,))
    other, _ = pair((C,), (C,))
    m1 = ini.start().send
    o1 = other.start().send
    assert m1 is not None and o1 is not None
    # A responder for C answers; we graft its SA reply onto our cookies.
    r2 = MainMode.responder(MainModeConfig((C,), b"k", ID_R), rng=rng("x"), dh=DefaultDhProvider(rng("y")))
    reply = r2.receive(o1).send
    assert reply is not None
    forged = m1[:8] + reply[8:]
    step = ini.receive(forged)
    assert step.dropped == "responder chose a transform we did not offer"
    assert ini.state is MmState.I_SA_SENT  # unauthenticated: ignored, the exchange can still finish


def test_api_misuse() -> None:
    ini, res = pair()
    with pytest.raises(RuntimeError):
        res.start()
    ini.start()
    with pytest.raises(RuntimeError):
        ini.start()
    with pytest.raises(ValueError):
        MainMode.initiator(MainModeConfig((), b"k", ID_I), rng=rng("z"), dh=DefaultDhProvider(rng("z")))


def test_initiator_accepts_its_transform_with_attributes_reordered() -> None:
    ini, res = pair()
    m1 = ini.start().send
    assert m1 is not None
    m2 = res.receive(m1).send
    assert m2 is not None
    msg = codec.decode(m2)
    sa = msg.payloads[0]
    assert isinstance(sa, SaPayload)
    t = sa.proposals[0].transforms[0]
    shuffled = Transform(t.number, t.transform_id, (*reversed(t.attributes[:-2]), *t.attributes[-2:]))
    p = sa.proposals[0]
    sa2 = SaPayload(sa.doi, sa.situation, (Proposal(p.number, p.protocol_id, p.spi, (shuffled,)),))
    step = ini.receive(codec.encode(Message(msg.header, (sa2,))))
    assert step.send is not None and ini.state is MmState.I_KE_SENT


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 5), st.binary(max_size=400), st.integers(0, 2**32 - 1))
def test_receive_never_raises(stage: int, junk: bytes, pos: int) -> None:
    """Random datagrams and random splices of the expected one, at every stage: only Steps."""
    ini, res = pair()
    msgs = [ini.start().send]
    parties = [res, ini, res, ini, res, ini]
    for n in range(stage):
        msgs.append(parties[n].receive(msgs[-1]).send)  # type: ignore[arg-type]
    party, good = parties[stage], msgs[-1]
    assert good is not None
    cut = pos % (len(good) + 1)
    for data in (junk, good[:cut] + junk, good[:cut] + junk + good[cut + len(junk) :]):
        step = party.receive(data)
        assert isinstance(step, Step)
