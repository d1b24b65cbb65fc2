"""The store's [xfrm] table: good stores load into Store.xfrm_states / xfrm_policies; the mode
rule for files holding keys; errors with file, line and field (more cases in tests/data/broken)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipsecd.policy.manual import XfrmMode, XfrmProto, parse_state_entry, state_entry
from ipsecd.policy.store import StoreError, load_store, parse_store_texts

KEY = "a5" * 20
STATE = f"src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel aead 'rfc4106(gcm(aes))' 0x{KEY} 128"
STATE_IN = (
    f"src 192.0.2.2 dst 192.0.2.1 proto esp spi 0x1001 mode tunnel aead 'rfc4106(gcm(aes))' 0x{KEY} 128"
)
POLICY = "src 10.1.0.0/16 dst 10.2.0.0/16 dir out tmpl src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel"
POLICY_IN = "src 10.2.0.0/16 dst 10.1.0.0/16 dir in tmpl src 192.0.2.2 dst 192.0.2.1 proto esp mode tunnel"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_good_store_across_files(tmp_path: Path) -> None:
    _write(tmp_path / "ipsecd.toml", f'[daemon]\nipsecexempt = 3\n\n[xfrm]\nstates = ["{STATE}"]\n')
    _write(
        tmp_path / "policies.d" / "10-peer.toml",
        f'[xfrm]\nstates = ["{STATE_IN}"]\npolicies = [\n  "{POLICY}",\n  "{POLICY_IN}",\n]\n',
    )
    store = load_store(tmp_path)
    assert [s.spi for s in store.xfrm_states] == [0x1000, 0x1001]  # load order
    assert all(s.mode is XfrmMode.TUNNEL and s.proto is XfrmProto.ESP for s in store.xfrm_states)
    out, inp = store.xfrm_policies
    assert out.tmpls[0].matches(store.xfrm_states[0]) and inp.tmpls[0].spi == 0
    assert store.xfrm_states[0] == parse_state_entry(STATE)
    # the rest of the store is unaffected
    assert store.settings.ipsecexempt == 3 and "All IP Traffic" in store.filterlists


def test_store_without_xfrm_has_empty_tuples() -> None:
    store = parse_store_texts([("a.toml", '[daemon]\nassigned_policy = ""\n')])
    assert store.xfrm_states == () and store.xfrm_policies == ()


def test_canonical_entries_load(tmp_path: Path) -> None:
    s = parse_state_entry(STATE)
    store = parse_store_texts([("x.toml", f"[xfrm]\nstates = [{state_entry(s)!r}]\n")])
    assert store.xfrm_states == (s,)


def test_files_holding_keys_must_be_private(tmp_path: Path) -> None:
    f = _write(tmp_path / "store.toml", f'[xfrm]\nstates = [\n  "{STATE}",\n  "{STATE_IN}",\n]\n', mode=0o644)
    with pytest.raises(StoreError) as info:
        load_store(f)
    (issue,) = info.value.issues  # reported once per file
    assert (issue.line, issue.field) == (3, "xfrm.states[0]")
    assert "holds manual-keying keys" in issue.message and f"chmod 600 {f}" in issue.message
    assert KEY not in str(info.value)
    f.chmod(0o600)
    assert len(load_store(f).xfrm_states) == 2
    # policies hold no keys: a readable file of policies only is fine
    g = _write(tmp_path / "p" / "pol.toml", f'[xfrm]\npolicies = ["{POLICY_IN}"]\n', mode=0o644)
    assert len(load_store(g).xfrm_policies) == 1


def test_errors_name_file_line_field_and_hide_keys(tmp_path: Path) -> None:
    text = (
        f'[xfrm]\nstates = [\n  "{STATE}",\n  "{STATE.replace("128", "64")}",\n]\npolicies = ["{POLICY}"]\n'
    )
    with pytest.raises(StoreError) as info:
        parse_store_texts([("s.toml", text)])
    got = [(i.file, i.line, i.field) for i in info.value.issues]
    assert got == [("s.toml", 4, "xfrm.states[1]")]
    assert "the only ICV length in bits ipsecd supports is 128" in str(info.value)
    assert KEY not in str(info.value)


def test_policy_naming_an_spi_needs_its_state_but_others_do_not() -> None:
    with pytest.raises(StoreError, match=r"tmpl 1 names spi 0x00001000 but no state"):
        parse_store_texts([("p.toml", f'[xfrm]\npolicies = ["{POLICY}"]\n')])
    store = parse_store_texts([("p.toml", f'[xfrm]\npolicies = ["{POLICY_IN}"]\n')])
    assert store.xfrm_policies[0].tmpls[0].spi == 0
