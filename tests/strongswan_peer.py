"""A strongSwan charon peer (responder, or initiator on request) in a private network namespace, for
interop tests (root only).

The namespace has only its loopback; charon listens on 127.0.0.1:500 and the test talks to it from
a UDP socket on 127.0.0.2 that a helper process creates inside the namespace and hands over by
SCM_RIGHTS, so nothing outside the namespace is touched. Facts used: /work/shared/notes/
strongswan-in-netns.md. Everything is torn down by ``close()`` (also on failure).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHARON = "/usr/lib/ipsec/charon"
PLUGINS = "random nonce openssl kdf kernel-libipsec kernel-netlink socket-default vici"

_FD_HELPER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", int(sys.argv[1])))
u = socket.socket(fileno=int(sys.argv[2]))
socket.send_fds(u, [b"fd"], [s.fileno()])
"""


def available() -> str | None:
    """None when the peer can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not (Path(CHARON).exists() and shutil.which("swanctl") and shutil.which("ip")):
        return "strongSwan charon/swanctl not installed"
    return None


class CharonV1Peer:
    def __init__(
        self,
        *,
        ike_proposal: str,
        esp_proposal: str,
        psk: str,
        pfs: bool = False,
        charon_port: int = 500,
        encap: bool = False,
        swanctl_conf: str | None = None,
        files: dict[str, bytes] | None = None,
        extra_plugins: str = "",
    ) -> None:
        """``swanctl_conf`` replaces the PSK connection text; ``files`` are written below the swanctl
        directory (e.g. ``x509ca/ca.pem``); ``extra_plugins`` are appended to the load line."""
        self.charon_port = charon_port
        self.encap = encap
        self._swanctl_conf = swanctl_conf
        self._files = files or {}
        self._plugins = f"{PLUGINS} {extra_plugins}".strip()
        self.ns = f"ipsecd-v1-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
        self.dir = Path(tempfile.mkdtemp(prefix="ipsecd-charon-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "charon.log"
        try:
            self._start(ike_proposal, esp_proposal, psk, pfs)
        except BaseException:
            self.close()
            raise

    def _run(self, *cmd: str, timeout: float = 20) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)

    def _start(self, ike_proposal: str, esp_proposal: str, psk: str, pfs: bool) -> None:
        d = self.dir
        (d / "run").mkdir()
        (d / "swanctl").mkdir()
        vici = f"unix://{d}/charon.vici"
        (d / "strongswan.conf").write_text(
            f"""charon {{
  load = {self._plugins}
  port = {self.charon_port}
  port_nat_t = {4500 if self.charon_port == 500 else self.charon_port + 1}
  install_routes = no
  plugins {{ vici {{ socket = {vici} }} }}
  filelog {{ log {{ path = {self.log}
    default = 1
    ike = 2
    flush_line = yes }} }}
}}
swanctl {{ socket = {vici} }}
"""
        )
        esp = esp_proposal + ("-modp2048" if pfs else "")
        (d / "swanctl" / "swanctl.conf").write_text(
            f"""connections {{
  v1 {{
    version = 1
    local_addrs = 127.0.0.1
    remote_addrs = 127.0.0.2
    proposals = {ike_proposal}
    encap = {"yes" if self.encap else "no"}
    mobike = no
    local {{ auth = psk
      id = 127.0.0.1 }}
    remote {{ auth = psk
      id = 127.0.0.2 }}
    children {{ c {{ local_ts = 10.2.0.0/24
      remote_ts = 10.1.0.0/24
      esp_proposals = {esp}
      mode = tunnel }} }}
  }}
}}
secrets {{ ike-1 {{ id-1 = 127.0.0.1
  id-2 = 127.0.0.2
  secret = "{psk}" }} }}
"""
        )
        if self._swanctl_conf is not None:
            (d / "swanctl" / "swanctl.conf").write_text(self._swanctl_conf)
        for rel, data in self._files.items():
            target = d / "swanctl" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self._run("ip", "netns", "add", self.ns)
        self._run("ip", "-n", self.ns, "link", "set", "lo", "up")
        self._run("ip", "-n", self.ns, "addr", "add", "10.2.0.1/32", "dev", "lo")
        env = dict(os.environ, STRONGSWAN_CONF=str(d / "strongswan.conf"), SWANCTL_DIR=str(d / "swanctl"))
        self._env = env
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "sh", "-c", f"mount --bind {d}/run /run && exec {CHARON}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not (d / "charon.vici").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("charon did not start: " + self.log_text())
            time.sleep(0.05)
        subprocess.run(
            ["ip", "netns", "exec", self.ns, "swanctl", "--load-all", "--noprompt"],
            env=env,
            check=True,
            capture_output=True,
            timeout=20,
        )

    def socket(self, port: int = 5500) -> socket.socket:
        """A UDP socket bound to 127.0.0.2:port inside the namespace."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.ns,
                    sys.executable,
                    "-c",
                    _FD_HELPER,
                    str(port),
                    str(child.fileno()),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                check=True,
                capture_output=True,
                timeout=20,
            )
            _, fds, _, _ = socket.recv_fds(parent, 16, 1)
        finally:
            parent.close()
            child.close()
        s = socket.socket(fileno=fds[0])
        s.settimeout(5.0)
        return s

    def initiate(self) -> subprocess.Popen[bytes]:
        """Makes charon initiate the connection (Main Mode, then Quick Mode) towards 127.0.0.2:500;
        the caller terminates the returned swanctl process."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "swanctl", "--initiate", "--child", "c", "--timeout", "20"],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def swanctl(self, *args: str) -> str:
        """Runs swanctl against this charon; returns its output."""
        r = subprocess.run(
            ["ip", "netns", "exec", self.ns, "swanctl", *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        return r.stdout + r.stderr

    def ip(self, *args: str) -> None:
        """Runs ``ip`` inside the namespace."""
        self._run("ip", "-n", self.ns, *args)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, needle: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)
