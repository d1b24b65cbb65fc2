"""The compiled packet classifier: which specific filter (or exemption) a packet falls under.

``Classifier.lookup(direction, src, dst, protocol, sport, dport)`` answers what a scan of the
specific filters in weight order would answer (the first filter that matches wins), without
scanning them.

Method (bitset intersection, docs/policy.md): the specific filters of one (direction, IP version)
are numbered in weight order, and filter ``i`` is bit ``i`` of a Python integer. For each field
the classifier precomputes the set of filters that accept a value:

- addresses: the boundaries of all filter ranges cut the address space into elementary
  intervals, each with the bitset of the filters covering it; a lookup is one ``bisect``;
- protocol, source port, destination port: a dict from value to the bitset of filters naming
  that value, or-ed with those accepting any value.

The answer is the lowest set bit of the AND of the five bitsets: ``O(log n)`` for the bisects plus
five big-integer ANDs of ``n`` bits (a few hundred machine words for 10,000 filters), so the cost
is nearly flat in the number of filters (bench/classifier.py). Exemptions are checked first.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from ipsecd.policy.exemptions import BroadcastAware, Exemptions, default_exemptions
from ipsecd.policy.host import HostEnvironment
from ipsecd.policy.model import Action, IPAddress, Store
from ipsecd.policy.order import Direction, SpecificFilter, expand_policy


@dataclass(frozen=True)
class Match:
    """A classification result: the action, the filter that decided it, or the exemption class."""

    action: Action
    filter: SpecificFilter | None = None
    exempt: str | None = None  # exemption class (ike, kerberos, rsvp, multicast, broadcast)


class _IntervalBits:
    """Elementary intervals of an address space, each mapped to a bitset of covering filters.

    Finding the interval of an address is a ``bisect`` over the interval starts, narrowed first by
    a bucket table: the span between the lowest and highest finite boundary is cut into about four
    times as many equal buckets as there are boundaries, and ``window[b]`` is the interval holding the start
    of bucket ``b``. An address in bucket ``b`` lies in an interval between ``window[b]`` and
    ``window[b + 1]``: with boundaries spread over the span that window holds O(1) of them, and it
    is never worse than the plain ``O(log n)`` bisect when they cluster.
    """

    __slots__ = ("high", "low", "sets", "shift", "starts", "window")

    def __init__(self, ranges: Sequence[tuple[int, int]], top: int) -> None:
        # A filter's bit toggles on at its first address and off just past its last address.
        toggles: dict[int, int] = {0: 0}
        for i, (first, last) in enumerate(ranges):
            bit = 1 << i
            toggles[first] = toggles.get(first, 0) ^ bit
            if last < top:
                toggles[last + 1] = toggles.get(last + 1, 0) ^ bit
        self.starts: list[int] = sorted(toggles)
        self.sets: list[int] = []
        current = 0
        for start in self.starts:
            current ^= toggles[start]
            self.sets.append(current)
        # The bucket table over [low, high]; starts[0] is always 0.
        self.low = self.starts[1] if len(self.starts) > 1 else 0
        self.high = self.starts[-1]
        span = self.high - self.low
        # About four buckets per boundary: most buckets then hold no boundary and need no bisect.
        self.shift = max(0, span.bit_length() - len(self.starts).bit_length() - 2)
        buckets = (span >> self.shift) + 1
        index = list(range(len(self.starts)))  # shared int objects keep the table small
        self.window: list[int] = [
            index[bisect_right(self.starts, self.low + (b << self.shift)) - 1] for b in range(buckets + 1)
        ]

    def bits(self, value: int) -> int:
        if value < self.low:
            return self.sets[0]
        if value >= self.high:
            return self.sets[-1]
        b = (value - self.low) >> self.shift
        first = self.window[b]
        last = self.window[b + 1]
        if first == last:
            return self.sets[first]
        return self.sets[bisect_right(self.starts, value, first + 1, last + 1) - 1]


class _ValueBits:
    """Exact values (protocol or port) mapped to bitsets; 0 in a filter means any value."""

    __slots__ = ("any", "table")

    def __init__(self, values: Sequence[int]) -> None:
        self.any = 0
        exact: dict[int, int] = {}
        for i, v in enumerate(values):
            if v == 0:
                self.any |= 1 << i
            else:
                exact[v] = exact.get(v, 0) | (1 << i)
        self.table: dict[int, int] = {v: b | self.any for v, b in exact.items()}


class _Group:
    """The filters of one (direction, IP version), in weight order, with their field bitsets."""

    __slots__ = ("dport", "dst", "filters", "matches", "proto", "sport", "src")

    def __init__(self, filters: Sequence[SpecificFilter], top: int) -> None:
        self.filters = list(filters)
        self.matches = [Match(f.action, f) for f in self.filters]
        self.src = _IntervalBits([(f.src.first, f.src.last) for f in self.filters], top)
        self.dst = _IntervalBits([(f.dst.first, f.dst.last) for f in self.filters], top)
        self.proto = _ValueBits([f.protocol for f in self.filters])
        self.sport = _ValueBits([f.srcport for f in self.filters])
        self.dport = _ValueBits([f.dstport for f in self.filters])


class Classifier:
    """First-match classification of packets over specific filters, exemptions first."""

    def __init__(self, filters: Sequence[SpecificFilter], exemptions: Exemptions | None = None) -> None:
        self.exemptions = exemptions if exemptions is not None else default_exemptions()
        ordered = sorted(filters, key=lambda f: f.sort_key)
        self.filters: tuple[SpecificFilter, ...] = tuple(ordered)
        self._groups: dict[tuple[Direction, int], _Group] = {}
        for direction in Direction:
            for version, top in ((4, (1 << 32) - 1), (6, (1 << 128) - 1)):
                mine = [f for f in ordered if f.direction is direction and f.version == version]
                if mine:
                    self._groups[(direction, version)] = _Group(mine, top)

    def __len__(self) -> int:
        return len(self.filters)

    def lookup(
        self,
        direction: Direction,
        src: IPAddress,
        dst: IPAddress,
        protocol: int,
        sport: int = 0,
        dport: int = 0,
    ) -> Match | None:
        """Classify one packet; None when no exemption and no filter matches (permit, no IPsec).

        ``sport``/``dport`` are 0 for protocols without ports.
        """
        return self.lookup_int(direction, src.version, int(src), int(dst), protocol, sport, dport)

    def lookup_int(
        self, direction: Direction, version: int, src: int, dst: int, protocol: int, sport: int, dport: int
    ) -> Match | None:
        """``lookup`` with addresses already as integers (the data path's form)."""
        reason = self.exemptions.match(version, src, dst, protocol, sport, dport)
        if reason is not None:
            return Match(Action.PERMIT, None, reason)
        group = self._groups.get((direction, version))
        if group is None:
            return None
        bits = group.src.bits(src) & group.dst.bits(dst)
        if not bits:
            return None
        # AND into the (usually short) candidate set: a positive-int AND is as long as the shorter
        # operand. An empty table means every filter accepts any value of that field.
        p, d, s = group.proto, group.dport, group.sport
        if p.table:
            bits &= p.table.get(protocol, p.any)
        if d.table:
            bits &= d.table.get(dport, d.any)
        if s.table:
            bits &= s.table.get(sport, s.any)
        if not bits:
            return None
        return group.matches[(bits & -bits).bit_length() - 1]


@dataclass(frozen=True)
class CompiledPolicy:
    """The assigned policy, expanded and compiled: what the daemon applies as one unit."""

    policy: str | None
    filters: tuple[SpecificFilter, ...]
    exemptions: Exemptions
    classifier: Classifier = field(compare=False, repr=False)


def compile_store(store: Store, host: HostEnvironment) -> CompiledPolicy:
    """Expand the assigned policy (if any) and build its classifier with the default exemptions.

    Raises ``ExpansionError`` (from ``expand_policy``) or ValueError for a bad ``ipsecexempt``.
    """
    broadcasts = host.broadcast_addresses() if isinstance(host, BroadcastAware) else ()
    exemptions = default_exemptions(store.settings.ipsecexempt, broadcasts)
    policy = store.assigned
    filters = expand_policy(store, policy, host) if policy is not None else []
    classifier = Classifier(filters, exemptions)
    return CompiledPolicy(policy.name if policy else None, classifier.filters, exemptions, classifier)
