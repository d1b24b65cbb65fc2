#!/usr/bin/env python3
"""The README's run command (driven by tools/demo): two hosts, one ipsecd each, a protected tunnel.

Builds two network namespaces joined by a veth link, writes a policy store for each host, starts
one ``ipsecd`` in each, and shows that traffic between them is protected: ping and a short TCP
transfer pass, tcpdump on the link sees only ESP (or ESP-in-UDP) and no plaintext, and each
daemon's IP Security Monitor (``ipsecctl --control PATH dynamic show mmsas|qmsas|stats``) and
log are printed. Everything it made is removed on exit, on error, on Ctrl-C and on SIGTERM
(tests/netns.py's ``Lab``); tools/demo's trap removes leftovers should this process be killed.

Keys, by default: negotiated on demand by IKE (IKEv1 Main Mode + Quick Mode, preshared key):
host b runs a Secure Server-like policy (All IP Traffic -> Require Security), host a a rule
requiring security with b; the first packet raises an acquire and the daemons negotiate
(``--ikev2``: IKEv2 instead of IKEv1).
``--manual``: manually keyed SAs instead (the store's ``[xfrm]`` table, docs/manual-keying.md),
AES-128-GCM, tunnel or transport mode, optionally ESP-in-UDP. Keys, SPIs and the PSK are fresh
random values every run and are never printed.

The last line of the output is ``DEMO-SUMMARY {json}`` (tests/test_demo.py reads it); the exit
status is 0 only when traffic passed and no plaintext was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.netns import Background, Capture, HarnessError, Host, Lab, is_root  # noqa: E402

A_OUTER, B_OUTER = "192.0.2.1", "192.0.2.2"
A_INNER, B_INNER = "10.1.0.1", "10.2.0.1"  # tunnel mode: one address behind each host (on lo)
MARKER = b"IPSECD-DEMO-PLAINTEXT-MARKER!"
KEYS_NOTE_MANUAL = (
    "keys: manual (ipsecctl xfrm: the store's [xfrm] table, AES-128-GCM, random keys per run); "
    "IKE-negotiated keys: see `tools/demo` without --manual, and docs/operations.md"
)
KEYS_NOTE_IKE = (
    "keys: negotiated on demand by IKE ({exchanges}, {mm}, preshared key random per run); "
    "manually keyed SAs: `tools/demo --manual`"
)
EXCHANGES = {1: "IKEv1 Main Mode + Quick Mode", 2: "IKEv2 IKE_SA_INIT + IKE_AUTH"}

# A netcat-style TCP echo: the server returns what it receives; the client sends SIZE bytes of
# the marker and checks they come back intact. Both bounded by socket timeouts.
_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(15)
print('listening', flush=True)
c, _ = s.accept(); c.settimeout(15)
while True:
    d = c.recv(65536)
    if not d: break
    c.sendall(d)
c.close()
"""
_CLIENT = """
import socket, sys, time
n, marker = int(sys.argv[3]), sys.argv[4].encode()
data = (marker * (n // len(marker) + 1))[:n]
t0 = time.monotonic()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15, source_address=(sys.argv[5], 0))
s.sendall(data); s.shutdown(socket.SHUT_WR); got = b''
while True:
    d = s.recv(65536)
    if not d: break
    got += d
dt = time.monotonic() - t0
print(('ok' if got == data else 'mismatch') + ' %d %.3f' % (len(got), dt))
"""


def say(text: str = "") -> None:
    print(text, flush=True)


def section(title: str) -> None:
    say()
    say(f"== {title}")


class _Terminated(Exception):
    """SIGTERM/SIGHUP: unwind through the Lab's cleanup like Ctrl-C does."""


def _raise_terminated(signum: int, _frame: object) -> None:
    _ignore_further_signals()
    raise _Terminated(signal.Signals(signum).name)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    _ignore_further_signals()
    raise KeyboardInterrupt


def _ignore_further_signals() -> None:
    """The first signal unwinds into the cleanup; the ones that follow it (Ctrl-C reaches the whole
    process group, and `timeout` forwards what it gets) must not interrupt that cleanup."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


# --- the stores -----------------------------------------------------------------------------------


def make_stores(mode: str, encap: bool) -> tuple[str, str]:
    """The two hosts' stores: one SA each way (fresh SPIs and keys) and each host's policies."""
    spi_ab = 0x1000 + secrets.randbelow(0x7FFFF000)  # RFC 4303 section 2.1: 1..255 reserved
    spi_ba = spi_ab + 0x80000000  # a different SPI, still below 2**32
    key_ab, key_ba = secrets.token_hex(20), secrets.token_hex(20)  # 16-byte AES key + 4-byte salt
    tail = " encap espinudp 4500 4500 0.0.0.0" if encap else ""

    def state(src: str, dst: str, spi: int, key: str) -> str:
        return (
            f"src {src} dst {dst} proto esp spi 0x{spi:08x} mode {mode} "
            f"aead 'rfc4106(gcm(aes))' 0x{key} 128 replay-window 64{tail}"
        )

    states = [state(A_OUTER, B_OUTER, spi_ab, key_ab), state(B_OUTER, A_OUTER, spi_ba, key_ba)]

    def policies(me: str, peer: str, me_in: str, peer_in: str) -> list[str]:
        if mode == "tunnel":
            out_t = f"tmpl src {me} dst {peer} proto esp mode tunnel"
            in_t = f"tmpl src {peer} dst {me} proto esp mode tunnel"
        else:
            out_t = in_t = "tmpl proto esp mode transport"
        return [
            f"src {me_in}/32 dst {peer_in}/32 dir out {out_t}",
            f"src {peer_in}/32 dst {me_in}/32 dir in {in_t}",
        ]

    a_in, b_in = (A_INNER, B_INNER) if mode == "tunnel" else (A_OUTER, B_OUTER)

    def store(pols: list[str]) -> str:
        lines = ["# Written by tools/demo.py for one run (keys are random and used once).", "[daemon]", ""]
        lines += ["[xfrm]", "states = ["] + [f"  {json.dumps(s)}," for s in states] + ["]"]
        lines += ["policies = ["] + [f"  {json.dumps(p)}," for p in pols] + ["]", ""]
        return "\n".join(lines)

    return (
        store(policies(A_OUTER, B_OUTER, a_in, b_in)),
        store(policies(B_OUTER, A_OUTER, b_in, a_in)),
    )


def ike_mm(ikeversion: int) -> str:
    """The main mode (IKE SA) method of the demo's policies."""
    return "AES128-SHA256-14" if ikeversion == 1 else "AES256-SHA256-14"


def make_ike_stores(psk: str, ikeversion: int = 1) -> tuple[str, str]:
    """Host a: one rule requiring security with b. Host b: Secure Server (Require Security)
    with a PSK instead of Kerberos and without its ICMP exemption, so ping is protected too."""
    mm = ike_mm(ikeversion)
    # Require Security's methods, with a 1 GB kilobyte lifetime: at the native path's speed the
    # default 100 MB would rekey the quick mode during iperf3, and the monitor would then show the
    # fresh SA with no traffic yet (rekeying is shown by tests/test_daemon_ike.py instead).
    action = "Require Security (demo)"
    custom = (
        f'[[filteraction]]\nname = "{action}"\naction = "negotiate"\n'
        'qmsecmethods = ["ESP[AES128,SHA256]:1000000/3600", "ESP[3DES,SHA1]:1000000/3600"]\n'
        "inpass = true\n\n"
    )
    head = "# Written by tools/demo.py for one run (the preshared key is random and used once).\n"
    store_a = f"""{head}[daemon]
assigned_policy = "Client (demo)"
ikelogging = true

[[filterlist]]
name = "host b"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "{B_OUTER}"

{custom}[[policy]]
name = "Client (demo)"
mmsecmethods = ["{mm}"]
activatedefaultrule = false
  [[policy.rule]]
  name = "secure b"
  filterlist = "host b"
  filteraction = "{action}"
  ikeversion = {ikeversion}
  auth = [{{ method = "psk", psk = "{psk}" }}]
"""
    store_b = f"""{head}[daemon]
assigned_policy = "Secure Server (demo)"
ikelogging = true

{custom}[[policy]]
name = "Secure Server (demo)"
description = "Secure Server (Require Security) with a preshared key, no ICMP exemption"
mmsecmethods = ["{mm}"]
activatedefaultrule = false
  [[policy.rule]]
  name = "All IP Traffic"
  filterlist = "All IP Traffic"
  filteraction = "{action}"
  ikeversion = {ikeversion}
  auth = [{{ method = "psk", psk = "{psk}" }}]
"""
    return store_a, store_b


def redact(store_text: str) -> str:
    """The store as shown on screen: key words replaced (keys are secrets, even demo ones)."""
    out = []
    for line in store_text.splitlines():
        if 'psk = "' in line:
            head, _, rest = line.partition('psk = "')
            line = head + 'psk = "(hidden)"' + rest.partition('"')[2]
        words = line.split(" ")
        for i, w in enumerate(words[:-1]):
            if w.startswith("'rfc4106"):
                words[i + 1] = "0x(hidden)"
        out.append(" ".join(words))
    return "\n".join(out)


# --- the daemons ----------------------------------------------------------------------------------


class Node:
    def __init__(self, lab: Lab, host: Host, store_text: str) -> None:
        self.host = host
        self.store = lab.scratch(f"{host.name}-ipsecd.toml")
        self.store.write_text(store_text)
        self.store.chmod(0o600)  # the loader refuses key files readable by others
        self.control = lab.scratch(f"{host.name}-control.sock")
        self.state_dir = lab.scratch(f"{host.name}-state")
        self.oakley = lab.scratch(f"{host.name}-oakley.log")
        self.events = lab.scratch(f"{host.name}-events.log")
        self.proc: Background | None = None

    def start(self, timeout: float = 20.0) -> None:
        args = ["-m", "ipsecd.daemon.main", "--config", str(self.store), "--foreground"]
        args += ["--control", str(self.control), "--state-dir", str(self.state_dir)]
        args += ["--oakley-log", str(self.oakley), "--event-log", str(self.events)]
        self.proc = self.host.popen_python(args, name="ipsecd")
        self.proc.wait_output(r"ipsecd: ready", timeout)

    def ipsecctl(self, *words: str) -> str:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "ipsecd.io.cli_entry", "--control", str(self.control), *words]
        r = self.host.run(cmd, timeout=20, check=False, env=env)
        return (r.stdout + r.stderr).rstrip()

    def datapath(self) -> dict[str, Any]:
        from ipsecd.daemon.control import ControlClient

        with ControlClient(self.control, timeout=5) as c:
            result = c.call("datapath")
        return result if isinstance(result, dict) else {}

    def log_tail(self, n: int) -> list[str]:
        return self.proc.output().splitlines()[-n:] if self.proc else []

    @staticmethod
    def file_tail(path: Path, n: int) -> list[str]:
        try:
            return path.read_text(errors="replace").splitlines()[-n:]
        except FileNotFoundError:
            return []


# --- traffic --------------------------------------------------------------------------------------


def tcp_transfer(client: Host, server: Host, dst: str, src: str, size: int, port: int) -> tuple[bool, str]:
    srv = server.popen([sys.executable, "-c", _SERVER, "0.0.0.0", str(port)], name="tcp-echo")
    srv.wait_output("listening", 10)
    r = client.run(
        [sys.executable, "-c", _CLIENT, dst, str(port), str(size), MARKER.decode(), src],
        timeout=30,
        check=False,
    )
    srv.stop()
    out = (r.stdout + r.stderr).strip()
    parts = out.split()
    if r.returncode == 0 and len(parts) == 3 and parts[0] == "ok":
        n, dt = int(parts[1]), float(parts[2])
        return True, f"{n} bytes echoed intact in {dt:.2f} s ({2 * n * 8 / dt / 1e6:.1f} Mbit/s both ways)"
    return False, f"TCP transfer failed: {out[-500:]}"


def iperf3(client: Host, server: Host, dst: str, src: str, seconds: float) -> tuple[bool, str]:
    if shutil.which("iperf3") is None:
        return True, "iperf3 not installed (tools/bootstrap installs it): skipped"
    srv = server.popen(["iperf3", "-s", "-1", "-p", "5201", "-B", dst], name="iperf3")
    try:
        server.wait_listening(5201)
        r = client.run(
            ["iperf3", "-c", dst, "-B", src, "-p", "5201", "-t", str(seconds), "-J"],
            timeout=seconds + 20,
            check=False,
        )
    except HarnessError as exc:
        return False, f"iperf3 failed: {exc}"
    finally:
        srv.stop()
    try:
        end = json.loads(r.stdout)["end"]
        bps = float(end["sum_received"]["bits_per_second"])
    except (ValueError, KeyError, TypeError):
        return False, f"iperf3 failed: {(r.stdout + r.stderr)[-300:]}"
    return True, f"iperf3 TCP {seconds:g} s: {bps / 1e6:.1f} Mbit/s received"


# --- the demo -------------------------------------------------------------------------------------


def run_demo(
    lab: Lab, keys: str, mode: str, encap: bool, log_lines: int, with_ipsecd: bool = True, ikeversion: int = 1
) -> dict[str, Any]:
    summary: dict[str, Any] = {"mode": mode, "encap": encap, "keys": keys}
    if keys == "ike":
        summary["ikeversion"] = ikeversion
    section("two hosts in network namespaces, one veth link")
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b, [f"{A_OUTER}/24"], [f"{B_OUTER}/24"])
    if mode == "tunnel":
        a.run(["ip", "addr", "add", f"{A_INNER}/32", "dev", "lo"])
        b.run(["ip", "addr", "add", f"{B_INNER}/32", "dev", "lo"])
        a_in, b_in = A_INNER, B_INNER
    else:
        a_in, b_in = A_OUTER, B_OUTER
    extra_a, extra_b = (f", lo {A_INNER}", f", lo {B_INNER}") if mode == "tunnel" else ("", "")
    say(f"host a: namespace {a.ns}, {link.a_ifname} {A_OUTER}/24{extra_a}")
    say(f"host b: namespace {b.ns}, {link.b_ifname} {B_OUTER}/24{extra_b}")
    summary["namespaces"] = [a.ns, b.ns]

    section("policy stores (written for this demo)")
    if keys == "ike":
        say(KEYS_NOTE_IKE.format(exchanges=EXCHANGES[ikeversion], mm=ike_mm(ikeversion)))
        store_a, store_b = make_ike_stores(secrets.token_urlsafe(18), ikeversion)
    else:
        say(KEYS_NOTE_MANUAL)
        store_a, store_b = make_stores(mode, encap)
    node_a, node_b = Node(lab, a, store_a), Node(lab, b, store_b)
    for node, text in ((node_a, store_a), (node_b, store_b)):
        say(f"-- host {node.host.name}: {node.store} (secrets hidden here)")
        say(redact(text))

    section("starting ipsecd on both hosts")
    for node in (node_a, node_b) if with_ipsecd else ():
        node.start()
        assert node.proc is not None
        say(f"host {node.host.name}: pid {node.proc.pid}, control socket {node.control}")
        say("  " + next(ln for ln in node.proc.output().splitlines() if "ready" in ln))
    summary["pids"] = [n.proc.pid for n in (node_a, node_b) if n.proc is not None]

    section(f"traffic {a_in} <-> {b_in} ({'ESP-in-UDP' if encap else 'ESP'}, {mode} mode)")
    cap: Capture = a.capture(link.a_ifname)
    src_a = a_in if mode == "tunnel" else None
    src_b = b_in if mode == "tunnel" else None
    if keys == "ike":
        t0 = time.monotonic()
        first = a.ping(b_in, count=1, wait=8, src=src_a)
        dt = time.monotonic() - t0
        say(
            f"first ping a -> b: {first.received}/1 reply after {dt:.2f} s "
            f"(it raised an acquire; {EXCHANGES[ikeversion]} ran, then it left under the new SA)"
        )
        summary["first_ping"] = first.received
    ping_ab = a.ping(b_in, count=5, interval=0.2, src=src_a)
    ping_ba = b.ping(a_in, count=5, interval=0.2, src=src_b)
    say(f"ping a -> b: {ping_ab.received}/{ping_ab.transmitted} replies")
    say(f"ping b -> a: {ping_ba.received}/{ping_ba.transmitted} replies")
    if ping_ab.received or ping_ba.received:
        tcp_ok, tcp_text = tcp_transfer(a, b, b_in, a_in, 256 * 1024, 7000)
        say(f"TCP echo a -> b: {tcp_text}")
        ip_ok, ip_text = iperf3(a, b, b_in, a_in, 2.0)
        say(ip_text)
    else:  # no path at all: go straight to what the daemons say about it
        tcp_ok = ip_ok = False
        say("no ping passed: TCP and iperf3 skipped")
    cap.stop()
    summary["ping"] = [ping_ab.received, ping_ab.transmitted, ping_ba.received, ping_ba.transmitted]
    summary["tcp_ok"] = tcp_ok
    summary["iperf3_ok"] = ip_ok

    section(f"tcpdump on the link ({link.a_ifname})")
    esp = cap.count("esp")
    udp = cap.count("udp port 4500")
    ike = cap.count("udp port 500")
    plain = cap.count("ip and not esp and not udp port 4500 and not udp port 500")
    marker = sum(1 for frame in cap.packets() if MARKER in frame)
    say(f"IKE packets (UDP 500):       {ike}")
    say(f"ESP packets:                 {esp}")
    say(f"ESP-in-UDP (UDP 4500):       {udp}")
    say(f"plaintext IPv4 packets:      {plain}")
    say(f"frames holding the marker:   {marker}  (the TCP payload, if it ever crossed in clear)")
    for ln in cap.lines("esp or udp port 4500 or udp port 500")[:4]:
        say("  " + ln)
    summary.update(ike=ike, esp=esp, esp_in_udp=udp, plaintext=plain, marker_frames=marker)

    if not with_ipsecd:
        say("(--without-ipsecd: no daemon ran, so the traffic above crossed the link in clear)")
    for node in (node_a, node_b) if with_ipsecd else ():
        for obj in ("mmsas", "qmsas", "stats"):
            section(f"host {node.host.name}: ipsecctl --control {node.control} dynamic show {obj}")
            text = node.ipsecctl("dynamic", "show", obj)
            say(text)
        if keys == "manual":
            section(f"host {node.host.name}: ipsecctl --control {node.control} xfrm state list")
            say("(manually keyed SAs: `dynamic show qmsas` lists the SAs IKE negotiated, these are here)")
            say(node.ipsecctl("xfrm", "state", "list"))
        r = node.datapath().get("router", {})
        names = ("captured", "protected", "received", "delivered", "bad_spi", "unprotect_failed", "looped")
        say("datapath counters: " + ", ".join(f"{k} {r.get(k)}" for k in names))
        section(
            f"host {node.host.name}: the daemon's log (last {log_lines} lines; the journal under systemd)"
        )
        for ln in node.log_tail(log_lines):
            say("  " + ln)
        section(f"host {node.host.name}: event log {node.events} (last {log_lines} lines)")
        for ln in node.file_tail(node.events, log_lines) or ["(empty)"]:
            say("  " + ln)
        section(f"host {node.host.name}: Oakley log {node.oakley} (last {log_lines} lines)")
        oakley = node.file_tail(node.oakley, log_lines)
        for ln in oakley or [
            "(empty: no IKE negotiation with manual keys)" if keys == "manual" else "(empty)"
        ]:
            say("  " + ln)

    protected = esp + udp
    passed = (
        ping_ab.received == ping_ab.transmitted > 0
        and ping_ba.received == ping_ba.transmitted > 0
        and tcp_ok
        and ip_ok
        and plain == 0
        and marker == 0
        and protected > 0
        and (udp > 0 if encap else esp > 0)
        and (keys == "manual" or (summary.get("first_ping") == 1 and ike > 0))
    )
    summary["passed"] = passed
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ipsecd two-host demo in network namespaces (root)")
    parser.add_argument(
        "--manual", action="store_true", help="manually keyed SAs (the store's [xfrm]) instead of IKE"
    )
    parser.add_argument("--ikev2", action="store_true", help="negotiate with IKEv2 instead of IKEv1")
    parser.add_argument(
        "--mode", choices=("tunnel", "transport"), default=None, help="with --manual (default tunnel)"
    )
    parser.add_argument(
        "--encap", action="store_true", help="with --manual: ESP in UDP 4500 (RFC 3948) instead of raw ESP"
    )
    parser.add_argument(
        "--token", default=None, help="hex token naming the namespaces (tools/demo passes one)"
    )
    parser.add_argument("--log-lines", type=int, default=40)
    parser.add_argument(
        "--without-ipsecd",
        action="store_true",
        help="start no daemon (a control run: the plaintext check must then fail)",
    )
    args = parser.parse_args(argv)
    if args.manual and args.ikev2:
        parser.error("--ikev2 and --manual exclude each other")
    if not args.manual and (args.encap or args.mode == "tunnel"):
        parser.error(
            "the IKE variant runs transport mode over raw ESP; --mode tunnel and --encap need --manual"
        )
    mode = args.mode or ("tunnel" if args.manual else "transport")
    if not is_root():
        print("demo: run as root (network namespaces, TUN devices, nftables)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGHUP, _raise_terminated)
    t0 = time.monotonic()
    summary: dict[str, Any] = {"passed": False}
    lab = Lab(token=args.token)
    try:
        try:
            summary = run_demo(
                lab,
                "manual" if args.manual else "ike",
                mode,
                args.encap,
                args.log_lines,
                not args.without_ipsecd,
                2 if args.ikev2 else 1,
            )
        except (HarnessError, AssertionError, StopIteration) as exc:
            print(f"demo: failed: {exc}", file=sys.stderr)
            summary["error"] = str(exc)
    except (KeyboardInterrupt, _Terminated) as exc:  # also while a failure above is reported
        print(f"demo: interrupted ({type(exc).__name__}): cleaning up", file=sys.stderr)
        summary["error"] = "interrupted"
    finally:
        # A second Ctrl-C must not cut the cleanup short (tools/demo's trap is the last resort).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        section("cleaning up")
        names = [h.ns for h in lab.hosts]
        try:
            lab.close()
        except HarnessError as exc:
            print(f"demo: cleanup: {exc}", file=sys.stderr)
        say(f"removed namespaces {', '.join(names) or '(none)'} and every process in them")
    summary["seconds"] = round(time.monotonic() - t0, 1)
    say()
    say("RESULT: " + ("PASS" if summary.get("passed") else "FAIL"))
    say("DEMO-SUMMARY " + json.dumps({k: v for k, v in summary.items() if k != "monitor"}))
    return 0 if summary.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
