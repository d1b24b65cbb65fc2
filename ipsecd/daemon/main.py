"""The ``ipsecd`` command (console script ``ipsecd = ipsecd.daemon.main:main``).

Only the command line exists so far: the engine (store loading, IKE, data path) is being built
elsewhere.  Running the daemon or ``--flush`` prints that it is not implemented and exits with
status 2; ``--version`` works.  The systemd unit (systemd/ipsecd.service) already points here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ipsecd import __version__

DEFAULT_CONFIG = "/etc/ipsecd"
EXIT_NOT_IMPLEMENTED = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipsecd",
        description="User-space IKE/IPsec daemon following the Windows IPsec policy-agent model.",
    )
    parser.add_argument(
        "--config",
        metavar="DIR",
        default=DEFAULT_CONFIG,
        help=f"policy store directory (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--flush",
        action="store_true",
        help="remove every SA and filter a previous ipsecd left behind, then exit",
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="stay in the foreground and log to stderr too (ipsecd never forks; systemd runs it so)",
    )
    parser.add_argument("--version", action="version", version=f"ipsecd {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    what = "--flush" if args.flush else "daemon"
    print(f"ipsecd: {what} not implemented yet (config {args.config})", file=sys.stderr)
    return EXIT_NOT_IMPLEMENTED


if __name__ == "__main__":
    sys.exit(main())
