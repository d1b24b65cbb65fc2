"""The policy model, in the Windows IPsec policy-agent's terms.

A *policy* holds *rules*; a rule ties a *filter list* to a *filter action*, with authentication
methods, a tunnel endpoint (or none for transport mode) and a connection type. The store
(``ipsecd.policy.store``) builds these objects from TOML; ``ipsecd.policy.order`` expands the
generic filters of the assigned policy into ordered specific filters.

Every object remembers where it was declared (``Origin``) so later errors can name file and line.
All objects are frozen: a loaded store is an immutable snapshot that is applied whole or not at all.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from ipsecd.policy.manual_model import ManualPolicy, ManualState

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Origin:
    """Where an object or field was declared: file, 1-based line, dotted field path."""

    file: str = "<built-in>"
    line: int = 0
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}" if self.path else where


class Action(enum.Enum):
    """Filter action kinds (netsh ``action=``)."""

    PERMIT = "permit"
    BLOCK = "block"
    NEGOTIATE = "negotiate"


class ConnType(enum.Enum):
    """Rule connection type (netsh ``conntype=``)."""

    ALL = "all"
    LAN = "lan"
    REMOTE = "remote"


class AddrKind(enum.Enum):
    """What a filter endpoint names before expansion."""

    ME = "me"  # every address of this host
    ANY = "any"  # 0.0.0.0/0 or ::/0
    NETWORK = "network"  # an address or subnet (a single address is a /32 or /128)
    RANGE = "range"  # first-last inclusive
    DNSNAME = "dnsname"  # resolved when the store is loaded
    DNS = "dns"  # dynamic keywords, taken from the host
    WINS = "wins"
    DHCP = "dhcp"
    GATEWAY = "gateway"


DYNAMIC_KINDS = frozenset({AddrKind.DNS, AddrKind.WINS, AddrKind.DHCP, AddrKind.GATEWAY})


@dataclass(frozen=True)
class AddressSpec:
    """One side of a generic filter.

    ``network`` is set for NETWORK; ``first``/``last`` for RANGE; ``name`` for DNSNAME.
    """

    kind: AddrKind
    network: IPNetwork | None = None
    first: IPAddress | None = None
    last: IPAddress | None = None
    name: str | None = None

    def __str__(self) -> str:
        if self.kind is AddrKind.NETWORK:
            return str(self.network)
        if self.kind is AddrKind.RANGE:
            return f"{self.first}-{self.last}"
        if self.kind is AddrKind.DNSNAME:
            return str(self.name)
        return str(self.kind.value)


# IANA protocol numbers for the names netsh accepts.
PROTOCOL_NUMBERS: dict[str, int] = {
    "any": 0,
    "icmp": 1,
    "igmp": 2,
    "ggp": 3,
    "tcp": 6,
    "egp": 8,
    "pup": 12,
    "udp": 17,
    "hmp": 20,
    "xns-idp": 22,
    "rdp": 27,
    "ipv6": 41,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ospf": 89,
    "raw": 255,
}
PORTED_PROTOCOLS = frozenset({6, 17})


@dataclass(frozen=True)
class Filter:
    """A generic filter of a filter list. ``protocol`` 0 means any; port 0 means any."""

    src: AddressSpec
    dst: AddressSpec
    protocol: int = 0
    srcport: int = 0
    dstport: int = 0
    mirrored: bool = True
    description: str = ""
    origin: Origin = field(default=Origin(), compare=False)


@dataclass(frozen=True)
class FilterList:
    name: str
    description: str = ""
    filters: tuple[Filter, ...] = ()
    builtin: bool = False
    origin: Origin = field(default=Origin(), compare=False)


class EspEncryption(enum.Enum):
    """Quick-mode ESP encryption in security-method strings (``ESP[enc,auth]``)."""

    NONE = "None"  # integrity only
    DES3 = "3DES"
    AES128 = "AES128"
    AES192 = "AES192"
    AES256 = "AES256"
    AESGCM128 = "AESGCM128"  # combined mode: no separate integrity
    AESGCM192 = "AESGCM192"
    AESGCM256 = "AESGCM256"
    AESGMAC128 = "AESGMAC128"  # RFC 4543: integrity only, as a combined mode
    AESGMAC256 = "AESGMAC256"
    CHACHA20POLY1305 = "CHACHA20POLY1305"

    @property
    def is_aead(self) -> bool:
        return self.name.startswith(("AESGCM", "AESGMAC", "CHACHA"))


class Integrity(enum.Enum):
    """Quick-mode integrity (ESP auth or AH) and main-mode hash names."""

    NONE = "None"
    MD5 = "MD5"
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"


@dataclass(frozen=True)
class QmSecMethod:
    """One quick-mode security method: ``AH[auth]``, ``ESP[enc,auth]`` or ``AH[auth]+ESP[enc,auth]``.

    Lifetimes: kilobytes and seconds (netsh's ``:kb/s`` suffix); 0 means the default.
    """

    ah: Integrity | None = None
    esp_enc: EspEncryption | None = None
    esp_auth: Integrity | None = None
    lifetime_kb: int = 100_000
    lifetime_s: int = 3_600

    def __str__(self) -> str:
        parts = []
        if self.ah is not None:
            parts.append(f"AH[{self.ah.value}]")
        if self.esp_enc is not None:
            if self.esp_enc.is_aead:
                parts.append(f"ESP[{self.esp_enc.value}]")
            else:
                auth = self.esp_auth.value if self.esp_auth else "None"
                parts.append(f"ESP[{self.esp_enc.value},{auth}]")
        return "+".join(parts) + f":{self.lifetime_kb}k/{self.lifetime_s}s"


@dataclass(frozen=True)
class FilterAction:
    name: str
    action: Action
    description: str = ""
    qmsecmethods: tuple[QmSecMethod, ...] = ()
    inpass: bool = False  # accept unsecured communication, but always respond using IPsec
    soft: bool = False  # allow unsecured communication with non-IPsec-aware computers
    qmpfs: bool = False  # session-key perfect forward secrecy
    builtin: bool = False
    origin: Origin = field(default=Origin(), compare=False)


class MmEncryption(enum.Enum):
    DES3 = "3DES"
    AES128 = "AES128"
    AES192 = "AES192"
    AES256 = "AES256"


@dataclass(frozen=True)
class MmSecMethod:
    """Main-mode security method ``ENC-HASH-GROUP`` with the IANA IKE group number."""

    encryption: MmEncryption
    hash: Integrity
    group: int

    def __str__(self) -> str:
        return f"{self.encryption.value}-{self.hash.value}-{self.group}"


class AuthKind(enum.Enum):
    PSK = "psk"
    CERT = "cert"
    KERBEROS = "kerberos"  # reserved: rejected with a clear "not supported" error


@dataclass(frozen=True)
class AuthMethod:
    """One authentication method of a rule. The PSK never appears in repr() or str()."""

    kind: AuthKind
    psk: str | None = field(default=None, repr=False)
    rootca: str | None = None  # path to a PEM file of the trusted root CA
    certmap: bool = False  # certificate-to-account mapping
    cert: str | None = None  # our certificate file, PEM or DER (docs/certificates.md)
    key: str | None = None  # our private key file (mode 0600); never shown
    origin: Origin = field(default=Origin(), compare=False)

    def __str__(self) -> str:
        if self.kind is AuthKind.PSK:
            return "preshared key"
        if self.kind is AuthKind.CERT:
            return f"certificate (root CA {self.rootca}{', certmap' if self.certmap else ''})"
        return str(self.kind.value)


@dataclass(frozen=True)
class Rule:
    name: str
    filterlist: str
    filteraction: str
    auth: tuple[AuthMethod, ...] = ()
    tunnel: IPAddress | None = None  # None: transport mode
    conntype: ConnType = ConnType.ALL
    active: bool = True
    description: str = ""
    ikeversion: int = 1
    origin: Origin = field(default=Origin(), compare=False)
    # ipsecd extension (no Windows rule setting): UDP-encapsulated ESP even without a NAT, by
    # faking our NAT detection hash (RFC 3947 section 3.2, RFC 7296 section 2.23). docs/store.md.
    forceencap: bool = False


DEFAULT_MM_METHODS_TEXT = ("3DES-SHA1-2", "3DES-MD5-2", "3DES-SHA1-1", "3DES-MD5-1")


@dataclass(frozen=True)
class Policy:
    name: str
    description: str = ""
    pollinginterval: int = 180  # minutes between store polls (netsh default: 180)
    mmlifetime: int = 480  # main-mode lifetime, minutes
    qmpermm: int = 0  # quick modes per main mode, 0 = unlimited
    mmsecmethods: tuple[MmSecMethod, ...] = ()
    mmpfs: bool = False  # master-key perfect forward secrecy
    activatedefaultrule: bool = True
    default_rule_auth: tuple[AuthMethod, ...] = ()  # the default response rule's methods
    rules: tuple[Rule, ...] = ()
    builtin: bool = False
    origin: Origin = field(default=Origin(), compare=False)


@dataclass(frozen=True)
class DaemonSettings:
    """Daemon-wide settings (``[daemon]`` in ipsecd.toml)."""

    assigned_policy: str | None = None
    ipsecexempt: int = 3  # 0..3, Windows meaning; IKE is always exempt
    ikelogging: bool = False
    strongcrlcheck: int = 0  # 0 off, 1 fail on revoked, 2 fail on any CRL error
    origin: Origin = field(default=Origin(), compare=False)


@dataclass(frozen=True)
class Store:
    """A whole, validated policy store: built-ins merged with the user's objects."""

    settings: DaemonSettings
    filterlists: dict[str, FilterList]
    filteractions: dict[str, FilterAction]
    policies: dict[str, Policy]
    xfrm_states: tuple[ManualState, ...] = ()  # [xfrm] states, in load order (docs/manual-keying.md)
    xfrm_policies: tuple[ManualPolicy, ...] = ()  # [xfrm] policies, in load order

    @property
    def assigned(self) -> Policy | None:
        name = self.settings.assigned_policy
        return self.policies.get(name) if name else None
