"""strongSwan's charon as an interop peer inside a test namespace (root only).

How it runs (docs/testing.md and /work/shared/notes/strongswan-in-netns.md have the why):

- ``ip netns exec NS sh -c "mount --bind RUN /run && exec charon"``: ``ip netns exec`` gives the
  command a mount namespace of its own, so the private /run hides the compiled-in pid file
  /var/run/charon.pid and several instances run side by side.
- ``STRONGSWAN_CONF`` points charon and swanctl at a private strongswan.conf: the ``load`` line
  (kernel-libipsec before kernel-netlink, kdf required: this kernel has no ESP), a file log, and
  the vici socket in a private directory outside /run, so swanctl reaches it from anywhere.
- ``SWANCTL_DIR`` selects the directory holding the swanctl.conf text given to ``Charon``.

kernel-libipsec means: tunnel mode only, ESP only, always UDP-encapsulated on port 4500, and the
host needs an address inside its ``local_ts`` (e.g. a /32 on ``lo``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.netns import Background, HarnessError, Host, wait_until

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "swanctl"
LOAD = "random nonce openssl kdf kernel-libipsec kernel-netlink socket-default vici"
LOAD_X509 = LOAD + " x509 pem pkcs1 pkcs8 pubkey revocation constraints"
SWANCTL_LOAD = "random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints"


def available() -> bool:
    return Path(CHARON).exists() and subprocess.run(["which", SWANCTL], capture_output=True).returncode == 0


class Charon:
    """One charon instance in ``host``; ``start()`` it, and the host's lab stops it at the end."""

    def __init__(
        self,
        host: Host,
        swanctl_conf: str,
        *,
        name: str = "charon",
        load: str = LOAD,
        charon_options: str = "",
        log_level: int = 1,
    ) -> None:
        self.host = host
        self.dir = host.lab.scratch(f"strongswan-{host.name}-{name}")
        self.run_dir = self.dir / "run"
        self.vici = self.dir / "vici" / "charon.vici"
        self.swanctl_dir = self.dir / "swanctl"
        self.conf = self.dir / "strongswan.conf"
        self.log = self.dir / "charon.log"
        for d in (self.run_dir, self.vici.parent, self.swanctl_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "charon {\n"
            f"  load = {load}\n"
            "  filelog {\n"
            f"    test {{\n      path = {self.log}\n      default = {log_level}\n"
            "      flush_line = yes\n      time_format = %T\n      ike_name = yes\n    }\n"
            "  }\n"
            "  syslog {\n    daemon {\n      default = -1\n    }\n  }\n"
            f"  plugins {{\n    vici {{\n      socket = unix://{self.vici}\n    }}\n  }}\n"
            f"{charon_options}\n"
            "}\n"
            f"swanctl {{\n  load = {SWANCTL_LOAD}\n  socket = unix://{self.vici}\n}}\n"
        )
        (self.swanctl_dir / "swanctl.conf").write_text(swanctl_conf)
        self.env = {**os.environ, "STRONGSWAN_CONF": str(self.conf), "SWANCTL_DIR": str(self.swanctl_dir)}
        self.proc: Background | None = None

    def start(self, timeout: float = 10.0) -> Charon:
        """Start charon, wait until vici answers, load the swanctl.conf."""
        cmd = f"mount --bind {self.run_dir} /run && exec {CHARON}"
        self.proc = self.host.popen(["sh", "-c", cmd], name="charon", env=self.env)

        def answers() -> bool:
            assert self.proc is not None
            if not self.proc.running():
                raise HarnessError(
                    f"charon exited ({self.proc.proc.returncode}):\n{self.proc.output()}\n{self.log_text()}"
                )
            return self.vici.exists() and self.swanctl("--stats", check=False).returncode == 0

        wait_until(answers, timeout, 0.05, f"charon's vici socket in {self.host.ns}")
        self.load()
        return self

    def swanctl(
        self, *args: str, timeout: float = 15.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run swanctl against this instance (its vici socket is reachable from any namespace)."""
        try:
            r = subprocess.run(
                [SWANCTL, *args], capture_output=True, text=True, timeout=timeout, env=self.env
            )
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"swanctl {' '.join(args)} timed out after {timeout} s") from e
        if check and r.returncode != 0:
            raise HarnessError(
                f"swanctl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}\n--- log:\n{self.log_text()[-4000:]}"
            )
        return r

    def load(self, swanctl_conf: str | None = None) -> None:
        """(Re)load connections and secrets, optionally from new swanctl.conf text."""
        if swanctl_conf is not None:
            (self.swanctl_dir / "swanctl.conf").write_text(swanctl_conf)
        self.swanctl("--load-all", "--noprompt")

    def initiate(self, child: str, ike: str | None = None, timeout: int = 10) -> str:
        args = ["--initiate", "--child", child, "--timeout", str(timeout)]
        if ike:
            args += ["--ike", ike]
        return self.swanctl(*args, timeout=timeout + 5).stdout

    def terminate(self, ike: str, timeout: int = 10) -> str:
        return self.swanctl(
            "--terminate", "--ike", ike, "--timeout", str(timeout), timeout=timeout + 5, check=False
        ).stdout

    def list_sas(self) -> str:
        """``swanctl --list-sas`` text (IKE_SAs with their CHILD_SAs)."""
        return self.swanctl("--list-sas").stdout

    def established(self, ike: str, child: str | None = None) -> bool:
        """True when IKE_SA ``ike`` is ESTABLISHED (and CHILD_SA ``child`` INSTALLED)."""
        text = self.list_sas()
        if not re.search(rf"^{re.escape(ike)}: #\d+, ESTABLISHED", text, re.MULTILINE):
            return False
        return (
            child is None
            or re.search(rf"^\s+{re.escape(child)}: #\d+, reqid \d+, INSTALLED", text, re.MULTILINE)
            is not None
        )

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def psk_tunnel_conf(
    *,
    local_addr: str,
    remote_addr: str,
    local_id: str,
    remote_id: str,
    local_ts: str,
    remote_ts: str,
    psk: str,
    name: str = "t",
    version: int = 2,
    proposals: str = "aes128gcm16-prfsha256-x25519",
    esp_proposals: str = "aes128gcm16",
    encap: bool = True,
) -> str:
    """swanctl.conf text for one PSK tunnel-mode connection ``name`` with a child of the same name."""
    return f"""connections {{
  {name} {{
    version = {version}
    local_addrs = {local_addr}
    remote_addrs = {remote_addr}
    proposals = {proposals}
    encap = {"yes" if encap else "no"}
    local {{
      auth = psk
      id = {local_id}
    }}
    remote {{
      auth = psk
      id = {remote_id}
    }}
    children {{
      {name} {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = {esp_proposals}
        mode = tunnel
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  ike-{name} {{
    id-a = {local_id}
    id-b = {remote_id}
    secret = "{psk}"
  }}
}}
"""
