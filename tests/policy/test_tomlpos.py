from __future__ import annotations

import tomllib

import tomlkit
from hypothesis import given
from hypothesis import strategies as st

from ipsecd.policy.tomlpos import TomlLocator

TEXT = '''\
# comment [not a table]
title = "x # not a comment"   # 2

[daemon]                      # 4
assigned_policy = 'P'         # 5

[[policy]]                    # 7
name = """multi
line [[policy]] "quoted"
"""                           # 10
mmsecmethods = [              # 11
  "AES128-SHA1-14",           # 12
  # a comment inside the array
  "3DES-SHA1-2",              # 14
]
  [[policy.rule]]             # 16
  name = "r0"
  auth = [ { method = "psk", psk = "a" },   # 18
           { method = "cert", rootca = "ca.pem" }   # 19
         ]                                  # 20
  [[policy.rule]]             # 21
  "quoted key" = 1            # 22
  a.b = 2                     # 23

[[policy]]                    # 25
name = 'second'
  [[policy.rule]]             # 27
  nested = { x = [1, 2], y = { z = 3 } }    # 28

[[filterlist]]                # 30
  [[filterlist.filter]]       # 31
  srcaddr = "me"              # 32
'''


def test_text_is_valid_toml() -> None:
    tomllib.loads(TEXT)


def test_paths_and_lines() -> None:
    loc = TomlLocator(TEXT)
    expected = {
        "title": 2,
        "daemon": 4,
        "daemon.assigned_policy": 5,
        "policy": 7,
        "policy[0]": 7,
        "policy[0].name": 8,
        "policy[0].mmsecmethods": 11,
        "policy[0].mmsecmethods[0]": 12,
        "policy[0].mmsecmethods[1]": 14,
        "policy[0].rule[0]": 16,
        "policy[0].rule[0].auth[0].psk": 18,
        "policy[0].rule[0].auth[1]": 19,
        "policy[0].rule[0].auth[1].method": 19,
        "policy[0].rule[0].auth[1].rootca": 19,
        "policy[0].rule[1]": 21,
        "policy[0].rule[1].quoted key": 22,
        "policy[0].rule[1].a.b": 23,
        "policy[1]": 25,
        "policy[1].name": 26,
        "policy[1].rule[0]": 27,
        "policy[1].rule[0].nested.x[1]": 28,
        "policy[1].rule[0].nested.y.z": 28,
        "filterlist[0]": 30,
        "filterlist[0].filter[0]": 31,
        "filterlist[0].filter[0].srcaddr": 32,
    }
    got = {p: loc.line_of(p) for p in expected}
    assert got == expected
    assert "policy[2]" not in loc.paths


def test_missing_paths_fall_back_to_nearest_ancestor() -> None:
    loc = TomlLocator(TEXT)
    assert loc.line_of("policy[0].rule[1].filterlist") == 21
    assert loc.line_of("policy[1].rule[0].auth[3].psk") == 27
    assert loc.line_of("nothing.at.all") == 1


@given(st.lists(st.integers(0, 4), min_size=1, max_size=6))
def test_array_of_tables_indexes_restart_per_parent(rules_per_policy: list[int]) -> None:
    lines = []
    where: dict[str, int] = {}
    for i, n in enumerate(rules_per_policy):
        lines.append("[[policy]]")
        where[f"policy[{i}]"] = len(lines)
        lines.append(f'name = "p{i}"')
        for j in range(n):
            lines.append("  [[policy.rule]]")
            where[f"policy[{i}].rule[{j}]"] = len(lines)
            lines.append(f"  name = 'r{j}'")
            where[f"policy[{i}].rule[{j}].name"] = len(lines)
    text = "\n".join(lines) + "\n"
    doc = tomllib.loads(text)
    assert len(doc["policy"]) == len(rules_per_policy)
    loc = TomlLocator(text)
    assert {p: loc.line_of(p) for p in where} == where


_keys = st.text(alphabet="abcz_-", min_size=1, max_size=3) | st.sampled_from(["a b", "x.y", "q'"])
_scalars = st.integers(-5, 5) | st.booleans() | st.text(alphabet="ab #[]=\n'\"", max_size=6)
_tables = st.recursive(
    st.dictionaries(_keys, _scalars | st.lists(_scalars, max_size=3), max_size=3),
    lambda children: st.dictionaries(
        _keys, children | st.lists(children, min_size=1, max_size=3) | _scalars, max_size=3
    ),
    max_leaves=12,
)


def _leaves(value: object, path: str) -> list[tuple[str, str | None]]:
    """(path, key expected on the path's line) for every key and array-of-tables element."""
    out: list[tuple[str, str | None]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{path}.{k}" if path else k
            if not isinstance(v, dict) and not (
                isinstance(v, list) and v and all(isinstance(e, dict) for e in v)
            ):
                out.append((p, k))
            out.extend(_leaves(v, p))
    elif isinstance(value, list) and value and all(isinstance(e, dict) for e in value):
        for i, e in enumerate(value):
            out.append((f"{path}[{i}]", None))
            out.extend(_leaves(e, f"{path}[{i}]"))
    return out


@given(_tables)
def test_locator_on_generated_documents(doc: dict[str, object]) -> None:
    text = tomlkit.dumps(doc)
    assert tomllib.loads(text) == doc
    loc = TomlLocator(text)
    lines = text.splitlines()
    for path, key in _leaves(doc, ""):
        line = lines[loc.line_of(path) - 1]
        if key is None:
            assert line.lstrip().startswith("[["), (path, line, text)
        else:
            assert key in line and "=" in line, (path, line, text)
