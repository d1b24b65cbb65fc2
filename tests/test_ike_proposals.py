"""Policy security methods <-> ISAKMP SA payloads, and proposal matching (both directions)."""

from __future__ import annotations

import pytest

from ipsecd.ike.constants import (
    AhTransformId,
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EncryptionAlgorithm,
    EspTransformId,
    HashAlgorithm,
    IkeAttr,
    IpsecAttr,
    ProtocolId,
)
from ipsecd.ike.proposals import (
    ProposalError,
    match_mm,
    match_qm,
    mm_sa_payload,
    parse_mm_transform,
    qm_sa_payload,
)
from ipsecd.ikev1 import codec
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.sa import Attribute, Proposal, SaPayload, Transform
from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod

PSK, RSA = AuthMethod.PRE_SHARED_KEY, AuthMethod.RSA_SIGNATURES
SPIS = {ProtocolId.PROTO_IPSEC_AH: b"\x00\x00\x01\x00", ProtocolId.PROTO_IPSEC_ESP: b"\x00\x00\x02\x00"}


def wire(sa: SaPayload) -> SaPayload:
    """Through the codec and back, as a peer would receive it."""
    msg = codec.decode(codec.encode(Message(Header(b"i" * 8, bytes(8), 2), (sa,))))
    got = msg.payloads[0]
    assert isinstance(got, SaPayload)
    return got


def test_mm_offer_contents() -> None:
    sa = mm_sa_payload([MmSecMethod(MmEncryption.AES256, Integrity.SHA256, 14)], [PSK, RSA], 28800)
    (prop,) = sa.proposals
    assert prop.protocol_id == ProtocolId.PROTO_ISAKMP and len(prop.transforms) == 2
    p = parse_mm_transform(prop.transforms[1])
    assert (p.encryption, p.key_bits, p.hash, p.auth_method, p.group, p.life_seconds) == (
        EncryptionAlgorithm.AES_CBC,
        256,
        HashAlgorithm.SHA2_256,
        RSA,
        14,
        28800,
    )
    des = parse_mm_transform(
        mm_sa_payload([MmSecMethod(MmEncryption.DES3, Integrity.SHA1, 2)], [PSK], 0)
        .proposals[0]
        .transforms[0]
    )
    assert (des.encryption, des.key_bits, des.hash, des.life_seconds) == (
        EncryptionAlgorithm.TRIPLE_DES_CBC,
        None,
        2,
        None,
    )


def test_mm_match_takes_initiators_order() -> None:
    a = MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 14)
    b = MmSecMethod(MmEncryption.DES3, Integrity.SHA1, 2)
    offer = wire(mm_sa_payload([b, a], [PSK], 3600))
    choice = match_mm(offer, [a, b], [PSK])
    assert choice is not None and choice.method == b
    assert choice.proposal.transforms == (offer.proposals[0].transforms[0],)  # echoed unchanged
    assert match_mm(offer, [a], [PSK]) is not None and match_mm(offer, [a], [PSK]).method == a  # type: ignore[union-attr]
    assert match_mm(offer, [a, b], [RSA]) is None
    assert match_mm(offer, [MmSecMethod(MmEncryption.AES256, Integrity.SHA1, 14)], [PSK]) is None


def test_mm_match_skips_transforms_with_unknown_attributes() -> None:
    m = MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 14)
    t = mm_sa_payload([m], [PSK], 0).proposals[0].transforms[0]
    with_prf = Transform(1, 1, (*t.attributes, Attribute(IkeAttr.PRF, 1)))
    offer = SaPayload(1, 1, (Proposal(1, 1, b"", (with_prf, Transform(2, 1, t.attributes))),))
    choice = match_mm(offer, [m], [PSK])
    assert choice is not None and choice.proposal.transforms[0].number == 2
    with pytest.raises(ProposalError):
        parse_mm_transform(Transform(1, 1, t.attributes[:1]))  # missing mandatory attributes


def test_mm_unsupported_methods() -> None:
    with pytest.raises(ProposalError):
        mm_sa_payload([MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 3)], [PSK], 0)
    with pytest.raises(ProposalError):
        mm_sa_payload([MmSecMethod(MmEncryption.AES128, Integrity.NONE, 2)], [PSK], 0)
    with pytest.raises(ProposalError):
        mm_sa_payload([], [PSK], 0)


def test_qm_offer_esp_ah_and_pfs() -> None:
    methods = [
        QmSecMethod(
            esp_enc=EspEncryption.AES256, esp_auth=Integrity.SHA256, lifetime_kb=50000, lifetime_s=900
        ),
        QmSecMethod(ah=Integrity.SHA1, esp_enc=EspEncryption.DES3, esp_auth=Integrity.SHA1),
        QmSecMethod(esp_enc=EspEncryption.AESGCM128),
        QmSecMethod(ah=Integrity.SHA512),
    ]
    sa = wire(qm_sa_payload(methods, SPIS, EncapsulationMode.TRANSPORT, pfs_group=14))
    assert [(p.number, p.protocol_id) for p in sa.proposals] == [(1, 3), (2, 2), (2, 3), (3, 3), (4, 2)]
    esp = sa.proposals[0].transforms[0]
    assert esp.transform_id == EspTransformId.ESP_AES
    assert esp.attributes == (
        Attribute(IpsecAttr.ENCAPSULATION_MODE, EncapsulationMode.TRANSPORT),
        Attribute(IpsecAttr.AUTH_ALGORITHM, AuthAlgorithm.HMAC_SHA2_256),
        Attribute(IpsecAttr.KEY_LENGTH, 256),
        Attribute(IpsecAttr.SA_LIFE_TYPE, 1),
        Attribute(IpsecAttr.SA_LIFE_DURATION, 900),
        Attribute(IpsecAttr.SA_LIFE_TYPE, 2),
        Attribute(IpsecAttr.SA_LIFE_DURATION, 50000),
        Attribute(IpsecAttr.GROUP_DESCRIPTION, 14),
    )
    gcm = sa.proposals[3].transforms[0]
    assert gcm.transform_id == EspTransformId.ESP_AES_GCM_16 and gcm.attr(IpsecAttr.AUTH_ALGORITHM) is None
    ah = sa.proposals[4].transforms[0]
    assert ah.transform_id == AhTransformId.AH_SHA2_512
    assert ah.attr(IpsecAttr.AUTH_ALGORITHM) == Attribute(
        IpsecAttr.AUTH_ALGORITHM, AuthAlgorithm.HMAC_SHA2_512
    )
    assert sa.proposals[0].spi == SPIS[ProtocolId.PROTO_IPSEC_ESP]


def test_qm_match_and_bundle() -> None:
    bundle = QmSecMethod(ah=Integrity.SHA1, esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA1)
    esp_only = QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA1)
    offer = wire(qm_sa_payload([bundle, esp_only], SPIS))
    c = match_qm(offer, [esp_only, bundle])
    assert c is not None and c.method == bundle  # initiator's first proposal wins
    assert [p.protocol_id for p in c.proposals] == [2, 3]
    assert {x.peer_spi for x in c.params} == set(SPIS.values())
    c2 = match_qm(offer, [esp_only])
    assert c2 is not None and c2.method == esp_only and c2.proposals[0].number == 2
    assert match_qm(offer, [QmSecMethod(esp_enc=EspEncryption.AES256, esp_auth=Integrity.SHA1)]) is None
    assert match_qm(offer, [esp_only], encapsulation=EncapsulationMode.TRANSPORT) is None


def test_qm_pfs_rules() -> None:
    m = QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA1)
    with_pfs = wire(qm_sa_payload([m], SPIS, pfs_group=14))
    without = wire(qm_sa_payload([m], SPIS))
    assert match_qm(without, [m], pfs_group=14) is None  # we require PFS
    assert match_qm(with_pfs, [m], pfs_group=2) is None  # wrong group
    c = match_qm(with_pfs, [m])  # accepted when we do not require it
    assert c is not None and c.params[0].group == 14
    assert match_qm(with_pfs, [m], pfs_group=14) is not None


def test_qm_unsupported() -> None:
    with pytest.raises(ProposalError):
        qm_sa_payload([QmSecMethod(esp_enc=EspEncryption.CHACHA20POLY1305)], SPIS)
    with pytest.raises(ProposalError):
        qm_sa_payload([QmSecMethod(esp_enc=EspEncryption.NONE, esp_auth=Integrity.NONE)], SPIS)
    with pytest.raises(ProposalError):
        qm_sa_payload([QmSecMethod()], SPIS)
    t = Transform(1, EspTransformId.ESP_AES, (Attribute(IpsecAttr.KEY_ROUNDS, 1),))
    offer = SaPayload(1, 1, (Proposal(1, 3, b"abcd", (t,)),))
    assert match_qm(offer, [QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA1)]) is None
