"""``ipsecctl dump``: the store as ipsecctl static commands, round-tripped.

dump -> run the script against an empty store -> load -> the same Store, on the example store
(in-process and once through ``sh``) and on random stores (hypothesis).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from monitor_fake import EXAMPLE, EXAMPLE_PSK, ctl, fake_daemon

from ipsecd.cli.main import run
from ipsecd.policy.dump import dump_lines, dump_script
from ipsecd.policy.model import Store
from ipsecd.policy.store import StoreError, load_store, parse_store_texts

REPO = Path(__file__).resolve().parent.parent


def _example_copy(tmp: Path) -> Path:
    store = tmp / "example"
    store.mkdir()
    for f in EXAMPLE.glob("*.toml"):
        shutil.copy(f, store / f.name)
        os.chmod(store / f.name, 0o600)
    return store


def replay(store: Store, target: Path) -> Store:
    """Run the dump's commands in-process against ``target`` and load the result."""
    for line in dump_lines(store):
        words = shlex.split(line)
        assert words[:3] == ["ipsecctl", "$@", "static"], line
        out, err = io.StringIO(), io.StringIO()
        rc = run(["--config", str(target), "static", *words[3:]], out=out, err=err)
        assert rc == 0, f"{line}\n{err.getvalue()}"
    return load_store(target)


def test_example_round_trip(tmp_path: Path) -> None:
    original = load_store(_example_copy(tmp_path))
    again = replay(original, tmp_path / "new")
    assert again == original
    assert dump_script(again) == dump_script(original)


def test_dump_command_from_store_and_through_sh(tmp_path: Path) -> None:
    store = _example_copy(tmp_path)
    r = ctl(tmp_path / "unused.sock", "--config", str(store), "dump")
    assert r.rc == 0 and r.out.startswith("#!/bin/sh\n") and EXAMPLE_PSK in r.out
    script = tmp_path / "dump.sh"
    script.write_text(r.out)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "ipsecctl"
    wrapper.write_text(
        f'#!/bin/sh\ncd {shlex.quote(str(REPO))} && exec {sys.executable} -m ipsecd.cli.main "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    new = tmp_path / "from-sh"
    proc = subprocess.run(
        ["sh", str(script), "--config", str(new)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert load_store(new) == load_store(store)


def test_dump_through_the_daemon(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    with fake_daemon(sock) as (state, _):
        r = ctl(sock, "dump")
        j = ctl(sock, "--json", "dump")
        assert state.store is not None
        expected = dump_script(state.store, "config/example")
    assert r.rc == 0 and r.out == expected
    assert json.loads(j.out) == {"script": expected}


def test_dump_daemon_not_running(tmp_path: Path) -> None:
    r = ctl(tmp_path / "none.sock", "dump")
    assert r.rc == 1 and "is ipsecd running?" in r.err


def test_dump_of_an_invalid_store_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[filterlist]]\nname = "x"\n[[filterlist.filter]]\nsrcaddr = "me"\n')
    r = ctl(tmp_path / "unused.sock", "--config", str(bad), "dump")
    assert r.rc == 1 and "dstaddr" in r.err and r.out == ""


def _static(store: Path, *words: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = run(["--config", str(store), "static", *words], out=out, err=err)
    return rc, err.getvalue()


def test_static_set_config(tmp_path: Path) -> None:
    store = tmp_path / "s.toml"
    assert _static(store, "set", "config", "property=ipsecexempt", "value=1") == (0, "")
    assert _static(store, "set", "config", "property=ikelogging", "value=yes") == (0, "")
    s = load_store(store).settings
    assert (s.ipsecexempt, s.ikelogging) == (1, True)
    rc, err = _static(store, "set", "config", "property=ipsecexempt", "value=7")
    assert rc == 2 and "0..3" in err
    rc, err = _static(store, "set", "config", "property=ipsecdiagnostics", "value=1")
    assert rc == 2 and "property must be one of" in err
    assert load_store(store).settings.ipsecexempt == 1


# -- random stores -------------------------------------------------------------------------------
NAME = st.text(alphabet="abcXYZ019 -_'\"é.()", min_size=1, max_size=12).filter(lambda s: s == s.strip())
ADDRESSES = ["me", "any", "192.0.2.7", "10.0.0.0/8", "198.51.100.0/24", "10.0.0.1-10.0.0.9", "dns", "gateway"]
QM_METHODS = [
    "ESP[AES128,SHA256]",
    "ESP[3DES,SHA1]:50000/1800",
    "AH[SHA1]",
    "ESP[AESGCM256]",
    "AH[SHA256]+ESP[AES256,None]",
]
MM_METHODS = ["AES256-SHA256-14", "3DES-SHA1-2", "AES128-SHA1-14", "AES128-SHA256-19"]
PSK = st.text(alphabet="abcdefXYZ0123456789 !$'\"=-", min_size=1, max_size=16).filter(
    lambda s: s.strip() != ""
)


@st.composite
def filters(draw: st.DrawFn, mirrored: bool) -> dict[str, Any]:
    f: dict[str, Any] = {
        "srcaddr": draw(st.sampled_from(ADDRESSES)),
        "dstaddr": draw(st.sampled_from(ADDRESSES)),
    }
    proto = draw(st.sampled_from(["any", "tcp", "udp", "icmp", "47", None]))
    if proto is not None:
        f["protocol"] = proto
    if proto in ("tcp", "udp"):
        f["srcport"] = draw(st.sampled_from([0, 1024]))
        f["dstport"] = draw(st.sampled_from([0, 443, 65535]))
    f["mirrored"] = mirrored and draw(st.booleans())
    if draw(st.booleans()):
        f["description"] = draw(NAME)
    return f


@st.composite
def stores(draw: st.DrawFn) -> str:
    doc: dict[str, Any] = {}
    fl_names = draw(st.lists(NAME, max_size=3, unique_by=str.lower))
    fa_names = draw(st.lists(NAME, max_size=3, unique_by=str.lower))
    p_names = draw(st.lists(NAME, max_size=2, unique_by=str.lower))
    unmirrored: set[str] = set()
    lists = []
    for name in fl_names:
        mirrored = draw(st.booleans())
        if not mirrored:
            unmirrored.add(name)
        t: dict[str, Any] = {"name": name, "filter": draw(st.lists(filters(mirrored), max_size=3))}
        if draw(st.booleans()):
            t["description"] = draw(NAME)
        lists.append(t)
    actions = []
    negotiate: set[str] = {"Request Security (Optional)", "Require Security"}
    for name in fa_names:
        action = draw(st.sampled_from(["permit", "block", "negotiate"]))
        t = {"name": name, "action": action}
        if action == "negotiate":
            negotiate.add(name)
            t["qmsecmethods"] = draw(
                st.lists(st.sampled_from(QM_METHODS), min_size=1, max_size=3, unique=True)
            )
            for key in ("inpass", "soft", "qmpfs"):
                t[key] = draw(st.booleans())
        actions.append(t)
    policies = []
    for name in p_names:
        mmpfs = draw(st.booleans())
        t = {
            "name": name,
            "pollinginterval": draw(st.integers(1, 43200)),
            "mmlifetime": draw(st.integers(5, 2880)),
            "qmpermm": 1 if mmpfs else draw(st.integers(0, 5)),
            "mmpfs": mmpfs,
            "activatedefaultrule": draw(st.booleans()),
        }
        if draw(st.booleans()):
            t["mmsecmethods"] = draw(
                st.lists(st.sampled_from(MM_METHODS), min_size=1, max_size=3, unique=True)
            )
        if draw(st.booleans()) or t["activatedefaultrule"]:
            t["defaultruleauth"] = [{"method": "psk", "psk": draw(PSK)}]
        rules = []
        for rname in draw(st.lists(NAME, max_size=3, unique_by=str.lower)):
            fl = draw(st.sampled_from([*fl_names, "All IP Traffic", "All ICMP Traffic"]))
            fa = draw(st.sampled_from([*fa_names, "Permit", "Require Security"]))
            r: dict[str, Any] = {"name": rname, "filterlist": fl, "filteraction": fa}
            if fa in negotiate or draw(st.booleans()):
                r["auth"] = [{"method": "psk", "psk": draw(PSK)}]
            if fl in unmirrored and draw(st.booleans()):
                r["tunnel"] = draw(st.sampled_from(["198.51.100.1", "2001:db8::1"]))
            r["conntype"] = draw(st.sampled_from(["all", "lan", "remote"]))
            r["activate"] = draw(st.booleans())
            r["ikeversion"] = draw(st.sampled_from([1, 2]))
            if draw(st.booleans()):
                r["forceencap"] = draw(st.booleans())
            if draw(st.booleans()):
                r["description"] = draw(NAME)
            rules.append(r)
        if rules:
            t["rule"] = rules
        policies.append(t)
    builtin_auth = draw(st.booleans())
    if builtin_auth:
        doc["builtinauth"] = [
            {"policy": "Server (Request Security)", "auth": [{"method": "psk", "psk": draw(PSK)}]}
        ]
    assignable = [*p_names, *(["Server (Request Security)"] if builtin_auth else [])]
    daemon: dict[str, Any] = {
        "ipsecexempt": draw(st.integers(0, 3)),
        "ikelogging": draw(st.booleans()),
        "strongcrlcheck": draw(st.integers(0, 2)),
    }
    if assignable and draw(st.booleans()):
        daemon["assigned_policy"] = draw(st.sampled_from(assignable))
    doc["daemon"] = daemon
    for key, value in (("filterlist", lists), ("filteraction", actions), ("policy", policies)):
        if value:
            doc[key] = value
    return tomlkit.dumps(doc)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(stores())
def test_random_store_round_trip(text: str) -> None:
    try:
        original = parse_store_texts([("random.toml", text)])
    except StoreError:
        assume(False)
        raise  # pragma: no cover
    with tempfile.TemporaryDirectory() as tmp:
        again = replay(original, Path(tmp) / "store")
    assert again == original


def test_the_random_stores_are_mostly_valid() -> None:
    """The generator must produce valid stores, or the round trip above tests nothing."""
    valid = 0

    @settings(max_examples=40, deadline=None, database=None)
    @given(stores())
    def count(text: str) -> None:
        nonlocal valid
        try:
            parse_store_texts([("random.toml", text)])
            valid += 1
        except StoreError:
            pass

    count()
    assert valid >= 20, valid


@pytest.mark.parametrize("store_text", ['[daemon]\nassigned_policy = ""\n', ""])
def test_empty_store_dumps_to_nothing(store_text: str) -> None:
    assert dump_lines(parse_store_texts([("s.toml", store_text)])) == []
