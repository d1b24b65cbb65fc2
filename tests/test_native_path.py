"""Native data path specifics: replay window semantics, GIL release, SA lock, key wipe, garbage input,
and a warning-free build (docs/datapath.md, "Native path")."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipsecd.datapath.counters import DropReason
from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.native import AVAILABLE, UNAVAILABLE_REASON, NativeTransform
from ipsecd.datapath.sa import (
    Direction,
    EncAlg,
    IntegAlg,
    Mode,
    Protocol,
    SAParams,
    TunnelAddrs,
    UdpEncap,
)

needs_native = pytest.mark.skipif(not AVAILABLE, reason=f"native module not built: {UNAVAILABLE_REASON}")
SRC = Path(__file__).resolve().parent.parent / "ipsecd" / "datapath" / "native"


def _inner(n: int = 64, tag: int = 0) -> bytes:
    body = bytes([tag & 0xFF]) * n
    total = 20 + n
    hdr = bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    return hdr + body


def _params(esn: bool = False, window: int = 32, **kw: object) -> SAParams:
    base: dict[str, object] = {
        "spi": 0x4242,
        "protocol": Protocol.ESP,
        "mode": Mode.TUNNEL,
        "enc_alg": EncAlg.ENCR_AES_GCM_16,
        "enc_key": bytes(range(20)),
        "tunnel": TunnelAddrs(ip_address("192.0.2.1"), ip_address("192.0.2.2")),
        "esn": esn,
        "replay_window": window,
    }
    base.update(kw)
    return SAParams(**base)  # type: ignore[arg-type]


def _wire(params: SAParams, seq: int, backend: str) -> bytes:
    out = make_transform(params, Direction.OUTBOUND, backend, initial_seq=seq).protect([_inner(32, seq)])[0]
    assert out is not None
    return out


@needs_native
@pytest.mark.parametrize("backend", ["native", "python"])
def test_replay_window_semantics(backend: str) -> None:
    p = _params(window=32)
    rx = make_transform(p, Direction.INBOUND, backend)

    def feed(seq: int, tamper: bool = False) -> bool:
        w = bytearray(_wire(p, seq, backend))
        if tamper:
            w[-1] ^= 1
        return rx.unprotect([bytes(w)])[0] is not None

    assert feed(1)
    assert feed(40)
    assert not feed(8)  # 40 - 8 = 32 >= W: left of the window
    assert feed(9)  # 40 - 9 = 31: inside, unseen
    assert not feed(9)  # seen
    assert not feed(40)
    assert not feed(100, tamper=True)  # unauthenticated: must not move the window
    assert feed(10)  # still inside the window of top 40
    assert feed(100)
    assert not feed(68)  # 100 - 68 = 32
    assert feed(69)
    c = rx.counters()
    assert c.packets_with_replay_detection == 4
    assert c.packets_not_authenticated == 1
    assert c.packets_received == 6


@needs_native
@pytest.mark.parametrize("backend", ["native", "python"])
def test_replay_window_esn_crosses_2_32(backend: str) -> None:
    p = _params(esn=True, window=32)
    rx = make_transform(p, Direction.INBOUND, backend)
    accepted = [rx.unprotect([_wire(p, s, backend)])[0] is not None for s in (100, 2**32 - 10, 2**32 + 5)]
    assert accepted == [True, True, True]
    # Window now spans two subspaces (Appendix A2.2 case B): 2^32 - 12 is 17 behind the top.
    assert rx.unprotect([_wire(p, 2**32 - 12, backend)])[0] is not None
    assert rx.unprotect([_wire(p, 2**32 - 12, backend)])[0] is None
    # 45 behind: left of the window, so Appendix A2.2 infers the NEXT subspace; the ICV computed
    # with that SeqHi fails (RFC 4303 Appendix A3 would resynchronise; docs/datapath.md does not).
    assert rx.unprotect([_wire(p, 2**32 - 40, backend)])[0] is None
    assert rx.counters().packets_with_replay_detection == 1
    assert rx.counters().packets_not_authenticated == 1


@needs_native
@pytest.mark.parametrize("window", [32, 64, 1024, 4096])
def test_large_windows_match_fallback(window: int) -> None:
    p = _params(window=window)
    rng = random.Random(window)
    seqs = [rng.randrange(1, 3 * window) for _ in range(120)]
    wires = {s: _wire(p, s, "python") for s in set(seqs)}
    results = {}
    for backend in ("python", "native"):
        rx = make_transform(p, Direction.INBOUND, backend)
        results[backend] = [rx.unprotect([wires[s]])[0] is not None for s in seqs]
    assert results["native"] == results["python"]
    assert any(results["native"]) and not all(results["native"])


@needs_native
def test_gil_released_during_a_batch() -> None:
    """A second Python thread runs while one protect() call is inside C.

    The spinner records when it runs. With the GIL held for the whole batch it could only run before
    the call entered C (at most one switch interval, set to 1 ms here), never in the rest of the call.
    """
    p = _params(
        enc_alg=EncAlg.ENCR_AES_CBC,
        enc_key=bytes(32),
        integ_alg=IntegAlg.AUTH_HMAC_SHA2_512_256,
        integ_key=bytes(64),
        iv_key=bytes(16),
    )
    tx = make_transform(p, Direction.OUTBOUND, "native")
    batch = [_inner(1400)] * 3000
    stamps: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        deadline = time.monotonic() + 60
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            i += 1
            if i % 200 == 0:
                stamps.append(time.perf_counter())

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    th = threading.Thread(target=spin)
    th.start()
    try:
        time.sleep(0.01)
        inside = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = tx.protect(batch)
            t1 = time.perf_counter()
            assert all(o is not None for o in out)
            assert t1 - t0 > 0.01, "batch too short to tell"
            # the first half of the call is spent in the crypto loop (results are built afterwards)
            inside.append(sum(1 for t in list(stamps) if t0 + 0.004 < t < t0 + (t1 - t0) / 2))
    finally:
        stop.set()
        th.join(timeout=10)
        sys.setswitchinterval(old)
    assert max(inside) > 10, f"the second thread ran {inside} times inside the batches"


@needs_native
def test_concurrent_batches_on_one_sa_use_unique_sequence_numbers() -> None:
    p = _params()
    tx = make_transform(p, Direction.OUTBOUND, "native")
    outs: list[bytes | None] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            res = tx.protect([_inner(100)] * 50)
            with lock:
                outs.extend(res)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    seqs = [int.from_bytes(o[24:28], "big") for o in outs if o is not None]
    assert len(seqs) == 4000
    assert sorted(seqs) == list(range(1, 4001))


@needs_native
def test_keys_wiped_on_close() -> None:
    p = _params(
        enc_alg=EncAlg.ENCR_AES_CBC,
        enc_key=b"\x11" * 16,
        integ_alg=IntegAlg.AUTH_HMAC_SHA1_96,
        integ_key=b"\x22" * 20,
        iv_key=b"\x33" * 16,
    )
    t = make_transform(p, Direction.OUTBOUND, "native")
    assert isinstance(t, NativeTransform)
    assert t._sa._debug_keys_wiped() is False
    assert t.protect([_inner()])[0] is not None
    t.close()
    assert t._sa._debug_keys_wiped() is True
    with pytest.raises(ValueError):
        t.protect([_inner()])
    assert "11" * 4 not in repr(t) and "\\x11" not in repr(t._sa)


@needs_native
def test_bad_arguments_raise_and_direction_is_enforced() -> None:
    tx = make_transform(_params(), Direction.OUTBOUND, "native")
    with pytest.raises(TypeError):
        tx.protect([1])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        tx.unprotect([_inner()])
    # bytearray and memoryview inputs are copied and work like bytes
    assert tx.protect([bytearray(_inner()), memoryview(_inner())])[0] is not None


GARBAGE_PARAMS = [
    _params(),
    _params(mode=Mode.TRANSPORT, tunnel=None, encap=UdpEncap(4500, 4500), esn=True),
    _params(
        protocol=Protocol.AH,
        enc_alg=EncAlg.ENCR_NULL,
        enc_key=b"",
        mode=Mode.TRANSPORT,
        tunnel=None,
        integ_alg=IntegAlg.AUTH_HMAC_SHA2_256_128,
        integ_key=bytes(32),
    ),
    _params(
        enc_alg=EncAlg.ENCR_3DES,
        enc_key=bytes(24),
        integ_alg=IntegAlg.AUTH_HMAC_SHA1_96,
        integ_key=bytes(20),
        iv_key=bytes(16),
    ),
]


@needs_native
@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(st.binary(max_size=200), max_size=8),
    which=st.integers(0, len(GARBAGE_PARAMS) - 1),
    prefix=st.sampled_from([b"", b"\x45\x00", b"\x60\x00\x00\x00"]),
)
def test_garbage_is_counted_and_dropped(data: list[bytes], which: int, prefix: bytes) -> None:
    p = GARBAGE_PARAMS[which]
    pkts = [prefix + d for d in data]
    res = {}
    for backend in ("python", "native"):
        rx = make_transform(p, Direction.INBOUND, backend)
        tx = make_transform(p, Direction.OUTBOUND, backend)
        res[backend] = (rx.unprotect(pkts), rx.counters(), tx.protect(pkts), tx.counters())
    assert res["native"] == res["python"]
    c = res["native"][1]
    drops = sum(getattr(c, r.value) for r in DropReason)
    assert drops + c.packets_received == len(pkts)


@needs_native
def test_truncations_of_valid_packets() -> None:
    for p in GARBAGE_PARAMS:
        tx = make_transform(p, Direction.OUTBOUND, "native")
        wire = tx.protect([_inner(90)])[0]
        assert wire is not None
        cuts = [wire[:i] for i in range(len(wire))]
        rx = make_transform(p, Direction.INBOUND, "native")
        assert rx.unprotect(cuts) == [None] * len(cuts)
        assert rx.unprotect([wire]) == [_inner(90)] if p.mode == Mode.TUNNEL else rx.unprotect([wire])[0]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_sources_compile_without_warnings() -> None:
    include = sysconfig.get_paths()["include"]
    sources = sorted(str(p) for p in SRC.glob("*.c"))
    assert len(sources) >= 5
    r = subprocess.run(
        [
            "gcc",
            "-fsyntax-only",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wshadow",
            "-I",
            include,
            *sources,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


_BLOCKED_IMPORT = """
import importlib.abc, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ipsecd.datapath._native":
            raise ImportError("simulated: the extension was not built")
        return None

sys.meta_path.insert(0, Block())
from ipaddress import ip_address
from ipsecd.datapath import native
from ipsecd.datapath.factory import make_transform, native_available
from ipsecd.datapath.sa import Direction, EncAlg, Mode, Protocol, SAParams, TunnelAddrs
p = SAParams(spi=0x4242, protocol=Protocol.ESP, mode=Mode.TUNNEL, enc_alg=EncAlg.ENCR_AES_GCM_16,
             enc_key=bytes(20), tunnel=TunnelAddrs(ip_address("192.0.2.1"), ip_address("192.0.2.2")))
print("AVAILABLE", native.AVAILABLE, native_available())
print("BACKEND", make_transform(p, Direction.OUTBOUND).backend)
try:
    make_transform(p, Direction.OUTBOUND, "native")
except RuntimeError as exc:
    print("NATIVE-REFUSED", exc)
"""


def test_missing_extension_falls_back_with_a_logged_reason() -> None:
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "AVAILABLE False False" in r.stdout
    assert "BACKEND python" in r.stdout
    assert "NATIVE-REFUSED" in r.stdout and "simulated" in r.stdout
    assert "native data path unavailable, using the Python fallback" in r.stdout


@needs_native
def test_ipsecd_native_0_forces_python() -> None:
    root = Path(__file__).resolve().parent.parent
    code = _BLOCKED_IMPORT.replace("sys.meta_path.insert(0, Block())", "")
    env = {**os.environ, "IPSECD_NATIVE": "0"}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60, env=env
    )
    assert r.returncode == 0, r.stderr
    assert "AVAILABLE True True" in r.stdout
    assert "BACKEND python" in r.stdout
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "IPSECD_NATIVE": "1"},
    )
    assert "BACKEND native" in r.stdout


@needs_native
def test_c_level_validation_errors_never_show_keys() -> None:
    from ipsecd.datapath import _native

    # protocol, mode, enc, integ, spi, esn, window, direction, initial_seq, encap, sport, dport,
    # outer version, soft/hard bytes, soft/hard packets (native/sa.h CFG_*)
    cfg = (50, 2, 20, 0, 0x4242, 0, 64, 2, 1, 0, 0, 0, 4, 0, 0, 0, 0)
    secret = b"\xa5" * 19  # one byte short for AES-128-GCM + salt
    tsrc = bytes([192, 0, 2, 1]) + bytes(12)
    with pytest.raises(ValueError) as err:
        _native.Sa(cfg, secret, b"", b"", tsrc, tsrc)
    assert "a5" not in str(err.value).lower() and "\\xa5" not in str(err.value)
    with pytest.raises(ValueError):
        _native.Sa(cfg[:-1], bytes(20), b"", b"", tsrc, tsrc)  # wrong number of fields
    with pytest.raises(ValueError):
        _native.Sa((51, *cfg[1:]), bytes(20), b"", b"", tsrc, tsrc)  # AH with an AEAD
    ok = _native.Sa(cfg, bytes(20), b"", b"", tsrc, tsrc)
    assert "spi=0x00004242" in repr(ok)
    with pytest.raises(RuntimeError):
        ok.__init__(cfg, bytes(20), b"", b"", tsrc, tsrc)  # type: ignore[misc]


@pytest.mark.skipif(
    os.environ.get("IPSECD_REQUIRE_NATIVE") != "1", reason="set IPSECD_REQUIRE_NATIVE=1 to require the module"
)
def test_native_module_required() -> None:
    """CI can set IPSECD_REQUIRE_NATIVE=1 so a failed build of either extension (setup.py marks both optional) fails loudly."""
    assert AVAILABLE, UNAVAILABLE_REASON
    from ipsecd.datapath import fastpath

    assert fastpath.AVAILABLE, fastpath.UNAVAILABLE_REASON or "the fast-path extension is not built"


@needs_native
def test_close_racing_with_batches_never_crashes() -> None:
    p = _params()
    for _ in range(5):
        tx = make_transform(p, Direction.OUTBOUND, "native")
        assert isinstance(tx, NativeTransform)
        errors: list[str] = []

        def work(t: NativeTransform = tx, errors: list[str] = errors) -> None:
            for _ in range(50):
                try:
                    t.protect([_inner(200)] * 20)
                except ValueError as exc:
                    errors.append(str(exc))
                    return

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.002)
        tx.close()
        for t in threads:
            t.join(timeout=30)
        assert all(e == "the SA is closed" for e in errors)
        with pytest.raises(ValueError):
            tx.protect([_inner()])


@needs_native
@pytest.mark.parametrize(
    ("enc", "key", "integ", "ikey", "ivkey"),
    [
        (EncAlg.ENCR_AES_GCM_16, bytes(range(20)), IntegAlg.NONE, b"", b""),
        (EncAlg.ENCR_AES_CBC, bytes(16), IntegAlg.AUTH_HMAC_SHA1_96, bytes(20), bytes(16)),
    ],
)
def test_an_sa_object_refuses_the_other_direction_counted(
    enc: EncAlg, key: bytes, integ: IntegAlg, ikey: bytes, ivkey: bytes
) -> None:
    """An SA keys only its own direction's cipher context (and only inbound has a replay bitmap):
    protect on an inbound C object and unprotect on an outbound one drop the packet, counted, and
    leave the object working for its own direction."""
    from ipsecd.datapath import _native

    p = _params(enc_alg=enc, enc_key=key, integ_alg=integ, integ_key=ikey, iv_key=ivkey)
    tx = make_transform(p, Direction.OUTBOUND, "native")
    rx = make_transform(p, Direction.INBOUND, "native")
    assert isinstance(tx, NativeTransform) and isinstance(rx, NativeTransform)
    raw_tx: _native.Sa = tx._sa
    raw_rx: _native.Sa = rx._sa
    wire = tx.protect([_inner(40, 1)])[0]
    assert wire is not None
    assert raw_rx.protect([_inner(40, 2)]) == [None]
    assert raw_tx.unprotect([wire]) == [None]
    assert raw_rx.counters()["malformed_packets"] == 1 and raw_rx.counters()["packets_sent"] == 0
    assert raw_tx.counters()["bad_spi_packets"] == 1 and raw_tx.counters()["packets_received"] == 0
    assert raw_tx.state()[1] == 0  # no window moved
    assert rx.unprotect([wire]) == [_inner(40, 1)]  # each still works its own way
    assert tx.protect([_inner(40, 3)])[0] is not None


@needs_native
def test_closed_inbound_sa_raises_and_its_keys_are_wiped() -> None:
    p = _params()
    rx = make_transform(p, Direction.INBOUND, "native")
    assert isinstance(rx, NativeTransform)
    assert rx._sa._debug_keys_wiped() is False
    rx.close()
    assert rx._sa._debug_keys_wiped() is True
    with pytest.raises(ValueError):
        rx._sa.unprotect([_wire(p, 1, "native")])
