"""Manual keying in the daemon: states and policies from JSON (``--manual FILE``) into the SA database.

The JSON form is the engine's own, used by tests and by ``ipsecd --manual``; the ip-xfrm grammar
(``ipsecctl xfrm``, the store's ``[xfrm]`` table) is converted to the same objects.

    {"states": [{"src": "192.0.2.1", "dst": "192.0.2.2", "proto": "esp", "spi": 4096,
                 "mode": "transport", "enc": "ENCR_AES_GCM_16", "enc_key": "<hex>",
                 "integ": "NONE", "integ_key": "", "iv_key": "", "encap": [4500, 4500],
                 "reqid": 0, "sel": null}],
     "policies": [{"src": "192.0.2.1/32", "dst": "192.0.2.2/32", "proto": 0, "sport": [0, 65535],
                   "dport": [0, 65535], "dir": "out", "action": "protect", "priority": 0,
                   "tmpl": [{"proto": "esp", "mode": "transport", "src": null, "dst": null,
                             "reqid": 0}]}]}
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from ipsecd.datapath.sa import (
    FULL_PORTS,
    EncAlg,
    IntegAlg,
    Mode,
    Protocol,
    SAParams,
    Selector,
    TunnelAddrs,
    UdpEncap,
)
from ipsecd.datapath.sadb import ManualState, PolicyAction, PolicyDir, SecurityPolicy, Template


class ManualError(ValueError):
    """A manual state or policy description is invalid (the message never holds key bytes)."""


def _proto(text: Any) -> Protocol:
    if text in ("esp", 50):
        return Protocol.ESP
    if text in ("ah", 51):
        return Protocol.AH
    raise ManualError(f"protocol must be esp or ah, not {text!r}")


def _mode(text: Any) -> Mode:
    try:
        return Mode[str(text).upper()]
    except KeyError:
        raise ManualError(f"mode must be transport or tunnel, not {text!r}") from None


def _ports(value: Any) -> tuple[int, int]:
    if value is None:
        return FULL_PORTS
    if isinstance(value, int):
        return FULL_PORTS if value == 0 else (value, value)
    lo, hi = value
    return (int(lo), int(hi))


def _hex(value: Any, what: str) -> bytes:
    try:
        return bytes.fromhex(str(value or "").removeprefix("0x"))
    except ValueError:
        raise ManualError(f"{what} is not hexadecimal") from None


def state_from_json(d: dict[str, Any]) -> ManualState:
    try:
        src = ipaddress.ip_address(d["src"])
        dst = ipaddress.ip_address(d["dst"])
        mode = _mode(d.get("mode", "transport"))
        encap = d.get("encap")
        sel = d.get("sel")
        params = SAParams(
            spi=int(d["spi"]),
            protocol=_proto(d.get("proto", "esp")),
            mode=mode,
            enc_alg=EncAlg[d.get("enc", "ENCR_NULL")],
            enc_key=_hex(d.get("enc_key"), "enc_key"),
            integ_alg=IntegAlg[d.get("integ", "NONE")],
            integ_key=_hex(d.get("integ_key"), "integ_key"),
            iv_key=_hex(d.get("iv_key"), "iv_key"),
            replay_window=int(d.get("replay_window", 64)),
            esn=bool(d.get("esn", False)),
            encap=None if not encap else UdpEncap(int(encap[0]), int(encap[1])),
            tunnel=TunnelAddrs(src, dst) if mode == Mode.TUNNEL else None,
            selectors=() if not sel else (selector_from_json(sel),),
        )
        return ManualState(src, dst, params, int(d.get("reqid", 0)))
    except ManualError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ManualError(f"bad state: {exc}") from None


def selector_from_json(d: dict[str, Any]) -> Selector:
    return Selector(
        ipaddress.ip_network(d["src"]),
        ipaddress.ip_network(d["dst"]),
        int(d.get("proto", 0)),
        _ports(d.get("sport")),
        _ports(d.get("dport")),
    )


def policy_from_json(d: dict[str, Any]) -> SecurityPolicy:
    try:
        tmpls = tuple(
            Template(
                _proto(t.get("proto", "esp")),
                _mode(t.get("mode", "transport")),
                ipaddress.ip_address(t["src"]) if t.get("src") else None,
                ipaddress.ip_address(t["dst"]) if t.get("dst") else None,
                int(t.get("reqid", 0)),
            )
            for t in d.get("tmpl", ())
        )
        action = PolicyAction(d.get("action", "protect" if tmpls else "bypass"))
        return SecurityPolicy(
            selector_from_json(d), PolicyDir(d["dir"]), action, tmpls, int(d.get("priority", 0))
        )
    except ManualError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ManualError(f"bad policy: {exc}") from None


def load_json(path: Path | str) -> tuple[list[ManualState], list[SecurityPolicy]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ManualError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ManualError(f"{path}: expected an object with states and policies")
    states = [state_from_json(s) for s in data.get("states", [])]
    policies = [policy_from_json(p) for p in data.get("policies", [])]
    return states, policies


def policy_summary(p: SecurityPolicy) -> dict[str, Any]:
    sel = p.selector
    return {
        "src": str(sel.src),
        "dst": str(sel.dst),
        "proto": sel.protocol,
        "sport": list(sel.src_ports),
        "dport": list(sel.dst_ports),
        "dir": p.direction.value,
        "action": p.action.value,
        "priority": p.priority,
        "tmpl": [
            {
                "proto": t.protocol.name.lower(),
                "mode": t.mode.name.lower(),
                "src": None if t.src is None else str(t.src),
                "dst": None if t.dst is None else str(t.dst),
                "reqid": t.reqid,
            }
            for t in p.templates
        ],
    }
