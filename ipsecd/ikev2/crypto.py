"""IKEv2 cryptography: prf, prf+, SKEYSEED and the SK_* keys, child KEYMAT, PSK AUTH, SK ciphers.

Pure functions of their inputs (RFC 7296 sections 2.13-2.17 and 3.14; RFC 5282 for AES-GCM in the
SK payload; RFC 7634 for ChaCha20-Poly1305; RFC 4868 for the SHA-2 HMACs). Keys are ``bytes`` that
never appear in a repr or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ipsecd.ikev2.constants import EncrId, IntegId, PrfId


class CryptoError(ValueError):
    """An unsupported algorithm, a bad length, or a message that does not authenticate."""


_PRF_HASH = {
    PrfId.PRF_HMAC_MD5: "md5",
    PrfId.PRF_HMAC_SHA1: "sha1",
    PrfId.PRF_HMAC_SHA2_256: "sha256",
    PrfId.PRF_HMAC_SHA2_384: "sha384",
    PrfId.PRF_HMAC_SHA2_512: "sha512",
}
# Integrity: (hash, key length, ICV length), RFC 2404, RFC 2403, RFC 4868 section 2.
_INTEG = {
    IntegId.AUTH_HMAC_MD5_96: ("md5", 16, 12),
    IntegId.AUTH_HMAC_SHA1_96: ("sha1", 20, 12),
    IntegId.AUTH_HMAC_SHA2_256_128: ("sha256", 32, 16),
    IntegId.AUTH_HMAC_SHA2_384_192: ("sha384", 48, 24),
    IntegId.AUTH_HMAC_SHA2_512_256: ("sha512", 64, 32),
}
AEAD_SALT = 4  # RFC 5282 section 7.1, RFC 7634 section 2
AEAD_IV = 8  # RFC 5282 section 3.1, RFC 7634 section 2
KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 section 2.15


def _prf_hash(prf_id: int) -> str:
    try:
        return _PRF_HASH[PrfId(prf_id)]
    except (ValueError, KeyError):
        raise CryptoError(f"unsupported PRF {prf_id}") from None


def prf_supported(prf_id: int) -> bool:
    return prf_id in _PRF_HASH


def prf_size(prf_id: int) -> int:
    return hashlib.new(_prf_hash(prf_id)).digest_size


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """The HMAC PRFs of RFC 7296 section 3.3.2 / RFC 4868 (key of any length)."""
    return hmac.new(key, data, _prf_hash(prf_id)).digest()


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """RFC 7296 section 2.13: prf+ (K,S) = T1 | T2 | T3 | ...

    T1 = prf (K, S | 0x01), Tn = prf (K, Tn-1 | S | n); at most 255 blocks.
    """
    if length < 0:
        raise CryptoError("negative prf+ length")
    out = b""
    t = b""
    n = 1
    while len(out) < length:
        if n > 255:
            raise CryptoError("prf+ asked for more than 255 blocks")
        t = prf(prf_id, key, t + seed + bytes([n]))
        out += t
        n += 1
    return out[:length]


def skeyseed(prf_id: int, ni: bytes, nr: bytes, gir: bytes) -> bytes:
    """RFC 7296 section 2.14: SKEYSEED = prf(Ni | Nr, g^ir)."""
    return prf(prf_id, ni + nr, gir)


def skeyseed_rekey(prf_id_old: int, sk_d_old: bytes, gir_new: bytes, ni: bytes, nr: bytes) -> bytes:
    """RFC 7296 section 2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the PRF of the
    old IKE SA."""
    return prf(prf_id_old, sk_d_old, gir_new + ni + nr)


# ------------------------------------------------------------------------------ SK ciphers


@dataclass(frozen=True)
class SkSuite:
    """The negotiated ENCR (+ key length) and INTEG transforms protecting SK payloads (or an ESP SA).

    ``integ`` is ``IntegId.NONE`` for the combined modes (RFC 5282 section 8, RFC 7634 section 4).
    """

    encr: int
    key_bits: int | None
    integ: int = IntegId.NONE

    def __post_init__(self) -> None:
        if self.encr == EncrId.ENCR_AES_CBC or self.encr in (EncrId.ENCR_AES_GCM_16,):
            if self.key_bits not in (128, 192, 256):
                raise CryptoError(f"AES key length {self.key_bits} not 128, 192 or 256")
        elif self.encr == EncrId.ENCR_CHACHA20_POLY1305:
            if self.key_bits not in (None, 256):
                raise CryptoError("ChaCha20-Poly1305 has a fixed 256-bit key")
        else:
            raise CryptoError(f"unsupported encryption algorithm {self.encr}")
        if self.aead:
            if self.integ != IntegId.NONE:
                raise CryptoError("a combined-mode cipher takes no integrity algorithm")
        elif self.integ not in _INTEG:
            raise CryptoError(f"unsupported integrity algorithm {self.integ}")

    @property
    def aead(self) -> bool:
        return self.encr in (EncrId.ENCR_AES_GCM_16, EncrId.ENCR_CHACHA20_POLY1305)

    @property
    def enc_key_len(self) -> int:
        """Bytes of keying material for the cipher (an AEAD's salt included, RFC 5282 section 7.1)."""
        if self.encr == EncrId.ENCR_CHACHA20_POLY1305:
            return 32 + AEAD_SALT
        assert self.key_bits is not None
        return self.key_bits // 8 + (AEAD_SALT if self.aead else 0)

    @property
    def integ_key_len(self) -> int:
        return 0 if self.aead else _INTEG[IntegId(self.integ)][1]

    @property
    def iv_len(self) -> int:
        return AEAD_IV if self.aead else 16

    @property
    def block(self) -> int:
        """Padding alignment of the plaintext (RFC 5282 section 3: none needed for the AEADs)."""
        return 1 if self.aead else 16

    @property
    def icv_len(self) -> int:
        return 16 if self.aead else _INTEG[IntegId(self.integ)][2]

    def overhead(self, plaintext_len: int) -> int:
        """SK payload body length for ``plaintext_len`` bytes of inner payloads."""
        padded = plaintext_len + 1
        padded += (-padded) % self.block
        return self.iv_len + padded + self.icv_len

    def _aead(self, key: bytes) -> tuple[AESGCM | ChaCha20Poly1305, bytes]:
        if len(key) != self.enc_key_len:
            raise CryptoError("encryption key of the wrong length")
        k, salt = key[:-AEAD_SALT], key[-AEAD_SALT:]
        if self.encr == EncrId.ENCR_CHACHA20_POLY1305:
            return ChaCha20Poly1305(k), salt
        return AESGCM(k), salt

    def _icv(self, key: bytes, data: bytes) -> bytes:
        name, klen, icv = _INTEG[IntegId(self.integ)]
        if len(key) != klen:
            raise CryptoError("integrity key of the wrong length")
        return hmac.new(key, data, name).digest()[:icv]

    def seal(self, enc_key: bytes, integ_key: bytes, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """IV | ciphertext | ICV for ``plaintext`` (inner payloads, padding and Pad Length included).

        RFC 7296 section 3.14: the ICV covers ``aad`` (the message from the IKE header up to the IV)
        and the IV and ciphertext. RFC 5282 section 5.1: for the AEADs the associated data is
        ``aad`` and the nonce is salt | IV.
        """
        if len(iv) != self.iv_len or len(plaintext) % self.block:
            raise CryptoError("IV or plaintext of the wrong length")
        if self.aead:
            engine, salt = self._aead(enc_key)
            return iv + engine.encrypt(salt + iv, plaintext, aad)
        enc = self._cbc(enc_key, iv).encryptor()
        ct = iv + enc.update(plaintext) + enc.finalize()
        return ct + self._icv(integ_key, aad + ct)

    def open(self, enc_key: bytes, integ_key: bytes, aad: bytes, body: bytes) -> bytes:
        """The plaintext of an SK body; CryptoError if it does not authenticate."""
        if len(body) < self.iv_len + self.icv_len + 1:
            raise CryptoError("encrypted payload too short")
        iv = body[: self.iv_len]
        if self.aead:
            engine, salt = self._aead(enc_key)
            try:
                return engine.decrypt(salt + iv, body[self.iv_len :], aad)
            except InvalidTag:
                raise CryptoError("SK payload does not authenticate") from None
        ct, icv = body[: -self.icv_len], body[-self.icv_len :]
        if not hmac.compare_digest(self._icv(integ_key, aad + ct), icv):
            raise CryptoError("SK payload does not authenticate")
        data = ct[self.iv_len :]
        if not data or len(data) % 16:
            raise CryptoError("ciphertext is not whole blocks")
        dec = self._cbc(enc_key, iv).decryptor()
        return dec.update(data) + dec.finalize()

    def _cbc(self, key: bytes, iv: bytes) -> Cipher[modes.CBC]:
        if len(key) != self.enc_key_len:
            raise CryptoError("encryption key of the wrong length")
        return Cipher(algorithms.AES(key), modes.CBC(iv))


@dataclass(frozen=True)
class IkeKeys:
    """The seven keys of RFC 7296 section 2.14."""

    sk_d: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_pi: bytes = field(repr=False)
    sk_pr: bytes = field(repr=False)


def derive_ike_keys(
    prf_id: int, suite: SkSuite, seed_key: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> IkeKeys:
    """RFC 7296 section 2.14:
    {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
    """
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise CryptoError("IKE SPIs must be 8 bytes")
    p, a, e = prf_size(prf_id), suite.integ_key_len, suite.enc_key_len
    km = prf_plus(prf_id, seed_key, ni + nr + spi_i + spi_r, 3 * p + 2 * a + 2 * e)
    parts: list[bytes] = []
    off = 0
    for n in (p, a, a, e, e, p, p):
        parts.append(km[off : off + n])
        off += n
    return IkeKeys(*parts)


def child_keymat(
    prf_id: int, sk_d: bytes, ni: bytes, nr: bytes, length: int, gir: bytes | None = None
) -> bytes:
    """RFC 7296 section 2.17: KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) with
    a KE exchange in CREATE_CHILD_SA. The caller splits it: initiator-to-responder keys first
    (encryption, then integrity), then responder-to-initiator."""
    return prf_plus(prf_id, sk_d, (gir or b"") + ni + nr, length)


def psk_auth(
    prf_id: int, psk: bytes, real_message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes
) -> bytes:
    """RFC 7296 section 2.15 (shared key MIC):

    AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <{Initiator,Responder}SignedOctets>)
    SignedOctets = RealMessage | NonceData (of the peer) | prf(SK_p, RestOfIDPayload)
    """
    maced_id = prf(prf_id, sk_p, id_body)
    return prf(prf_id, prf(prf_id, psk, KEY_PAD), real_message + peer_nonce + maced_id)


def signed_octets(prf_id: int, real_message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes) -> bytes:
    """The octets a signature covers (RFC 7296 section 2.15; RFC 7427 signs the same octets)."""
    return real_message + peer_nonce + prf(prf_id, sk_p, id_body)


def nat_detection_hash(spi_i: bytes, spi_r: bytes, ip: bytes, port: int) -> bytes:
    """RFC 7296 section 2.23: SHA-1(SPIi | SPIr | IP | Port)."""
    return hashlib.sha1(spi_i + spi_r + ip + port.to_bytes(2, "big")).digest()
