"""The engine's store poller (the io half of ``ipsecd.policy.poll``).

Every ``pollinginterval`` minutes of the assigned policy (``--poll-interval SECONDS`` overrides
it; 0 turns polling off) and on SIGHUP (``force``), ``StorePoller.refresh`` reads the store's
files (bytes and permission bits, in load order) and hands them to ``ipsecd.policy.poll.poll``,
which decides whether they changed and whether they are good. Changed and good: the engine's
``apply`` installs it whole (the SIGHUP path), then POLICY_CHANGED and POLICY_APPLIED go to the
event log. Bad (or refused by the kernel): logged, one POLICY_REJECTED per content (every time
when forced: the operator asked), and the policy in force stays.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Generic, TypeVar

from ipsecd.log.events import Event, PolicyRejected
from ipsecd.policy.issues import ConfigIssue, StoreError
from ipsecd.policy.model import Store
from ipsecd.policy.poll import (
    Decision,
    PollState,
    StoreFileContent,
    applied_event,
    content_digest,
    interval_of,
    poll,
)
from ipsecd.policy.store import store_files

C = TypeVar("C")


def read_store_contents(path: Path) -> list[StoreFileContent]:
    """The store's files as ``load_store`` reads them; StoreError if one cannot be read."""
    out: list[StoreFileContent] = []
    issues: list[ConfigIssue] = []
    for f in store_files(path):  # StoreError when the path is gone
        try:
            data = f.read_bytes()
            mode = stat.S_IMODE(os.stat(f).st_mode)
        except OSError as exc:
            issues.append(ConfigIssue(str(f), 0, "", f"cannot read: {exc.strerror}"))
            continue
        out.append(StoreFileContent(str(f), data, mode))
    if issues:
        raise StoreError(issues)
    return out


def with_override(state: PollState, now: float, override: float | None) -> PollState:
    """``--poll-interval SECONDS`` (> 0) replaces the policy's interval; None keeps it."""
    if override is None or override <= 0:
        return state
    return replace(state, interval_seconds=override, next_poll=now + override)


def initial_state(
    files: list[StoreFileContent], store: Store, now: float, override: float | None
) -> PollState:
    """The poller's state for the store the daemon started with."""
    interval = interval_of(store)
    state = PollState(
        applied_digest=content_digest(files),
        applied=store,
        next_poll=now + interval,
        interval_seconds=interval,
    )
    return with_override(state, now, override)


class StorePoller(Generic[C]):
    """Polls the store for the engine; ``C`` is the engine's compiled configuration.

    ``compile``: validated store -> C (ExpansionError/ValueError when it cannot be);
    ``apply``: install C whole, None or why the kernel refused it (the old one stays);
    ``filters``: C's specific filter count (POLICY_APPLIED); ``emit``: the event log."""

    def __init__(
        self,
        path: Path,
        override: float | None,
        *,
        compile: Callable[[Store], C],
        apply: Callable[[C], str | None],
        filters: Callable[[C], int],
        emit: Callable[[Event], None],
        log: Callable[[str], None],
    ) -> None:
        self.path = path
        self.override = override
        self._compile, self._apply, self._filters = compile, apply, filters
        self._emit, self._log = emit, log
        self.state = PollState()
        self._read_error: str | None = None  # a store that cannot be read: reported once
        self._timer: asyncio.TimerHandle | None = None

    def start(self, files: list[StoreFileContent], store: Store, now: float) -> None:
        self.state = initial_state(files, store, now, self.override)

    def schedule(self, loop: asyncio.AbstractEventLoop, now: float, callback: Callable[[], None]) -> None:
        """(Re)arm the timer for the next poll; nothing when polling is off."""
        self.cancel()
        if self.override == 0:
            return
        self._timer = loop.call_later(max(0.0, self.state.next_poll - now), callback)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def postpone(self, now: float) -> None:
        """After an unexpected failure: try again one interval later, not at once."""
        self.state = replace(self.state, next_poll=now + self.state.interval_seconds)

    def _refused(self, error: str, report: bool) -> bool:
        self._log(f"reload refused, keeping the running configuration: {error}")
        if report:
            applied = self.state.applied
            in_force = applied.settings.assigned_policy if applied is not None else None
            self._emit(PolicyRejected(policy=in_force, error=error))
        return False

    def refresh(self, now: float, *, force: bool, source: str) -> bool:
        """One poll (``force``: SIGHUP); False when the store was refused."""
        try:
            files = read_store_contents(self.path)
        except StoreError as exc:
            error = f"cannot load the store {self.path}: " + "; ".join(str(exc).splitlines())
            report = force or error != self._read_error
            self._read_error = error
            self.postpone(now)
            self.state = with_override(self.state, now, self.override)
            return self._refused(error, report)
        self._read_error = None
        result = poll(self.state, now, files, self._compile, force=force, source=source)
        state = with_override(result.state, now, self.override)
        if result.decision is Decision.UNCHANGED:  # False: still the content refused before
            self.state = state
            return content_digest(files) != state.rejected_digest
        if result.decision is Decision.REJECTED or result.compiled is None or result.store is None:
            self.state = state
            error = str(result.events[0].fields().get("error", "")) if result.events else ""
            self._log(
                f"reload refused, keeping the running configuration: cannot load the store {self.path}: {error}"
            )
            for event in result.events:
                self._emit(event)
            return False
        refusal = self._apply(result.compiled)
        if refusal is not None:  # the kernel refused it: the policy in force stays
            self.state = replace(self.state, rejected_digest=state.applied_digest, next_poll=state.next_poll)
            return self._refused(refusal, report=True)
        self.state = state
        for event in result.events:
            self._emit(event)
        self._emit(applied_event(result.store, self._filters(result.compiled)))
        return True
