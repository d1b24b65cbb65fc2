"""Hypothesis strategies generating valid IKEv2 payloads and messages (round-trip and fuzz tests)."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from ipsecd.ikev2.constants import ExchangeType, ProtocolId
from ipsecd.ikev2.message import Header
from ipsecd.ikev2.payloads import (
    Attribute,
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    Identity,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorIdPayload,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
data = st.binary(min_size=1, max_size=48)

attributes = st.builds(Attribute, st.integers(0, 0x7FFF), st.one_of(u16, st.binary(max_size=24)))
transforms = st.builds(Transform, st.integers(1, 5), u16, st.lists(attributes, max_size=3).map(tuple))


@st.composite
def proposals(draw: st.DrawFn, number: int = 1) -> Proposal:
    proto = draw(st.sampled_from([1, 2, 3]))
    size = 8 if proto == ProtocolId.IKE else 4
    spi = draw(st.binary(min_size=size, max_size=size)) if draw(st.booleans()) or proto != 1 else b""
    return Proposal(number, proto, spi, tuple(draw(st.lists(transforms, min_size=1, max_size=6))))


@st.composite
def sa_payloads(draw: st.DrawFn) -> SaPayload:
    n = draw(st.integers(1, 3))
    return SaPayload(tuple(draw(proposals(i)) for i in range(1, n + 1)))


v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@st.composite
def selectors(draw: st.DrawFn) -> TrafficSelector:
    addr = draw(st.sampled_from([v4, v6]))
    return TrafficSelector(draw(addr), draw(addr), draw(u8), draw(u16), draw(u16))


@st.composite
def identities(draw: st.DrawFn) -> Identity:
    kind = draw(st.sampled_from([1, 2, 3, 5, 9, 11]))
    if kind == 1:
        return Identity(1, draw(st.binary(min_size=4, max_size=4)))
    if kind == 5:
        return Identity(5, draw(st.binary(min_size=16, max_size=16)))
    return Identity(kind, draw(data))


@st.composite
def notifies(draw: st.DrawFn) -> NotifyPayload:
    proto, spi = draw(st.sampled_from([(0, b""), (1, b""), (3, b"abcd"), (2, b"wxyz"), (1, bytes(8))]))
    return NotifyPayload(draw(u16), draw(st.binary(max_size=40)), proto, spi)


@st.composite
def deletes(draw: st.DrawFn) -> DeletePayload:
    if draw(st.booleans()):
        return DeletePayload(ProtocolId.IKE)
    spis = draw(st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=5))
    return DeletePayload(draw(st.sampled_from([2, 3])), tuple(spis))


@st.composite
def eaps(draw: st.DrawFn) -> EapPayload:
    body = draw(st.binary(max_size=30))
    return EapPayload(bytes([draw(u8), draw(u8)]) + (len(body) + 4).to_bytes(2, "big") + body)


payloads: st.SearchStrategy[Payload] = st.one_of(
    sa_payloads(),
    st.builds(KePayload, u16, data),
    st.builds(IdiPayload, identities()),
    st.builds(IdrPayload, identities()),
    st.builds(CertPayload, u8, data),
    st.builds(CertReqPayload, u8, st.binary(max_size=40)),
    st.builds(AuthPayload, u8, data),
    st.builds(NoncePayload, st.binary(min_size=16, max_size=64)),
    notifies(),
    deletes(),
    st.builds(VendorIdPayload, st.binary(max_size=32)),
    st.builds(TsiPayload, st.lists(selectors(), min_size=1, max_size=4).map(tuple)),
    st.builds(TsrPayload, st.lists(selectors(), min_size=1, max_size=4).map(tuple)),
    st.builds(
        CpPayload,
        st.integers(1, 4),
        st.lists(st.builds(CfgAttribute, st.integers(0, 0x7FFF), st.binary(max_size=16)), max_size=4).map(
            tuple
        ),
    ),
    eaps(),
    st.builds(UnknownPayload, st.integers(100, 200), st.binary(max_size=20), st.booleans()),
)

headers = st.builds(
    Header,
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=8, max_size=8),
    st.sampled_from([int(x) for x in ExchangeType]),
    st.sampled_from([0, 0x08, 0x20, 0x28]),
    st.integers(0, 2**32 - 1),
)
messages = st.tuples(headers, st.lists(payloads, max_size=6))
