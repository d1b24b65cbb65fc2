"""The IP Security Monitor state: what the engine publishes and ``ipsecctl dynamic`` reads.

The engine owns a ``MonitorState`` and keeps it current: main mode SAs (``add_mm_sa`` /
``remove_mm_sa``), quick mode SAs (``add_qm_sa`` / ``update_qm_traffic`` / ``remove_qm_sa``),
the statistics of the Windows IP Security Monitor (``count_mm`` / ``count_qm`` for event
counters, ``set_mm_gauge`` for sizes; SA and tunnel counts are derived from the tables), the
running configuration (``config``) and the applied policy (``set_policy``). Control handlers
(``register``) read it: ``dynamic.show``, ``dynamic.set_config``, ``dynamic.delete``, ``dump``.

Records are frozen dataclasses; ``snapshot()`` returns JSON-able dicts (keys: docs/monitor.md).
Key material (``SaKeys``) is kept apart from the records, never in a snapshot, never in a repr,
and leaves the daemon only for ``dynamic.show {"what": "qmsas", "keys": true}`` from a root peer.

Time: every record holds an absolute expiry on the state's clock (``clock``, injected; the
daemon passes ``time.monotonic``); lifetimes left are computed when a view is built.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ipsecd.daemon.control import ControlError, ControlServer, ErrorCode, JSONValue, Request
from ipsecd.daemon.monitor_views import filter_views, mmpolicy_views, qmpolicy_views, rule_views
from ipsecd.datapath.counters import Counters
from ipsecd.log.statistics import MM_STATS, QM_STATS
from ipsecd.policy.classifier import CompiledPolicy
from ipsecd.policy.dump import dump_script
from ipsecd.policy.model import Store

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
View = dict[str, Any]


# -- records -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MainModeSA:
    """An established main mode (ISAKMP, RFC 2408; IKEv2: IKE) SA. Cookies are the 8-byte
    initiator and responder cookies (RFC 2408 section 3.1; IKEv2 SPIs) as integers."""

    id: int
    local: IPAddress
    peer: IPAddress
    icookie: int
    rcookie: int
    auth_method: str  # "psk" | "cert"
    local_identity: str
    peer_identity: str
    encryption: str  # "AES256", "3DES", ...
    integrity: str  # "SHA256", "SHA1", ...
    dh_group: int  # IANA IKE group number
    lifetime_seconds: int
    expires_at: float  # on the state's clock
    ike_version: int = 1
    role: str = "initiator"
    local_port: int = 500
    peer_port: int = 500  # 4500 with NAT traversal
    policy: str = ""
    rule: str = ""


@dataclass(frozen=True)
class QuickModeSA:
    """An established quick mode (IKEv2: Child) SA pair: one inbound and one outbound SPI."""

    id: int
    mmsa_id: int | None
    local: IPAddress  # outer addresses: this host and the peer (the tunnel endpoints)
    peer: IPAddress
    src: str  # traffic: an address, a prefix or a FIRST-LAST range
    dst: str
    protocol: int  # 0: any
    srcport: int  # 0: any
    dstport: int
    mode: str  # "transport" | "tunnel"
    inbound_spi: int
    outbound_spi: int
    esp_encryption: str | None  # "AES128", "AESGCM128", "None", ... None: no ESP
    esp_integrity: str | None  # "SHA1", ...; None for combined modes or no ESP
    ah_integrity: str | None  # None: no AH
    lifetime_seconds: int
    lifetime_kilobytes: int
    expires_at: float
    pfs_group: int | None = None
    soft: bool = False  # a soft association: unsecured traffic allowed by the filter action
    udp_encap: bool = False  # NAT traversal (RFC 3948)
    filter: str = ""  # "policy/rule" of the filter that asked for it
    filteraction: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0


@dataclass(frozen=True)
class SaKeys:
    """The keys of a quick mode SA pair (encryption keys include the salt of combined modes)."""

    enc_in: bytes = field(repr=False)
    auth_in: bytes = field(repr=False)
    enc_out: bytes = field(repr=False)
    auth_out: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "SaKeys(<redacted>)"


# The quick mode statistics the data path's Counters carry under the same names.
DATAPATH_STATS = tuple(n for n in QM_STATS if n in Counters.field_names())
# Derived from the SA tables when a view is built (the engine does not count them).
MM_DERIVED = frozenset({"soft_associations"})
QM_DERIVED = frozenset({"active_sa", "active_tunnels"})


@dataclass(frozen=True)
class MonitorConfig:
    """``netsh ipsec dynamic set config``: the running values (docs/monitor.md)."""

    ipsecexempt: int = 3  # 0..3 (docs/policy.md)
    ikelogging: bool = False  # the Oakley-style negotiation log
    strongcrlcheck: int = 0  # 0..2
    ipsecdiagnostics: int = 0  # 0..7: which drops are logged (Windows' diagnostic levels)
    ipsecloginterval: int = 3600  # seconds between PACKETS_DROPPED summaries, 60..86400


CONFIG_RANGES: dict[str, tuple[int, int]] = {
    "ipsecexempt": (0, 3),
    "ikelogging": (0, 1),
    "strongcrlcheck": (0, 2),
    "ipsecdiagnostics": (0, 7),
    "ipsecloginterval": (60, 86400),
}
UNSUPPORTED_CONFIG = {
    "bootmode": "ipsecd has no boot-time mode: nothing is filtered before the daemon starts",
    "bootexemptions": "ipsecd has no boot-time mode: nothing is filtered before the daemon starts",
}


def parse_config_value(key: str, value: JSONValue) -> int | bool:
    """Check one ``set config`` value; raises ControlError(invalid_args) with the reason."""
    key = key.lower()
    if key in UNSUPPORTED_CONFIG:
        raise ControlError(ErrorCode.INVALID_ARGS, f"{key}: {UNSUPPORTED_CONFIG[key]}")
    if key not in CONFIG_RANGES:
        known = ", ".join(sorted(CONFIG_RANGES))
        raise ControlError(ErrorCode.INVALID_ARGS, f"unknown property {key!r} (properties: {known})")
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, str) and value.strip().lower() in ("yes", "no") and key == "ikelogging":
        number = int(value.strip().lower() == "yes")
    else:
        raise ControlError(ErrorCode.INVALID_ARGS, f"{key}: expected a number, not {value!r}")
    lo, hi = CONFIG_RANGES[key]
    if not lo <= number <= hi:
        raise ControlError(ErrorCode.INVALID_ARGS, f"{key}: {number} is out of range ({lo}..{hi})")
    return bool(number) if key == "ikelogging" else number


# -- address filters of the show/delete requests -----------------------------------------------
def _range_of(text: str) -> tuple[int, int, int] | None:
    """(version, first, last) of an address, prefix or FIRST-LAST text; None for keywords."""
    try:
        if "-" in text and "/" not in text:
            a, _, b = text.partition("-")
            first, last = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
            return first.version, int(first), int(last)
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.broadcast_address)


def address_matches(wanted: str, candidate: str) -> bool:
    """Does the request's address (``any``, an address or a prefix) overlap ``candidate``?"""
    if wanted.strip().lower() in ("", "any"):
        return True
    if wanted.strip().lower() == candidate.strip().lower():
        return True
    w, c = _range_of(wanted), _range_of(candidate)
    if w is None or c is None or w[0] != c[0]:
        return False
    return w[1] <= c[2] and c[1] <= w[2]


def _check_address(key: str, value: JSONValue) -> str:
    if not isinstance(value, str):
        raise ControlError(ErrorCode.INVALID_ARGS, f"{key}: expected an address")
    if value.strip().lower() not in ("any", "me") and _range_of(value) is None:
        raise ControlError(ErrorCode.INVALID_ARGS, f"{key}: {value!r} is not an address or prefix")
    return value


def _int_arg(args: Mapping[str, JSONValue], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ControlError(ErrorCode.INVALID_ARGS, f"{key}: expected a non-negative integer")
    return value


SHOW_WHAT = (
    "all",
    "config",
    "mmfilter",
    "qmfilter",
    "mmpolicy",
    "qmpolicy",
    "rule",
    "mmsas",
    "qmsas",
    "stats",
)
_FILTER_KEYS = {"srcaddr", "dstaddr", "protocol", "srcport", "dstport", "name", "type", "action"}
_SHOW_KEYS = {"what", "keys", *_FILTER_KEYS}


def select(rows: Iterable[View], args: Mapping[str, JSONValue], pair: bool = False) -> list[View]:
    """The rows that pass the request's filters. ``pair``: SA rows (``local``/``peer``), where
    ``srcaddr``/``dstaddr`` match the two ends in either order."""
    src = _check_address("srcaddr", args["srcaddr"]) if "srcaddr" in args else "any"
    dst = _check_address("dstaddr", args["dstaddr"]) if "dstaddr" in args else "any"
    numbers = {k: _int_arg(args, k) for k in ("protocol", "srcport", "dstport")}
    name, kind, action = args.get("name"), args.get("type"), args.get("action")

    def traffic_matches(row: Mapping[str, Any]) -> bool:
        if not (address_matches(src, str(row["srcaddr"])) and address_matches(dst, str(row["dstaddr"]))):
            return False
        return not any(v is not None and row.get(k, v) not in (v, 0) for k, v in numbers.items())

    out: list[View] = []
    for row in rows:
        if pair:
            a, b = str(row["local"]), str(row["peer"])
            if not (
                (address_matches(src, a) and address_matches(dst, b))
                or (address_matches(src, b) and address_matches(dst, a))
            ):
                continue
            if any(v is not None and row.get(k, v) not in (v, 0) for k, v in numbers.items()):
                continue
        elif "filters" in row:  # a rule: one of its filters must match
            if not any(traffic_matches(f) for f in row["filters"]):
                continue
        elif not traffic_matches(row):
            continue
        if name is not None and name not in (row.get("name"), row.get("rule"), row.get("policy")):
            continue
        if kind is not None and row.get("type") != kind:
            continue
        if action is not None and row.get("action") != action:
            continue
        out.append(row)
    return out


# -- the state ---------------------------------------------------------------------------------
DeleteCallback = Callable[[str, list[int]], None]
ConfigCallback = Callable[[MonitorConfig], None]


class MonitorState:
    """The registry the engine fills and the control handlers read (thread-safe)."""

    def __init__(self, clock: Callable[[], float], wall_clock: Callable[[], float] | None = None) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self._lock = threading.RLock()
        self._mmsas: dict[int, MainModeSA] = {}
        self._qmsas: dict[int, QuickModeSA] = {}
        self._keys: dict[int, SaKeys] = {}
        self._mm_stats: dict[str, int] = dict.fromkeys(MM_STATS, 0)
        self._qm_stats: dict[str, int] = dict.fromkeys(QM_STATS, 0)
        self.config = MonitorConfig()
        self._store: Store | None = None
        self._compiled: CompiledPolicy | None = None
        self.started_at = clock()
        # Engine callbacks; None: the request is refused as not available.
        self.on_delete: DeleteCallback | None = None
        self.on_config: ConfigCallback | None = None
        self.store_source = ""  # where the applied store was read from (the dump's header)

    # -- engine side ---------------------------------------------------------------------------
    def add_mm_sa(self, sa: MainModeSA) -> None:
        with self._lock:
            self._mmsas[sa.id] = sa

    def remove_mm_sa(self, sa_id: int) -> MainModeSA | None:
        with self._lock:
            return self._mmsas.pop(sa_id, None)

    def add_qm_sa(self, sa: QuickModeSA, keys: SaKeys | None = None) -> None:
        with self._lock:
            self._qmsas[sa.id] = sa
            if keys is not None:
                self._keys[sa.id] = keys
            else:
                self._keys.pop(sa.id, None)

    def remove_qm_sa(self, sa_id: int) -> QuickModeSA | None:
        with self._lock:
            self._keys.pop(sa_id, None)
            return self._qmsas.pop(sa_id, None)

    def update_qm_traffic(
        self, sa_id: int, *, bytes_in: int, bytes_out: int, packets_in: int, packets_out: int
    ) -> None:
        """Set an SA pair's cumulative traffic (from its transforms' counters)."""
        with self._lock:
            sa = self._qmsas.get(sa_id)
            if sa is not None:
                self._qmsas[sa_id] = dataclasses.replace(
                    sa, bytes_in=bytes_in, bytes_out=bytes_out, packets_in=packets_in, packets_out=packets_out
                )

    def count_mm(self, name: str, n: int = 1) -> None:
        self._count(self._mm_stats, MM_STATS, MM_DERIVED, name, n)

    def count_qm(self, name: str, n: int = 1) -> None:
        self._count(self._qm_stats, QM_STATS, QM_DERIVED, name, n)

    def add_datapath_counters(self, delta: Counters) -> None:
        """Add a data path counter delta (``ipsecd.datapath.counters``, same names) to the quick
        mode statistics: bytes by kind and the drop counters Windows shows."""
        with self._lock:
            for name in DATAPATH_STATS:
                self._qm_stats[name] += getattr(delta, name)

    def set_mm_gauge(self, name: str, value: int) -> None:
        """Sizes (heap sizes, list sizes, active acquires): set, not added."""
        if name not in MM_STATS or name in MM_DERIVED:
            raise KeyError(name)
        with self._lock:
            self._mm_stats[name] = value

    def set_qm_gauge(self, name: str, value: int) -> None:
        if name not in QM_STATS or name in QM_DERIVED:
            raise KeyError(name)
        with self._lock:
            self._qm_stats[name] = value

    def _count(
        self, table: dict[str, int], names: Mapping[str, str], derived: frozenset[str], name: str, n: int
    ) -> None:
        if name not in names or name in derived:
            raise KeyError(name)
        with self._lock:
            table[name] += n

    def set_policy(self, store: Store, compiled: CompiledPolicy) -> None:
        """The store and compiled policy now applied (views of filters and policies)."""
        with self._lock:
            self._store, self._compiled = store, compiled
            s = store.settings
            self.config = dataclasses.replace(
                self.config,
                ipsecexempt=s.ipsecexempt,
                ikelogging=s.ikelogging,
                strongcrlcheck=s.strongcrlcheck,
            )

    @property
    def store(self) -> Store | None:
        return self._store

    def keys_of(self, sa_id: int) -> SaKeys | None:
        with self._lock:
            return self._keys.get(sa_id)

    # -- views ---------------------------------------------------------------------------------
    def mmsa_views(self) -> list[View]:
        now = self.clock()
        with self._lock:
            sas = sorted(self._mmsas.values(), key=lambda s: s.id)
        return [
            {
                "id": s.id,
                "local": str(s.local),
                "local_port": s.local_port,
                "peer": str(s.peer),
                "peer_port": s.peer_port,
                "icookie": f"{s.icookie:016x}",
                "rcookie": f"{s.rcookie:016x}",
                "auth_method": s.auth_method,
                "local_identity": s.local_identity,
                "peer_identity": s.peer_identity,
                "encryption": s.encryption,
                "integrity": s.integrity,
                "dh_group": s.dh_group,
                "lifetime_seconds": s.lifetime_seconds,
                "lifetime_left": max(0, int(s.expires_at - now)),
                "ike_version": s.ike_version,
                "role": s.role,
                "policy": s.policy,
                "rule": s.rule,
            }
            for s in sas
        ]

    def qmsa_views(self) -> list[View]:
        now = self.clock()
        with self._lock:
            sas = sorted(self._qmsas.values(), key=lambda s: s.id)
        return [
            {
                "id": s.id,
                "mmsa_id": s.mmsa_id,
                "local": str(s.local),
                "peer": str(s.peer),
                "srcaddr": s.src,
                "dstaddr": s.dst,
                "protocol": s.protocol,
                "srcport": s.srcport,
                "dstport": s.dstport,
                "mode": s.mode,
                "inbound_spi": f"0x{s.inbound_spi:08x}",
                "outbound_spi": f"0x{s.outbound_spi:08x}",
                "esp_encryption": s.esp_encryption,
                "esp_integrity": s.esp_integrity,
                "ah_integrity": s.ah_integrity,
                "pfs_group": s.pfs_group,
                "soft": s.soft,
                "udp_encap": s.udp_encap,
                "filter": s.filter,
                "filteraction": s.filteraction,
                "bytes_in": s.bytes_in,
                "bytes_out": s.bytes_out,
                "packets_in": s.packets_in,
                "packets_out": s.packets_out,
                "lifetime_seconds": s.lifetime_seconds,
                "lifetime_kilobytes": s.lifetime_kilobytes,
                "lifetime_left": max(0, int(s.expires_at - now)),
                "kilobytes_left": max(0, s.lifetime_kilobytes - (s.bytes_in + s.bytes_out) // 1024),
            }
            for s in sas
        ]

    def stats_view(self) -> View:
        with self._lock:
            mm = dict(self._mm_stats)
            qm = dict(self._qm_stats)
            mm["soft_associations"] = sum(1 for s in self._qmsas.values() if s.soft)
            qm["active_sa"] = len(self._qmsas)
            qm["active_tunnels"] = sum(1 for s in self._qmsas.values() if s.mode == "tunnel")
        return {"main_mode": mm, "quick_mode": qm}

    def config_view(self) -> View:
        c = self.config
        return {
            "ipsecexempt": c.ipsecexempt,
            "ikelogging": c.ikelogging,
            "strongcrlcheck": c.strongcrlcheck,
            "ipsecdiagnostics": c.ipsecdiagnostics,
            "ipsecloginterval": c.ipsecloginterval,
            "policy": self._compiled.policy if self._compiled else None,
        }

    def policy_views(self) -> dict[str, list[View]]:
        with self._lock:
            store, compiled = self._store, self._compiled
        if store is None or compiled is None:
            return {"mmfilter": [], "qmfilter": [], "mmpolicy": [], "qmpolicy": [], "rule": []}
        mm, qm = filter_views(store, compiled)
        return {
            "mmfilter": mm,
            "qmfilter": qm,
            "mmpolicy": mmpolicy_views(store, compiled),
            "qmpolicy": qmpolicy_views(store, compiled),
            "rule": rule_views(store, compiled),
        }

    def snapshot(self) -> View:
        """Everything, JSON-able (``dynamic.show {"what": "all"}``)."""
        views = self.policy_views()
        return {
            "uptime_seconds": max(0, int(self.clock() - self.started_at)),
            "time": None if self.wall_clock is None else round(self.wall_clock(), 3),
            "config": self.config_view(),
            **views,
            "mmsas": self.mmsa_views(),
            "qmsas": self.qmsa_views(),
            "stats": self.stats_view(),
        }

    # -- control handlers ----------------------------------------------------------------------
    def register(self, server: ControlServer) -> None:
        server.register("dynamic.show", self.handle_show)
        server.register("dynamic.set_config", self.handle_set_config)
        server.register("dynamic.delete", self.handle_delete)
        server.register("dump", self.handle_dump)

    def handle_show(self, request: Request) -> Any:
        args = request.args
        unknown = set(args) - _SHOW_KEYS
        if unknown:
            raise ControlError(ErrorCode.INVALID_ARGS, f"unknown arguments: {sorted(unknown)}")
        what = args.get("what", "all")
        if what not in SHOW_WHAT:
            raise ControlError(ErrorCode.INVALID_ARGS, f"what: expected one of {', '.join(SHOW_WHAT)}")
        keys = args.get("keys", False)
        if keys and what != "qmsas":
            raise ControlError(ErrorCode.INVALID_ARGS, "keys: only with qmsas")
        if keys and request.peer.uid != 0:
            raise ControlError(ErrorCode.PERMISSION_DENIED, "SA keys are given to root only")
        if what == "all":
            snap = self.snapshot()
            for k in ("mmfilter", "qmfilter", "rule"):
                snap[k] = select(snap[k], args)
            for k in ("mmsas", "qmsas"):
                snap[k] = select(snap[k], args, pair=True)
            return snap
        if what == "config":
            return {"config": self.config_view()}
        if what == "stats":
            return {"stats": self.stats_view()}
        if what in ("mmsas", "qmsas"):
            rows = select(self.mmsa_views() if what == "mmsas" else self.qmsa_views(), args, pair=True)
            result: View = {what: rows}
            if keys:
                result["keys"] = self._key_views([int(r["id"]) for r in rows])
            return result
        rows = self.policy_views()[what]
        if what in ("mmpolicy", "qmpolicy"):
            name = args.get("name")
            return {what: [r for r in rows if name is None or r["name"] == name]}
        return {what: select(rows, args)}

    def _key_views(self, ids: list[int]) -> list[View]:
        out: list[View] = []
        with self._lock:
            for i in ids:
                sa, keys = self._qmsas.get(i), self._keys.get(i)
                if sa is None or keys is None:
                    continue
                common = {
                    "id": i,
                    "esp_encryption": sa.esp_encryption,
                    "esp_integrity": sa.esp_integrity,
                    "ah_integrity": sa.ah_integrity,
                }
                out.append(
                    {
                        **common,
                        "direction": "in",
                        "src": str(sa.peer),
                        "dst": str(sa.local),
                        "spi": f"0x{sa.inbound_spi:08x}",
                        "enc_key": keys.enc_in.hex(),
                        "auth_key": keys.auth_in.hex(),
                    }
                )
                out.append(
                    {
                        **common,
                        "direction": "out",
                        "src": str(sa.local),
                        "dst": str(sa.peer),
                        "spi": f"0x{sa.outbound_spi:08x}",
                        "enc_key": keys.enc_out.hex(),
                        "auth_key": keys.auth_out.hex(),
                    }
                )
        return out

    def handle_set_config(self, request: Request) -> Any:
        args = request.args
        if set(args) != {"key", "value"} or not isinstance(args["key"], str):
            raise ControlError(ErrorCode.INVALID_ARGS, "expected {key, value}")
        key = args["key"].lower()
        value = parse_config_value(key, args["value"])
        changes: dict[str, Any] = {key: value}
        new = dataclasses.replace(self.config, **changes)
        if self.on_config is None:
            raise ControlError("not_available", "the engine does not accept configuration changes")
        self.on_config(new)  # may refuse with a ControlError: then nothing changes
        with self._lock:
            self.config = new
        return {"config": self.config_view()}

    def handle_delete(self, request: Request) -> Any:
        args = dict(request.args)
        what = args.pop("what", None)
        if what not in ("mmsas", "qmsas"):
            raise ControlError(ErrorCode.INVALID_ARGS, "what: expected mmsas or qmsas")
        unknown = set(args) - {"srcaddr", "dstaddr", "protocol", "srcport", "dstport"}
        if unknown:
            raise ControlError(ErrorCode.INVALID_ARGS, f"unknown arguments: {sorted(unknown)}")
        rows = select(self.mmsa_views() if what == "mmsas" else self.qmsa_views(), args, pair=True)
        ids = [int(r["id"]) for r in rows]
        if self.on_delete is None:
            raise ControlError("not_available", "the engine does not accept SA deletions")
        if ids:
            self.on_delete(what, ids)
        return {"what": what, "deleted": ids}

    def handle_dump(self, request: Request) -> Any:
        """The applied store as ``ipsecctl static`` commands. It holds the preshared keys: root only."""
        if request.args:
            raise ControlError(ErrorCode.INVALID_ARGS, "dump takes no arguments")
        if request.peer.uid != 0:
            raise ControlError(ErrorCode.PERMISSION_DENIED, "the dump holds preshared keys: root only")
        store = self._store
        if store is None:
            raise ControlError("not_available", "the daemon has no store applied")
        return {"script": dump_script(store, self.store_source)}
