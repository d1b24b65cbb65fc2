"""Property test: filters added and deleted with ipsecctl agree with a plain reference model.

Each filter side is written in one of netsh's spellings (address + mask, address/prefix, a bare
address for a host); ``delete filter`` must remove exactly the filters whose normalized addresses
(and the optional fields given) match, whatever spelling either side used.
"""

from __future__ import annotations

import ipaddress
import json
import tempfile
from pathlib import Path

from cli_helpers import cli, ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NETS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32", "192.0.2.0/24", "192.0.2.7/32"]


@st.composite
def spelled(draw: st.DrawFn, nets: tuple[str, ...] = tuple(NETS)) -> tuple[str, str]:
    """(canonical network, netsh parameters for one side without the src/dst prefix)."""
    net = ipaddress.ip_network(draw(st.sampled_from(nets)))
    style = draw(st.sampled_from(["prefix", "mask", "bare"]))
    if style == "prefix" or (style == "bare" and net.prefixlen != 32):
        text = f"addr={net}"
    elif style == "mask":
        text = f"addr={net.network_address} mask={net.netmask}"
    else:
        text = f"addr={net.network_address}"
    return str(net), text


def _side(prefix: str, text: str) -> str:
    return " ".join(prefix + word for word in text.split())


FILTER = st.tuples(spelled(), spelled(), st.sampled_from([("any", 0), ("tcp", 443), ("udp", 53)]))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters=st.lists(FILTER, min_size=1, max_size=5), with_protocol=st.booleans(), data=st.data())
def test_delete_filter_matches_normalized_addresses(
    filters: list[tuple[tuple[str, str], tuple[str, str], tuple[str, int]]],
    with_protocol: bool,
    data: st.DataObject,
) -> None:
    # Mostly, the victim names an added filter's addresses (in a spelling of its own) with any
    # protocol; sometimes it is drawn freely.
    (src0, _), (dst0, _), _ = data.draw(st.sampled_from(filters))
    derived = st.tuples(
        spelled((src0,)), spelled((dst0,)), st.sampled_from([("any", 0), ("tcp", 443), ("udp", 53)])
    )
    victim = data.draw(derived if data.draw(st.integers(0, 3)) else FILTER)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s"
        ok(store, "add filterlist name=L")
        model: list[tuple[str, str, int, int]] = []
        for (src, src_text), (dst, dst_text), (proto, port) in filters:
            ports = f" dstport={port}" if port else ""
            ok(
                store,
                f"add filter filterlist=L {_side('src', src_text)} {_side('dst', dst_text)} protocol={proto}{ports}",
            )
            model.append((src, dst, {"any": 0, "tcp": 6, "udp": 17}[proto], port))

        (vsrc, vsrc_text), (vdst, vdst_text), (vproto, vport) = victim
        command = f"delete filter filterlist=L {_side('src', vsrc_text)} {_side('dst', vdst_text)}"
        vnum = {"any": 0, "tcp": 6, "udp": 17}[vproto]
        if with_protocol:  # the optional fields, when given, must match too
            command += f" protocol={vproto}" + (f" dstport={vport}" if vport else "")
        expected = [
            m
            for m in model
            if not (
                m[0] == vsrc
                and m[1] == vdst
                and (not with_protocol or (m[2] == vnum and (not vport or m[3] == vport)))
            )
        ]
        r = cli(store, command)
        assert r.rc == (0 if len(expected) < len(model) else 1), r.err

        got = json.loads(ok(store, "show filterlist name=L", json=True))["filterlists"][0]["filters"]
        as_model = [
            (
                str(ipaddress.ip_network(f["srcaddr"])),
                str(ipaddress.ip_network(f["dstaddr"])),
                f["protocol"],
                f["dstport"],
            )
            for f in got
        ]
        assert as_model == expected
