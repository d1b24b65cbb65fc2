"""Mutation fuzzing of the IKEv2 decoder, of SK decryption and of an established session: valid
messages are bit-flipped, truncated, extended and spliced. The codec may only raise CodecError /
CryptoError; the session never raises and nothing unauthenticated changes its SA. Bounded in examples;
IPSECD_FUZZ_EXAMPLES raises the count for a longer run."""

from __future__ import annotations

import contextlib
import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikev2_strategies import messages, payloads

from ipsecd.ike.buffers import CodecError
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2 import crypto, message
from ipsecd.ikev2.constants import EncrId, ExchangeType, IntegId, NotifyType, ProtocolId
from ipsecd.ikev2.message import Header
from ipsecd.ikev2.payloads import (
    DeletePayload,
    Identity,
    NoncePayload,
    NotifyPayload,
    Payload,
    TrafficSelector,
)
from ipsecd.ikev2.proposals import parse_esp, parse_ike
from ipsecd.ikev2.session import Session, SessionConfig

EXAMPLES = int(os.environ.get("IPSECD_FUZZ_EXAMPLES", "250"))


@st.composite
def mutate(draw: st.DrawFn, wire: bytes) -> bytes:
    w = bytearray(wire)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set_byte", "fix_length"]))
        if op == "flip" and w:
            w[draw(st.integers(0, len(w) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del w[draw(st.integers(0, len(w))) :]
        elif op == "insert":
            i = draw(st.integers(0, len(w)))
            w[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and w:
            i = draw(st.integers(0, len(w) - 1))
            del w[i : i + draw(st.integers(1, 8))]
        elif op == "set_byte" and w:
            w[draw(st.integers(0, len(w) - 1))] = draw(st.sampled_from([0, 1, 3, 4, 7, 0x7F, 0x80, 0xFF]))
        elif op == "fix_length" and len(w) >= 28:
            w[24:28] = len(w).to_bytes(4, "big")  # keep the header consistent to reach the payloads
    return bytes(w)


@st.composite
def mutated_plain(draw: st.DrawFn) -> bytes:
    h, body = draw(messages)
    return draw(mutate(message.encode(h, body)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_plain())
def test_mutated_messages_only_raise_codec_error(data: bytes) -> None:
    try:
        msg = message.decode(data)
    except CodecError:
        return
    assert (
        message.decode(message.encode(msg.header, msg.payloads)).payloads == msg.payloads
        if msg.encrypted is None
        else True
    )


SUITE = crypto.SkSuite(EncrId.ENCR_AES_CBC, 128, IntegId.AUTH_HMAC_SHA2_256_128)
KE, KA = bytes(16), bytes(range(32))
PROTECTED = message.encode_protected(
    Header(b"i" * 8, b"r" * 8, ExchangeType.INFORMATIONAL, 0x08, 3),
    [NotifyPayload(NotifyType.INITIAL_CONTACT), NotifyPayload(NotifyType.COOKIE, b"c" * 20)],
    SUITE,
    KE,
    KA,
    bytes(16),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(mutate(PROTECTED))
def test_mutated_protected_messages(data: bytes) -> None:
    try:
        msg = message.decode(data)
        message.decrypt(data, msg, SUITE, KE, KA)
    except (CodecError, crypto.CryptoError):
        return
    assert data == PROTECTED  # only the untouched message authenticates


@settings(max_examples=max(100, EXAMPLES // 4), deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    for d in (data, data[:24] + (len(data)).to_bytes(4, "big") + data[28:] if len(data) >= 28 else data):
        with contextlib.suppress(CodecError):
            message.decode(d)


def _established_pair() -> tuple[Session, Session]:
    a, b, _ = _established_full()
    return a, b


def _established() -> tuple[Session, list[bytes]]:
    a, _, from_b = _established_full()
    return a, from_b


def _established_full() -> tuple[Session, Session, list[bytes]]:
    r = random.Random(3)
    dh = DefaultDhProvider(r.randbytes)

    def cfg(me: str, lts: str, rts: str) -> SessionConfig:
        return SessionConfig(
            ike=(parse_ike("aes128-sha256-x25519"),),
            esp=(parse_esp("aes128gcm16"),),
            psk=b"k",
            local_id=Identity.address(me),
            local_ts=(TrafficSelector.network(lts),),
            remote_ts=(TrafficSelector.network(rts),),
            dpd_interval_s=0,
        )

    a = Session.initiate(
        cfg("192.0.2.1", "10.1.0.0/24", "10.2.0.0/24"),
        local=("192.0.2.1", 500),
        remote=("192.0.2.2", 500),
        now=0,
        rng=r.randbytes,
        dh=dh,
    )
    b = Session.respond(
        cfg("192.0.2.2", "10.2.0.0/24", "10.1.0.0/24"),
        local=("192.0.2.2", 500),
        remote=("192.0.2.1", 500),
        now=0,
        rng=r.randbytes,
        dh=dh,
    )
    from_b: list[bytes] = []
    for _ in range(4):
        for d, _ in a.datagrams_to_send(0):
            b.receive_datagram(d, ("192.0.2.1", 500), 0)
        for d, _ in b.datagrams_to_send(0):
            from_b.append(d)
            a.receive_datagram(d, ("192.0.2.2", 500), 0)
    assert a.established and b.established
    return a, b, from_b


SESSION, FROM_B = _established()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FROM_B).flatmap(mutate))
def test_session_ignores_mutated_datagrams(data: bytes) -> None:
    keys, children, mids = SESSION.sa.keys, dict(SESSION.children), (SESSION.sa.next_mid, SESSION.sa.peer_mid)
    SESSION.receive_datagram(data, ("192.0.2.2", 500), 1.0)
    SESSION.datagrams_to_send(1.0)
    while SESSION.next_event() is not None:
        pass
    assert SESSION.established and SESSION.sa.keys == keys and SESSION.children == children
    assert (SESSION.sa.next_mid, SESSION.sa.peer_mid) == mids


@st.composite
def odd_requests(draw: st.DrawFn) -> tuple[int, list[Payload]]:
    """Well-formed, authenticated requests with arbitrary payload combinations."""
    exchange = draw(
        st.sampled_from([ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL, ExchangeType.IKE_AUTH, 99])
    )
    body = draw(st.lists(payloads, max_size=5))
    if draw(st.booleans()):
        body.append(NoncePayload(bytes(32)))
    return exchange, body


@settings(max_examples=max(60, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_requests())
def test_established_responder_survives_odd_authenticated_requests(req: tuple[int, list[Payload]]) -> None:
    """Requests that authenticate but make no sense: the responder answers or drops, never raises,
    and its IKE SA stays (unless it was asked to delete it)."""
    a, b = _established_pair()
    exchange, body = req
    a.request(a.sa, exchange, body, lambda m, t: None, 1.0)
    for d, _ in a.datagrams_to_send(1.0):
        b.receive_datagram(d, ("192.0.2.1", 500), 1.0)
    out = b.datagrams_to_send(1.0)
    deletes_ike = any(isinstance(p, DeletePayload) and p.protocol_id == ProtocolId.IKE for p in body)
    if exchange == ExchangeType.INFORMATIONAL and not deletes_ike:
        assert b.established
    assert len(out) <= 1
    if out and not deletes_ike:
        a.receive_datagram(out[0][0], ("192.0.2.2", 500), 1.0)
        assert a.established
