"""Policy security methods to ISAKMP SA payloads, and matching a received SA payload against ours.

Main Mode (RFC 2409 section 5 and Appendix A): one PROTO_ISAKMP proposal whose transforms are our
``ENC-HASH-GROUP`` methods (one per method and authentication method, in order of preference).
Quick Mode (RFC 2407 sections 4.4-4.5, RFC 2408 section 4.2): one proposal number per security
method; ``AH[..]+ESP[..]`` is an AH and an ESP proposal sharing one number (a logical AND).

The responder picks the first acceptable choice in the initiator's order and must echo the chosen
transform unchanged (RFC 2408 section 4.2), so the matchers return the received objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ipsecd.ike.buffers import CodecError
from ipsecd.ike.constants import (
    DOI_IPSEC,
    AhTransformId,
    AuthAlgorithm,
    EncapsulationMode,
    EncryptionAlgorithm,
    EspTransformId,
    HashAlgorithm,
    IkeAttr,
    IpsecAttr,
    IsakmpTransformId,
    LifeType,
    ProtocolId,
    Situation,
)
from ipsecd.ike.dh import SUPPORTED_GROUPS
from ipsecd.ikev1.sa import Attribute, Proposal, SaPayload, Transform
from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod


class ProposalError(ValueError):
    """A security method that IKEv1 cannot express (e.g. ChaCha20-Poly1305, which has no IPsec DOI
    transform identifier)."""


_MM_ENC: dict[MmEncryption, tuple[int, int | None]] = {
    MmEncryption.DES3: (EncryptionAlgorithm.TRIPLE_DES_CBC, None),
    MmEncryption.AES128: (EncryptionAlgorithm.AES_CBC, 128),
    MmEncryption.AES192: (EncryptionAlgorithm.AES_CBC, 192),
    MmEncryption.AES256: (EncryptionAlgorithm.AES_CBC, 256),
}
_MM_HASH: dict[Integrity, int] = {
    Integrity.MD5: HashAlgorithm.MD5,
    Integrity.SHA1: HashAlgorithm.SHA,
    Integrity.SHA256: HashAlgorithm.SHA2_256,
    Integrity.SHA384: HashAlgorithm.SHA2_384,
    Integrity.SHA512: HashAlgorithm.SHA2_512,
}
# ESP encryption -> (transform ID, key length or None, combined mode?)
_ESP_ENC: dict[EspEncryption, tuple[int, int | None, bool]] = {
    EspEncryption.NONE: (EspTransformId.ESP_NULL, None, False),
    EspEncryption.DES3: (EspTransformId.ESP_3DES, None, False),
    EspEncryption.AES128: (EspTransformId.ESP_AES, 128, False),
    EspEncryption.AES192: (EspTransformId.ESP_AES, 192, False),
    EspEncryption.AES256: (EspTransformId.ESP_AES, 256, False),
    EspEncryption.AESGCM128: (EspTransformId.ESP_AES_GCM_16, 128, True),
    EspEncryption.AESGCM192: (EspTransformId.ESP_AES_GCM_16, 192, True),
    EspEncryption.AESGCM256: (EspTransformId.ESP_AES_GCM_16, 256, True),
    EspEncryption.AESGMAC128: (EspTransformId.ESP_NULL_AUTH_AES_GMAC, 128, True),
    EspEncryption.AESGMAC256: (EspTransformId.ESP_NULL_AUTH_AES_GMAC, 256, True),
}
_AUTH_ALG: dict[Integrity, int] = {
    Integrity.MD5: AuthAlgorithm.HMAC_MD5,
    Integrity.SHA1: AuthAlgorithm.HMAC_SHA,
    Integrity.SHA256: AuthAlgorithm.HMAC_SHA2_256,
    Integrity.SHA384: AuthAlgorithm.HMAC_SHA2_384,
    Integrity.SHA512: AuthAlgorithm.HMAC_SHA2_512,
}
_AH_ID: dict[Integrity, int] = {
    Integrity.MD5: AhTransformId.AH_MD5,
    Integrity.SHA1: AhTransformId.AH_SHA,
    Integrity.SHA256: AhTransformId.AH_SHA2_256,
    Integrity.SHA384: AhTransformId.AH_SHA2_384,
    Integrity.SHA512: AhTransformId.AH_SHA2_512,
}


def _life_attrs(type_attr: int, duration_attr: int, seconds: int, kilobytes: int) -> list[Attribute]:
    """Life attributes; a 0 lifetime is left out, so the RFC default applies (RFC 2407 section 4.5
    and RFC 2409 Appendix A: 28800 seconds)."""
    # RFC 2407 section 4.5 / RFC 2409 Appendix A: each Life Type precedes its Life Duration.
    out: list[Attribute] = []
    if seconds:
        out += [Attribute(type_attr, LifeType.SECONDS), Attribute.integer(duration_attr, seconds)]
    if kilobytes:
        out += [Attribute(type_attr, LifeType.KILOBYTES), Attribute.integer(duration_attr, kilobytes)]
    return out


# ------------------------------------------------------------------------------------ Main Mode


@dataclass(frozen=True)
class MmParams:
    """What a Main Mode transform negotiates."""

    encryption: int
    key_bits: int | None
    hash: int
    auth_method: int
    group: int
    life_seconds: int | None
    life_kilobytes: int | None


def mm_transform(number: int, method: MmSecMethod, auth_method: int, lifetime_s: int) -> Transform:
    enc, bits = _MM_ENC[method.encryption]
    if method.hash not in _MM_HASH:
        raise ProposalError(f"main mode hash {method.hash.value} is not available")
    if method.group not in SUPPORTED_GROUPS:
        raise ProposalError(f"DH group {method.group} is not supported")
    attrs = [Attribute(IkeAttr.ENCRYPTION_ALGORITHM, enc)]
    if bits is not None:
        attrs.append(Attribute(IkeAttr.KEY_LENGTH, bits))  # RFC 3602 section 5.3
    attrs += [
        Attribute(IkeAttr.HASH_ALGORITHM, _MM_HASH[method.hash]),
        Attribute(IkeAttr.AUTHENTICATION_METHOD, auth_method),
        Attribute(IkeAttr.GROUP_DESCRIPTION, method.group),
        *_life_attrs(IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION, lifetime_s, 0),
    ]
    return Transform(number, IsakmpTransformId.KEY_IKE, tuple(attrs))


def mm_sa_payload(methods: Sequence[MmSecMethod], auth_methods: Sequence[int], lifetime_s: int) -> SaPayload:
    """Our Main Mode offer: every method crossed with every authentication method, in order."""
    transforms: list[Transform] = []
    for m in methods:
        for auth in auth_methods:
            transforms.append(mm_transform(len(transforms) + 1, m, auth, lifetime_s))
    if not transforms:
        raise ProposalError("no main mode security methods")
    if len(transforms) > 255:
        raise ProposalError("more than 255 main mode transforms")
    proposal = Proposal(1, ProtocolId.PROTO_ISAKMP, b"", tuple(transforms))
    return SaPayload(DOI_IPSEC, Situation.SIT_IDENTITY_ONLY, (proposal,))


_MM_KNOWN_ATTRS = {
    IkeAttr.ENCRYPTION_ALGORITHM,
    IkeAttr.KEY_LENGTH,
    IkeAttr.HASH_ALGORITHM,
    IkeAttr.AUTHENTICATION_METHOD,
    IkeAttr.GROUP_DESCRIPTION,
    IkeAttr.LIFE_TYPE,
    IkeAttr.LIFE_DURATION,
}


def _lifetimes(
    attrs: Sequence[Attribute], type_attr: int, duration_attr: int
) -> tuple[int | None, int | None]:
    """Pairs each Life Type with the Life Duration after it (RFC 2407 section 4.5)."""
    seconds = kilobytes = None
    pending: int | None = None
    for a in attrs:
        if a.type == type_attr:
            pending = a.as_int()
        elif a.type == duration_attr:
            if pending == LifeType.SECONDS:
                seconds = a.as_int()
            elif pending == LifeType.KILOBYTES:
                kilobytes = a.as_int()
            else:
                raise ProposalError("life duration without a life type")
            pending = None
    return seconds, kilobytes


def parse_mm_transform(t: Transform) -> MmParams:
    """Reads a Main Mode transform; raises ProposalError if it is not one we can run."""
    if t.transform_id != IsakmpTransformId.KEY_IKE:
        raise ProposalError(f"ISAKMP transform ID {t.transform_id} is not KEY_IKE")
    types = [a.type for a in t.attributes]
    unknown = set(types) - {int(x) for x in _MM_KNOWN_ATTRS}
    if unknown:
        raise ProposalError(f"unsupported attributes {sorted(unknown)}")
    single = [x for x in _MM_KNOWN_ATTRS if x not in (IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION)]
    if any(types.count(x) > 1 for x in single):
        raise ProposalError("repeated attribute")

    def get(x: int) -> int | None:
        a = t.attr(x)
        try:
            return None if a is None else a.as_int()
        except CodecError as e:
            raise ProposalError(str(e)) from e

    enc, bits, hsh = get(IkeAttr.ENCRYPTION_ALGORITHM), get(IkeAttr.KEY_LENGTH), get(IkeAttr.HASH_ALGORITHM)
    auth, group = get(IkeAttr.AUTHENTICATION_METHOD), get(IkeAttr.GROUP_DESCRIPTION)
    if enc is None or hsh is None or auth is None or group is None:
        raise ProposalError("transform lacks a mandatory attribute")
    try:
        secs, kbs = _lifetimes(t.attributes, IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION)
    except CodecError as e:
        raise ProposalError(str(e)) from e
    return MmParams(enc, bits, hsh, auth, group, secs, kbs)


@dataclass(frozen=True)
class MmChoice:
    proposal: Proposal  # the received proposal reduced to the chosen transform, to send back
    params: MmParams
    method: MmSecMethod  # which of ours it matched


def match_mm(
    received: SaPayload, methods: Sequence[MmSecMethod], auth_methods: Sequence[int]
) -> MmChoice | None:
    """The first received transform (initiator's order) equal to one of our methods with an
    authentication method we accept; None: NO-PROPOSAL-CHOSEN."""
    if received.doi != DOI_IPSEC or received.situation != Situation.SIT_IDENTITY_ONLY:
        return None
    for prop in received.proposals:
        if prop.protocol_id != ProtocolId.PROTO_ISAKMP:
            continue
        for t in prop.transforms:
            try:
                p = parse_mm_transform(t)
            except ProposalError:
                continue
            if p.auth_method not in auth_methods:
                continue
            for m in methods:
                enc, bits = _MM_ENC[m.encryption]
                if (enc, bits, _MM_HASH.get(m.hash), m.group) == (p.encryption, p.key_bits, p.hash, p.group):
                    return MmChoice(Proposal(prop.number, prop.protocol_id, prop.spi, (t,)), p, m)
    return None


# ------------------------------------------------------------------------------------ Quick Mode


@dataclass(frozen=True)
class QmProtocolParams:
    """One protocol (AH or ESP) of a Quick Mode choice."""

    protocol: int
    transform_id: int
    auth_algorithm: int | None
    key_bits: int | None
    encapsulation: int
    group: int | None
    life_seconds: int | None
    life_kilobytes: int | None
    peer_spi: bytes


def _esp_transform(method: QmSecMethod, encap: int, pfs_group: int | None) -> Transform:
    assert method.esp_enc is not None
    if method.esp_enc not in _ESP_ENC:
        raise ProposalError(f"ESP[{method.esp_enc.value}] has no IKEv1 transform identifier")
    tid, bits, combined = _ESP_ENC[method.esp_enc]
    auth = None if combined or method.esp_auth in (None, Integrity.NONE) else method.esp_auth
    if tid == EspTransformId.ESP_NULL and auth is None:
        raise ProposalError("ESP[None,None] protects nothing")
    attrs = [Attribute(IpsecAttr.ENCAPSULATION_MODE, encap)]
    if auth is not None:
        attrs.append(Attribute(IpsecAttr.AUTH_ALGORITHM, _AUTH_ALG[auth]))
    if bits is not None:
        attrs.append(Attribute(IpsecAttr.KEY_LENGTH, bits))
    return Transform(1, tid, _common_attrs(attrs, method, pfs_group))


def _ah_transform(method: QmSecMethod, encap: int, pfs_group: int | None) -> Transform:
    assert method.ah is not None
    if method.ah not in _AH_ID:
        raise ProposalError(f"AH[{method.ah.value}] is not available")
    # RFC 2407 section 4.4.3: the AH transform ID and the Authentication Algorithm attribute agree.
    attrs = [
        Attribute(IpsecAttr.ENCAPSULATION_MODE, encap),
        Attribute(IpsecAttr.AUTH_ALGORITHM, _AUTH_ALG[method.ah]),
    ]
    return Transform(1, _AH_ID[method.ah], _common_attrs(attrs, method, pfs_group))


def _common_attrs(
    attrs: list[Attribute], method: QmSecMethod, pfs_group: int | None
) -> tuple[Attribute, ...]:
    attrs += _life_attrs(
        IpsecAttr.SA_LIFE_TYPE, IpsecAttr.SA_LIFE_DURATION, method.lifetime_s, method.lifetime_kb
    )
    if pfs_group is not None:
        attrs.append(Attribute(IpsecAttr.GROUP_DESCRIPTION, pfs_group))  # RFC 2407 section 4.5
    return tuple(attrs)


def qm_sa_payload(
    methods: Sequence[QmSecMethod],
    spis: dict[int, bytes],
    encapsulation: int = EncapsulationMode.TUNNEL,
    pfs_group: int | None = None,
) -> SaPayload:
    """Our Quick Mode offer; ``spis`` maps PROTO_IPSEC_AH / PROTO_IPSEC_ESP to our inbound SPIs."""
    proposals: list[Proposal] = []
    for number, m in enumerate(methods, start=1):
        if m.ah is None and m.esp_enc is None:
            raise ProposalError("a quick mode method needs AH or ESP")
        if m.ah is not None:
            proposals.append(
                Proposal(
                    number,
                    ProtocolId.PROTO_IPSEC_AH,
                    spis[ProtocolId.PROTO_IPSEC_AH],
                    (_ah_transform(m, encapsulation, pfs_group),),
                )
            )
        if m.esp_enc is not None:
            proposals.append(
                Proposal(
                    number,
                    ProtocolId.PROTO_IPSEC_ESP,
                    spis[ProtocolId.PROTO_IPSEC_ESP],
                    (_esp_transform(m, encapsulation, pfs_group),),
                )
            )
    if not proposals:
        raise ProposalError("no quick mode security methods")
    return SaPayload(DOI_IPSEC, Situation.SIT_IDENTITY_ONLY, tuple(proposals))


_QM_KNOWN_ATTRS = {
    IpsecAttr.SA_LIFE_TYPE,
    IpsecAttr.SA_LIFE_DURATION,
    IpsecAttr.GROUP_DESCRIPTION,
    IpsecAttr.ENCAPSULATION_MODE,
    IpsecAttr.AUTH_ALGORITHM,
    IpsecAttr.KEY_LENGTH,
}


def parse_qm_transform(protocol: int, spi: bytes, t: Transform) -> QmProtocolParams:
    types = [a.type for a in t.attributes]
    unknown = set(types) - {int(x) for x in _QM_KNOWN_ATTRS}
    if unknown:
        raise ProposalError(f"unsupported attributes {sorted(unknown)}")
    single = (
        IpsecAttr.GROUP_DESCRIPTION,
        IpsecAttr.ENCAPSULATION_MODE,
        IpsecAttr.AUTH_ALGORITHM,
        IpsecAttr.KEY_LENGTH,
    )
    if any(types.count(x) > 1 for x in single):
        raise ProposalError("repeated attribute")
    try:
        vals = {x: (a.as_int() if (a := t.attr(x)) is not None else None) for x in single}
        secs, kbs = _lifetimes(t.attributes, IpsecAttr.SA_LIFE_TYPE, IpsecAttr.SA_LIFE_DURATION)
    except CodecError as e:
        raise ProposalError(str(e)) from e
    encap = vals[IpsecAttr.ENCAPSULATION_MODE]
    if encap is None:
        # RFC 2407 section 4.5 leaves a missing Encapsulation Mode host-dependent; ipsecd reads it
        # as transport, the only mode a peer could mean without saying so.
        encap = EncapsulationMode.TRANSPORT
    return QmProtocolParams(
        protocol,
        t.transform_id,
        vals[IpsecAttr.AUTH_ALGORITHM],
        vals[IpsecAttr.KEY_LENGTH],
        encap,
        vals[IpsecAttr.GROUP_DESCRIPTION],
        secs,
        kbs,
        spi,
    )


@dataclass(frozen=True)
class QmChoice:
    proposals: tuple[Proposal, ...]  # received proposals of one number, each cut to one transform
    params: tuple[QmProtocolParams, ...]
    method: QmSecMethod


def _wanted(method: QmSecMethod, encap: int, pfs_group: int | None) -> dict[int, Transform]:
    want: dict[int, Transform] = {}
    if method.ah is not None:
        want[ProtocolId.PROTO_IPSEC_AH] = _ah_transform(method, encap, pfs_group)
    if method.esp_enc is not None:
        want[ProtocolId.PROTO_IPSEC_ESP] = _esp_transform(method, encap, pfs_group)
    return want


def _same_algorithms(ours: Transform, protocol: int, got: QmProtocolParams) -> bool:
    mine = parse_qm_transform(protocol, b"", ours)
    return (mine.transform_id, mine.auth_algorithm, mine.key_bits, mine.encapsulation) == (
        got.transform_id,
        got.auth_algorithm,
        got.key_bits,
        got.encapsulation,
    )


def match_qm(
    received: SaPayload,
    methods: Sequence[QmSecMethod],
    encapsulation: int = EncapsulationMode.TUNNEL,
    pfs_group: int | None = None,
) -> QmChoice | None:
    """The first received proposal number (initiator's order) whose proposals all match one of our
    methods. With ``pfs_group`` set, PFS with that group is required; without it, a PFS group the
    initiator asks for is accepted when supported (and must then be the same in every transform)."""
    if received.doi != DOI_IPSEC:
        return None
    groups: dict[int, list[Proposal]] = {}
    for p in received.proposals:
        groups.setdefault(p.number, []).append(p)
    for props in groups.values():
        protocols = [p.protocol_id for p in props]
        if len(set(protocols)) != len(protocols):
            continue
        for m in methods:
            try:
                want = _wanted(m, encapsulation, pfs_group)
            except ProposalError:
                continue
            if set(want) != set(protocols):
                continue
            chosen: list[Proposal] = []
            params: list[QmProtocolParams] = []
            for p in props:
                for t in p.transforms:
                    try:
                        got = parse_qm_transform(p.protocol_id, p.spi, t)
                    except ProposalError:
                        continue
                    if not _same_algorithms(want[p.protocol_id], p.protocol_id, got):
                        continue
                    if pfs_group is not None and got.group != pfs_group:
                        continue
                    if got.group is not None and got.group not in SUPPORTED_GROUPS:
                        continue
                    chosen.append(Proposal(p.number, p.protocol_id, p.spi, (t,)))
                    params.append(got)
                    break
            if len(chosen) == len(props) and len({x.group for x in params}) == 1:
                return QmChoice(tuple(chosen), tuple(params), m)
    return None
