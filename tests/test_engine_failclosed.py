"""Fail closed: protected traffic never leaves in clear while the daemon is killed, stopped or
restarting; ``ipsecd --flush`` is the only way to lift the capture (root, network namespaces)."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from tests.engine_helpers import A4, B4, start_daemon, xfrm_store
from tests.netns import Lab, two_hosts, wait_until

pytestmark = pytest.mark.root


def test_sigkill_under_traffic_leaks_nothing_and_restart_resumes(lab: Lab) -> None:
    p = two_hosts(lab)
    store_a = xfrm_store("esp-gcm", "transport", False, A4, B4)
    da = start_daemon(lab, p.a, store_text=store_a)
    start_daemon(lab, p.b, store_text=xfrm_store("esp-gcm", "transport", False, B4, A4))
    assert p.a.ping(B4, count=2, interval=0.1).received == 2
    cap = p.a.capture(p.link.a_ifname)
    # Traffic throughout: 20 pings a second from a to b (ping keeps going through send errors).
    pinger = p.a.popen(["ping", "-n", "-i", "0.05", "-W", "1", "-w", "30", B4], name="pinger")
    time.sleep(0.5)
    os.killpg(da.proc.pid, signal.SIGKILL)
    da.proc.wait(5)
    time.sleep(1.5)  # the daemon is gone: the kernel must hold the line
    # The fail-closed objects outlived the process.
    assert "ipsecd0" in p.a.run(["ip", "-o", "link", "show"]).stdout
    assert "table inet ipsecd" in p.a.run(["nft", "list", "tables"]).stdout
    # Restart on the same store: reattaches to the TUN device, replaces the stale control socket,
    # and starts sequence numbers past the ones already sent (the peer's replay window).
    da2 = start_daemon(lab, p.a, store=da.store)
    wait_until(lambda: da2.status()["totals"]["protected"] >= 5, 10, what="traffic to resume")
    # A clean stop (SIGTERM) keeps the capture too.
    da2.proc.stop(signal.SIGTERM, grace=5)
    time.sleep(1.0)
    da3 = start_daemon(lab, p.a, store=da.store)
    wait_until(lambda: da3.status()["totals"]["protected"] >= 5, 10, what="traffic to resume again")
    pinger.stop(signal.SIGINT)
    cap.stop()
    assert cap.count("icmp") == 0, cap.lines("icmp")[:5]  # never a clear ICMP packet on the wire
    assert cap.count("esp") >= 20
    b_side = p.b.run(["nft", "list", "table", "inet", "ipsecd"]).stdout
    assert "drop" in b_side
    r = p.a.ping(B4, count=3, interval=0.1)
    assert r.received == 3
    st = da3.status()["router"]
    assert st["looped"] == 0 and st["unprotect_failed"] == 0


def test_flush_removes_everything(lab: Lab) -> None:
    p = two_hosts(lab)
    d = start_daemon(lab, p.a, store_text=xfrm_store("esp-gcm", "transport", False, A4, B4))
    d.proc.stop(signal.SIGTERM, grace=5)
    # Stopped: nothing reaches b in clear (the capture holds the packet, the daemon is gone).
    assert p.a.ping(B4, count=2, interval=0.1, wait=0.5).received == 0
    r = p.a.run([sys.executable, "-m", "ipsecd.daemon.main", "--flush"], check=False, env=_env())
    assert r.returncode == 0, r.stderr
    assert "nft table inet ipsecd" in r.stdout and "device ipsecd0" in r.stdout
    assert "ipsecd" not in p.a.run(["nft", "list", "tables"]).stdout
    assert "ipsecd0" not in p.a.run(["ip", "-o", "link", "show"]).stdout
    assert "1516" not in p.a.run(["ip", "rule"]).stdout
    assert p.a.ping(B4, count=2, interval=0.1).received == 2  # plain again: b runs no ipsecd
    r = p.a.run([sys.executable, "-m", "ipsecd.daemon.main", "--flush"], check=False, env=_env())
    assert r.returncode == 0 and "nothing to flush" in r.stdout


def _env() -> dict[str, str]:
    from tests.netns import REPO_ROOT

    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def test_flush_on_exit_option(lab: Lab) -> None:
    p = two_hosts(lab)
    store = xfrm_store("esp-gcm", "transport", False, A4, B4)
    d = start_daemon(lab, p.a, store_text=store, extra=("--flush-on-exit",))
    assert "table inet ipsecd" in p.a.run(["nft", "list", "tables"]).stdout
    assert d.proc.stop(signal.SIGTERM, grace=5) == 0
    assert "ipsecd" not in p.a.run(["nft", "list", "tables"]).stdout
    assert "ipsecd0" not in p.a.run(["ip", "-o", "link", "show"]).stdout
