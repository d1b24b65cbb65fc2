"""UDP sockets for IKE (port 500) and NAT-T / UDP-encapsulated ESP (port 4500), batched.

``recv_batch`` drains up to N datagrams until the socket would block; ``send_batch`` sends a list
and reports how far it got. Python 3.11 has no ``recvmmsg``/``sendmmsg``, so both loop over
``recvmsg``/``sendto`` for now; a native implementation can replace the loops behind the same
interface. The RFC 3948 non-ESP marker is not handled here (the data path frames packets).

Each received datagram carries the local address it was sent to (IP_PKTINFO / IPV6_PKTINFO), so a
responder bound to the wildcard address can answer from the address the peer used (RFC 7296
section 2.11: responses go back from the address the request arrived on). ``send`` accepts that
address as ``source``.

Errors: a connected UDP socket reports an earlier ICMP unreachable on its next call with
ECONNREFUSED (and similar); sends and receives count such errors and go on, never raise.
SO_MARK tags the daemon's own packets so a policy-routing rule (``not fwmark M``) lets them bypass
the TUN capture (see ``ipsecd.io.netlink``).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple

IKE_PORT = 500  # RFC 7296 section 2
NATT_PORT = 4500  # RFC 3948 section 2
SO_MARK = getattr(socket, "SO_MARK", 36)
IP_PKTINFO = 8  # <linux/in.h>; Python 3.11 has no constant
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
MAX_DATAGRAM = 65535
SOL_UDP = 17
UDP_SEGMENT = 103  # <linux/udp.h>: UDP GSO, segment size of one sendmsg
UDP_GRO = 104  # <linux/udp.h>: receive coalesced datagrams with their segment size
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS is 64 on older kernels, 128 on newer ones
GSO_MAX_BYTES = 65000  # payload of one GSO send (stays under the 64 KiB IP packet limit)
# Room for in_pktinfo (12) or in6_pktinfo (20), and the UDP_GRO segment size (int).
_CMSG_SPACE = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)

Address = tuple[str, int]
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: "flags & IntFlag" runs Python code (microseconds)


class Datagram(NamedTuple):
    data: bytes
    peer: Address  # (address, port) of the sender
    local: str | None  # address the datagram was sent to (None if the kernel did not say)


_new_datagram = tuple.__new__  # builds a Datagram without NamedTuple's Python-level __new__


def _parse_pktinfo(level: int, kind: int, data: bytes) -> str | None:
    # struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr; }
    if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
        return socket.inet_ntop(socket.AF_INET, data[8:12])
    # struct in6_pktinfo { struct in6_addr ipi6_addr; int ipi6_ifindex; }
    if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 16:
        return socket.inet_ntop(socket.AF_INET6, data[:16])
    return None


@dataclass
class UdpStats:
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_errors: int = 0  # errors reported on receive (ICMP unreachable on a connected socket)
    rx_truncated: int = 0  # datagrams larger than the receive buffer: dropped
    rx_gro_buffers: int = 0  # receives that carried several coalesced datagrams (UDP_GRO)
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_errors: int = 0  # sends that failed (unreachable, refused, too big): dropped
    tx_full: int = 0  # send_batch stopped: socket buffer full (EAGAIN)
    tx_gso_sends: int = 0  # sendmsg calls that carried several datagrams (UDP_SEGMENT)
    last_error: int = 0  # errno of the latest counted error


class UdpSocket:
    """A non-blocking UDP socket of one address family."""

    def __init__(self, sock: socket.socket, *, gso: bool = False, gro: bool = False) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.family = sock.family
        self.stats = UdpStats()
        self._local_cache: dict[bytes, str | None] = {}
        if self.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        # gso: send_batch coalesces runs of same-size datagrams to one peer into one sendmsg.
        self.gso = gso
        self.gro = gro
        if gro:
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)

    @classmethod
    def open(
        cls,
        address: str = "0.0.0.0",
        port: int = 0,
        *,
        mark: int | None = None,
        reuse_port: bool = False,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        connect: Address | None = None,
        gso: bool = False,
        gro: bool = False,
    ) -> UdpSocket:
        """Bind to ``address``:``port`` (an IPv6 socket is IPv6-only: open one per family).

        ``gso``: ``send_batch`` sends runs of equal-size datagrams to one peer with one UDP GSO
        ``sendmsg`` (the kernel segments them). ``gro``: the kernel may hand over several
        datagrams of one flow in one receive; ``recv_batch`` splits them again.
        """
        ip = ipaddress.ip_address(address)
        fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if rcvbuf is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if sndbuf is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            if mark is not None:
                s.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
            s.bind((address, port))
            if connect is not None:
                s.connect(connect)
            return cls(s, gso=gso, gro=gro)
        except BaseException:
            s.close()
            raise

    # --- properties ------------------------------------------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def local_address(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def mark(self) -> int:
        return self.sock.getsockopt(socket.SOL_SOCKET, SO_MARK)

    def set_mark(self, mark: int) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)

    # --- receive ---------------------------------------------------------------------------------

    def recv_batch(self, max_packets: int = 64, bufsize: int = MAX_DATAGRAM) -> list[Datagram]:
        """Receive up to ``max_packets`` datagrams; stops when none is queued (never blocks).

        With ``gro`` the last receive may bring up to 63 datagrams more than ``max_packets``.
        """
        out: list[Datagram] = []
        recvmsg = self.sock.recvmsg
        stats = self.stats
        cache = self._local_cache
        make = _new_datagram
        nbytes = 0
        while len(out) < max_packets:
            try:
                data, anc, flags, peer = recvmsg(bufsize, _CMSG_SPACE)
            except BlockingIOError:
                break
            except OSError as e:  # a queued ICMP error (connected socket): count, go on
                stats.rx_errors += 1
                stats.last_error = e.errno or 0
                continue
            if flags & _MSG_TRUNC:  # larger than bufsize: never pass on a cut datagram
                stats.rx_truncated += 1
                continue
            local = None
            segment = 0
            for level, kind, raw in anc:
                if level == SOL_UDP:
                    if kind == UDP_GRO and len(raw) >= 4:
                        segment = int.from_bytes(raw[:4], sys.byteorder)
                    continue
                local = cache.get(raw)
                if local is None:
                    local = _parse_pktinfo(level, kind, raw)
                    if len(cache) < 256:
                        cache[raw] = local
            if len(peer) > 2:
                peer = peer[:2]
            nbytes += len(data)
            if 0 < segment < len(data):  # several datagrams coalesced by UDP GRO: split them
                stats.rx_gro_buffers += 1
                for off in range(0, len(data), segment):
                    out.append(make(Datagram, (data[off : off + segment], peer, local)))
                continue
            out.append(make(Datagram, (data, peer, local)))
        stats.rx_packets += len(out)
        stats.rx_bytes += nbytes
        return out

    # --- send --------------------------------------------------------------------------------------

    def _pktinfo(self, source: str) -> list[tuple[int, int, bytes]]:
        if self.family == socket.AF_INET:
            return [
                (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, socket.inet_aton(source), bytes(4)))
            ]
        return [
            (
                socket.IPPROTO_IPV6,
                IPV6_PKTINFO,
                socket.inet_pton(socket.AF_INET6, source) + struct.pack("=i", 0),
            )
        ]

    def send(self, data: bytes, peer: Address | None = None, source: str | None = None) -> bool:
        """Send one datagram (``peer`` None on a connected socket); False if it was dropped."""
        try:
            if source is not None:
                self.sock.sendmsg([data], self._pktinfo(source), 0, peer)
            elif peer is None:
                self.sock.send(data)
            else:
                self.sock.sendto(data, peer)
        except BlockingIOError:
            self.stats.tx_full += 1
            return False
        except OSError as e:  # ECONNREFUSED after an ICMP unreachable, ENETUNREACH, EMSGSIZE, ...
            self.stats.tx_errors += 1
            self.stats.last_error = e.errno or 0
            return False
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(data)
        return True

    def send_batch(self, datagrams: Sequence[tuple[bytes, Address | None]]) -> int:
        """Send ``(data, peer)`` pairs in order; returns how many were consumed from the front.

        A datagram the kernel refuses (unreachable, refused, too big) is dropped and counted in
        ``stats.tx_errors``; the batch goes on. Fewer than all are consumed only when the socket
        buffer is full (EAGAIN): the caller may retry the rest when the socket is writable.
        With ``gso``, runs of datagrams to one peer whose sizes are equal (the last one of a run
        may be shorter) go out in one ``sendmsg`` with UDP_SEGMENT; the receiver sees ordinary
        datagrams. A run the kernel refuses as a whole counts as that many errors.
        """
        if self.gso:
            return self._send_batch_gso(datagrams)
        return self._send_plain(datagrams)

    def _send_plain(self, datagrams: Sequence[tuple[bytes, Address | None]]) -> int:
        send, sendto = self.sock.send, self.sock.sendto
        stats = self.stats
        done = sent = nbytes = 0
        for data, peer in datagrams:
            try:
                nbytes += send(data) if peer is None else sendto(data, peer)
                sent += 1
            except BlockingIOError:
                stats.tx_full += 1
                break
            except OSError as e:
                stats.tx_errors += 1
                stats.last_error = e.errno or 0
            done += 1
        stats.tx_packets += sent
        stats.tx_bytes += nbytes
        return done

    def _send_batch_gso(self, datagrams: Sequence[tuple[bytes, Address | None]]) -> int:
        sock = self.sock
        stats = self.stats
        n = len(datagrams)
        done = 0
        while done < n:
            first, peer = datagrams[done]
            size = len(first)
            end = done + 1
            total = size
            # A run: same peer, same size; a shorter datagram may close it (the kernel's rule for
            # UDP_SEGMENT: every segment but the last has exactly the segment size).
            while end < n and end - done < GSO_MAX_SEGMENTS and size > 0:
                data, p = datagrams[end]
                if p != peer or len(data) > size or total + len(data) > GSO_MAX_BYTES:
                    break
                end += 1
                total += len(data)
                if len(data) < size:
                    break
            count = end - done
            if count == 1:
                if self._send_plain(datagrams[done:end]) == 0:
                    break  # EAGAIN
                done = end
                continue
            payload = b"".join([d for d, _ in datagrams[done:end]])
            seg = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
            try:
                if peer is None:
                    sock.sendmsg([payload], seg)
                else:
                    sock.sendmsg([payload], seg, 0, peer)
            except BlockingIOError:
                stats.tx_full += 1
                break
            except OSError as e:
                if e.errno in (errno.EIO, errno.EINVAL, errno.EMSGSIZE):
                    # EIO: the device cannot segment UDP (stop trying); EINVAL/EMSGSIZE: segments
                    # larger than the path MTU. Send this run one datagram at a time instead.
                    if e.errno == errno.EIO:
                        self.gso = False
                    k = self._send_plain(datagrams[done:end])
                    if k < count:
                        return done + k
                    done = end
                    continue
                stats.tx_errors += count
                stats.last_error = e.errno or 0
            else:
                stats.tx_gso_sends += 1
                stats.tx_packets += count
                stats.tx_bytes += total
            done = end
        return done

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpSocket:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        try:
            where = self.local_address
        except OSError:
            where = ("closed", 0)
        return f"UdpSocket({where[0]}:{where[1]})"


@dataclass(frozen=True)
class IkeSockets:
    """The pair an IKE endpoint listens on: port 500 and the NAT-T port 4500."""

    ike: UdpSocket
    natt: UdpSocket

    def close(self) -> None:
        self.ike.close()
        self.natt.close()


def open_ike_sockets(
    address: str = "0.0.0.0", *, mark: int | None = None, ike_port: int = IKE_PORT, natt_port: int = NATT_PORT
) -> IkeSockets:
    ike = UdpSocket.open(address, ike_port, mark=mark)
    try:
        natt = UdpSocket.open(address, natt_port, mark=mark)
    except BaseException:
        ike.close()
        raise
    return IkeSockets(ike, natt)
