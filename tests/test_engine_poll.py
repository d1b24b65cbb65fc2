"""Store polling in the daemon: a changed store is applied without any signal (root), and the
io half of polling (reading the store, the ``--poll-interval`` override)."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import shlex
import time
from pathlib import Path

import pytest

from ipsecd.cli.main import run as ipsecctl
from ipsecd.daemon.main import main
from ipsecd.daemon.storepoll import StorePoller, initial_state, read_store_contents, with_override
from ipsecd.log.events import Event, EventId
from ipsecd.policy.issues import StoreError
from ipsecd.policy.model import Store
from ipsecd.policy.poll import content_digest
from ipsecd.policy.store import load_store
from tests.engine_helpers import B4, start_daemon, tcp_echo
from tests.netns import Lab, two_hosts, wait_until
from tests.test_engine_reload import BLOCK_7000

BROKEN = "[daemon]\nipsecexempt = 7\n"


def _replace(path: Path, text: str) -> None:
    """Write the store as an editor would save it: whole, in one rename (mode 600)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def _events(path: Path, event_id: EventId) -> list[dict[str, object]]:
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [r for r in records if r["id"] == int(event_id)]


def test_read_store_contents_and_the_override(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "policies.d").mkdir(parents=True)
    (store / "ipsecd.toml").write_text("[daemon]\n")
    (store / "policies.d" / "b.toml").write_text(BLOCK_7000.removeprefix("[daemon]\n"))
    (store / "policies.d" / "a.toml").write_text("")
    files = read_store_contents(store)
    assert [Path(f.name).name for f in files] == ["ipsecd.toml", "a.toml", "b.toml"]
    assert files[0].data == b"[daemon]\n" and files[0].mode == (store / "ipsecd.toml").stat().st_mode & 0o777
    with pytest.raises(StoreError, match="no such file"):
        read_store_contents(tmp_path / "missing.toml")
    single = tmp_path / "one.toml"
    single.write_text(BLOCK_7000)
    loaded = load_store(single)
    state = initial_state(read_store_contents(single), loaded, 100.0, None)
    assert state.applied_digest == content_digest(read_store_contents(single))
    assert state.interval_seconds == 180 * 60 and state.next_poll == 100.0 + 180 * 60  # the default
    fast = initial_state(read_store_contents(single), loaded, 100.0, 1.5)
    assert fast.interval_seconds == 1.5 and fast.next_poll == 101.5
    assert with_override(state, 5.0, None) is state and with_override(state, 5.0, 0) is state


def test_store_poller_refusals_are_reported_once(tmp_path: Path) -> None:
    """The kernel refusing a store, and a store that cannot be read: one POLICY_REJECTED each."""
    path = tmp_path / "store.toml"
    _replace(path, BLOCK_7000)
    emitted: list[Event] = []
    logged: list[str] = []
    refuse: list[str] = []
    applied: list[Store] = []

    def apply(store: Store) -> str | None:
        if refuse:
            return refuse[0]
        applied.append(store)
        return None

    poller: StorePoller[Store] = StorePoller(
        path,
        2.0,
        compile=lambda store: store,
        apply=apply,
        filters=lambda store: 7,
        emit=emitted.append,
        log=logged.append,
    )
    poller.start(read_store_contents(path), load_store(path), 0.0)
    assert poller.state.next_poll == 2.0 and poller.refresh(2.0, force=False, source="poll")
    assert emitted == [] and applied == []  # unchanged
    _replace(path, BLOCK_7000.replace("7000", "7001"))
    refuse.append("nft: no such table")
    assert not poller.refresh(4.0, force=False, source="poll")
    assert not poller.refresh(6.0, force=False, source="poll")  # the same content: silent
    assert [e.event_id for e in emitted] == [EventId.POLICY_REJECTED] and applied == []
    assert emitted[0].fields() == {"policy": "blocker", "error": "nft: no such table"}
    assert poller.state.next_poll == 8.0
    path.unlink()
    assert not poller.refresh(8.0, force=False, source="poll")
    assert not poller.refresh(10.0, force=False, source="poll")
    assert [e.event_id for e in emitted] == [EventId.POLICY_REJECTED] * 2
    assert "no such file" in str(emitted[1].fields()["error"]) and len(logged) == 3
    refuse.clear()
    _replace(path, BLOCK_7000.replace("7000", "7002"))
    assert poller.refresh(12.0, force=False, source="poll") and len(applied) == 1
    assert [e.event_id for e in emitted[2:]] == [EventId.POLICY_CHANGED, EventId.POLICY_APPLIED]
    assert emitted[3].fields() == {"policy": "blocker", "rules": 1, "filters": 7}
    assert poller.refresh(13.0, force=True, source="reload") and len(applied) == 2  # SIGHUP: again


def test_poll_interval_zero_turns_polling_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "store.toml"
    _replace(path, BLOCK_7000)
    fired: list[str] = []
    loop = asyncio.new_event_loop()
    try:
        for override, armed in ((0.0, False), (0.01, True)):
            poller: StorePoller[Store] = StorePoller(
                path,
                override,
                compile=lambda store: store,
                apply=lambda store: None,
                filters=lambda store: 0,
                emit=lambda event: None,
                log=lambda line: None,
            )
            poller.start(read_store_contents(path), load_store(path), loop.time())
            poller.schedule(loop, loop.time(), functools.partial(fired.append, str(override)))
            loop.run_until_complete(asyncio.sleep(0.1))
            assert fired == (["0.01"] if armed else []), (override, fired)
            poller.cancel()
    finally:
        loop.close()
    assert main(["--config", str(path), "--poll-interval", "-1"]) == 1
    assert "--poll-interval" in capsys.readouterr().err


@pytest.mark.root
def test_a_changed_store_is_polled_and_applied_without_a_signal(lab: Lab) -> None:
    p = two_hosts(lab)
    events = lab.scratch("a-events.log")
    da = start_daemon(lab, p.a, extra=("--poll-interval", "1", "--event-log", str(events)))
    tcp_echo(p.a, p.b, B4, port=7000, size=1000)  # the empty store protects nothing
    (started,) = _events(events, EventId.POLICY_APPLIED)  # the store applied at start
    assert started["fields"] == {"policy": None, "rules": 0, "filters": 0}
    # A block rule for TCP 7000, no signal: enforced within a few seconds, with POLICY_APPLIED.
    _replace(da.store, BLOCK_7000)
    wait_until(lambda: len(_events(events, EventId.POLICY_APPLIED)) == 2, 10, what="POLICY_APPLIED")
    applied = _events(events, EventId.POLICY_APPLIED)[1]
    assert applied["fields"] == {"policy": "blocker", "rules": 1, "filters": da.status()["filters"]}
    (changed,) = _events(events, EventId.POLICY_CHANGED)
    assert changed["fields"]["source"] == "poll" and "policy:blocker" in changed["fields"]["objects"]
    assert "reloaded: policy 'blocker'" in da.proc.output()
    blocked = da.status()["totals"]["blocked"]
    tcp_echo(p.a, p.b, B4, port=7000, expect_ok=False)
    wait_until(lambda: da.status()["totals"]["blocked"] > blocked, 5, what="the block to be counted")
    # A broken store: refused once (POLICY_REJECTED), the running policy stays, not re-reported.
    _replace(da.store, BROKEN)
    wait_until(lambda: _events(events, EventId.POLICY_REJECTED), 10, what="POLICY_REJECTED")
    time.sleep(3.5)  # three more polls of the same bad content
    (rejected,) = _events(events, EventId.POLICY_REJECTED)
    assert rejected["fields"]["policy"] == "blocker" and "ipsecexempt" in str(rejected["fields"]["error"])
    assert da.proc.output().count("reload refused") == 1
    assert da.status()["policy"] == "blocker"
    blocked = da.status()["totals"]["blocked"]
    tcp_echo(p.a, p.b, B4, port=7000, expect_ok=False)
    wait_until(lambda: da.status()["totals"]["blocked"] > blocked, 5, what="the block to still be counted")
    # Fixed, now blocking TCP 7001 instead: applied again.
    _replace(da.store, BLOCK_7000.replace("7000", "7001"))
    wait_until(
        lambda: len(_events(events, EventId.POLICY_APPLIED)) == 3,
        10,
        what="the second change's POLICY_APPLIED",
    )
    tcp_echo(p.a, p.b, B4, port=7000, size=1000)
    tcp_echo(p.a, p.b, B4, port=7001, expect_ok=False)
    assert len(_events(events, EventId.POLICY_REJECTED)) == 1
    assert da.status()["totals"]["blocked"] > blocked


KEY = "a5" * 20
PERSIST_SA = f"state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel aead 'rfc4106(gcm(aes))' 0x{KEY} 128"
PERSIST_POLICY = "policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel"


@pytest.mark.root
def test_a_polled_store_keeps_what_ipsecctl_persist_installed(lab: Lab) -> None:
    """``ipsecctl --persist xfrm ... add`` installs at run time and writes the store; the next
    poll finds those SAs and policies already installed and keeps them (no refusal)."""
    p = two_hosts(lab)
    events = lab.scratch("a-events.log")
    da = start_daemon(lab, p.a, extra=("--poll-interval", "0.5", "--event-log", str(events)))
    for command in (PERSIST_SA, PERSIST_POLICY):
        out, err = io.StringIO(), io.StringIO()
        argv = ["--persist", "--control", str(da.control), "--config", str(da.store), "xfrm"]
        assert ipsecctl([*argv, *shlex.split(command)], out=out, err=err) == 0, err.getvalue()
    wait_until(lambda: len(_events(events, EventId.POLICY_APPLIED)) >= 2, 10, what="the store to be polled")
    time.sleep(1.5)
    assert _events(events, EventId.POLICY_REJECTED) == [], da.proc.output()
    status = da.status()
    assert [s["spi"] for s in status["states"]] == ["0x00001000"] and status["policies"] == 1, status
    assert "reload refused" not in da.proc.output()
