"""``ipsecctl xfrm state|policy add|del|list|flush ...``: manual keying in the ip xfrm syntax.

Three targets (docs/manual-keying.md, "ipsecctl xfrm"):

* default: the running daemon, over the control socket (``--control PATH``); the change lasts
  until the daemon stops. An unreachable daemon is an error that points at ``--store``.
* ``--store``: the store's ``[xfrm]`` table only (``--config PATH``); the daemon applies it
  when it starts or reloads. ``list`` shows the store's entries.
* ``--persist``: both. The store edit is validated first, then sent to the daemon; the files are
  written when the daemon accepted it, or when no daemon answers (then a note says so). A
  daemon's refusal writes nothing.

The words are checked locally with the same parser the daemon uses before anything is sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipsecd.cli.context import CliError, Context
from ipsecd.cli.grammar import UsageError
from ipsecd.cli.static import open_editor
from ipsecd.daemon.control import ControlClient, ControlConnectionError, ControlError
from ipsecd.policy.edit import EditError, StoreEditor, StoreFile, store_lock
from ipsecd.policy.manual import (
    ManualError,
    ManualPolicy,
    ManualState,
    PolicyId,
    StateId,
    XfrmCommand,
    parse_policy_entry,
    parse_state_entry,
    parse_xfrm_command,
    policy_entry,
    policy_to_json,
    render_policy,
    render_state,
    state_entry,
    state_to_json,
)
from ipsecd.policy.store import StoreError, load_store, parse_store_texts

DEFAULT_CONTROL = "/run/ipsecd/control.sock"
CONTROL_TIMEOUT = 10.0

XFRM_USAGE = """\
usage: ipsecctl [--control PATH] [--store | --persist] [--config PATH] xfrm OBJECT VERB ...
  xfrm state add ID ALGO... [mode transport|tunnel] [reqid N] [replay-window N] [flag esn]
                 [encap espinudp SPORT DPORT OADDR] [sel SELECTOR] [limit KIND N]...
  xfrm state del [src ADDR] dst ADDR proto esp|ah spi SPI
  xfrm policy add src CIDR dst CIDR [proto P [sport N] [dport N]] dir out|in|fwd
                 [action allow|block] [priority N] [tmpl ...]...
  xfrm policy del src CIDR dst CIDR [proto P [sport N] [dport N]] dir out|in|fwd
  xfrm state|policy list [--json] [--keys]      xfrm state|policy flush
(ip-xfrm(8) words; see docs/manual-keying.md)
"""


@dataclass(frozen=True)
class XfrmOptions:
    control: str = DEFAULT_CONTROL
    store: bool = False  # the store only
    persist: bool = False  # the daemon and the store
    keys: bool = False  # list: show keys (root only)


Connect = Callable[[str], ControlClient]


def _client(path: str) -> ControlClient:
    return ControlClient(path, timeout=CONTROL_TIMEOUT)


def run_xfrm(ctx: Context, words: Sequence[str], opts: XfrmOptions, connect: Connect = _client) -> int:
    """Run ``xfrm ...`` (``words`` are the words after ``xfrm``)."""
    if not words or words[0].lower() == "help":
        ctx.say(XFRM_USAGE.rstrip("\n"))
        return 0
    try:
        cmd = parse_xfrm_command(words)
    except ManualError as exc:
        raise UsageError(f"xfrm: {exc}") from None
    if opts.store and opts.persist:
        raise UsageError("--store and --persist exclude each other (--persist already writes the store)")
    if cmd.verb != "list" and (ctx.json or opts.keys):
        raise UsageError("--json and --keys are for list only")
    if opts.keys and os.geteuid() != 0:
        raise CliError("--keys shows secret keys: run as root")
    if cmd.verb == "list":
        if opts.persist:
            raise UsageError("--persist is for add, del and flush")
        return _list_store(ctx, cmd, opts) if opts.store else _list_daemon(ctx, words, cmd, opts, connect)
    if opts.store:
        with store_lock(ctx.config):
            editor, message = _edit(ctx.config, cmd)
            _validate(editor)
            editor.write()
        ctx.say(f"{message} (applied when ipsecd starts or reloads)")
        return 0
    if not opts.persist:
        result = _call(words, opts, connect, required=True)
        ctx.say(_done(cmd, result))
        return 0
    with store_lock(ctx.config):
        editor, message = _edit(ctx.config, cmd, missing_ok=True)
        _validate(editor)  # a store that would be refused is never sent to the daemon either
        result = _call(words, opts, connect, required=False)
        editor.write()
    if result is None:
        ctx.say(f"{message}; ipsecd is not reachable at {opts.control}: applied when it starts")
    else:
        ctx.say(f"{_done(cmd, result)}; {message}")
    return 0


# -- the daemon --------------------------------------------------------------------------------
def _call(words: Sequence[str], opts: XfrmOptions, connect: Connect, required: bool) -> Any:
    """Send the xfrm command; None when no daemon answers and ``required`` is false."""
    try:
        with connect(opts.control) as client:
            return client.request("xfrm", {"argv": list(words), "keys": opts.keys})
    except ControlConnectionError as exc:
        if not required:
            return None
        raise CliError(
            f"cannot reach ipsecd: {exc}\n"
            "use --store to edit the store's [xfrm] table instead (applied when ipsecd starts), "
            "or --persist to do both"
        ) from None
    except ControlError as exc:
        raise CliError(f"ipsecd refused: {exc.code}: {exc.message}") from None


_PAST = {"add": "added", "del": "deleted", "flush": "flushed"}


def _done(cmd: XfrmCommand, result: Any) -> str:
    count = result.get("count") if isinstance(result, dict) else None
    if not isinstance(count, int):
        raise CliError(f"ipsecd sent an unexpected answer to xfrm {cmd.obj} {cmd.verb}")
    noun = cmd.obj if count == 1 else ("policies" if cmd.obj == "policy" else "states")
    return f"{_PAST[cmd.verb]} {count} {noun} in ipsecd"


def _list_daemon(
    ctx: Context, words: Sequence[str], cmd: XfrmCommand, opts: XfrmOptions, connect: Connect
) -> int:
    result = _call(words, opts, connect, required=True)
    member = "states" if cmd.obj == "state" else "policies"
    items = result.get(member) if isinstance(result, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise CliError(f"ipsecd sent an unexpected answer to xfrm {cmd.obj} list")
    _print_list(ctx, member, items)
    return 0


def _print_list(ctx: Context, member: str, items: list[dict[str, Any]]) -> None:
    if ctx.json:
        ctx.emit_json({member: items})
        return
    render = render_state if member == "states" else render_policy
    for item in items:
        try:
            ctx.say(render(item))
        except (KeyError, TypeError, ValueError):
            raise CliError(f"ipsecd sent a malformed {member[:-1]} entry") from None


# -- the store ---------------------------------------------------------------------------------
def _list_store(ctx: Context, cmd: XfrmCommand, opts: XfrmOptions) -> int:
    store = load_store(ctx.config) if ctx.config.exists() else None
    if cmd.obj == "state":
        states = store.xfrm_states if store else ()
        _print_list(ctx, "states", [state_to_json(s, opts.keys) for s in states])
    else:
        policies = store.xfrm_policies if store else ()
        _print_list(ctx, "policies", [policy_to_json(p) for p in policies])
    return 0


def _validate(editor: StoreEditor) -> None:
    try:
        parse_store_texts(editor.texts())
    except StoreError as exc:
        exc.edit_rejected = True  # type: ignore[attr-defined]
        raise


def _entries(editor: StoreEditor, key: str) -> list[tuple[StoreFile, int, ManualState | ManualPolicy]]:
    """The store's current entries, parsed (an entry that does not parse is the loader's to report)."""
    parse: Callable[[str], ManualState | ManualPolicy] = (
        parse_state_entry if key == "states" else parse_policy_entry
    )
    out = []
    for f, i, text in editor.xfrm_entries(key):
        try:
            out.append((f, i, parse(text)))
        except ManualError:
            continue
    return out


def _edit(config: Path, cmd: XfrmCommand, missing_ok: bool = False) -> tuple[StoreEditor, str]:
    """Apply ``cmd`` to the store's documents (nothing written); returns the editor and a message.
    ``missing_ok``: a ``del`` of an entry the store does not have is not an error (--persist)."""
    editor = open_editor(config)
    key = "states" if cmd.obj == "state" else "policies"
    p = cmd.payload
    if cmd.verb == "add":
        if isinstance(p, ManualState):
            where = editor.add_xfrm(key, state_entry(p))
            return (
                editor,
                f"added state dst {p.dst} proto {p.proto.value} spi 0x{p.spi:08x} to the store ({where})",
            )
        assert isinstance(p, ManualPolicy)
        where = editor.add_xfrm(key, policy_entry(p))
        return (
            editor,
            f"added policy src {p.sel.src} dst {p.sel.dst} dir {p.dir.value} to the store ({where})",
        )
    if cmd.verb == "flush":
        every = [(f, i) for f, i, _ in editor.xfrm_entries(key)]
        editor.remove_xfrm(key, every)
        return editor, f"flushed {len(every)} {key} from the store"
    entries = _entries(editor, key)
    if isinstance(p, StateId):
        doomed = [(f, i) for f, i, s in entries if isinstance(s, ManualState) and s.matches(p)]
        what = f"state dst {p.dst} proto {p.proto.value} spi 0x{p.spi:08x}"
    else:
        assert isinstance(p, PolicyId)
        doomed = [(f, i) for f, i, q in entries if isinstance(q, ManualPolicy) and q.key == p]
        what = f"policy src {p.sel.src} dst {p.sel.dst} dir {p.dir.value}"
    if not doomed and missing_ok:
        return editor, f"{what} was not in the store"
    if not doomed:
        raise EditError(f"no {what} in the store's [xfrm] {key}")
    editor.remove_xfrm(key, doomed)
    return editor, f"deleted {what} from the store"
