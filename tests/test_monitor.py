"""MonitorState, its control handlers and ``ipsecctl dynamic``/``monitor`` against the real
control server (tests/monitor_fake.py runs it with a fake engine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from monitor_fake import (
    AUTH_IN,
    ENC_IN,
    EXAMPLE_PSK,
    GCM_KEY,
    FakeClock,
    ctl,
    dynamic_context,
    fake_daemon,
)

from ipsecd.cli.dynamic import monitor_frame, run_monitor
from ipsecd.cli.dynamic_render import esp_sa_lines
from ipsecd.daemon.control import ControlError, PeerCred, Request
from ipsecd.daemon.monitor import (
    MM_STATS,
    QM_STATS,
    MonitorState,
    SaKeys,
    address_matches,
    parse_config_value,
)

SNAPSHOTS = Path(__file__).resolve().parent / "data" / "monitor"
ROOT_PEER = PeerCred(pid=1, uid=0, gid=0)
USER_PEER = PeerCred(pid=1, uid=65534, gid=65534)


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "control.sock"


def _request(command: str, args: dict[str, object], peer: PeerCred = ROOT_PEER) -> Request:
    return Request(id=1, command=command, args=args, peer=peer)  # type: ignore[arg-type]


# -- the state -----------------------------------------------------------------------------------
def test_counter_names_are_the_ip_security_monitor_ones() -> None:
    assert len(MM_STATS) == 23 and len(QM_STATS) == 21
    assert MM_STATS["invalid_cookies_received"] == "Invalid Cookies Received"
    assert QM_STATS["tunnel_bytes_sent"] == "Bytes Sent In Tunnels"


def test_snapshot_is_json_and_has_no_keys(sock: Path) -> None:
    with fake_daemon(sock) as (state, _):
        snap = state.snapshot()
    text = json.dumps(snap)
    assert json.loads(text) == snap
    for secret in (ENC_IN, AUTH_IN, GCM_KEY):
        assert secret.hex() not in text
    assert EXAMPLE_PSK not in text
    assert repr(state.keys_of(10)) == "SaKeys(<redacted>)"
    assert set(snap) == {
        "uptime_seconds",
        "time",
        "config",
        "mmfilter",
        "qmfilter",
        "mmpolicy",
        "qmpolicy",
        "rule",
        "mmsas",
        "qmsas",
        "stats",
    }


def test_lifetime_left_follows_the_clock() -> None:
    clock = FakeClock(100.0)
    state = MonitorState(clock)
    from monitor_fake import FakeEngine

    FakeEngine(state).fill()
    assert state.mmsa_views()[0]["lifetime_left"] == 27000
    clock.now += 26999.5
    assert state.mmsa_views()[0]["lifetime_left"] == 0
    clock.now += 10
    assert state.mmsa_views()[0]["lifetime_left"] == 0


def test_derived_and_counted_statistics() -> None:
    state = MonitorState(FakeClock())
    from monitor_fake import FakeEngine

    FakeEngine(state).fill()
    stats = state.stats_view()
    assert stats["quick_mode"]["active_sa"] == 2
    assert stats["quick_mode"]["active_tunnels"] == 1
    assert stats["main_mode"]["oakley_main_mode"] == 2
    with pytest.raises(KeyError):
        state.count_qm("active_sa")  # derived from the tables, not counted
    with pytest.raises(KeyError):
        state.count_mm("no_such_counter")
    state.remove_qm_sa(10)
    assert state.keys_of(10) is None
    assert state.stats_view()["quick_mode"]["active_tunnels"] == 0


def test_datapath_counters_add_up() -> None:
    from ipsecd.daemon.monitor import DATAPATH_STATS
    from ipsecd.datapath.counters import Counters

    assert set(DATAPATH_STATS) == set(Counters.windows_names())  # every Windows-named data path counter
    state = MonitorState(FakeClock())
    delta = Counters(
        confidential_bytes_sent=100, tunnel_bytes_received=7, bad_spi_packets=2, malformed_packets=5
    )
    state.add_datapath_counters(delta)
    state.add_datapath_counters(delta)
    qm = state.stats_view()["quick_mode"]
    assert (qm["confidential_bytes_sent"], qm["tunnel_bytes_received"], qm["bad_spi_packets"]) == (200, 14, 4)
    assert qm["packets_not_decrypted"] == 0


def test_address_matching() -> None:
    assert address_matches("any", "10.0.0.0/8")
    assert address_matches("10.1.2.3", "10.0.0.0/8")
    assert address_matches("10.0.0.0/8", "10.1.2.3")
    assert address_matches("10.0.0.5", "10.0.0.1-10.0.0.9")
    assert not address_matches("10.0.0.10", "10.0.0.1-10.0.0.9")
    assert not address_matches("10.0.0.1", "2001:db8::/32")
    assert address_matches("me", "me") and not address_matches("10.0.0.1", "me")


def test_config_values() -> None:
    assert parse_config_value("ipsecexempt", "2") == 2
    assert parse_config_value("IKELOGGING", "yes") is True
    for key, value in (("ipsecexempt", "4"), ("strongcrlcheck", "x"), ("ipsecloginterval", 30), ("bogus", 1)):
        with pytest.raises(ControlError) as info:
            parse_config_value(key, value)  # type: ignore[arg-type]
        assert info.value.code == "invalid_args"
    with pytest.raises(ControlError, match="boot-time"):
        parse_config_value("bootmode", "stateful")


# -- handlers ------------------------------------------------------------------------------------
def test_keys_only_for_root(sock: Path) -> None:
    with fake_daemon(sock) as (state, _):
        with pytest.raises(ControlError) as info:
            state.handle_show(_request("dynamic.show", {"what": "qmsas", "keys": True}, USER_PEER))
        assert info.value.code == "permission_denied"
        with pytest.raises(ControlError):
            state.handle_dump(_request("dump", {}, USER_PEER))
        # A non-root peer still sees the SAs, without keys.
        rows = state.handle_show(_request("dynamic.show", {"what": "qmsas"}, USER_PEER))
        assert "keys" not in rows and len(rows["qmsas"]) == 2
        got = state.handle_show(_request("dynamic.show", {"what": "qmsas", "keys": True}))
        assert {k["spi"] for k in got["keys"]} == {"0xc0ffee01", "0x0badf00d", "0x00001001", "0x00002002"}


# A client run as another user: one request per argument, the answers as a JSON list.
_CHILD = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rwb")
answers = []
for i, req in enumerate(sys.argv[2:]):
    cmd, _, args = req.partition(" ")
    f.write(json.dumps({"id": i, "command": cmd, "args": json.loads(args or "{}")}).encode() + b"\\n")
    f.flush()
    answers.append(json.loads(f.readline()))
print(json.dumps(answers))
"""


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user (CI runs as root)")
def test_keys_and_dump_refused_to_a_group_member(tmp_path: Path) -> None:
    """Through the real socket: a non-root member of the control group sees SAs, not keys."""
    import grp
    import shutil
    import subprocess
    import tempfile

    nogroup = grp.getgrnam("nogroup").gr_gid
    shared = Path(tempfile.mkdtemp(prefix="ipsecd-mon-"))
    shared.chmod(0o755)
    try:
        sock = shared / "control.sock"
        with fake_daemon(sock, group=nogroup):
            r = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", _CHILD, str(sock), 'dynamic.show {"what": "qmsas"}',
                 'dynamic.show {"what": "qmsas", "keys": true}', "dump"],
                user=65534, group=nogroup, extra_groups=[], capture_output=True, text=True, timeout=30, cwd="/",
            )  # fmt: skip
        assert r.returncode == 0, r.stderr
        plain, keys, dump = json.loads(r.stdout)
        assert plain["ok"] and len(plain["result"]["qmsas"]) == 2
        assert keys["error"]["code"] == "permission_denied" and "keys" not in keys
        assert dump["error"]["code"] == "permission_denied"
        assert ENC_IN.hex() not in r.stdout and EXAMPLE_PSK not in r.stdout
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.parametrize(
    "args",
    [
        {"what": "nothing"},
        {"what": "mmsas", "srcaddr": "not an address"},
        {"what": "mmsas", "srcport": -1},
        {"what": "mmsas", "keys": True},
        {"what": "qmsas", "bogus": 1},
    ],
)
def test_show_refuses_bad_arguments(sock: Path, args: dict[str, object]) -> None:
    with fake_daemon(sock) as (state, _):
        with pytest.raises(ControlError) as info:
            state.handle_show(_request("dynamic.show", args))
        assert info.value.code == "invalid_args"


def test_set_config_through_the_engine(sock: Path) -> None:
    with fake_daemon(sock) as (state, engine):
        assert ctl(sock, "dynamic", "set", "config", "property=ipsecexempt", "value=0").rc == 0
        assert engine.configs[-1].ipsecexempt == 0 and state.config.ipsecexempt == 0
        # The engine refuses: nothing changes, the CLI shows the engine's reason.
        r = ctl(sock, "dynamic", "set", "config", "property=ikelogging", "value=1")
        assert r.rc == 1 and "conflict" in r.err and not state.config.ikelogging
        r = ctl(sock, "dynamic", "set", "config", "property=ipsecexempt", "value=9")
        assert r.rc == 1 and "out of range" in r.err
        r = ctl(sock, "dynamic", "set", "config", "property=bootmode", "value=1")
        assert r.rc == 2 and "property must be one of" in r.err
        r = ctl(sock, "--json", "dynamic", "show", "config")
        assert json.loads(r.out)["config"]["ipsecexempt"] == 0


def test_delete_calls_the_engine(sock: Path) -> None:
    with fake_daemon(sock) as (state, engine):
        r = ctl(sock, "dynamic", "delete", "qmsas", "srcaddr=10.1.20.5")
        assert r.rc == 0 and r.out == "deleted 1 quick mode SA: [11]\n"
        assert engine.deleted == [("qmsas", [11])]
        assert [s["id"] for s in state.qmsa_views()] == [10]
        r = ctl(sock, "--json", "dynamic", "delete", "mmsas", "dstaddr=203.0.113.9")
        assert json.loads(r.out) == {"what": "mmsas", "deleted": []}
        assert engine.deleted == [("qmsas", [11])]  # nothing matched: the engine was not called
        r = ctl(sock, "dynamic", "delete", "mmsas")
        assert r.out == "deleted 2 main mode SAs: [1, 2]\n" and state.mmsa_views() == []


def test_delete_without_engine_callback(sock: Path) -> None:
    with fake_daemon(sock) as (state, _):
        state.on_delete = None
        r = ctl(sock, "dynamic", "delete", "mmsas")
        assert r.rc == 1 and "not_available" in r.err and len(state.mmsa_views()) == 2


# -- ipsecctl dynamic ----------------------------------------------------------------------------
SNAPSHOT_COMMANDS = {
    "stats": "dynamic show stats",
    "stats_ike": "dynamic show stats type=ike",
    "mmsas": "dynamic show mmsas",
    "qmsas": "dynamic show qmsas",
    "qmsas_table": "dynamic show qmsas format=table",
    "mmfilter": "dynamic show mmfilter",
    "qmfilter_specific": "dynamic show qmfilter type=specific srcaddr=10.1.0.0 srcmask=255.255.0.0",
    "mmpolicy": "dynamic show mmpolicy",
    "qmpolicy": "dynamic show qmpolicy name=all",
    "rule_tunnel": "dynamic show rule type=tunnel",
    "config": "dynamic show config",
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT_COMMANDS))
def test_netsh_style_output(sock: Path, name: str) -> None:
    with fake_daemon(sock):
        r = ctl(sock, *SNAPSHOT_COMMANDS[name].split())
    assert r.rc == 0, r.err
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("IPSECD_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(r.out)
    assert r.out == path.read_text(), f"output of {SNAPSHOT_COMMANDS[name]!r} changed"


def test_show_all_has_every_section(sock: Path) -> None:
    with fake_daemon(sock):
        r = ctl(sock, "dynamic", "show", "all")
        j = json.loads(ctl(sock, "--json", "dynamic", "show", "all").out)
    for title in ("System configuration", "Main Mode Policies", "Quick Mode Policies", "Main Mode Filters",
                  "Quick Mode Filters", "Rules", "Main Mode SAs", "Quick Mode SAs", "IKE Main Mode Statistics"):  # fmt: skip
        assert title in r.out
    assert j["config"]["policy"] == "Branch office" and len(j["mmsas"]) == 2


def test_filters_of_show(sock: Path) -> None:
    with fake_daemon(sock):
        sas = json.loads(ctl(sock, "--json", "dynamic", "show", "mmsas", "srcaddr=198.51.100.1").out)["mmsas"]
        assert [s["id"] for s in sas] == [1]
        both = ctl(sock, "--json", "dynamic", "show", "mmsas", "srcaddr=192.0.2.10", "dstaddr=198.51.100.1")
        assert [s["id"] for s in json.loads(both.out)["mmsas"]] == [1]
        # Values overlap: an SA for any protocol carries TCP too (and UDP; the TCP one does not).
        qm = json.loads(ctl(sock, "--json", "dynamic", "show", "qmsas", "protocol=tcp").out)["qmsas"]
        assert [s["id"] for s in qm] == [10, 11]
        qm = json.loads(ctl(sock, "--json", "dynamic", "show", "qmsas", "protocol=udp").out)["qmsas"]
        assert [s["id"] for s in qm] == [10]
        flt = json.loads(
            ctl(sock, "--json", "dynamic", "show", "qmfilter", "type=generic", "dstport=1433").out
        )
        assert {f["rule"] for f in flt["qmfilter"]} >= {"Servers"}
        assert all(f["dstport"] in (0, 1433) and f["type"] == "generic" for f in flt["qmfilter"])
        mm = json.loads(ctl(sock, "--json", "dynamic", "show", "mmfilter", "type=specific").out)["mmfilter"]
        assert mm and all(f["type"] == "specific" and "protocol" not in f for f in mm)
        assert len({(f["direction"], f["srcaddr"], f["dstaddr"]) for f in mm}) == len(mm)


def test_resolvedns_uses_the_resolver(sock: Path) -> None:
    with fake_daemon(sock):
        ctx, out = dynamic_context(sock, resolver=lambda a: {"198.51.100.1": "head.example"}.get(a, a))
        from ipsecd.cli.dynamic import cmd_show

        assert cmd_show(ctx, ["mmsas", "resolvedns=yes"]) == 0
    addresses = [
        line.split(":", 1)[1].strip() for line in out.getvalue().splitlines() if "IP Address" in line
    ]
    assert addresses == ["192.0.2.10", "head.example", "192.0.2.10", "10.1.20.5"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["dynamic", "show"], "missing object"),
        (["dynamic", "show", "mmsas", "bogus=1"], "unknown parameter"),
        (["dynamic", "show", "mmfilter", "type=tunnel"], "type must be"),
        (["dynamic", "show", "qmsas", "format=wide"], "format"),
        (["dynamic", "show", "mmsas", "srcmask=255.0.0.0"], "srcmask needs srcaddr"),
        (["dynamic", "show", "mmsas", "srcaddr=10.0.0.1", "srcmask=255.0.0.0"], "host bits"),
        (["dynamic", "frob"], "unknown command"),
        (["--config", "/tmp/x", "dynamic", "show", "stats"], "--config is not used"),
        (["--count", "0", "monitor"], "--count"),
        (["static", "show", "all"], "--control: not used by static"),
    ],
)
def test_usage_errors(sock: Path, argv: list[str], message: str) -> None:
    r = ctl(sock, *argv)
    assert r.rc == 2 and message in r.err, r.err


def test_daemon_not_running(tmp_path: Path) -> None:
    r = ctl(tmp_path / "none.sock", "dynamic", "show", "stats")
    assert r.rc == 1 and "cannot reach the daemon" in r.err and "is ipsecd running?" in r.err
    assert r.out == ""


# -- Wireshark key export ------------------------------------------------------------------------
def test_keys_export_in_wireshark_format(sock: Path) -> None:
    with fake_daemon(sock):
        ctx, out = dynamic_context(sock, is_root=lambda: True)
        from ipsecd.cli.dynamic import cmd_show

        assert cmd_show(ctx, ["qmsas", "keys=yes"]) == 0
        lines = out.getvalue().splitlines()
        ctx2, _ = dynamic_context(sock, is_root=lambda: False)
        with pytest.raises(Exception, match="only root"):
            cmd_show(ctx2, ["qmsas", "keys=yes"])
    assert lines[0].startswith("#")
    rows = [line.split('","') for line in lines[1:]]
    assert all(len(r) == 8 for r in rows)
    first = lines[1]
    assert first == (
        f'"IPv4","198.51.100.1","192.0.2.10","0xc0ffee01","AES-CBC [RFC3602]","0x{ENC_IN.hex()}",'
        f'"HMAC-SHA-256-128 [RFC4868]","0x{AUTH_IN.hex()}"'
    )
    assert f'"AES-GCM with 16 octet ICV [RFC4106]","0x{GCM_KEY.hex()}","NULL",""' in lines[3]


def test_keys_export_comments_what_wireshark_cannot_decode() -> None:
    base = {"direction": "in", "src": "2001:db8::1", "dst": "2001:db8::2", "enc_key": "00", "auth_key": "11"}
    lines = esp_sa_lines(
        [
            {**base, "spi": "0x1", "esp_encryption": None, "esp_integrity": None, "ah_integrity": "SHA1"},
            {**base, "spi": "0x2", "esp_encryption": "CHACHA20POLY1305", "esp_integrity": None},
            {**base, "spi": "0x3", "esp_encryption": "3DES", "esp_integrity": "SHA1"},
        ]
    )
    assert lines[1].startswith("# SA 0x1") and "AH only" in lines[1]
    assert lines[2].startswith("# SA 0x2") and "no Wireshark ESP decoder" in lines[2]
    assert lines[3].startswith('"IPv6","2001:db8::1","2001:db8::2","0x3","TripleDES-CBC [RFC2451]"')


def test_sa_keys_never_in_repr() -> None:
    keys = SaKeys(b"\x01" * 16, b"\x02" * 20, b"\x03" * 16, b"\x04" * 20)
    assert "01" not in repr(keys) and "\\x01" not in repr(keys) and "\\x01" not in str(keys)


# -- monitor -------------------------------------------------------------------------------------
def test_monitor_two_frames(sock: Path) -> None:
    with fake_daemon(sock) as (state, _):
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            state.update_qm_traffic(10, bytes_in=3 << 20, bytes_out=0, packets_in=1, packets_out=0)

        ctx, out = dynamic_context(sock, interval=5.0, count=2, sleep=sleep)
        assert run_monitor(ctx, []) == 0
    frames = out.getvalue().split("\x1b[H\x1b[2J")[1:]
    assert len(frames) == 2 and slept == [5.0]  # no sleep after the last frame
    assert "#1" in frames[0] and "#2" in frames[1]
    assert "1.0MiB/512.0KiB" in frames[0] and "3.0MiB/0B" in frames[1]
    assert "198.51.100.1" in frames[0] and "Negotiation failures: 1" in frames[0]


def test_monitor_ctrl_c_exits_cleanly(sock: Path) -> None:
    with fake_daemon(sock):

        def interrupt(seconds: float) -> None:
            raise KeyboardInterrupt

        ctx, out = dynamic_context(sock, sleep=interrupt)
        assert run_monitor(ctx, []) == 0
    assert out.getvalue().count("\x1b[2J") == 1


def test_monitor_cli_options(sock: Path) -> None:
    with fake_daemon(sock):
        r = ctl(sock, "--interval", "0.01", "--count", "2", "monitor")
    assert r.rc == 0 and r.out.count("\x1b[H\x1b[2J") == 2


def test_monitor_frame_with_nothing() -> None:
    state = MonitorState(FakeClock())
    lines = monitor_frame(state.snapshot(), 1, 2.0)
    assert "policy: none" in lines[0] and "Main mode SAs: 0" in lines[2]


def test_monitor_in_tmux(sock: Path, tmp_path: Path) -> None:
    """Drive ``ipsecctl monitor`` in a real terminal (tmux) and read the screen."""
    import shutil
    import subprocess
    import sys
    import time

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    session = f"ipsecd-monitor-{os.getpid()}"
    repo = Path(__file__).resolve().parent.parent
    command = f"cd {repo} && {sys.executable} -m ipsecd.cli.main --control {sock} --interval 0.2 monitor"
    with fake_daemon(sock):
        env = {**os.environ, "TMUX": ""}
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "40", command],
            check=True,
            env=env,
        )
        try:
            screen = ""
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and "#3" not in screen:
                time.sleep(0.2)
                screen = subprocess.run(
                    ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, env=env
                ).stdout
            assert "#3" in screen and "IP Security Monitor" in screen
            assert screen.count("IP Security Monitor") == 1  # redrawn in place, not scrolled
            subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True, env=env)
            deadline = time.monotonic() + 10
            alive = True
            while time.monotonic() < deadline and alive:
                time.sleep(0.2)
                alive = (
                    subprocess.run(
                        ["tmux", "has-session", "-t", session], env=env, capture_output=True
                    ).returncode
                    == 0
                )
                if alive:
                    panes = subprocess.run(
                        ["tmux", "list-panes", "-t", session, "-F", "#{pane_current_command}"],
                        capture_output=True, text=True, env=env,
                    ).stdout  # fmt: skip
                    alive = "python" in panes
            assert not alive, "monitor did not exit on Ctrl-C"
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, env=env)
