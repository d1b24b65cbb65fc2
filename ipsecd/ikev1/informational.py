"""Informational exchanges (RFC 2409 section 5.7, RFC 2408 sections 3.14-3.15, RFC 2407 section
4.6.3) and Dead Peer Detection (RFC 3706), sans-I/O.

Once an ISAKMP SA exists, an Informational is encrypted under it and carries a HASH first:

    HDR*, HASH(1), N/D        HASH(1) = prf(SKEYID_a, M-ID | N/D)

with its own IV chain, hash(last Phase 1 CBC block | M-ID) (RFC 2409 Appendix B). ``open_protected``
returns the payloads only when the hash verifies; unprotected notifies (``decode_unprotected``) are
reported but must never change state (RFC 2408 section 5.5 leaves them unauthenticated).

DPD (RFC 3706 sections 5-6): both sides announce the DPD vendor ID; R-U-THERE and R-U-THERE-ACK are
protected notifies on the ISAKMP SA with SPI = CKY-I | CKY-R and a 32-bit sequence number as data.
``Dpd`` keeps the sequence numbers and the count of unanswered probes.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from ipsecd.ike import crypto
from ipsecd.ike.buffers import CodecError
from ipsecd.ike.constants import DOI_IPSEC, ExchangeType, NotifyType, ProtocolId
from ipsecd.ikev1 import codec
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.main_mode import Phase1Sa
from ipsecd.ikev1.payloads import DeletePayload, HashPayload, NotifyPayload, Payload

INFO = ExchangeType.INFORMATIONAL
DPD_VID = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")  # RFC 3706 section 5.1 (version 1.0)


class InfoError(ValueError):
    """A protected Informational that does not decrypt, parse or verify."""


def protect(p1: Phase1Sa, message_id: int, payloads: Sequence[Payload]) -> bytes:
    """Builds HDR*, HASH(1), payloads under ``p1``."""
    alg = p1.params.hash
    _, rest_b = codec.encode_payloads(list(payloads))
    h = crypto.informational_hash(alg, p1.keys.skeyid_a, message_id, rest_b)
    first, body = codec.encode_payloads([HashPayload(h), *payloads])
    iv = crypto.phase2_iv(alg, p1.last_block, message_id, p1.cipher.block_size)
    ct, _ = crypto.cbc_encrypt(p1.cipher, p1.keys.enc_key, iv, body)
    return codec.encode_encrypted(Header(p1.cky_i, p1.cky_r, INFO, 0, message_id), first, ct)


def open_protected(p1: Phase1Sa, data: bytes) -> Message:
    """Decrypts and verifies a protected Informational; the returned message's payloads exclude
    nothing (HASH is first). Raises InfoError for anything that is not authentic."""
    try:
        h, body = codec.split(data)
        if h.exchange_type != INFO or not h.encrypted:
            raise InfoError("not a protected Informational")
        if (h.icookie, h.rcookie) != (p1.cky_i, p1.cky_r) or h.message_id == 0:
            raise InfoError("cookies or message ID do not fit the ISAKMP SA")
        alg = p1.params.hash
        iv = crypto.phase2_iv(alg, p1.last_block, h.message_id, p1.cipher.block_size)
        pt, _ = crypto.cbc_decrypt(p1.cipher, p1.keys.enc_key, iv, body)
        msg = codec.decode_body(h, pt, padded=True)
    except (CodecError, crypto.CryptoError) as e:
        raise InfoError(str(e)) from None
    if len(msg.payloads) < 2 or not isinstance(msg.payloads[0], HashPayload):
        raise InfoError("Informational without HASH(1) and a payload")
    want = crypto.informational_hash(alg, p1.keys.skeyid_a, h.message_id, b"".join(msg.raw_payloads[1:]))
    if not hmac.compare_digest(want, msg.payloads[0].data):
        raise InfoError("HASH(1) does not verify")
    return msg


def unprotected(cky_i: bytes, cky_r: bytes, notify: NotifyPayload) -> bytes:
    """An unencrypted Informational with one notify (before the ISAKMP SA exists)."""
    return codec.encode(Message(Header(cky_i, cky_r, INFO), (notify,)))


def error_notify(
    notify_type: int, protocol: int = ProtocolId.PROTO_ISAKMP, spi: bytes = b""
) -> NotifyPayload:
    return NotifyPayload(DOI_IPSEC, protocol, notify_type, spi)


def delete_isakmp(p1: Phase1Sa) -> DeletePayload:
    """RFC 2408 section 3.15: an ISAKMP SA is named by its cookie pair."""
    return DeletePayload(DOI_IPSEC, ProtocolId.PROTO_ISAKMP, 16, (p1.cky_i + p1.cky_r,))


def delete_ipsec(protocol: int, spis: Sequence[int]) -> DeletePayload:
    """RFC 2407 section 4.6.3: our inbound SPIs of one protocol."""
    return DeletePayload(DOI_IPSEC, protocol, 4, tuple(s.to_bytes(4, "big") for s in spis))


def initial_contact(p1: Phase1Sa) -> NotifyPayload:
    """RFC 2407 section 4.6.3.3: INITIAL-CONTACT, SPI = CKY-I | CKY-R."""
    return NotifyPayload(DOI_IPSEC, ProtocolId.PROTO_ISAKMP, NotifyType.INITIAL_CONTACT, p1.cky_i + p1.cky_r)


def dpd_notify(p1: Phase1Sa, ack: bool, seq: int) -> NotifyPayload:
    """RFC 3706 section 6: R-U-THERE / R-U-THERE-ACK, SPI = CKY-I | CKY-R, data = sequence number."""
    t = NotifyType.R_U_THERE_ACK if ack else NotifyType.R_U_THERE
    return NotifyPayload(DOI_IPSEC, ProtocolId.PROTO_ISAKMP, t, p1.cky_i + p1.cky_r, seq.to_bytes(4, "big"))


@dataclass(frozen=True)
class Received:
    """What an authentic Informational said."""

    deletes: tuple[DeletePayload, ...]
    notifies: tuple[NotifyPayload, ...]

    @classmethod
    def of(cls, msg: Message) -> Received:
        return cls(
            tuple(p for p in msg.payloads if isinstance(p, DeletePayload)),
            tuple(p for p in msg.payloads if isinstance(p, NotifyPayload)),
        )


def dpd_seq(p1: Phase1Sa, n: NotifyPayload) -> int | None:
    """The sequence number of a well-formed DPD notify for ``p1`` (RFC 3706 section 6), else None."""
    if n.notify_type not in (NotifyType.R_U_THERE, NotifyType.R_U_THERE_ACK) or len(n.data) != 4:
        return None
    if n.spi != p1.cky_i + p1.cky_r:
        return None
    return int.from_bytes(n.data, "big")


class Dpd:
    """RFC 3706 section 5.5-5.7 bookkeeping for one ISAKMP SA: our probe sequence numbers, the
    peer's last seen one (replayed R-U-THEREs are ignored), unanswered probes."""

    def __init__(self, first_seq: int) -> None:
        self.next_seq = first_seq & 0x7FFFFFFF or 1  # RFC 3706 section 7: start random, leave room
        self.outstanding: int | None = None
        self.misses = 0
        self.peer_seq: int | None = None

    def probe(self) -> int:
        seq = self.next_seq
        self.next_seq = (self.next_seq + 1) & 0xFFFFFFFF or 1
        if self.outstanding is not None:
            self.misses += 1
        self.outstanding = seq
        return seq

    def acked(self, seq: int) -> bool:
        """An ACK: True when it answers the outstanding probe (RFC 3706 section 7)."""
        if self.outstanding is None or seq != self.outstanding:
            return False
        self.outstanding = None
        self.misses = 0
        return True

    def peer_probe(self, seq: int) -> bool:
        """A peer's R-U-THERE: True when it should be answered (not a replay of an older one)."""
        if (
            self.peer_seq is not None
            and seq != self.peer_seq
            and (seq - self.peer_seq) & 0xFFFFFFFF > 1 << 31
        ):
            return False
        self.peer_seq = seq
        return True
