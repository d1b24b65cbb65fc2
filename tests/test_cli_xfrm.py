"""ipsecctl xfrm: against the real control server (asyncio, in a thread) with a stub engine, and
against the store (--store, --persist)."""

from __future__ import annotations

import asyncio
import io
import json
import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ipsecd.cli.main import run
from ipsecd.daemon.control import ControlError, ControlServer, Request
from ipsecd.policy.manual import (
    ManualError,
    ManualPolicy,
    ManualState,
    PolicyId,
    StateId,
    parse_xfrm_command,
    policy_to_json,
    state_to_json,
)
from ipsecd.policy.store import load_store

KEY = "a5" * 20
ADD = f"state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel aead 'rfc4106(gcm(aes))' 0x{KEY} 128"
ADD2 = ADD.replace("0x1000", "0x1001")
POLICY = "policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel"


class StubEngine:
    """What the daemon's xfrm handler does, in memory, with the parser under test."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.states: dict[object, ManualState] = {}
        self.policies: dict[object, ManualPolicy] = {}
        self.reply: Any = None  # when set, returned as is (malformed-answer tests)

    def __call__(self, req: Request) -> Any:
        self.requests.append(dict(req.args))
        if self.reply is not None:
            return self.reply
        try:
            cmd = parse_xfrm_command(req.args["argv"])  # type: ignore[arg-type]
        except ManualError as exc:
            raise ControlError("invalid_args", str(exc)) from None
        table: dict[object, Any] = self.states if cmd.obj == "state" else self.policies
        p = cmd.payload
        if cmd.verb == "list":
            if cmd.obj == "state":
                return {
                    "states": [state_to_json(s, bool(req.args.get("keys"))) for s in self.states.values()]
                }
            return {"policies": [policy_to_json(q) for q in self.policies.values()]}
        if cmd.verb == "flush":
            n = len(table)
            table.clear()
            return {"ok": True, "count": n}
        if cmd.verb == "add":
            assert isinstance(p, ManualState | ManualPolicy)
            if p.key in table:
                raise ControlError("conflict", "that SA already exists")
            table[p.key] = p
            return {"ok": True, "count": 1}
        assert isinstance(p, StateId | PolicyId)
        doomed = [k for k, v in table.items() if (v.matches(p) if isinstance(p, StateId) else k == p)]
        if not doomed:
            raise ControlError("not_found", "no such entry")
        for k in doomed:
            del table[k]
        return {"ok": True, "count": len(doomed)}


@contextmanager
def daemon(tmp_path: Path) -> Iterator[tuple[Path, StubEngine]]:
    """A real ControlServer with the stub engine, on its own event loop in a thread."""
    engine = StubEngine()
    server = ControlServer(tmp_path / "run" / "control.sock")
    server.register("xfrm", engine)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10), "control server did not start"
    try:
        yield server.path, engine
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive()


def ctl(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv: list[str] = []
    for a in args:
        argv.extend(shlex.split(a))
    code = run(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# -- the daemon --------------------------------------------------------------------------------
def test_daemon_add_list_del_flush(tmp_path: Path) -> None:
    with daemon(tmp_path) as (sock, engine):
        c = f"--control {sock} xfrm"
        assert ctl(c, ADD) == (0, "added 1 state in ipsecd\n", "")
        assert engine.requests[0] == {"argv": shlex.split(ADD), "keys": False}
        code, out, _ = ctl(c, "state list")
        assert code == 0 and out.splitlines()[:4] == [
            "src 192.0.2.1 dst 192.0.2.2",
            "\tproto esp spi 0x00001000 reqid 0 mode tunnel",
            "\treplay-window 64",
            "\taead rfc4106(gcm(aes)) (hidden) 128",
        ]
        assert KEY not in out
        code, out, _ = ctl(f"--keys --control {sock} xfrm state list")
        assert code == 0 and f"0x{KEY}" in out and engine.requests[-1]["keys"] is True
        code, out, _ = ctl(f"--json --control {sock} xfrm state ls")
        reply = json.loads(out)
        assert reply["states"][0]["spi"] == 0x1000 and "key" not in reply["states"][0]["aead"]
        assert ctl(c, POLICY)[0] == 0
        code, out, _ = ctl(c, "policy show")
        assert out.splitlines()[:2] == ["src 10.1.0.0/16 dst 10.2.0.0/16", "\tdir out priority 0"]
        assert ctl(c, "state del dst 192.0.2.2 proto esp spi 4096") == (0, "deleted 1 state in ipsecd\n", "")
        assert ctl(c, "policy flush") == (0, "flushed 1 policy in ipsecd\n", "")
        assert engine.states == {} and engine.policies == {}


def test_daemon_refusals_and_bad_answers(tmp_path: Path) -> None:
    with daemon(tmp_path) as (sock, engine):
        c = f"--control {sock} xfrm"
        assert ctl(c, ADD)[0] == 0
        code, _, err = ctl(c, ADD)
        assert code == 1 and "ipsecd refused: conflict: that SA already exists" in err
        code, _, err = ctl(c, "state del dst 192.0.2.9 proto esp spi 4096")
        assert code == 1 and "not_found" in err
        engine.reply = {"count": "many"}
        code, _, err = ctl(c, ADD2)
        assert code == 1 and "unexpected answer" in err
        engine.reply = {"states": [{"src": "192.0.2.1"}]}
        code, _, err = ctl(c, "state list")
        assert code == 1 and "malformed state entry" in err


def test_bad_words_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with daemon(tmp_path) as (sock, engine):
        code, out, err = ctl(f"--control {sock} xfrm", ADD.replace("0x1000", "0x10"))
        assert code == 2 and out == "" and "word 10 '0x10': SPIs 0..255 are reserved" in err
        code, _, err = ctl(f"--control {sock} xfrm", ADD.replace(f"0x{KEY}", f"0x{KEY}zz"))
        assert code == 2 and "(key, not shown)" in err and KEY not in err
        assert ctl(f"--json --control {sock} xfrm", ADD)[0] == 2
        assert ctl(f"--store --persist --control {sock} xfrm", ADD)[0] == 2
        assert ctl(f"--persist --control {sock} xfrm state list")[0] == 2
        assert engine.requests == []


def test_no_daemon_points_at_store(tmp_path: Path) -> None:
    code, out, err = ctl(f"--control {tmp_path / 'none.sock'} xfrm", ADD)
    assert code == 1 and out == ""
    assert "cannot reach ipsecd" in err and "--store" in err and "is ipsecd running?" in err


def test_keys_need_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, _, err = ctl(f"--keys --store --config {tmp_path / 's.toml'} xfrm state list")
    assert code == 1 and "--keys shows secret keys: run as root" in err


# -- the store ---------------------------------------------------------------------------------
def test_store_add_list_del_flush(tmp_path: Path) -> None:
    store = tmp_path / "etc"
    c = f"--store --config {store} xfrm"
    code, out, _ = ctl(c, ADD)
    assert code == 0 and "added state dst 192.0.2.2 proto esp spi 0x00001000" in out
    assert ctl(c, ADD2)[0] == 0
    assert ctl(c, POLICY.replace("mode tunnel", "spi 0x1000 mode tunnel"))[0] == 0
    f = store / "policies.toml"
    assert f.stat().st_mode & 0o777 == 0o600
    assert [s.spi for s in load_store(store).xfrm_states] == [0x1000, 0x1001]
    code, out, _ = ctl(c, "state list")
    assert code == 0 and out.count("src 192.0.2.1 dst 192.0.2.2") == 2 and KEY not in out
    code, out, _ = ctl(f"--json --keys --store --config {store} xfrm state list")
    assert json.loads(out)["states"][1]["aead"]["key"] == f"0x{KEY}"
    # the policy names spi 0x1000: deleting that state would leave it pointing at nothing
    before = f.read_text()
    code, _, err = ctl(c, "state del dst 192.0.2.2 proto esp spi 0x1000")
    assert code == 1 and "edit rejected, nothing written" in err and "tmpl 1 names spi 0x00001000" in err
    assert f.read_text() == before
    code, _, err = ctl(c, "state del dst 192.0.2.2 proto esp spi 0x2000")
    assert code == 1 and "no state dst 192.0.2.2 proto esp spi 0x00002000 in the store" in err
    assert ctl(c, "state del dst 192.0.2.2 proto esp spi 0x1001")[0] == 0
    assert ctl(c, "policy del src 10.1.0.0/16 dst 10.2.0.0/16 dir out")[0] == 0
    code, out, _ = ctl(c, "state flush")
    assert code == 0 and "flushed 1 states from the store" in out
    store_now = load_store(store)
    assert store_now.xfrm_states == () and store_now.xfrm_policies == ()
    # a duplicate is refused by the loader, nothing written
    assert ctl(c, ADD)[0] == 0
    before = f.read_text()
    code, _, err = ctl(c, ADD.replace("192.0.2.1", "192.0.2.7"))
    assert code == 1 and "duplicate state" in err and f.read_text() == before


def test_store_keeps_other_objects_and_comments(tmp_path: Path) -> None:
    f = tmp_path / "one.toml"
    f.write_text("# site store\n[daemon]\nipsecexempt = 1  # keep\n")
    f.chmod(0o600)
    assert ctl(f"--store --config {f} xfrm", ADD)[0] == 0
    text = f.read_text()
    assert text.startswith("# site store\n[daemon]\nipsecexempt = 1  # keep\n") and "[xfrm]" in text
    store = load_store(f)
    assert store.settings.ipsecexempt == 1 and len(store.xfrm_states) == 1


def test_persist_writes_store_and_daemon(tmp_path: Path) -> None:
    store = tmp_path / "etc"
    f = store / "policies.toml"
    with daemon(tmp_path) as (sock, engine):
        c = f"--persist --control {sock} --config {store} xfrm"
        code, out, _ = ctl(c, ADD)
        assert code == 0 and out.startswith("added 1 state in ipsecd; added state dst 192.0.2.2")
        assert len(engine.states) == 1 and len(load_store(store).xfrm_states) == 1
        # the daemon refuses -> the store is not written either
        second = parse_xfrm_command(shlex.split(ADD2)).payload
        assert isinstance(second, ManualState)
        engine.states[second.key] = second
        snapshot = f.read_text()
        code, _, err = ctl(c, ADD2)
        assert code == 1 and "ipsecd refused: conflict" in err and f.read_text() == snapshot
        # an edit the store refuses is not sent to the daemon
        n = len(engine.requests)
        code, _, err = ctl(c, ADD.replace("192.0.2.1", "192.0.2.7"))  # same (dst, proto, spi)
        assert code == 1 and "duplicate state" in err and len(engine.requests) == n
        assert f.read_text() == snapshot
        # del of an SA the daemon has but the store does not: the daemon's is deleted
        code, out, _ = ctl(c, "state del dst 192.0.2.2 proto esp spi 0x1001")
        assert code == 0 and out == (
            "deleted 1 state in ipsecd; state dst 192.0.2.2 proto esp spi 0x00001001 was not in the store\n"
        )
        assert second.key not in engine.states and f.read_text() == snapshot
    # no daemon: the store is written and a note says when it applies
    code, out, _ = ctl(f"--persist --control {tmp_path / 'gone.sock'} --config {store} xfrm", "state flush")
    assert code == 0 and "ipsecd is not reachable" in out and load_store(store).xfrm_states == ()
