"""Shared helpers for the ipsecctl tests: run the CLI in-process against a tmp store."""

from __future__ import annotations

import io
import ipaddress
import shlex
from dataclasses import dataclass
from pathlib import Path

from ipsecd.cli.main import run
from ipsecd.policy.host import HostEnvironment, StaticHost

ME = ipaddress.ip_address("192.0.2.10")
HOST = StaticHost(
    addresses=(ME,),
    names={"db.example.com": (ipaddress.ip_address("198.51.100.20"),)},
    dns=(ipaddress.ip_address("192.0.2.53"),),
    gateway=(ipaddress.ip_address("192.0.2.1"),),
)
PSK = "tr0ub4dor-psk-value"


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str


def cli(store: Path, command: str, host: HostEnvironment | None = HOST, json: bool = False) -> Result:
    """Run ``ipsecctl --config STORE [--json] static COMMAND`` (COMMAND split like a shell)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["--config", str(store), *(["--json"] if json else []), "static", *shlex.split(command)]
    rc = run(argv, host=host, out=out, err=err)
    return Result(rc, out.getvalue(), err.getvalue())


def ok(store: Path, command: str, **kw: object) -> str:
    r = cli(store, command, **kw)  # type: ignore[arg-type]
    assert r.rc == 0, f"{command}: rc {r.rc}: {r.err}"
    assert r.err == ""
    return r.out


# A store built only with ipsecctl commands (the "done when" criterion).
BUILD_COMMANDS = [
    'add filterlist name="Web farm" description="HTTPS to the farm"',
    'add filter filterlist="Web farm" srcaddr=me dstaddr=192.0.2.0 dstmask=255.255.255.0 protocol=tcp dstport=443',
    'add filter filterlist="Web farm" srcaddr=me dstaddr=192.0.2.7 protocol=tcp dstport=443',
    "add filterlist name=Host7",
    "add filter filterlist=Host7 srcaddr=me dstaddr=192.0.2.7",
    "add filterlist name=Subnet",
    "add filter filterlist=Subnet srcaddr=me dstaddr=192.0.2.0/24",
    'add filteraction name="Require AES" action=negotiate qmsecmethods="ESP[AES128,SHA256] ESP[3DES,SHA1]" qmpfs=yes',
    "add filteraction name=Block action=block",
    'add policy name=Site mmsecmethods="AES256-SHA256-14 3DES-SHA1-2" activatedefaultrule=no assign=yes',
    f'add rule name=web policy=Site filterlist="Web farm" filteraction="Require AES" psk="{PSK}"',
    "add rule name=block7 policy=Site filterlist=Host7 filteraction=Block",
    "add rule name=subnet policy=Site filterlist=Subnet filteraction=Permit",
]


def build_store(store: Path) -> None:
    for command in BUILD_COMMANDS:
        ok(store, command)
