"""Mutated captured datagrams fed to an established responder session: nothing raises, nothing that
fails to authenticate changes an SA (only counters move and half-open exchanges may appear)."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st
from ikev1_session_util import Wire, pair, policy_a

from ipsecd.ikev1.events import ChildSaDeleted, ChildSaEstablished, IkeSaDeleted, IkeSaEstablished, PeerDead


@cache
def _established() -> tuple[Wire, tuple[tuple[bytes, int], ...]]:
    w = pair(a_force_nat=True, dpd_interval=10.0)
    w.a.initiate(policy_a(), 0.0)
    w.a.initiate(policy_a(), 0.0)
    w.pump()
    w.advance(15.0)  # a DPD round trip is captured too
    captured = tuple((data, lport) for who, data, lport in w.log if who == "a")
    assert len(w.b.children) == 2
    return w, captured


def _fingerprint(w: Wire) -> tuple[object, ...]:
    b = w.b
    return (
        tuple(sorted((c.inbound.spi, c.outbound.spi) for c in b.children)),
        tuple(sorted(s.cky_i + s.cky_r for s in b.ike_sas)),
    )


STATE_EVENTS = (ChildSaEstablished, ChildSaDeleted, IkeSaEstablished, IkeSaDeleted, PeerDead)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10_000),
    st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=0, max_size=4),
    st.integers(0, 4096),
    st.binary(max_size=64),
    st.sampled_from(["flip", "truncate", "splice", "replay"]),
)
def test_mutated_messages_never_raise_nor_change_state(
    which: int, flips: list[tuple[int, int]], cut: int, junk: bytes, how: str
) -> None:
    w, captured = _established()
    data, lport = captured[which % len(captured)]
    if how == "flip":
        b = bytearray(data)
        for pos, val in flips:
            b[pos % len(b)] ^= val or 1
        data = bytes(b)
    elif how == "truncate":
        data = data[: cut % (len(data) + 1)]
    elif how == "splice":
        c = cut % (len(data) + 1)
        data = data[:c] + junk + data[c + len(junk) :]
    before = _fingerprint(w)
    w.b.receive_datagram(data, (w.a.cfg.local[0], lport), w.now, lport)
    w.b.datagrams_to_send(w.now)
    assert _fingerprint(w) == before
    while (e := w.b.next_event()) is not None:
        assert not isinstance(e, STATE_EVENTS), e
