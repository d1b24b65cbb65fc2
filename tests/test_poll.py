"""Policy polling decisions (ipsecd/policy/poll.py)."""

from __future__ import annotations

import ipaddress

import pytest

from ipsecd.log.events import EventId, PolicyChanged, PolicyRejected
from ipsecd.policy.classifier import CompiledPolicy, compile_store
from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import Store
from ipsecd.policy.poll import (
    DEFAULT_POLLING_MINUTES,
    Decision,
    PollState,
    StoreFileContent,
    applied_event,
    changed_objects,
    content_digest,
    due,
    poll,
)

HOST = StaticHost(addresses=(ipaddress.ip_address("192.0.2.10"),))
PSK = "poll-test-secret-psk"
BASE = f"""
[daemon]
assigned_policy = "P"

[[filterlist]]
name = "L"
  [[filterlist.filter]]
  srcaddr = "me"
  dstaddr = "192.0.2.7"

[[filteraction]]
name = "A"
action = "negotiate"
qmsecmethods = ["ESP[AES128,SHA256]"]

[[policy]]
name = "P"
pollinginterval = 15
  [[policy.rule]]
  name = "r"
  filterlist = "L"
  filteraction = "A"
  auth = [{{ method = "psk", psk = "{PSK}" }}]
"""


def files(text: str, mode: int | None = 0o600) -> list[StoreFileContent]:
    return [StoreFileContent("/etc/ipsecd/policies.toml", text.encode(), mode)]


def compile_(store: Store) -> CompiledPolicy:
    return compile_store(store, HOST)


def test_first_poll_applies_and_sets_the_interval() -> None:
    result = poll(PollState(), 0.0, files(BASE), compile_)
    assert result.decision is Decision.APPLY
    assert result.store is not None and result.compiled is not None
    assert result.compiled.policy == "P" and len(result.compiled.filters) == 2
    assert result.state.interval_seconds == 15 * 60 and result.state.next_poll == 900.0
    assert isinstance(result.events[0], PolicyChanged) and result.events[0].objects == ("<all>",)
    applied = applied_event(result.store, len(result.compiled.filters))
    assert (applied.event_id, applied.policy, applied.rules, applied.filters) == (
        EventId.POLICY_APPLIED,
        "P",
        1,
        2,
    )


def test_unchanged_content_is_not_reapplied() -> None:
    first = poll(PollState(), 0.0, files(BASE), compile_)
    assert not due(first.state, 899.0) and due(first.state, 900.0)
    again = poll(first.state, 900.0, files(BASE), compile_)
    assert again.decision is Decision.UNCHANGED and again.events == () and again.store is None
    assert again.state.next_poll == 1800.0
    forced = poll(first.state, 901.0, files(BASE), compile_, force=True, source="reload")
    assert forced.decision is Decision.APPLY and forced.events[0].fields()["source"] == "reload"
    assert forced.events[0].fields()["objects"] == []


def test_a_change_names_the_changed_objects() -> None:
    first = poll(PollState(), 0.0, files(BASE), compile_)
    changed = BASE.replace('dstaddr = "192.0.2.7"', 'dstaddr = "192.0.2.8"').replace(
        "pollinginterval = 15", ""
    )
    result = poll(first.state, 900.0, files(changed), compile_)
    assert result.decision is Decision.APPLY
    assert result.events[0].fields()["objects"] == ["filterlist:L", "policy:P"]
    assert result.state.interval_seconds == DEFAULT_POLLING_MINUTES * 60


def test_a_bad_store_is_rejected_whole_and_reported_once() -> None:
    first = poll(PollState(), 0.0, files(BASE), compile_)
    broken = BASE.replace('filteraction = "A"', 'filteraction = "Missing"')
    rejected = poll(first.state, 900.0, files(broken), compile_)
    assert rejected.decision is Decision.REJECTED and rejected.store is None and rejected.compiled is None
    event = rejected.events[0]
    assert isinstance(event, PolicyRejected) and event.policy == "P" and "Missing" in event.error
    assert PSK not in event.error
    # The policy in force stays; the same bad content is not reported again at the next poll.
    assert rejected.state.applied_digest == first.state.applied_digest
    assert rejected.state.applied is first.state.applied
    again = poll(rejected.state, 1800.0, files(broken), compile_)
    assert again.decision is Decision.UNCHANGED and again.events == ()
    # Fixing it applies again; going back to the applied content is simply unchanged.
    assert poll(again.state, 2700.0, files(BASE), compile_).decision is Decision.UNCHANGED
    fixed = poll(again.state, 2700.0, files(BASE.replace("192.0.2.7", "192.0.2.9")), compile_)
    assert fixed.decision is Decision.APPLY and fixed.state.rejected_digest is None


@pytest.mark.parametrize(
    "content,message",
    [
        (files(BASE, mode=0o644), "chmod 600"),
        ([StoreFileContent("x.toml", b"\xff\xfe[daemon]")], "not valid UTF-8"),
        (files(BASE.replace("192.0.2.7", "db.example.com")), "does not resolve"),  # expansion fails
        (files("[daemon]\nipsecexempt = 9\n"), "ipsecexempt"),
    ],
)
def test_rejections(content: list[StoreFileContent], message: str) -> None:
    result = poll(PollState(), 0.0, content, compile_)
    assert result.decision is Decision.REJECTED
    assert message in result.events[0].fields()["error"]  # type: ignore[operator]


def test_digest_covers_names_and_boundaries() -> None:
    a = [StoreFileContent("a", b"xy"), StoreFileContent("b", b"z")]
    b = [StoreFileContent("a", b"x"), StoreFileContent("b", b"yz")]
    c = [StoreFileContent("a2", b"xy"), StoreFileContent("b", b"z")]
    assert len({content_digest(a), content_digest(b), content_digest(c)}) == 3
    assert content_digest(a) == content_digest(list(a))


def test_changed_objects_lists_settings() -> None:
    one = poll(PollState(), 0.0, files(BASE), compile_).store
    two = poll(
        PollState(), 0.0, files(BASE.replace('assigned_policy = "P"', "ipsecexempt = 1")), compile_
    ).store
    assert one is not None and two is not None
    assert changed_objects(one, two) == ("[daemon]",)
    assert changed_objects(one, one) == ()
