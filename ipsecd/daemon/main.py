"""The ``ipsecd`` command (console script ``ipsecd = ipsecd.daemon.main:main``).

    ipsecd --config STORE [--foreground] [--control PATH] [--tun NAME] [--flush-on-exit]
           [--event-log PATH] [--poll-interval SECONDS]
    ipsecd --flush [--tun NAME]

Runs the asyncio engine (``ipsecd.daemon.engine``) until SIGTERM/SIGINT. A bad store is reported
with every issue and exit status 1, before anything on the host changes. ``--flush`` removes what a
previous ipsecd left in the kernel (the nft table ``inet ipsecd``, the policy-routing rules and
table, the persistent TUN device): the only way to lift the fail-closed capture.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from ipsecd import __version__

DEFAULT_CONFIG = "/etc/ipsecd"
EXIT_CONFIG = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipsecd",
        description="User-space IKE/IPsec daemon following the Windows IPsec policy-agent model.",
    )
    parser.add_argument(
        "--config",
        metavar="DIR",
        default=DEFAULT_CONFIG,
        help=f"policy store directory or file (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--flush",
        action="store_true",
        help="remove the capture a previous ipsecd left behind (nft table, rules, TUN device), then exit",
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="stay in the foreground and log to stderr (ipsecd never forks; systemd runs it so)",
    )
    parser.add_argument("--control", metavar="PATH", default=None, help="control socket path")
    parser.add_argument("--control-group", metavar="GROUP", default=None, help="group allowed on the socket")
    parser.add_argument("--tun", metavar="NAME", default="ipsecd0", help="TUN device name (default ipsecd0)")
    parser.add_argument(
        "--tun-mtu",
        metavar="MTU",
        type=int,
        default=None,
        help="TUN MTU (default: the smallest MTU of the other links minus 128 for ESP/UDP overhead)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default="/var/lib/ipsecd",
        help="where outbound sequence numbers are reserved across restarts (default /var/lib/ipsecd)",
    )
    parser.add_argument(
        "--flush-on-exit",
        action="store_true",
        help="on SIGTERM remove the capture too (default: keep it, fail closed)",
    )
    parser.add_argument(
        "--backend", choices=("auto", "native", "python"), default="auto", help="ESP/AH implementation"
    )
    parser.add_argument(
        "--oakley-log",
        metavar="PATH",
        default=None,
        help="the Oakley log, written while ikelogging is on (default /var/log/ipsecd/oakley.log)",
    )
    parser.add_argument(
        "--dpd-interval",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="idle seconds before a dead peer probe (IKEv1 DPD, IKEv2 liveness; default 30)",
    )
    parser.add_argument(
        "--dpd-retries",
        metavar="N",
        type=int,
        default=5,
        help="unanswered IKEv1 DPD probes before the peer is declared dead (default 5)",
    )
    parser.add_argument(
        "--ike-cookie-threshold",
        metavar="N",
        type=int,
        default=10,
        help="half-open IKEv2 SAs above which IKE_SA_INIT must carry a COOKIE (RFC 7296 2.6; default 10)",
    )
    fast = parser.add_mutually_exclusive_group()
    fast.add_argument(
        "--fastpath",
        action="store_const",
        const="on",
        dest="fastpath",
        help="carry tunnel-mode ESP-in-UDP SAs on the native fast path, and refuse to start without it"
        " (default: on when the extension is built and --backend is not python)",
    )
    fast.add_argument(
        "--no-fastpath",
        action="store_const",
        const="off",
        dest="fastpath",
        help="the Python router carries every SA",
    )
    parser.add_argument("--event-log", metavar="PATH", default=None, help="JSON-lines event log file")
    parser.add_argument(
        "--poll-interval",
        metavar="SECONDS",
        type=float,
        default=None,
        help="seconds between store polls (default: the assigned policy's pollinginterval; 0: off)",
    )
    parser.add_argument("--version", action="version", version=f"ipsecd {__version__}")
    return parser


def resolve_fastpath(choice: str | None, backend: str) -> tuple[bool, str | None]:
    """--fastpath ("on": required, the engine refuses to start without it), --no-fastpath ("off"),
    or neither (None): on when the extension is built, unless --backend python asks for no native
    code. Returns the decision and, when the default could not be honoured, why."""
    if choice is not None:
        return choice == "on", None
    if backend == "python":
        return False, None
    from ipsecd.datapath import fastpath as fpmod

    if fpmod.AVAILABLE:
        return True, None
    reason = fpmod.UNAVAILABLE_REASON or "not built"
    return False, f"fast path unavailable ({reason}): the Python router carries every SA"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.poll_interval is not None and args.poll_interval < 0:
        print("ipsecd: --poll-interval must be 0 (off) or a number of seconds", file=sys.stderr)
        return EXIT_CONFIG
    from ipsecd.daemon.engine import Engine
    from ipsecd.daemon.engine_config import EngineConfig, EngineError, flush_all

    if args.flush:
        try:
            removed = flush_all(args.tun)
        except Exception as exc:
            print(f"ipsecd: flush failed: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        for what in removed:
            print(f"ipsecd: removed {what}")
        if not removed:
            print("ipsecd: nothing to flush")
        return 0
    fastpath, note = resolve_fastpath(args.fastpath, args.backend)
    if note:
        print(f"ipsecd: {note}")
    cfg = EngineConfig(
        store=Path(args.config),
        tun=args.tun,
        tun_mtu=args.tun_mtu,
        flush_on_exit=args.flush_on_exit,
        backend=args.backend,
        control_group=args.control_group,
        state_dir=Path(args.state_dir),
        oakley_log=Path(args.oakley_log) if args.oakley_log else None,
        event_log=Path(args.event_log) if args.event_log else None,
        dpd_interval=args.dpd_interval,
        dpd_retries=args.dpd_retries,
        ike_cookie_threshold=args.ike_cookie_threshold,
        poll_interval=args.poll_interval,
        fastpath=fastpath,
    )
    if args.control:
        cfg.control = Path(args.control)
    try:
        return asyncio.run(Engine(cfg).run())
    except EngineError as exc:
        print(f"ipsecd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
