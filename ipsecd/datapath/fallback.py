"""The pure-Python SA transform on `cryptography` (docs/datapath.md): the reference for the native path."""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable

from ipsecd.datapath.ah import AH_FIXED, AhCrypto, ah_header, ah_length
from ipsecd.datapath.counters import Counters, CounterSet, DropReason
from ipsecd.datapath.esp import EspCrypto, parse_trailer
from ipsecd.datapath.ipheader import (
    MAX_IPV4,
    PORT_PROTOCOLS,
    PROTO_AH,
    PROTO_ESP,
    PROTO_IPV4,
    PROTO_IPV6,
    PROTO_NONE,
    PROTO_UDP,
    Drop,
    fix_transport_checksum,
    ipv4_header_checksum,
    outer_ipv4,
    outer_ipv6,
    set_length,
    split,
    upper_layer,
    validate,
)
from ipsecd.datapath.replay import ReplayWindow
from ipsecd.datapath.sa import (
    FULL_PORTS,
    Direction,
    EventKind,
    ExpiryReason,
    Mode,
    Protocol,
    SAEvent,
    SAParams,
    Selector,
)
from ipsecd.datapath.udpencap import UDP_HEADER_LEN, Kind, classify, udp_header

MASK32 = 0xFFFFFFFF


def selectors_match(selectors: tuple[Selector, ...], pkt: bytes, version: int) -> bool:
    """docs/datapath.md section 6: any selector matching the packet."""
    if not selectors:
        return True
    if version == 4:
        src, dst = int.from_bytes(pkt[12:16], "big"), int.from_bytes(pkt[16:20], "big")
    else:
        src, dst = int.from_bytes(pkt[8:24], "big"), int.from_bytes(pkt[24:40], "big")
    proto, off, nonfirst = upper_layer(pkt, version)
    for sel in selectors:
        if sel.src.version != version:
            continue
        if src & int(sel.src.netmask) != int(sel.src.network_address):
            continue
        if dst & int(sel.dst.netmask) != int(sel.dst.network_address):
            continue
        if sel.protocol and sel.protocol != proto:
            continue
        if (sel.src_ports == FULL_PORTS and sel.dst_ports == FULL_PORTS) or proto not in PORT_PROTOCOLS:
            return True
        if nonfirst or off + 4 > len(pkt):
            continue
        sport, dport = struct.unpack_from("!HH", pkt, off)
        if sel.src_ports[0] <= sport <= sel.src_ports[1] and sel.dst_ports[0] <= dport <= sel.dst_ports[1]:
            return True
    return False


class PyTransform:
    """One direction of one SA (the `Transform` protocol of ipsecd.datapath.sa)."""

    def __init__(
        self, params: SAParams, direction: Direction, *, now: float = 0.0, initial_seq: int = 1
    ) -> None:
        self._params = params
        self._direction = Direction(direction)
        self._seq_max = (1 << 64) - 1 if params.esn else MASK32
        if not 1 <= initial_seq <= self._seq_max:
            raise ValueError("initial_seq out of range")
        self._next_seq = initial_seq
        self._created = now
        self._expired = False
        self._soft_raised = False
        self._events: list[SAEvent] = []
        self._counters = CounterSet()
        self._window = ReplayWindow(params.replay_window, params.esn)
        self._esp = EspCrypto(params) if params.protocol == Protocol.ESP else None
        self._ah = AhCrypto(params) if params.protocol == Protocol.AH else None
        self._tunnel = params.mode == Mode.TUNNEL
        self._confidential = params.protocol == Protocol.ESP and params.enc_info.confidential
        self._tunnel_src = params.tunnel.src.packed if params.tunnel else b""
        self._tunnel_dst = params.tunnel.dst.packed if params.tunnel else b""
        self._outer_version = params.tunnel.src.version if params.tunnel else 0
        self._bytes = 0
        self._packets = 0
        self._selectors = params.selectors
        if params.protocol == Protocol.AH:
            self._outer_proto = PROTO_AH
        else:
            self._outer_proto = PROTO_UDP if params.encap else PROTO_ESP
        self._udp_len = UDP_HEADER_LEN if params.encap else 0
        way = "sent" if self._direction == Direction.OUTBOUND else "received"
        self._packets_key = f"packets_{way}"
        self._byte_keys = [
            f"authenticated_bytes_{way}",
            f"{'tunnel' if self._tunnel else 'transport'}_bytes_{way}",
        ]
        if self._confidential:
            self._byte_keys.append(f"confidential_bytes_{way}")
        life = params.lifetimes
        self._has_limits = any((life.soft_bytes, life.hard_bytes, life.soft_packets, life.hard_packets))

    # -- the Transform protocol --------------------------------------------------------------

    @property
    def params(self) -> SAParams:
        return self._params

    @property
    def direction(self) -> Direction:
        return self._direction

    @property
    def backend(self) -> str:
        return "python"

    @property
    def expired(self) -> bool:
        return self._expired

    def counters(self) -> Counters:
        return self._counters.snapshot()

    def drain_events(self) -> list[SAEvent]:
        events, self._events = self._events, []
        return events

    def tick(self, now: float) -> None:
        life = self._params.lifetimes
        age = now - self._created
        if life.soft_seconds and age >= life.soft_seconds:
            self._soft(ExpiryReason.SECONDS)
        if life.hard_seconds and age >= life.hard_seconds:
            self._hard(ExpiryReason.SECONDS)

    def protect(self, packets: list[bytes]) -> list[bytes | None]:
        if self._direction != Direction.OUTBOUND:
            raise ValueError("protect() needs an outbound transform")
        return self._run(self._protect_one, packets)

    def unprotect(self, packets: list[bytes]) -> list[bytes | None]:
        if self._direction != Direction.INBOUND:
            raise ValueError("unprotect() needs an inbound transform")
        return self._run(self._unprotect_one, packets)

    # -- lifetimes and counters --------------------------------------------------------------

    def _soft(self, reason: ExpiryReason) -> None:
        if not self._soft_raised and not self._expired:
            self._soft_raised = True
            self._events.append(SAEvent(EventKind.SOFT_EXPIRED, self._params.spi, self._direction, reason))

    def _hard(self, reason: ExpiryReason) -> None:
        if not self._expired:
            self._expired = True
            self._events.append(SAEvent(EventKind.HARD_EXPIRED, self._params.spi, self._direction, reason))

    def _deliver(self, inner_len: int) -> None:
        v = self._counters.values
        v[self._packets_key] += 1
        for key in self._byte_keys:
            v[key] += inner_len
        self._bytes += inner_len
        self._packets += 1
        if self._has_limits:
            self._check_limits()

    def _check_limits(self) -> None:
        life = self._params.lifetimes
        if life.soft_bytes and self._bytes >= life.soft_bytes:
            self._soft(ExpiryReason.BYTES)
        if life.soft_packets and self._packets >= life.soft_packets:
            self._soft(ExpiryReason.PACKETS)
        if life.hard_bytes and self._bytes >= life.hard_bytes:
            self._hard(ExpiryReason.BYTES)
        if life.hard_packets and self._packets >= life.hard_packets:
            self._hard(ExpiryReason.PACKETS)

    def _run(self, step: Callable[[bytes], bytes], packets: list[bytes]) -> list[bytes | None]:
        results: list[bytes | None] = []
        append = results.append
        for pkt in packets:
            try:
                append(step(pkt))
            except Drop as drop:
                self._counters.drop(drop.reason)
                append(None)
            except (IndexError, struct.error):  # defensive: a parse this module did not foresee
                self._counters.drop(DropReason.MALFORMED)
                append(None)
        return results

    # -- outbound ----------------------------------------------------------------------------

    def _protect_one(self, pkt: bytes) -> bytes:
        if self._expired:
            raise Drop(DropReason.SA_EXPIRED)
        pkt = bytes(pkt)
        version = validate(pkt, fragments=self._tunnel)
        if self._selectors and not selectors_match(self._selectors, pkt, version):
            raise Drop(DropReason.SELECTOR_MISMATCH)
        seq = self._next_seq
        if seq > self._seq_max:
            self._hard(ExpiryReason.SEQUENCE)
            raise Drop(DropReason.SA_EXPIRED)
        if self._tunnel:
            out = self._protect_tunnel(pkt, version, seq)
        else:
            out = self._protect_transport(pkt, version, seq)
        self._next_seq = seq + 1
        self._deliver(len(pkt))
        return out

    def _wrapped_len(self, payload_len: int, version: int) -> int:
        """Bytes of [UDP +] ESP, or of AH, around a payload of `payload_len` bytes."""
        esp = self._esp
        if esp is not None:
            pad = -(payload_len + 2) % esp.align
            return self._udp_len + 8 + esp.iv_len + payload_len + pad + 2 + esp.icv_len
        assert self._ah is not None
        return ah_length(self._ah.icv_len, version) + payload_len

    @staticmethod
    def _check_size(total: int, version: int) -> None:
        if (version == 4 and total > MAX_IPV4) or (version == 6 and total - 40 > 0xFFFF):
            raise Drop(DropReason.OVERSIZED)

    def _protect_tunnel(self, pkt: bytes, version: int, seq: int) -> bytes:
        over = self._outer_version
        hdr_len = 20 if over == 4 else 40
        total = hdr_len + self._wrapped_len(len(pkt), over)
        self._check_size(total, over)
        inner_proto = PROTO_IPV4 if version == 4 else PROTO_IPV6
        proto = self._outer_proto
        if version == 4:
            tos = pkt[1]
            df = bool(pkt[6] & 0x40)
        else:
            tos = ((pkt[0] & 0x0F) << 4) | (pkt[1] >> 4)
            df = True
        if over == 4:
            outer = outer_ipv4(self._tunnel_src, self._tunnel_dst, tos, seq & 0xFFFF, df, proto, total)
        else:
            outer = outer_ipv6(self._tunnel_src, self._tunnel_dst, tos, proto, total - 40)
        return self._wrap(outer, over, inner_proto, pkt, seq)

    def _protect_transport(self, pkt: bytes, version: int, seq: int) -> bytes:
        nh_off, start = split(pkt, version)
        payload = pkt[start:]
        total = start + self._wrapped_len(len(payload), version)
        self._check_size(total, version)
        head = bytearray(pkt[:start])
        next_header = head[nh_off]
        head[nh_off] = self._outer_proto
        set_length(head, version, total)
        if version == 4:
            ipv4_header_checksum(head)
        return self._wrap(bytes(head), version, next_header, payload, seq)

    def _wrap(self, head: bytes, version: int, next_header: int, payload: bytes, seq: int) -> bytes:
        """`head` (outer header) + [UDP] + ESP or AH around `payload`."""
        if self._esp is not None:
            esp = self._esp.seal(seq, payload, next_header)
            encap = self._params.encap
            if encap is None:
                return head + esp
            return head + udp_header(encap.sport, encap.dport, esp, head, version) + esp
        assert self._ah is not None
        start = len(head)
        length = ah_length(self._ah.icv_len, version)
        out = bytearray(head + ah_header(next_header, length, self._params.spi, seq) + payload)
        icv = self._ah.icv(out, version, start, seq)
        out[start + AH_FIXED : start + AH_FIXED + len(icv)] = icv
        return bytes(out)

    # -- inbound -----------------------------------------------------------------------------

    def _replay_check(self, seq_low: int) -> int:
        if self._expired:
            raise Drop(DropReason.SA_EXPIRED)
        seq = self._window.infer(seq_low)
        if seq is None or not self._window.check(seq):
            raise Drop(DropReason.REPLAY)
        return seq

    def _unprotect_one(self, pkt: bytes) -> bytes:
        pkt = bytes(pkt)
        version = validate(pkt)
        nh_off, off = split(pkt, version)
        proto = pkt[nh_off]
        if self._esp is not None:
            inner_proto, inner = self._unprotect_esp(pkt, proto, off)
        else:
            inner_proto, inner = self._unprotect_ah(pkt, version, proto, off)
        if self._tunnel:
            if inner_proto not in (PROTO_IPV4, PROTO_IPV6):
                raise Drop(DropReason.NOT_DECRYPTED)
            try:
                inner_version = validate(inner, fragments=True)
            except Drop:
                raise Drop(DropReason.NOT_DECRYPTED) from None
            if inner_version != (4 if inner_proto == PROTO_IPV4 else 6):
                raise Drop(DropReason.NOT_DECRYPTED)
            result = inner
        else:
            inner_version = version
            head = bytearray(pkt[:off])
            head[nh_off] = inner_proto
            out = head + inner
            set_length(out, version, len(out))
            if version == 4:
                hdr = out[:off]
                ipv4_header_checksum(hdr)
                out[:off] = hdr
            if self._params.encap is not None:
                fix_transport_checksum(out, version)
            result = bytes(out)
        if self._selectors and not selectors_match(self._selectors, result, inner_version):
            raise Drop(DropReason.SELECTOR_MISMATCH)
        self._deliver(len(result))
        return result

    def _unprotect_esp(self, pkt: bytes, proto: int, off: int) -> tuple[int, bytes]:
        assert self._esp is not None
        if self._params.encap is not None:
            if proto != PROTO_UDP or off + UDP_HEADER_LEN > len(pkt):
                raise Drop(DropReason.MALFORMED)
            if (pkt[off + 4] << 8 | pkt[off + 5]) != len(pkt) - off:
                raise Drop(DropReason.MALFORMED)
            off += UDP_HEADER_LEN
            kind = classify(pkt[off:])
            if kind == Kind.NAT_KEEPALIVE:
                raise Drop(DropReason.NAT_KEEPALIVE)
            if kind == Kind.NON_ESP_MARKER:
                raise Drop(DropReason.NON_ESP_MARKER)
        elif proto != PROTO_ESP:
            raise Drop(DropReason.MALFORMED)
        esp = pkt[off:]
        if len(esp) < self._esp.min_len:
            raise Drop(DropReason.MALFORMED)
        spi, seq_low = struct.unpack_from("!II", esp)
        if spi != self._params.spi:
            raise Drop(DropReason.BAD_SPI)
        seq = self._replay_check(seq_low)
        plain = self._esp.open(esp, seq)
        self._window.commit(seq)
        if plain is None:
            raise Drop(DropReason.NOT_DECRYPTED)
        payload, next_header = parse_trailer(plain)
        if next_header == PROTO_NONE:
            raise Drop(DropReason.DUMMY)
        return next_header, payload

    def _unprotect_ah(self, pkt: bytes, version: int, proto: int, off: int) -> tuple[int, bytes]:
        assert self._ah is not None
        if proto != PROTO_AH or off + AH_FIXED > len(pkt):
            raise Drop(DropReason.MALFORMED)
        length = ah_length(self._ah.icv_len, version)
        if (pkt[off + 1] + 2) * 4 != length or off + length > len(pkt):
            raise Drop(DropReason.MALFORMED)
        spi, seq_low = struct.unpack_from("!II", pkt, off + 4)
        if spi != self._params.spi:
            raise Drop(DropReason.BAD_SPI)
        seq = self._replay_check(seq_low)
        icv = self._ah.icv(pkt, version, off, seq)
        if not hmac.compare_digest(icv, pkt[off + AH_FIXED : off + AH_FIXED + len(icv)]):
            raise Drop(DropReason.NOT_AUTHENTICATED)
        self._window.commit(seq)
        return pkt[off], pkt[off + length :]
