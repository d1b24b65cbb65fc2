"""The Oakley-style negotiation log: format, ikelogging switch, size cap, redaction."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipsecd.log.events import FailurePoint, NegotiationMode
from ipsecd.log.oakley import REDACTED, OakleyLog, Redactor, Secret, format_value, is_secret_name

T0 = dt.datetime(2026, 11, 27, 12, 24, 2, 123000, tzinfo=dt.UTC)
PEER = ipaddress.ip_address("10.0.0.2")
MM = NegotiationMode.MAIN_MODE
QM = NegotiationMode.QUICK_MODE


def test_disabled_writes_nothing(tmp_path: Path) -> None:
    log = OakleyLog(tmp_path / "oakley.log")
    log.log(T0, "hello")
    log.acquire(T0, src="10.0.0.1", dst=PEER, filter="f")
    assert not (tmp_path / "oakley.log").exists()
    log.set_enabled(True)
    log.log(T0, "hello")
    log.set_enabled(False)
    log.log(T0, "after")
    assert (tmp_path / "oakley.log").read_text() == "2026-11-27 12:24:02.123 hello\n"


def test_negotiation_trace_format(tmp_path: Path) -> None:
    log = OakleyLog(tmp_path / "oakley.log", enabled=True)
    log.acquire(T0, src=ipaddress.ip_address("10.0.0.1"), dst=PEER, filter="web/r1/f1", neg=7)
    log.step(T0, MM, "start as initiator", neg=7, peer=PEER, icookie=0x1F2E3D4C5B6A7988)
    log.proposal(T0, MM, 1, ["AES-CBC-128", "SHA1", "MODP-2048", "preshared"], neg=7, lifetime="28800s")
    log.proposal(T0, QM, 2, [], verdict="rejected", neg=7)
    log.failure(T0, MM, filter="web/r1/f1", point=FailurePoint.PEER, reason="no proposal chosen", neg=7)
    log.close()
    assert (tmp_path / "oakley.log").read_text().splitlines() == [
        "2026-11-27 12:24:02.123 [7] Acquire from driver: src=10.0.0.1 dst=10.0.0.2 filter=web/r1/f1",
        "2026-11-27 12:24:02.123 [7] MM start as initiator peer=10.0.0.2 icookie=0x1f2e3d4c5b6a7988",
        "2026-11-27 12:24:02.123 [7] MM SA proposal #1 offered: AES-CBC-128 SHA1 MODP-2048 preshared "
        "lifetime=28800s",
        "2026-11-27 12:24:02.123 [7] QM SA proposal #2 rejected: (no transforms)",
        '2026-11-27 12:24:02.123 [7] MM failed filter=web/r1/f1 point=peer reason="no proposal chosen"',
    ]


def test_peer_data_cannot_forge_lines(tmp_path: Path) -> None:
    log = OakleyLog(tmp_path / "oakley.log", enabled=True)
    log.step(T0, MM, "got ID", peer_identity="evil\n2026-11-27 00:00:00.000 MM SA established")
    log.close()
    assert len((tmp_path / "oakley.log").read_text().splitlines()) == 1


def test_size_cap_rotates_to_old(tmp_path: Path) -> None:
    path = tmp_path / "oakley.log"
    log = OakleyLog(path, enabled=True, max_bytes=4096)
    for i in range(400):
        log.log(T0, f"line {i:04d} " + "x" * 40)
    log.close()
    old = path.with_name("oakley.log.old")
    assert log.rotations >= 2
    assert path.stat().st_size <= 4096
    assert old.stat().st_size <= 4096
    lines = old.read_text().splitlines() + path.read_text().splitlines()
    assert lines[-1].split()[3] == "0399"
    # the two files hold the most recent lines, in order, without gaps
    numbers = [int(line.split()[3]) for line in lines]
    assert numbers == list(range(numbers[0], 400))


def test_existing_file_size_counts(tmp_path: Path) -> None:
    path = tmp_path / "oakley.log"
    path.write_text("y" * 4000 + "\n")
    log = OakleyLog(path, enabled=True, max_bytes=4096)
    log.log(T0, "z" * 200)
    log.close()
    assert path.with_name("oakley.log.old").read_text().startswith("yyyy")
    assert path.read_text().startswith("2026-11-27")


def test_overlong_line_truncated(tmp_path: Path) -> None:
    log = OakleyLog(tmp_path / "o.log", enabled=True, max_bytes=4096)
    log.log(T0, "q" * 10000)
    log.close()
    line = (tmp_path / "o.log").read_text()
    assert len(line) <= 1025 and line.endswith("<truncated>\n")


def test_reopen_after_external_rename(tmp_path: Path) -> None:
    path = tmp_path / "o.log"
    log = OakleyLog(path, enabled=True)
    log.log(T0, "a")
    path.rename(tmp_path / "moved.log")
    log.reopen()
    log.log(T0, "b")
    log.close()
    assert path.read_text().endswith(" b\n")
    assert (tmp_path / "moved.log").read_text().endswith(" a\n")


PSK = "correct horse battery staple"
KEY = bytes.fromhex("00112233445566778899aabbccddeeff0f1e2d3c")


def test_secrets_never_land_in_the_file(tmp_path: Path) -> None:
    redactor = Redactor([Secret(PSK), KEY])
    log = OakleyLog(tmp_path / "oakley.log", enabled=True, redactor=redactor)
    # every careless way the IKE code could try to print them
    log.step(T0, MM, f"using pre-shared key {PSK}", peer=PEER)
    log.step(T0, MM, "computed", skeyid=KEY, psk=PSK, sk_ei=KEY, encryption_key=KEY.hex())
    log.step(T0, QM, f"keymat {KEY.hex()} / {KEY.hex().upper()} / {KEY.hex(':')} / {KEY!r}")
    log.step(T0, QM, "b64 " + base64.b64encode(KEY).decode())
    log.step(T0, QM, "raw bytes", payload=KEY, secret=Secret(PSK), other=Secret("x"))
    log.proposal(T0, MM, 1, [f"psk={PSK}"])
    log.failure(T0, MM, filter="f", point=FailurePoint.ME, reason=f"hash mismatch for {PSK}")
    log.step(T0, MM, "sizes", key_length=16, dh_group=14)
    log.close()
    text = (tmp_path / "oakley.log").read_text()
    for form in (
        PSK,
        "horse battery",
        KEY.hex(),
        KEY.hex().upper(),
        KEY.hex(":"),
        repr(KEY),
        base64.b64encode(KEY).decode().rstrip("="),
    ):
        assert form not in text, form
    assert text.count(REDACTED) >= 10
    assert "<20 bytes>" in text  # bytes show only their length
    assert "key_length=16 dh_group=14" in text  # a key's length is not secret


def test_secret_wrapper_hides_value() -> None:
    s = Secret(PSK)
    assert PSK not in repr(s) and PSK not in str(s) and PSK not in f"{s}" and PSK not in f"{s!r}"
    assert s.reveal() == PSK.encode()
    assert len(s) == len(PSK)
    assert s == Secret(PSK.encode()) and s != Secret("other")


def test_secret_names() -> None:
    for name in ("psk", "PreShared", "pre_shared_key", "skeyid_d", "keymat", "sk_ei", "key", "private_key"):
        assert is_secret_name(name), name
    for name in (
        "key_length",
        "dh_group",
        "peer",
        "icookie",
        "spi",
        "nonce",
        "key_exchange",
        "keying_module",
    ):
        assert not is_secret_name(name), name
    assert format_value("psk", "abc") == REDACTED
    assert format_value("data", b"abc") == "<3 bytes>"
    assert format_value("spi", 255) == "0xff"


@settings(max_examples=200, deadline=None)
@given(secret=st.binary(min_size=1, max_size=64), prefix=st.text(max_size=20), suffix=st.text(max_size=20))
def test_redactor_removes_any_registered_secret(secret: bytes, prefix: str, suffix: str) -> None:
    r = Redactor([secret])
    forms = [secret.hex(), secret.hex().upper(), repr(secret)]
    with contextlib.suppress(UnicodeDecodeError):
        forms.append(secret.decode("utf-8"))
    for form in forms:
        scrubbed = r.scrub(prefix + form + suffix)
        assert REDACTED in scrubbed
        # what is left between the markers never holds the secret
        assert all(form not in part for part in scrubbed.split(REDACTED)), (form, scrubbed)


def test_max_bytes_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        OakleyLog(tmp_path / "o.log", max_bytes=10)
