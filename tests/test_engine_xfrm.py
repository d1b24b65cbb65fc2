"""``ipsecctl xfrm`` against running daemons: SAs and policies installed at run time (root)."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from ipsecd.daemon.control import ControlError
from tests.engine_helpers import A4, B4, Daemon, key, start_daemon, xfrm_config
from tests.netns import REPO_ROOT, Lab, two_hosts

pytestmark = pytest.mark.root


def ipsecctl(d: Daemon, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipsecd.cli.main", "--control", str(d.control), "xfrm", *words],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )


def test_runtime_manual_keying(lab: Lab) -> None:
    p = two_hosts(lab)
    da, db = start_daemon(lab, p.a), start_daemon(lab, p.b)
    # Nothing configured: nothing captured, plain traffic flows.
    assert p.a.ping(B4, count=1).received == 1
    for d, local, peer in ((da, A4, B4), (db, B4, A4)):
        states, policies = xfrm_config("esp-gcm", "transport", True, local, peer)
        for words in states:
            r = ipsecctl(d, "state", "add", *shlex.split(words))
            assert r.returncode == 0, r.stderr
        for words in policies:
            r = ipsecctl(d, "policy", "add", *shlex.split(words))
            assert r.returncode == 0, r.stderr
    cap = p.a.capture(p.link.a_ifname)
    assert p.a.ping(B4, count=3, interval=0.1).received == 3
    cap.stop()
    assert cap.count("icmp") == 0 and cap.count("udp port 4500") == 6
    # Listings never show keys, unless asked for by root.
    listing = ipsecctl(da, "state", "list")
    assert listing.returncode == 0 and "(hidden)" in listing.stdout
    assert key("k4096", 20) not in listing.stdout
    shown = da.call("xfrm", argv=["state", "list"], keys=True)["states"]
    assert {s["aead"]["key"] for s in shown} == {"0x" + key("k4096", 20), "0x" + key("k8192", 20)}
    assert {s["direction"] for s in shown} == {"in", "out"}
    out_sa = next(s for s in shown if s["direction"] == "out")
    assert out_sa["counters"]["packets_sent"] == 3
    assert len(da.call("xfrm", argv=["policy", "list"])["policies"]) == 2
    # Errors: bad words, duplicates, missing entries.
    with pytest.raises(ControlError) as err:
        da.call("xfrm", argv=["state", "add", "src", "192.0.2.1"])
    assert err.value.code == "invalid_args"
    with pytest.raises(ControlError) as err:
        da.call(
            "xfrm",
            argv=["state", "add", *shlex.split(xfrm_config("esp-gcm", "transport", True, A4, B4)[0][0])],
        )
    assert err.value.code == "conflict"
    with pytest.raises(ControlError) as err:
        da.call("xfrm", argv=["state", "del", "dst", B4, "proto", "esp", "spi", "0x9999"])
    assert err.value.code == "not_found"
    # Flushing the policies lifts the capture in the kernel too: plain traffic again.
    assert da.call("xfrm", argv=["policy", "flush"]) == {"ok": True, "count": 2}
    assert "mark set" not in p.a.run(["nft", "list", "chain", "inet", "ipsecd", "output"]).stdout
    assert da.call("xfrm", argv=["state", "del", "dst", B4, "proto", "esp", "spi", "0x1000"])["count"] == 1
    assert len(da.call("xfrm", argv=["state", "list"])["states"]) == 1


def test_dynamic_show_of_the_running_daemon(lab: Lab) -> None:
    """The monitor views (docs/monitor.md) are served by the engine and fed by the data path."""
    p = two_hosts(lab)
    from tests.engine_helpers import xfrm_store

    da = start_daemon(lab, p.a, store_text=xfrm_store("esp-gcm", "transport", False, A4, B4))
    start_daemon(lab, p.b, store_text=xfrm_store("esp-gcm", "transport", False, B4, A4))
    assert p.a.ping(B4, count=3, interval=0.1).received == 3
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ipsecd.cli.main",
            "--control",
            str(da.control),
            "--json",
            "dynamic",
            "show",
            "stats",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert r.returncode == 0, r.stderr
    import json
    import time

    time.sleep(0.6)  # the engine adds SA counter deltas on its 0.25 s tick
    qm = da.call("dynamic.show", what="stats")["stats"]["quick_mode"]
    assert qm["confidential_bytes_sent"] == qm["confidential_bytes_received"] == 3 * 84
    del json
