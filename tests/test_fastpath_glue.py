"""ipsecd/daemon/fastpath_glue.py without root: which SAs and filters the daemon gives the fast path.

A socketpair stands in for the TUN and a UDP socket on 127.0.0.1 for port 4500 (the threads are
not started: only the tables are checked).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from ipaddress import ip_address, ip_network

import pytest

from ipsecd.daemon.fastpath_glue import FastPathGlue
from ipsecd.datapath import fastpath
from ipsecd.datapath.sa import ExpiryReason, Lifetimes, Mode, Protocol, Selector
from ipsecd.datapath.sadb import (
    ManualState,
    PolicyAction,
    PolicyDir,
    SADatabase,
    SecurityPolicy,
    Template,
)
from tests.fastpath_peer import KEY_AB, KEY_BA, _sa

pytestmark = pytest.mark.skipif(not fastpath.AVAILABLE, reason=fastpath.UNAVAILABLE_REASON)

ME, PEER = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def glue() -> Iterator[tuple[FastPathGlue, SADatabase]]:
    sadb = SADatabase(lambda: [ip_address(ME)])
    tun, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((ME, 0))
    g = FastPathGlue(sadb, tun.fileno(), udp.fileno())
    tun.close()  # the glue holds duplicates
    udp.close()
    try:
        yield g, sadb
    finally:
        g.close()
        other.close()


def _policy(action: PolicyAction = PolicyAction.PROTECT, dst: str = "10.2.0.0/24") -> SecurityPolicy:
    tmpl = (Template(Protocol.ESP, Mode.TUNNEL, ip_address(ME), ip_address(PEER)),)
    return SecurityPolicy(
        Selector(ip_network("10.1.0.0/24"), ip_network(dst)),
        PolicyDir.OUT,
        action,
        tmpl if action is PolicyAction.PROTECT else (),
    )


def test_sync_follows_the_sa_database(glue: tuple[FastPathGlue, SADatabase]) -> None:
    g, sadb = glue
    out = ManualState(ip_address(ME), ip_address(PEER), _sa(0x1001, KEY_AB, ME, PEER))
    inb = ManualState(ip_address(PEER), ip_address(ME), _sa(0x2002, KEY_BA, PEER, ME))
    sadb.add_state(out)
    sadb.add_state(inb)
    sadb.add_policy(_policy())
    sadb.add_policy(_policy(PolicyAction.BYPASS, "10.2.0.7/32"))  # more specific: first
    g.sync()
    assert len(g.handles) == 2 and g.fp.table_sizes()
    assert [(f.action, str(f.dst)) for f in g.filters] == [
        (fastpath.Action.SLOW, "10.2.0.7/32"),
        (fastpath.Action.PROTECT, "10.2.0.0/24"),
    ]
    assert g.filters[0].weight > g.filters[1].weight
    assert g.filters[1].sa == g.handles[out.key()]
    # A transport-mode SA stays with the Python router.
    transport = dataclasses.replace(_sa(0x3003, KEY_AB, ME, PEER), mode=Mode.TRANSPORT, tunnel=None)
    sadb.add_state(ManualState(ip_address(ME), ip_address("127.0.0.3"), transport))
    g.sync()
    assert len(g.handles) == 2
    # The outbound SA goes: its policy becomes SLOW (the router acquires; nothing in clear here).
    sadb.del_state(int(Protocol.ESP), 0x1001, ip_address(PEER))
    g.sync()
    assert out.key() not in g.handles and len(g.handles) == 1
    assert [f.action for f in g.filters] == [fastpath.Action.SLOW, fastpath.Action.SLOW]
    st = g.status()
    assert st["filters"] == 2 and len(st["sas"]) == 1 and st["refused_sas"] == 0


def test_outbound_sa_continues_the_python_sequence(glue: tuple[FastPathGlue, SADatabase]) -> None:
    g, sadb = glue
    sadb = SADatabase(lambda: [ip_address(ME)], initial_seq=lambda st: 5000)
    g.sadb = sadb
    installed = sadb.add_state(ManualState(ip_address(ME), ip_address(PEER), _sa(0x1001, KEY_AB, ME, PEER)))
    g.sync()
    state = g.fp.sa_state(g.handles[installed.state.key()])
    assert state is not None and state[0] == 5000
    assert g.seq_view(installed).next_seq == 5000


def test_fast_path_expiry_events_reach_ike_and_retire_the_sa(
    glue: tuple[FastPathGlue, SADatabase], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte/packet limits the fast path counts: SOFT goes to the IKE rekey (by SPI), SECONDS is the
    Python transform's own and is not passed on twice, HARD also takes the SA out of the filters."""
    g, sadb = glue
    out = sadb.add_state(ManualState(ip_address(ME), ip_address(PEER), _sa(0x1001, KEY_AB, ME, PEER)))
    sadb.add_policy(_policy())
    g.sync()
    handle = g.handles[out.state.key()]
    assert g.filters[0].action is fastpath.Action.PROTECT
    told: list[tuple[int, bool]] = []
    g.on_expiry = lambda spi, hard: told.append((spi, hard))
    soft, hard = fastpath.EventKind.SOFT_EXPIRED, fastpath.EventKind.HARD_EXPIRED
    batches = [
        [fastpath.FastEvent(soft, sa=handle, reason=ExpiryReason.BYTES)],
        [fastpath.FastEvent(soft, sa=handle, reason=ExpiryReason.SECONDS)],
        [fastpath.FastEvent(hard, sa=handle, reason=ExpiryReason.PACKETS)],
    ]
    monkeypatch.setattr(g.fp, "drain_events", lambda: batches.pop(0))
    for _ in range(3):
        g.on_event(lambda pkts: None, lambda dgrams: None)
    assert told == [(0x1001, False), (0x1001, True)]
    assert handle in g.hard_expired
    assert g.filters[0].action is fastpath.Action.SLOW and g.filters[0].sa == 0


def test_python_time_limit_expires_the_fast_copy(glue: tuple[FastPathGlue, SADatabase]) -> None:
    """Time limits are kept by the SA's Python transform; its hard expiry expires the fast-path copy
    (which then refuses packets) and takes the SA out of the filters."""
    g, sadb = glue
    params = dataclasses.replace(_sa(0x1001, KEY_AB, ME, PEER), lifetimes=Lifetimes(hard_seconds=10))
    out = sadb.add_state(ManualState(ip_address(ME), ip_address(PEER), params), now=100.0)
    sadb.add_policy(_policy())
    g.sync()
    handle = g.handles[out.state.key()]
    g.tick()
    assert g.fp.sa_state(handle) == (1, 0, False)  # not yet
    out.transform.tick(111.0)
    assert out.transform.expired
    g.tick()
    g.sync()
    state = g.fp.sa_state(handle)
    assert state is not None and state[2] is True
    assert g.filters[0].action is fastpath.Action.SLOW
