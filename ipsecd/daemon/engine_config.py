"""The engine's configuration and what it derives from a store, separate from the running engine:
``EngineConfig``, loading and compiling a store (``load_config``, ``compile_loaded``), the nftables
configuration and tunnel destinations it implies (``nft_config``, ``to_networks``), the automatic
TUN MTU, and ``ipsecd --flush`` (``flush_all``). ``ipsecd.daemon.engine`` re-exports them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipsecd.daemon.control import DEFAULT_SOCKET_PATH
from ipsecd.daemon.xfrm import convert_policy, convert_state
from ipsecd.datapath.sadb import (
    ManualState,
    PolicyAction,
    PolicyDir,
    SecurityPolicy,
)
from ipsecd.io import capture, nft
from ipsecd.io.hostinfo import SystemHost
from ipsecd.io.netlink import Netlink
from ipsecd.policy.classifier import CompiledPolicy, compile_store
from ipsecd.policy.issues import StoreError
from ipsecd.policy.model import Action, Store
from ipsecd.policy.order import Direction, ExpansionError
from ipsecd.policy.poll import StoreFileContent, load_contents

# What ESP/AH may add to a captured packet: IPv6 outer header (40), UDP (8), ESP header (8),
# IV (16), padding (up to 15) and trailer (2), ICV (up to 32) = 121, rounded up.
MAX_TO_RULES = 64  # to-NET policy-routing rules at most (to_networks)
TUN_OVERHEAD = 128
TUN_MTU_DEFAULT = 1400  # when no other link says better
IPV6_MIN_MTU = 1280  # RFC 8200 section 5: below it the kernel turns IPv6 off on the device


def auto_tun_mtu(tun: str) -> int:
    """The TUN MTU: the smallest MTU of the host's other links that are up, minus the overhead."""
    with Netlink() as nl:
        names = nl.link_names()
        mtus = []
        for name in names.values():
            if name in ("lo", tun):
                continue
            with contextlib.suppress(OSError):
                mtus.append(nl.link_mtu(name))
    if not mtus:
        return TUN_MTU_DEFAULT
    return max(IPV6_MIN_MTU, min(mtus) - TUN_OVERHEAD)


class EngineError(RuntimeError):
    """Startup or reload failed; the message is for the operator."""


@dataclass
class EngineConfig:
    store: Path
    control: Path = DEFAULT_SOCKET_PATH
    control_group: str | None = None
    tun: str = capture.DEFAULT_TUN
    tun_mtu: int | None = None  # None: the smallest MTU of the other links minus TUN_OVERHEAD
    flush_on_exit: bool = False
    backend: str = "auto"
    soft_timeout: float = 3.0
    state_dir: Path = Path("/var/lib/ipsecd")  # outbound sequence-number reservations
    oakley_log: Path | None = None  # the Oakley log when ikelogging is on (default /var/log/ipsecd)
    event_log: Path | None = None  # JSON-lines event log; None: none
    dpd_interval: float = 30.0  # seconds of silence before a dead peer probe (IKEv1 DPD, IKEv2 liveness)
    dpd_retries: int = 5  # unanswered IKEv1 DPD probes before the peer is declared dead
    ike_cookie_threshold: int = 10  # half-open IKEv2 SAs before IKE_SA_INIT needs a COOKIE (RFC 7296 2.6)
    poll_interval: float | None = None  # seconds between store polls; None: pollinginterval; 0: off
    fastpath: bool = False  # --fastpath: tunnel-mode ESP-in-UDP SAs on ipsecd.datapath.fastpath
    log: Callable[[str], None] = field(
        default=lambda msg: print(f"ipsecd: {msg}", file=sys.stderr, flush=True)
    )


@dataclass
class Loaded:
    """Everything read from the configuration, before anything is applied."""

    store: Store
    compiled: CompiledPolicy
    states: list[ManualState]
    policies: list[SecurityPolicy]


def _store_xfrm(store: Store) -> tuple[list[ManualState], list[SecurityPolicy]]:
    """The store's ``[xfrm]`` states and policies (docs/manual-keying.md)."""
    return [convert_state(s) for s in store.xfrm_states], [convert_policy(p) for p in store.xfrm_policies]


def _soft_actions(store: Store) -> dict[str, bool]:
    return {name: fa.soft for name, fa in store.filteractions.items()}


def compile_loaded(store: Store, host: SystemHost) -> Loaded:
    """Compile a validated store for this host (ExpansionError, ValueError on bad input)."""
    compiled = compile_store(store, host)
    states, policies = _store_xfrm(store)
    return Loaded(store, compiled, states, policies)


def load_config(cfg: EngineConfig, host: SystemHost, files: Sequence[StoreFileContent]) -> Loaded:
    """Check the store's files; raises EngineError with every problem, changes nothing."""
    try:
        return compile_loaded(load_contents(files), host)
    except (StoreError, ExpansionError) as exc:
        raise EngineError(f"cannot load the store {cfg.store}:\n{exc}") from None
    except ValueError as exc:
        raise EngineError(f"bad manual keying in the store: {exc}") from None


def _filter_match(f: Any) -> nft.NftMatch:
    return nft.NftMatch(
        f.version,
        (f.src.first, f.src.last),
        (f.dst.first, f.dst.last),
        f.protocol,
        (f.srcport, f.srcport) if f.srcport else (0, 65535),
        (f.dstport, f.dstport) if f.dstport else (0, 65535),
    )


def _policy_match(p: SecurityPolicy) -> nft.NftMatch:
    s = p.selector
    return nft.NftMatch(
        s.src.version,
        (int(s.src.network_address), int(s.src.broadcast_address)),
        (int(s.dst.network_address), int(s.dst.broadcast_address)),
        s.protocol,
        s.src_ports,
        s.dst_ports,
    )


def nft_config(tun: str, loaded: Loaded) -> nft.NftConfig:
    """Kernel-side rules from the manual policies (first) and the specific filters, in order."""
    out: list[nft.NftRule] = []
    inb: list[nft.NftRule] = []
    for p in loaded.policies:
        m = _policy_match(p)
        if p.direction is PolicyDir.OUT:
            out.append(nft.NftRule(m, nft.PASS if p.action is PolicyAction.BYPASS else nft.CAPTURE))
        else:
            inb.append(nft.NftRule(m, nft.ACCEPT if p.action is PolicyAction.BYPASS else nft.DROP))
    actions = loaded.store.filteractions
    for f in loaded.compiled.filters:
        m = _filter_match(f)
        if f.direction is Direction.OUTBOUND:
            out.append(nft.NftRule(m, nft.PASS if f.action is Action.PERMIT else nft.CAPTURE))
            continue
        fa = actions.get(f.filteraction)
        if f.action is Action.PERMIT or (f.action is Action.NEGOTIATE and fa is not None and fa.inpass):
            inb.append(nft.NftRule(m, nft.ACCEPT))
        elif f.action is Action.NEGOTIATE and fa is not None and fa.soft:
            inb.append(nft.NftRule(m, nft.SOFT_DROP))
        else:
            inb.append(nft.NftRule(m, nft.DROP))
    return nft.NftConfig(tun, tuple(out), tuple(inb), loaded.compiled.exemptions)


def to_networks(loaded: Loaded) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Destinations of tunnels, routed to the TUN device when main has no route for them."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for p in loaded.policies:
        tunnel = any(t.mode.name == "TUNNEL" for t in p.templates)
        if p.direction is PolicyDir.OUT and p.selector.dst.prefixlen > 0 and tunnel:
            nets.append(p.selector.dst)
    for f in loaded.compiled.filters:
        if f.direction is Direction.OUTBOUND and f.tunnel is not None and f.action is Action.NEGOTIATE:
            first = (
                ipaddress.ip_address(f.dst.first) if f.version == 4 else ipaddress.IPv6Address(f.dst.first)
            )
            last = ipaddress.ip_address(f.dst.last) if f.version == 4 else ipaddress.IPv6Address(f.dst.last)
            nets.extend(n for n in ipaddress.summarize_address_range(first, last) if n.prefixlen > 0)
    return list(dict.fromkeys(nets))[:MAX_TO_RULES]


def flush_all(tun: str = capture.DEFAULT_TUN) -> list[str]:
    """``ipsecd --flush``: the nft table, the rules and routes, the persistent TUN device."""
    removed = []
    if nft.delete_table():
        removed.append(f"nft table {nft.FAMILY} {nft.TABLE}")
    removed += capture.flush(tun)
    return removed
