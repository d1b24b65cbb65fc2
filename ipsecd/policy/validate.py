"""Validate parsed store files into model objects, collecting every issue with file, line and field.

Field paths use the syntax of ``tomlpos.TomlLocator`` (``policy[0].rule[1].filterlist``), with
indexes counted per file. Used by ``ipsecd.policy.store``; the schema is docs/store.md.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ipsecd.policy import builtin, schema
from ipsecd.policy.addrspec import family, parse_address
from ipsecd.policy.issues import ConfigIssue, StoreError
from ipsecd.policy.manual import ManualError, ManualPolicy, ManualState, parse_policy_entry, parse_state_entry
from ipsecd.policy.model import (
    PORTED_PROTOCOLS,
    PROTOCOL_NUMBERS,
    Action,
    AddressSpec,
    AuthKind,
    AuthMethod,
    ConnType,
    DaemonSettings,
    Filter,
    FilterAction,
    FilterList,
    IPAddress,
    MmSecMethod,
    Origin,
    Policy,
    QmSecMethod,
    Rule,
    Store,
)
from ipsecd.policy.secmethods import parse_mmsecmethod, parse_qmsecmethod
from ipsecd.policy.tomlpos import TomlLocator

# Documented in docs/store.md.
POLLINGINTERVAL_RANGE = (1, 43_200)  # minutes (30 days)
MMLIFETIME_RANGE = (5, 2_880)  # minutes (48 hours)
QMPERMM_RANGE = (0, 2_147_483_647)

T = TypeVar("T")


# -- validation --------------------------------------------------------------------------------


_SYNTAX_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_KIND_TEXT = {"filterlist": "filter list", "filteraction": "filter action", "policy": "policy"}


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time"


@dataclass
class _File:
    name: str
    locator: TomlLocator
    mode: int | None
    psk_reported: bool = False


@dataclass
class _RuleRef:
    """What the cross-object checks need about one user rule."""

    file: _File
    path: str
    policy: str
    rule: Rule
    auth_written: bool


@dataclass
class Validator:
    issues: list[ConfigIssue] = field(default_factory=list)
    settings: DaemonSettings | None = None
    settings_where: str = ""
    assigned_path: tuple[_File, str] | None = None
    names: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"filterlist": {}, "filteraction": {}, "policy": {}}
    )
    filterlists: dict[str, tuple[_File, str, FilterList]] = field(default_factory=dict)
    filteractions: dict[str, FilterAction] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    rules: list[_RuleRef] = field(default_factory=list)
    builtin_auth: dict[str, tuple[AuthMethod, ...]] = field(default_factory=dict)
    builtin_auth_named: set[str] = field(default_factory=set)  # even when its methods were wrong
    xfrm_states: dict[object, tuple[ManualState, str]] = field(default_factory=dict)  # key -> (state, where)
    xfrm_policies: dict[object, tuple[ManualPolicy, str]] = field(default_factory=dict)
    xfrm_policy_refs: list[tuple[_File, str, ManualPolicy]] = field(default_factory=list)

    # -- reporting and typed access -----------------------------------------------------------

    def add(self, f: _File, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(f.name, f.locator.line_of(path), path, message))

    def origin(self, f: _File, path: str) -> Origin:
        return Origin(f.name, f.locator.line_of(path), path)

    def keys(self, f: _File, path: str, table: dict[str, Any], allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f" (expected one of: {', '.join(allowed)})"
                self.add(f, _sub(path, key), f"unknown key {key!r}{hint}")

    def typed(self, f: _File, path: str, value: object, kind: type[T], what: str) -> T | None:
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        self.add(f, path, f"must be {what}, not {_type_name(value)}")
        return None

    def get_str(self, f: _File, path: str, t: dict[str, Any], key: str, required: bool = False) -> str | None:
        if key not in t:
            if required:
                self.add(f, _sub(path, key), f"missing required key {key!r}")
            return None
        value = self.typed(f, _sub(path, key), t[key], str, "a string")
        if value is not None and required and not value.strip():
            self.add(f, _sub(path, key), "must not be empty")
            return None
        return value

    def get_bool(self, f: _File, path: str, t: dict[str, Any], key: str, default: bool) -> bool:
        if key not in t:
            return default
        value = self.typed(f, _sub(path, key), t[key], bool, "true or false")
        return default if value is None else value

    def get_int(
        self, f: _File, path: str, t: dict[str, Any], key: str, default: int, lo: int, hi: int
    ) -> int:
        if key not in t:
            return default
        value = self.typed(f, _sub(path, key), t[key], int, "an integer")
        if value is None:
            return default
        if not lo <= value <= hi:
            self.add(f, _sub(path, key), f"{value} is out of range {lo}..{hi}")
            return default
        return value

    def get_tables(
        self, f: _File, path: str, t: dict[str, Any], key: str, header: str
    ) -> list[dict[str, Any]]:
        if key not in t:
            return []
        value = t[key]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.add(f, _sub(path, key), f"must be an array of tables ({header}), not {_type_name(value)}")
            return []
        return value

    def get_strings(self, f: _File, path: str, t: dict[str, Any], key: str) -> list[tuple[str, str]] | None:
        """(element path, text) of an array of strings; None when absent or wrong."""
        if key not in t:
            return None
        value = self.typed(f, _sub(path, key), t[key], list, "an array of strings")
        if value is None:
            return None
        out = []
        for i, item in enumerate(value):
            p = f"{_sub(path, key)}[{i}]"
            s = self.typed(f, p, item, str, "a string")
            if s is not None:
                out.append((p, s))
        return out

    def parse_each(self, f: _File, items: list[tuple[str, str]], parse: Callable[[str], T]) -> tuple[T, ...]:
        out = []
        for p, text in items:
            try:
                out.append(parse(text))
            except ValueError as exc:
                self.add(f, p, str(exc))
        return tuple(out)

    def declare(self, f: _File, path: str, kind: str, name: str) -> bool:
        """Register a name; report reuse of a built-in or an earlier declaration."""
        where = f"{f.name}:{f.locator.line_of(path)}"
        builtins: dict[str, set[str]] = {
            "filterlist": set(builtin.BUILTIN_FILTERLISTS),
            "filteraction": set(builtin.BUILTIN_FILTERACTIONS),
            "policy": set(builtin.BUILTIN_POLICIES),
        }
        if name in builtins[kind]:
            self.add(
                f,
                _sub(path, "name"),
                f"{name!r} is the name of a built-in {_KIND_TEXT[kind]}; choose another",
            )
            return False
        first = self.names[kind].get(name)
        if first is not None:
            self.add(
                f,
                _sub(path, "name"),
                f"duplicate {_KIND_TEXT[kind]} name {name!r} (first declared at {first})",
            )
            return False
        self.names[kind][name] = where
        return True

    # -- driver --------------------------------------------------------------------------------

    def run(self, inputs: Sequence[tuple[str, str, int | None]]) -> Store:
        for name, text, mode in inputs:
            try:
                doc = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                m = _SYNTAX_LINE.search(str(exc))
                msg = _SYNTAX_LINE.sub("", str(exc)).strip()
                self.issues.append(
                    ConfigIssue(name, int(m.group(1)) if m else 0, "", f"TOML syntax error: {msg}")
                )
                continue
            self.document(_File(name, TomlLocator(text), mode), doc)
        self.cross_checks()
        self.issues = list(dict.fromkeys(self.issues))  # one report per place and message
        if self.issues:
            order = {name: i for i, (name, _, _) in enumerate(inputs)}
            raise StoreError(sorted(self.issues, key=lambda i: (order.get(i.file, -1), i.line)))
        policies = dict(builtin.BUILTIN_POLICIES)
        for pname, auth in self.builtin_auth.items():
            policies[pname] = builtin.with_auth(policies[pname], auth)
        policies.update(self.policies)
        return Store(
            settings=self.settings or DaemonSettings(),
            filterlists={**builtin.BUILTIN_FILTERLISTS, **{n: v[2] for n, v in self.filterlists.items()}},
            filteractions={**builtin.BUILTIN_FILTERACTIONS, **self.filteractions},
            policies=policies,
            xfrm_states=tuple(st for st, _ in self.xfrm_states.values()),
            xfrm_policies=tuple(p for p, _ in self.xfrm_policies.values()),
        )

    def document(self, f: _File, doc: dict[str, Any]) -> None:
        self.keys(f, "", doc, schema.TOP_KEYS)
        if "daemon" in doc:
            self.daemon(f, doc["daemon"])
        for i, t in enumerate(self.get_tables(f, "", doc, "filterlist", "[[filterlist]]")):
            self.filterlist(f, f"filterlist[{i}]", t)
        for i, t in enumerate(self.get_tables(f, "", doc, "filteraction", "[[filteraction]]")):
            self.filteraction(f, f"filteraction[{i}]", t)
        for i, t in enumerate(self.get_tables(f, "", doc, "policy", "[[policy]]")):
            self.policy(f, f"policy[{i}]", t)
        for i, t in enumerate(self.get_tables(f, "", doc, "builtinauth", "[[builtinauth]]")):
            self.builtinauth(f, f"builtinauth[{i}]", t)
        if "xfrm" in doc:
            self.xfrm(f, doc["xfrm"])

    # -- objects -------------------------------------------------------------------------------

    def daemon(self, f: _File, value: object) -> None:
        t = self.typed(f, "daemon", value, dict, "a table ([daemon])")
        if t is None:
            return
        if self.settings is not None:
            self.add(f, "daemon", f"[daemon] is already given at {self.settings_where}")
            return
        self.keys(f, "daemon", t, schema.DAEMON_KEYS)
        assigned = self.get_str(f, "daemon", t, "assigned_policy")
        if assigned is not None:
            self.assigned_path = (f, "daemon.assigned_policy")
        self.settings_where = f"{f.name}:{f.locator.line_of('daemon')}"
        self.settings = DaemonSettings(
            assigned_policy=assigned or None,
            ipsecexempt=self.get_int(f, "daemon", t, "ipsecexempt", 3, 0, 3),
            ikelogging=self.get_bool(f, "daemon", t, "ikelogging", False),
            strongcrlcheck=self.get_int(f, "daemon", t, "strongcrlcheck", 0, 0, 2),
            origin=self.origin(f, "daemon"),
        )

    def filterlist(self, f: _File, path: str, t: dict[str, Any]) -> None:
        self.keys(f, path, t, schema.FILTERLIST_KEYS)
        name = self.get_str(f, path, t, "name", required=True)
        description = self.get_str(f, path, t, "description") or ""
        filters = []
        for j, ft in enumerate(self.get_tables(f, path, t, "filter", "[[filterlist.filter]]")):
            flt = self.filter(f, f"{path}.filter[{j}]", ft)
            if flt is not None:
                filters.append(flt)
        if name is not None and self.declare(f, path, "filterlist", name):
            fl = FilterList(name, description, tuple(filters), origin=self.origin(f, path))
            self.filterlists[name] = (f, path, fl)

    def address(self, f: _File, path: str, t: dict[str, Any], side: str) -> AddressSpec | None:
        text = self.get_str(f, path, t, f"{side}addr", required=True)
        mask = self.get_str(f, path, t, f"{side}mask")
        if text is None or (f"{side}mask" in t and mask is None):
            return None
        try:
            return parse_address(text, mask)
        except ValueError as exc:
            key = f"{side}mask" if mask is not None and "mask" in str(exc) else f"{side}addr"
            self.add(f, _sub(path, key), str(exc))
            return None

    def filter(self, f: _File, path: str, t: dict[str, Any]) -> Filter | None:
        self.keys(f, path, t, schema.FILTER_KEYS)
        src = self.address(f, path, t, "src")
        dst = self.address(f, path, t, "dst")
        if src is not None and dst is not None:
            fs, fd = family(src), family(dst)
            if fs is not None and fd is not None and fs != fd:
                self.add(
                    f, _sub(path, "dstaddr"), f"mixes IPv4 and IPv6 (srcaddr is IPv{fs}, dstaddr is IPv{fd})"
                )
        protocol = self.protocol(f, path, t)
        ports = []
        for key in ("srcport", "dstport"):
            port = self.get_int(f, path, t, key, 0, 0, 65535)
            if port and protocol is not None and protocol not in PORTED_PROTOCOLS:
                self.add(f, _sub(path, key), "a port needs protocol tcp or udp")
            ports.append(port)
        mirrored = self.get_bool(f, path, t, "mirrored", True)
        description = self.get_str(f, path, t, "description") or ""
        if src is None or dst is None or protocol is None:
            return None
        return Filter(src, dst, protocol, ports[0], ports[1], mirrored, description, self.origin(f, path))

    def protocol(self, f: _File, path: str, t: dict[str, Any]) -> int | None:
        if "protocol" not in t:
            return 0
        value, p = t["protocol"], _sub(path, "protocol")
        if isinstance(value, str):
            text = value.strip().lower()
            if text in PROTOCOL_NUMBERS:
                return PROTOCOL_NUMBERS[text]
            if text.isdigit():
                value = int(text)
            else:
                self.add(f, p, f"unknown protocol {value!r} (a name such as tcp, udp, icmp, or 0..255)")
                return None
        number = self.typed(f, p, value, int, "a protocol name or number")
        if number is None:
            return None
        if not 0 <= number <= 255:
            self.add(f, p, f"protocol number {number} is out of range 0..255")
            return None
        return number

    def filteraction(self, f: _File, path: str, t: dict[str, Any]) -> None:
        self.keys(f, path, t, schema.FILTERACTION_KEYS)
        name = self.get_str(f, path, t, "name", required=True)
        action_text = self.get_str(f, path, t, "action", required=True)
        action = None
        if action_text is not None:
            try:
                action = Action(action_text.strip().lower())
            except ValueError:
                self.add(
                    f, _sub(path, "action"), f"unknown action {action_text!r} (permit, block or negotiate)"
                )
        items = self.get_strings(f, path, t, "qmsecmethods")
        methods: tuple[QmSecMethod, ...] = ()
        if items is not None:
            methods = self.parse_each(f, items, parse_qmsecmethod)
        flags = {k: self.get_bool(f, path, t, k, False) for k in ("inpass", "soft", "qmpfs")}
        if action is Action.NEGOTIATE and items is not None and not items:
            self.add(f, _sub(path, "qmsecmethods"), "a negotiate action needs at least one security method")
        elif action is Action.NEGOTIATE and "qmsecmethods" not in t:
            self.add(f, _sub(path, "qmsecmethods"), "a negotiate action needs qmsecmethods")
        elif action in (Action.PERMIT, Action.BLOCK):
            assert action is not None
            for key in ("qmsecmethods", "inpass", "soft", "qmpfs"):
                if key in t:
                    self.add(f, _sub(path, key), f'only for action = "negotiate", not {action.value!r}')
        if name is not None and self.declare(f, path, "filteraction", name) and action is not None:
            self.filteractions[name] = FilterAction(
                name,
                action,
                self.get_str(f, path, t, "description") or "",
                methods,
                flags["inpass"],
                flags["soft"],
                flags["qmpfs"],
                origin=self.origin(f, path),
            )

    def auth_list(self, f: _File, path: str, t: dict[str, Any], key: str) -> tuple[AuthMethod, ...]:
        methods = []
        for i, at in enumerate(self.get_tables(f, path, t, key, f"{key} = [{{ method = ... }}]")):
            m = self.auth(f, f"{_sub(path, key)}[{i}]", at)
            if m is not None:
                methods.append(m)
        return tuple(methods)

    def auth(self, f: _File, path: str, t: dict[str, Any]) -> AuthMethod | None:
        self.keys(f, path, t, schema.AUTH_KEYS)
        method = self.get_str(f, path, t, "method", required=True)
        psk = self.get_str(f, path, t, "psk") if "psk" in t else None
        if "psk" in t:
            self.check_psk_mode(f, _sub(path, "psk"))
        rootca = self.get_str(f, path, t, "rootca")
        certmap = self.get_bool(f, path, t, "certmap", False)
        if method is None:
            return None
        try:
            kind = AuthKind(method.strip().lower())
        except ValueError:
            self.add(f, _sub(path, "method"), f"unknown method {method!r} (psk or cert)")
            return None
        if kind is AuthKind.KERBEROS:
            self.add(f, _sub(path, "method"), "Kerberos authentication is not supported by ipsecd")
            return None
        ok = True
        if kind is AuthKind.PSK:
            if "psk" not in t or psk == "":
                self.add(f, _sub(path, "psk"), 'method = "psk" needs a non-empty psk')
                ok = False
            elif psk is None:  # wrong type, already reported
                ok = False
            for key in ("rootca", "certmap", "cert", "key"):
                if key in t:
                    self.add(f, _sub(path, key), f'{key} is only for method = "cert"')
                    ok = False
            return AuthMethod(kind, psk=psk, origin=self.origin(f, path)) if ok else None
        if "psk" in t:
            self.add(f, _sub(path, "psk"), 'psk is only for method = "psk"')
            ok = False
        if rootca is None or not rootca.strip():
            if rootca is not None:
                self.add(f, _sub(path, "rootca"), "rootca must not be empty")
            elif "rootca" not in t:
                self.add(
                    f,
                    _sub(path, "rootca"),
                    'method = "cert" needs rootca (a PEM file of the trusted root CA)',
                )
            return None
        ca = Path(rootca)
        if not ca.is_absolute():
            ca = Path(f.name).parent / ca
        if not ca.is_file():
            self.add(f, _sub(path, "rootca"), f"rootca file {str(ca)!r} does not exist")
            ok = False
        local = self.cert_files(f, path, t)
        return (
            AuthMethod(
                kind,
                rootca=str(ca),
                certmap=certmap,
                cert=local[0],
                key=local[1],
                origin=self.origin(f, path),
            )
            if ok and local is not None
            else None
        )

    def cert_files(self, f: _File, path: str, t: dict[str, Any]) -> tuple[str | None, str | None] | None:
        """Our certificate and key (docs/certificates.md): both or neither, existing, key mode 0600."""
        got: dict[str, str | None] = {"cert": None, "key": None}
        ok = True
        for k, other in (("cert", "key"), ("key", "cert")):
            if k in t and other not in t:
                self.add(
                    f,
                    _sub(path, other),
                    f"{k} needs {other} (our certificate and its private key go together)",
                )
                ok = False
            v = self.get_str(f, path, t, k) if k in t else None
            if v is None:
                ok = ok and k not in t
                continue
            p = Path(v) if Path(v).is_absolute() else Path(f.name).parent / v
            if not p.is_file():
                self.add(f, _sub(path, k), f"{k} file {str(p)!r} does not exist")
                ok = False
            elif k == "key" and (mode := p.stat().st_mode & 0o777) & 0o077:
                self.add(
                    f,
                    _sub(path, k),
                    f"private key file is readable by group or others (mode {mode:04o}); run: chmod 600 {p}",
                )
                ok = False
            got[k] = str(p)
        return (got["cert"], got["key"]) if ok else None

    def check_psk_mode(self, f: _File, path: str, what: str = "a preshared key") -> None:
        if f.mode is None or f.psk_reported or not f.mode & 0o077:
            return
        f.psk_reported = True
        self.add(
            f,
            path,
            f"this file holds {what} but is readable by group or others (mode {f.mode:04o}); "
            f"run: chmod 600 {f.name}",
        )

    def xfrm(self, f: _File, value: object) -> None:
        """``[xfrm]``: manually keyed states and policies in ip xfrm words (docs/manual-keying.md)."""
        t = self.typed(f, "xfrm", value, dict, "a table ([xfrm])")
        if t is None:
            return
        self.keys(f, "xfrm", t, schema.XFRM_KEYS)
        for p, text in self.get_strings(f, "xfrm", t, "states") or []:
            try:
                st = parse_state_entry(text)
            except ManualError as exc:
                self.add(f, p, str(exc))
                continue
            if st.has_keys:
                self.check_psk_mode(f, p, "manual-keying keys")
            where = f"{f.name}:{f.locator.line_of(p)}"
            if st.key in self.xfrm_states:
                self.add(
                    f,
                    p,
                    f"duplicate state dst {st.dst} proto {st.proto.value} spi 0x{st.spi:08x} "
                    f"(first at {self.xfrm_states[st.key][1]})",
                )
                continue
            self.xfrm_states[st.key] = (st, where)
        for p, text in self.get_strings(f, "xfrm", t, "policies") or []:
            try:
                pol = parse_policy_entry(text)
            except ManualError as exc:
                self.add(f, p, str(exc))
                continue
            if pol.key in self.xfrm_policies:
                self.add(
                    f,
                    p,
                    f"duplicate policy src {pol.sel.src} dst {pol.sel.dst} dir {pol.dir.value} "
                    f"(same selector and direction first at {self.xfrm_policies[pol.key][1]})",
                )
                continue
            self.xfrm_policies[pol.key] = (pol, f"{f.name}:{f.locator.line_of(p)}")
            self.xfrm_policy_refs.append((f, p, pol))

    def xfrm_cross_checks(self) -> None:
        """A template that names an SPI must find its state among the stored states."""
        states = [st for st, _ in self.xfrm_states.values()]
        for f, p, pol in self.xfrm_policy_refs:
            for i, tmpl in enumerate(pol.tmpls):
                if tmpl.spi and not any(tmpl.matches(st) for st in states):
                    self.add(
                        f,
                        p,
                        f"tmpl {i + 1} names spi 0x{tmpl.spi:08x} but no state in [xfrm] states has "
                        f"proto {tmpl.proto.value} spi 0x{tmpl.spi:08x} mode {tmpl.mode.value}"
                        + (" with these addresses" if tmpl.src or tmpl.dst else "")
                        + (f" reqid {tmpl.reqid}" if tmpl.reqid else "")
                        + " (leave spi out to match states at run time)",
                    )

    def policy(self, f: _File, path: str, t: dict[str, Any]) -> None:
        self.keys(f, path, t, schema.POLICY_KEYS)
        name = self.get_str(f, path, t, "name", required=True)
        mm_items = self.get_strings(f, path, t, "mmsecmethods")
        mm: tuple[MmSecMethod, ...] = builtin.DEFAULT_MM_METHODS
        if mm_items is not None:
            mm = self.parse_each(f, mm_items, parse_mmsecmethod)
            if not mm_items:
                self.add(
                    f,
                    _sub(path, "mmsecmethods"),
                    "needs at least one method, or leave it out for the default",
                )
        mmpfs = self.get_bool(f, path, t, "mmpfs", False)
        qmpermm = self.get_int(f, path, t, "qmpermm", 1 if mmpfs else 0, *QMPERMM_RANGE)
        if mmpfs and qmpermm != 1:
            self.add(
                f,
                _sub(path, "qmpermm"),
                "mmpfs = true means one quick mode per main mode: set qmpermm = 1 or leave it out",
            )
        rules: list[Rule] = []
        seen: dict[str, str] = {}
        for j, rt in enumerate(self.get_tables(f, path, t, "rule", "[[policy.rule]]")):
            rpath = f"{path}.rule[{j}]"
            rule = self.rule(f, rpath, rt)
            if rule is None:
                continue
            if rule.name in seen:
                self.add(
                    f,
                    _sub(rpath, "name"),
                    f"duplicate rule name {rule.name!r} in this policy (first at {seen[rule.name]})",
                )
                continue
            seen[rule.name] = f"{f.name}:{f.locator.line_of(rpath)}"
            rules.append(rule)
            if name is not None:
                self.rules.append(_RuleRef(f, rpath, name, rule, rt.get("auth", []) != []))
        activate_default = self.get_bool(f, path, t, "activatedefaultrule", True)
        # auth_given: some method was written, so an empty result means errors were reported.
        if "defaultruleauth" in t:
            default_auth = self.auth_list(f, path, t, "defaultruleauth")
            auth_given = t["defaultruleauth"] != []
        else:
            default_auth = next((r.auth for r in rules if r.auth), ())
            rule_tables = t.get("rule")
            auth_given = isinstance(rule_tables, list) and any(
                isinstance(r, dict) and r.get("auth", []) != [] for r in rule_tables
            )
        if activate_default and not default_auth and not auth_given:
            self.add(
                f,
                _sub(path, "defaultruleauth"),
                "the default response rule needs authentication: set defaultruleauth, give a rule auth, "
                "or set activatedefaultrule = false",
            )
        if name is None or not self.declare(f, path, "policy", name):
            return
        self.policies[name] = Policy(
            name=name,
            description=self.get_str(f, path, t, "description") or "",
            pollinginterval=self.get_int(f, path, t, "pollinginterval", 180, *POLLINGINTERVAL_RANGE),
            mmlifetime=self.get_int(f, path, t, "mmlifetime", 480, *MMLIFETIME_RANGE),
            qmpermm=qmpermm,
            mmsecmethods=mm,
            mmpfs=mmpfs,
            activatedefaultrule=activate_default,
            default_rule_auth=default_auth,
            rules=tuple(rules),
            origin=self.origin(f, path),
        )

    def rule(self, f: _File, path: str, t: dict[str, Any]) -> Rule | None:
        self.keys(f, path, t, schema.RULE_KEYS)
        name = self.get_str(f, path, t, "name", required=True)
        fl = self.get_str(f, path, t, "filterlist", required=True)
        fa = self.get_str(f, path, t, "filteraction", required=True)
        auth = self.auth_list(f, path, t, "auth")
        tunnel: IPAddress | None = None
        tunnel_text = self.get_str(f, path, t, "tunnel")
        if tunnel_text is not None:
            try:
                tunnel = ipaddress.ip_address(tunnel_text.strip())
                if tunnel.is_unspecified or tunnel.is_multicast:
                    self.add(f, _sub(path, "tunnel"), f"tunnel endpoint {tunnel} must be a unicast address")
            except ValueError:
                self.add(
                    f, _sub(path, "tunnel"), f"tunnel endpoint must be an IP address, not {tunnel_text!r}"
                )
        conntype = ConnType.ALL
        conn_text = self.get_str(f, path, t, "conntype")
        if conn_text is not None:
            try:
                conntype = ConnType(conn_text.strip().lower())
            except ValueError:
                self.add(f, _sub(path, "conntype"), f"unknown conntype {conn_text!r} (all, lan or remote)")
        ikeversion = 1
        if "ikeversion" in t:
            v = self.typed(f, _sub(path, "ikeversion"), t["ikeversion"], int, "1 or 2")
            if v is not None and v not in (1, 2):
                self.add(f, _sub(path, "ikeversion"), f"ikeversion must be 1 or 2, not {v}")
            elif v is not None:
                ikeversion = v
        active = self.get_bool(f, path, t, "activate", True)
        forceencap = self.get_bool(f, path, t, "forceencap", False)
        description = self.get_str(f, path, t, "description") or ""
        if name is None or fl is None or fa is None:
            return None
        return Rule(
            name,
            fl,
            fa,
            auth,
            tunnel,
            conntype,
            active,
            description,
            ikeversion,
            self.origin(f, path),
            forceencap=forceencap,
        )

    def builtinauth(self, f: _File, path: str, t: dict[str, Any]) -> None:
        self.keys(f, path, t, schema.BUILTINAUTH_KEYS)
        pname = self.get_str(f, path, t, "policy", required=True)
        auth = self.auth_list(f, path, t, "auth")
        if t.get("auth", []) == []:
            self.add(f, _sub(path, "auth"), "needs at least one authentication method")
        if pname is None:
            return
        if pname not in builtin.BUILTIN_POLICIES:
            self.add(
                f,
                _sub(path, "policy"),
                f"{pname!r} is not a built-in policy{_suggest(pname, builtin.BUILTIN_POLICIES)}",
            )
        elif pname in self.builtin_auth_named:
            self.add(f, _sub(path, "policy"), f"authentication for {pname!r} is already given")
        else:
            self.builtin_auth_named.add(pname)
        if auth and pname in builtin.BUILTIN_POLICIES and pname not in self.builtin_auth:
            self.builtin_auth[pname] = auth

    # -- checks across objects and files --------------------------------------------------------

    def cross_checks(self) -> None:
        self.xfrm_cross_checks()
        all_fl = set(builtin.BUILTIN_FILTERLISTS) | set(self.names["filterlist"])
        all_fa = set(builtin.BUILTIN_FILTERACTIONS) | set(self.names["filteraction"])
        for ref in self.rules:
            r, f = ref.rule, ref.file
            if r.filterlist not in all_fl:
                self.add(
                    f,
                    _sub(ref.path, "filterlist"),
                    f"no filter list named {r.filterlist!r}{_suggest(r.filterlist, all_fl)}",
                )
            if r.filteraction not in all_fa:
                self.add(
                    f,
                    _sub(ref.path, "filteraction"),
                    f"no filter action named {r.filteraction!r}{_suggest(r.filteraction, all_fa)}",
                )
            fa = self.filteractions.get(r.filteraction) or builtin.BUILTIN_FILTERACTIONS.get(r.filteraction)
            if fa is not None and fa.action is Action.NEGOTIATE and not r.auth and not ref.auth_written:
                self.add(
                    f,
                    _sub(ref.path, "auth"),
                    f"rule uses negotiate action {fa.name!r} and needs an authentication method (psk or cert)",
                )
            if r.tunnel is not None:
                self.check_tunnel_filters(ref)
        if self.assigned_path is not None and self.settings is not None:
            f, p = self.assigned_path
            name = self.settings.assigned_policy
            if name and name not in self.names["policy"] and name not in builtin.BUILTIN_POLICIES:
                self.add(
                    f,
                    p,
                    f"no policy named {name!r}{_suggest(name, set(self.names['policy']) | set(builtin.BUILTIN_POLICIES))}",
                )
            elif name in builtin.BUILTIN_POLICIES and name not in self.builtin_auth_named:
                self.add(
                    f,
                    p,
                    f"built-in policy {name!r} has no authentication method (Windows uses Kerberos, which "
                    f'ipsecd does not support): add [[builtinauth]] with policy = "{name}" and '
                    'auth = [{ method = "psk", psk = "..." }] or a cert method',
                )

    def check_tunnel_filters(self, ref: _RuleRef) -> None:
        r = ref.rule
        if r.filterlist in builtin.BUILTIN_FILTERLISTS:
            self.add(
                ref.file,
                _sub(ref.path, "filterlist"),
                f"built-in filter list {r.filterlist!r} has mirrored filters and cannot be used by a tunnel rule",
            )
            return
        entry = self.filterlists.get(r.filterlist)
        if entry is None:
            return
        f, path, fl = entry
        for j, flt in enumerate(fl.filters):
            if flt.mirrored:
                fpath = flt.origin.path or f"{path}.filter[{j}]"
                self.add(
                    f,
                    _sub(fpath, "mirrored"),
                    f"filter list {fl.name!r} is used by tunnel rule {r.name!r} of policy {ref.policy!r}: "
                    "tunnel filters must not be mirrored; set mirrored = false and add a filter for each direction",
                )


def _sub(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _suggest(name: str, choices: Sequence[str] | set[str] | dict[str, Any]) -> str:
    near = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    if not near:
        lowered = {c.lower(): c for c in choices}
        if name.lower() in lowered:
            near = [lowered[name.lower()]]
    return f"; did you mean {near[0]!r}?" if near else ""
