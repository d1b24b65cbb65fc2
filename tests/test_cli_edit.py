"""Store edits keep comments and layout, are all-or-nothing, atomic and mode 0600; export/import."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from cli_helpers import PSK, build_store, cli, ok

from ipsecd.policy.edit import StoreEditor, atomic_write
from ipsecd.policy.store import load_store

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example"

COMMENTED = f"""\
# Site store, hand-written.
# Keep this header.

[[filterlist]]
name = "Web"            # the web farm
description = "HTTPS"

  [[filterlist.filter]]
  srcaddr = "me"        # this host
  dstaddr = "192.0.2.0/24"
  protocol = "tcp"
  dstport = 443

[[filteraction]]
name = "Secure"
action = "negotiate"    # IKE first
qmsecmethods = [
    "ESP[AES128,SHA256]",  # preferred
    "ESP[3DES,SHA1]",
]

[[policy]]
name = "Site"
activatedefaultrule = false

  [[policy.rule]]
  name = "web"
  filterlist = "Web"
  filteraction = "Secure"
  auth = [{{ method = "psk", psk = "{PSK}" }}]   # rotate yearly

# trailing comment
"""

# Errors of a rejected edit name lines of the edited text (the filter action and its blank line gone).
RULE_FA_LINE = COMMENTED.splitlines().index('  filteraction = "Secure"') + 1 - 8


@pytest.fixture
def commented(tmp_path: Path) -> Path:
    d = tmp_path / "store"
    d.mkdir()
    (d / "ipsecd.toml").write_text('# daemon settings\n[daemon]\nassigned_policy = "Site"  # in force\n')
    (d / "policies.toml").write_text(COMMENTED)
    for f in d.iterdir():
        f.chmod(0o600)
    load_store(d)  # the fixture itself is a valid store
    return d


def _diff(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_set_changes_only_its_lines_and_keeps_comments(commented: Path) -> None:
    ok(commented, "set filterlist name=Web newname=Farm")  # the rule's reference follows
    after = (commented / "policies.toml").read_text()
    assert _diff(COMMENTED, after) == [
        '-name = "Web"            # the web farm',
        '+name = "Farm"            # the web farm',
        '-  filterlist = "Web"',
        '+  filterlist = "Farm"',
    ]
    ok(commented, "set filteraction name=Secure qmpfs=yes")
    assert _diff(after, (commented / "policies.toml").read_text()) == ["+qmpfs = true"]


def test_add_appends_and_keeps_everything_else(commented: Path) -> None:
    ok(commented, "add filter filterlist=Web srcaddr=me dstaddr=198.51.100.7 protocol=tcp dstport=8443")
    ok(commented, "add filteraction name=Deny action=block")
    after = (commented / "policies.toml").read_text()
    removed = [line for line in _diff(COMMENTED, after) if line.startswith("-")]
    assert removed == []
    assert after.startswith("# Site store, hand-written.\n# Keep this header.\n")
    assert '  [[filterlist.filter]]\n  srcaddr = "me"' in after  # the indented layout stays
    assert '    "ESP[AES128,SHA256]",  # preferred\n' in after
    assert after.rstrip().endswith("# trailing comment")
    assert "# daemon settings" in (commented / "ipsecd.toml").read_text()
    s = load_store(commented)
    assert [str(f.dst) for f in s.filterlists["Web"].filters] == ["192.0.2.0/24", "198.51.100.7/32"]
    assert "Deny" in s.filteractions


def test_delete_keeps_other_comments(commented: Path) -> None:
    ok(commented, "set policy name=Site assign=no")
    ok(commented, "delete rule name=web policy=Site")
    after = (commented / "policies.toml").read_text()
    # The comment that ended the file was attached (by tomlkit) to the deleted rule: it stays.
    assert "# Keep this header." in after and "# the web farm" in after and "# trailing comment" in after
    assert "rotate yearly" not in after and PSK not in after
    assert (commented / "ipsecd.toml").read_text() == "# daemon settings\n[daemon]\n"


def _snapshot(d: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(f.relative_to(d)): (f.read_bytes(), f.stat().st_mtime_ns, f.stat().st_ino)
        for f in sorted(d.rglob("*"))
        if f.is_file()
    }


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (
            "delete filteraction name=Secure",
            f"policies.toml:{RULE_FA_LINE}: policy[0].rule[0].filteraction: no filter action",
        ),
        ("add filter filterlist=Web srcaddr=me dstaddr=any dstport=80", "a port needs protocol tcp or udp"),
        ('set filteraction name=Secure qmsecmethods="ESP[ROT13,SHA1]"', "qmsecmethods[0]"),
        ("set policy name=Nope assign=yes", "no policy named 'Nope'"),
        (
            "add rule name=web policy=Site filterlist=Web filteraction=Secure psk=x",
            "already has a rule named 'web'",
        ),
        ("delete filter filterlist=Web srcaddr=me dstaddr=10.0.0.1", "no filter of filter list 'Web'"),
        ("add filteraction name=Secure action=permit", "already exists"),
    ],
)
def test_rejected_edit_changes_nothing(commented: Path, command: str, needle: str) -> None:
    before = _snapshot(commented)
    r = cli(commented, command)
    assert r.rc == 1 and r.out == ""
    assert needle in r.err, r.err
    assert _snapshot(commented) == before
    assert sorted(p.name for p in commented.iterdir()) == ["ipsecd.toml", "policies.toml"]  # no temp files


def test_edit_writes_mode_0600_atomically(commented: Path) -> None:
    (commented / "policies.toml").chmod(0o640)
    inode = (commented / "policies.toml").stat().st_ino
    ok(commented, "set filterlist name=Web description=changed")
    st = (commented / "policies.toml").stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_ino != inode  # a new file renamed over the old


def test_atomic_write_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.toml"
    target.write_text("old\n")

    class Boom(str):
        def __str__(self) -> str:  # pragma: no cover - not called
            return "x"

    with pytest.raises(TypeError):
        atomic_write(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["f.toml"]
    atomic_write(target, "new\n")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_interleaved_tables_are_reported_when_regrouped(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        '[[filteraction]]\nname = "A"\naction = "block"\n\n'
        '[[filterlist]]\nname = "L"\n\n'
        '[[filteraction]]\nname = "B"\naction = "permit"\n'
    )
    f.chmod(0o600)
    out = ok(f, "set filterlist name=L description=x")
    assert "regrouped" in out
    assert load_store(f).filteractions["B"].action.value == "permit"


def test_untouched_files_are_not_rewritten(commented: Path) -> None:
    before = _snapshot(commented)["ipsecd.toml"]
    ok(commented, "set filterlist name=Web description=changed")
    assert _snapshot(commented)["ipsecd.toml"] == before


def test_example_store_edits(tmp_path: Path) -> None:
    d = Path(shutil.copytree(EXAMPLE, tmp_path / "example"))
    for f in d.rglob("*.toml"):
        f.chmod(0o600)
    before = (d / "policies.toml").read_text()
    ok(d, 'set rule name="No telnet" policy="Branch office" activate=no')
    assert _diff(before, (d / "policies.toml").read_text()) == ["+  activate = false"]


def _user_view(store: Path) -> dict[str, object]:
    data = json.loads(ok(store, "show all", json=True))
    return {
        k: [o for o in data[k] if not o.get("builtin")] for k in ("policies", "filterlists", "filteractions")
    }


def test_export_import_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_store(src)
    export = tmp_path / "export.toml"
    assert "exported 6 objects" in ok(src, f"exportpolicy file={export}")
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    view = _user_view(src)

    ok(src, "delete all")
    assert _user_view(src) == {"policies": [], "filterlists": [], "filteractions": []}
    assert "imported 6 objects" in ok(src, f"importpolicy file={export}")
    ok(src, "set policy name=Site assign=yes")  # delete all unassigned it; exports carry no assignment
    assert _user_view(src) == view

    # Into a fresh store, and again on top of itself (objects replaced, not duplicated).
    fresh = tmp_path / "fresh"
    ok(fresh, f"importpolicy file={export}")
    assert "(6 replaced)" in ok(fresh, f"importpolicy file={export}")
    fresh_view = _user_view(fresh)
    for p in view["policies"]:  # type: ignore[attr-defined]
        p["assigned"] = False  # assignment is not part of an export
    assert fresh_view == view


def test_export_import_keeps_builtin_auth(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ok(src, 'set defaultrule policy="Secure Server (Require Security)" psk=builtin-secret')
    ok(src, 'set policy name="Secure Server (Require Security)" assign=yes')
    export = tmp_path / "export.toml"
    assert "exported 1 objects" in ok(src, f"exportpolicy file={export}")
    assert "[[builtinauth]]" in export.read_text()
    dst = tmp_path / "dst"
    ok(dst, f"importpolicy file={export}")
    ok(dst, 'set policy name="Secure Server (Require Security)" assign=yes')  # needs the imported auth
    assert load_store(dst).settings.assigned_policy == "Secure Server (Require Security)"


def test_import_errors_name_the_imported_file(tmp_path: Path) -> None:
    store = tmp_path / "s"
    build_store(store)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[filterlist]]\nname = "X"\n\n[[filterlist.filter]]\nsrcaddr = "me"\ndstaddr = "nowhere..bad"\n'
    )
    before = _snapshot(store)
    r = cli(store, f"importpolicy file={bad}")
    assert r.rc == 1 and f"{bad}:6: filterlist[0].filter[0].dstaddr" in r.err
    bad.write_text('[daemon]\nassigned_policy = "x"\n')
    r = cli(store, f"importpolicy file={bad}")
    assert r.rc == 1 and "'daemon'" in r.err
    r = cli(store, f"importpolicy file={tmp_path / 'missing.toml'}")
    assert r.rc == 1 and "No such file" in r.err
    assert _snapshot(store) == before


def test_editor_missing_store_is_empty(tmp_path: Path) -> None:
    e = StoreEditor([], tmp_path / "new" / "policies.toml", tmp_path / "new" / "ipsecd.toml")
    assert e.texts() == [] and e.changed() == []
    e.add("filterlist", {"name": "L"})
    assert [Path(n).name for n, _ in e.texts()] == ["policies.toml"]
    assert e.write() == [tmp_path / "new" / "policies.toml"]
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700


def test_objects_are_edited_in_the_file_that_declares_them(tmp_path: Path) -> None:
    d = tmp_path / "s"
    (d / "policies.d").mkdir(parents=True)
    dropin = d / "policies.d" / "10-web.toml"
    dropin.write_text('# drop-in\n[[filteraction]]\nname = "Deny"  # no\naction = "block"\n')
    dropin.chmod(0o600)
    ok(d, "add filterlist name=L")
    ok(d, "add filter filterlist=L srcaddr=me dstaddr=10.0.0.0/8")
    ok(d, "add policy name=P activatedefaultrule=no")
    ok(d, "add rule name=r policy=P filterlist=L filteraction=Deny")
    assert "[[filterlist]]" not in dropin.read_text() and "[[policy]]" in (d / "policies.toml").read_text()
    ok(d, "set filteraction name=Deny newname=Drop")  # declared in the drop-in, used in policies.toml
    assert dropin.read_text() == '# drop-in\n[[filteraction]]\nname = "Drop"  # no\naction = "block"\n'
    assert 'filteraction = "Drop"' in (d / "policies.toml").read_text()
    assert load_store(d).policies["P"].rules[0].filteraction == "Drop"


def test_concurrent_edit_is_refused(commented: Path) -> None:
    import fcntl

    before = _snapshot(commented)
    fd = os.open(commented, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = cli(commented, "set filterlist name=Web description=changed")
        assert r.rc == 1 and "another ipsecctl is editing" in r.err
        assert "OK" in ok(commented, "check")  # reading needs no lock
    finally:
        os.close(fd)
    assert _snapshot(commented) == before
    ok(commented, "set filterlist name=Web description=changed")
