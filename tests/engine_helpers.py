"""Helpers for the daemon tests: manual-keying configurations and running ipsecd in a namespace."""

from __future__ import annotations

import hashlib
import json
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
    # One entry per SA of the bundle, innermost first (ESP inside AH).
    "esp-gcm": [{"proto": "esp", "enc": "ENCR_AES_GCM_16", "enc_len": 20}],
    "esp-cbc": [{"proto": "esp", "enc": "ENCR_AES_CBC", "enc_len": 16, "integ": "AUTH_HMAC_SHA2_256_128"}],
    "ah": [{"proto": "ah", "integ": "AUTH_HMAC_SHA2_256_128"}],
    "ah+esp": [
        {"proto": "esp", "enc": "ENCR_AES_GCM_16", "enc_len": 20},
        {"proto": "ah", "integ": "AUTH_HMAC_SHA1_96"},
    ],
}
INTEG_LEN = {"AUTH_HMAC_SHA2_256_128": 32, "AUTH_HMAC_SHA1_96": 20, "NONE": 0}


def _state(src: str, dst: str, spi: int, sa: dict[str, Any], mode: str, encap: bool) -> dict[str, Any]:
    integ = sa.get("integ", "NONE")
    st: dict[str, Any] = {
        "src": src,
        "dst": dst,
        "proto": sa["proto"],
        "spi": spi,
        "mode": mode,
        "enc": sa.get("enc", "ENCR_NULL"),
        "enc_key": key(f"enc{spi}", sa.get("enc_len", 0)),
        "integ": integ,
        "integ_key": key(f"integ{spi}", INTEG_LEN[integ]),
        "iv_key": key(f"iv{spi}", 16) if sa.get("enc") == "ENCR_AES_CBC" else "",
    }
    if encap and sa["proto"] == "esp":
        st["encap"] = [4500, 4500]
    return st


def manual_config(suite: str, mode: str, encap: bool, local: str, peer: str) -> dict[str, Any]:
    """States for both directions and the policies of the host at ``local``."""
    sas = SUITES[suite]
    states = []
    tmpl = []
    for i, sa in enumerate(sas):
        spi_ab, spi_ba = 0x1000 + i, 0x2000 + i
        a_is_local = local == A4
        states.append(_state(A4, B4, spi_ab, sa, mode, encap))
        states.append(_state(B4, A4, spi_ba, sa, mode, encap))
        del a_is_local
        tmpl.append({"proto": sa["proto"], "mode": mode})
    if mode == "tunnel":
        mine, theirs = (INNER_A, INNER_B) if local == A4 else (INNER_B, INNER_A)
        out_t = [{**t, "src": local, "dst": peer} for t in tmpl]
        in_t = [{**t, "src": peer, "dst": local} for t in tmpl]
        sel_out = {"src": f"{mine}/32", "dst": f"{theirs}/32"}
        sel_in = {"src": f"{theirs}/32", "dst": f"{mine}/32"}
    else:
        out_t, in_t = tmpl, tmpl
        sel_out = {"src": f"{local}/32", "dst": f"{peer}/32"}
        sel_in = {"src": f"{peer}/32", "dst": f"{local}/32"}
    policies = [
        {**sel_out, "dir": "out", "action": "protect", "tmpl": out_t},
        {**sel_in, "dir": "in", "action": "protect", "tmpl": in_t},
    ]
    return {"states": states, "policies": policies}


EMPTY_STORE = "[daemon]\n"


@dataclass
class Daemon:
    host: Host
    proc: Background
    control: Path
    store: Path
    manual: Path | None

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
    manual: dict[str, Any] | None = None,
    extra: tuple[str, ...] = (),
    store: Path | None = None,
) -> Daemon:
    if store is None:
        store = lab.scratch(f"{host.name}-store.toml")
        store.write_text(store_text)
        store.chmod(0o600)
    manual_path = None
    if manual is not None:
        manual_path = lab.scratch(f"{host.name}-manual.json")
        manual_path.write_text(json.dumps(manual))
    control = lab.scratch(f"{host.name}-control.sock")
    argv = ["-m", "ipsecd.daemon.main", "--config", str(store), "--control", str(control), "--foreground"]
    if manual_path is not None:
        argv += ["--manual", str(manual_path)]
    proc = host.popen_python([*argv, *extra], name="ipsecd")
    proc.wait_output(r"ipsecd: ready", 20)
    return Daemon(host, proc, control, store, manual_path)


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
s.settimeout(15)
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
    client: Host, server: Host, dst: str, src: str | None = None, size: int = 200_000, port: int = 7000
) -> None:
    """TCP round trip of ``size`` bytes of MARKER through the path; raises unless echoed intact."""
    import sys

    bind = "::" if ":" in dst else "0.0.0.0"
    srv = server.popen([sys.executable, "-c", _SERVER, bind, str(port), str(size)], name="tcp-echo")
    srv.wait_output("listening", 10)
    r = client.run(
        [sys.executable, "-c", _CLIENT, dst, str(port), str(size), src or "-", MARKER.decode()],
        timeout=30,
        check=False,
    )
    srv.wait(20)
    assert r.stdout.strip() == "ok", r.stdout + r.stderr
