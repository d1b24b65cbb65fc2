"""ESP packet protection (RFC 4303) on `cryptography`: docs/datapath.md section 3.

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |               Security Parameters Index (SPI)                 |
   |                 Sequence Number (low 32 bits)                 |
   |                 IV (0, 8 or 16 bytes)                         |
   |      Payload ...                    |    Padding (0-255)      |
   |                               |  Pad Length   | Next Header   |
   |                 ICV (12-32 bytes)                             |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Per-SA cryptography objects are created once: AEAD objects are reusable, and CBC runs on one
long-lived CBC context per direction (see `_CbcCipher`), because a new `Cipher` costs 12-25 us.
"""

from __future__ import annotations

import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ipsecd.datapath.counters import DropReason
from ipsecd.datapath.ipheader import Drop
from ipsecd.datapath.sa import INTEG_INFO, SALT_LEN, EncAlg, IntegAlg, SAParams

MASK32 = 0xFFFFFFFF
_HEADER = struct.Struct("!II")  # SPI, sequence number (low 32 bits)
_SEQ64 = struct.Struct("!Q")
_PADDING = bytes(range(1, 256))


def integrity_icv(alg: IntegAlg, key: bytes, data: bytes) -> bytes:
    """HMAC truncated to the algorithm's ICV length (RFC 2404 section 2, RFC 4868 section 2.3)."""
    info = INTEG_INFO[alg]
    return hmac.digest(key, data, info.hash_name)[: info.icv_len]


def padding(payload_len: int, align: int) -> bytes:
    """RFC 4303 section 2.4: pad bytes 1, 2, 3, ... so that payload + pad + 2 is a multiple of align."""
    n = -(payload_len + 2) % align
    return _PADDING[:n]


class _CbcCipher:
    """CBC with an explicit IV per packet on long-lived OpenSSL contexts.

    CBC chains each block on the previous ciphertext block. A long-lived encryption context remembers
    the last block `L` it produced; feeding it `D_k(IV) xor L` first outputs exactly `IV`, and the
    following blocks are then CBC-encrypted under `IV` (the first output block is discarded). The
    decryption context likewise yields the plaintext of `C` under `IV` when fed `IV || C` (its first
    output block is discarded). This is plain CBC (RFC 3602 section 2.4), without per-packet setup.
    """

    def __init__(self, enc_alg: EncAlg, key: bytes, iv_key: bytes) -> None:
        if enc_alg == EncAlg.ENCR_3DES:
            algo: algorithms.AES | TripleDES = TripleDES(key)
            self.block = 8
        else:
            algo = algorithms.AES(key)
            self.block = 16
        zero = bytes(self.block)
        self._enc: CipherContext = Cipher(algo, modes.CBC(zero)).encryptor()
        self._dec: CipherContext = Cipher(algo, modes.CBC(zero)).decryptor()
        self._ecb_dec: CipherContext = Cipher(algo, modes.ECB()).decryptor()
        self._last = zero
        # docs/datapath.md section 3: IV = AES-128-ECB(iv_key, 128-bit sequence number)
        self._iv_gen: CipherContext = Cipher(algorithms.AES(iv_key), modes.ECB()).encryptor()

    def iv(self, seq: int) -> bytes:
        return self._iv_gen.update(seq.to_bytes(16, "big"))[: self.block]

    def encrypt(self, iv: bytes, data: bytes) -> bytes:
        lead = self._ecb_dec.update(iv)
        lead = (int.from_bytes(lead, "big") ^ int.from_bytes(self._last, "big")).to_bytes(self.block, "big")
        out = self._enc.update(lead + data)
        self._last = out[-self.block :]
        return out[self.block :]

    def decrypt(self, iv: bytes, data: bytes) -> bytes:
        return self._dec.update(iv + data)[self.block :]


class EspCrypto:
    """Seal and open ESP payloads for one SA direction."""

    def __init__(self, params: SAParams) -> None:
        self.params = params
        info = params.enc_info
        self.spi = params.spi
        self.spi_bytes = params.spi.to_bytes(4, "big")
        self.esn = params.esn
        self.iv_len = info.iv_len
        self.align = info.align
        self.icv_len = params.icv_len
        self.alg = EncAlg(params.enc_alg)
        self.integ_alg = IntegAlg(params.integ_alg)
        self.integ_key = params.integ_key
        self._aead: AESGCM | ChaCha20Poly1305 | None = None
        self._cbc: _CbcCipher | None = None
        self.salt = b""
        if info.aead:
            key, self.salt = params.enc_key[:-SALT_LEN], params.enc_key[-SALT_LEN:]
            if self.alg == EncAlg.ENCR_CHACHA20_POLY1305:
                self._aead = ChaCha20Poly1305(key)
            else:
                self._aead = AESGCM(key)
        elif self.alg != EncAlg.ENCR_NULL:
            self._cbc = _CbcCipher(self.alg, params.enc_key, params.iv_key)
        self.gmac = self.alg == EncAlg.ENCR_NULL_AUTH_AES_GMAC
        self.min_len = 8 + self.iv_len + self.icv_len + 2
        self.hash_name = params.integ_info.hash_name
        # trailers (padding || pad length || next header) by payload length modulo align
        self._trailers: dict[tuple[int, int], bytes] = {}

    def _trailer(self, payload_len: int, next_header: int) -> bytes:
        key = (payload_len % self.align, next_header)
        trailer = self._trailers.get(key)
        if trailer is None:
            pad = padding(payload_len, self.align)
            trailer = self._trailers[key] = pad + bytes((len(pad), next_header))
        return trailer

    def _header(self, seq: int) -> bytes:
        return _HEADER.pack(self.spi, seq & MASK32)

    def _aad(self, seq: int) -> bytes:
        # RFC 4106 section 5 / RFC 7634 section 2.1 / RFC 4543 section 5: SPI || [SeqHi ||] SeqLow
        if self.esn:
            return self.spi_bytes + seq.to_bytes(8, "big")
        return self._header(seq)

    def seal(self, seq: int, payload: bytes, next_header: int, iv: bytes | None = None) -> bytes:
        """The ESP packet (header through ICV) carrying `payload` with sequence number `seq`.

        `iv` overrides the deterministic IV of docs/datapath.md section 3 (published test vectors only).
        """
        plain = payload + self._trailer(len(payload), next_header)
        header = _HEADER.pack(self.spi, seq & MASK32)
        if self._aead is not None:
            if iv is None:
                iv = _SEQ64.pack(seq)  # docs/datapath.md section 3: IV = 64-bit sequence number
            nonce = self.salt + iv
            aad = self.spi_bytes + _SEQ64.pack(seq) if self.esn else header
            if self.gmac:  # RFC 4543 section 3.3: everything authenticated, nothing encrypted
                return header + iv + plain + self._aead.encrypt(nonce, b"", aad + iv + plain)
            return header + iv + self._aead.encrypt(nonce, plain, aad)
        if self._cbc is not None:
            if iv is None:
                iv = self._cbc.iv(seq)
            body = header + iv + self._cbc.encrypt(iv, plain)
        else:
            body = header + plain
        mac_input = body + (seq >> 32).to_bytes(4, "big") if self.esn else body
        return body + hmac.digest(self.integ_key, mac_input, self.hash_name)[: self.icv_len]

    def open(self, esp: bytes, seq: int) -> bytes | None:
        """The decrypted trailer-bearing plaintext of an ESP packet whose full sequence number is `seq`.

        Raises Drop(NOT_AUTHENTICATED) when the ICV does not verify (nothing may be committed then);
        returns None when the packet authenticated but cannot be decrypted (CBC block misalignment).
        """
        iv = esp[8 : 8 + self.iv_len]
        if self._aead is not None:
            nonce = self.salt + iv
            icv_at = len(esp) - self.icv_len
            try:
                if self.gmac:
                    plain = esp[16:icv_at]
                    self._aead.decrypt(nonce, esp[icv_at:], self._aad(seq) + iv + plain)
                    return plain
                return self._aead.decrypt(nonce, esp[16:], self._aad(seq))
            except InvalidTag:
                raise Drop(DropReason.NOT_AUTHENTICATED) from None
        icv_at = len(esp) - self.icv_len
        body = esp[:icv_at]
        mac_input = body + (seq >> 32).to_bytes(4, "big") if self.esn else body
        expected = integrity_icv(self.integ_alg, self.integ_key, mac_input)
        if not hmac.compare_digest(expected, esp[icv_at:]):
            raise Drop(DropReason.NOT_AUTHENTICATED)
        if self._cbc is None:
            return body[8:]
        data = body[8 + self.iv_len :]
        if not data or len(data) % self._cbc.block:
            return None
        return self._cbc.decrypt(iv, data)


def parse_trailer(plain: bytes) -> tuple[bytes, int]:
    """(payload, next header) of a decrypted ESP plaintext; Drop(NOT_DECRYPTED) on bad padding."""
    if len(plain) < 2:
        raise Drop(DropReason.NOT_DECRYPTED)
    pad_len = plain[-2]
    end = len(plain) - 2 - pad_len
    if end < 0 or plain[end:-2] != _PADDING[:pad_len]:
        raise Drop(DropReason.NOT_DECRYPTED)
    return plain[:end], plain[-1]
