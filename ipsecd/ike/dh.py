"""Diffie-Hellman groups for IKE behind an injectable interface.

MODP groups 1, 2 (RFC 2409 section 6), 5, 14, 15, 16 (RFC 3526); ECP groups 19, 20, 21 (RFC 5903,
public value and shared secret encoded as in its section 7); Curve25519, group 31 (RFC 8031).
Randomness is injected (``rng(n) -> n bytes``): this module never reads a system source itself, so
tests are deterministic and the daemon passes ``os.urandom``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from ipsecd.ike.constants import GroupDescription

Rng = Callable[[int], bytes]


class DhError(ValueError):
    """A bad peer public value or an unsupported group (never contains key material)."""


class DhKey(Protocol):
    """One side's ephemeral key in a group."""

    @property
    def group(self) -> int: ...

    def public_value(self) -> bytes:
        """The KE payload's Key Exchange Data."""
        ...

    def shared_secret(self, peer_public: bytes) -> bytes:
        """g^xy, encoded as the group specifies; raises DhError for a bad peer value."""
        ...


class DhProvider(Protocol):
    def generate(self, group: int) -> DhKey: ...


# The MODP primes are 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + k) (RFC 2409 section 6.1/6.2,
# RFC 3526 sections 2-5); generator 2. tests/test_ike_dh.py recomputes them from pi and checks that
# each is a safe prime.
MODP_PRIMES: dict[int, int] = {
    1: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3620FFFFFFFFFFFFFFFF",
        16,
    ),
    2: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
        16,
    ),
    5: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
        "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
        16,
    ),
    14: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
        "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
        16,
    ),
    15: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
        "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
        "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
        16,
    ),
    16: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
        "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
        "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6"
        "287C59474E6BC05D99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
        16,
    ),
}
MODP_GENERATOR = 2
# Private exponent sizes in bits: at least twice the group's symmetric strength (RFC 3526 section 8).
_MODP_EXPONENT_BITS = {1: 256, 2: 256, 5: 320, 14: 384, 15: 448, 16: 512}


@dataclass(frozen=True)
class ModpKey:
    """A MODP key. RFC 2409 section 5: public values are pre-pended with zeros to the prime length."""

    group: int
    _x: int = field(repr=False)

    def __post_init__(self) -> None:
        if self.group not in MODP_PRIMES:
            raise DhError(f"group {self.group} is not a MODP group")
        p = MODP_PRIMES[self.group]
        if not 1 < self._x < p - 1:
            raise DhError("private exponent out of range")

    @property
    def _p(self) -> int:
        return MODP_PRIMES[self.group]

    @property
    def size(self) -> int:
        return (self._p.bit_length() + 7) // 8

    def public_value(self) -> bytes:
        return pow(MODP_GENERATOR, self._x, self._p).to_bytes(self.size, "big")

    def shared_secret(self, peer_public: bytes) -> bytes:
        p = self._p
        if len(peer_public) != self.size:
            raise DhError(f"MODP group {self.group}: public value of {len(peer_public)} bytes")
        y = int.from_bytes(peer_public, "big")
        # 1 < y < p-1 rules out the degenerate values 0, 1 and p-1 (small subgroup of order 2).
        if not 1 < y < p - 1:
            raise DhError(f"MODP group {self.group}: degenerate public value")
        return pow(y, self._x, p).to_bytes(self.size, "big")


_ECP_CURVES: dict[int, tuple[type[ec.EllipticCurve], int]] = {
    19: (ec.SECP256R1, 32),
    20: (ec.SECP384R1, 48),
    21: (ec.SECP521R1, 66),
}
# Bits of the group order: a random scalar of this many bits is in [1, n-1] but for a negligible
# fraction of draws, which are drawn again (rejection sampling, FIPS 186-4 B.4.2).
_ECP_ORDER_BITS = {19: 256, 20: 384, 21: 521}
_ECP_MAX_DRAWS = 64


@dataclass(frozen=True)
class EcpKey:
    """An ECP key. RFC 5903 section 7: public value x || y, shared secret x, each field-sized."""

    group: int
    _key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def from_scalar(cls, group: int, d: int) -> EcpKey:
        if group not in _ECP_CURVES:
            raise DhError(f"group {group} is not an ECP group")
        try:
            return cls(group, ec.derive_private_key(d, _ECP_CURVES[group][0]()))
        except ValueError as e:  # 0 or not below the group order
            raise DhError("private scalar out of range") from e

    def public_value(self) -> bytes:
        size = _ECP_CURVES[self.group][1]
        nums = self._key.public_key().public_numbers()
        return nums.x.to_bytes(size, "big") + nums.y.to_bytes(size, "big")

    def shared_secret(self, peer_public: bytes) -> bytes:
        curve_cls, size = _ECP_CURVES[self.group]
        if len(peer_public) != 2 * size:
            raise DhError(f"ECP group {self.group}: public value of {len(peer_public)} bytes")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(curve_cls(), b"\x04" + peer_public)
            secret = self._key.exchange(ec.ECDH(), peer)
        except ValueError as e:  # not on the curve
            raise DhError(f"ECP group {self.group}: invalid public value") from e
        return secret.rjust(size, b"\x00")


@dataclass(frozen=True)
class X25519Key:
    """Curve25519, group 31: RFC 8031 section 2 (32-byte public value and shared secret)."""

    _key: x25519.X25519PrivateKey = field(repr=False)

    @property
    def group(self) -> int:
        return int(GroupDescription.CURVE25519)

    @classmethod
    def from_private_bytes(cls, data: bytes) -> X25519Key:
        if len(data) != 32:
            raise DhError("X25519 private key must be 32 bytes")
        return cls(x25519.X25519PrivateKey.from_private_bytes(data))

    def public_value(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def shared_secret(self, peer_public: bytes) -> bytes:
        if len(peer_public) != 32:
            raise DhError(f"X25519: public value of {len(peer_public)} bytes")
        try:
            secret = self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
        except ValueError as e:  # all-zero output: RFC 8031 section 2.3 requires rejecting it
            raise DhError("X25519: invalid public value") from e
        if secret == bytes(32):
            raise DhError("X25519: all-zero shared secret")
        return secret


SUPPORTED_GROUPS = frozenset({*MODP_PRIMES, *_ECP_CURVES, int(GroupDescription.CURVE25519)})


def public_value_length(group: int) -> int:
    """The exact KE payload data length for ``group``."""
    if group in MODP_PRIMES:
        return (MODP_PRIMES[group].bit_length() + 7) // 8
    if group in _ECP_CURVES:
        return 2 * _ECP_CURVES[group][1]
    if group == GroupDescription.CURVE25519:
        return 32
    raise DhError(f"unsupported group {group}")


class DefaultDhProvider:
    """Generates keys from an injected random source."""

    def __init__(self, rng: Rng) -> None:
        self._rng = rng

    def generate(self, group: int) -> DhKey:
        if group in MODP_PRIMES:
            bits = _MODP_EXPONENT_BITS[group]
            x = int.from_bytes(self._rng(bits // 8), "big") | (1 << (bits - 1))
            return ModpKey(group, x)
        if group in _ECP_CURVES:
            bits = _ECP_ORDER_BITS[group]
            for _ in range(_ECP_MAX_DRAWS):
                d = int.from_bytes(self._rng((bits + 7) // 8), "big") & ((1 << bits) - 1)
                try:
                    return EcpKey.from_scalar(group, d)
                except DhError:
                    continue
            raise DhError(f"ECP group {group}: random source gave no valid scalar")
        if group == GroupDescription.CURVE25519:
            return X25519Key.from_private_bytes(self._rng(32))
        raise DhError(f"unsupported group {group}")
