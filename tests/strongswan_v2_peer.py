"""A strongSwan charon IKEv2 peer in a private network namespace, for the ipsecd.ikev2 interop tests
(root only). Same arrangement as ``strongswan_peer.CharonV1Peer`` (loopback-only namespace, charon
on 127.0.0.1, our sockets on 127.0.0.2 handed over by SCM_RIGHTS), with an IKEv2 connection ``v2``
and child ``c``: tunnel mode, PSK, ``encap = yes`` (kernel-libipsec only does UDP-encapsulated ESP,
/work/shared/notes/strongswan-in-netns.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import time

from strongswan_peer import CHARON, PLUGINS, CharonV1Peer

CHARON_TS = "10.2.0.0/24"
OUR_TS = "10.1.0.0/24"


class CharonV2Peer(CharonV1Peer):
    def __init__(
        self,
        *,
        ike_proposal: str,
        esp_proposal: str,
        psk: str,
        pfs: bool = False,
        charon_port: int = 500,
        child_rekey: int = 0,
        ike_rekey: int = 0,
        install_routes: bool = False,
        pki: dict[str, bytes] | None = None,
        rfc7427: bool = True,
    ) -> None:
        """``pki``: files for the swanctl directory (``x509ca/ca.pem``, ``x509/charon.pem``,
        ``private/charon.key``); with it both ends authenticate with certificates."""
        self._install_routes = install_routes
        self._pki = pki
        self._rfc7427 = rfc7427
        self._child_rekey = child_rekey
        self._ike_rekey = ike_rekey
        super().__init__(
            ike_proposal=ike_proposal, esp_proposal=esp_proposal, psk=psk, pfs=pfs, charon_port=charon_port
        )

    def _start(self, ike_proposal: str, esp_proposal: str, psk: str, pfs: bool) -> None:
        d = self.dir
        (d / "run").mkdir()
        (d / "swanctl").mkdir(exist_ok=True)
        vici = f"unix://{d}/charon.vici"
        natt = 4500 if self.charon_port == 500 else self.charon_port + 1
        plugins = PLUGINS + (" x509 pem pkcs1 pkcs8 pubkey revocation constraints" if self._pki else "")
        auth = "pubkey" if self._pki else "psk"
        certs = "\n      certs = charon.pem" if self._pki else ""
        for rel, content in (self._pki or {}).items():
            (d / "swanctl" / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / "swanctl" / rel).write_bytes(content)
        (d / "strongswan.conf").write_text(
            f"""charon {{
  load = {plugins}
  port = {self.charon_port}
  port_nat_t = {natt}
  install_routes = {"yes" if self._install_routes else "no"}
  retransmit_tries = 2
  signature_authentication = {"yes" if self._rfc7427 else "no"}
  retransmit_timeout = 1.0
  plugins {{ vici {{ socket = {vici} }} }}
  filelog {{ log {{ path = {self.log}
    default = 1
    ike = 2
    flush_line = yes }} }}
}}
swanctl {{ socket = {vici} }}
"""
        )
        # ESP with a DH group: PFS in CREATE_CHILD_SA (charon leaves the group out in IKE_AUTH).
        group = ike_proposal.rsplit("-", 1)[1]
        esp = esp_proposal + (f"-{group}" if pfs else "")
        (d / "swanctl" / "swanctl.conf").write_text(
            f"""connections {{
  v2 {{
    version = 2
    local_addrs = 127.0.0.1
    remote_addrs = 127.0.0.2
    proposals = {ike_proposal}
    encap = yes
    mobike = no
    fragmentation = yes
    rekey_time = {self._ike_rekey}s
    local {{ auth = {auth}
      id = 127.0.0.1{certs} }}
    remote {{ auth = {auth}
      id = 127.0.0.2 }}
    children {{ c {{ local_ts = {CHARON_TS}
      remote_ts = {OUR_TS}
      esp_proposals = {esp}
      rekey_time = {self._child_rekey}s
      mode = tunnel }} }}
  }}
}}
secrets {{ ike-1 {{ id-1 = 127.0.0.1
  id-2 = 127.0.0.2
  secret = "{psk}" }} }}
"""
        )
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
        self.swanctl("--load-all", "--noprompt")

    def swanctl(self, *args: str, timeout: float = 20) -> str:
        r = subprocess.run(
            ["ip", "netns", "exec", self.ns, "swanctl", *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise RuntimeError(f"swanctl {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r.stdout

    def swanctl_background(self, *args: str) -> subprocess.Popen[bytes]:
        """A swanctl command that waits for an exchange with us (the caller keeps driving, then waits)."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "swanctl", *args],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def initiate(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "swanctl", "--initiate", "--child", "c", "--timeout", "20"],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def list_sas(self) -> str:
        return self.swanctl("--list-sas")

    def ike_sas(self) -> list[str]:
        """``v2: #N, ESTABLISHED, IKEv2, ...`` lines."""
        return re.findall(r"^v2: #\d+, \S+, IKEv2.*$", self.list_sas(), re.MULTILINE)

    def installed_children(self) -> list[str]:
        return re.findall(r"^\s+c: #\d+, reqid \d+, INSTALLED, .*$", self.list_sas(), re.MULTILINE)
