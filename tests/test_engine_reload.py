"""The daemon's life cycle: sd_notify READY, SIGHUP reload applied whole or not at all (root)."""

from __future__ import annotations

import signal
import socket

import pytest

from tests.engine_helpers import A4, B4, start_daemon, tcp_echo, xfrm_store
from tests.netns import Lab, two_hosts, wait_until

pytestmark = pytest.mark.root

BLOCK_7000 = """[daemon]
assigned_policy = "blocker"
[[filterlist]]
name = "tcp 7000"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "any"
  protocol = "tcp"
  dstport = 7000
[[filteraction]]
name = "blk"
action = "block"
[[policy]]
name = "blocker"
activatedefaultrule = false
  [[policy.rule]]
  name = "no 7000"
  filterlist = "tcp 7000"
  filteraction = "blk"
"""


def test_ready_notification_and_sighup_reload(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    p = two_hosts(lab)
    notify_path = lab.scratch("notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    # Manual SAs and policies for a <-> b; the reload adds a filter policy blocking TCP 7000
    # (manual policies are looked at first, so the block applies to other addresses).
    store_a = xfrm_store("esp-gcm", "transport", False, A4, B4)
    da = start_daemon(lab, p.a, store_text=store_a)
    msg = listener.recv(4096).decode()
    assert "READY=1" in msg and "MAINPID=" in msg
    monkeypatch.delenv("NOTIFY_SOCKET")
    db = start_daemon(lab, p.b, store_text=xfrm_store("esp-gcm", "transport", False, B4, A4))
    assert p.a.ping(B4, count=3, interval=0.1).received == 3
    # A broken store: refused, the running configuration stays.
    da.store.write_text("[daemon]\nipsecexempt = 7\n")
    da.proc.proc.send_signal(signal.SIGHUP)
    da.proc.wait_output("reload refused", 10)
    assert "RELOADING=1" in listener.recv(4096).decode()
    assert "READY=1" in listener.recv(4096).decode()
    assert p.a.ping(B4, count=2, interval=0.1).received == 2
    # A good store adding a block filter: applied; the unchanged SAs keep their sequence numbers
    # (b's replay window would drop packets of a re-created SA).
    da.store.write_text(BLOCK_7000 + store_a.removeprefix("[daemon]\n"))
    da.proc.proc.send_signal(signal.SIGHUP)
    da.proc.wait_output("reloaded: policy 'blocker'", 10)
    assert p.a.ping(B4, count=2, interval=0.1).received == 2
    assert db.status()["router"]["unprotect_failed"] == 0
    # A new address is "me" too: the daemon recompiles when addresses change.
    p.a.run(["ip", "addr", "add", "198.51.100.1/24", "dev", p.link.a_ifname])
    p.b.run(["ip", "addr", "add", "198.51.100.2/24", "dev", p.link.b_ifname])
    da.proc.wait_output("addresses changed", 10)
    wait_until(
        lambda: "198.51.100.1" in p.a.run(["nft", "list", "chain", "inet", "ipsecd", "output"]).stdout, 10
    )
    tcp_echo(p.a, p.b, "198.51.100.2", port=7000, expect_ok=False)  # not covered by [xfrm]: blocked
    wait_until(lambda: da.status()["totals"]["blocked"] >= 1, 5, what="the block to be counted")
    tcp_echo(p.a, p.b, "198.51.100.2", port=7001, size=10_000)  # other ports: not captured
    listener.close()
