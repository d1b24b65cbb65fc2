"""Stateless COOKIE challenge for IKE_SA_INIT requests (RFC 7296 section 2.6), sans-I/O.

The daemon asks ``CookieGuard.check`` before it makes a responder ``Session`` for a new IKE_SA_INIT
request. While fewer than ``threshold`` IKE SAs are half-open, every request passes; above it, a
request must carry the cookie this guard would compute for it, else the answer is an IKE_SA_INIT
response with only N(COOKIE) and nothing is kept:

    Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)

The secret changes every ``lifetime_s``; cookies of the previous secret stay valid for one period.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from ipsecd.ike.buffers import CodecError
from ipsecd.ikev2 import message
from ipsecd.ikev2.constants import ExchangeType, Flag, NotifyType
from ipsecd.ikev2.message import Header
from ipsecd.ikev2.payloads import NoncePayload, NotifyPayload


@dataclass(frozen=True)
class Verdict:
    """``accept``: go on with a Session; otherwise send ``reply`` (if any) and forget the request."""

    accept: bool
    reply: bytes | None = field(default=None, repr=False)
    reason: str = ""


class CookieGuard:
    def __init__(
        self, rng: Callable[[int], bytes], now: float, threshold: int = 10, lifetime_s: float = 300.0
    ) -> None:
        self._rng = rng
        self.threshold = threshold
        self.lifetime_s = lifetime_s
        self._version = 0
        self._secrets = {0: rng(32)}
        self._rotated = now
        self.challenges_sent = 0
        self.cookies_rejected = 0

    def _rotate(self, now: float) -> None:
        if now - self._rotated < self.lifetime_s:
            return
        previous = self._version
        self._version = (self._version + 1) % 256
        self._secrets = {previous: self._secrets[previous], self._version: self._rng(32)}
        self._rotated = now

    def _cookie(self, version: int, ni: bytes, ip: str, spi_i: bytes) -> bytes:
        secret = self._secrets[version]
        return (
            bytes([version]) + hashlib.sha256(ni + ipaddress.ip_address(ip).packed + spi_i + secret).digest()
        )

    def check(self, data: bytes, addr: tuple[str, int], half_open: int, now: float) -> Verdict:
        """``data``: a datagram without the non-ESP marker."""
        self._rotate(now)
        try:
            msg = message.decode(data)
        except CodecError as e:
            return Verdict(False, None, f"malformed: {e}")
        h = msg.header
        if (
            h.exchange_type != ExchangeType.IKE_SA_INIT
            or h.is_response
            or h.spi_r != bytes(8)
            or h.message_id != 0
        ):
            return Verdict(False, None, "not an IKE_SA_INIT request")
        if half_open < self.threshold:
            return Verdict(True)
        nonce = next((p for p in msg.payloads if isinstance(p, NoncePayload)), None)
        if nonce is None:
            return Verdict(False, None, "no nonce")
        first = msg.payloads[0] if msg.payloads else None
        if isinstance(first, NotifyPayload) and first.notify_type == NotifyType.COOKIE and first.data:
            version = first.data[0]
            if version in self._secrets and hmac.compare_digest(
                first.data, self._cookie(version, nonce.data, addr[0], h.spi_i)
            ):
                return Verdict(True)
            self.cookies_rejected += 1
        self.challenges_sent += 1
        cookie = self._cookie(self._version, nonce.data, addr[0], h.spi_i)
        reply = message.encode(
            Header(h.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, Flag.R, 0),
            [NotifyPayload(NotifyType.COOKIE, cookie)],
        )
        return Verdict(False, reply, "cookie required")
