"""Capture plumbing that outlives the daemon: the persistent TUN device, the routing table whose
default route is that device, and the policy-routing rules that send marked packets there.

``ip rule add fwmark CAPTURE table T priority P`` (before ``main``) sends captured packets to
table T, which holds ``default dev TUN`` and, behind it, ``unreachable default`` (should the
device be gone, a captured packet is refused, never routed in the clear). For destinations the
main table cannot reach (tunnel mode to a remote subnet), ``ip rule add to NET table T`` rules
after ``main`` let the first route lookup succeed so the output hook can mark the packet.

``flush()`` removes all of it (``ipsecd --flush``); ``setup()`` is idempotent (a restarted
daemon finds everything in place and reattaches to the same device).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ipsecd.io.nft import CAPTURE_MARK
from ipsecd.io.tun import TunDevice, TunError

TUNSETPERSIST = 0x400454CB  # <linux/if_tun.h>
TABLE = 1516
RULE_PRIORITY = 1516  # fwmark CAPTURE -> TABLE, before main (32766)
TO_RULE_PRIORITY = 32770  # to NET -> TABLE, after main and default
DEFAULT_TUN = "ipsecd0"
UNREACHABLE_METRIC = 0xFFFFFFFF


def _fam(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def open_tun(name: str, mtu: int, *, vnet_hdr: bool = False) -> TunDevice:
    """Create or reattach to the persistent TUN device ``name``.

    ``vnet_hdr`` (``ipsecd --fastpath``): IFF_VNET_HDR and the most TUNSETOFFLOAD flags the kernel
    accepts (``dev.offload``); a kernel refusing IFF_VNET_HDR gets a plain device (``dev.vnet_hdr``
    is False then). Otherwise, or then, the offloads are turned off: the device persists, and
    the flag and offloads a previous run set would hand a plain reader unfinished packets.
    """
    try:
        dev = TunDevice.open(name, mtu=mtu, up=False, vnet_hdr=vnet_hdr)
    except TunError:
        if not vnet_hdr:
            raise
        dev = TunDevice.open(name, mtu=mtu, up=False)  # no IFF_VNET_HDR: plain packets
    try:
        fcntl.ioctl(dev.fileno(), TUNSETPERSIST, 1)
    except OSError as e:
        dev.close()
        raise TunError(e.errno, f"TUNSETPERSIST on {name}: {e.strerror}") from e
    dev.enable_offloads()  # never raises: what the kernel refuses stays off
    _sysctl(f"/proc/sys/net/ipv4/conf/{dev.name}/rp_filter", "0")  # decapsulated packets come in here
    # No link-local address: the kernel would send router solicitations and MLD reports through
    # the device itself (noise the daemon would have to drop). IPv6 stays enabled for delivery.
    _sysctl(f"/proc/sys/net/ipv6/conf/{dev.name}/addr_gen_mode", "1")
    _sysctl(f"/proc/sys/net/ipv6/conf/{dev.name}/disable_ipv6", "0")
    dev.set_up(True)
    return dev


def _sysctl(path: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path(path).write_text(value)


def _ignore_exists(fn: Any, *args: Any, **kw: Any) -> None:
    try:
        fn(*args, **kw)
    except NetlinkError as e:
        if e.code != 17:  # EEXIST: already there (a restart)
            raise


def setup(tun: str, to_networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> None:
    """Install the table and rules (idempotent)."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=tun)
        if not idx:
            raise TunError(19, f"no TUN device {tun}")
        for version in (4, 6):
            fam = _fam(version)
            zero = "0.0.0.0" if version == 4 else "::"
            ipr.route("replace", dst=zero, dst_len=0, family=fam, table=TABLE, oif=idx[0], priority=1)
            ipr.route(
                "replace",
                dst=zero,
                dst_len=0,
                family=fam,
                table=TABLE,
                type="unreachable",
                priority=UNREACHABLE_METRIC,
            )
            if not _has_rule(ipr, version, RULE_PRIORITY):
                _ignore_exists(
                    ipr.rule,
                    "add",
                    family=fam,
                    table=TABLE,
                    priority=RULE_PRIORITY,
                    fwmark=CAPTURE_MARK,
                    fwmask=0xFFFFFFFF,
                )
        _replace_to_rules(ipr, list(to_networks))


def _has_rule(ipr: Any, version: int, priority: int) -> bool:
    return any(r.get_attr("FRA_PRIORITY") == priority for r in ipr.get_rules(family=_fam(version)))


def _replace_to_rules(ipr: Any, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
    wanted = {(n.version, str(n.network_address), n.prefixlen) for n in nets}
    for version in (4, 6):
        for r in ipr.get_rules(family=_fam(version)):
            if r.get_attr("FRA_PRIORITY") != TO_RULE_PRIORITY:
                continue
            key = (version, r.get_attr("FRA_DST"), r["dst_len"])
            if key in wanted:
                wanted.discard(key)
                continue
            with contextlib.suppress(NetlinkError):
                ipr.rule(
                    "del",
                    family=_fam(version),
                    table=TABLE,
                    priority=TO_RULE_PRIORITY,
                    dst=key[1],
                    dst_len=key[2],
                )
    for version, addr, plen in sorted(wanted):
        _ignore_exists(
            ipr.rule,
            "add",
            family=_fam(version),
            table=TABLE,
            priority=TO_RULE_PRIORITY,
            dst=addr,
            dst_len=plen,
        )


def flush(tun: str = DEFAULT_TUN) -> list[str]:
    """Remove rules, the table's routes and the persistent device; returns what was removed."""
    removed: list[str] = []
    with IPRoute() as ipr:
        for version in (4, 6):
            fam = _fam(version)
            for r in ipr.get_rules(family=fam):
                prio = r.get_attr("FRA_PRIORITY")
                if (
                    prio in (RULE_PRIORITY, TO_RULE_PRIORITY)
                    and (r.get_attr("FRA_TABLE") or r["table"]) == TABLE
                ):
                    kw: dict[str, Any] = {"family": fam, "table": TABLE, "priority": prio}
                    if r.get_attr("FRA_FWMARK") is not None:
                        kw["fwmark"] = r.get_attr("FRA_FWMARK")
                        kw["fwmask"] = r.get_attr("FRA_FWMASK") or 0xFFFFFFFF
                    if r.get_attr("FRA_DST") is not None:
                        kw["dst"], kw["dst_len"] = r.get_attr("FRA_DST"), r["dst_len"]
                    with contextlib.suppress(NetlinkError):
                        ipr.rule("del", **kw)
                        removed.append(f"rule IPv{version} priority {prio}")
            with contextlib.suppress(NetlinkError):
                for route in ipr.get_routes(family=fam, table=TABLE):
                    with contextlib.suppress(NetlinkError):
                        ipr.route(
                            "del", table=TABLE, family=fam, dst_len=route["dst_len"], **_route_key(route)
                        )
                        removed.append(f"route IPv{version} table {TABLE}")
        if ipr.link_lookup(ifname=tun):
            try:
                fd = TunDevice.open(tun, up=False)
            except TunError:
                fd = None
            if fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.ioctl(fd.fileno(), TUNSETPERSIST, 0)
                fd.close()
            idx = ipr.link_lookup(ifname=tun)
            if idx:
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=idx[0])
            removed.append(f"device {tun}")
    return removed


def _route_key(route: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"type": route["type"]}
    dst = route.get_attr("RTA_DST")
    if dst is not None:
        kw["dst"] = dst
    prio = route.get_attr("RTA_PRIORITY")
    if prio is not None:
        kw["priority"] = prio
    oif = route.get_attr("RTA_OIF")
    if oif is not None:
        kw["oif"] = oif
    return kw
