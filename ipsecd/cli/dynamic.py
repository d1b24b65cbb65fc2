"""``ipsecctl dynamic``, ``ipsecctl dump`` and ``ipsecctl monitor``: the running daemon.

``dynamic`` follows netsh's ``ipsec dynamic`` context::

    dynamic show all|config|mmfilter|qmfilter|mmpolicy|qmpolicy|rule|mmsas|qmsas|stats [key=value ...]
    dynamic set config property=NAME value=VALUE
    dynamic delete mmsas|qmsas [srcaddr=] [dstaddr=] [protocol=] [srcport=] [dstport=]

Everything goes through the control socket (``ControlClient``, ``--control PATH``); nothing here
reads the daemon's memory or the kernel. ``dump`` prints the store as ``ipsecctl static``
commands (``ipsecd.policy.dump``): from the store files with ``--config``, else from the daemon.
``monitor`` redraws SAs and counters every ``--interval`` seconds (``--count`` frames, or until
Ctrl-C). Keys, docs and JSON shapes: docs/monitor.md.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ipsecd.cli.dynamic_render import (
    Resolver,
    config_text,
    esp_sa_lines,
    filters_text,
    mmpolicy_text,
    mmsas_text,
    qmpolicy_text,
    qmsas_text,
    rules_text,
    stats_text,
)
from ipsecd.cli.grammar import UsageError, parse_bool
from ipsecd.daemon.control import ControlClient, ControlConnectionError, ControlError, JSONValue
from ipsecd.policy.dump import dump_script
from ipsecd.policy.model import PROTOCOL_NUMBERS
from ipsecd.policy.store import load_store

DEFAULT_CONTROL = "/run/ipsecd/control.sock"
SHOW_OBJECTS = (
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
_ADDR = ("srcaddr", "dstaddr", "srcmask", "dstmask")
_PORTS = ("protocol", "srcport", "dstport")
# Parameters of each ``show`` object (netsh's, plus keys= on qmsas).
SHOW_PARAMS: dict[str, frozenset[str]] = {
    "all": frozenset({"resolvedns"}),
    "config": frozenset(),
    "stats": frozenset({"type"}),
    "mmpolicy": frozenset({"name"}),
    "qmpolicy": frozenset({"name"}),
    "mmfilter": frozenset({"name", "type", "resolvedns", *_ADDR}),
    "qmfilter": frozenset({"name", "type", "resolvedns", "actioninbound", "actionoutbound", *_ADDR, *_PORTS}),
    "rule": frozenset({"type", "resolvedns", *_ADDR, *_PORTS}),
    "mmsas": frozenset({"resolvedns", "format", *_ADDR}),
    "qmsas": frozenset({"resolvedns", "format", "keys", *_ADDR, "protocol"}),
}
TYPE_VALUES = {
    "stats": ("all", "ike", "ipsec"),
    "rule": ("transport", "tunnel"),
    "mmfilter": ("generic", "specific"),
    "qmfilter": ("generic", "specific"),
}
CONFIG_PROPERTIES = ("ipsecexempt", "ikelogging", "strongcrlcheck", "ipsecdiagnostics", "ipsecloginterval")


class DaemonError(Exception):
    """The daemon could not be reached or refused the request (exit status 1)."""


@dataclass
class DynamicContext:
    control: Path
    json: bool
    out: TextIO
    err: TextIO
    config: Path | None = None  # set when --config was given explicitly
    resolver: Resolver | None = None
    is_root: Callable[[], bool] = field(default=lambda: os.geteuid() == 0)
    sleep: Callable[[float], object] = field(default=threading.Event().wait)
    interval: float = 2.0
    count: int | None = None

    def call(self, command: str, args: Mapping[str, JSONValue] | None = None) -> Any:
        try:
            with ControlClient(self.control) as client:
                return client.request(command, dict(args or {}))
        except ControlConnectionError as exc:
            raise DaemonError(f"cannot reach the daemon: {exc}") from None
        except ControlError as exc:
            raise DaemonError(f"the daemon refused the request: {exc.code}: {exc.message}") from None

    def say(self, lines: Sequence[str]) -> None:
        for line in lines:
            print(line, file=self.out)

    def emit(self, obj: Any) -> None:
        print(json.dumps(obj, indent=2), file=self.out)


def reverse_dns(address: str) -> str:
    """``resolvedns=yes``: the address's name, or the address when it has none."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return address  # a prefix, a range or a keyword
    try:
        return socket.gethostbyaddr(address)[0]
    except OSError:
        return address


# -- the grammar -------------------------------------------------------------------------------
def _with_mask(key: str, addr: str, mask: str | None) -> str:
    if mask is None:
        return addr
    try:
        return str(ipaddress.ip_network(f"{addr}/{mask}", strict=True))
    except ValueError as exc:
        raise UsageError(f"{key}: {addr} with mask {mask}: {exc}") from None


def _number(key: str, text: str, hi: int) -> int:
    t = text.strip().lower()
    if key == "protocol" and t in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[t]
    if not t.isdigit() or int(t) > hi:
        raise UsageError(
            f"{key}: expected a number 0..{hi}{' or a protocol name' if key == 'protocol' else ''}"
        )
    return int(t)


def parse_params(where: str, words: Sequence[str], allowed: frozenset[str]) -> tuple[dict[str, str], bool]:
    """``key=value`` words (keys case-insensitive) and whether a bare ``all`` was given."""
    params: dict[str, str] = {}
    all_word = False
    for word in words:
        key, eq, value = word.partition("=")
        key = key.strip().lower()
        if not eq:
            if key == "all" and not all_word:
                all_word = True
                continue
            raise UsageError(f"{where}: expected key=value, not {word!r}")
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise UsageError(f"{where}: unknown parameter {key!r} (parameters: {known})")
        if key in params:
            raise UsageError(f"{where}: {key} given twice")
        params[key] = value
    return params, all_word


def show_request(obj: str, params: Mapping[str, str]) -> dict[str, JSONValue]:
    """The ``dynamic.show`` arguments of a parsed ``show`` command."""
    args: dict[str, JSONValue] = {"what": obj}
    for side in ("src", "dst"):
        addr = params.get(f"{side}addr")
        mask = params.get(f"{side}mask")
        if mask is not None and addr is None:
            raise UsageError(f"{side}mask needs {side}addr")
        if addr is not None:
            args[f"{side}addr"] = _with_mask(f"{side}addr", addr, mask)
    for key in _PORTS:
        if key in params:
            args[key] = _number(key, params[key], 255 if key == "protocol" else 65535)
    if "name" in params and params["name"].lower() != "all":
        args["name"] = params["name"]
    if "type" in params and obj != "stats":
        typ = params["type"].lower()
        if typ not in TYPE_VALUES.get(obj, ()):
            raise UsageError(f"show {obj}: type must be {' or '.join(TYPE_VALUES[obj])}")
        args["type"] = typ
    for key in ("actioninbound", "actionoutbound"):
        if key in params:
            action = params[key].lower()
            if action not in ("permit", "block", "negotiate"):
                raise UsageError(f"{key}: expected permit, block or negotiate")
            args["action"] = action
    if "keys" in params and parse_bool("keys", params["keys"]):
        args["keys"] = True
    return args


# -- commands ------------------------------------------------------------------------------------
def cmd_show(ctx: DynamicContext, words: Sequence[str]) -> int:
    if not words:
        raise UsageError(f"dynamic show: missing object: {' | '.join(SHOW_OBJECTS)}")
    obj = words[0].lower()
    if obj not in SHOW_OBJECTS:
        raise UsageError(f"dynamic show {obj}: unknown object; expected {' | '.join(SHOW_OBJECTS)}")
    params, _ = parse_params(f"show {obj}", words[1:], SHOW_PARAMS[obj])
    args = show_request(obj, params)
    fmt = params.get("format", "list").lower()
    if fmt not in ("list", "table"):
        raise UsageError("format: expected list or table")
    stats_type = params.get("type", "all").lower() if obj == "stats" else "all"
    if stats_type not in TYPE_VALUES["stats"]:
        raise UsageError("show stats: type must be all, ike or ipsec")
    if args.get("keys") and not ctx.is_root():
        raise UsageError("keys=yes: only root may read SA keys (run as root)")
    resolve: Resolver = (
        (ctx.resolver or reverse_dns) if parse_bool("resolvedns", params.get("resolvedns", "no")) else str
    )
    result = ctx.call("dynamic.show", args)
    if ctx.json:
        ctx.emit(result)
        return 0
    if args.get("keys"):
        ctx.say(esp_sa_lines(result.get("keys", [])))
        return 0
    ctx.say(render(obj, result, resolve, fmt == "table", stats_type))
    return 0


def render(
    obj: str, result: Mapping[str, Any], resolve: Resolver, table: bool = False, stats_type: str = "all"
) -> list[str]:
    """Text of one ``show`` answer (``all``: every section, netsh's order)."""
    if obj == "all":
        out: list[str] = []
        for part in (
            "config",
            "mmpolicy",
            "qmpolicy",
            "mmfilter",
            "qmfilter",
            "rule",
            "mmsas",
            "qmsas",
            "stats",
        ):
            if out:
                out.append("")
            out += render(part, result, resolve, table)
        return out
    if obj == "config":
        return config_text(result["config"])
    if obj == "stats":
        return stats_text(result["stats"], stats_type)
    if obj == "mmsas":
        return mmsas_text(result["mmsas"], resolve, table)
    if obj == "qmsas":
        return qmsas_text(result["qmsas"], resolve, table)
    if obj in ("mmfilter", "qmfilter"):
        return filters_text(obj, result[obj], resolve)
    if obj == "mmpolicy":
        return mmpolicy_text(result["mmpolicy"])
    if obj == "qmpolicy":
        return qmpolicy_text(result["qmpolicy"])
    return rules_text(result["rule"])


def cmd_set(ctx: DynamicContext, words: Sequence[str]) -> int:
    if not words or words[0].lower() != "config":
        raise UsageError("dynamic set: expected 'config property=NAME value=VALUE'")
    params, all_word = parse_params("set config", words[1:], frozenset({"property", "value"}))
    if all_word or set(params) != {"property", "value"}:
        raise UsageError("set config: needs property= and value=")
    prop = params["property"].strip().lower()
    if prop not in CONFIG_PROPERTIES:
        raise UsageError(f"set config: property must be one of {', '.join(CONFIG_PROPERTIES)}")
    result = ctx.call("dynamic.set_config", {"key": prop, "value": params["value"].strip()})
    if ctx.json:
        ctx.emit(result)
    else:
        value = result["config"][prop]
        ctx.say([f"{prop} = {int(value) if isinstance(value, bool) else value}"])
    return 0


def cmd_delete(ctx: DynamicContext, words: Sequence[str]) -> int:
    if not words or words[0].lower() not in ("mmsas", "qmsas"):
        raise UsageError("dynamic delete: expected mmsas or qmsas")
    what = words[0].lower()
    allowed = frozenset({*_ADDR, *_PORTS}) if what == "qmsas" else frozenset(_ADDR)
    params, _ = parse_params(f"delete {what}", words[1:], allowed)
    args = show_request(what, params)
    result = ctx.call("dynamic.delete", args)
    if ctx.json:
        ctx.emit(result)
    else:
        n = len(result["deleted"])
        kind = "main mode" if what == "mmsas" else "quick mode"
        ctx.say([f"deleted {n} {kind} SA{'s' if n != 1 else ''}" + (f": {result['deleted']}" if n else "")])
    return 0


def run_dynamic(ctx: DynamicContext, words: Sequence[str]) -> int:
    if not words:
        raise UsageError("dynamic: expected show, set or delete")
    verb = words[0].lower()
    commands = {"show": cmd_show, "set": cmd_set, "delete": cmd_delete}
    if verb not in commands:
        raise UsageError(f"dynamic: unknown command {words[0]!r}; expected show, set or delete")
    return commands[verb](ctx, words[1:])


def run_dump(ctx: DynamicContext, words: Sequence[str]) -> int:
    """``ipsecctl dump``: from the store files with --config, else from the running daemon."""
    if words:
        raise UsageError("dump takes no parameters")
    if ctx.config is not None:
        script = dump_script(load_store(ctx.config), str(ctx.config))
    else:
        script = str(ctx.call("dump")["script"])
    if ctx.json:
        ctx.emit({"script": script})
    else:
        print(script, end="", file=ctx.out)
    return 0


# -- monitor -------------------------------------------------------------------------------------
CLEAR = "\x1b[H\x1b[2J"


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def monitor_frame(snap: Mapping[str, Any], frame: int, interval: float) -> list[str]:
    """One screen of ``ipsecctl monitor``."""
    mm, qm = snap["stats"]["main_mode"], snap["stats"]["quick_mode"]
    policy = snap["config"].get("policy") or "none"
    out = [
        f"ipsecd IP Security Monitor  policy: {policy}  uptime: {snap['uptime_seconds']}s"
        f"  refresh {interval:g}s  #{frame}  (Ctrl-C quits)",
        "",
        f"Main mode SAs: {len(snap['mmsas'])}   Quick mode SAs: {qm['active_sa']}"
        f"   Tunnels: {qm['active_tunnels']}   Soft: {mm['soft_associations']}",
        f"Negotiation failures: {mm['negotiation_failures']}   Authentication failures:"
        f" {mm['authentication_failures']}   Bad SPI: {qm['bad_spi_packets']}"
        f"   Not authenticated: {qm['packets_not_authenticated']}   Replays: {qm['packets_with_replay_detection']}",
        f"Confidential bytes sent/received: {_human(qm['confidential_bytes_sent'])}"
        f"/{_human(qm['confidential_bytes_received'])}   Rekeys: {qm['rekeys']}",
        "",
        f"{'peer':<24} {'auth':<5} {'main mode':<22} {'left':>7}",
    ]
    for s in snap["mmsas"]:
        methods = f"{s['encryption']}-{s['integrity']}-{s['dh_group']}"
        out.append(f"{s['peer']:<24} {s['auth_method']:<5} {methods:<22} {s['lifetime_left']:>6}s")
    out += ["", f"{'traffic':<40} {'mode':<9} {'spi in/out':<22} {'bytes in/out':>24} {'left':>7}"]
    for s in snap["qmsas"]:
        traffic = f"{s['srcaddr']} -> {s['dstaddr']}"
        spis = f"{s['inbound_spi']}/{s['outbound_spi']}"
        traffic_bytes = f"{_human(s['bytes_in'])}/{_human(s['bytes_out'])}"
        out.append(f"{traffic:<40} {s['mode']:<9} {spis:<22} {traffic_bytes:>24} {s['lifetime_left']:>6}s")
    return out


def run_monitor(ctx: DynamicContext, words: Sequence[str]) -> int:
    if words:
        raise UsageError("monitor takes no parameters (options: --interval N, --count N)")
    if ctx.interval <= 0:
        raise UsageError("--interval must be positive")
    frame = 0
    try:
        while ctx.count is None or frame < ctx.count:
            frame += 1
            snap = ctx.call("dynamic.show", {"what": "all"})
            print(CLEAR + "\n".join(monitor_frame(snap, frame, ctx.interval)), file=ctx.out, flush=True)
            if ctx.count is not None and frame >= ctx.count:
                break
            ctx.sleep(ctx.interval)
    except KeyboardInterrupt:
        print("", file=ctx.out)
    return 0
