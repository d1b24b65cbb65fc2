"""``ipsecctl``: manage the ipsecd policy store with netsh's ``ipsec static`` commands.

    ipsecctl [--config PATH] [--json] [--host-facts FILE] static COMMAND [key=value ...]

See docs/ipsecctl.md. Exit status: 0 success, 1 store or validation error, 2 usage error; every
error goes to stderr.

This module never touches the kernel (the import-direction rule: cli/ may not import io/). The
host facts that ``show filters`` and ``match`` need (this host's addresses, DNS, gateways) are
*injected*: ``run(argv, host=...)``. The ``ipsecctl`` console script is
``ipsecd.io.cli_entry:main``, which builds the system's ``SystemHost`` and calls ``run``;
``python3 -m ipsecd.cli.main`` runs without system host facts (those two commands then need
``--host-facts FILE``), and ``python3 -m ipsecd.io.cli_entry`` is the full command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ipsecd.cli.context import CliError, Context
from ipsecd.cli.dynamic import (
    DEFAULT_CONTROL,
    DaemonError,
    DynamicContext,
    run_dump,
    run_dynamic,
    run_monitor,
)
from ipsecd.cli.grammar import UsageError, parse_command
from ipsecd.cli.hostfacts import HostFactsError, load_host_facts
from ipsecd.cli.static import execute
from ipsecd.cli.xfrm import XFRM_USAGE, XfrmOptions, run_xfrm
from ipsecd.policy.edit import EditError
from ipsecd.policy.host import HostEnvironment
from ipsecd.policy.order import ExpansionError
from ipsecd.policy.store import StoreError

DEFAULT_CONFIG = "/etc/ipsecd"

USAGE = (
    """\
usage: ipsecctl [--config PATH] [--json] [--host-facts FILE] static COMMAND [key=value ...]
       ipsecctl [--control SOCKET] [--json] dynamic COMMAND [key=value ...]
       ipsecctl [--config PATH | --control SOCKET] [--json] dump
       ipsecctl [--control SOCKET] [--interval SECONDS] [--count N] monitor
       ipsecctl [--control SOCKET] [--store | --persist] [--keys] xfrm state|policy VERB ...

commands (netsh ipsec static grammar; see docs/ipsecctl.md):
  add    policy|filterlist|filter|filteraction|rule  key=value ...
  set    policy|filterlist|filteraction|rule|defaultrule  key=value ...
  set    config property=ipsecexempt|ikelogging|strongcrlcheck value=N
  delete policy|filterlist|filteraction|rule  name=NAME | all
  delete filter filterlist= srcaddr= dstaddr= [protocol= srcport= dstport= ...]
  delete all
  show   all | policy|filterlist|filteraction|rule  name=NAME | all
  show   filters [specific=yes] [policy=NAME]
  match  srcaddr= dstaddr= protocol= [srcport=] [dstport=] [direction=out|in] [policy=NAME]
  check
  exportpolicy file=FILE | importpolicy file=FILE

dynamic commands (netsh ipsec dynamic grammar; the running daemon, see docs/monitor.md):
  show   all|config|mmfilter|qmfilter|mmpolicy|qmpolicy|rule|mmsas|qmsas|stats [key=value ...]
         filters: srcaddr= dstaddr= srcmask= dstmask= protocol= srcport= dstport= name= type=
         resolvedns=yes format=list|table; qmsas keys=yes: Wireshark esp_sa lines (root)
  set    config property=ipsecexempt|ikelogging|strongcrlcheck|ipsecdiagnostics|ipsecloginterval value=N
  delete mmsas|qmsas [srcaddr=] [dstaddr=] [protocol=] [srcport=] [dstport=]
dump: the store as ipsecctl static commands (from --config, else from the daemon)
monitor: live view of SAs and counters (--interval seconds, default 2; --count frames)

options:
  --config PATH      store directory or single TOML file (default /etc/ipsecd)
  --control SOCKET   the daemon's control socket (default /run/ipsecd/control.sock)
  --json             JSON output for show, match and check
  --host-facts FILE  host addresses for show filters / match, from a JSON or TOML file
  --store            xfrm: edit/list the store's [xfrm] table instead of the running daemon
  --persist          xfrm: change the running daemon and the store
  --keys             xfrm list: show keys (root only)

"""
    + XFRM_USAGE
)


def _split_options(argv: Sequence[str]) -> tuple[dict[str, str | bool], list[str]]:
    """Pull ``--option`` words out of argv (netsh words never start with ``--``)."""
    opts: dict[str, str | bool] = {}
    words: list[str] = []
    it = iter(argv)
    for word in it:
        if not word.startswith("--"):
            words.append(word)
            continue
        name, eq, value = word[2:].partition("=")
        if name in ("json", "help", "store", "persist", "keys"):
            if eq:
                raise UsageError(f"--{name} takes no value")
            opts[name] = True
        elif name in ("config", "host-facts", "control", "interval", "count"):
            if not eq:
                nxt = next(it, None)
                if nxt is None:
                    raise UsageError(f"--{name} needs a value")
                value = nxt
            opts[name] = value
        else:
            raise UsageError(f"unknown option --{name}")
    return opts, words


DAEMON_COMMANDS = ("dynamic", "dump", "monitor")


def _number_option(opts: dict[str, str | bool], name: str) -> float | None:
    value = opts.get(name)
    if value is None:
        return None
    try:
        number = float(str(value))
    except ValueError:
        raise UsageError(f"--{name}: expected a number, not {value!r}") from None
    if number <= 0 or (name == "count" and not number.is_integer()):
        raise UsageError(f"--{name}: expected a positive {'integer' if name == 'count' else 'number'}")
    return number


def _run_daemon_command(opts: dict[str, str | bool], words: list[str], out: TextIO, err: TextIO) -> int:
    """``dynamic``, ``dump`` and ``monitor``: through the control socket (ipsecd.cli.dynamic)."""
    verb = words[0].lower()
    config = opts.get("config")
    if config is not None and verb != "dump":
        raise UsageError(f"--config is not used by {verb} (it talks to the daemon: --control SOCKET)")
    if (opts.get("interval") or opts.get("count")) and verb != "monitor":
        raise UsageError("--interval and --count are options of monitor")
    if opts.get("json") and verb == "monitor":
        raise UsageError("monitor has no --json (use dynamic show all --json)")
    ctx = DynamicContext(
        control=Path(str(opts.get("control", DEFAULT_CONTROL))),
        json=bool(opts.get("json", False)),
        out=out,
        err=err,
        config=Path(str(config)) if config is not None else None,
    )
    interval = _number_option(opts, "interval")
    count = _number_option(opts, "count")
    if interval is not None:
        ctx.interval = interval
    if count is not None:
        ctx.count = int(count)
    if verb == "dynamic":
        return run_dynamic(ctx, words[1:])
    if verb == "dump":
        return run_dump(ctx, words[1:])
    return run_monitor(ctx, words[1:])


def run(
    argv: Sequence[str],
    host: HostEnvironment | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run one ipsecctl command; returns the exit status. ``host``: the injected host facts."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        opts, words = _split_options(argv)
        if opts.get("help") or words in (["help"], ["static", "help"], ["dynamic", "help"]):
            print(USAGE, end="", file=out)
            return 0
        config = opts.get("config", DEFAULT_CONFIG)
        xfrm_only = [f"--{o}" for o in ("store", "persist", "keys") if o in opts]
        if words and words[0].lower() == "xfrm":
            if opts.get("interval") or opts.get("count"):
                raise UsageError("--interval and --count are options of monitor")
            xopts = XfrmOptions(
                control=str(opts.get("control", DEFAULT_CONTROL)),
                store=bool(opts.get("store", False)),
                persist=bool(opts.get("persist", False)),
                keys=bool(opts.get("keys", False)),
            )
            ctx = Context(Path(str(config)), bool(opts.get("json", False)), host, out, err)
            return run_xfrm(ctx, words[1:], xopts)
        if xfrm_only:
            raise UsageError(f"{', '.join(xfrm_only)}: options of xfrm commands only")
        if words and words[0].lower() in DAEMON_COMMANDS:
            return _run_daemon_command(opts, words, out, err)
        if not words or words[0].lower() != "static":
            raise UsageError("expected 'static', 'dynamic', 'dump', 'monitor' or 'xfrm'")
        daemon_only = [f"--{o}" for o in ("control", "interval", "count") if o in opts]
        if daemon_only:
            raise UsageError(f"{', '.join(daemon_only)}: not used by static (it edits the store files)")
        facts = opts.get("host-facts")
        if isinstance(facts, str):
            host = load_host_facts(facts)
        ctx = Context(Path(str(config)), bool(opts.get("json", False)), host, out, err)
        cmd = parse_command(words[1:])
        return execute(ctx, cmd)
    except UsageError as exc:
        print(f"ipsecctl: {exc}", file=err)
        print(
            "usage: ipsecctl [options] static|dynamic COMMAND [key=value ...] | dump | monitor | xfrm ... (--help)",
            file=err,
        )
        return 2
    except StoreError as exc:
        n = len(exc.issues)
        if getattr(exc, "edit_rejected", False):
            print(
                f"ipsecctl: edit rejected, nothing written ({n} issue{'s' if n != 1 else ''}; "
                "line numbers are those of the edited text):",
                file=err,
            )
        else:
            print(f"ipsecctl: the store is not valid ({n} issue{'s' if n != 1 else ''}):", file=err)
        print(str(exc), file=err)
        return 1
    except ExpansionError as exc:
        print("ipsecctl: the policy's filters cannot be expanded on this host:", file=err)
        print(str(exc), file=err)
        return 1
    except (EditError, CliError, HostFactsError, DaemonError) as exc:
        print(f"ipsecctl: {exc}", file=err)
        return 1
    except OSError as exc:
        print(f"ipsecctl: {exc.filename or ''}: {exc.strerror}", file=err)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point without system host facts (see the module docstring)."""
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
