"""The packet router of the data path: what happens to each captured or received packet.

Pure logic (no sockets, the clock is passed in), driven in batches by ``ipsecd.daemon.engine``:

- ``outbound(packets, now)``: cleartext packets captured from the TUN device. Each is classified:
  first against the manual-keying policies of the SA database (``ipsecd.datapath.sadb``), then
  with the compiled filter classifier (``ipsecd.policy.classifier``). permit: sent as it is (the
  daemon only sees such a packet when a soft association let it go in clear); block: dropped and
  counted; negotiate: protected with its SA (bundle) when there is one, otherwise queued in a
  bounded queue and an ``Acquire`` event is raised for IKE. With ``soft`` the flow falls back to
  clear after ``soft_timeout`` seconds without an SA and a ``SoftAssociation`` is recorded.
- ``inbound(packets, now)``: outer ESP/AH packets (raw sockets) and ESP-in-UDP datagrams (the
  NAT-T socket): the SA is found by (protocol, SPI) (``ipsecd.datapath.demux``), the packet is
  decapsulated (bundles: as many rounds as SAs), then checked against the policy it must arrive
  under (RFC 4301 section 5.2; the SA's own selectors were checked by the transform), and
  delivered for the TUN device.

Results are ``Outgoing`` lists of packets by the socket that must send them.
"""

from __future__ import annotations

import collections
import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ipsecd.datapath.bundle import Bundle
from ipsecd.datapath.demux import PeekKind, peek
from ipsecd.datapath.ipheader import PROTO_AH, PROTO_ESP, PROTO_UDP, outer_ipv6, split
from ipsecd.datapath.sa import IPAddress, Transform
from ipsecd.datapath.sadb import (
    Flow,
    InstalledSA,
    PolicyAction,
    PolicyDir,
    SADatabase,
    SecurityPolicy,
    flow_of,
)
from ipsecd.datapath.udpencap import NAT_KEEPALIVE, NON_ESP_MARKER, UDP_HEADER_LEN
from ipsecd.policy.classifier import Classifier
from ipsecd.policy.model import Action
from ipsecd.policy.order import Direction, SpecificFilter

NATT_PORT = 4500  # RFC 3948 section 2
_UDP = struct.Struct("!HHHH")
_IPV4_HEAD = struct.Struct("!BBHHHBBH")  # RFC 791: up to the checksum; addresses follow
IKE_PORTS = (500, 4500)


def _ip(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


@dataclass(frozen=True)
class Acquire:
    """Traffic needs an SA that does not exist: IKE should negotiate one (PF_KEY's ACQUIRE role).

    ``filter`` is the specific filter that asked for it, ``policy`` the manual policy (one of them).
    """

    src: IPAddress
    dst: IPAddress
    protocol: int
    sport: int
    dport: int
    tunnel: IPAddress | None
    filter: SpecificFilter | None
    policy: SecurityPolicy | None
    soft: bool
    when: float


@dataclass(frozen=True)
class SoftAssociation:
    """Negotiation with ``peer`` failed and the filter action allows clear traffic (``soft``)."""

    local: IPAddress
    peer: IPAddress
    rule: str | None
    when: float


Event = Acquire | SoftAssociation


class EventChannel:
    """A bounded queue of data-path events for IKE (``drain``) plus synchronous subscribers."""

    def __init__(self, limit: int = 1024) -> None:
        self._queue: collections.deque[Event] = collections.deque()
        self.limit = limit
        self.dropped = 0
        self.subscribers: list[Callable[[Event], None]] = []

    def put(self, event: Event) -> None:
        for callback in self.subscribers:
            callback(event)
        if len(self._queue) >= self.limit:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)

    def drain(self) -> list[Event]:
        out = list(self._queue)
        self._queue.clear()
        return out

    def pending(self) -> list[Event]:
        return list(self._queue)


@dataclass
class Outgoing:
    """Packets to send, by socket: IPv4 with header (raw, IP_HDRINCL), UDP payloads, IPv6 payloads."""

    raw4: list[tuple[bytes, str]] = field(default_factory=list)  # (whole IPv4 packet, destination)
    udp4: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)
    raw6: list[tuple[bytes, str, str, int]] = field(default_factory=list)  # payload, dst, src, proto
    udp6: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)
    clear6: list[tuple[bytes, str]] = field(default_factory=list)  # whole IPv6 packets (IPV6_HDRINCL)
    # Plain packets for an SA the native fast path owns, by its handle: it protects and sends them.
    fast: list[tuple[int, list[bytes]]] = field(default_factory=list)

    def extend(self, other: Outgoing) -> None:
        self.fast += other.fast
        self.raw4 += other.raw4
        self.udp4 += other.udp4
        self.raw6 += other.raw6
        self.udp6 += other.udp6
        self.clear6 += other.clear6

    def __len__(self) -> int:
        return (
            len(self.raw4)
            + len(self.udp4)
            + len(self.raw6)
            + len(self.udp6)
            + len(self.clear6)
            + sum(len(b) for _, b in self.fast)
        )


@dataclass
class RouterStats:
    captured: int = 0  # packets read from the TUN device
    sent_clear: int = 0  # permitted or soft-fallback packets re-sent in clear
    blocked: int = 0  # dropped by a block filter or a discard policy
    protected: int = 0  # packets protected and handed to a socket
    offloaded: int = 0  # to protect with an SA the fast path carries: handed to it (--fastpath)
    protect_failed: int = 0  # the transform dropped it (counted in the SA's counters too)
    queued: int = 0  # waiting for an SA
    queue_dropped: int = 0  # queue full, or the acquire timed out
    acquires: int = 0
    soft_fallbacks: int = 0
    malformed: int = 0  # captured packets that are not IP
    looped: int = 0  # the daemon's own IPsec/IKE packets seen on the TUN (must stay 0)
    stray: int = 0  # IPv6 link-local or multicast packets the kernel sent on the TUN itself
    received: int = 0  # outer packets handed to inbound()
    bad_spi: int = 0
    unprotect_failed: int = 0
    policy_dropped: int = 0  # inbound policy check failed (RFC 4301 section 5.2)
    delivered: int = 0  # decapsulated packets for the TUN device
    ike_packets: int = 0  # non-ESP-marker datagrams passed to IKE
    keepalives: int = 0


@dataclass
class _Pending:
    acquire: Acquire
    packets: list[bytes]
    first: float


def _flow_key(pkt: bytes) -> bytes | None:
    """The bytes that decide an IPv4 packet's fate (protocol, addresses, ports); None otherwise.

    Only unfragmented IPv4 without options is cached; everything else takes the full path.
    """
    if len(pkt) < 24 or pkt[0] != 0x45 or (pkt[6] & 0x3F) or pkt[7]:
        return None
    return pkt[9:10] + pkt[12:24]


def _carries_ipsec(pkt: bytes) -> bool:
    """Whether a decapsulated packet is itself ESP or AH (the next layer of a bundle)."""
    if not pkt:
        return False
    if pkt[0] >> 4 == 4:
        return len(pkt) >= 20 and pkt[9] in (PROTO_ESP, PROTO_AH)
    return True  # IPv6: extension headers may come first; let peek() walk them


def _tuple(flow: Flow) -> tuple[int, int, int]:
    return (flow.version, flow.src, flow.dst)


class Router:
    """Classifies, protects, queues and decapsulates packets; see the module docstring."""

    def __init__(
        self,
        classifier: Classifier,
        sadb: SADatabase,
        events: EventChannel | None = None,
        *,
        soft_timeout: float = 3.0,
        acquire_timeout: float = 30.0,
        acquire_retry: float = 10.0,
        queue_per_flow: int = 32,
        queue_total: int = 1024,
    ) -> None:
        self.classifier = classifier
        self.sadb = sadb
        self.events = events if events is not None else EventChannel()
        self.soft_timeout = soft_timeout
        self.acquire_timeout = acquire_timeout
        self.acquire_retry = acquire_retry
        self.queue_per_flow = queue_per_flow
        self.queue_total = queue_total
        self.stats = RouterStats()
        self.pending: dict[tuple[Any, ...], _Pending] = {}
        self.soft: dict[tuple[int, int, int], SoftAssociation] = {}  # (version, src, dst)
        self.ike_inbox: collections.deque[tuple[bytes, tuple[str, int], str | None]] = collections.deque(
            maxlen=256
        )
        self._bundles: dict[tuple[int, ...], Transform | Bundle] = {}
        self._bundle_gen = -1
        self.soft_actions: dict[str, bool] = {}  # filter action name -> soft (set by the engine)
        self._addr_cache: dict[str, bytes] = {}
        # Decisions of recent flows (header bytes -> verdict and SAs), valid for one SA-database
        # generation: most packets of a batch belong to a few flows.
        self._flows: dict[bytes, tuple[str, Transform | Bundle | None]] = {}
        self._flows_gen = -1
        self._checks: dict[bytes, bool] = {}  # inbound policy check results, same idea
        # ipsecd --fastpath: the fast-path handle of an SA's transform (0: not there). Packets the
        # router decides to protect with such an SA go to the fast path (Outgoing.fast): two
        # senders on one SA would reuse sequence numbers.
        self.offload: Callable[[Transform | Bundle], int] | None = None
        self._checks_gen = -1

    def set_policy(self, classifier: Classifier, soft_actions: dict[str, bool]) -> None:
        """A reloaded policy: new classifier; queues, soft associations and counters stay."""
        self.classifier = classifier
        self.soft_actions = dict(soft_actions)
        self._flows.clear()
        self._checks.clear()

    # --- outbound ------------------------------------------------------------------------------

    def _bundle(self, chain: list[InstalledSA]) -> Transform | Bundle:
        if self._bundle_gen != self.sadb.generation:
            self._bundles.clear()
            self._bundle_gen = self.sadb.generation
        key = tuple(id(sa) for sa in chain)
        found = self._bundles.get(key)
        if found is None:
            found = chain[0].transform if len(chain) == 1 else Bundle([sa.transform for sa in chain])
            self._bundles[key] = found
        return found

    def _decide(
        self, flow: Flow
    ) -> tuple[str, list[InstalledSA] | None, SpecificFilter | None, SecurityPolicy | None]:
        """('clear' | 'block' | 'protect' | 'acquire', SAs, filter, policy) for an outbound flow."""
        policy = self.sadb.policy_for(PolicyDir.OUT, flow)
        if policy is not None:
            if policy.action is PolicyAction.BYPASS:
                return "clear", None, None, policy
            if policy.action is PolicyAction.DISCARD:
                return "block", None, None, policy
            chain = self.sadb.outbound_bundle(policy, flow)
            if chain is None:
                return "acquire", None, None, policy
            return ("protect" if chain else "clear"), chain, None, policy
        match = self.classifier.lookup_int(
            Direction.OUTBOUND, flow.version, flow.src, flow.dst, flow.protocol, flow.sport, flow.dport
        )
        if match is None or match.action is Action.PERMIT:
            return "clear", None, None, None
        if match.action is Action.BLOCK:
            return "block", None, match.filter, None
        flt = match.filter
        tunnel = flt.tunnel if flt is not None else None
        found = self.sadb.outbound_chain_for_flow(flow, tunnel)
        if found is not None:
            return "protect", found, flt, None
        if _tuple(flow) in self.soft:
            return "clear", None, flt, None
        return "acquire", None, flt, None

    def outbound(self, packets: Sequence[bytes], now: float) -> Outgoing:
        out = Outgoing()
        stats = self.stats
        stats.captured += len(packets)
        groups: dict[int, tuple[Transform | Bundle, list[bytes]]] = {}
        if self._flows_gen != self.sadb.generation or len(self._flows) > 4096:
            self._flows.clear()
            self._flows_gen = self.sadb.generation
        flows = self._flows
        for pkt in packets:
            key = _flow_key(pkt)
            cached = flows.get(key) if key is not None else None
            if cached is not None:
                verdict, bundle = cached
                if verdict == "protect":
                    assert bundle is not None
                    groups.setdefault(id(bundle), (bundle, []))[1].append(pkt)
                    continue
                if verdict == "block":
                    stats.blocked += 1
                    continue
            flow = flow_of(pkt)
            if flow is None:
                stats.malformed += 1
                continue
            if flow.protocol in (PROTO_ESP, PROTO_AH) or (
                flow.protocol == PROTO_UDP and (flow.sport in IKE_PORTS or flow.dport in IKE_PORTS)
            ):
                # Our own ESP/AH/IKE must bypass the capture (SO_MARK): seeing one here is a loop.
                stats.looped += 1
            verdict, chain, flt, policy = self._decide(flow)
            if (
                verdict == "clear"
                and flow.version == 6
                and (flow.dst >> 120 == 0xFF or flow.src >> 118 == 0x3FA)
            ):
                stats.stray += 1  # the kernel's own link-local/multicast traffic on the device
                continue
            if verdict == "clear":
                self._send_clear(pkt, flow, out)
            elif verdict == "block":
                stats.blocked += 1
                if key is not None:
                    flows[key] = ("block", None)
            elif verdict == "protect":
                assert chain is not None
                bundle = self._bundle(chain)
                groups.setdefault(id(bundle), (bundle, []))[1].append(pkt)
                if key is not None:
                    flows[key] = ("protect", bundle)
            else:
                self._queue(pkt, flow, flt, policy, now)
        for bundle, batch in groups.values():
            handle = self.offload(bundle) if self.offload is not None else 0
            if handle:
                stats.offloaded += len(batch)
                out.fast.append((handle, batch))
                continue
            for result in bundle.protect(batch):
                if result is None:
                    stats.protect_failed += 1
                else:
                    self._send_protected(result, out)
        return out

    def _send_clear(self, pkt: bytes, flow: Flow, out: Outgoing) -> None:
        self.stats.sent_clear += 1
        dst = str(_ip(flow.version, flow.dst))
        if flow.version == 4:
            out.raw4.append((pkt, dst))
        else:
            out.clear6.append((pkt, dst))

    def _send_protected(self, pkt: bytes, out: Outgoing) -> None:
        self.stats.protected += 1
        version = pkt[0] >> 4
        if version == 4:
            proto, off = pkt[9], (pkt[0] & 0x0F) * 4
            dst = str(ipaddress.IPv4Address(pkt[16:20]))
            if proto == PROTO_UDP:
                dport = (pkt[off + 2] << 8) | pkt[off + 3]
                out.udp4.append((pkt[off + 8 :], (dst, dport)))
            else:
                out.raw4.append((pkt, dst))
            return
        nh_off, off = split(pkt, 6)
        proto = pkt[nh_off]
        src6 = str(ipaddress.IPv6Address(pkt[8:24]))
        dst6 = str(ipaddress.IPv6Address(pkt[24:40]))
        if proto == PROTO_UDP and off == 40:
            dport = (pkt[off + 2] << 8) | pkt[off + 3]
            out.udp6.append((pkt[off + 8 :], (dst6, dport)))
        elif off == 40:
            out.raw6.append((pkt[40:], dst6, src6, proto))
        else:  # extension headers before ESP/AH: send the whole packet
            out.clear6.append((pkt, dst6))

    def _queue(
        self, pkt: bytes, flow: Flow, flt: SpecificFilter | None, policy: SecurityPolicy | None, now: float
    ) -> None:
        tunnel = flt.tunnel if flt is not None else None
        key: tuple[Any, ...] = (_tuple(flow), id(flt) if flt is not None else None, id(policy))
        pend = self.pending.get(key)
        if pend is None:
            soft = flt is not None and self._faction_soft(flt)
            acq = Acquire(
                src=flow.address("src"),
                dst=flow.address("dst"),
                protocol=flow.protocol,
                sport=flow.sport,
                dport=flow.dport,
                tunnel=tunnel,
                filter=flt,
                policy=policy,
                soft=soft,
                when=now,
            )
            pend = _Pending(acq, [], now)
            self.pending[key] = pend
            self.stats.acquires += 1
            self.events.put(acq)
        total = sum(len(p.packets) for p in self.pending.values())
        if len(pend.packets) >= self.queue_per_flow or total >= self.queue_total:
            self.stats.queue_dropped += 1
            return
        pend.packets.append(pkt)
        self.stats.queued += 1

    def _faction_soft(self, flt: SpecificFilter) -> bool:
        return self.soft_actions.get(flt.filteraction, False)

    def tick(self, now: float) -> Outgoing:
        """Timers: resend queued packets whose SA appeared, soft fallback, acquire expiry/retry."""
        out = Outgoing()
        for key, pend in list(self.pending.items()):
            acq = pend.acquire
            flow = flow_of(pend.packets[0]) if pend.packets else None
            if flow is not None:
                verdict, _chain, _flt, _policy = self._decide(flow)
                if verdict == "protect":
                    del self.pending[key]
                    out.extend(self.outbound(pend.packets, now))
                    self.stats.captured -= len(pend.packets)  # counted when captured
                    continue
            age = now - pend.first
            if acq.soft and age >= self.soft_timeout:
                del self.pending[key]
                assoc = SoftAssociation(acq.src, acq.dst, acq.filter.rule if acq.filter else None, now)
                self.soft[(acq.src.version, int(acq.src), int(acq.dst))] = assoc
                self.stats.soft_fallbacks += 1
                self.events.put(assoc)
                for pkt in pend.packets:
                    f = flow_of(pkt)
                    if f is not None:
                        self._send_clear(pkt, f, out)
                continue
            if age >= self.acquire_timeout:
                del self.pending[key]
                self.stats.queue_dropped += len(pend.packets)
                continue
            if now - acq.when >= self.acquire_retry:
                fresh = Acquire(**{**acq.__dict__, "when": now})
                pend.acquire = fresh
                self.events.put(fresh)
        return out

    # --- inbound -------------------------------------------------------------------------------

    def udp_to_packets(self, datagrams: Sequence[tuple[bytes, tuple[str, int], str | None]]) -> list[bytes]:
        """ESP-in-UDP datagrams of the NAT-T socket back to whole outer packets; IKE aside.

        The socket gives the UDP payload, the peer's address and port, and (pktinfo) our address;
        the transforms take the whole outer packet (docs/datapath.md section 2.4), rebuilt as:

            +----------------------------+---------------------------+----------------------+
            | IPv4 header (RFC 791), 20  | UDP header (RFC 768), 8   | ESP (RFC 4303) ...   |
            | src peer, dst local,       | sport peer, dport 4500,   | the datagram as      |
            | proto 17, ID 0, TTL 64,    | length, checksum 0        | received             |
            | checksum 0                 |                           |                      |
            +----------------------------+---------------------------+----------------------+

        (IPv6: a 40-byte header, next header 17, hop limit 64.) Neither checksum is verified on
        input: ESP protects the packet (RFC 3948 section 3.1.2).
        """
        packets: list[bytes] = []
        for data, peer, local in datagrams:
            if data == NAT_KEEPALIVE:
                self.stats.keepalives += 1
                continue
            if data[:4] == NON_ESP_MARKER:
                self.stats.ike_packets += 1
                self.ike_inbox.append((data, peer, local))
                continue
            if local is None:
                self.stats.unprotect_failed += 1
                continue
            src = self._packed(peer[0])
            dst = self._packed(local)
            total = UDP_HEADER_LEN + len(data)
            # Checksums 0: the transforms never verify the outer IPv4 header checksum nor the
            # UDP checksum (RFC 3948 section 3.1.2: ESP protects the packet).
            udp = _UDP.pack(peer[1], NATT_PORT, total, 0)
            if len(src) == 4:
                head = _IPV4_HEAD.pack(0x45, 0, 20 + total, 0, 0, 64, PROTO_UDP, 0) + src + dst
            else:
                head = outer_ipv6(src, dst, 0, PROTO_UDP, total)
            packets.append(head + udp + data)
        return packets

    def _packed(self, text: str) -> bytes:
        found = self._addr_cache.get(text)
        if found is None:
            found = ipaddress.ip_address(text.split("%", 1)[0]).packed
            if len(self._addr_cache) < 4096:
                self._addr_cache[text] = found
        return found

    def inbound(self, packets: Sequence[bytes], now: float) -> list[bytes]:
        stats = self.stats
        stats.received += len(packets)
        work: list[tuple[bytes, list[InstalledSA]]] = [(p, []) for p in packets]
        delivered: list[bytes] = []
        for _round in range(4):  # an SA bundle has at most a few layers
            groups: dict[int, tuple[InstalledSA, list[tuple[bytes, list[InstalledSA]]]]] = {}
            nxt: list[tuple[bytes, list[InstalledSA]]] = []
            for pkt, chain in work:
                if chain and not _carries_ipsec(pkt):
                    self._deliver(pkt, chain, delivered)  # the inner packet: nothing left to remove
                    continue
                pk = peek(pkt)
                if pk.kind in (PeekKind.ESP, PeekKind.ESP_IN_UDP, PeekKind.AH):
                    proto = PROTO_AH if pk.kind is PeekKind.AH else PROTO_ESP
                    sa = self.sadb.inbound_sa(proto, pk.spi)
                    if sa is None:
                        stats.bad_spi += 1
                        continue
                    groups.setdefault(id(sa), (sa, []))[1].append((pkt, chain))
                elif chain:
                    self._deliver(pkt, chain, delivered)
                else:
                    stats.unprotect_failed += 1  # not IPsec at all: not ours to deliver
            for sa, items in groups.values():
                results = sa.transform.unprotect([p for p, _ in items])
                for (_pkt, chain), res in zip(items, results, strict=True):
                    if res is None:
                        stats.unprotect_failed += 1
                    else:
                        nxt.append((res, [*chain, sa]))
            if not nxt:
                break
            work = nxt
        else:
            for pkt, chain in work:
                self._deliver(pkt, chain, delivered)
        return delivered

    def _deliver(self, pkt: bytes, chain: list[InstalledSA], delivered: list[bytes]) -> None:
        if self._checks_gen != self.sadb.generation or len(self._checks) > 4096:
            self._checks.clear()
            self._checks_gen = self.sadb.generation
        key = _flow_key(pkt)
        if key is not None:
            key += b"".join(sa.state.params.spi.to_bytes(4, "big") for sa in chain)
            known = self._checks.get(key)
            if known is not None:
                if known:
                    self.stats.delivered += 1
                    delivered.append(pkt)
                else:
                    self.stats.policy_dropped += 1
                return
        allowed = self._inbound_check(pkt, chain)
        if allowed is None:
            self.stats.unprotect_failed += 1
            return
        if key is not None:
            self._checks[key] = allowed
        if not allowed:
            self.stats.policy_dropped += 1
            return
        self.stats.delivered += 1
        delivered.append(pkt)

    def _inbound_check(self, pkt: bytes, chain: list[InstalledSA]) -> bool | None:
        """RFC 4301 section 5.2 for a decapsulated packet; None when it is not an IP packet."""
        flow = flow_of(pkt)
        if flow is None:
            return None
        # chain is in the order the SAs were removed: outermost first.
        allowed = self.sadb.inbound_allowed(flow, chain)
        if allowed is None:
            match = self.classifier.lookup_int(
                Direction.INBOUND, flow.version, flow.src, flow.dst, flow.protocol, flow.sport, flow.dport
            )
            allowed = match is None or match.action is not Action.BLOCK
        return allowed
