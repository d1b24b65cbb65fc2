"""Outbound sequence numbers reserved across restarts: for manual SAs only (ipsecd/daemon/seqstore.py)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from ipsecd.daemon.seqstore import BLOCK, SeqStore
from ipsecd.datapath.sa import EncAlg, Mode, Protocol, SAParams
from ipsecd.datapath.sadb import ManualState, SADatabase

A = ipaddress.IPv4Address("192.0.2.1")
B = ipaddress.IPv4Address("192.0.2.2")
KEY = bytes(range(20))


def _state(spi: int, negotiated: bool = False) -> ManualState:
    params = SAParams(
        spi=spi, protocol=Protocol.ESP, mode=Mode.TRANSPORT, enc_alg=EncAlg.ENCR_AES_GCM_16, enc_key=KEY
    )
    return ManualState(A, B, params, negotiated=negotiated)


def _sadb(seqs: SeqStore) -> SADatabase:
    return SADatabase(lambda: [A], backend="python", initial_seq=seqs.initial_seq)


def test_manual_sa_reserves_a_block_and_a_restart_starts_after_it(tmp_path: Path) -> None:
    path = tmp_path / "sequence.json"
    first = _sadb(SeqStore(path)).add_state(_state(0x1000))
    assert first.initial_seq == 1
    assert list(json.loads(path.read_text()).values()) == [1 + BLOCK]
    again = _sadb(SeqStore(path)).add_state(_state(0x1000))  # the daemon restarted
    assert again.initial_seq == 1 + BLOCK


def test_negotiated_sa_starts_at_one_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sequence.json"
    seqs = SeqStore(path)
    sa = _sadb(seqs).add_state(_state(0x2000, negotiated=True))
    assert sa.initial_seq == 1 and not path.exists()
    seqs.update([sa])  # running low never reserves for IKE keys either
    assert not path.exists()
