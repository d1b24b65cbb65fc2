"""The namespace harness itself: links, NAT, capture, iperf3, and cleanup on failure."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import netns

REPO = Path(__file__).resolve().parent.parent


def test_parse_ping_counts_loss_and_rtts() -> None:
    out = (
        "64 bytes from 192.0.2.2: icmp_seq=1 ttl=64 time=0.051 ms\n"
        "64 bytes from 192.0.2.2: icmp_seq=3 ttl=64 time=0.120 ms\n"
        "--- 192.0.2.2 ping statistics ---\n"
        "3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\n"
    )
    r = netns.parse_ping(out)
    assert (r.transmitted, r.received, r.rtts_ms) == (3, 2, (0.051, 0.12))
    assert r.loss == pytest.approx(1 / 3)
    with pytest.raises(netns.HarnessError):
        netns.parse_ping("ping: connect: Network is unreachable\n")


@pytest.mark.root
def test_two_hosts_ping_each_other_v4_and_v6(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    assert len(p.link.a_ifname) <= 15 and p.a.ns.startswith(netns.PREFIX)
    for src, dst in ((p.a, "192.0.2.2"), (p.b, "192.0.2.1"), (p.a, "2001:db8::2"), (p.b, "2001:db8::1")):
        r = src.ping(dst, count=2, interval=0.05)
        assert r.loss == 0.0, r.output
        assert len(r.rtts_ms) == 2
    # An address nobody has: all lost, and the ping is bounded in time.
    r = p.a.ping("192.0.2.99", count=2, interval=0.05, wait=0.3)
    assert r.received == 0 and r.loss == 1.0


@pytest.mark.root
def test_capture_counts_only_matching_packets(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    with p.b.capture(p.link.b_ifname, "icmp") as cap:
        assert p.a.ping("192.0.2.2", count=3, interval=0.05).received == 3
    assert cap.count("icmp[icmptype] == icmp-echo") == 3
    assert cap.count("icmp[icmptype] == icmp-echoreply") == 3
    assert cap.count("udp") == 0
    frames = cap.packets()
    assert len(frames) == 6 and all(f[12:14] == b"\x08\x00" for f in frames)  # Ethernet, IPv4


@pytest.mark.root
def test_nat_router_rewrites_the_source(lab: netns.Lab) -> None:
    t = netns.nat_topology(lab)
    with t.right.capture(t.outside.b_ifname, "icmp") as cap:
        assert t.left.ping("198.51.100.2", count=2, interval=0.05).loss == 0.0
    echoes = cap.lines("icmp[icmptype] == icmp-echo")
    assert len(echoes) == 2
    assert all(f"{t.router_public} > 198.51.100.2" in ln for ln in echoes), echoes
    assert cap.count("src host 10.0.1.2") == 0
    # The right host has no route back to 10.0.1.0/24: without the NAT the ping would fail.
    assert "10.0.1." not in t.right.run("ip route").stdout


@pytest.mark.root
def test_iperf3_reports_throughput(lab: netns.Lab) -> None:
    p = netns.two_hosts(lab)
    p.b.iperf3_server(bind="192.0.2.2")
    r = p.a.iperf3_client("192.0.2.2", seconds=1)
    assert r.sent_bps > 1e6 and r.received_bps > 1e6
    assert r.retransmits is not None and r.lost_percent is None  # TCP
    p.b.iperf3_server(bind="192.0.2.2")
    u = p.a.iperf3_client("192.0.2.2", seconds=1, udp_rate="20M", extra=["-l", "1000"])
    assert u.retransmits is None and u.lost_percent is not None  # UDP, whatever iperf3 version
    assert 5e6 < u.received_bps < 40e6, u


def test_parse_iperf3_udp_with_sum_sent() -> None:
    """iperf3 3.11+ writes sum_sent and sum_received for UDP too: still read as UDP, received side."""
    doc = {
        "start": {"test_start": {"protocol": "UDP"}},
        "end": {
            "sum": {"bits_per_second": 9e8, "lost_percent": 2.5},
            "sum_sent": {"bits_per_second": 1e9},
            "sum_received": {"bits_per_second": 9e8, "lost_percent": 2.5},
        },
    }
    r = netns.parse_iperf3(json.dumps(doc))
    assert (r.sent_bps, r.received_bps, r.retransmits, r.lost_percent) == (1e9, 9e8, None, 2.5)


@pytest.mark.root
def test_cleanup_after_a_failing_body_leaves_nothing() -> None:
    if not netns.is_root():
        pytest.skip("needs root")
    names: list[str] = []
    pids: list[int] = []
    workdir: Path | None = None
    with pytest.raises(ZeroDivisionError), netns.Lab() as lb:
        workdir = lb.workdir
        p = netns.two_hosts(lb)
        names += [p.a.ns, p.b.ns]
        sleeper = p.a.popen(["sleep", "300"], name="sleep")
        pids.append(sleeper.pid)
        # A process started outside the lab's tracking (double fork) is still killed via the namespace.
        p.b.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
        pids += netns._ns_pids(p.b.ns)
        assert len(pids) == 2
        _ = 1 / 0
    present = set(netns.our_namespaces())
    assert not present & set(names)
    assert not [pid for pid in pids if netns.pid_alive(pid)]
    assert workdir is not None and not workdir.exists()


@pytest.mark.root
def test_sweep_removes_namespaces_of_dead_runs(lab: netns.Lab) -> None:
    mine = lab.host("mine")  # a lab open in this process: must survive the sweep
    # A namespace named as if created by a process that no longer exists (pid beyond pid_max),
    # one of a live process (pid 1), and one of this process but of no open lab.
    # (Random tokens: parallel runs of this test must not collide; a parallel run's sweep may
    # remove our stale namespace first, so check that it is gone, not who removed it.)
    tok = lambda: secrets.token_hex(3)  # noqa: E731
    stale = f"{netns.PREFIX}4199999-{tok()}-x"
    live = f"{netns.PREFIX}1-{tok()}-x"
    orphan = f"{netns.PREFIX}{os.getpid()}-{tok()}-x"
    for ns in (stale, live, orphan):
        netns._run(["ip", "netns", "add", ns], timeout=10)
    try:
        removed = netns.sweep_leftovers()
        assert orphan in removed and live not in removed and mine.ns not in removed
        left = netns.our_namespaces()
        assert stale not in left and orphan not in left and live in left and mine.ns in left
    finally:
        for ns in (stale, live, orphan):
            netns.delete_namespace(ns)


@pytest.mark.root
def test_background_stop_is_bounded(lab: netns.Lab) -> None:
    h = lab.host("h")
    py = h.popen_python(["-c", "import ipsecd, os; print(ipsecd.__file__, os.listdir('/sys/class/net'))"])
    assert py.wait(10) == 0
    assert str(REPO / "ipsecd") in py.output() and "['lo']" in py.output()  # this checkout, in the namespace
    # A process that ignores SIGTERM is killed after the grace period.
    bg = h.popen(["sh", "-c", "trap '' TERM; echo ready; sleep 300"], name="stubborn")
    bg.wait_output("ready", 5)
    rc = bg.stop(signal.SIGTERM, grace=0.3)
    assert rc == -signal.SIGKILL
    with pytest.raises(netns.HarnessError):
        netns.wait_until(lambda: False, 0.1, what="nothing")


_INTERRUPTED_RUN = """
import signal, time
from tests import netns
# A shell without job control starts background jobs with SIGINT ignored: undo that here.
signal.signal(signal.SIGINT, signal.default_int_handler)
with netns.Lab() as lab:
    p = netns.two_hosts(lab)
    p.a.popen(["sleep", "300"], name="sleep")
    print(p.a.ns, p.b.ns, lab.workdir, flush=True)
    time.sleep(30)
"""


@pytest.mark.root
def test_ctrl_c_in_another_process_cleans_up() -> None:
    if not netns.is_root():
        pytest.skip("needs root")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_RUN],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()  # printed once the lab is built
        assert len(line) == 3, line
        assert set(line[:2]) <= set(netns.our_namespaces())
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert not set(line[:2]) & set(netns.our_namespaces())
    assert not Path(line[2]).exists()
