"""Policy polling decisions: when to re-read the store, whether it changed, what to apply.

The Windows policy agent re-reads its policy directory every *polling interval* (the assigned
policy's ``pollinginterval``, minutes) and applies what changed. ipsecd does the same with its
store: the daemon (io side) reads the store files' bytes and modes when ``due()`` says so (or
at once on SIGHUP: ``force``) and hands them to ``poll()``, which decides:

- the content hash (SHA-256 over every file's name and bytes, in load order) equals the one
  applied: ``UNCHANGED``, nothing to do;
- it equals the last *rejected* content: ``UNCHANGED`` as well (the error was reported once;
  it is not repeated every interval);
- otherwise the new content is loaded and validated *and* compiled (``compile`` expands the
  assigned policy for this host); any error: ``REJECTED`` with a POLICY_REJECTED event, the
  policy in force stays (whole or nothing: no part of a bad store is applied); success:
  ``APPLY`` with the new store, its compiled policy and a POLICY_CHANGED event naming the
  objects that changed. The caller applies it and then emits POLICY_APPLIED
  (``applied_event``).

Pure: the clock (``now``, seconds) and the file contents are passed in.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from ipsecd.log.events import Event, PolicyApplied, PolicyChanged, PolicyRejected
from ipsecd.policy.issues import ConfigIssue, StoreError
from ipsecd.policy.model import Store
from ipsecd.policy.order import ExpansionError
from ipsecd.policy.validate import Validator

DEFAULT_POLLING_MINUTES = 180  # with no policy assigned (Windows' default interval)
MAX_ERROR_LINES = 10

C = TypeVar("C")


class Decision(enum.Enum):
    UNCHANGED = "unchanged"
    APPLY = "apply"
    REJECTED = "rejected"


@dataclass(frozen=True)
class StoreFileContent:
    """One store file as read by the daemon: its name, bytes and permission bits."""

    name: str
    data: bytes
    mode: int | None = None


@dataclass(frozen=True)
class PollState:
    """What the poller remembers between polls."""

    applied_digest: str | None = None
    applied: Store | None = None
    rejected_digest: str | None = None
    next_poll: float = 0.0
    interval_seconds: float = DEFAULT_POLLING_MINUTES * 60


@dataclass(frozen=True)
class PollResult(Generic[C]):
    decision: Decision
    state: PollState
    store: Store | None = None  # APPLY: the new store, to be applied whole
    compiled: C | None = None  # APPLY: what ``compile`` made of it
    events: tuple[Event, ...] = ()


def content_digest(files: Sequence[StoreFileContent]) -> str:
    """SHA-256 over the files in load order (name length, name, data length, data)."""
    h = hashlib.sha256()
    for f in files:
        name = f.name.encode()
        h.update(len(name).to_bytes(4, "big") + name + len(f.data).to_bytes(8, "big") + f.data)
    return h.hexdigest()


def due(state: PollState, now: float) -> bool:
    return now >= state.next_poll


def interval_of(store: Store | None) -> float:
    """Seconds until the next poll: the assigned policy's polling interval (minutes)."""
    policy = store.assigned if store is not None else None
    return (policy.pollinginterval if policy is not None else DEFAULT_POLLING_MINUTES) * 60.0


def load_contents(files: Sequence[StoreFileContent]) -> Store:
    """Validate the files as ``load_store`` does (UTF-8, PSK file modes, every check)."""
    inputs: list[tuple[str, str, int | None]] = []
    issues: list[ConfigIssue] = []
    for f in files:
        try:
            inputs.append((f.name, f.data.decode("utf-8"), f.mode))
        except UnicodeDecodeError as exc:
            issues.append(ConfigIssue(f.name, f.data[: exc.start].count(b"\n") + 1, "", "not valid UTF-8"))
    if issues:
        raise StoreError(issues)
    return Validator().run(inputs)


def changed_objects(old: Store | None, new: Store) -> tuple[str, ...]:
    """Names of the user objects and settings that differ (added, removed or changed)."""
    if old is None:
        return ("<all>",)
    names: list[str] = []
    if old.settings != new.settings:
        names.append("[daemon]")
    for kind, a, b in (
        ("filterlist", old.filterlists, new.filterlists),
        ("filteraction", old.filteractions, new.filteractions),
        ("policy", old.policies, new.policies),
    ):
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                names.append(f"{kind}:{name}")
    return tuple(names)


def _error_text(exc: Exception) -> str:
    lines = str(exc).splitlines()
    more = len(lines) - MAX_ERROR_LINES
    return "; ".join(lines[:MAX_ERROR_LINES]) + (f"; and {more} more" if more > 0 else "")


def poll(
    state: PollState,
    now: float,
    files: Sequence[StoreFileContent],
    compile: Callable[[Store], C],
    *,
    force: bool = False,
    source: str = "poll",
) -> PollResult[C]:
    """One poll (see the module docstring). ``force``: SIGHUP, re-apply even unchanged content."""
    digest = content_digest(files)
    if not force and digest in (state.applied_digest, state.rejected_digest):
        return PollResult(Decision.UNCHANGED, replace(state, next_poll=now + state.interval_seconds))
    in_force = state.applied.settings.assigned_policy if state.applied is not None else None
    try:
        store = load_contents(files)
        compiled = compile(store)
    except (StoreError, ExpansionError, ValueError) as exc:
        rejected = replace(state, rejected_digest=digest, next_poll=now + state.interval_seconds)
        refusal = PolicyRejected(policy=in_force, error=_error_text(exc))
        return PollResult(Decision.REJECTED, rejected, events=(refusal,))
    interval = interval_of(store)
    new_state = PollState(
        applied_digest=digest,
        applied=store,
        rejected_digest=None,
        next_poll=now + interval,
        interval_seconds=interval,
    )
    change = PolicyChanged(source=source, objects=changed_objects(state.applied, store))
    return PollResult(Decision.APPLY, new_state, store, compiled, (change,))


def applied_event(store: Store, filters: int) -> PolicyApplied:
    """POLICY_APPLIED for a store the caller has applied (``filters``: specific filters)."""
    policy = store.assigned
    rules = sum(1 for r in policy.rules if r.active) if policy is not None else 0
    return PolicyApplied(policy=policy.name if policy is not None else None, rules=rules, filters=filters)
