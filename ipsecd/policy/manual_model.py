"""Manual keying value objects: SAs (states) and policies typed in the ``ip xfrm`` syntax.

Pure code: argv lists in, frozen value objects out (docs/manual-keying.md is the contract).

    ManualState (``xfrm state add``), ManualPolicy (``xfrm policy add``) with Templates,
    StateId / PolicyId (the ``del`` forms), ManualState.to_sa_params(iv_key) -> SAParams.

The parser is ``ipsecd.policy.manual_parse``; text and JSON forms are ``manual_text``; callers
import everything from ``ipsecd.policy.manual``. Key material never appears in ``repr()`` nor in
any ``ManualError`` message.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from ipsecd.datapath.sa import (
    FULL_PORTS,
    EncAlg,
    IntegAlg,
    Lifetimes,
    Mode,
    Protocol,
    SAParams,
    Selector,
    TunnelAddrs,
    UdpEncap,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
MAX_TEMPLATES = 6  # a bundle deeper than this is refused (Linux's limit too)


class ManualError(ValueError):
    """A manual-keying command or store entry that cannot be accepted. Never holds key bytes."""


class XfrmProto(enum.Enum):
    ESP = "esp"
    AH = "ah"

    @property
    def protocol(self) -> Protocol:
        return Protocol.ESP if self is XfrmProto.ESP else Protocol.AH


class XfrmMode(enum.Enum):
    TRANSPORT = "transport"
    TUNNEL = "tunnel"


class PolicyDir(enum.Enum):
    OUT = "out"
    IN = "in"
    FWD = "fwd"


class PolicyAction(enum.Enum):
    ALLOW = "allow"
    BLOCK = "block"


class TmplLevel(enum.Enum):
    REQUIRED = "required"
    USE = "use"


# -- algorithms --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _AlgSpec:
    name: str  # the canonical (Linux crypto API) name, as `ip xfrm state list` shows it
    kind: str  # "aead", "enc" or "auth"
    enc: EncAlg | None = None
    integ: IntegAlg | None = None
    key_sizes: tuple[int, ...] = ()
    bits: int = 0  # the ICV / truncation length ipsecd supports, in bits
    legacy_bits: int = 0  # Linux's truncation for plain `auth NAME KEY` (0: same as bits)


_SPECS = (
    # RFC 4106 section 8.1: the key material is the AES key followed by a 4-byte salt.
    _AlgSpec("rfc4106(gcm(aes))", "aead", enc=EncAlg.ENCR_AES_GCM_16, key_sizes=(20, 28, 36), bits=128),
    # RFC 4543 section 8 (GMAC): same key material layout.
    _AlgSpec(
        "rfc4543(gcm(aes))", "aead", enc=EncAlg.ENCR_NULL_AUTH_AES_GMAC, key_sizes=(20, 28, 36), bits=128
    ),
    # RFC 7634 section 2: a 256-bit key followed by a 4-byte salt.
    _AlgSpec(
        "rfc7539esp(chacha20,poly1305)", "aead", enc=EncAlg.ENCR_CHACHA20_POLY1305, key_sizes=(36,), bits=128
    ),
    _AlgSpec("cbc(aes)", "enc", enc=EncAlg.ENCR_AES_CBC, key_sizes=(16, 24, 32)),  # RFC 3602
    _AlgSpec("cbc(des3_ede)", "enc", enc=EncAlg.ENCR_3DES, key_sizes=(24,)),  # RFC 2451
    _AlgSpec("ecb(cipher_null)", "enc", enc=EncAlg.ENCR_NULL, key_sizes=(0,)),  # RFC 2410
    _AlgSpec("hmac(md5)", "auth", integ=IntegAlg.AUTH_HMAC_MD5_96, key_sizes=(16,), bits=96),  # RFC 2403
    _AlgSpec("hmac(sha1)", "auth", integ=IntegAlg.AUTH_HMAC_SHA1_96, key_sizes=(20,), bits=96),  # RFC 2404
    # RFC 4868 section 2.3: 128-bit truncation. Linux's plain `auth hmac(sha256)` truncates to 96.
    _AlgSpec(
        "hmac(sha256)",
        "auth",
        integ=IntegAlg.AUTH_HMAC_SHA2_256_128,
        key_sizes=(32,),
        bits=128,
        legacy_bits=96,
    ),
    _AlgSpec("hmac(sha384)", "auth", integ=IntegAlg.AUTH_HMAC_SHA2_384_192, key_sizes=(48,), bits=192),
    _AlgSpec("hmac(sha512)", "auth", integ=IntegAlg.AUTH_HMAC_SHA2_512_256, key_sizes=(64,), bits=256),
)
ALGORITHMS: dict[str, _AlgSpec] = {s.name: s for s in _SPECS}
# Short names Linux also accepts for the same algorithms.
ALIASES = {
    "aes": "cbc(aes)",
    "des3_ede": "cbc(des3_ede)",
    "cipher_null": "ecb(cipher_null)",
    "md5": "hmac(md5)",
    "sha1": "hmac(sha1)",
    "sha256": "hmac(sha256)",
    "sha384": "hmac(sha384)",
    "sha512": "hmac(sha512)",
}


@dataclass(frozen=True)
class Algo:
    """One ``ip xfrm`` algorithm: ``aead``, ``enc``, ``auth`` or ``auth-trunc`` (``kind``).

    ``bits``: the ICV length of ``aead`` / the truncation of ``auth-trunc`` and ``auth`` (for
    ``auth`` it is the algorithm's default), 0 for ``enc``. The key never appears in repr().
    """

    kind: str
    name: str
    key: bytes = field(repr=False)
    bits: int = 0

    @property
    def spec(self) -> _AlgSpec:
        return ALGORITHMS[self.name]


# -- value objects -----------------------------------------------------------------------------
@dataclass(frozen=True)
class XfrmSelector:
    """``sel``/policy selector: ports are single ports, 0 = any (as in ip xfrm)."""

    src: IPNetwork
    dst: IPNetwork
    proto: int = 0
    sport: int = 0
    dport: int = 0

    def to_selector(self) -> Selector:
        return Selector(
            self.src,
            self.dst,
            self.proto,
            (self.sport, self.sport) if self.sport else FULL_PORTS,
            (self.dport, self.dport) if self.dport else FULL_PORTS,
        )


@dataclass(frozen=True)
class Encap:
    """``encap espinudp SPORT DPORT OADDR`` (RFC 3948); OADDR is kept for display only."""

    sport: int
    dport: int
    oa: IPAddress = field(default_factory=lambda: ipaddress.IPv4Address(0))


@dataclass(frozen=True)
class Limits:
    """``limit time-soft|time-hard|byte-soft|byte-hard|packet-soft|packet-hard N``; 0 = none."""

    time_soft: int = 0
    time_hard: int = 0
    byte_soft: int = 0
    byte_hard: int = 0
    packet_soft: int = 0
    packet_hard: int = 0


LIMIT_WORDS = ("time-soft", "time-hard", "byte-soft", "byte-hard", "packet-soft", "packet-hard")
DEFAULT_REPLAY_WINDOW = 64


@dataclass(frozen=True)
class StateId:
    """What ``state del`` names: (dst, proto, spi); ``src`` None matches any source."""

    dst: IPAddress
    proto: XfrmProto
    spi: int
    src: IPAddress | None = None


@dataclass(frozen=True)
class ManualState:
    """One manually keyed SA (``ip xfrm state add``). Direction-less, as in Linux: the engine
    treats it as inbound when ``dst`` is an address of this host, outbound otherwise."""

    src: IPAddress
    dst: IPAddress
    proto: XfrmProto
    spi: int
    mode: XfrmMode = XfrmMode.TRANSPORT
    reqid: int = 0
    aead: Algo | None = None
    enc: Algo | None = None
    auth: Algo | None = None
    replay_window: int = DEFAULT_REPLAY_WINDOW
    esn: bool = False
    encap: Encap | None = None
    sel: XfrmSelector | None = None
    limits: Limits = Limits()

    @property
    def key(self) -> tuple[IPAddress, XfrmProto, int]:
        """The identity of an SA (RFC 4301 section 4.1): destination, protocol, SPI."""
        return (self.dst, self.proto, self.spi)

    @property
    def has_keys(self) -> bool:
        return any(a is not None and a.key for a in (self.aead, self.enc, self.auth))

    def matches(self, sid: StateId) -> bool:
        return self.key == (sid.dst, sid.proto, sid.spi) and sid.src in (None, self.src)

    def to_sa_params(self, iv_key: bytes = b"") -> SAParams:
        """The data path's parameters. ``iv_key`` (16 random bytes, injected by the caller) is
        used by CBC ciphers only and ignored otherwise. AEAD keys go over whole: their last 4
        bytes are the salt, as both ip xfrm and SAParams expect."""
        enc_alg, enc_key = EncAlg.ENCR_NULL, b""
        integ_alg, integ_key = IntegAlg.NONE, b""
        cipher = self.aead or self.enc
        if cipher is not None:
            assert cipher.spec.enc is not None
            enc_alg, enc_key = cipher.spec.enc, cipher.key
        if self.auth is not None:
            assert self.auth.spec.integ is not None
            integ_alg, integ_key = self.auth.spec.integ, self.auth.key
        cbc = enc_alg in (EncAlg.ENCR_AES_CBC, EncAlg.ENCR_3DES)
        lim = self.limits
        try:
            return SAParams(
                spi=self.spi,
                protocol=self.proto.protocol,
                mode=Mode.TUNNEL if self.mode is XfrmMode.TUNNEL else Mode.TRANSPORT,
                enc_alg=enc_alg,
                enc_key=enc_key,
                integ_alg=integ_alg,
                integ_key=integ_key,
                replay_window=self.replay_window,
                esn=self.esn,
                encap=UdpEncap(self.encap.sport, self.encap.dport) if self.encap else None,
                tunnel=TunnelAddrs(self.src, self.dst) if self.mode is XfrmMode.TUNNEL else None,
                iv_key=iv_key if cbc else b"",
                lifetimes=Lifetimes(
                    soft_bytes=lim.byte_soft,
                    hard_bytes=lim.byte_hard,
                    soft_packets=lim.packet_soft,
                    hard_packets=lim.packet_hard,
                    soft_seconds=float(lim.time_soft),
                    hard_seconds=float(lim.time_hard),
                ),
                selectors=(self.sel.to_selector(),) if self.sel is not None else (),
            )
        except ValueError as exc:  # SAParams' messages never contain key bytes
            raise ManualError(str(exc)) from None


@dataclass(frozen=True)
class Template:
    """``tmpl [src A dst B] proto esp|ah [spi X] [mode M] [reqid N] [level required|use]``.

    ``spi`` 0 and ``reqid`` 0 mean any. Addresses may be omitted in transport mode only."""

    proto: XfrmProto
    src: IPAddress | None = None
    dst: IPAddress | None = None
    spi: int = 0
    mode: XfrmMode = XfrmMode.TRANSPORT
    reqid: int = 0
    level: TmplLevel = TmplLevel.REQUIRED

    def matches(self, state: ManualState) -> bool:
        """Whether ``state`` can serve this template (docs/manual-keying.md, "Templates")."""
        if state.proto is not self.proto or state.mode is not self.mode:
            return False
        if self.spi and state.spi != self.spi:
            return False
        if self.reqid and state.reqid != self.reqid:
            return False
        return self.src in (None, state.src) and self.dst in (None, state.dst)


@dataclass(frozen=True)
class PolicyId:
    """What ``policy del`` names: the selector and the direction."""

    sel: XfrmSelector
    dir: PolicyDir


@dataclass(frozen=True)
class ManualPolicy:
    """One manual policy (``ip xfrm policy add``). Templates are in the order they are applied
    on output, innermost first (``tmpl proto esp ... tmpl proto ah ...``: AH over ESP)."""

    sel: XfrmSelector
    dir: PolicyDir
    action: PolicyAction = PolicyAction.ALLOW
    priority: int = 0
    tmpls: tuple[Template, ...] = ()

    @property
    def key(self) -> PolicyId:
        return PolicyId(self.sel, self.dir)
