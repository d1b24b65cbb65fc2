"""Default exemptions (ipsecd.policy.exemptions) and their precedence over filters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from order_helpers import ANY, ME, ip, store_of

from ipsecd.policy.classifier import Classifier, compile_store
from ipsecd.policy.exemptions import Exemptions, default_exemptions
from ipsecd.policy.host import StaticHost
from ipsecd.policy.model import Action, Filter, IPAddress
from ipsecd.policy.order import Direction


def check(level: int, src: str, dst: str, proto: int, sport: int = 0, dport: int = 0) -> str | None:
    s, d = ip(src), ip(dst)
    return default_exemptions(level).match(s.version, int(s), int(d), proto, sport, dport)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_ike_is_always_exempt(level: int) -> None:
    assert check(level, "10.0.0.1", "10.0.0.2", 17, 500, 500) == "ike"
    assert check(level, "10.0.0.1", "10.0.0.2", 17, 4500, 4500) == "ike"
    assert check(level, "2001:db8::1", "2001:db8::2", 17, 33000, 500) == "ike"
    assert check(level, "10.0.0.1", "10.0.0.2", 6, 500, 500) is None  # TCP 500 is not IKE
    assert "ike" in Exemptions(frozenset()).classes


# (level, kerberos+rsvp exempt, multicast+broadcast exempt): the Windows table.
LEVELS = [(0, True, True), (1, False, True), (2, True, False), (3, False, False)]


@pytest.mark.parametrize(("level", "kerb", "mcast"), LEVELS)
def test_windows_levels(level: int, kerb: bool, mcast: bool) -> None:
    def expect(ok: bool, reason: str) -> str | None:
        return reason if ok else None

    assert check(level, "10.0.0.1", "10.0.0.2", 17, 1024, 88) == expect(kerb, "kerberos")
    assert check(level, "10.0.0.1", "10.0.0.2", 6, 88, 1024) == expect(kerb, "kerberos")
    assert check(level, "10.0.0.1", "10.0.0.2", 46) == expect(kerb, "rsvp")
    assert check(level, "10.0.0.1", "224.0.0.5", 89) == expect(mcast, "multicast")
    assert check(level, "10.0.0.1", "239.255.255.255", 17, 5353, 5353) == expect(mcast, "multicast")
    assert check(level, "fe80::1", "ff02::1", 58) == expect(mcast, "multicast")
    assert check(level, "10.0.0.1", "255.255.255.255", 17, 68, 67) == expect(mcast, "broadcast")
    # Never exempt: ordinary unicast traffic, port 88 of other protocols.
    assert check(level, "10.0.0.1", "10.0.0.2", 6, 1024, 443) is None
    assert check(level, "10.0.0.1", "223.255.255.255", 1) is None
    assert check(level, "10.0.0.1", "10.0.0.2", 1, 88, 88) is None


def test_default_level_is_3_and_bad_levels_fail() -> None:
    assert default_exemptions().ipsecexempt == 3
    assert default_exemptions(1).ipsecexempt == 1
    with pytest.raises(ValueError, match="ipsecexempt must be 0, 1, 2 or 3"):
        default_exemptions(4)


@dataclass(frozen=True)
class BroadcastHost(StaticHost):
    bcast: Sequence[IPAddress] = ()

    def broadcast_addresses(self) -> Sequence[IPAddress]:
        return self.bcast


def test_subnet_broadcasts_from_the_host() -> None:
    host = BroadcastHost(addresses=[ip("10.0.0.1")], bcast=[ip("10.0.0.255")])
    store = store_of([("r", [Filter(ME, ANY)], Action.BLOCK)], ipsecexempt=1)
    compiled = compile_store(store, host)
    m = compiled.classifier.lookup(Direction.OUTBOUND, ip("10.0.0.1"), ip("10.0.0.255"), 17, 137, 137)
    assert m is not None and m.exempt == "broadcast" and m.action is Action.PERMIT
    m = compiled.classifier.lookup(Direction.OUTBOUND, ip("10.0.0.1"), ip("10.0.0.254"), 17, 137, 137)
    assert m is not None and m.exempt is None and m.action is Action.BLOCK
    assert any("10.0.0.255" in line for line in compiled.exemptions.describe())
    # Without the host's knowledge only the limited broadcast is exempt.
    plain = compile_store(store, StaticHost(addresses=[ip("10.0.0.1")]))
    m = plain.classifier.lookup(Direction.OUTBOUND, ip("10.0.0.1"), ip("10.0.0.255"), 17, 137, 137)
    assert m is not None and m.action is Action.BLOCK


def test_exemptions_apply_before_any_filter() -> None:
    host = StaticHost(addresses=[ip("10.0.0.1")])
    block_ike = Filter(ME, ANY, 17, 500, 500)  # most specific possible ports, still loses
    store = store_of([("r", [block_ike, Filter(ME, ANY)], Action.BLOCK)], ipsecexempt=0)
    c = compile_store(store, host).classifier
    for direction, src, dst in (
        (Direction.OUTBOUND, "10.0.0.1", "192.0.2.1"),
        (Direction.INBOUND, "192.0.2.1", "10.0.0.1"),
    ):
        m = c.lookup(direction, ip(src), ip(dst), 17, 500, 500)
        assert m is not None and (m.action, m.exempt, m.filter) == (Action.PERMIT, "ike", None)
        m = c.lookup(direction, ip(src), ip(dst), 6, 88, 40000)
        assert m is not None and m.exempt == "kerberos"
        m = c.lookup(direction, ip(src), ip(dst), 6, 80, 40000)
        assert m is not None and m.action is Action.BLOCK and m.filter is not None


def test_describe_lists_classes_in_force() -> None:
    assert default_exemptions(3).describe() == ["IKE: UDP source or destination port 500 or 4500"]
    assert len(default_exemptions(0).describe()) == 5
    assert Classifier([], default_exemptions(2)).exemptions.ipsecexempt == 2
