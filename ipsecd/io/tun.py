"""A Linux TUN device with a batched, non-blocking packet interface.

The data path captures cleartext IP packets from a TUN device and writes decrypted ones back.
System calls dominate its cost, so the interface is batched (wireguard-go's tun.Device is the
model): ``read_batch`` drains up to ``max_packets`` until the queue is empty, ``write_batch`` writes
a list and reports how far it got. The single-packet ``os.read``/``os.write`` calls behind it can be
replaced by a native implementation (or IFF_VNET_HDR super-packets) without changing callers.

The device is created with IFF_TUN | IFF_NO_PI: every read returns exactly one IPv4 or IPv6 packet,
with no packet-information prefix (Linux Documentation/networking/tuntap.rst). With ``vnet_hdr``
(IFF_VNET_HDR) the kernel puts a 10-byte virtio_net_hdr before every packet in both directions;
``read_batch`` / ``write_batch`` strip and add it, so callers still see plain IP packets.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass
from types import TracebackType

TUN_PATH = "/dev/net/tun"
# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
# TUNSETOFFLOAD flags: what the kernel may hand over unfinished (IFF_VNET_HDR says how).
TUN_F_CSUM = 0x01  # checksum left to the reader (VIRTIO_NET_HDR_F_NEEDS_CSUM)
TUN_F_TSO4 = 0x02  # TCP/IPv4 super-packets
TUN_F_TSO6 = 0x04  # TCP/IPv6 super-packets
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20  # UDP/IPv4 super-packets
TUN_F_USO6 = 0x40  # UDP/IPv6 super-packets
# What ``enable_offloads`` asks for, most first: TSO and USO, TSO only, checksum only (then none).
OFFLOAD_TRIES = (
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
    TUN_F_CSUM,
)
# <linux/sockios.h>
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
IFF_UP = 0x1
IFNAMSIZ = 16
MAX_PACKET = 65535

# struct ifreq { char ifr_name[IFNAMSIZ]; union { short ifr_flags; int ifr_mtu; ... } } (40 bytes)
_IFREQ_FLAGS = "16sH22x"
_IFREQ_INT = "16si20x"


VNET_HDR_LEN = 10
VIRTIO_NET_HDR_F_NEEDS_CSUM = 0x01
VIRTIO_NET_HDR_F_DATA_VALID = 0x02
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80


@dataclass(frozen=True)
class VnetHeader:
    """The header IFF_VNET_HDR puts before every packet (struct virtio_net_hdr of the virtio
    specification's network device, 10 bytes, little-endian on the machines we run on):

        0        1          2                   4                   6                   8                   10
        +--------+----------+-------------------+-------------------+-------------------+-------------------+
        | flags  | gso_type |  hdr_len (le16)   |  gso_size (le16)  | csum_start (le16) | csum_offset (le16)|
        +--------+----------+-------------------+-------------------+-------------------+-------------------+

    flags: NEEDS_CSUM (the checksum at csum_start + csum_offset still has to be computed over the
    bytes from csum_start on) or DATA_VALID. gso_type: NONE, or the kind of super-packet that
    follows, to be cut into gso_size-byte segments after its hdr_len header bytes.
    """

    flags: int = 0
    gso_type: int = VIRTIO_NET_HDR_GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @classmethod
    def parse(cls, data: bytes) -> VnetHeader:
        if len(data) < VNET_HDR_LEN:
            raise ValueError(f"virtio_net_hdr needs {VNET_HDR_LEN} bytes, got {len(data)}")
        return cls(*struct.unpack_from("<BBHHHH", data))

    def pack(self) -> bytes:
        return struct.pack(
            "<BBHHHH",
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        )


_NO_VNET_HDR = bytes(VNET_HDR_LEN)  # flags 0, GSO_NONE: one complete packet


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def complete_checksum(pkt: bytes, start: int, offset: int) -> bytes | None:
    """VIRTIO_NET_HDR_F_NEEDS_CSUM: the 16-bit field at ``start + offset`` holds the (not inverted)
    pseudo-header sum; the checksum is the complement of the RFC 1071 sum of everything from
    ``start`` on, that field included. None if the offsets lie outside the packet."""
    field = start + offset
    if field + 2 > len(pkt):
        return None
    data = pkt[start:]
    if len(data) % 2:
        data += b"\0"
    total = _fold(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    csum = (~total & 0xFFFF) or 0xFFFF  # 0 is sent as 0xFFFF (the same in one's complement)
    return pkt[:field] + csum.to_bytes(2, "big") + pkt[field + 2 :]


class TunError(OSError):
    """The TUN device could not be created or configured."""


@dataclass
class TunStats:
    """Counters since the device was opened (mutable; read by the daemon's status)."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_rejected: int = 0  # the kernel refused the packet (malformed, too big): dropped
    tx_full: int = 0  # write_batch stopped because the device queue was full (EAGAIN)
    rx_dropped: int = 0  # vnet_hdr: a super-packet (GSO) or a bad header, not for a Python reader


def _check_name(name: str) -> bytes:
    raw = name.encode()
    if len(raw) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise TunError(errno.EINVAL, f"invalid interface name {name!r} (at most {IFNAMSIZ - 1} bytes)")
    return raw


class TunDevice:
    """An open TUN device. Use ``TunDevice.open()``; close it (or use ``with``) when done."""

    def __init__(self, fd: int, name: str, vnet_hdr: bool = False) -> None:
        self._fd = fd
        self.name = name
        self.vnet_hdr = vnet_hdr
        self.offload = 0  # the TUNSETOFFLOAD flags in force (set by set_offload)
        self.stats = TunStats()
        # Interface ioctls act on the network namespace of the socket they go through: keep one
        # from the device's namespace, so configuring works from any thread or namespace later.
        self._ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    @classmethod
    def open(
        cls,
        name: str = "",
        *,
        mtu: int | None = None,
        up: bool = True,
        multi_queue: bool = False,
        vnet_hdr: bool = False,
    ) -> TunDevice:
        """Create (or attach to) TUN device ``name`` ('' lets the kernel pick ``tunN``).

        ``vnet_hdr`` (IFF_VNET_HDR): the kernel prefixes every packet with a virtio_net_hdr, which
        ``read_batch`` / ``write_batch`` strip and add; a reader of the raw fd (the native fast
        path) handles it itself. Attaching to an existing (persistent) device sets or clears the
        flag for the whole device. Offloads: ``set_offload`` / ``enable_offloads``.
        """
        raw = _check_name(name)
        flags = IFF_TUN | IFF_NO_PI
        if multi_queue:
            flags |= IFF_MULTI_QUEUE
        if vnet_hdr:
            flags |= IFF_VNET_HDR
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise TunError(e.errno, f"cannot open {TUN_PATH}: {e.strerror}") from e
        try:
            try:
                res = fcntl.ioctl(fd, TUNSETIFF, struct.pack(_IFREQ_FLAGS, raw, flags))
            except OSError as e:
                raise TunError(e.errno, f"TUNSETIFF {name or '(auto)'}: {e.strerror}") from e
            actual = struct.unpack(_IFREQ_FLAGS, res)[0].rstrip(b"\0").decode()
            if vnet_hdr:  # the size is the device's: a persistent one keeps what it was given last
                try:
                    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                except OSError as e:
                    raise TunError(e.errno, f"TUNSETVNETHDRSZ on {actual}: {e.strerror}") from e
            dev = cls(fd, actual, vnet_hdr)
            if mtu is not None:
                dev.set_mtu(mtu)
            if up:
                dev.set_up(True)
        except BaseException:
            os.close(fd)
            raise
        return dev

    # --- configuration (ioctl on an ordinary socket of the current network namespace) ----------

    def _ifreq(self, request: int, fmt: str, value: int) -> bytes:
        try:
            return fcntl.ioctl(self._ctl.fileno(), request, struct.pack(fmt, self.name.encode(), value))
        except OSError as e:
            raise TunError(e.errno, f"ioctl {request:#x} on {self.name}: {e.strerror}") from e

    @property
    def mtu(self) -> int:
        return int(struct.unpack(_IFREQ_INT, self._ifreq(SIOCGIFMTU, _IFREQ_INT, 0))[1])

    def set_mtu(self, mtu: int) -> None:
        if not 68 <= mtu <= MAX_PACKET:
            raise TunError(errno.EINVAL, f"MTU {mtu} out of range 68..{MAX_PACKET}")
        self._ifreq(SIOCSIFMTU, _IFREQ_INT, mtu)

    def set_offload(self, flags: int) -> None:
        """TUNSETOFFLOAD: let the kernel pass unfinished checksums / super-packets (TUN_F_*).

        Needs ``vnet_hdr``: the header tells the reader what is left to do. 0 turns them off.
        """
        if flags and not self.vnet_hdr:
            raise TunError(errno.EINVAL, f"{self.name}: offloads need a device opened with vnet_hdr=True")
        try:
            fcntl.ioctl(self._fd, TUNSETOFFLOAD, flags)
        except OSError as e:
            raise TunError(e.errno, f"TUNSETOFFLOAD {flags:#x} on {self.name}: {e.strerror}") from e
        self.offload = flags

    def enable_offloads(self, tries: tuple[int, ...] = OFFLOAD_TRIES) -> int:
        """The first of ``tries`` the kernel accepts (0: none; then offloads are turned off, as
        they are on a device without ``vnet_hdr``: a persistent device keeps the flags of its
        previous user otherwise). Returns the flags in force."""
        if self.vnet_hdr:
            for flags in tries:
                try:
                    self.set_offload(flags)
                except TunError:
                    continue
                return flags
        with contextlib.suppress(TunError):  # a kernel without TUNSETOFFLOAD has none to clear
            self.set_offload(0)
        return 0

    def set_up(self, up: bool = True) -> None:
        flags = struct.unpack(_IFREQ_FLAGS, self._ifreq(SIOCGIFFLAGS, _IFREQ_FLAGS, 0))[1]
        flags = (flags | IFF_UP) if up else (flags & ~IFF_UP)
        self._ifreq(SIOCSIFFLAGS, _IFREQ_FLAGS, flags)

    # --- packets -----------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    def read_batch(self, max_packets: int = 64) -> list[bytes]:
        """Read up to ``max_packets`` packets, stopping early when none is queued (never blocks).

        With ``vnet_hdr`` the header is removed and a NEEDS_CSUM checksum completed; super-packets
        (GSO, only with TSO/USO offloads on) and malformed headers are counted in ``rx_dropped``.
        """
        if self.vnet_hdr:
            return self._read_vnet(max_packets)
        out: list[bytes] = []
        append = out.append
        read = os.read
        fd = self._fd
        nbytes = 0
        for _ in range(max_packets):
            try:
                pkt = read(fd, MAX_PACKET)
            except BlockingIOError:  # (EINTR is retried by Python itself: PEP 475)
                break
            if not pkt:
                break
            append(pkt)
            nbytes += len(pkt)
        stats = self.stats
        stats.rx_packets += len(out)
        stats.rx_bytes += nbytes
        return out

    def _read_vnet(self, max_packets: int) -> list[bytes]:
        out: list[bytes] = []
        nbytes = dropped = 0
        for _ in range(max_packets):
            try:
                raw = os.read(self._fd, VNET_HDR_LEN + MAX_PACKET)
            except BlockingIOError:
                break
            if not raw:
                break
            if len(raw) <= VNET_HDR_LEN:
                dropped += 1
                continue
            hdr = VnetHeader.parse(raw)
            pkt: bytes | None = raw[VNET_HDR_LEN:]
            if hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE:
                pkt = None
            elif hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                pkt = complete_checksum(raw[VNET_HDR_LEN:], hdr.csum_start, hdr.csum_offset)
            if pkt is None:
                dropped += 1
                continue
            out.append(pkt)
            nbytes += len(pkt)
        stats = self.stats
        stats.rx_packets += len(out)
        stats.rx_bytes += nbytes
        stats.rx_dropped += dropped
        return out

    def write_batch(self, packets: list[bytes]) -> int:
        """Write packets in order; returns how many were consumed from the front of the list.

        A packet the kernel rejects (EINVAL, EMSGSIZE, ...) is dropped and counted in
        ``stats.tx_rejected``; the batch goes on. The return value is less than ``len(packets)``
        only when the device queue is full (EAGAIN): the caller may retry the rest later. With
        ``vnet_hdr`` each packet goes out behind an all-zero header (GSO_NONE, checksums complete).
        """
        vnet = self.vnet_hdr
        write, writev = os.write, os.writev
        fd = self._fd
        done = written = nbytes = rejected = 0
        for pkt in packets:
            try:
                if vnet:
                    nbytes += writev(fd, (_NO_VNET_HDR, pkt)) - VNET_HDR_LEN
                else:
                    nbytes += write(fd, pkt)
                written += 1
            except BlockingIOError:
                self.stats.tx_full += 1
                break
            except OSError:
                rejected += 1
            done += 1
        stats = self.stats
        stats.tx_packets += written
        stats.tx_bytes += nbytes
        stats.tx_rejected += rejected
        return done

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._ctl.close()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TunDevice(name={self.name!r}, fd={self._fd})"
