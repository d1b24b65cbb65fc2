"""The ``ipsecctl`` console script: ``ipsecd.cli.main.run`` with the system's host facts.

cli/ may not import io/ (tests/test_import_direction.py), so the CLI cannot build a
``SystemHost`` itself; this launcher, on the io/ side, builds it and injects it. Also runnable as
``python3 -m ipsecd.io.cli_entry``.
"""

from __future__ import annotations

import sys

from ipsecd.cli.main import run
from ipsecd.io.hostinfo import SystemHost


def main(argv: list[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, host=SystemHost())


if __name__ == "__main__":
    sys.exit(main())
