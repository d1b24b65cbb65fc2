"""IKEv2 proposals: building our SA payloads and choosing from a received one (RFC 7296 section 3.3).

An IKEv2 proposal lists, per transform type, the algorithms acceptable together; the responder
picks one transform of each type present and returns the proposal with exactly those (section
3.3.6: "the responder MUST choose a single suite ... and return it"). ``IkeAlgorithms`` /
``ChildAlgorithms`` are what ipsecd negotiates; ``ike_from_mm`` / ``child_from_qm`` map the policy
model's Main Mode and Quick Mode security methods onto them, and ``parse_ike`` / ``parse_esp`` read
the compact ``aes128gcm16-prfsha256-x25519`` spelling used by tests and the configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ipsecd.ike.dh import SUPPORTED_GROUPS
from ipsecd.ikev2.constants import EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType
from ipsecd.ikev2.crypto import CryptoError, SkSuite, prf_supported
from ipsecd.ikev2.payloads import TRANSFORM_TYPES, Proposal, SaPayload, Transform
from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod


class ProposalError(ValueError):
    """A security method IKEv2 (or ipsecd) cannot express, or a malformed proposal string."""


@dataclass(frozen=True)
class IkeAlgorithms:
    """One IKE SA proposal: a cipher suite, a PRF and the acceptable DH groups (ordered)."""

    suite: SkSuite
    prf: int
    groups: tuple[int, ...]

    def __post_init__(self) -> None:
        if not prf_supported(self.prf):
            raise ProposalError(f"unsupported PRF {self.prf}")
        if not self.groups or any(g not in SUPPORTED_GROUPS for g in self.groups):
            raise ProposalError("an IKE proposal needs supported DH groups")


@dataclass(frozen=True)
class ChildAlgorithms:
    """One ESP proposal; ``groups`` are the PFS groups offered in CREATE_CHILD_SA (may be empty)."""

    suite: SkSuite
    groups: tuple[int, ...] = ()
    esn: bool = False

    def __post_init__(self) -> None:
        if any(g not in SUPPORTED_GROUPS for g in self.groups):
            raise ProposalError("unsupported PFS group")


def _suite_transforms(s: SkSuite) -> list[Transform]:
    key_bits = None if s.encr == EncrId.ENCR_CHACHA20_POLY1305 else s.key_bits
    out = [Transform.of(TransformType.ENCR, s.encr, key_bits)]
    if not s.aead:
        out.append(Transform.of(TransformType.INTEG, s.integ))
    return out


def ike_proposal(number: int, algs: IkeAlgorithms, spi: bytes = b"", group: int | None = None) -> Proposal:
    """Our IKE proposal; ``group`` (if given) is listed first, the one our KE payload uses."""
    groups = list(algs.groups)
    if group is not None and group in groups:
        groups.remove(group)
        groups.insert(0, group)
    ts = _suite_transforms(algs.suite)
    ts.insert(1, Transform.of(TransformType.PRF, algs.prf))
    ts += [Transform.of(TransformType.DH, g) for g in groups]
    return Proposal(number, ProtocolId.IKE, spi, tuple(ts))


def ike_sa_payload(offer: Sequence[IkeAlgorithms], spi: bytes = b"", group: int | None = None) -> SaPayload:
    if not offer:
        raise ProposalError("no IKE proposals")
    return SaPayload(tuple(ike_proposal(i, a, spi, group) for i, a in enumerate(offer, start=1)))


def child_sa_payload(offer: Sequence[ChildAlgorithms], spi: bytes, pfs_group: int | None = None) -> SaPayload:
    """Our ESP offer; with ``pfs_group`` each proposal lists its DH groups (that one first)."""
    if not offer:
        raise ProposalError("no ESP proposals")
    props = []
    for i, a in enumerate(offer, start=1):
        ts = _suite_transforms(a.suite)
        if pfs_group is not None:
            groups = [pfs_group, *[g for g in a.groups if g != pfs_group]]
            ts += [Transform.of(TransformType.DH, g) for g in groups]
        ts.append(Transform.of(TransformType.ESN, EsnId.ESN if a.esn else EsnId.NO_ESN))
        props.append(Proposal(i, ProtocolId.ESP, spi, tuple(ts)))
    return SaPayload(tuple(props))


@dataclass(frozen=True)
class Choice:
    """A selected proposal: ``proposal`` holds one transform per type (what a responder returns,
    with its own SPI); ``peer_spi`` the SPI the proposer put in it."""

    proposal: Proposal
    suite: SkSuite
    prf: int | None
    group: int | None
    esn: bool
    peer_spi: bytes


def _suite_of(encr: Transform, integ: Transform | None) -> SkSuite | None:
    try:
        return SkSuite(encr.id, encr.key_length, integ.id if integ is not None else IntegId.NONE)
    except CryptoError:
        return None


def _pick(
    prop: Proposal, suite: SkSuite, prf: int | None, groups: Sequence[int], want_dh: bool, esn: bool
) -> tuple[list[Transform], int | None] | None:
    """The received transforms matching our suite, or None."""
    if any(t.type not in TRANSFORM_TYPES for t in prop.transforms):
        return None  # RFC 7296 section 3.3.6: a proposal with an unknown transform type is rejected
    chosen: list[Transform] = []
    hit = next((t for t in prop.of_type(TransformType.ENCR) if (t.id, t.key_length) == _key(suite)), None)
    if hit is None:
        return None
    chosen.append(hit)
    integs = prop.of_type(TransformType.INTEG)
    if suite.aead:
        if any(t.id != IntegId.NONE for t in integs):
            integs = ()  # an AEAD with an integrity transform: only NONE may be chosen (RFC 5282 section 8)
        if integs:
            chosen.append(integs[0])
    else:
        it = next((t for t in integs if t.id == suite.integ), None)
        if it is None:
            return None
        chosen.append(it)
    if prf is not None:
        p = next((t for t in prop.of_type(TransformType.PRF) if t.id == prf), None)
        if p is None:
            return None
        chosen.insert(1, p)
    dhs = prop.of_type(TransformType.DH)
    group = None
    offered = [t.id for t in dhs if t.id != 0]
    if want_dh:
        group = next((g for g in offered if g in groups), None)
        if group is None:
            return None
        chosen.append(Transform(TransformType.DH, group))
    elif offered and not any(t.id == 0 for t in dhs):
        return None  # the proposer insists on PFS and we did not ask for it
    esns = prop.of_type(TransformType.ESN)
    want_esn = EsnId.ESN if esn else EsnId.NO_ESN
    if esns:
        if not any(t.id == want_esn for t in esns):
            return None
        chosen.append(Transform(TransformType.ESN, want_esn))
    return chosen, group


def _key(suite: SkSuite) -> tuple[int, int | None]:
    return suite.encr, None if suite.encr == EncrId.ENCR_CHACHA20_POLY1305 else suite.key_bits


def choose_ike(received: SaPayload, ours: Sequence[IkeAlgorithms], ke_group: int | None) -> Choice | None:
    """The first received IKE proposal (in the initiator's order) matching one of ours. The DH group
    of the initiator's KE payload is chosen when acceptable (no extra round trip)."""
    for prop in received.proposals:
        if prop.protocol_id != ProtocolId.IKE or len(prop.spi) not in (0, 8):
            continue
        for a in ours:
            groups = list(a.groups)
            if ke_group in groups:
                groups.remove(ke_group)
                groups.insert(0, ke_group)
            got = _pick(prop, a.suite, a.prf, groups, True, False)
            if got is not None:
                chosen, group = got
                return Choice(
                    Proposal(prop.number, prop.protocol_id, b"", tuple(chosen)),
                    a.suite,
                    a.prf,
                    group,
                    False,
                    prop.spi,
                )
    return None


def choose_child(
    received: SaPayload, ours: Sequence[ChildAlgorithms], pfs_group: int | None
) -> Choice | None:
    """The first received ESP proposal matching one of ours; ``pfs_group``: the group of the
    request's KE payload (None: no KE, so no DH transform may be chosen)."""
    for prop in received.proposals:
        if prop.protocol_id != ProtocolId.ESP or len(prop.spi) != 4 or int.from_bytes(prop.spi, "big") < 256:
            continue  # RFC 4303 section 2.1: SPIs 1-255 are reserved, 0 is not sent
        for a in ours:
            groups = [pfs_group] if pfs_group is not None else []
            got = _pick(prop, a.suite, None, groups, pfs_group is not None, a.esn)
            if got is not None:
                chosen, group = got
                return Choice(
                    Proposal(prop.number, prop.protocol_id, b"", tuple(chosen)),
                    a.suite,
                    None,
                    group,
                    a.esn,
                    prop.spi,
                )
    return None


def check_response(offer: SaPayload, answer: SaPayload) -> Choice:
    """The responder's SA: one proposal, one transform of each type, all of them from our proposal
    of that number (RFC 7296 section 2.7). Raises ProposalError otherwise."""
    if len(answer.proposals) != 1:
        raise ProposalError("responder returned more than one proposal")
    got = answer.proposals[0]
    mine = next((p for p in offer.proposals if p.number == got.number), None)
    if mine is None or mine.protocol_id != got.protocol_id:
        raise ProposalError("responder chose a proposal number we did not offer")
    types = [t.type for t in got.transforms]
    if len(set(types)) != len(types):
        raise ProposalError("responder returned two transforms of one type")
    if any(t not in mine.transforms for t in got.transforms):
        raise ProposalError("responder returned a transform we did not offer")
    if set(types) != {t.type for t in mine.transforms}:
        raise ProposalError("responder left out a transform type")
    if got.protocol_id == ProtocolId.ESP and (len(got.spi) != 4 or int.from_bytes(got.spi, "big") < 256):
        raise ProposalError("responder's ESP SPI is reserved or of the wrong size")
    encr = got.of_type(TransformType.ENCR)[0]
    integ = got.of_type(TransformType.INTEG)
    suite = _suite_of(encr, integ[0] if integ else None)
    if suite is None:
        raise ProposalError("responder chose an unsupported suite")
    prf = got.of_type(TransformType.PRF)
    dh = got.of_type(TransformType.DH)
    esn = got.of_type(TransformType.ESN)
    return Choice(
        got,
        suite,
        prf[0].id if prf else None,
        dh[0].id if dh and dh[0].id else None,
        bool(esn and esn[0].id == EsnId.ESN),
        got.spi,
    )


# ---------------------------------------------------------------- the policy model and strings


_MM_ENC = {MmEncryption.AES128: 128, MmEncryption.AES192: 192, MmEncryption.AES256: 256}
_INTEG = {
    Integrity.SHA1: (IntegId.AUTH_HMAC_SHA1_96, PrfId.PRF_HMAC_SHA1),
    Integrity.SHA256: (IntegId.AUTH_HMAC_SHA2_256_128, PrfId.PRF_HMAC_SHA2_256),
    Integrity.SHA384: (IntegId.AUTH_HMAC_SHA2_384_192, PrfId.PRF_HMAC_SHA2_384),
    Integrity.SHA512: (IntegId.AUTH_HMAC_SHA2_512_256, PrfId.PRF_HMAC_SHA2_512),
}
_ESP_ENC = {
    EspEncryption.AES128: (EncrId.ENCR_AES_CBC, 128),
    EspEncryption.AES192: (EncrId.ENCR_AES_CBC, 192),
    EspEncryption.AES256: (EncrId.ENCR_AES_CBC, 256),
    EspEncryption.AESGCM128: (EncrId.ENCR_AES_GCM_16, 128),
    EspEncryption.AESGCM192: (EncrId.ENCR_AES_GCM_16, 192),
    EspEncryption.AESGCM256: (EncrId.ENCR_AES_GCM_16, 256),
    EspEncryption.CHACHA20POLY1305: (EncrId.ENCR_CHACHA20_POLY1305, 256),
}


def ike_from_mm(method: MmSecMethod) -> IkeAlgorithms:
    """``AES256-SHA256-14`` -> AES-CBC-256, HMAC-SHA2-256-128, PRF-HMAC-SHA2-256, group 14."""
    if method.encryption not in _MM_ENC or method.hash not in _INTEG:
        raise ProposalError(f"main mode method {method} has no IKEv2 equivalent in ipsecd")
    integ, prf = _INTEG[method.hash]
    return IkeAlgorithms(
        SkSuite(EncrId.ENCR_AES_CBC, _MM_ENC[method.encryption], integ), prf, (method.group,)
    )


def child_from_qm(method: QmSecMethod, pfs_groups: tuple[int, ...] = ()) -> ChildAlgorithms:
    """``ESP[AES128,SHA256]`` or ``ESP[AESGCM128]``; AH and ESP without encryption are refused."""
    if method.ah is not None or method.esp_enc not in _ESP_ENC:
        raise ProposalError(f"quick mode method {method} has no IKEv2 ESP equivalent in ipsecd")
    encr, bits = _ESP_ENC[method.esp_enc]
    if method.esp_enc.is_aead:
        return ChildAlgorithms(SkSuite(encr, bits), pfs_groups)
    if method.esp_auth not in _INTEG:
        raise ProposalError(f"quick mode method {method}: integrity not available")
    return ChildAlgorithms(SkSuite(encr, bits, _INTEG[method.esp_auth][0]), pfs_groups)


_GROUPS = {
    "modp2048": 14,
    "modp3072": 15,
    "modp4096": 16,
    "ecp256": 19,
    "ecp384": 20,
    "ecp521": 21,
    "x25519": 31,
    "curve25519": 31,
}
_HASHES = {
    "sha1": Integrity.SHA1,
    "sha256": Integrity.SHA256,
    "sha384": Integrity.SHA384,
    "sha512": Integrity.SHA512,
}


def _parse(text: str) -> tuple[SkSuite, int | None, tuple[int, ...], bool]:
    encr: tuple[int, int | None] | None = None
    integ: int | None = None
    prf: int | None = None
    groups: list[int] = []
    esn = False
    for tok in text.lower().split("-"):
        if tok in ("aes128", "aes192", "aes256"):
            encr = (EncrId.ENCR_AES_CBC, int(tok[3:]))
        elif tok in ("aes128gcm16", "aes192gcm16", "aes256gcm16"):
            encr = (EncrId.ENCR_AES_GCM_16, int(tok[3:6]))
        elif tok == "chacha20poly1305":
            encr = (EncrId.ENCR_CHACHA20_POLY1305, 256)
        elif tok in _HASHES:
            integ, implied = _INTEG[_HASHES[tok]]
            prf = prf or implied
        elif tok.startswith("prf") and tok[3:] in _HASHES:
            prf = _INTEG[_HASHES[tok[3:]]][1]
        elif tok in _GROUPS:
            groups.append(_GROUPS[tok])
        elif tok in ("esn", "noesn"):
            esn = tok == "esn"
        else:
            raise ProposalError(f"unknown algorithm {tok!r} in {text!r}")
    if encr is None:
        raise ProposalError(f"no encryption algorithm in {text!r}")
    try:
        suite = SkSuite(encr[0], encr[1], integ if integ is not None else IntegId.NONE)
    except CryptoError as e:
        raise ProposalError(f"{text!r}: {e}") from None
    return suite, prf, tuple(groups), esn


def parse_ike(text: str) -> IkeAlgorithms:
    """``aes128gcm16-prfsha256-x25519``, ``aes256-sha256-modp2048``, ``aes128-sha256-ecp256``."""
    suite, prf, groups, _ = _parse(text)
    if prf is None:
        raise ProposalError(f"no PRF in {text!r}")
    return IkeAlgorithms(suite, prf, groups)


def parse_esp(text: str) -> ChildAlgorithms:
    """``aes128gcm16``, ``aes256-sha256-modp2048`` (the group: PFS in CREATE_CHILD_SA)."""
    suite, _, groups, esn = _parse(text)
    return ChildAlgorithms(suite, groups, esn)
