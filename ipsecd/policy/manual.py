"""Manual keying in the ``ip xfrm`` syntax: the one import for callers (docs/manual-keying.md).

    from ipsecd.policy.manual import parse_xfrm_command, ManualError
    cmd = parse_xfrm_command(["state", "add", "src", "10.0.0.1", ...])   # XfrmCommand
    cmd.payload.to_sa_params(iv_key)                                    # ipsecd.datapath.sa.SAParams

The pieces: value objects in ``manual_model``, the parser in ``manual_parse``, text/JSON forms
and the command parser in ``manual_text``. All pure (no sockets, no clock, no randomness).
"""

from __future__ import annotations

from ipsecd.policy.manual_model import (
    ALGORITHMS,
    ALIASES,
    DEFAULT_REPLAY_WINDOW,
    Algo,
    Encap,
    Limits,
    ManualError,
    ManualPolicy,
    ManualState,
    PolicyAction,
    PolicyDir,
    PolicyId,
    StateId,
    Template,
    TmplLevel,
    XfrmMode,
    XfrmProto,
    XfrmSelector,
)
from ipsecd.policy.manual_parse import parse_policy, parse_policy_id, parse_state, parse_state_id
from ipsecd.policy.manual_text import (
    HIDDEN,
    XfrmCommand,
    parse_policy_entry,
    parse_state_entry,
    parse_xfrm_command,
    policy_entry,
    policy_to_json,
    policy_words,
    render_policy,
    render_state,
    split_entry,
    state_entry,
    state_to_json,
    state_words,
)

__all__ = [
    "ALGORITHMS",
    "ALIASES",
    "DEFAULT_REPLAY_WINDOW",
    "HIDDEN",
    "Algo",
    "Encap",
    "Limits",
    "ManualError",
    "ManualPolicy",
    "ManualState",
    "PolicyAction",
    "PolicyDir",
    "PolicyId",
    "StateId",
    "Template",
    "TmplLevel",
    "XfrmCommand",
    "XfrmMode",
    "XfrmProto",
    "XfrmSelector",
    "parse_policy",
    "parse_policy_entry",
    "parse_policy_id",
    "parse_state",
    "parse_state_entry",
    "parse_state_id",
    "parse_xfrm_command",
    "policy_entry",
    "policy_to_json",
    "policy_words",
    "render_policy",
    "render_state",
    "split_entry",
    "state_entry",
    "state_to_json",
    "state_words",
]
