"""Addresses, routes and policy-routing rules over rtnetlink (pyroute2).

A thin, typed layer over pyroute2's ``IPRoute`` that passes only keywords pyroute2 understands:
pyroute2 0.9 silently ignores unknown ones (``prefix=24`` would add a /32), so every call here
spells the exact attribute names (``prefixlen``, ``suppress_prefixlen``, ``fwmark``/``fwmask``).
Kernel errors become ``NetlinkOperationError`` naming the operation.

The daemon's capture set-up (wireguard-go style) is the intended use:
``ip rule add not fwmark M table T`` sends everything not marked M to table T, whose routes point
into the TUN, while the daemon marks its own UDP sockets with SO_MARK M so they bypass the capture;
``ip rule add table main suppress_prefixlength 0`` keeps more specific main-table routes in force.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ipsecd.io.nsenter import netns_entered

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

MAIN_TABLE = 254
FIB_RULE_INVERT = 0x2  # <linux/fib_rules.h>
IFA_F_DADFAILED = 0x08  # <linux/if_addr.h>
IFA_F_TENTATIVE = 0x40
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RTN_UNICAST = 1


class NetlinkOperationError(OSError):
    """An rtnetlink request failed; ``errno`` is the kernel's error."""


@dataclass(frozen=True)
class Address:
    ifname: str
    index: int
    interface: IPInterface  # address with its prefix length
    scope: int  # RT_SCOPE_*: 0 universe (global), 253 link, 254 host
    flags: int
    broadcast: ipaddress.IPv4Address | None = None  # IFA_BROADCAST (IPv4 only)

    @property
    def ip(self) -> IPAddr:
        return self.interface.ip

    @property
    def usable(self) -> bool:
        """Not tentative and not failed duplicate address detection."""
        return not self.flags & (IFA_F_DADFAILED | IFA_F_TENTATIVE)


@dataclass(frozen=True)
class Route:
    dst: IPNetwork
    gateway: IPAddr | None
    oif: int | None
    table: int
    type: int
    priority: int | None


@dataclass(frozen=True)
class Rule:
    family: int
    priority: int | None
    table: int
    fwmark: int | None
    fwmask: int | None
    invert: bool
    suppress_prefixlen: int | None


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


@contextmanager
def _op(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as e:
        raise NetlinkOperationError(e.code, f"{what}: {e.args[1] if len(e.args) > 1 else e}") from None


class Netlink:
    """An rtnetlink handle in the current network namespace (or ``netns``, by name)."""

    def __init__(self, netns: str | None = None) -> None:
        # The socket is opened inside the namespace and stays there. (pyroute2's own netns=
        # proxy sometimes returned truncated address dumps in tests: not used.)
        if netns:
            with netns_entered(netns):
                self._ipr = IPRoute()
        else:
            self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- links ---------------------------------------------------------------------------------

    def link_index(self, ifname: str) -> int:
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            raise NetlinkOperationError(19, f"no such interface: {ifname}")  # ENODEV
        return int(found[0])

    def link_names(self) -> dict[int, str]:
        with _op("list links"):
            return {int(m["index"]): str(_attr(m, "IFLA_IFNAME")) for m in self._ipr.get_links()}

    def set_link(self, ifname: str, *, up: bool | None = None, mtu: int | None = None) -> None:
        kw: dict[str, Any] = {}
        if up is not None:
            kw["state"] = "up" if up else "down"
        if mtu is not None:
            kw["mtu"] = mtu
        if kw:
            with _op(f"set link {ifname} {kw}"):
                self._ipr.link("set", index=self.link_index(ifname), **kw)

    def link_mtu(self, ifname: str) -> int:
        with _op(f"get link {ifname}"):
            return int(_attr(self._ipr.get_links(self.link_index(ifname))[0], "IFLA_MTU"))

    # --- addresses -------------------------------------------------------------------------------

    def add_address(self, ifname: str, address: str | IPInterface) -> None:
        iface = ipaddress.ip_interface(address)
        with _op(f"add address {iface} to {ifname}"):
            self._ipr.addr(
                "add",
                index=self.link_index(ifname),
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
                family=_family(iface.version),
            )

    def del_address(self, ifname: str, address: str | IPInterface) -> None:
        iface = ipaddress.ip_interface(address)
        with _op(f"delete address {iface} from {ifname}"):
            self._ipr.addr(
                "del",
                index=self.link_index(ifname),
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
                family=_family(iface.version),
            )

    def addresses(self, ifname: str | None = None) -> list[Address]:
        names = self.link_names()
        out: list[Address] = []
        with _op("list addresses"):
            msgs = self._ipr.get_addr()
        for m in msgs:
            idx = int(m["index"])
            name = names.get(idx, "")
            if ifname is not None and name != ifname:
                continue
            # IFA_LOCAL is the local address on point-to-point links; IFA_ADDRESS otherwise.
            raw = _attr(m, "IFA_LOCAL") or _attr(m, "IFA_ADDRESS")
            if raw is None:
                continue
            flags = _attr(m, "IFA_FLAGS")
            brd = _attr(m, "IFA_BROADCAST")
            out.append(
                Address(
                    name,
                    idx,
                    ipaddress.ip_interface(f"{raw}/{m['prefixlen']}"),
                    int(m["scope"]),
                    int(flags if flags is not None else m["flags"]),
                    ipaddress.IPv4Address(brd) if brd else None,
                )
            )
        return out

    # --- routes ------------------------------------------------------------------------------------

    def _route_kw(
        self,
        dst: str | IPNetwork,
        dev: str | None,
        via: str | IPAddr | None,
        table: int,
        src: str | IPAddr | None,
        metric: int | None,
    ) -> dict[str, Any]:
        net = ipaddress.ip_network(dst)
        kw: dict[str, Any] = {
            "dst": str(net.network_address),
            "dst_len": net.prefixlen,
            "family": _family(net.version),
            "table": table,
        }
        if dev is not None:
            kw["oif"] = self.link_index(dev)
        if via is not None:
            kw["gateway"] = str(ipaddress.ip_address(via))
        if src is not None:
            kw["prefsrc"] = str(ipaddress.ip_address(src))
        if metric is not None:
            kw["priority"] = metric
        if dev is None and via is None:
            raise ValueError(f"route to {net}: give a device, a gateway or both")
        return kw

    def add_route(
        self,
        dst: str | IPNetwork,
        *,
        dev: str | None = None,
        via: str | IPAddr | None = None,
        table: int = MAIN_TABLE,
        src: str | IPAddr | None = None,
        metric: int | None = None,
        replace: bool = False,
    ) -> None:
        kw = self._route_kw(dst, dev, via, table, src, metric)
        with _op(f"add route {dst} dev {dev} via {via} table {table}"):
            self._ipr.route("replace" if replace else "add", **kw)

    def del_route(
        self,
        dst: str | IPNetwork,
        *,
        dev: str | None = None,
        via: str | IPAddr | None = None,
        table: int = MAIN_TABLE,
        metric: int | None = None,
    ) -> None:
        kw = self._route_kw(dst, dev, via, table, None, metric)
        with _op(f"delete route {dst} table {table}"):
            self._ipr.route("del", **kw)

    def routes(self, table: int = MAIN_TABLE, version: int | None = None) -> list[Route]:
        out: list[Route] = []
        families = [4, 6] if version is None else [version]
        for v in families:
            with _op(f"list IPv{v} routes of table {table}"):
                msgs = self._ipr.get_routes(family=_family(v), table=table)
            for m in msgs:
                tbl = _attr(m, "RTA_TABLE") or m["table"]
                if int(tbl) != table:
                    continue
                dst = _attr(m, "RTA_DST") or ("0.0.0.0" if v == 4 else "::")
                gw = _attr(m, "RTA_GATEWAY")
                out.append(
                    Route(
                        ipaddress.ip_network(f"{dst}/{m['dst_len']}", strict=False),
                        ipaddress.ip_address(gw) if gw else None,
                        _attr(m, "RTA_OIF"),
                        int(tbl),
                        int(m["type"]),
                        _attr(m, "RTA_PRIORITY"),
                    )
                )
        return out

    def default_gateways(self) -> list[IPAddr]:
        """Gateways of the unicast default routes of the main table (IPv4 first)."""
        out: list[IPAddr] = []
        for r in self.routes(MAIN_TABLE):
            if (
                r.dst.prefixlen == 0
                and r.gateway is not None
                and r.type == RTN_UNICAST
                and r.gateway not in out
            ):
                out.append(r.gateway)
        return out

    # --- policy-routing rules ----------------------------------------------------------------------

    def _rule_kw(
        self,
        table: int,
        priority: int,
        version: int,
        fwmark: int | None,
        fwmask: int | None,
        invert: bool,
        suppress_prefixlen: int | None,
    ) -> dict[str, Any]:
        kw: dict[str, Any] = {"table": table, "priority": priority, "family": _family(version)}
        if fwmark is not None:
            kw["fwmark"] = fwmark
            kw["fwmask"] = 0xFFFFFFFF if fwmask is None else fwmask
        if invert:
            kw["flags"] = FIB_RULE_INVERT
        if suppress_prefixlen is not None:
            kw["suppress_prefixlen"] = suppress_prefixlen
        return kw

    def add_rule(
        self,
        *,
        table: int,
        priority: int,
        version: int = 4,
        fwmark: int | None = None,
        fwmask: int | None = None,
        invert: bool = False,
        suppress_prefixlen: int | None = None,
    ) -> None:
        """``ip [-6] rule add [not] [fwmark M/MASK] table T priority P [suppress_prefixlength N]``."""
        kw = self._rule_kw(table, priority, version, fwmark, fwmask, invert, suppress_prefixlen)
        with _op(f"add rule {kw}"):
            self._ipr.rule("add", **kw)

    def del_rule(
        self,
        *,
        table: int,
        priority: int,
        version: int = 4,
        fwmark: int | None = None,
        fwmask: int | None = None,
        invert: bool = False,
        suppress_prefixlen: int | None = None,
    ) -> None:
        kw = self._rule_kw(table, priority, version, fwmark, fwmask, invert, suppress_prefixlen)
        with _op(f"delete rule {kw}"):
            self._ipr.rule("del", **kw)

    def rules(self, version: int = 4) -> list[Rule]:
        out: list[Rule] = []
        with _op("list rules"):
            msgs = self._ipr.get_rules(family=_family(version))
        for m in msgs:
            sup = _attr(m, "FRA_SUPPRESS_PREFIXLEN")
            out.append(
                Rule(
                    int(m["family"]),
                    _attr(m, "FRA_PRIORITY"),
                    int(_attr(m, "FRA_TABLE") or m["table"]),
                    _attr(m, "FRA_FWMARK"),
                    _attr(m, "FRA_FWMASK"),
                    bool(int(m["flags"]) & FIB_RULE_INVERT),
                    None if sup is None or sup == 0xFFFFFFFF else int(sup),
                )
            )
        return out


# rtnetlink multicast groups (<linux/rtnetlink.h>, RTMGRP_* bit masks).
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
NLMSG_HDR = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
RTM_NAMES = {16: "newlink", 17: "dellink", 20: "newaddr", 21: "deladdr", 24: "newroute", 25: "delroute"}


class ChangeMonitor:
    """Tells when links, addresses or routes changed (so ``me``, gateways... must be re-read).

    A non-blocking rtnetlink socket subscribed to the link, address and route groups; the daemon
    watches ``fileno()`` and calls ``drain()``, which returns the kinds of change seen (e.g.
    ``{"newaddr"}``) and never blocks. Messages are only classified by type, not parsed: the
    facts themselves are re-read through ``Netlink``/``SystemHost``. If the socket buffer
    overflowed (ENOBUFS), events were lost and ``drain()`` reports ``{"overflow"}``: re-read all.
    """

    def __init__(
        self,
        groups: int = RTMGRP_LINK
        | RTMGRP_IPV4_IFADDR
        | RTMGRP_IPV6_IFADDR
        | RTMGRP_IPV4_ROUTE
        | RTMGRP_IPV6_ROUTE,
    ) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
        )
        try:
            self.sock.bind((0, groups))
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self, max_reads: int = 256) -> set[str]:
        seen: set[str] = set()
        for _ in range(max_reads):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    seen.add("overflow")
                    continue
                raise
            off = 0
            while off + NLMSG_HDR.size <= len(data):
                length, kind, _flags, _seq, _pid = NLMSG_HDR.unpack_from(data, off)
                if length < NLMSG_HDR.size:
                    break  # malformed: stop reading this datagram
                name = RTM_NAMES.get(kind)
                if name:
                    seen.add(name)
                off += (length + 3) & ~3  # NLMSG_ALIGN
        return seen

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ChangeMonitor:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
