"""ipsecd --fastpath: two daemons carry a manual tunnel-mode ESP-in-UDP SA pair on the fast path.

Root: two namespaces (tests/netns.py), manual AES-128-GCM SAs from the store's [xfrm] table (and,
in the second case, installed at run time with the xfrm control command, as ``ipsecctl xfrm``
does). Ping and TCP both ways; tcpdump on the veth sees only UDP 4500 and never the marker; the
daemons' status shows the fast path's counters carried the packets, not the Python router.
"""

from __future__ import annotations

from unittest.mock import ANY

import pytest

from ipsecd.daemon import fastpath_glue
from ipsecd.datapath import fastpath
from ipsecd.datapath.sadb import SADatabase
from tests.engine_helpers import (
    A4,
    B4,
    INNER_A,
    INNER_B,
    MARKER,
    Daemon,
    start_daemon,
    tcp_echo,
    xfrm_config,
    xfrm_store,
)
from tests.netns import Lab, Pair, two_hosts


def test_unavailable_extension_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: without the extension the glue raises, so --fastpath never starts half-way."""
    monkeypatch.setattr(fastpath, "AVAILABLE", False)
    monkeypatch.setattr(fastpath, "UNAVAILABLE_REASON", "not built (test)")
    with pytest.raises(fastpath_glue.FastPathError, match="not built"):
        fastpath_glue.FastPathGlue(SADatabase(lambda: []), 0, 0)


def _traffic(p: Pair, da: Daemon, db: Daemon) -> None:
    cap = p.a.capture(p.link.a_ifname)
    ra = p.a.ping(INNER_B, count=3, interval=0.1, src=INNER_A)
    rb = p.b.ping(INNER_A, count=3, interval=0.1, src=INNER_B)
    assert (ra.received, rb.received) == (3, 3), ra.output + rb.output
    tcp_echo(p.a, p.b, INNER_B, INNER_A)
    tcp_echo(p.b, p.a, INNER_A, INNER_B, port=7001)
    cap.stop()
    assert cap.count("icmp or tcp") == 0
    assert cap.count(f"host {INNER_A} or host {INNER_B}") == 0
    assert cap.count("esp") == 0
    assert not any(MARKER in frame for frame in cap.packets())
    assert cap.count("udp port 4500") >= 10
    other = cap.lines("ip and not udp port 4500")  # (IPv6 link-local chatter is not ours)
    assert other == [], other
    for d in (da, db):
        st = d.status()
        fp = st["fastpath"]
        assert fp is not None and "vnet_hdr" in fp["features"]
        stats = fp["stats"]
        assert len(fp["sas"]) == 2
        # The manual policy's PROTECT filter first, then the exemptions' SLOW filters.
        table = fp["filter_table"]
        assert [f["action"] for f in table].count("PROTECT") == 1 and table[0]["action"] == "PROTECT"
        assert all(f["action"] == "SLOW" for f in table[1:]), table
        sent = sum(sa["counters"]["packets_sent"] for sa in fp["sas"])
        received = sum(sa["counters"]["packets_received"] for sa in fp["sas"])
        assert sent >= 50 and received >= 50, fp  # 200 kB of TCP each way + pings
        assert stats["bad_spi_packets"] == 0, stats
        router = st["router"]  # the Python router protected and delivered nothing of it
        assert router["protected"] == 0 and router["delivered"] == 0 and router["sent_clear"] == 0


@pytest.mark.root
def test_fastpath_store_sas(lab: Lab) -> None:
    p = two_hosts(lab)
    p.a.run(["ip", "addr", "add", f"{INNER_A}/32", "dev", "lo"])
    p.b.run(["ip", "addr", "add", f"{INNER_B}/32", "dev", "lo"])
    da = start_daemon(
        lab, p.a, store_text=xfrm_store("esp-gcm", "tunnel", True, A4, B4), extra=("--fastpath",)
    )
    db = start_daemon(
        lab, p.b, store_text=xfrm_store("esp-gcm", "tunnel", True, B4, A4), extra=("--fastpath",)
    )
    assert "fast path: vnet_hdr" in da.proc.output()
    _traffic(p, da, db)


@pytest.mark.root
def test_fastpath_runtime_xfrm(lab: Lab) -> None:
    p = two_hosts(lab)
    daemons = []
    for host, inner, me, peer in ((p.a, INNER_A, A4, B4), (p.b, INNER_B, B4, A4)):
        host.run(["ip", "addr", "add", f"{inner}/32", "dev", "lo"])
        d = start_daemon(lab, host, extra=("--fastpath",))
        states, policies = xfrm_config("esp-gcm", "tunnel", True, me, peer)
        for words in states:
            d.call("xfrm", argv=["state", "add", *words.split()])
        for words in policies:
            d.call("xfrm", argv=["policy", "add", *words.split()])
        daemons.append(d)
    _traffic(p, daemons[0], daemons[1])


_NO_EXTENSION = (
    "import sys; sys.modules['ipsecd.datapath._fastpath'] = None  # the import fails: not built\n"
    "from ipsecd.daemon.main import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.root
def test_fastpath_unavailable_daemon_refuses(lab: Lab) -> None:
    """--fastpath without the extension: exit status 1 with a clear error, and the capture (nft
    table) stays in place as for any start-up failure: nothing goes out in clear."""
    p = two_hosts(lab)
    store = lab.scratch("a-store.toml")
    store.write_text(xfrm_store("esp-gcm", "tunnel", True, A4, B4))
    store.chmod(0o600)
    argv = ["-c", _NO_EXTENSION, "--config", str(store), "--control", str(lab.scratch("a.sock"))]
    argv += ["--foreground", "--state-dir", str(lab.scratch("a-state")), "--fastpath"]
    proc = p.a.popen_python(argv, name="ipsecd-nofp")
    assert proc.wait(20) == 1
    assert "cannot set up the data path: --fastpath:" in proc.output()
    assert "ready" not in proc.output()
    p.a.run(["nft", "list", "table", "inet", "ipsecd"])  # raises if the table is gone


def test_default_is_the_fast_path_where_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """No option: on when the extension is there (and --backend is not python); otherwise the
    Python router, and the reason is said. --fastpath / --no-fastpath decide alone."""
    from ipsecd.daemon import main as daemon_main

    assert daemon_main.resolve_fastpath(None, "auto") == (
        fastpath.AVAILABLE,
        None if fastpath.AVAILABLE else ANY,
    )
    assert daemon_main.resolve_fastpath(None, "python") == (False, None)
    assert daemon_main.resolve_fastpath("on", "python") == (True, None)
    assert daemon_main.resolve_fastpath("off", "auto") == (False, None)
    monkeypatch.setattr(fastpath, "AVAILABLE", False)
    monkeypatch.setattr(fastpath, "UNAVAILABLE_REASON", "not built (test)")
    on, note = daemon_main.resolve_fastpath(None, "native")
    assert not on and note is not None and "not built (test)" in note and "Python router" in note
    args = daemon_main.build_parser().parse_args(["--config", "x", "--no-fastpath"])
    assert args.fastpath == "off"
    with pytest.raises(SystemExit):  # one or the other
        daemon_main.build_parser().parse_args(["--config", "x", "--fastpath", "--no-fastpath"])
