"""The event catalogue: stable IDs, one spec per event, JSON-ready fields, no secrets."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import typing
from pathlib import Path

import pytest

from ipsecd.log import events as ev
from ipsecd.log.oakley import is_secret_name

A = ipaddress.ip_address("192.0.2.1")
B = ipaddress.ip_address("2001:db8::2")

# The published numbering.  Changing a value here means breaking every monitoring rule out
# there: add new IDs instead.
STABLE_IDS = {
    "DAEMON_STARTED": 1000,
    "DAEMON_STOPPED": 1001,
    "POLICY_CHANGED": 1100,
    "POLICY_APPLIED": 1101,
    "POLICY_REJECTED": 1102,
    "MAIN_MODE_SA_ESTABLISHED": 1200,
    "MAIN_MODE_SA_ENDED": 1201,
    "QUICK_MODE_SA_ESTABLISHED": 1202,
    "QUICK_MODE_SA_ENDED": 1203,
    "NEGOTIATION_FAILED": 1210,
    "AUTHENTICATION_FAILED": 1211,
    "CERTIFICATE_TRUST_FAILED": 1212,
    "SA_EXPIRED": 1220,
    "SA_REKEYED": 1221,
    "DPD_PEER_DEAD": 1230,
    "PACKETS_DROPPED": 1300,
}


def test_ids_are_stable() -> None:
    assert {e.name: int(e) for e in ev.EventId} == STABLE_IDS


def test_every_id_has_one_spec_and_one_class() -> None:
    assert set(ev.SPECS) == set(ev.EventId)
    ids = [cls.event_id for cls in ev.ALL_EVENTS]
    assert sorted(ids) == sorted(ev.EventId)
    for spec in ev.SPECS.values():
        assert spec.meaning
        assert isinstance(spec.priority, ev.Priority)


def test_priorities_match_syslog_levels() -> None:
    assert ev.Priority.ERR == 3 and ev.Priority.WARNING == 4 and ev.Priority.INFO == 6
    assert ev.SPECS[ev.EventId.POLICY_REJECTED].priority == ev.Priority.ERR
    assert ev.SPECS[ev.EventId.NEGOTIATION_FAILED].priority == ev.Priority.WARNING


def test_windows_mapping_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text()
    for spec in ev.SPECS.values():
        row = next((line for line in doc.splitlines() if f"`{spec.name}`" in line), None)
        assert row is not None, f"{spec.name} missing from docs/events.md"
        assert str(int(spec.event_id)) in row
        for wid in spec.windows_ids:
            assert str(wid) in row, f"{spec.name}: Windows {wid} not in its docs row"


SECRET_TYPES = (bytes, bytearray, memoryview)


def _field_types(cls: type[ev.Event]) -> dict[str, object]:
    return typing.get_type_hints(cls)


@pytest.mark.parametrize("cls", ev.ALL_EVENTS, ids=lambda c: c.__name__)
def test_no_secret_fields(cls: type[ev.Event]) -> None:
    assert dataclasses.is_dataclass(cls)
    for f in dataclasses.fields(cls):
        assert not is_secret_name(f.name), f"{cls.__name__}.{f.name} looks like key material"
        hint = str(_field_types(cls)[f.name])
        assert not re.search(r"\bbytes\b|bytearray|memoryview", hint), f"{cls.__name__}.{f.name}: {hint}"


def _examples() -> list[ev.Event]:
    return [
        ev.DaemonStarted(version="0.1.0", config="/etc/ipsecd", policy="Server (Request Security)"),
        ev.DaemonStopped(reason="signal SIGTERM"),
        ev.PolicyChanged(source="ipsecctl", objects=("web", "web/rule1")),
        ev.PolicyApplied(policy="web", rules=2, filters=7),
        ev.PolicyRejected(policy="web", error="filter list 'x' is empty"),
        ev.MainModeSAEstablished(
            local=A,
            peer=B,
            peer_identity="CN=peer",
            auth_method="certificate",
            encryption="AES-CBC-128",
            integrity="SHA1",
            dh_group=14,
            lifetime_seconds=28800,
            role=ev.Role.INITIATOR,
            certificate=True,
        ),
        ev.MainModeSAEnded(local=A, peer=B, reason=ev.EndReason.DELETED_BY_PEER),
        ev.QuickModeSAEstablished(
            local=A,
            peer=B,
            filter="web/rule1/all-tcp",
            protocol="esp",
            encapsulation="transport",
            inbound_spi=0xC0FFEE01,
            outbound_spi=0x1234,
            encryption="AES-GCM-16-128",
            integrity="none",
            lifetime_seconds=3600,
            lifetime_kilobytes=100000,
            pfs_group=None,
        ),
        ev.QuickModeSAEnded(
            local=A, peer=B, filter="f", inbound_spi=1, outbound_spi=2, reason=ev.EndReason.EXPIRED
        ),
        ev.NegotiationFailed(
            mode=ev.NegotiationMode.MAIN_MODE,
            filter="web/rule1/all",
            failure_point=ev.FailurePoint.PEER,
            reason="no proposal chosen",
            peer=B,
            notify="NO-PROPOSAL-CHOSEN",
        ),
        ev.AuthenticationFailed(
            peer=B, peer_identity="10.0.0.2", auth_method="preshared", reason="hash mismatch"
        ),
        ev.CertificateTrustFailed(peer=B, subject="CN=x", issuer="CN=evil", reason="no trusted root"),
        ev.SAExpired(mode=ev.NegotiationMode.QUICK_MODE, peer=B, spi=7, limit="kilobytes"),
        ev.SARekeyed(mode=ev.NegotiationMode.MAIN_MODE, peer=B, old_spi=None, new_spi=None),
        ev.DPDPeerDead(peer=B, idle_seconds=30, retries=5),
        ev.PacketsDropped(
            interval_seconds=60, counts=((ev.DropReason.REPLAY, 3), (ev.DropReason.INTEGRITY, 2)), peer=B
        ),
    ]


def test_examples_cover_the_catalogue() -> None:
    assert {type(e) for e in _examples()} == set(ev.ALL_EVENTS)


@pytest.mark.parametrize("event", _examples(), ids=lambda e: e.name)
def test_fields_are_json_and_summary_is_one_line(event: ev.Event) -> None:
    fields = event.fields()
    assert json.loads(json.dumps(fields)) == fields
    line = event.summary()
    assert "\n" not in line
    assert line.startswith(event.name)


def test_field_rendering() -> None:
    nf = _examples()[9]
    assert nf.fields() == {
        "mode": "main",
        "filter": "web/rule1/all",
        "failure_point": "peer",
        "reason": "no proposal chosen",
        "peer": "2001:db8::2",
        "local": None,
        "notify": "NO-PROPOSAL-CHOSEN",
    }
    assert nf.summary() == (
        'NEGOTIATION_FAILED mode=main filter=web/rule1/all failure_point=peer reason="no proposal chosen" '
        "peer=2001:db8::2 notify=NO-PROPOSAL-CHOSEN"
    )
    dropped = _examples()[-1]
    assert isinstance(dropped, ev.PacketsDropped)
    assert dropped.total == 5
    assert dropped.fields()["counts"] == {"replay": 3, "integrity": 2}


def test_events_are_frozen() -> None:
    e = ev.DaemonStopped(reason="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.reason = "y"  # type: ignore[misc]


def test_bytes_refused_at_serialisation() -> None:
    # Even if someone bypasses the types, bytes never become log text.
    bad = ev.DaemonStopped(reason=b"\x01\x02key")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not loggable"):
        bad.fields()
