"""IKEv1 cryptography: PRFs, the RFC 2409 key derivation, IVs, authentication hashes, CBC.

Everything here is a pure function of its inputs. The PRF of IKEv1 is the HMAC of the negotiated
hash (RFC 2409 section 4: "prf(key, msg)"; without a PRF attribute, the HMAC version of the hash).
Key material is handled as ``bytes`` and never appears in a repr or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ipsecd.ike.constants import EncryptionAlgorithm, HashAlgorithm


class CryptoError(ValueError):
    """An unsupported algorithm, a bad key size or a ciphertext of the wrong length."""


_HASH_NAMES = {
    HashAlgorithm.MD5: "md5",
    HashAlgorithm.SHA: "sha1",
    HashAlgorithm.SHA2_256: "sha256",
    HashAlgorithm.SHA2_384: "sha384",
    HashAlgorithm.SHA2_512: "sha512",
}


def _hash_name(alg: int) -> str:
    try:
        return _HASH_NAMES[HashAlgorithm(alg)]
    except (ValueError, KeyError):
        raise CryptoError(f"unsupported hash algorithm {alg}") from None


def digest_size(alg: int) -> int:
    return hashlib.new(_hash_name(alg)).digest_size


def hash_(alg: int, data: bytes) -> bytes:
    """The negotiated hash itself (used for the Phase 1 and Phase 2 IVs)."""
    return hashlib.new(_hash_name(alg), data).digest()


def prf(alg: int, key: bytes, data: bytes) -> bytes:
    """prf(key, msg) = HMAC-<hash>(key, msg), RFC 2409 section 4; RFC 2104 HMAC."""
    return hmac.new(key, data, _hash_name(alg)).digest()


# ---------------------------------------------------------------- Phase 1: RFC 2409 section 5


def skeyid_psk(alg: int, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """For pre-shared keys: SKEYID = prf(pre-shared-key, Ni_b | Nr_b)."""
    return prf(alg, psk, ni_b + nr_b)


def skeyid_sig(alg: int, ni_b: bytes, nr_b: bytes, gxy: bytes) -> bytes:
    """For signatures: SKEYID = prf(Ni_b | Nr_b, g^xy)."""
    return prf(alg, ni_b + nr_b, gxy)


@dataclass(frozen=True)
class Phase1Keys:
    """SKEYID and its three children (RFC 2409 section 5); ``enc_key`` is per Appendix B."""

    skeyid: bytes = field(repr=False)
    skeyid_d: bytes = field(repr=False)
    skeyid_a: bytes = field(repr=False)
    skeyid_e: bytes = field(repr=False)
    enc_key: bytes = field(repr=False)


def derive_phase1(
    alg: int, skeyid: bytes, gxy: bytes, cky_i: bytes, cky_r: bytes, enc_key_len: int
) -> Phase1Keys:
    """RFC 2409 section 5:

    SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
    SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
    SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
    """
    if len(cky_i) != 8 or len(cky_r) != 8:
        raise CryptoError("cookies must be 8 bytes")
    d = prf(alg, skeyid, gxy + cky_i + cky_r + b"\x00")
    a = prf(alg, skeyid, d + gxy + cky_i + cky_r + b"\x01")
    e = prf(alg, skeyid, a + gxy + cky_i + cky_r + b"\x02")
    return Phase1Keys(skeyid, d, a, e, encryption_key(alg, e, enc_key_len))


def encryption_key(alg: int, skeyid_e: bytes, length: int) -> bytes:
    """RFC 2409 Appendix B: the cipher key is the first bytes of SKEYID_e, or, when SKEYID_e is too
    short, of Ka = K1 | K2 | K3 ... with K1 = prf(SKEYID_e, 0) and Kn = prf(SKEYID_e, Kn-1)."""
    if length < 0:
        raise CryptoError("negative key length")
    if len(skeyid_e) >= length:
        return skeyid_e[:length]
    out = b""
    block = b"\x00"
    while len(out) < length:
        block = prf(alg, skeyid_e, block)
        out += block
    return out[:length]


def phase1_iv(alg: int, gxi: bytes, gxr: bytes, block_size: int) -> bytes:
    """RFC 2409 Appendix B: the first Phase 1 IV is hash(g^xi | g^xr), truncated to the block size."""
    return _truncate(hash_(alg, gxi + gxr), block_size)


def phase2_iv(alg: int, last_phase1_block: bytes, message_id: int, block_size: int) -> bytes:
    """RFC 2409 Appendix B: each Quick Mode or Informational exchange starts its own IV chain with
    hash(last Phase 1 CBC output block | M-ID), truncated to the block size."""
    return _truncate(hash_(alg, last_phase1_block + message_id.to_bytes(4, "big")), block_size)


def _truncate(h: bytes, block_size: int) -> bytes:
    if block_size > len(h):
        raise CryptoError("hash output shorter than the cipher block")
    return h[:block_size]


def hash_i(
    alg: int, skeyid: bytes, gxi: bytes, gxr: bytes, cky_i: bytes, cky_r: bytes, sai_b: bytes, idii_b: bytes
) -> bytes:
    """RFC 2409 section 5: HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b).

    SAi_b is the initiator's whole SA payload body (without the generic header); IDii_b likewise.
    """
    return prf(alg, skeyid, gxi + gxr + cky_i + cky_r + sai_b + idii_b)


def hash_r(
    alg: int, skeyid: bytes, gxr: bytes, gxi: bytes, cky_r: bytes, cky_i: bytes, sai_b: bytes, idir_b: bytes
) -> bytes:
    """RFC 2409 section 5: HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)."""
    return prf(alg, skeyid, gxr + gxi + cky_r + cky_i + sai_b + idir_b)


# ---------------------------------------------------------------- Quick Mode: RFC 2409 section 5.5


def _mid(message_id: int) -> bytes:
    if not 0 <= message_id < 1 << 32:
        raise CryptoError("message ID out of range")
    return message_id.to_bytes(4, "big")


def qm_hash1(alg: int, skeyid_a: bytes, message_id: int, payloads_after_hash: bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ]): the message after the HASH
    payload, generic headers included."""
    return prf(alg, skeyid_a, _mid(message_id) + payloads_after_hash)


def qm_hash2(alg: int, skeyid_a: bytes, message_id: int, ni_b: bytes, payloads_after_hash: bytes) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ])."""
    return prf(alg, skeyid_a, _mid(message_id) + ni_b + payloads_after_hash)


def qm_hash3(alg: int, skeyid_a: bytes, message_id: int, ni_b: bytes, nr_b: bytes) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)."""
    return prf(alg, skeyid_a, b"\x00" + _mid(message_id) + ni_b + nr_b)


def informational_hash(alg: int, skeyid_a: bytes, message_id: int, payloads_after_hash: bytes) -> bytes:
    """RFC 2409 section 5.7: HASH(1) = prf(SKEYID_a, M-ID | N/D)."""
    return prf(alg, skeyid_a, _mid(message_id) + payloads_after_hash)


def keymat(
    alg: int,
    skeyid_d: bytes,
    protocol: int,
    spi: bytes,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    gqm_xy: bytes | None = None,
) -> bytes:
    """RFC 2409 section 5.5 KEYMAT for one SA (one direction, one protocol):

    without PFS: KEYMAT = prf(SKEYID_d, protocol | SPI | Ni_b | Nr_b)
    with PFS:    KEYMAT = prf(SKEYID_d, g(qm)^xy | protocol | SPI | Ni_b | Nr_b)
    expanded:    KEYMAT = K1 | K2 | ...,  Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
    """
    if not 0 <= protocol < 256:
        raise CryptoError("protocol ID out of range")
    if length < 0:
        raise CryptoError("negative KEYMAT length")
    seed = (gqm_xy or b"") + bytes([protocol]) + spi + ni_b + nr_b
    out = b""
    k = b""
    while len(out) < length:
        k = prf(alg, skeyid_d, k + seed)
        out += k
    return out[:length]


# ---------------------------------------------------------------- CBC for ISAKMP payloads


@dataclass(frozen=True)
class CbcCipher:
    """A Phase 1 cipher: RFC 2409 Appendix A encryption algorithm with its key length."""

    algorithm: int
    key_size: int  # bytes
    block_size: int  # bytes

    @property
    def name(self) -> str:
        if self.algorithm == EncryptionAlgorithm.TRIPLE_DES_CBC:
            return "3DES-CBC"
        return f"AES-CBC-{self.key_size * 8}"


def cbc_cipher(algorithm: int, key_length_bits: int | None = None) -> CbcCipher:
    """3DES-CBC (RFC 2409 Appendix A, 192-bit key) or AES-CBC with KEY_LENGTH 128/192/256
    (RFC 3602 section 5.3: the Key Length attribute is required for AES in IKE)."""
    if algorithm == EncryptionAlgorithm.TRIPLE_DES_CBC:
        if key_length_bits not in (None, 192):
            raise CryptoError("3DES-CBC has a fixed 192-bit key")
        return CbcCipher(algorithm, 24, 8)
    if algorithm == EncryptionAlgorithm.AES_CBC:
        if key_length_bits not in (128, 192, 256):
            raise CryptoError(f"AES-CBC key length {key_length_bits} not 128, 192 or 256")
        return CbcCipher(algorithm, key_length_bits // 8, 16)
    raise CryptoError(f"unsupported encryption algorithm {algorithm}")


def _engine(c: CbcCipher, key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    if len(key) != c.key_size:
        raise CryptoError(f"{c.name}: key must be {c.key_size} bytes")
    if len(iv) != c.block_size:
        raise CryptoError(f"{c.name}: IV must be {c.block_size} bytes")
    if c.algorithm == EncryptionAlgorithm.TRIPLE_DES_CBC:
        # Degenerate 3DES keys are refused: with K1 = K2 or K2 = K3 it is single DES.
        if key[0:8] == key[8:16] or key[8:16] == key[16:24]:
            raise CryptoError("3DES-CBC: degenerate key")
        return Cipher(TripleDES(key), modes.CBC(iv))
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def cbc_encrypt(c: CbcCipher, key: bytes, iv: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """Encrypt a message body; returns (ciphertext, IV for the next message of this chain).

    The body is zero-filled to the block size; the ISAKMP header's Length covers the whole message,
    padding included (RFC 2408 section 3.1). The next IV is the last ciphertext block (RFC 2409
    Appendix B).
    """
    pad = (-len(plaintext)) % c.block_size
    enc = _engine(c, key, iv).encryptor()
    ct = enc.update(plaintext + bytes(pad)) + enc.finalize()
    return ct, ct[-c.block_size :] if ct else iv


def cbc_decrypt(c: CbcCipher, key: bytes, iv: bytes, ciphertext: bytes) -> tuple[bytes, bytes]:
    """Decrypt a message body; returns (plaintext with its padding, IV for the next message).

    Raises CryptoError when the length is not a positive multiple of the block size."""
    if not ciphertext or len(ciphertext) % c.block_size:
        raise CryptoError(f"{c.name}: ciphertext of {len(ciphertext)} bytes is not whole blocks")
    dec = _engine(c, key, iv).decryptor()
    pt = dec.update(ciphertext) + dec.finalize()
    return pt, ciphertext[-c.block_size :]
