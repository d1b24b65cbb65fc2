"""Main Mode (Identity Protection exchange) with pre-shared keys, sans-I/O: RFC 2409 section 5.4.

    Initiator                          Responder
   -----------                        -----------
    HDR, SA                     -->
                                <--    HDR, SA
    HDR, KE, Ni                 -->
                                <--    HDR, KE, Nr
    HDR*, IDii, HASH_I          -->
                                <--    HDR*, IDir, HASH_R

One ``MainMode`` object runs one exchange as initiator or responder. The caller feeds datagrams to
``receive`` and sends what each ``Step`` says; it owns the sockets, timers and retransmission (a
``Step`` with ``dropped`` set is not an error: the datagram was malformed, unexpected or a
retransmission, and is counted by the caller). Messages 2-4 are unauthenticated, so anything wrong
in them is dropped rather than ending the exchange (a forged datagram must not kill a negotiation);
the exchange fails only when the responder has no acceptable proposal or an authentication hash does
not verify. Randomness and DH are injected. Aggressive Mode is not handled here.

With ``MainModeConfig.cert``, authentication is by RSA signatures (RFC 2409 section 5.1): messages
3/4 add CERTREQ payloads naming our trusted roots, messages 5/6 carry ID, CERT and SIG instead of
ID and HASH, and SKEYID = prf(Ni_b | Nr_b, g^xy); ``ipsecd.ikev1.certs`` verifies the peer.

NAT traversal, RFC 3947: with ``natt`` set, messages 1/2 carry the RFC 3947 vendor ID; when both
sides sent it, messages 3/4 carry NAT-D payloads (section 3.2: HASH(CKY-I | CKY-R | IP | Port), the
peer's address first, then ours) and ``Phase1Sa`` says who is behind a NAT. The switch to port 4500
(section 4) is the caller's business: it owns the sockets. ``force_nat`` hashes a wrong local port, so
the peer believes we are behind a NAT and both sides use UDP-encapsulated ESP (as strongSwan's
``encap = yes`` does).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from ipsecd.ike import crypto
from ipsecd.ike.buffers import CodecError
from ipsecd.ike.constants import AuthMethod, ExchangeType, NotifyType
from ipsecd.ike.dh import DhError, DhKey, DhProvider, public_value_length
from ipsecd.ike.proposals import MmParams, ProposalError, match_mm, mm_sa_payload, parse_mm_transform
from ipsecd.ikev1 import codec
from ipsecd.ikev1.certs import CertCredentials, CertError, rsa_verify_raw, subject_text, verify_peer
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.payloads import (
    CertPayload,
    HashPayload,
    IdPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SigPayload,
    VendorIdPayload,
)
from ipsecd.ikev1.sa import SaPayload
from ipsecd.policy.model import MmSecMethod

NONCE_LEN = 32
MM = ExchangeType.IDENTITY_PROTECTION
RFC3947_VID = hashlib.md5(b"RFC 3947").digest()  # RFC 3947 section 3.1: MD5 of "RFC 3947"
Address = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def nat_d_hash(alg: int, cky_i: bytes, cky_r: bytes, addr: Address) -> bytes:
    """RFC 3947 section 3.2: HASH = HASH(CKY-I | CKY-R | IP | Port), the negotiated hash."""
    return crypto.hash_(alg, cky_i + cky_r + addr[0].packed + addr[1].to_bytes(2, "big"))


@dataclass(frozen=True)
class MainModeConfig:
    methods: tuple[MmSecMethod, ...]
    psk: bytes = field(repr=False)
    local_id: IdPayload
    lifetime_s: int = 28800
    vendor_ids: tuple[bytes, ...] = ()
    natt: bool = False  # offer RFC 3947 NAT traversal
    force_nat: bool = False  # make the peer believe we are behind a NAT (UDP-encapsulated ESP)
    cert: CertCredentials | None = None  # RSA signatures with X.509 certificates instead of the PSK

    @property
    def auth_method(self) -> int:
        return AuthMethod.RSA_SIGNATURES if self.cert is not None else AuthMethod.PRE_SHARED_KEY


@dataclass(frozen=True)
class Phase1Sa:
    """An established ISAKMP SA: what Quick Mode and Informational exchanges need."""

    initiator: bool
    cky_i: bytes
    cky_r: bytes
    params: MmParams
    cipher: crypto.CbcCipher
    keys: crypto.Phase1Keys = field(repr=False)
    # The last CBC block of the exchange: Phase 2 IVs are derived from it (RFC 2409 Appendix B).
    last_block: bytes = field(repr=False)
    peer_id: IdPayload
    peer_vendor_ids: tuple[bytes, ...] = ()
    peer_notifies: tuple[NotifyPayload, ...] = ()
    natt: bool = False  # both sides do RFC 3947
    nat_local: bool = False  # we are behind a NAT (our NAT-D did not match): we send keep-alives
    nat_peer: bool = False  # the peer is behind a NAT
    peer_cert_subject: str | None = None  # RFC 4514 text of the verified peer certificate

    @property
    def nat_detected(self) -> bool:
        """RFC 3947 section 4: a NAT on the path; ESP is then UDP-encapsulated on port 4500."""
        return self.natt and (self.nat_local or self.nat_peer)


@dataclass(frozen=True)
class Step:
    """What one input produced. ``failed``: the exchange is over without an SA; ``notify`` is the
    RFC 2408 section 3.14.1 type the caller may report to the peer in an Informational."""

    send: bytes | None = None
    established: Phase1Sa | None = None
    dropped: str | None = None
    failed: str | None = None
    notify: int | None = None


class MmState(enum.Enum):
    START = "start"
    I_SA_SENT = "initiator sent SA"
    I_KE_SENT = "initiator sent KE"
    I_ID_SENT = "initiator sent ID"
    R_SA_SENT = "responder sent SA"
    R_KE_SENT = "responder sent KE"
    ESTABLISHED = "established"
    FAILED = "failed"


class _Drop(Exception):
    pass


class _Fail(Exception):
    def __init__(self, reason: str, notify: int) -> None:
        super().__init__(reason)
        self.notify = notify


class MainMode:
    """One Main Mode exchange. Use ``MainMode.initiator(...)`` / ``MainMode.responder(...)``."""

    def __init__(
        self,
        config: MainModeConfig,
        *,
        initiator: bool,
        rng: Callable[[int], bytes],
        dh: DhProvider,
        local: Address | None = None,
        peer: Address | None = None,
    ) -> None:
        if not config.methods:
            raise ValueError("no main mode security methods")
        if config.natt and (local is None or peer is None):
            raise ValueError("NAT traversal needs the local and peer addresses")
        self._cfg = config
        self._local = local
        self._peer = peer
        self._natt = False
        self._nat_local = self._nat_peer = False
        self._peer_subject: str | None = None
        self._initiator = initiator
        self._rng = rng
        self._dh_provider = dh
        self.state = MmState.START
        self._cky_i = b""
        self._cky_r = bytes(8)
        self._sai_b = b""
        self._offer: SaPayload | None = None
        self._params: MmParams | None = None
        self._dh: DhKey | None = None
        self._ni = self._nr = self._gxi = self._gxr = b""
        self._keys: crypto.Phase1Keys | None = None
        self._cipher: crypto.CbcCipher | None = None
        self._iv = b""
        self._peer_vids: list[bytes] = []
        self._last_in: bytes | None = None
        self._last_out: bytes | None = None

    @classmethod
    def initiator(
        cls,
        config: MainModeConfig,
        *,
        rng: Callable[[int], bytes],
        dh: DhProvider,
        local: Address | None = None,
        peer: Address | None = None,
    ) -> MainMode:
        return cls(config, initiator=True, rng=rng, dh=dh, local=local, peer=peer)

    @classmethod
    def responder(
        cls,
        config: MainModeConfig,
        *,
        rng: Callable[[int], bytes],
        dh: DhProvider,
        local: Address | None = None,
        peer: Address | None = None,
    ) -> MainMode:
        return cls(config, initiator=False, rng=rng, dh=dh, local=local, peer=peer)

    @property
    def is_initiator(self) -> bool:
        return self._initiator

    @property
    def natt(self) -> bool:
        """Both sides announced RFC 3947 (known after message 2)."""
        return self._natt

    @property
    def nat_detected(self) -> bool:
        """RFC 3947 section 4: NAT-D showed a NAT (known after messages 3/4): from message 5 on, both
        sides use the NAT-T port with the non-ESP marker."""
        return self._natt and (self._nat_local or self._nat_peer)

    @property
    def cookies(self) -> tuple[bytes, bytes]:
        return self._cky_i, self._cky_r

    # ------------------------------------------------------------------ public entry points

    def start(self) -> Step:
        """Initiator: message 1."""
        if not self._initiator or self.state is not MmState.START:
            raise RuntimeError("start() is for a new initiator")
        self._cky_i = self._cookie()
        self._offer = mm_sa_payload(self._cfg.methods, [self._cfg.auth_method], self._cfg.lifetime_s)
        _, sa_wire = codec.encode_payloads([self._offer])
        self._sai_b = sa_wire[4:]
        self.state = MmState.I_SA_SENT
        return self._out(Message(self._header(), (self._offer, *self._vids())))

    def receive(self, data: bytes) -> Step:
        """Feed one datagram (the ISAKMP message, without a non-ESP marker)."""
        if self._last_in is not None and data == self._last_in and self._last_out is not None:
            # RFC 2408 section 5.1 leaves retransmission to the implementation: the peer resent its
            # last message, so ours was lost; send it again without changing any state.
            return Step(send=self._last_out, dropped="retransmission")
        if self.state in (MmState.ESTABLISHED, MmState.FAILED):
            return Step(dropped=f"exchange already {self.state.value}")
        try:
            header, body = codec.split(data)
            self._check_header(header)
            step = self._dispatch(header, body)
        except (CodecError, crypto.CryptoError, _Drop) as e:
            return Step(dropped=str(e) or type(e).__name__)
        except _Fail as e:
            self.state = MmState.FAILED
            return Step(failed=str(e), notify=e.notify)
        self._last_in = data
        return step

    # ------------------------------------------------------------------ helpers

    def _cookie(self) -> bytes:
        for _ in range(8):
            c = self._rng(8)
            if c != bytes(8):
                return c
        raise RuntimeError("random source returns zeros")

    def _header(self, flags: int = 0) -> Header:
        return Header(self._cky_i, self._cky_r, MM, flags)

    def _vids(self) -> tuple[VendorIdPayload, ...]:
        vids = list(self._cfg.vendor_ids)
        if self._cfg.natt and (self._initiator or self._natt):
            vids.append(RFC3947_VID)
        return tuple(VendorIdPayload(v) for v in vids)

    def _nat_d_out(self) -> tuple[NatDPayload, ...]:
        """RFC 3947 section 3.2: the peer's address first, then ours."""
        if not self._natt:
            return ()
        assert self._params is not None and self._local is not None and self._peer is not None
        alg, c = self._params.hash, (self._cky_i, self._cky_r)
        local = self._local
        if self._cfg.force_nat:
            local = (local[0], local[1] ^ 0xFFFF)  # a port we do not use: the peer sees a NAT
        return (
            NatDPayload(nat_d_hash(alg, *c, self._peer)),
            NatDPayload(nat_d_hash(alg, *c, local)),
        )

    def _nat_d_in(self, msg: Message) -> None:
        """RFC 3947 section 3.2: the first NAT-D is our address as the peer saw it, the others the
        peer's own addresses; a mismatch means a NAT on that side."""
        if not self._natt:
            return
        got = [p.data for p in msg.payloads if isinstance(p, NatDPayload)]
        if not got:
            self._natt = False  # the peer announced RFC 3947 but sends no NAT-D: no NAT-T
            return
        if len(got) < 2:
            raise _Drop("one NAT-D payload: at least two are required")
        assert self._params is not None and self._local is not None and self._peer is not None
        alg, c = self._params.hash, (self._cky_i, self._cky_r)
        self._nat_local = not hmac.compare_digest(got[0], nat_d_hash(alg, *c, self._local))
        self._nat_peer = nat_d_hash(alg, *c, self._peer) not in got[1:]
        if self._cfg.force_nat:
            self._nat_local = True

    def _out(self, msg: Message) -> Step:
        self._last_out = codec.encode(msg)
        return Step(send=self._last_out)

    def _out_encrypted(self, payloads: Sequence[Payload]) -> bytes:
        assert self._cipher is not None and self._keys is not None
        first, body = codec.encode_payloads(list(payloads))
        ct, self._iv = crypto.cbc_encrypt(self._cipher, self._keys.enc_key, self._iv, body)
        self._last_out = codec.encode_encrypted(self._header(), first, ct)
        return self._last_out

    def _check_header(self, h: Header) -> None:
        if h.exchange_type != MM:
            raise _Drop(f"exchange type {h.exchange_type} is not Main Mode")
        if h.message_id != 0:
            raise _Drop("Main Mode message with a non-zero message ID")
        if self.state is MmState.START:
            if h.rcookie != bytes(8):
                raise _Drop("first message with a responder cookie")
            return
        if h.icookie != self._cky_i:
            raise _Drop("initiator cookie mismatch")
        if self.state is MmState.I_SA_SENT:
            if h.rcookie == bytes(8):
                raise _Drop("response without a responder cookie")
        elif h.rcookie != self._cky_r:
            raise _Drop("responder cookie mismatch")

    def _plain(self, h: Header, body: bytes) -> Message:
        if h.encrypted:
            raise _Drop("unexpected encrypted message")
        return codec.decode_body(h, body, padded=False)

    def _decrypt(self, h: Header, body: bytes) -> Message:
        if not h.encrypted:
            raise _Drop("message 5/6 must be encrypted")
        assert self._cipher is not None and self._keys is not None
        pt, next_iv = crypto.cbc_decrypt(self._cipher, self._keys.enc_key, self._iv, body)
        try:
            msg = codec.decode_body(h, pt, padded=True)
        except CodecError as e:
            raise _Drop(f"message does not decrypt to payloads (wrong pre-shared key?): {e}") from None
        self._iv = next_iv  # only a message that decoded moves the IV chain
        return msg

    @staticmethod
    def _one(msg: Message, cls: type[Payload], what: str) -> Payload:
        found = msg.find(cls)
        if len(found) != 1:
            raise _Drop(f"expected one {what} payload, got {len(found)}")
        return found[0]

    def _dispatch(self, h: Header, body: bytes) -> Step:
        if self.state is MmState.START and not self._initiator:
            return self._r_sa(h, self._plain(h, body))
        if self.state is MmState.I_SA_SENT:
            return self._i_sa(h, self._plain(h, body))
        if self.state is MmState.R_SA_SENT:
            return self._r_ke(self._plain(h, body))
        if self.state is MmState.I_KE_SENT:
            return self._i_ke(self._plain(h, body))
        if self.state is MmState.R_KE_SENT:
            return self._r_id(self._decrypt(h, body))
        if self.state is MmState.I_ID_SENT:
            return self._i_id(self._decrypt(h, body))
        raise _Drop(f"nothing expected in state {self.state.value}")

    def _peer_vid_list(self, msg: Message) -> None:
        self._peer_vids += [p.data for p in msg.payloads if isinstance(p, VendorIdPayload)]
        if self._cfg.natt and RFC3947_VID in self._peer_vids:
            self._natt = True

    def _set_params(self, params: MmParams) -> None:
        self._params = params
        self._cipher = crypto.cbc_cipher(params.encryption, params.key_bits)

    # ------------------------------------------------------------------ responder

    def _r_sa(self, h: Header, msg: Message) -> Step:
        sa = self._one(msg, SaPayload, "SA")
        assert isinstance(sa, SaPayload)
        choice = match_mm(sa, self._cfg.methods, [self._cfg.auth_method])
        if choice is None:
            raise _Fail("no proposal chosen", NotifyType.NO_PROPOSAL_CHOSEN)
        self._cky_i = h.icookie
        self._cky_r = self._cookie()
        self._sai_b = msg.raw_payloads[msg.payloads.index(sa)][4:]
        self._set_params(choice.params)
        self._peer_vid_list(msg)
        self.state = MmState.R_SA_SENT
        reply = SaPayload(sa.doi, sa.situation, (choice.proposal,))
        return self._out(Message(self._header(), (reply, *self._vids())))

    def _ke_nonce(self, msg: Message) -> tuple[bytes, bytes]:
        ke, nonce = self._one(msg, KePayload, "KE"), self._one(msg, NoncePayload, "Nonce")
        assert isinstance(ke, KePayload) and isinstance(nonce, NoncePayload) and self._params is not None
        if len(ke.data) != public_value_length(self._params.group):
            raise _Drop("key exchange data of the wrong length")
        return ke.data, nonce.data

    def _derive(self) -> None:
        assert self._params is not None and self._dh is not None and self._cipher is not None
        peer = self._gxr if self._initiator else self._gxi
        try:
            gxy = self._dh.shared_secret(peer)
        except DhError as e:
            raise _Drop(str(e)) from None
        alg = self._params.hash
        if self._cfg.cert is not None:  # RFC 2409 section 5: SKEYID = prf(Ni_b | Nr_b, g^xy)
            skeyid = crypto.skeyid_sig(alg, self._ni, self._nr, gxy)
        else:
            skeyid = crypto.skeyid_psk(alg, self._cfg.psk, self._ni, self._nr)
        self._keys = crypto.derive_phase1(alg, skeyid, gxy, self._cky_i, self._cky_r, self._cipher.key_size)
        self._iv = crypto.phase1_iv(alg, self._gxi, self._gxr, self._cipher.block_size)

    def _r_ke(self, msg: Message) -> Step:
        assert self._params is not None
        self._gxi, self._ni = self._ke_nonce(msg)
        self._nat_d_in(msg)
        self._dh = self._dh_provider.generate(self._params.group)
        self._gxr, self._nr = self._dh.public_value(), self._rng(NONCE_LEN)
        self._derive()
        self.state = MmState.R_KE_SENT
        out: tuple[Payload, ...] = (
            KePayload(self._gxr),
            NoncePayload(self._nr),
            *self._cert_requests(),
            *self._nat_d_out(),
        )
        return self._out(Message(self._header(), out))

    def _hash(self, of_initiator: bool, id_body: bytes) -> bytes:
        assert self._params is not None and self._keys is not None
        a, k = self._params.hash, self._keys.skeyid
        if of_initiator:
            return crypto.hash_i(a, k, self._gxi, self._gxr, self._cky_i, self._cky_r, self._sai_b, id_body)
        return crypto.hash_r(a, k, self._gxr, self._gxi, self._cky_r, self._cky_i, self._sai_b, id_body)

    def _cert_requests(self) -> tuple[Payload, ...]:
        return self._cfg.cert.cert_requests() if self._cfg.cert is not None else ()

    def _own_auth(self, of_initiator: bool) -> list[Payload]:
        """Message 5/6 payloads: ID and HASH (PSK), or ID, CERT(s) and SIG (RFC 2409 section 5.1)."""
        own = self._cfg.local_id
        _, own_wire = codec.encode_payloads([own])
        h = self._hash(of_initiator, own_wire[4:])
        if self._cfg.cert is None:
            return [own, HashPayload(h)]
        return [own, *self._cfg.cert.cert_payloads(), SigPayload(self._cfg.cert.sign(h))]

    def _verify_sig(self, msg: Message, of_initiator: bool) -> IdPayload:
        cred = self._cfg.cert
        assert cred is not None
        peer_id, sig = self._one(msg, IdPayload, "ID"), self._one(msg, SigPayload, "SIG")
        assert isinstance(peer_id, IdPayload) and isinstance(sig, SigPayload)
        certs = [p for p in msg.payloads if isinstance(p, CertPayload)]
        try:
            leaf = verify_peer(certs, peer_id, cred.trusted_roots, cred.clock())
        except CertError as e:
            raise _Fail(str(e), NotifyType.INVALID_CERTIFICATE) from None
        want = self._hash(of_initiator, msg.raw_payloads[msg.payloads.index(peer_id)][4:])
        key = leaf.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        if not rsa_verify_raw(key, sig.data, want):
            raise _Fail("SIG_I/SIG_R does not verify", NotifyType.INVALID_SIGNATURE)
        self._peer_subject = subject_text(leaf)
        return peer_id

    def _verify_id_hash(self, msg: Message, of_initiator: bool) -> IdPayload:
        if self._cfg.cert is not None:
            return self._verify_sig(msg, of_initiator)
        peer_id, got = self._one(msg, IdPayload, "ID"), self._one(msg, HashPayload, "HASH")
        assert isinstance(peer_id, IdPayload) and isinstance(got, HashPayload)
        want = self._hash(of_initiator, msg.raw_payloads[msg.payloads.index(peer_id)][4:])
        if not hmac.compare_digest(want, got.data):
            raise _Fail("HASH_I/HASH_R does not verify", NotifyType.AUTHENTICATION_FAILED)
        return peer_id

    def _established(self, peer_id: IdPayload, msg: Message) -> Phase1Sa:
        assert self._params is not None and self._cipher is not None and self._keys is not None
        self.state = MmState.ESTABLISHED
        return Phase1Sa(
            initiator=self._initiator,
            cky_i=self._cky_i,
            cky_r=self._cky_r,
            params=self._params,
            cipher=self._cipher,
            keys=self._keys,
            last_block=self._iv,
            peer_id=peer_id,
            peer_vendor_ids=tuple(self._peer_vids),
            peer_notifies=tuple(p for p in msg.payloads if isinstance(p, NotifyPayload)),
            natt=self._natt,
            nat_local=self._nat_local,
            nat_peer=self._nat_peer,
            peer_cert_subject=self._peer_subject,
        )

    def _r_id(self, msg: Message) -> Step:
        peer_id = self._verify_id_hash(msg, of_initiator=True)
        out = self._out_encrypted(self._own_auth(of_initiator=False))
        return Step(send=out, established=self._established(peer_id, msg))

    # ------------------------------------------------------------------ initiator

    def _i_sa(self, h: Header, msg: Message) -> Step:
        sa = self._one(msg, SaPayload, "SA")
        assert isinstance(sa, SaPayload) and self._offer is not None
        offered = self._offer.proposals[0].transforms
        if len(sa.proposals) != 1 or len(sa.proposals[0].transforms) != 1:
            raise _Drop("responder did not choose exactly one transform")
        chosen = sa.proposals[0].transforms[0]
        # RFC 2408 section 4.2: the responder returns one of our transforms unmodified. Peers re-encode
        # attributes (strongSwan returns them in another order), so the values are compared.
        try:
            got = parse_mm_transform(chosen)
        except ProposalError as e:
            raise _Drop(f"responder's transform: {e}") from None
        if got not in [parse_mm_transform(t) for t in offered]:
            raise _Drop("responder chose a transform we did not offer")
        self._set_params(got)
        self._cky_r = h.rcookie
        self._peer_vid_list(msg)
        assert self._params is not None
        self._dh = self._dh_provider.generate(self._params.group)
        self._gxi, self._ni = self._dh.public_value(), self._rng(NONCE_LEN)
        self.state = MmState.I_KE_SENT
        out: tuple[Payload, ...] = (
            KePayload(self._gxi),
            NoncePayload(self._ni),
            *self._cert_requests(),
            *self._nat_d_out(),
        )
        return self._out(Message(self._header(), out))

    def _i_ke(self, msg: Message) -> Step:
        self._gxr, self._nr = self._ke_nonce(msg)
        self._nat_d_in(msg)
        self._peer_vid_list(msg)
        self._derive()
        self.state = MmState.I_ID_SENT
        return Step(send=self._out_encrypted(self._own_auth(of_initiator=True)))

    def _i_id(self, msg: Message) -> Step:
        peer_id = self._verify_id_hash(msg, of_initiator=False)
        return Step(established=self._established(peer_id, msg))
