"""The IKEv2 exchanges of one ``Session``, as small build/process steps (RFC 7296 section 1).

    IKE_SA_INIT      HDR, SAi1, KEi, Ni, N(NAT_D..)   -->  <--  HDR, SAr1, KEr, Nr, N(NAT_D..)
    IKE_AUTH         HDR, SK {IDi, [IDr,] AUTH, SAi2, TSi, TSr}  -->  <--  HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
    CREATE_CHILD_SA  HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi], TSi, TSr}  (child; IKE rekey: SA, Ni, KEi)
    INFORMATIONAL    HDR, SK {[N,] [D,] ...}

``request_in`` handles the peer's requests; ``start_*`` send ours, each with the handler for its
response. The session object owns the message IDs, retransmission and the datagram queue.
"""

from __future__ import annotations

import hmac
import ipaddress

from ipsecd.ike.dh import public_value_length
from ipsecd.ikev2 import certauth, crypto, message
from ipsecd.ikev2.child_exchanges import (
    NONCE_LEN,
    ChildExchanges,
    _error,
    _name,
    _notifies,
    _one,
    describe,
)
from ipsecd.ikev2.constants import (
    AuthMethod,
    CertEncoding,
    ExchangeType,
    Flag,
    HashAlgorithm,
    NotifyType,
)
from ipsecd.ikev2.events import (
    FailurePoint,
    IkeSaEstablished,
    InitialContact,
)
from ipsecd.ikev2.message import Header, Message
from ipsecd.ikev2.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    TsiPayload,
    TsrPayload,
)
from ipsecd.ikev2.proposals import (
    Choice,
    check_response,
    choose_ike,
    ike_sa_payload,
)
from ipsecd.ikev2.session import Addr, Drop, IkeSa, Pending, State

MAX_INIT_RETRIES = 3  # COOKIE and INVALID_KE_PAYLOAD round trips before giving up
_SIG_HASHES = b"".join(
    h.to_bytes(2, "big") for h in (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512)
)


class Exchanges(ChildExchanges):
    # ================================================================ IKE_SA_INIT

    def _nat_payloads(self, spi_r: bytes) -> list[Payload]:
        s = self.s
        src_ip, src_port = s.local
        if s.config.force_encap:
            src_port = 0  # RFC 7296 section 2.23 allows faking this to force UDP encapsulation
        src = crypto.nat_detection_hash(s.sa.spi_i, spi_r, ipaddress.ip_address(src_ip).packed, src_port)
        dst = crypto.nat_detection_hash(
            s.sa.spi_i, spi_r, ipaddress.ip_address(s.remote[0]).packed, s.remote[1]
        )
        return [
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, src),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, dst),
        ]

    def _check_nat(self, msg: Message, addr: Addr) -> None:
        """Compares the peer's NAT detection hashes with the addresses seen (RFC 7296 section 2.23)."""
        s, h = self.s, msg.header
        srcs = [
            p.data
            for p in msg.payloads
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP
        ]
        dsts = [
            p.data
            for p in msg.payloads
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.NAT_DETECTION_DESTINATION_IP
        ]
        if not srcs and not dsts:
            s.nat_detected = s.config.force_encap
            return
        peer = crypto.nat_detection_hash(h.spi_i, h.spi_r, ipaddress.ip_address(addr[0]).packed, addr[1])
        me = crypto.nat_detection_hash(h.spi_i, h.spi_r, ipaddress.ip_address(s.local[0]).packed, s.local[1])
        s.peer_behind_nat = peer not in srcs
        s.behind_nat = bool(dsts) and me not in dsts
        s.nat_detected = s.config.force_encap or s.peer_behind_nat or s.behind_nat

    def _init_extras(self) -> list[Payload]:
        out: list[Payload] = [NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)]  # RFC 7383 section 2.3
        if self.s.config.announce_rfc7427:
            out.append(NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, _SIG_HASHES))  # RFC 7427 section 4
        return out

    def start_init(self, now: float, group: int | None = None) -> None:
        s = self.s
        cfg = s.config
        group = group or cfg.ike[0].groups[0]
        self.dh = s.dh.generate(group)
        self.ni = self.ni or s.rng(NONCE_LEN)
        self.offer = ike_sa_payload(cfg.ike, group=group)
        payloads: list[Payload] = []
        if self.cookie is not None:
            payloads.append(NotifyPayload(NotifyType.COOKIE, self.cookie))  # RFC 7296 section 2.6: first
        payloads += [self.offer, KePayload(group, self.dh.public_value()), NoncePayload(self.ni)]
        payloads += self._nat_payloads(bytes(8)) + self._init_extras()
        self.init_request = message.encode(s.header(s.sa, ExchangeType.IKE_SA_INIT, 0, False), payloads)
        s.sa.pending = Pending(
            0, ExchangeType.IKE_SA_INIT, [self.init_request], lambda m, t: None, now, what="IKE_SA_INIT"
        )
        s.emit(self.init_request)

    def i_init_response(self, raw: bytes, msg: Message, now: float) -> None:
        s = self.s
        h = msg.header
        if h.message_id != 0:
            raise Drop("IKE_SA_INIT response with a non-zero message ID")
        n = _notifies(msg)
        if NotifyType.COOKIE in n and self.init_retries < MAX_INIT_RETRIES:
            # RFC 7296 section 2.6: repeat the request with the cookie first.
            self.init_retries += 1
            self.cookie = n[NotifyType.COOKIE].data
            s.sa.pending = None
            self.start_init(now, self.dh.group if self.dh else None)
            return
        if NotifyType.INVALID_KE_PAYLOAD in n:
            data = n[NotifyType.INVALID_KE_PAYLOAD].data
            group = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
            ok = any(group in a.groups for a in s.config.ike)
            if ok and self.dh is not None and group != self.dh.group and self.init_retries < MAX_INIT_RETRIES:
                # RFC 7296 section 1.2: retry with the group the responder asked for.
                self.init_retries += 1
                s.sa.pending = None
                self.start_init(now, group)
                return
            s.fail(
                f"peer wants DH group {group}",
                FailurePoint.PEER,
                ExchangeType.IKE_SA_INIT,
                NotifyType.INVALID_KE_PAYLOAD,
            )
            return
        err = _error(msg)
        if err is not None:
            s.fail(
                f"peer refused IKE_SA_INIT: {_name(NotifyType, err.notify_type)}",
                FailurePoint.PEER,
                ExchangeType.IKE_SA_INIT,
                err.notify_type,
            )
            return
        if h.spi_r == bytes(8):
            raise Drop("IKE_SA_INIT response without a responder SPI")
        sa_p, ke, nonce = (
            _one(msg, SaPayload, "SA"),
            _one(msg, KePayload, "KE"),
            _one(msg, NoncePayload, "Nonce"),
        )
        assert isinstance(sa_p, SaPayload) and isinstance(ke, KePayload) and isinstance(nonce, NoncePayload)
        assert self.offer is not None and self.dh is not None
        choice = check_response(self.offer, sa_p)
        if choice.group != ke.group or ke.group != self.dh.group or choice.prf is None:
            raise Drop("responder's KE group does not match")
        gir = self.dh.shared_secret(ke.data)
        s.sa.spi_r = h.spi_r
        self.nr, self.init_response = nonce.data, raw
        s.peer_fragmentation = NotifyType.IKEV2_FRAGMENTATION_SUPPORTED in n
        s.peer_signature_hashes = NotifyType.SIGNATURE_HASH_ALGORITHMS in n
        self._check_nat(msg, s.remote)
        self._derive(choice, gir)
        s.sa.pending = None
        s.sa.next_mid = 1
        if s.nat_detected:
            s.natt = True  # RFC 7296 section 2.23: the initiator moves to port 4500
            s.remote = (s.remote[0], s.config.remote_natt_port)
        s.state = State.AUTH
        self._send_auth(now)

    def _derive(self, choice: Choice, gir: bytes) -> None:
        s = self.s
        assert choice.prf is not None and choice.group is not None
        self.choice = choice
        seed = crypto.skeyseed(choice.prf, self.ni, self.nr, gir)
        s.sa.keys = crypto.derive_ike_keys(
            choice.prf, choice.suite, seed, self.ni, self.nr, s.sa.spi_i, s.sa.spi_r
        )
        s.sa.prf, s.sa.suite, s.sa.group = choice.prf, choice.suite, choice.group

    def is_init_retransmission(self, raw: bytes) -> bool:
        s = self.s
        return not s.sa.initiator and s.state is State.AUTH and raw == self.init_request

    def r_init(self, raw: bytes, msg: Message, addr: Addr, now: float) -> None:
        """Responder: the first IKE_SA_INIT request (a COOKIE, if required, was checked before)."""
        s = self.s
        h = msg.header
        if h.exchange_type != ExchangeType.IKE_SA_INIT or h.is_response or h.message_id != 0:
            raise Drop("expected an IKE_SA_INIT request")
        if h.spi_r != bytes(8) or not h.from_initiator:
            raise Drop("IKE_SA_INIT request with a responder SPI or without the I flag")
        sa_p, ke, nonce = (
            _one(msg, SaPayload, "SA"),
            _one(msg, KePayload, "KE"),
            _one(msg, NoncePayload, "Nonce"),
        )
        assert isinstance(sa_p, SaPayload) and isinstance(ke, KePayload) and isinstance(nonce, NoncePayload)
        s.sa.spi_i = h.spi_i
        s.remote = addr
        reply_hdr = Header(h.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, Flag.R, 0)
        choice = choose_ike(sa_p, s.config.ike, ke.group)
        if choice is None:
            s.emit(message.encode(reply_hdr, [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)]))
            s.fail(
                "no acceptable IKE proposal",
                FailurePoint.LOCAL,
                ExchangeType.IKE_SA_INIT,
                NotifyType.NO_PROPOSAL_CHOSEN,
            )
            return
        assert choice.group is not None
        if choice.group != ke.group:
            # RFC 7296 section 1.2: tell the initiator which group to use; no state is kept.
            s.emit(
                message.encode(
                    reply_hdr, [NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, choice.group.to_bytes(2, "big"))]
                )
            )
            return
        if len(ke.data) != public_value_length(ke.group):
            raise Drop("key exchange data of the wrong length")
        self.dh = s.dh.generate(choice.group)
        gir = self.dh.shared_secret(ke.data)
        self.ni, self.nr = nonce.data, s.rng(NONCE_LEN)
        s.sa.spi_r = s.new_spi(8)
        n = _notifies(msg)
        s.peer_fragmentation = NotifyType.IKEV2_FRAGMENTATION_SUPPORTED in n
        s.peer_signature_hashes = NotifyType.SIGNATURE_HASH_ALGORITHMS in n
        self._check_nat(msg, addr)
        self._derive(choice, gir)
        self.init_request = raw
        out: list[Payload] = [
            SaPayload((choice.proposal,)),
            KePayload(choice.group, self.dh.public_value()),
            NoncePayload(self.nr),
        ]
        out += self._nat_payloads(s.sa.spi_r) + self._init_extras()
        if s.config.certs is not None:
            out.append(CertReqPayload(CertEncoding.X509_SIGNATURE, s.config.certs.certreq()))
        self.init_response = message.encode(s.header(s.sa, ExchangeType.IKE_SA_INIT, 0, True), out)
        s.sa.last_response = (0, [self.init_response])
        s.sa.peer_mid = 1
        s.state = State.AUTH
        s.emit(self.init_response)

    # ================================================================ IKE_AUTH

    def _auth(self, of_initiator: bool, id_body: bytes) -> bytes:
        s = self.s
        assert s.sa.keys is not None
        k = s.sa.keys
        if of_initiator:
            return crypto.psk_auth(s.sa.prf, s.config.psk, self.init_request, self.nr, k.sk_pi, id_body)
        return crypto.psk_auth(s.sa.prf, s.config.psk, self.init_response, self.ni, k.sk_pr, id_body)

    def _octets(self, of_initiator: bool, id_body: bytes) -> bytes:
        """InitiatorSignedOctets / ResponderSignedOctets (RFC 7296 section 2.15)."""
        s = self.s
        assert s.sa.keys is not None
        k = s.sa.keys
        if of_initiator:
            return crypto.signed_octets(s.sa.prf, self.init_request, self.nr, k.sk_pi, id_body)
        return crypto.signed_octets(s.sa.prf, self.init_response, self.ni, k.sk_pr, id_body)

    def _own_certs(self) -> list[Payload]:
        certs = self.s.config.certs
        return [] if certs is None else [CertPayload(CertEncoding.X509_SIGNATURE, certs.cert)]

    def _own_auth(self, of_initiator: bool, id_body: bytes) -> AuthPayload:
        certs = self.s.config.certs
        if certs is None:
            return AuthPayload(AuthMethod.SHARED_KEY_MIC, self._auth(of_initiator, id_body))
        octets = self._octets(of_initiator, id_body)
        if self.s.peer_signature_hashes:
            return AuthPayload(AuthMethod.DIGITAL_SIGNATURE, certs.sign(octets))
        return AuthPayload(*certs.sign_classic(octets))  # RFC 7427 section 4: the peer did not announce it

    def _send_auth(self, now: float) -> None:
        s = self.s
        cfg = s.config
        own = cfg.local_id
        inner: list[Payload] = [IdiPayload(own), *self._own_certs()]
        if cfg.certs is not None:
            inner.append(CertReqPayload(CertEncoding.X509_SIGNATURE, cfg.certs.certreq()))
        if cfg.initial_contact:
            inner.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
        if cfg.remote_id is not None:
            inner.append(IdrPayload(cfg.remote_id))
        inner.append(self._own_auth(True, own.body()))
        inner += self._child_request(self._new_child_spi(), None)
        inner += [TsiPayload(cfg.local_ts), TsrPayload(cfg.remote_ts)]
        s.request(s.sa, ExchangeType.IKE_AUTH, inner, self.i_auth_response, now, "IKE_AUTH")

    def _verify_peer(self, msg: Message, id_cls: type, of_initiator: bool) -> bool:
        s = self.s
        ident, auth = _one(msg, id_cls, "ID"), _one(msg, AuthPayload, "AUTH")
        assert isinstance(ident, IdiPayload | IdrPayload) and isinstance(auth, AuthPayload)
        body = msg.raw[msg.payloads.index(ident)][4:]
        if s.config.remote_id is not None and ident.identity != s.config.remote_id:
            return False
        if s.config.certs is not None:
            if s.wall_clock is None:
                return False
            certs = [p for p in msg.find(CertPayload) if isinstance(p, CertPayload)]
            if not certs or certs[0].encoding != CertEncoding.X509_SIGNATURE:
                return False
            try:
                cert = certauth.verify_certificate(certs[0].data, s.config.certs.trusted, s.wall_clock())
                if not certauth.identity_matches(cert, ident.identity):
                    return False
                octets = self._octets(of_initiator, body)
                if auth.method == AuthMethod.DIGITAL_SIGNATURE:
                    certauth.verify_signature(cert, auth.data, octets)
                else:
                    certauth.verify_classic(cert, auth.method, auth.data, octets)
            except (certauth.CertError, ValueError):
                return False
        elif auth.method != AuthMethod.SHARED_KEY_MIC or not hmac.compare_digest(
            self._auth(of_initiator, body), auth.data
        ):
            return False
        s.peer_id = ident.identity
        return True

    def _established(self, now: float) -> None:
        s = self.s
        assert self.choice is not None and s.peer_id is not None and s.sa.suite is not None
        s.state = State.ESTABLISHED
        s.sa.created = now
        s.sa.rekey_at = now + self._jitter(s.config.ike_rekey_s)
        s.event(
            IkeSaEstablished(
                s.sa.spi_i,
                s.sa.spi_r,
                s.sa.initiator,
                s.config.local_id,
                s.peer_id,
                describe(s.sa.suite, s.sa.prf, s.sa.group),
                s.nat_detected,
                s.peer_fragmentation,
            )
        )

    def i_auth_response(self, msg: Message, now: float) -> None:
        s = self.s
        n = _notifies(msg)
        if not msg.find(AuthPayload):
            err = _error(msg)
            code = err.notify_type if err else None
            s.fail(
                f"peer refused IKE_AUTH: {_name(NotifyType, code or 0)}",
                FailurePoint.PEER,
                ExchangeType.IKE_AUTH,
                code,
            )
            return
        if not self._verify_peer(msg, IdrPayload, of_initiator=False):
            s.counters.authentication_failures += 1
            # RFC 7296 section 2.21.2: tell the responder, in an INFORMATIONAL request (sent once).
            s.request(
                s.sa,
                ExchangeType.INFORMATIONAL,
                [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)],
                lambda m, t: None,
                now,
            )
            s.fail(
                "responder's AUTH does not verify",
                FailurePoint.PEER,
                ExchangeType.IKE_AUTH,
                NotifyType.AUTHENTICATION_FAILED,
            )
            return
        self._established(now)
        self._child_response(msg, n, self.ni, self.nr, None, None, now, rekeyed=None)

    def r_auth(self, msg: Message, now: float) -> None:
        s = self.s
        if not self._verify_peer(msg, IdiPayload, of_initiator=True):
            s.counters.authentication_failures += 1
            s.respond_to(s.sa, msg.header, [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)])
            s.fail(
                "initiator's AUTH does not verify",
                FailurePoint.PEER,
                ExchangeType.IKE_AUTH,
                NotifyType.AUTHENTICATION_FAILED,
            )
            return
        own = s.config.local_id
        head: list[Payload] = [
            IdrPayload(own),
            *self._own_certs(),
            self._own_auth(False, own.body()),
        ]
        n = _notifies(msg)
        self._established(now)
        if NotifyType.INITIAL_CONTACT in n and s.peer_id is not None:
            s.event(InitialContact(s.peer_id))
        body, _ = self._child_responder(msg, n, self.ni, self.nr, None, now)
        s.respond_to(s.sa, msg.header, head + body)

    # ================================================================ requests from the peer

    def request_in(self, sa: IkeSa, msg: Message, now: float) -> None:
        s = self.s
        h = msg.header
        if msg.critical_unknown:
            s.respond_to(
                sa,
                h,
                [NotifyPayload(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, bytes([msg.critical_unknown[0]]))],
            )
            return
        if h.exchange_type == ExchangeType.IKE_AUTH and s.state is State.AUTH and not sa.initiator:
            self.r_auth(msg, now)
        elif s.state is not State.ESTABLISHED:
            raise Drop("request before the IKE SA is up")
        elif h.exchange_type == ExchangeType.INFORMATIONAL:
            self.r_informational(sa, msg, now)
        elif h.exchange_type == ExchangeType.CREATE_CHILD_SA and sa is s.sa:
            self.r_create_child_sa(msg, now)
        elif h.exchange_type == ExchangeType.CREATE_CHILD_SA:
            # On an IKE SA that was just rekeyed: the peer retries on the new one (section 2.25).
            s.respond_to(sa, h, [NotifyPayload(NotifyType.TEMPORARY_FAILURE)])
        else:
            s.respond_to(sa, h, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
