"""What every ipsecctl command gets: the store path, output streams, the injected host facts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ipsecd.cli.grammar import UsageError
from ipsecd.policy.host import HostEnvironment


class CliError(Exception):
    """A store-level failure that is not a StoreError (exit status 1)."""


@dataclass
class Context:
    config: Path
    json: bool
    host: HostEnvironment | None
    out: TextIO
    err: TextIO
    host_hint: str = (
        "pass --host-facts FILE, or run the ipsecctl console script (python3 -m ipsecd.io.cli_entry),"
        " which reads them from the system"
    )

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)

    def emit_json(self, obj: Any) -> None:
        print(json.dumps(obj, indent=2, sort_keys=False), file=self.out)

    def need_host(self) -> HostEnvironment:
        if self.host is None:
            raise UsageError(f"this command needs the host's addresses: {self.host_hint}")
        return self.host
