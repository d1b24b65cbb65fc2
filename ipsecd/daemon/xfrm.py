"""The daemon side of ``ipsecctl xfrm``: the control command ``xfrm``.

Request: ``{"command": "xfrm", "args": {"argv": ["state", "add", "src", ...], "keys": false}}``.
``state|policy add|del`` change the SA database (and the kernel-side capture for policies);
``list`` answers ``{"states": [...]}`` or ``{"policies": [...]}`` (keys only with ``"keys": true``
and a root peer); ``flush`` removes all states or all policies.
The argv grammar (ip-xfrm syntax) is parsed by ``ipsecd.policy.manual``.
"""

from __future__ import annotations

import importlib
import ipaddress
from typing import TYPE_CHECKING, Any

from ipsecd.daemon.control import ControlError, JSONValue, Request
from ipsecd.daemon.manual import policy_summary
from ipsecd.datapath.sadb import (
    ManualState,
    PolicyAction,
    PolicyDir,
    SadbError,
    SecurityPolicy,
    Template,
)

if TYPE_CHECKING:
    from ipsecd.daemon.engine import Engine


def _parser() -> Any:
    try:
        return importlib.import_module("ipsecd.policy.manual")
    except ImportError:
        return None


def convert_state(obj: Any) -> ManualState:
    """The parser's ManualState to the SA database's."""
    params = obj.to_sa_params()
    return ManualState(
        ipaddress.ip_address(str(obj.src)),
        ipaddress.ip_address(str(obj.dst)),
        params,
        int(getattr(obj, "reqid", 0) or 0),
    )


def convert_policy(obj: Any) -> SecurityPolicy:
    """The parser's ManualPolicy to an SPD entry."""
    if isinstance(obj, SecurityPolicy):
        return obj
    to_sp = getattr(obj, "to_security_policy", None)
    if to_sp is not None:
        result: SecurityPolicy = to_sp()
        return result
    raise TypeError(f"cannot convert {type(obj).__name__} to a security policy")


class XfrmHandler:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handle(self, req: Request) -> JSONValue:
        argv = req.args.get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or len(argv) < 2:
            raise ControlError(
                "invalid_args", "argv must be a list of strings: state|policy add|del|list|flush ..."
            )
        obj, verb = argv[0], argv[1]
        if obj not in ("state", "policy"):
            raise ControlError("invalid_args", f"unknown object {obj!r}: state or policy")
        sadb = self.engine.sadb
        if verb == "list":
            keys = bool(req.args.get("keys")) and req.peer.uid == 0
            if obj == "state":
                states: list[JSONValue] = [sa.summary(keys=keys) for sa in sadb.states.values()]
                return {"states": states}
            policies: list[JSONValue] = [policy_summary(p) for p in sadb.policies]
            return {"policies": policies}
        if verb == "flush":
            if obj == "state":
                sadb.flush_states()
            else:
                sadb.flush_policies()
                self.engine.refresh_kernel()
            return {"flushed": obj}
        if verb not in ("add", "del", "delete"):
            raise ControlError("invalid_args", f"unknown verb {verb!r}: add, del, list or flush")
        parser = _parser()
        if parser is None:
            raise ControlError("unavailable", "the ip-xfrm grammar is not available in this build")
        try:
            parsed = parser.parse_xfrm(argv)
        except ValueError as exc:
            raise ControlError("invalid_args", str(exc)) from None
        try:
            if obj == "state":
                if verb == "add":
                    sadb.add_state(convert_state(parsed), self.engine.now())
                else:
                    st = convert_state(parsed) if hasattr(parsed, "to_sa_params") else None
                    if st is not None:
                        sadb.del_state(int(st.params.protocol), st.params.spi, st.dst)
                    else:
                        sadb.del_state(
                            int(parsed.proto), int(parsed.spi), ipaddress.ip_address(str(parsed.dst))
                        )
            else:
                pol = convert_policy(parsed)
                if verb == "add":
                    sadb.add_policy(pol)
                else:
                    sadb.del_policy(pol.selector, pol.direction)
                self.engine.refresh_kernel()
        except SadbError as exc:
            raise ControlError("conflict" if verb == "add" else "not_found", str(exc)) from None
        return {"ok": True}


__all__ = ["PolicyAction", "PolicyDir", "Template", "XfrmHandler", "convert_policy", "convert_state"]
