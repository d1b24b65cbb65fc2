"""Manual keying in the daemon: the control command ``xfrm`` and the store's ``[xfrm]`` table.

Request: ``{"command": "xfrm", "args": {"argv": ["state", "add", "src", ...], "keys": false}}``
(docs/manual-keying.md). The words are parsed by ``ipsecd.policy.manual``; the daemon converts
the parsed states and policies into SA-database entries (``ipsecd.datapath.sadb``):

- ``state add|del``: install or remove one direction of an SA (inbound when its ``dst`` is an
  address of this host); ``state list`` answers ``{"states": [...]}`` with each state's JSON form
  plus its direction and counters, keys only with ``"keys": true`` from a root peer;
- ``policy add|del``: change the SPD, then re-apply the kernel side (nft capture and inbound
  drops follow the policies); ``policy list`` answers ``{"policies": [...]}``;
- ``flush``: every state, or every policy. ``add``/``del``/``flush`` answer ``{"ok": true, "count": N}``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ipsecd.daemon.control import ControlError, JSONValue, Request
from ipsecd.datapath.sa import Mode
from ipsecd.datapath.sadb import (
    ManualState,
    PolicyAction,
    PolicyDir,
    SadbError,
    SecurityPolicy,
    Template,
)
from ipsecd.policy import manual

if TYPE_CHECKING:
    from ipsecd.daemon.engine import Engine


def convert_state(ms: manual.ManualState) -> ManualState:
    """A parsed ``state add`` to an SA-database state (CBC gets a fresh random IV key)."""
    try:
        params = ms.to_sa_params(iv_key=os.urandom(16))
    except manual.ManualError as exc:
        raise SadbError(str(exc)) from None
    return ManualState(ms.src, ms.dst, params, ms.reqid, source=ms)


def convert_policy(mp: manual.ManualPolicy) -> SecurityPolicy:
    """A parsed ``policy add`` to an SPD entry: allow with templates = PROTECT, allow = BYPASS,
    block = DISCARD."""
    templates = tuple(
        Template(
            t.proto.protocol,
            Mode.TUNNEL if t.mode is manual.XfrmMode.TUNNEL else Mode.TRANSPORT,
            t.src,
            t.dst,
            t.reqid,
            t.spi,
            t.level is manual.TmplLevel.USE,
        )
        for t in mp.tmpls
    )
    if mp.action is manual.PolicyAction.BLOCK:
        action, templates = PolicyAction.DISCARD, ()
    elif templates:
        action = PolicyAction.PROTECT
    else:
        action = PolicyAction.BYPASS
    return SecurityPolicy(
        mp.sel.to_selector(), PolicyDir(mp.dir.value), action, templates, mp.priority, source=mp
    )


def state_json(sa: Any, keys: bool) -> dict[str, Any]:
    st: ManualState = sa.state
    base: dict[str, Any] = (
        manual.state_to_json(st.source, keys) if isinstance(st.source, manual.ManualState) else {}
    )
    summary = sa.summary(keys=False)
    base.update(
        {
            "direction": summary["direction"],
            "backend": summary["backend"],
            "counters": summary["counters"],
        }
    )
    if not base.get("src"):
        base.update({k: summary[k] for k in ("src", "dst", "proto", "spi", "mode")})
    return base


def policy_json(p: SecurityPolicy) -> dict[str, Any]:
    if isinstance(p.source, manual.ManualPolicy):
        return manual.policy_to_json(p.source)
    sel = p.selector
    return {"src": str(sel.src), "dst": str(sel.dst), "dir": p.direction.value, "action": p.action.value}


class XfrmHandler:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handle(self, req: Request) -> JSONValue:
        argv, keys = req.args.get("argv"), bool(req.args.get("keys", False))
        if not isinstance(argv, list) or not all(isinstance(w, str) for w in argv):
            raise ControlError("invalid_args", "argv must be a list of strings")
        if keys and req.peer.uid != 0:
            raise ControlError("forbidden", "keys are shown to root only")
        try:
            cmd = manual.parse_xfrm_command([str(w) for w in argv])
        except manual.ManualError as exc:
            raise ControlError("invalid_args", str(exc)) from None
        try:
            if cmd.obj == "state":
                return self._state(cmd, keys)
            return self._policy(cmd)
        except SadbError as exc:
            code = "conflict" if cmd.verb == "add" else "not_found"
            raise ControlError(code, str(exc)) from None

    def _state(self, cmd: manual.XfrmCommand, keys: bool) -> JSONValue:
        sadb = self.engine.sadb
        if cmd.verb == "list":
            states: list[JSONValue] = [state_json(sa, keys) for sa in sadb.states.values()]
            return {"states": states}
        if cmd.verb == "flush":
            count = len(sadb.states)
            sadb.flush_states()
            return {"ok": True, "count": count}
        if cmd.verb == "add":
            assert isinstance(cmd.payload, manual.ManualState)
            sadb.add_state(convert_state(cmd.payload), self.engine.now())
            return {"ok": True, "count": 1}
        sid = cmd.payload
        assert isinstance(sid, manual.StateId)
        proto = int(sid.proto.protocol)
        found = sadb.states.get((proto, sid.spi, sid.dst))
        if found is None or (sid.src is not None and found.state.src != sid.src):
            raise SadbError(f"no state {sid.proto.value} spi 0x{sid.spi:08x} dst {sid.dst}")
        sadb.del_state(proto, sid.spi, sid.dst)
        return {"ok": True, "count": 1}

    def _policy(self, cmd: manual.XfrmCommand) -> JSONValue:
        sadb = self.engine.sadb
        if cmd.verb == "list":
            policies: list[JSONValue] = [policy_json(p) for p in sadb.policies]
            return {"policies": policies}
        before = list(sadb.policies)
        if cmd.verb == "flush":
            count = len(sadb.policies)
            sadb.flush_policies()
        elif cmd.verb == "add":
            assert isinstance(cmd.payload, manual.ManualPolicy)
            sadb.add_policy(convert_policy(cmd.payload))
            count = 1
        else:
            pid = cmd.payload
            assert isinstance(pid, manual.PolicyId)
            sadb.del_policy(pid.sel.to_selector(), PolicyDir(pid.dir.value))
            count = 1
        try:
            self.engine.refresh_kernel()
        except Exception as exc:  # the kernel refused: put the SPD back as it was
            sadb.policies[:] = before
            sadb.generation += 1
            raise ControlError(
                "failed", f"the kernel side could not be updated: {type(exc).__name__}"
            ) from None
        return {"ok": True, "count": count}
