"""Hypothesis strategies generating valid IKEv1 payload objects and messages (shared by the codec
round-trip and fuzz tests)."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from ipsecd.ike.constants import DOI_IPSEC, PayloadType, ProtocolId
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.payloads import (
    CertPayload,
    CertReqPayload,
    DeletePayload,
    HashPayload,
    IdPayload,
    KePayload,
    NatDPayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SigPayload,
    UnknownPayload,
    VendorIdPayload,
)
from ipsecd.ikev1.sa import Attribute, Proposal, SaPayload, Transform

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
data = st.binary(min_size=1, max_size=64)

attributes = st.builds(Attribute, st.integers(0, 0x7FFF), st.one_of(u16, st.binary(min_size=0, max_size=40)))
transforms = st.builds(Transform, u8, u8, st.lists(attributes, max_size=6).map(tuple))


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    proto = draw(st.sampled_from([1, 2, 3, 4, 200]))
    if proto in (ProtocolId.PROTO_IPSEC_AH, ProtocolId.PROTO_IPSEC_ESP):
        size = 4
    elif proto == ProtocolId.PROTO_IPCOMP:
        size = draw(st.sampled_from([2, 4]))
    else:
        size = draw(st.sampled_from([0, 8, 16]))
    spi = draw(st.binary(min_size=size, max_size=size))
    ts = draw(st.lists(transforms, min_size=1, max_size=4))
    return Proposal(draw(u8), proto, spi, tuple(ts))


@st.composite
def sa_payloads(draw: st.DrawFn) -> SaPayload:
    props = draw(st.lists(proposals(), min_size=1, max_size=4))
    props.sort(key=lambda p: p.number)
    return SaPayload(draw(st.sampled_from([0, DOI_IPSEC])), draw(st.sampled_from([1, 0])), tuple(props))


@st.composite
def id_payloads(draw: st.DrawFn) -> IdPayload:
    t = draw(st.integers(1, 12))
    sizes = {1: 4, 4: 8, 7: 8, 5: 16, 6: 32, 8: 32}
    d = draw(st.binary(min_size=sizes[t], max_size=sizes[t])) if t in sizes else draw(data)
    return IdPayload(t, draw(u8), draw(u16), d)


@st.composite
def delete_payloads(draw: st.DrawFn) -> DeletePayload:
    proto = draw(st.sampled_from([1, 2, 3, 9]))
    size = {1: 16, 2: 4, 3: 4}.get(proto) or draw(st.integers(1, 16))
    spis = draw(st.lists(st.binary(min_size=size, max_size=size), min_size=1, max_size=5))
    return DeletePayload(draw(u32), proto, size, tuple(spis))


addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
)
KNOWN = {int(t) for t in PayloadType}

payloads: st.SearchStrategy[Payload] = st.one_of(
    sa_payloads(),
    st.builds(KePayload, data),
    id_payloads(),
    st.builds(CertPayload, u8, st.binary(max_size=64)),
    st.builds(CertReqPayload, u8, st.binary(max_size=64)),
    st.builds(HashPayload, data),
    st.builds(SigPayload, data),
    st.builds(NoncePayload, st.binary(min_size=8, max_size=256)),
    st.builds(NotifyPayload, u32, u8, u16, st.binary(max_size=16), st.binary(max_size=32)),
    delete_payloads(),
    st.builds(VendorIdPayload, st.binary(max_size=32)),
    st.builds(NatDPayload, data),
    st.builds(NatOaPayload, addresses),
    st.builds(UnknownPayload, st.integers(14, 255).filter(lambda t: t not in KNOWN), st.binary(max_size=32)),
)

headers = st.builds(
    Header,
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=8, max_size=8),
    u8,
    st.sampled_from([0, 2, 4, 6]),  # never E: these messages are plaintext
    u32,
)
messages = st.builds(Message, headers, st.lists(payloads, min_size=0, max_size=6).map(tuple))
