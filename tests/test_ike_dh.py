"""DH groups: published vectors (RFC 5903 section 8, RFC 7748 section 6.1), MODP primes recomputed
from their defining formula, peer-value validation, and agreement through the injected RNG."""

from __future__ import annotations

import hashlib

import pytest

from ipsecd.ike.dh import (
    MODP_PRIMES,
    SUPPORTED_GROUPS,
    DefaultDhProvider,
    DhError,
    EcpKey,
    ModpKey,
    X25519Key,
    public_value_length,
)

# RFC 5903 section 8: i, g^i (x, y), r, g^r (x, y), g^ir x. Section 7 encodes the KE data as x || y
# and the shared secret as the x coordinate.
RFC5903 = {
    19: (
        "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
        "dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180",
        "5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
        "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
        "d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63",
        "56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
        "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
    ),
    20: (
        "099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655e35b538041e649ee3faef896783ab194",
        "667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6de3ac808acb4bdb4c88732aee95f41aa",
        "9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38eeb9fcff3c2c947dae69b4c634573a81c",
        "41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942e0308312916b8ed2960e4bd55a7448fc",
        "e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d0d1ac43a0336def96fda41d0774a3571",
        "dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1fff83fa40142209dff5eaad96db9e6386c",
        "11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4d603135569b9e9d09cf5d4a270f59746",
    ),
    21: (
        "0037ade9319a89f4dabdb3ef411aaccca5123c61acab57b5393dce47608172a095aa85a30fe1c2952c6771d937ba97"
        "77f5957b2639bab072462f68c27a57382d4a52",
        "0015417e84dbf28c0ad3c278713349dc7df153c897a1891bd98bab4357c9ecbee1e3bf42e00b8e380aeae57c2d1075"
        "64941885942af5a7f4601723c4195d176ced3e",
        "017cae20b6641d2eeb695786d8c946146239d099e18e1d5a514c739d7cb4a10ad8a788015ac405d7799dc75e7b7d5b"
        "6cf2261a6a7f1507438bf01beb6ca3926f9582",
        "0145ba99a847af43793fdd0e872e7cdfa16be30fdc780f97bccc3f078380201e9c677d600b343757a3bdbf2a3163e4"
        "c2f869cca7458aa4a4effc311f5cb151685eb9",
        "00d0b3975ac4b799f5bea16d5e13e9af971d5e9b984c9f39728b5e5739735a219b97c356436adc6e95bb0352f6be64"
        "a6c2912d4ef2d0433ced2b6171640012d9460f",
        "015c68226383956e3bd066e797b623c27ce0eac2f551a10c2c724d9852077b87220b6536c5c408a1d2aebb8e86d678"
        "ae49cb57091f4732296579ab44fcd17f0fc56a",
        "01144c7d79ae6956bc8edb8e7c787c4521cb086fa64407f97894e5e6b2d79b04d1427e73ca4baa240a34786859810c"
        "06b3c715a3a8cc3151f2bee417996d19f3ddea",
    ),
}


@pytest.mark.parametrize("group", sorted(RFC5903))
def test_rfc5903_vectors(group: int) -> None:
    i, gix, giy, r, grx, gry, girx = (bytes.fromhex(v) for v in RFC5903[group])
    ki = EcpKey.from_scalar(group, int.from_bytes(i, "big"))
    kr = EcpKey.from_scalar(group, int.from_bytes(r, "big"))
    assert ki.public_value() == gix + giy
    assert kr.public_value() == grx + gry
    assert ki.shared_secret(grx + gry) == girx
    assert kr.shared_secret(gix + giy) == girx
    assert public_value_length(group) == len(gix + giy)


def test_rfc7748_x25519_vector() -> None:
    # RFC 7748 section 6.1.
    alice = X25519Key.from_private_bytes(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = X25519Key.from_private_bytes(
        bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    a_pub = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    b_pub = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert alice.public_value() == a_pub
    assert bob.public_value() == b_pub
    assert alice.shared_secret(b_pub) == shared
    assert bob.shared_secret(a_pub) == shared
    assert alice.group == 31


def _floor_pi_times_2pow(k: int) -> int:
    """floor(2^k * pi) by Machin's formula in integers (64 guard bits)."""

    def arctan_inv(x: int, one: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            sign, n = -sign, n + 1
        return total

    one = 1 << (k + 64)
    return (4 * (4 * arctan_inv(5, one) - arctan_inv(239, one))) >> 64


def _probably_prime(n: int) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


# (bits, k) of p = 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + k): RFC 2409 sections 6.1 and
# 6.2 and RFC 3526 sections 2, 3, 4 and 5.
MODP_DEFS = {1: (768, 149686), 2: (1024, 129093), 5: (1536, 741804), 14: (2048, 124476)}
MODP_DEFS_BIG = {15: (3072, 1690314), 16: (4096, 240904)}


@pytest.mark.parametrize("group", sorted({**MODP_DEFS, **MODP_DEFS_BIG}))
def test_modp_prime_from_definition(group: int) -> None:
    n, k = {**MODP_DEFS, **MODP_DEFS_BIG}[group]
    p = 2**n - 2 ** (n - 64) - 1 + 2**64 * (_floor_pi_times_2pow(n - 130) + k)
    assert MODP_PRIMES[group] == p


@pytest.mark.parametrize("group", sorted(MODP_DEFS))
def test_modp_primes_are_safe_primes(group: int) -> None:
    p = MODP_PRIMES[group]
    assert _probably_prime(p)
    assert _probably_prime((p - 1) // 2)


def _counter_rng(seed: bytes):  # type: ignore[no-untyped-def]
    state = {"n": 0}

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            state["n"] += 1
            out += hashlib.sha256(seed + state["n"].to_bytes(4, "big")).digest()
        return out[:n]

    return rng


@pytest.mark.parametrize("group", sorted(SUPPORTED_GROUPS))
def test_agreement_and_lengths(group: int) -> None:
    a = DefaultDhProvider(_counter_rng(b"a")).generate(group)
    b = DefaultDhProvider(_counter_rng(b"b")).generate(group)
    assert a.group == group
    assert len(a.public_value()) == public_value_length(group)
    s = a.shared_secret(b.public_value())
    assert s == b.shared_secret(a.public_value())
    assert a.public_value() != b.public_value()
    # Deterministic from the injected source.
    assert DefaultDhProvider(_counter_rng(b"a")).generate(group).public_value() == a.public_value()


@pytest.mark.parametrize("group", [1, 2, 14])
def test_modp_rejects_degenerate_and_short_values(group: int) -> None:
    k = DefaultDhProvider(_counter_rng(b"x")).generate(group)
    size = public_value_length(group)
    p = MODP_PRIMES[group]
    for bad in (0, 1, p - 1, p, p + 1):
        if bad.bit_length() <= size * 8:
            with pytest.raises(DhError):
                k.shared_secret(bad.to_bytes(size, "big"))
    with pytest.raises(DhError):
        k.shared_secret(b"\x02" * (size - 1))


@pytest.mark.parametrize("group", [19, 20, 21])
def test_ecp_rejects_point_off_curve(group: int) -> None:
    k = DefaultDhProvider(_counter_rng(b"y")).generate(group)
    pub = bytearray(k.public_value())
    pub[-1] ^= 1
    with pytest.raises(DhError):
        k.shared_secret(bytes(pub))
    with pytest.raises(DhError):
        k.shared_secret(bytes(pub[:-1]))


def test_x25519_rejects_low_order_point() -> None:
    k = X25519Key.from_private_bytes(bytes(range(32)))
    with pytest.raises(DhError):
        k.shared_secret(bytes(32))  # the point 0 gives an all-zero secret
    with pytest.raises(DhError):
        k.shared_secret(bytes(31))


def test_unsupported_group_and_private_values() -> None:
    with pytest.raises(DhError):
        DefaultDhProvider(_counter_rng(b"z")).generate(3)
    with pytest.raises(DhError):
        public_value_length(3)
    with pytest.raises(DhError):
        ModpKey(2, 1)
    with pytest.raises(DhError):
        EcpKey.from_scalar(19, 0)
    assert "_x" not in repr(ModpKey(2, 12345)) and "12345" not in repr(ModpKey(2, 12345))
