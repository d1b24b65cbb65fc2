"""Test harness: hosts in network namespaces joined by veth links (root only).

A ``Lab`` owns everything it creates: namespaces, background processes and scratch files. Leaving
its ``with`` block (normally, on an exception or on Ctrl-C) stops the processes, kills whatever
still runs inside its namespaces and deletes the namespaces; the veth links die with them.

Names: every namespace is ``ipt<pid>-<token>-<host>`` where ``pid`` is the test process and ``token``
is random per lab, so parallel runs never collide and ``sweep_leftovers()`` can delete namespaces
whose creating process is gone (after a SIGKILL). veth names are ``v<token><n><a|b>`` (at most 15
characters, the kernel's IFNAMSIZ - 1).

Every wait is bounded: commands take a timeout, background processes are stopped with SIGTERM then
SIGKILL after a grace period, and polling loops (``wait_until``) give up after a deadline.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ipsecd.io.nsenter import NETNS_DIR, netns_entered

PREFIX = "ipt"
REPO_ROOT = Path(__file__).resolve().parent.parent
_NS_RE = re.compile(rf"^{PREFIX}(\d+)-([0-9a-f]+)-")
_LIVE_TOKENS: set[str] = set()  # labs open in this process


class HarnessError(RuntimeError):
    """A harness step failed (command error, timeout, process died)."""


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie is dead: PID 1 here may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def is_root() -> bool:
    return os.geteuid() == 0


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "") -> None:
    """Poll ``predicate`` until it is true; raise HarnessError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.1f} s waiting for {what or predicate!r}")
        time.sleep(interval)


def _run(
    cmd: Sequence[str], timeout: float, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"command timed out after {timeout} s: {' '.join(cmd)}") from e
    if check and r.returncode != 0:
        raise HarnessError(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r


# --- namespaces ---------------------------------------------------------------------------------


def _ns_pids(ns: str) -> list[int]:
    r = _run(["ip", "netns", "pids", ns], timeout=5, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _kill_ns_processes(ns: str, grace: float = 2.0) -> None:
    """SIGTERM every process inside ``ns`` (all started by this harness), then SIGKILL survivors."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _ns_pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(HarnessError):
            wait_until(lambda: not _ns_pids(ns), grace, 0.05, f"processes in {ns} to exit")


def delete_namespace(ns: str) -> None:
    _kill_ns_processes(ns)
    _run(["ip", "netns", "delete", ns], timeout=10, check=False)


def our_namespaces() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if _NS_RE.match(p.name))


def sweep_leftovers() -> list[str]:
    """Delete namespaces with our prefix whose creating process no longer exists."""
    removed = []
    for ns in our_namespaces():
        m = _NS_RE.match(ns)
        assert m is not None
        pid, token = int(m.group(1)), m.group(2)
        if pid == os.getpid():
            if token in _LIVE_TOKENS:
                continue  # a lab of this very process
        elif pid_alive(pid):
            continue  # another live test run owns it
        delete_namespace(ns)
        removed.append(ns)
    return removed


def entered(ns: str) -> contextlib.AbstractContextManager[None]:
    """Move the calling thread into network namespace ``ns`` for the block, then back.

    Sockets, TUN devices and netlink handles created inside the block belong to ``ns`` and stay
    there after the block ends (a file descriptor keeps its namespace).
    """
    return netns_entered(ns)


# --- background processes -----------------------------------------------------------------------


class Background:
    """A process started in a namespace, in its own process group, output to a file."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        out = log.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        finally:
            out.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_output(self, pattern: str, timeout: float) -> None:
        """Wait until the process has printed ``pattern`` (a regex); fail early if it exits."""

        def seen() -> bool:
            if re.search(pattern, self.output()):
                return True
            if not self.running():
                raise HarnessError(
                    f"{self.argv[0:6]} exited ({self.proc.returncode}) before printing {pattern!r}:\n{self.output()}"
                )
            return False

        wait_until(seen, timeout, 0.02, f"{pattern!r} from {' '.join(self.argv)}")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"process did not exit within {timeout} s: {' '.join(self.argv)}") from e

    def stop(self, sig: int = signal.SIGTERM, grace: float = 3.0) -> int:
        """Signal the process group, wait ``grace`` seconds, then SIGKILL it. Returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # The group may outlive its leader (children of `ip netns exec ... sh -c`).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PingResult:
    transmitted: int
    received: int
    rtts_ms: tuple[float, ...]
    output: str

    @property
    def loss(self) -> float:
        return 1.0 if self.transmitted == 0 else 1.0 - self.received / self.transmitted

    @property
    def avg_ms(self) -> float | None:
        return sum(self.rtts_ms) / len(self.rtts_ms) if self.rtts_ms else None


def parse_ping(output: str) -> PingResult:
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    if m is None:
        raise HarnessError(f"cannot parse ping output:\n{output}")
    rtts = tuple(float(t) for t in re.findall(r"time=([\d.]+) ms", output))
    return PingResult(int(m.group(1)), int(m.group(2)), rtts, output)


@dataclass(frozen=True)
class IperfResult:
    sent_bps: float
    received_bps: float
    retransmits: int | None
    lost_percent: float | None
    raw: dict[str, Any] = field(repr=False)


def parse_iperf3(text: str) -> IperfResult:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise HarnessError(f"iperf3 printed no JSON:\n{text[:2000]}") from e
    if "error" in data:
        raise HarnessError(f"iperf3: {data['error']}")
    end = data["end"]
    udp = data.get("start", {}).get("test_start", {}).get("protocol") == "UDP"
    if udp:  # iperf3 >= 3.11 also writes sum_sent/sum_received for UDP: the received side counts
        s = end["sum"]
        got = end.get("sum_received", s)
        return IperfResult(
            float(end.get("sum_sent", s)["bits_per_second"]),
            float(got["bits_per_second"]),
            None,
            float(s.get("lost_percent", got.get("lost_percent", 0.0))),
            data,
        )
    if "sum_sent" in end:  # TCP
        return IperfResult(
            float(end["sum_sent"]["bits_per_second"]),
            float(end["sum_received"]["bits_per_second"]),
            end["sum_sent"].get("retransmits"),
            None,
            data,
        )
    s = end["sum"]  # UDP
    return IperfResult(
        float(s["bits_per_second"]),
        float(s["bits_per_second"]),
        None,
        float(s.get("lost_percent", 0.0)),
        data,
    )


# --- packet capture -------------------------------------------------------------------------------


class Capture:
    """tcpdump writing a pcap file; started capturing when the constructor returns."""

    def __init__(self, host: Host, iface: str, bpf: str = "", timeout: float = 5.0) -> None:
        self.host = host
        self.iface = iface
        self.pcap = host.lab.scratch(f"{host.name}-{iface}-{secrets.token_hex(2)}.pcap")
        argv = [
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-p",
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "-s",
            "0",
            "-w",
            str(self.pcap),
        ]
        self.bg = host.popen([*argv, *bpf.split()], name=f"tcpdump-{iface}")
        # tcpdump prints "listening on" after the capture handle is active and the filter set.
        self.bg.wait_output(r"listening on", timeout)

    def stop(self, settle: float = 0.2) -> None:
        """Let in-flight packets arrive, then stop tcpdump (SIGINT flushes and closes the file)."""
        if self.bg.running():
            time.sleep(settle)
            self.bg.stop(signal.SIGINT, grace=3.0)

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def lines(self, bpf: str = "") -> list[str]:
        """tcpdump's one-line summaries of the captured packets matching ``bpf``."""
        self.stop()
        r = _run(["tcpdump", "-r", str(self.pcap), "-n", "-tt", *bpf.split()], timeout=15)
        return [ln for ln in r.stdout.splitlines() if ln.strip()]

    def count(self, bpf: str = "") -> int:
        return len(self.lines(bpf))

    def packets(self) -> list[bytes]:
        """Raw frames of the pcap file (link layer included: Ethernet on veth, raw IP on TUN)."""
        self.stop()
        return read_pcap(self.pcap)


def read_pcap(path: Path) -> list[bytes]:
    # pcap: 24-byte global header (magic a1b2c3d4 or d4c3b2a1 for the byte order), then records
    # of a 16-byte header (ts_sec, ts_usec, incl_len, orig_len) followed by incl_len bytes.
    data = path.read_bytes()
    if len(data) < 24:
        return []
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, off + 8)[0]
        out.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return out


# --- hosts and links ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    a: Host
    b: Host
    a_ifname: str
    b_ifname: str
    a_addrs: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]
    b_addrs: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]

    def addr(self, side: str, version: int = 4) -> str:
        """The first address of ``side`` ('a' or 'b') of the given IP version, without prefix."""
        addrs = self.a_addrs if side == "a" else self.b_addrs
        for a in addrs:
            if a.version == version:
                return str(a.ip)
        raise HarnessError(f"link side {side} has no IPv{version} address")


class Host:
    """One network namespace."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.name = name
        self.ns = f"{PREFIX}{os.getpid()}-{lab.token}-{name}"

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ns={self.ns!r})"

    def argv(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def run(
        self,
        cmd: Sequence[str] | str,
        timeout: float = 10.0,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the namespace; a string is split on whitespace."""
        argv = cmd.split() if isinstance(cmd, str) else list(cmd)
        return _run(self.argv(argv), timeout=timeout, check=check, env=env)

    def popen(self, cmd: Sequence[str], name: str = "proc", env: dict[str, str] | None = None) -> Background:
        """Start a background process in the namespace; the lab stops it at the end."""
        log = self.lab.scratch(f"{self.name}-{name}-{secrets.token_hex(2)}.log")
        bg = Background(self.argv(cmd), log, env=env)
        self.lab.processes.append(bg)
        return bg

    def popen_python(self, args: Sequence[str], name: str = "python") -> Background:
        """Start ``python3 ARGS`` in the namespace with this checkout's ``ipsecd`` importable
        (e.g. ``["-m", "ipsecd.daemon.main", ...]``)."""
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        return self.popen([sys.executable, *args], name=name, env=env)

    def entered(self) -> contextlib.AbstractContextManager[None]:
        """Move the calling thread into this namespace for a ``with`` block (see ``entered``)."""
        return entered(self.ns)

    def sysctl(self, key: str, value: str | int) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def add_address(self, ifname: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        extra = ["nodad"] if iface.version == 6 else []
        self.run(["ip", "addr", "add", cidr, "dev", ifname, *extra])

    def add_route(self, dst: str, via: str | None = None, dev: str | None = None) -> None:
        cmd = ["ip", "route", "add", dst]
        if via:
            cmd += ["via", via]
        if dev:
            cmd += ["dev", dev]
        if ":" in dst or (via and ":" in via):
            cmd.insert(1, "-6")
        self.run(cmd)

    def wait_oper_up(self, ifname: str, timeout: float = 5.0) -> None:
        def up() -> bool:
            out = self.run(["ip", "-o", "link", "show", "dev", ifname], check=False).stdout
            return "state UP" in out or ("LOWER_UP" in out and "state UNKNOWN" in out)

        wait_until(up, timeout, 0.02, f"{ifname} in {self.ns} to be operationally up")

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset (text) in this namespace."""
        path = self.lab.scratch(f"{self.name}-{secrets.token_hex(2)}.nft")
        path.write_text(ruleset)
        self.run(["nft", "-f", str(path)])

    def ping(
        self,
        dst: str,
        count: int = 3,
        interval: float = 0.2,
        wait: float = 1.0,
        src: str | None = None,
        size: int | None = None,
    ) -> PingResult:
        """Ping and parse; never raises on loss (check ``loss``), bounded by count*interval+wait."""
        cmd = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait)]
        deadline = int(count * interval + wait + 1)
        cmd += ["-w", str(deadline)]
        if src:
            cmd += ["-I", src]
        if size is not None:
            cmd += ["-s", str(size)]
        r = self.run([*cmd, dst], timeout=deadline + 5, check=False)
        return parse_ping(r.stdout + r.stderr)

    def wait_listening(self, port: int, proto: str = "tcp", timeout: float = 5.0) -> None:
        flag = "-Hltn" if proto == "tcp" else "-Hlun"

        def listening() -> bool:
            return bool(self.run(["ss", flag, f"sport = :{port}"], check=False).stdout.strip())

        wait_until(listening, timeout, 0.05, f"{proto} port {port} listening in {self.ns}")

    def iperf3_server(self, port: int = 5201, bind: str | None = None) -> Background:
        cmd = ["iperf3", "-s", "-1", "-p", str(port)]
        if bind:
            cmd += ["-B", bind]
        bg = self.popen(cmd, name="iperf3-server")
        self.wait_listening(port, "tcp")
        return bg

    def iperf3_client(
        self,
        dst: str,
        port: int = 5201,
        seconds: float = 2.0,
        udp_rate: str | None = None,
        extra: Sequence[str] = (),
    ) -> IperfResult:
        cmd = ["iperf3", "-c", dst, "-p", str(port), "-t", str(seconds), "-J", *extra]
        if udp_rate:
            cmd += ["-u", "-b", udp_rate]
        r = self.run(cmd, timeout=seconds + 20, check=False)
        return parse_iperf3(r.stdout)

    def capture(self, iface: str, bpf: str = "") -> Capture:
        return Capture(self, iface, bpf)


class Lab:
    """A set of namespaces, links and processes, all removed when the lab closes."""

    def __init__(self, token: str | None = None) -> None:
        if not is_root():
            raise HarnessError("network namespaces need root")
        self.token = token or secrets.token_hex(3)
        if not re.fullmatch(r"[0-9a-f]{1,8}", self.token):
            raise HarnessError(f"lab token must be 1-8 hex digits: {self.token!r}")
        _LIVE_TOKENS.add(self.token)
        self.hosts: list[Host] = []
        self.processes: list[Background] = []
        self._links = 0
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{self.token}-"))
        self.closed = False

    def scratch(self, name: str) -> Path:
        return self.workdir / name

    def host(self, name: str) -> Host:
        if not re.fullmatch(r"[a-z0-9]{1,12}", name):
            raise HarnessError(f"host name must be 1-12 lowercase letters/digits: {name!r}")
        h = Host(self, name)
        self.hosts.append(h)  # before creation: a half-made namespace is still cleaned up
        _run(["ip", "netns", "add", h.ns], timeout=10)
        h.run(["ip", "link", "set", "lo", "up"])
        return h

    def link(
        self,
        a: Host,
        b: Host,
        a_addrs: Sequence[str] = (),
        b_addrs: Sequence[str] = (),
        mtu: int | None = None,
    ) -> Link:
        """A veth pair between ``a`` and ``b``, created directly inside both namespaces, up."""
        n = self._links
        self._links += 1
        an, bn = f"v{self.token}{n}a", f"v{self.token}{n}b"
        assert len(an) <= 15
        _run(
            ["ip", "link", "add", an, "netns", a.ns, "type", "veth", "peer", "name", bn, "netns", b.ns],
            timeout=10,
        )
        for host, ifname, addrs in ((a, an, a_addrs), (b, bn, b_addrs)):
            if mtu is not None:
                host.run(["ip", "link", "set", ifname, "mtu", str(mtu)])
            for cidr in addrs:
                host.add_address(ifname, cidr)
            host.run(["ip", "link", "set", ifname, "up"])
        # Until the kernel's link watcher sees the carrier (up to about 1 s), the veth drops packets:
        # the first ARP/ND probe would be lost and retried only a second later.
        for host, ifname in ((a, an), (b, bn)):
            host.wait_oper_up(ifname)
        return Link(
            a,
            b,
            an,
            bn,
            tuple(ipaddress.ip_interface(x) for x in a_addrs),
            tuple(ipaddress.ip_interface(x) for x in b_addrs),
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        errors: list[str] = []
        for bg in reversed(self.processes):
            try:
                bg.stop()
            except Exception as e:  # keep cleaning up
                errors.append(f"{bg.argv}: {e}")
        for h in reversed(self.hosts):
            try:
                delete_namespace(h.ns)
            except Exception as e:
                errors.append(f"{h.ns}: {e}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        _LIVE_TOKENS.discard(self.token)
        if errors:
            raise HarnessError("lab cleanup: " + "; ".join(errors))

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- ready-made topologies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """Two hosts on one veth: a=192.0.2.1/24 + 2001:db8::1/64, b=192.0.2.2/24 + 2001:db8::2/64."""

    a: Host
    b: Host
    link: Link


def two_hosts(lab: Lab, mtu: int | None = None) -> Pair:
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b, ["192.0.2.1/24", "2001:db8::1/64"], ["192.0.2.2/24", "2001:db8::2/64"], mtu=mtu)
    return Pair(a, b, link)


@dataclass(frozen=True)
class NatTopology:
    """left (10.0.1.2) -- router (10.0.1.1 | 198.51.100.1, masquerade) -- right (198.51.100.2)."""

    left: Host
    router: Host
    right: Host
    inside: Link  # left(a) <-> router(b)
    outside: Link  # router(a) <-> right(b)

    @property
    def router_public(self) -> str:
        return self.outside.addr("a")


def nat_topology(lab: Lab) -> NatTopology:
    left, router, right = lab.host("left"), lab.host("router"), lab.host("right")
    inside = lab.link(left, router, ["10.0.1.2/24"], ["10.0.1.1/24"])
    outside = lab.link(router, right, ["198.51.100.1/24"], ["198.51.100.2/24"])
    router.sysctl("net.ipv4.ip_forward", 1)
    left.add_route("default", via="10.0.1.1")
    # Masquerade whatever leaves through the outside interface (RFC 3022 NAPT).
    router.nft(
        "table ip iptnat {\n"
        "  chain post {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "{outside.a_ifname}" masquerade\n'
        "  }\n"
        "}\n"
    )
    return NatTopology(left, router, right, inside, outside)
