"""Helpers for the daemon tests: manual-keying configurations and running ipsecd in a namespace."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipsecd.daemon.control import ControlClient
from tests.netns import Background, Host, Lab

A4, B4 = "192.0.2.1", "192.0.2.2"
INNER_A, INNER_B = "10.1.0.1", "10.2.0.1"  # tunnel mode: addresses behind the gateways (on lo)


def key(label: str, n: int) -> str:
    """Deterministic key material for tests (never used outside them)."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n].hex()


SUITES: dict[str, list[dict[str, Any]]] = {
    # One entry per SA of the bundle, innermost first (ESP inside AH). "alg": ip-xfrm words with
    # {key} where the key goes, and its length in bytes.
    "esp-gcm": [{"proto": "esp", "alg": "aead rfc4106(gcm(aes)) 0x{key} 128", "len": 20}],
    "esp-cbc": [
        {
            "proto": "esp",
            "alg": "enc cbc(aes) 0x{key} auth-trunc hmac(sha256) 0x{key2} 128",
            "len": 16,
            "len2": 32,
        }
    ],
    "ah": [{"proto": "ah", "alg": "auth-trunc hmac(sha256) 0x{key} 128", "len": 32}],
    "ah+esp": [
        {"proto": "esp", "alg": "aead rfc4106(gcm(aes)) 0x{key} 128", "len": 20},
        {"proto": "ah", "alg": "auth hmac(sha1) 0x{key}", "len": 20},
    ],
}


def _state(src: str, dst: str, spi: int, sa: dict[str, Any], mode: str, encap: bool) -> str:
    alg = sa["alg"].format(key=key(f"k{spi}", sa["len"]), key2=key(f"k2{spi}", sa.get("len2", 0)))
    words = f"src {src} dst {dst} proto {sa['proto']} spi 0x{spi:x} mode {mode} {alg}"
    if encap and sa["proto"] == "esp":
        words += " encap espinudp 4500 4500 0.0.0.0"
    return words


A6, B6 = "2001:db8::1", "2001:db8::2"
INNER_A6, INNER_B6 = "2001:db8:a::1", "2001:db8:b::1"


def xfrm_config(suite: str, mode: str, encap: bool, local: str, peer: str) -> tuple[list[str], list[str]]:
    """ip-xfrm words of the states (both directions) and of the policies of the host at ``local``
    (``local``/``peer``: A4/B4 or A6/B6, either way round)."""
    v6 = ":" in local
    a, b = (A6, B6) if v6 else (A4, B4)
    inner_a, inner_b = (INNER_A6, INNER_B6) if v6 else (INNER_A, INNER_B)
    plen = 128 if v6 else 32
    states: list[str] = []
    out_t: list[str] = []
    in_t: list[str] = []
    for i, sa in enumerate(SUITES[suite]):
        states.append(_state(a, b, 0x1000 + i, sa, mode, encap))
        states.append(_state(b, a, 0x2000 + i, sa, mode, encap))
        ends_out = f"src {local} dst {peer} " if mode == "tunnel" else ""
        ends_in = f"src {peer} dst {local} " if mode == "tunnel" else ""
        out_t.append(f"tmpl {ends_out}proto {sa['proto']} mode {mode}")
        in_t.append(f"tmpl {ends_in}proto {sa['proto']} mode {mode}")
    if mode == "tunnel":
        mine, theirs = (inner_a, inner_b) if local == a else (inner_b, inner_a)
    else:
        mine, theirs = local, peer
    policies = [
        f"src {mine}/{plen} dst {theirs}/{plen} dir out {' '.join(out_t)}",
        f"src {theirs}/{plen} dst {mine}/{plen} dir in {' '.join(in_t)}",
    ]
    return states, policies


def xfrm_store(
    suite: str,
    mode: str,
    encap: bool,
    local: str,
    peer: str,
    extra: str = "[daemon]\n",
    policies: bool = True,
) -> str:
    """A store with the manual SAs in its [xfrm] table (and their policies unless ``policies``)."""
    states, pols = xfrm_config(suite, mode, encap, local, peer)
    if not policies:
        pols = []
    if not pols:
        return extra + "[xfrm]\nstates = [\n" + "".join(f"  {json.dumps(s)},\n" for s in states) + "]\n"
    return (
        extra
        + "[xfrm]\nstates = [\n"
        + "".join(f"  {json.dumps(s)},\n" for s in states)
        + "]\n"
        + ("policies = [\n" + "".join(f"  {json.dumps(p)},\n" for p in pols) + "]\n")
    )


EMPTY_STORE = "[daemon]\n"
# The daemon runs on the native fast path by default; IPSECD_TEST_FASTPATH=0 (tools/test's second
# pass) starts every daemon with --no-fastpath (unless a test asks for --fastpath), so the daemon
# tests cover both data paths.
PYTHON_ROUTER_EVERYWHERE = os.environ.get("IPSECD_TEST_FASTPATH") == "0"


@dataclass
class Daemon:
    host: Host
    proc: Background
    control: Path
    store: Path

    def status(self) -> dict[str, Any]:
        with ControlClient(self.control, timeout=5) as c:
            result = c.call("datapath")
        assert isinstance(result, dict)
        return result

    def call(self, command: str, **args: Any) -> Any:
        with ControlClient(self.control, timeout=5) as c:
            return c.call(command, **args)


def start_daemon(
    lab: Lab,
    host: Host,
    *,
    store_text: str = EMPTY_STORE,
    extra: tuple[str, ...] = (),
    store: Path | None = None,
) -> Daemon:
    if store is None:
        store = lab.scratch(f"{host.name}-store.toml")
        store.write_text(store_text)
        store.chmod(0o600)
    control = lab.scratch(f"{host.name}-control.sock")
    state = lab.scratch(f"{host.name}-state")
    argv = ["-m", "ipsecd.daemon.main", "--config", str(store), "--control", str(control), "--foreground"]
    argv += ["--state-dir", str(state)]
    if PYTHON_ROUTER_EVERYWHERE and "--fastpath" not in extra:
        argv.append("--no-fastpath")
    proc = host.popen_python([*argv, *extra], name="ipsecd")
    proc.wait_output(r"ipsecd: ready", 20)
    return Daemon(host, proc, control, store)


MARKER = b"IPSECD-PLAINTEXT-MARKER!"
_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(15)
print('listening', flush=True)
c, _ = s.accept(); c.settimeout(15)
n = int(sys.argv[3]); got = b''
while len(got) < n:
    d = c.recv(65536)
    if not d: break
    got += d
c.sendall(got); c.close()
"""
_CLIENT = """
import socket, sys
marker = sys.argv[5].encode()
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.settimeout(float(sys.argv[6]))
if sys.argv[4] != '-': s.bind((sys.argv[4], 0))
s.connect((sys.argv[1], int(sys.argv[2])))
n = int(sys.argv[3]); data = (marker * (n // len(marker) + 1))[:n]
s.sendall(data); got = b''
while len(got) < n:
    d = s.recv(65536)
    if not d: break
    got += d
print('ok' if got == data else 'mismatch %d' % len(got))
"""


def tcp_echo(
    client: Host,
    server: Host,
    dst: str,
    src: str | None = None,
    size: int = 200_000,
    port: int = 7000,
    expect_ok: bool = True,
) -> None:
    """TCP round trip of ``size`` bytes of MARKER through the path; raises unless echoed intact
    (or, with ``expect_ok=False``, unless the connection fails within 2 s)."""
    import sys

    bind = "::" if ":" in dst else "0.0.0.0"
    srv = server.popen([sys.executable, "-c", _SERVER, bind, str(port), str(size)], name="tcp-echo")
    srv.wait_output("listening", 10)
    timeout = "15" if expect_ok else "2"
    r = client.run(
        [sys.executable, "-c", _CLIENT, dst, str(port), str(size), src or "-", MARKER.decode(), timeout],
        timeout=30,
        check=False,
    )
    if not expect_ok:
        assert r.returncode != 0 and "ok" not in r.stdout, r.stdout
        srv.stop()
        return
    srv.wait(20)
    assert r.stdout.strip() == "ok", r.stdout + r.stderr
