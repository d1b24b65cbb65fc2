"""Quick Mode, sans-I/O: RFC 2409 section 5.5, with the IPsec DOI of RFC 2407 and RFC 3947 NAT-T.

    Initiator                          Responder
   -----------                        -----------
    HDR*, HASH(1), SA, Ni
      [, KE ] [, IDci, IDcr ]   -->
                                <--    HDR*, HASH(2), SA, Nr
                                             [, KE ] [, IDci, IDcr ]
    HDR*, HASH(3)               -->

HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ])
HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ])
HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)

One ``QuickMode`` runs one exchange over an established ``Phase1Sa``. Everything it receives is
encrypted under the ISAKMP SA and authenticated by HASH(n): a datagram that does not decrypt, parse
and verify is dropped without any state change (the IV chain moves only on a verified message).
The result is a ``ChildSa``: one ``SAParams`` per direction (two more for AH+ESP) for
``ipsecd.datapath``, keyed from KEYMAT (RFC 2409 section 5.5), with lifetimes, NAT-T encapsulation
(RFC 3948) and selectors. PFS (``QmPolicy.pfs_group``) adds a KE exchange in the Quick Mode.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ipsecd.datapath.sa import (
    INTEG_INFO,
    SALT_LEN,
    EncAlg,
    IntegAlg,
    Lifetimes,
    Mode,
    Protocol,
    SAParams,
    TunnelAddrs,
    UdpEncap,
)
from ipsecd.ike import crypto
from ipsecd.ike.buffers import CodecError, Reader, Writer
from ipsecd.ike.constants import (
    DOI_IPSEC,
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    ExchangeType,
    IpsecAttr,
    NotifyType,
    ProtocolId,
)
from ipsecd.ike.dh import DhError, DhKey, DhProvider, public_value_length
from ipsecd.ike.proposals import QmChoice, QmProtocolParams, match_qm, qm_sa_payload
from ipsecd.ikev1 import codec
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.main_mode import Address, Phase1Sa
from ipsecd.ikev1.payloads import (
    HashPayload,
    IdPayload,
    KePayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
)
from ipsecd.ikev1.sa import Attribute, SaPayload, decode_attributes
from ipsecd.ikev1.selectors import IPAddress, TrafficSelector, datapath_selectors, selectors_of_filter
from ipsecd.policy.model import FilterAction, QmSecMethod
from ipsecd.policy.order import SpecificFilter

QM = ExchangeType.QUICK_MODE
NONCE_LEN = 32
DEFAULT_LIFE_S = 28800  # RFC 2407 section 4.5: the default when no lifetime is proposed
SOFT_FRACTION = 0.9  # rekey at 90 % of a lifetime (the session adds its own margin)

_ENC: dict[int, EncAlg] = {
    EspTransformId.ESP_3DES: EncAlg.ENCR_3DES,
    EspTransformId.ESP_NULL: EncAlg.ENCR_NULL,
    EspTransformId.ESP_AES: EncAlg.ENCR_AES_CBC,
    EspTransformId.ESP_AES_GCM_16: EncAlg.ENCR_AES_GCM_16,
    EspTransformId.ESP_NULL_AUTH_AES_GMAC: EncAlg.ENCR_NULL_AUTH_AES_GMAC,
}
_INTEG: dict[int, IntegAlg] = {
    AuthAlgorithm.HMAC_MD5: IntegAlg.AUTH_HMAC_MD5_96,  # RFC 2403
    AuthAlgorithm.HMAC_SHA: IntegAlg.AUTH_HMAC_SHA1_96,  # RFC 2404
    AuthAlgorithm.HMAC_SHA2_256: IntegAlg.AUTH_HMAC_SHA2_256_128,  # RFC 4868
    AuthAlgorithm.HMAC_SHA2_384: IntegAlg.AUTH_HMAC_SHA2_384_192,
    AuthAlgorithm.HMAC_SHA2_512: IntegAlg.AUTH_HMAC_SHA2_512_256,
}


PFS_MAIN_MODE_GROUP = -1  # QmPolicy.pfs_group: PFS with the Main Mode's group (the ``qmpfs`` flag)


class QmError(ValueError):
    """A negotiated transform the data path cannot run."""


@dataclass(frozen=True)
class QmPolicy:
    """What one side wants from a Quick Mode: the filter action's methods (preference order), PFS
    (``qmpfs``: the Main Mode group), tunnel or transport, and the selectors (None: no ID payloads,
    the Phase 1 addresses are the selectors, RFC 2409 section 5.5)."""

    methods: tuple[QmSecMethod, ...]
    pfs_group: int | None = None
    tunnel: bool = True
    local_ts: TrafficSelector | None = None
    remote_ts: TrafficSelector | None = None
    replay_window: int = 64

    @classmethod
    def from_filter_action(cls, fa: FilterAction, sf: SpecificFilter, replay_window: int = 64) -> QmPolicy:
        """The policy of an outbound specific filter of a Negotiate rule: its filter action's methods
        in preference order, ``qmpfs``, tunnel mode when the rule has a tunnel endpoint, and the
        filter's addresses, protocol and ports as selectors (RFC 2409 section 5.5 IDci / IDcr)."""
        local, remote = selectors_of_filter(sf)
        pfs = PFS_MAIN_MODE_GROUP if fa.qmpfs else None
        return cls(fa.qmsecmethods, pfs, sf.tunnel is not None, local, remote, replay_window)

    def resolved(self, mm_group: int) -> QmPolicy:
        if self.pfs_group != PFS_MAIN_MODE_GROUP:
            return self
        return replace(self, pfs_group=mm_group)


@dataclass(frozen=True)
class ChildSa:
    """A negotiated IPsec SA pair. ``inbound``/``outbound`` are ESP (AH for AH-only methods);
    ``ah_inbound``/``ah_outbound`` the AH half of an AH+ESP bundle."""

    initiator: bool
    message_id: int
    method: QmSecMethod
    inbound: SAParams
    outbound: SAParams
    local_ts: TrafficSelector
    remote_ts: TrafficSelector
    life_seconds: int
    life_kilobytes: int
    pfs_group: int | None
    ah_inbound: SAParams | None = None
    ah_outbound: SAParams | None = None

    @property
    def spis(self) -> tuple[int, ...]:
        """Our inbound SPIs (what a DELETE from us names)."""
        return tuple(p.spi for p in (self.inbound, self.ah_inbound) if p is not None)


@dataclass(frozen=True)
class QmStep:
    send: bytes | None = None
    established: ChildSa | None = None
    dropped: str | None = None
    failed: str | None = None
    notify: int | None = None


class QmState(enum.Enum):
    START = "start"
    I_SENT_1 = "initiator sent HASH(1)"
    R_SENT_2 = "responder sent HASH(2)"
    DONE = "done"
    FAILED = "failed"


class _Drop(Exception):
    pass


class _Fail(Exception):
    def __init__(self, reason: str, notify: int) -> None:
        super().__init__(reason)
        self.notify = notify


Lookup = Callable[[TrafficSelector, TrafficSelector], QmPolicy | None]


def _spi(rng: Callable[[int], bytes]) -> bytes:
    for _ in range(16):
        s = rng(4)
        if int.from_bytes(s, "big") >= 256:  # RFC 4303 section 2.1: 1..255 are reserved
            return s
    raise RuntimeError("random source gives no usable SPI")


def _host_ts(addr: Address) -> TrafficSelector:
    return TrafficSelector(addr[0], addr[0])


def _readdress(ts: TrafficSelector, addr: Address) -> TrafficSelector:
    """A host ID moved to the address the NAT gave it (transport mode); ranges are left alone."""
    if ts.first != ts.last or ts.version != addr[0].version:
        return ts
    return TrafficSelector(addr[0], addr[0], ts.protocol, ts.port)


class QuickMode:
    """One Quick Mode exchange; ``QuickMode.initiator(...)`` or ``QuickMode.responder(...)``."""

    def __init__(
        self,
        p1: Phase1Sa,
        message_id: int,
        *,
        initiator: bool,
        local: Address,
        peer: Address,
        rng: Callable[[int], bytes],
        dh: DhProvider,
        policy: QmPolicy | None = None,
        lookup: Lookup | None = None,
    ) -> None:
        if not 0 < message_id < 1 << 32:
            raise ValueError("Quick Mode message ID must be non-zero")
        self.p1 = p1
        self.message_id = message_id
        self.is_initiator = initiator
        self._local, self._peer = local, peer
        self._rng, self._dh_provider = rng, dh
        self._policy = policy.resolved(p1.params.group) if policy is not None else None
        self._lookup = lookup
        self.state = QmState.START
        self._alg = p1.params.hash
        self._iv = crypto.phase2_iv(self._alg, p1.last_block, message_id, p1.cipher.block_size)
        self._ni = self._nr = b""
        self._my_spis: dict[int, bytes] = {}
        self._dh: DhKey | None = None
        self._gqm: bytes | None = None
        self._choice: QmChoice | None = None
        self._ids: tuple[IdPayload, IdPayload] | None = None
        self._resp_life: dict[int, tuple[int | None, int | None]] = {}
        self._last_in: bytes | None = None
        self._last_out: bytes | None = None
        self._result: ChildSa | None = None
        # RFC 3947 section 5.2: (NAT-OAi, NAT-OAr) the peer sent, in transport mode over a NAT.
        self.original: tuple[IPAddress, IPAddress] | None = None

    @classmethod
    def initiator(
        cls,
        p1: Phase1Sa,
        message_id: int,
        policy: QmPolicy,
        *,
        local: Address,
        peer: Address,
        rng: Callable[[int], bytes],
        dh: DhProvider,
    ) -> QuickMode:
        return cls(p1, message_id, initiator=True, local=local, peer=peer, rng=rng, dh=dh, policy=policy)

    @classmethod
    def responder(
        cls,
        p1: Phase1Sa,
        message_id: int,
        lookup: Lookup,
        *,
        local: Address,
        peer: Address,
        rng: Callable[[int], bytes],
        dh: DhProvider,
    ) -> QuickMode:
        return cls(p1, message_id, initiator=False, local=local, peer=peer, rng=rng, dh=dh, lookup=lookup)

    @property
    def natt(self) -> bool:
        return self.p1.nat_detected

    @property
    def policy(self) -> QmPolicy | None:
        return self._policy

    def _encap(self, tunnel: bool) -> int:
        if self.natt:  # RFC 3947 section 5.1
            return (
                EncapsulationMode.UDP_ENCAPSULATED_TUNNEL
                if tunnel
                else EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT
            )
        return EncapsulationMode.TUNNEL if tunnel else EncapsulationMode.TRANSPORT

    # ------------------------------------------------------------------ wire helpers

    def _header(self) -> Header:
        return Header(self.p1.cky_i, self.p1.cky_r, QM, 0, self.message_id)

    def _send(self, payloads: Sequence[Payload]) -> bytes:
        first, body = codec.encode_payloads(list(payloads))
        ct, self._iv = crypto.cbc_encrypt(self.p1.cipher, self.p1.keys.enc_key, self._iv, body)
        self._last_out = codec.encode_encrypted(self._header(), first, ct)
        return self._last_out

    def _hashed(self, make: Callable[[bytes], bytes], rest: Sequence[Payload]) -> list[Payload]:
        _, rest_b = codec.encode_payloads(list(rest))
        return [HashPayload(make(rest_b)), *rest]

    def _open(self, data: bytes) -> tuple[Message, bytes]:
        """Decrypts; returns the message and the IV that follows it (applied only once verified)."""
        h, body = codec.split(data)
        if h.exchange_type != QM or h.message_id != self.message_id:
            raise _Drop("not this Quick Mode")
        if (h.icookie, h.rcookie) != (self.p1.cky_i, self.p1.cky_r):
            raise _Drop("cookies of another ISAKMP SA")
        if not h.encrypted:
            raise _Drop("Quick Mode message not encrypted")
        pt, next_iv = crypto.cbc_decrypt(self.p1.cipher, self.p1.keys.enc_key, self._iv, body)
        msg = codec.decode_body(h, pt, padded=True)
        if not msg.payloads or not isinstance(msg.payloads[0], HashPayload):
            raise _Drop("Quick Mode message does not start with HASH")
        return msg, next_iv

    @staticmethod
    def _one(msg: Message, cls: type[Payload], what: str, required: bool = True) -> Payload | None:
        found = msg.find(cls)
        if len(found) > 1 or (required and not found):
            raise _Drop(f"expected one {what} payload, got {len(found)}")
        return found[0] if found else None

    # ------------------------------------------------------------------ entry points

    def start(self) -> bytes:
        if not self.is_initiator or self.state is not QmState.START:
            raise RuntimeError("start() is for a new initiator")
        pol = self._policy
        assert pol is not None
        protos = {ProtocolId.PROTO_IPSEC_AH, ProtocolId.PROTO_IPSEC_ESP}
        self._my_spis = {int(p): _spi(self._rng) for p in protos}
        sa = qm_sa_payload(pol.methods, self._my_spis, self._encap(pol.tunnel), pol.pfs_group)
        self._ni = self._rng(NONCE_LEN)
        rest: list[Payload] = [sa, NoncePayload(self._ni)]
        if pol.pfs_group is not None:
            self._dh = self._dh_provider.generate(pol.pfs_group)
            rest.append(KePayload(self._dh.public_value()))
        if pol.local_ts is not None and pol.remote_ts is not None:
            self._ids = (pol.local_ts.to_id(), pol.remote_ts.to_id())
            rest += self._ids
            if self.natt and not pol.tunnel:  # RFC 3947 section 5.2: NAT-OAi, NAT-OAr
                rest += [NatOaPayload(self._local[0]), NatOaPayload(self._peer[0])]
        mid = self.message_id
        self.state = QmState.I_SENT_1
        return self._send(
            self._hashed(lambda b: crypto.qm_hash1(self._alg, self.p1.keys.skeyid_a, mid, b), rest)
        )

    def receive(self, data: bytes) -> QmStep:
        if self._last_in is not None and data == self._last_in and self._last_out is not None:
            return QmStep(send=self._last_out, dropped="retransmission")
        if self.state in (QmState.DONE, QmState.FAILED) or (
            self.is_initiator and self.state is QmState.START
        ):
            return QmStep(dropped=f"Quick Mode {self.state.value}")
        try:
            step = self._dispatch(data)
        except (CodecError, crypto.CryptoError, _Drop) as e:
            return QmStep(dropped=str(e) or type(e).__name__)
        except _Fail as e:
            self.state = QmState.FAILED
            return QmStep(failed=str(e), notify=e.notify)
        self._last_in = data
        return step

    def _dispatch(self, data: bytes) -> QmStep:
        msg, next_iv = self._open(data)
        if self.state is QmState.START:
            return self._r_msg1(msg, next_iv)
        if self.state is QmState.I_SENT_1:
            return self._i_msg2(msg, next_iv)
        if self.state is QmState.R_SENT_2:
            return self._r_msg3(msg, next_iv)
        raise _Drop(f"nothing expected in state {self.state.value}")

    # ------------------------------------------------------------------ responder

    def _r_msg1(self, msg: Message, next_iv: bytes) -> QmStep:
        assert isinstance(msg.payloads[0], HashPayload)
        want = crypto.qm_hash1(
            self._alg, self.p1.keys.skeyid_a, self.message_id, b"".join(msg.raw_payloads[1:])
        )
        if not hmac.compare_digest(want, msg.payloads[0].data):
            raise _Drop("HASH(1) does not verify")
        self._iv = next_iv  # authenticated: from here on this exchange is real
        sa = self._one(msg, SaPayload, "SA")
        nonce = self._one(msg, NoncePayload, "Nonce")
        ke = self._one(msg, KePayload, "KE", required=False)
        assert isinstance(sa, SaPayload) and isinstance(nonce, NoncePayload)
        self._ni = nonce.data
        ids = msg.find(IdPayload)
        if len(ids) not in (0, 2):
            raise _Fail("Quick Mode with one ID payload", NotifyType.INVALID_ID_INFORMATION)
        if ids:
            assert isinstance(ids[0], IdPayload) and isinstance(ids[1], IdPayload)
            self._ids = (ids[0], ids[1])
            try:
                remote_ts, local_ts = TrafficSelector.from_id(ids[0]), TrafficSelector.from_id(ids[1])
            except (CodecError, ValueError) as e:
                raise _Fail(f"ID payload: {e}", NotifyType.INVALID_ID_INFORMATION) from None
        else:
            local_ts, remote_ts = _host_ts(self._local), _host_ts(self._peer)
        oas = [p for p in msg.payloads if isinstance(p, NatOaPayload)]
        if ids and self.natt and oas:
            if len(oas) != 2:
                raise _Fail("Quick Mode with one NAT-OA payload", NotifyType.PAYLOAD_MALFORMED)
            # RFC 3947 section 5.2: transport mode over a NAT. The IDs carry the original addresses
            # (NAT-OAi, NAT-OAr); our packets carry the translated ones, which the filters, the
            # selectors and the data path see: the addresses of the IKE exchange. Ports and
            # protocol of the IDs stay.
            self.original = (oas[0].address, oas[1].address)
            remote_ts = _readdress(remote_ts, self._peer)
            local_ts = _readdress(local_ts, self._local)
        assert self._lookup is not None
        pol = self._lookup(local_ts, remote_ts)
        if pol is None:
            raise _Fail(f"no policy for {remote_ts} -> {local_ts}", NotifyType.INVALID_ID_INFORMATION)
        pol = pol.resolved(self.p1.params.group)
        self._policy = QmPolicy(
            pol.methods, pol.pfs_group, pol.tunnel, local_ts, remote_ts, pol.replay_window
        )
        choice = match_qm(sa, pol.methods, self._encap(pol.tunnel), pol.pfs_group)
        if choice is None:
            raise _Fail("no proposal chosen", NotifyType.NO_PROPOSAL_CHOSEN)
        group = choice.params[0].group
        if (group is None) != (ke is None):
            raise _Fail("KE payload and PFS group disagree", NotifyType.INVALID_KEY_INFORMATION)
        rest: list[Payload] = []
        self._choice = choice
        self._my_spis = {p.protocol: _spi(self._rng) for p in choice.params}
        proposals = tuple(
            type(p)(p.number, p.protocol_id, self._my_spis[p.protocol_id], p.transforms)
            for p in choice.proposals
        )
        self._nr = self._rng(NONCE_LEN)
        rest += [SaPayload(DOI_IPSEC, sa.situation, proposals), NoncePayload(self._nr)]
        if group is not None:
            assert isinstance(ke, KePayload)
            if len(ke.data) != public_value_length(group):
                raise _Fail("KE of the wrong length", NotifyType.INVALID_KEY_INFORMATION)
            self._dh = self._dh_provider.generate(group)
            try:
                self._gqm = self._dh.shared_secret(ke.data)
            except DhError as e:
                raise _Fail(str(e), NotifyType.INVALID_KEY_INFORMATION) from None
            rest.append(KePayload(self._dh.public_value()))
        if self._ids is not None:
            rest += self._ids
            if self.original is not None:
                # RFC 3947 section 5.2: the responder's NAT-OAi (the initiator as we see it) and
                # NAT-OAr (our own address).
                rest += [NatOaPayload(self._peer[0]), NatOaPayload(self._local[0])]
        rest += self._responder_lifetimes(pol)
        mid, ni = self.message_id, self._ni
        self.state = QmState.R_SENT_2
        out = self._send(
            self._hashed(lambda b: crypto.qm_hash2(self._alg, self.p1.keys.skeyid_a, mid, ni, b), rest)
        )
        return QmStep(send=out)

    def _responder_lifetimes(self, pol: QmPolicy) -> list[Payload]:
        """RFC 2407 section 4.6.3.1: accept a longer proposed lifetime but say ours is shorter."""
        assert self._choice is not None
        out: list[Payload] = []
        m = self._choice.method
        for p in self._choice.params:
            secs = (
                p.life_seconds
                if p.life_seconds is not None
                else (None if p.life_kilobytes else DEFAULT_LIFE_S)
            )
            attrs: list[Attribute] = []
            new_s, new_k = p.life_seconds, p.life_kilobytes
            if m.lifetime_s and (secs is None or secs > m.lifetime_s):
                attrs += [
                    Attribute(IpsecAttr.SA_LIFE_TYPE, 1),
                    Attribute.integer(IpsecAttr.SA_LIFE_DURATION, m.lifetime_s),
                ]
                new_s = m.lifetime_s
            if m.lifetime_kb and (p.life_kilobytes is None or p.life_kilobytes > m.lifetime_kb):
                attrs += [
                    Attribute(IpsecAttr.SA_LIFE_TYPE, 2),
                    Attribute.integer(IpsecAttr.SA_LIFE_DURATION, m.lifetime_kb),
                ]
                new_k = m.lifetime_kb
            self._resp_life[p.protocol] = (new_s, new_k)
            if attrs:
                data = b"".join(_attr_bytes(a) for a in attrs)
                spi = self._my_spis[p.protocol]
                out.append(NotifyPayload(DOI_IPSEC, p.protocol, NotifyType.RESPONDER_LIFETIME, spi, data))
        return out

    def _r_msg3(self, msg: Message, next_iv: bytes) -> QmStep:
        assert isinstance(msg.payloads[0], HashPayload)
        want = crypto.qm_hash3(self._alg, self.p1.keys.skeyid_a, self.message_id, self._ni, self._nr)
        if not hmac.compare_digest(want, msg.payloads[0].data):
            raise _Drop("HASH(3) does not verify")
        self._iv = next_iv
        self.state = QmState.DONE
        self._result = self._child()
        return QmStep(established=self._result)

    # ------------------------------------------------------------------ initiator

    def _i_msg2(self, msg: Message, next_iv: bytes) -> QmStep:
        assert isinstance(msg.payloads[0], HashPayload) and self._policy is not None
        rest_b = b"".join(msg.raw_payloads[1:])
        want = crypto.qm_hash2(self._alg, self.p1.keys.skeyid_a, self.message_id, self._ni, rest_b)
        if not hmac.compare_digest(want, msg.payloads[0].data):
            raise _Drop("HASH(2) does not verify")
        pol = self._policy
        sa = self._one(msg, SaPayload, "SA")
        nonce = self._one(msg, NoncePayload, "Nonce")
        ke = self._one(msg, KePayload, "KE", required=False)
        assert isinstance(sa, SaPayload) and isinstance(nonce, NoncePayload)
        choice = match_qm(sa, pol.methods, self._encap(pol.tunnel), pol.pfs_group)
        if choice is None or len({p.number for p in sa.proposals}) != 1:
            raise _Fail("responder chose a proposal we did not offer", NotifyType.NO_PROPOSAL_CHOSEN)
        if (pol.pfs_group is None) != (ke is None):
            raise _Fail("PFS KE payload missing or unexpected", NotifyType.INVALID_KEY_INFORMATION)
        ids = tuple(p for p in msg.payloads if isinstance(p, IdPayload))
        if self._ids is not None and ids and ids != self._ids:
            raise _Fail("responder changed the ID payloads", NotifyType.INVALID_ID_INFORMATION)
        if ke is not None:
            assert isinstance(ke, KePayload) and self._dh is not None
            try:
                self._gqm = self._dh.shared_secret(ke.data)
            except DhError as e:
                raise _Fail(str(e), NotifyType.INVALID_KEY_INFORMATION) from None
        oas = [p for p in msg.payloads if isinstance(p, NatOaPayload)]
        if self.natt and len(oas) == 2:  # RFC 3947 section 5.2: the responder's view
            self.original = (oas[0].address, oas[1].address)
        for n in msg.payloads:
            if isinstance(n, NotifyPayload) and n.notify_type == NotifyType.RESPONDER_LIFETIME:
                self._apply_responder_lifetime(n)
        self._iv = next_iv
        self._nr = nonce.data
        self._choice = choice
        h3 = crypto.qm_hash3(self._alg, self.p1.keys.skeyid_a, self.message_id, self._ni, self._nr)
        out = self._send([HashPayload(h3)])
        self.state = QmState.DONE
        self._result = self._child()
        return QmStep(send=out, established=self._result)

    def _apply_responder_lifetime(self, n: NotifyPayload) -> None:
        try:
            attrs = decode_attributes(Reader(n.data))
            pending: int | None = None
            secs = kbs = None
            for a in attrs:
                if a.type == IpsecAttr.SA_LIFE_TYPE:
                    pending = a.as_int()
                elif a.type == IpsecAttr.SA_LIFE_DURATION:
                    if pending == 1:
                        secs = a.as_int()
                    elif pending == 2:
                        kbs = a.as_int()
        except CodecError:
            return  # an unreadable status notify changes nothing
        self._resp_life[n.protocol_id] = (secs, kbs)

    # ------------------------------------------------------------------ result

    def _lifetimes(self, p: QmProtocolParams) -> tuple[int, int]:
        secs, kbs = p.life_seconds, p.life_kilobytes
        rs, rk = self._resp_life.get(p.protocol, (None, None))
        if rs is not None:
            secs = rs if secs is None else min(secs, rs)
        if rk is not None:
            kbs = rk if kbs is None else min(kbs, rk)
        if secs is None and kbs is None:
            secs = DEFAULT_LIFE_S
        return secs or 0, kbs or 0

    def _child(self) -> ChildSa:
        assert self._choice is not None and self._policy is not None
        pol = self._policy
        local_ts = pol.local_ts or _host_ts(self._local)
        remote_ts = pol.remote_ts or _host_ts(self._peer)
        pairs: dict[int, tuple[SAParams, SAParams]] = {}
        life_s, life_k = DEFAULT_LIFE_S, 0
        for p in self._choice.params:
            life_s, life_k = self._lifetimes(p)
            pairs[p.protocol] = (
                self._params(p, self._my_spis[p.protocol], True, local_ts, remote_ts, life_s, life_k),
                self._params(p, p.peer_spi, False, local_ts, remote_ts, life_s, life_k),
            )
        esp = pairs.get(ProtocolId.PROTO_IPSEC_ESP)
        ah = pairs.get(ProtocolId.PROTO_IPSEC_AH)
        main = esp or ah
        assert main is not None
        return ChildSa(
            initiator=self.is_initiator,
            message_id=self.message_id,
            method=self._choice.method,
            inbound=main[0],
            outbound=main[1],
            local_ts=local_ts,
            remote_ts=remote_ts,
            life_seconds=life_s,
            life_kilobytes=life_k,
            pfs_group=self._choice.params[0].group,
            ah_inbound=ah[0] if esp and ah else None,
            ah_outbound=ah[1] if esp and ah else None,
        )

    def _params(
        self,
        p: QmProtocolParams,
        spi: bytes,
        inbound: bool,
        local_ts: TrafficSelector,
        remote_ts: TrafficSelector,
        life_s: int,
        life_k: int,
    ) -> SAParams:
        """RFC 2409 section 5.5: KEYMAT = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
        expanded; the encryption key comes first, then the authentication key."""
        enc_alg, enc_len, integ = _algorithms(p)
        integ_len = INTEG_INFO[integ].key_len
        km = crypto.keymat(
            self._alg,
            self.p1.keys.skeyid_d,
            p.protocol,
            spi,
            self._ni,
            self._nr,
            enc_len + integ_len,
            self._gqm,
        )
        tunnel = p.encapsulation in (EncapsulationMode.TUNNEL, EncapsulationMode.UDP_ENCAPSULATED_TUNNEL)
        udp = p.encapsulation in (
            EncapsulationMode.UDP_ENCAPSULATED_TUNNEL,
            EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT,
        )
        (lip, lport), (pip, pport) = self._local, self._peer
        src, dst = (pip, lip) if inbound else (lip, pip)
        encap = None
        if udp and p.protocol == ProtocolId.PROTO_IPSEC_ESP:
            encap = UdpEncap(pport, lport) if inbound else UdpEncap(lport, pport)
        sel = datapath_selectors(remote_ts, local_ts) if inbound else datapath_selectors(local_ts, remote_ts)
        cbc = enc_alg in (EncAlg.ENCR_AES_CBC, EncAlg.ENCR_3DES)
        hard_b = life_k * 1024
        return SAParams(
            spi=int.from_bytes(spi, "big"),
            protocol=Protocol.ESP if p.protocol == ProtocolId.PROTO_IPSEC_ESP else Protocol.AH,
            mode=Mode.TUNNEL if tunnel else Mode.TRANSPORT,
            enc_alg=enc_alg,
            enc_key=km[:enc_len],
            integ_alg=integ,
            integ_key=km[enc_len:],
            replay_window=self._policy.replay_window if self._policy else 64,
            encap=encap,
            tunnel=TunnelAddrs(src, dst) if tunnel else None,
            iv_key=self._rng(16) if cbc else b"",
            lifetimes=Lifetimes(
                soft_bytes=int(hard_b * SOFT_FRACTION),
                hard_bytes=hard_b,
                soft_seconds=life_s * SOFT_FRACTION,
                hard_seconds=float(life_s),
            ),
            selectors=sel,
        )


def _algorithms(p: QmProtocolParams) -> tuple[EncAlg, int, IntegAlg]:
    """(encryption algorithm, its KEYMAT bytes, integrity algorithm) of a negotiated protocol."""
    integ = IntegAlg.NONE
    if p.auth_algorithm is not None:
        if p.auth_algorithm not in _INTEG:
            raise QmError(f"authentication algorithm {p.auth_algorithm} unsupported")
        integ = _INTEG[p.auth_algorithm]
    if p.protocol == ProtocolId.PROTO_IPSEC_AH:
        return EncAlg.ENCR_NULL, 0, integ
    if p.transform_id not in _ENC:
        raise QmError(f"ESP transform {p.transform_id} unsupported")
    enc = _ENC[p.transform_id]
    if enc == EncAlg.ENCR_3DES:
        n = 24
    elif enc == EncAlg.ENCR_NULL:
        n = 0
    else:
        n = (p.key_bits or 128) // 8
        if enc in (EncAlg.ENCR_AES_GCM_16, EncAlg.ENCR_NULL_AUTH_AES_GMAC):
            n += SALT_LEN  # RFC 4106 section 8.1 / RFC 4543 section 8: key then 4-byte salt
    return enc, n, integ


def _attr_bytes(a: Attribute) -> bytes:
    w = Writer()
    a.encode(w)
    return w.getvalue()
