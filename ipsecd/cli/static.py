"""``ipsecctl static``: the commands of the netsh ipsec static context, run against a store.

Edits (``add``, ``set``, ``delete``, ``importpolicy``) follow one path: open the store's files
with ``StoreEditor``, apply the change to the TOML documents, validate the resulting texts as a
whole with the loader (``parse_store_texts``), and only then write the changed files atomically.
A rejected edit leaves every file as it was and reports the loader's errors.

Reading commands (``show``, ``check``, ``match``, ``exportpolicy``) load the store with
``load_store`` (which also checks the modes of files holding preshared keys).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from ipsecd.cli.context import CliError, Context
from ipsecd.cli.grammar import Command, UsageError, parse_bool
from ipsecd.cli.show import cmd_check, cmd_match, cmd_show
from ipsecd.policy import schema
from ipsecd.policy.edit import (
    KIND_TITLES,
    NAME_KEYS,
    OBJECT_KINDS,
    EditError,
    StoreEditor,
    atomic_write,
    store_lock,
)
from ipsecd.policy.model import Filter, Store
from ipsecd.policy.store import (
    STORE_MAIN,
    STORE_POLICIES,
    StoreError,
    edit_file_for_new_objects,
    parse_store_texts,
    store_files,
)


# -- opening the store -------------------------------------------------------------------------
def open_editor(config: Path) -> StoreEditor:
    """An editor on the store at ``config`` (a directory or a single file; it may not exist yet)."""
    if config.exists():
        files = store_files(config)
        new_objects = edit_file_for_new_objects(config)
    else:
        files = []
        new_objects = config if config.suffix == ".toml" else config / STORE_POLICIES
    settings_file = config / STORE_MAIN if new_objects != config else config
    return StoreEditor(files, new_objects, settings_file)


def _validate(editor: StoreEditor) -> Store:
    return parse_store_texts(editor.texts())


def _commit(ctx: Context, editor: StoreEditor, message: str) -> int:
    try:
        _validate(editor)  # nothing is written unless the whole edited store is valid
    except StoreError as exc:
        exc.edit_rejected = True  # type: ignore[attr-defined]
        raise
    regrouped = editor.regrouped_files()
    written = editor.write()
    ctx.say(message if written else message + " (no change)")
    for path in regrouped:
        ctx.say(f"note: {path}: interleaved tables were regrouped by kind (tomlkit keeps them together)")
    return 0


def _builtin_names(kind: str) -> set[str]:
    """Names of built-in objects of a kind (they are not in any file and cannot be edited)."""
    store = parse_store_texts([])
    tables: dict[str, Mapping[str, Any]] = {
        "policy": store.policies,
        "filterlist": store.filterlists,
        "filteraction": store.filteractions,
    }
    return set(tables[kind])


def _require_user_object(editor: StoreEditor, kind: str, name: str) -> None:
    if editor.find(kind, name) is None:
        if name in _builtin_names(kind):
            raise EditError(f"{KIND_TITLES[kind]} {name!r} is built-in and cannot be changed")
        raise EditError(f"no {KIND_TITLES[kind]} named {name!r} in the store files")


# -- mapping command parameters to TOML values -------------------------------------------------
POLICY_KEYS = schema.POLICY_SCALAR_KEYS
FILTERLIST_KEYS = schema.FILTERLIST_SCALAR_KEYS
FILTER_KEYS = schema.FILTER_KEYS
FILTERACTION_KEYS = schema.FILTERACTION_KEYS
RULE_KEYS = schema.RULE_SCALAR_KEYS
_NONE_WORDS = {"", "none", "0"}


def _toml_value(key: str, value: Any) -> Any:
    if isinstance(value, tuple):
        arr = tomlkit.array()
        arr.extend(value)
        return arr
    if key == "tunnel" and isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
        return None  # netsh: tunnel=0 / tunnel="" clears the endpoint (transport mode)
    return value


def _values(cmd: Command, keys: Sequence[str]) -> dict[str, Any]:
    return {k: _toml_value(k, cmd.args[k]) for k in keys if k in cmd.args}


def _auth(cmd: Command) -> Any:
    """The ``auth`` array of a rule from psk= / rootca= / kerberos=, in the order typed."""
    arr = tomlkit.array()
    for kind, value in cmd.auth:
        t = tomlkit.inline_table()
        if kind == "psk":
            t.update({"method": "psk", "psk": value})
        elif kind == "kerberos":
            t.update({"method": "kerberos"})
        else:
            # netsh: rootca="CA-NAME certmap:yes excludecaname:no"; ours: a PEM path + certmap.
            words = value.split()
            if not words:
                raise UsageError("rootca: expected the path of a PEM root CA certificate")
            t.update({"method": "cert", "rootca": words[0]})
            for opt in words[1:]:
                k, _, v = opt.partition(":")
                if k.lower() != "certmap":
                    raise UsageError(f"rootca: unknown option {opt!r} (only certmap:yes|no)")
                t["certmap"] = parse_bool("rootca certmap", v)
        arr.append(t)
    return arr


# -- edits ---------------------------------------------------------------------------------------
def _assign(editor: StoreEditor, name: str, assign: bool) -> None:
    if assign:
        editor.set_setting("assigned_policy", name)
    elif editor.setting("assigned_policy") == name:
        editor.set_setting("assigned_policy", None)


def cmd_add(ctx: Context, cmd: Command) -> int:
    editor = open_editor(ctx.config)
    name = cmd.str_arg("name")
    if cmd.obj == "policy":
        assert name is not None
        values = _values(cmd, POLICY_KEYS)
        if cmd.auth:
            values["defaultruleauth"] = _auth(cmd)
        editor.add("policy", values)
        if "assign" in cmd.args:
            _assign(editor, name, bool(cmd.args["assign"]))
    elif cmd.obj == "filterlist":
        editor.add("filterlist", _values(cmd, FILTERLIST_KEYS))
    elif cmd.obj == "filteraction":
        editor.add("filteraction", _values(cmd, FILTERACTION_KEYS))
    elif cmd.obj == "filter":
        fl = str(cmd.args["filterlist"])
        _require_user_object(editor, "filterlist", fl)
        editor.add_filter(fl, _values(cmd, FILTER_KEYS))
        return _commit(ctx, editor, f"added a filter to filter list {fl!r}")
    else:  # rule
        policy = str(cmd.args["policy"])
        _require_user_object(editor, "policy", policy)
        values = _values(cmd, RULE_KEYS)
        if cmd.auth:
            values = {**values, "auth": _auth(cmd)}
        editor.add_rule(policy, values)
        return _commit(ctx, editor, f"added rule {name!r} to policy {policy!r}")
    return _commit(ctx, editor, f"added {KIND_TITLES[cmd.obj]} {name!r}")


def cmd_set(ctx: Context, cmd: Command) -> int:
    editor = open_editor(ctx.config)
    policy_arg = cmd.str_arg("policy")
    if (
        cmd.obj in ("defaultrule", "rule")
        and policy_arg is not None
        and editor.find("policy", policy_arg) is None
    ) and policy_arg in _builtin_names("policy"):
        return _set_builtin_auth(ctx, cmd, editor, policy_arg)
    if cmd.obj == "config":
        return _set_config(ctx, cmd, editor)
    if cmd.obj == "defaultrule":
        policy = str(cmd.args["policy"])
        _require_user_object(editor, "policy", policy)
        values: dict[str, Any] = {}
        if "activate" in cmd.args:
            values["activatedefaultrule"] = cmd.args["activate"]
        if cmd.auth:
            values["defaultruleauth"] = _auth(cmd)
        editor.update("policy", policy, values)
        return _commit(ctx, editor, f"set the default response rule of policy {policy!r}")
    name = str(cmd.args["name"])
    newname = cmd.str_arg("newname")
    if cmd.obj == "rule":
        policy = str(cmd.args["policy"])
        _require_user_object(editor, "policy", policy)
        values = _values(cmd, [k for k in RULE_KEYS if k != "name"])
        if "tunnel" in cmd.args:
            values["tunnel"] = _toml_value("tunnel", cmd.args["tunnel"])
        if cmd.auth:
            values["auth"] = _auth(cmd)
        if newname is not None:
            values["name"] = newname
        editor.update_rule(policy, name, values)
        return _commit(ctx, editor, f"set rule {name!r} of policy {policy!r}")
    keys = {"policy": POLICY_KEYS, "filterlist": FILTERLIST_KEYS, "filteraction": FILTERACTION_KEYS}[cmd.obj]
    values = _values(cmd, [k for k in keys if k != "name"])
    only_assign = cmd.obj == "policy" and set(cmd.args) == {"name", "assign"}
    if not only_assign:  # a built-in policy may be assigned, not changed
        _require_user_object(editor, cmd.obj, name)
        if values:
            editor.update(cmd.obj, name, values)
        if newname is not None:
            editor.rename(cmd.obj, name, newname)
    if "assign" in cmd.args:
        _assign(editor, newname or name, bool(cmd.args["assign"]))
    return _commit(ctx, editor, f"set {KIND_TITLES[cmd.obj]} {name!r}")


STORE_CONFIG = {"ipsecexempt": (0, 3), "ikelogging": (0, 1), "strongcrlcheck": (0, 2)}


def _set_config(ctx: Context, cmd: Command, editor: StoreEditor) -> int:
    """``set config property= value=`` (ipsecd): a ``[daemon]`` setting of the store."""
    prop = str(cmd.args["property"]).strip().lower()
    text = str(cmd.args["value"]).strip().lower()
    if prop not in STORE_CONFIG:
        raise UsageError(f"set config: property must be one of {', '.join(STORE_CONFIG)}, not {prop!r}")
    if prop == "ikelogging" and text in ("yes", "no", "y", "n"):
        text = "1" if parse_bool("value", text) else "0"
    lo, hi = STORE_CONFIG[prop]
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise UsageError(f"set config: {prop} takes a number {lo}..{hi}, not {cmd.args['value']!r}")
    editor.set_setting(prop, bool(int(text)) if prop == "ikelogging" else int(text))
    return _commit(ctx, editor, f"set {prop} = {text}")


def _set_builtin_auth(ctx: Context, cmd: Command, editor: StoreEditor, policy: str) -> int:
    """Built-in policies take one thing: their authentication methods (``[[builtinauth]]``).

    Windows authenticates the built-in rules with Kerberos, which ipsecd does not support; ``set
    defaultrule policy=BUILTIN psk=...`` or ``set rule name=... policy=BUILTIN psk=...`` gives the
    built-in policy (all its rules and its default response rule) these methods instead.
    """
    other = set(cmd.args) - {"policy", "name"}
    if other or not cmd.auth:
        raise EditError(
            f"policy {policy!r} is built-in: only its authentication (psk=, rootca=) can be set, "
            f"not {', '.join(sorted(other)) or 'nothing'}"
        )
    editor.set_builtin_auth(policy, _auth(cmd))
    return _commit(ctx, editor, f"set the authentication of built-in policy {policy!r}")


def _matching_filter(cmd: Command) -> Filter:
    """The filter described by a ``delete filter`` command, normalized by the loader itself."""
    doc = tomlkit.document()
    fl = tomlkit.table()
    fl["name"] = "delete filter"
    ft = tomlkit.table()
    for k, v in _values(cmd, FILTER_KEYS).items():
        ft[k] = v
    filters = tomlkit.aot()
    filters.append(ft)
    fl["filter"] = filters
    lists = tomlkit.aot()
    lists.append(fl)
    doc["filterlist"] = lists
    store = parse_store_texts([("<delete filter arguments>", doc.as_string())])
    return store.filterlists["delete filter"].filters[0]


def _delete_filter(ctx: Context, cmd: Command, editor: StoreEditor) -> int:
    name = str(cmd.args["filterlist"])
    _require_user_object(editor, "filterlist", name)
    store = _validate(editor)  # the current filters, parsed in file order
    want = _matching_filter(cmd)
    optional = [k for k in ("protocol", "srcport", "dstport", "mirrored") if k in cmd.args]
    doomed = [
        i
        for i, f in enumerate(store.filterlists[name].filters)
        if f.src == want.src
        and f.dst == want.dst
        and all(getattr(f, k) == getattr(want, k) for k in optional)
    ]
    if not doomed:
        raise EditError(f"no filter of filter list {name!r} matches {want.src} -> {want.dst}")
    editor.remove_filters(name, doomed)
    n = len(doomed)
    return _commit(ctx, editor, f"deleted {n} filter{'s' if n > 1 else ''} from filter list {name!r}")


def cmd_delete(ctx: Context, cmd: Command) -> int:
    editor = open_editor(ctx.config)
    if cmd.obj == "filter":
        return _delete_filter(ctx, cmd, editor)
    if cmd.obj == "all":
        counts = [editor.remove_all(k) for k in OBJECT_KINDS]
        assigned = editor.setting("assigned_policy")
        if assigned is not None and str(assigned) not in _builtin_names("policy"):
            editor.set_setting("assigned_policy", None)
        return _commit(
            ctx,
            editor,
            f"deleted {counts[2]} policies, {counts[0]} filter lists and {counts[1]} filter actions",
        )
    if cmd.obj == "rule":
        policy = str(cmd.args["policy"])
        _require_user_object(editor, "policy", policy)
        n = editor.remove_rules(policy, None if cmd.all else cmd.str_arg("name"))
        what = "all rules" if cmd.all else f"rule {cmd.str_arg('name')!r}"
        return _commit(ctx, editor, f"deleted {what} of policy {policy!r} ({n})")
    title = KIND_TITLES[cmd.obj]
    if cmd.all:
        names = editor.names(cmd.obj)
        n = editor.remove_all(cmd.obj)
        if cmd.obj == "policy" and editor.setting("assigned_policy") in names:
            editor.set_setting("assigned_policy", None)
        return _commit(ctx, editor, f"deleted every {title} in the store files ({n})")
    name = str(cmd.args["name"])
    _require_user_object(editor, cmd.obj, name)
    editor.remove(cmd.obj, name)
    msg = f"deleted {title} {name!r}"
    if cmd.obj == "policy" and editor.setting("assigned_policy") == name:
        editor.set_setting("assigned_policy", None)
        msg += " (it was assigned: no policy is assigned now)"
    return _commit(ctx, editor, msg)


IMPORT_KINDS = (*OBJECT_KINDS, "builtinauth")  # what exportpolicy writes and importpolicy reads


# -- export / import ---------------------------------------------------------------------------
def cmd_exportpolicy(ctx: Context, cmd: Command) -> int:
    editor = open_editor(ctx.config)
    _validate(editor)
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"ipsecctl static exportpolicy of {ctx.config}"))
    doc.add(tomlkit.comment("the user's filter lists, filter actions and policies; keep it private (0600)"))
    doc.add(tomlkit.nl())
    n = 0
    for kind in IMPORT_KINDS:
        tables = editor.object_tables(kind)
        if not tables:
            continue
        aot = tomlkit.aot()
        for t in tables:
            aot.append(copy.deepcopy(t))
        doc[kind] = aot
        n += len(tables)
    text = doc.as_string()
    parse_store_texts([(str(cmd.args["file"]), text)])  # what we export must import again
    atomic_write(Path(str(cmd.args["file"])), text)
    ctx.say(f"exported {n} objects to {cmd.args['file']}")
    return 0


def cmd_importpolicy(ctx: Context, cmd: Command) -> int:
    path = Path(str(cmd.args["file"]))
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomlkit.parse(text)
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from exc
    except Exception as exc:
        raise CliError(f"{path}: not valid TOML: {exc}") from exc
    extra = [k for k in doc if k not in IMPORT_KINDS]
    if extra:
        raise CliError(
            f"{path}: only filterlist, filteraction, policy and builtinauth tables can be imported, not {extra}"
        )
    objects: list[tuple[str, Table]] = []
    for kind in IMPORT_KINDS:
        item = doc.get(kind)
        if item is None:
            continue
        if not isinstance(item, AoT):
            raise CliError(f"{path}: {kind} must be an array of tables ([[{kind}]])")
        objects.extend((kind, t) for t in item)
    # First validate the file against the store without the objects it replaces, so errors
    # name lines of the imported file; then apply it and validate the result as usual.
    scratch = open_editor(ctx.config)
    for kind, t in objects:
        name = str(t.get(NAME_KEYS[kind]))
        if scratch.find(kind, name) is not None:
            scratch.remove(kind, name)
    parse_store_texts([*scratch.texts(), (str(path), text)])
    editor = open_editor(ctx.config)
    replaced = sum(editor.replace_or_add(kind, copy.deepcopy(t)) for kind, t in objects)
    return _commit(ctx, editor, f"imported {len(objects)} objects from {path} ({replaced} replaced)")


COMMANDS: dict[str, Callable[[Context, Command], int]] = {
    "add": cmd_add,
    "set": cmd_set,
    "delete": cmd_delete,
    "show": cmd_show,
    "check": cmd_check,
    "match": cmd_match,
    "exportpolicy": cmd_exportpolicy,
    "importpolicy": cmd_importpolicy,
}


EDITS = frozenset({"add", "set", "delete", "importpolicy"})


def execute(ctx: Context, cmd: Command) -> int:
    if ctx.json and cmd.verb not in ("show", "match", "check"):
        raise UsageError("--json is accepted by show, match and check only")
    if cmd.verb in EDITS:
        with store_lock(ctx.config):
            return COMMANDS[cmd.verb](ctx, cmd)
    return COMMANDS[cmd.verb](ctx, cmd)
