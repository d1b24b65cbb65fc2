"""Reading the store for polling (the io half of ``ipsecd.policy.poll``).

The engine reads the store's files (bytes and permission bits, in load order) and hands them to
``ipsecd.policy.poll.poll``, which decides whether they changed and whether they are good. This
module holds what is not pure: reading the files, and the ``--poll-interval`` override of the
assigned policy's ``pollinginterval``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

from ipsecd.policy.issues import ConfigIssue, StoreError
from ipsecd.policy.model import Store
from ipsecd.policy.poll import PollState, StoreFileContent, content_digest, interval_of
from ipsecd.policy.store import store_files


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
