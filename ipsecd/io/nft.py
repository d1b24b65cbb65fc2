"""The kernel's half of the data path: an nftables ruleset in our own table ``inet ipsecd``.

What it does (docs/datapath-host.md has the full picture):

- ``output`` (route hook: a changed mark re-routes the packet) and ``prerouting`` (forwarded
  traffic): packets that a block/negotiate filter or a protect/discard manual policy covers get
  the *capture* mark; an ``ip rule fwmark CAPTURE`` sends them to a table whose default route is
  the TUN device. The rules are the specific filters themselves, in the classifier's order, so
  traffic that no such filter matches never goes through the daemon. The daemon's own sockets
  carry the *bypass* mark (SO_MARK) and are accepted first: nothing loops.
- ``input`` / ``forward``: inbound enforcement on every interface but the TUN device and ``lo``:
  plaintext that a negotiate filter covers (without ``inpass``), or a block filter, is dropped;
  permit filters and exemptions accept; ESP/AH always pass (the raw sockets take them).
- ``postrouting``: fail closed: a captured packet that would leave by any other interface than
  the TUN device (the daemon is gone and the device with it) is dropped; TCP MSS clamped to the
  TUN device's MTU.

The table is replaced atomically (``nft -f`` runs one transaction) and outlives the daemon; only
``ipsecd --flush`` deletes it.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from ipsecd.policy.exemptions import BROADCAST, KERBEROS, MULTICAST, RSVP, Exemptions

TABLE = "ipsecd"
FAMILY = "inet"
BYPASS_MARK = 0x4D5C0001  # the daemon's own packets (SO_MARK)
CAPTURE_MARK = 0x4D5C0002  # packets the daemon must see
NFT = "nft"


class NftError(RuntimeError):
    """nft refused the ruleset or could not run; nothing was changed (one transaction)."""


@dataclass(frozen=True)
class NftMatch:
    """A 5-tuple match: inclusive address ranges (integers), protocol (0 any), port ranges."""

    version: int
    src: tuple[int, int]
    dst: tuple[int, int]
    protocol: int = 0
    sport: tuple[int, int] = (0, 65535)
    dport: tuple[int, int] = (0, 65535)

    def _addr(self, value: int) -> str:
        return str(ipaddress.IPv4Address(value) if self.version == 4 else ipaddress.IPv6Address(value))

    def _range(self, rng: tuple[int, int]) -> str | None:
        first, last = rng
        top = (1 << (32 if self.version == 4 else 128)) - 1
        if first == 0 and last == top:
            return None
        if first == last:
            return self._addr(first)
        size = last - first + 1
        if size & (size - 1) == 0 and first % size == 0:
            bits = 32 if self.version == 4 else 128
            return f"{self._addr(first)}/{bits - size.bit_length() + 1}"
        return f"{self._addr(first)}-{self._addr(last)}"

    @staticmethod
    def _ports(rng: tuple[int, int]) -> str | None:
        lo, hi = rng
        if (lo, hi) in ((0, 65535), (0, 0)):
            return None
        return str(lo) if lo == hi else f"{lo}-{hi}"

    def expr(self) -> str:
        fam = "ip" if self.version == 4 else "ip6"
        parts: list[str] = []
        src, dst = self._range(self.src), self._range(self.dst)
        if src is not None:
            parts.append(f"{fam} saddr {src}")
        if dst is not None:
            parts.append(f"{fam} daddr {dst}")
        if not parts:
            parts.append(f"meta nfproto {'ipv4' if self.version == 4 else 'ipv6'}")
        if self.protocol:
            parts.append(f"meta l4proto {self.protocol}")
            if self.protocol in (6, 17):
                sp, dp = self._ports(self.sport), self._ports(self.dport)
                if sp is not None:
                    parts.append(f"th sport {sp}")
                if dp is not None:
                    parts.append(f"th dport {dp}")
        return " ".join(parts)


# Verdicts of the outbound chains.
CAPTURE = "capture"
PASS = "pass"
# Verdicts of the inbound chains.
ACCEPT = "accept"
DROP = "drop"
SOFT_DROP = "soft-drop"  # drop unless the source is a soft association


@dataclass(frozen=True)
class NftRule:
    match: NftMatch
    verdict: str


@dataclass(frozen=True)
class NftConfig:
    tun: str
    outbound: tuple[NftRule, ...]  # in classification order (first match wins)
    inbound: tuple[NftRule, ...]
    exemptions: Exemptions
    bypass_mark: int = BYPASS_MARK
    capture_mark: int = CAPTURE_MARK


def _exempt_chain(ex: Exemptions) -> list[str]:
    # IKE (always), then the classes of ipsecexempt (ipsecd.policy.exemptions), both directions.
    lines = ["udp sport { 500, 4500 } accept", "udp dport { 500, 4500 } accept"]
    if KERBEROS in ex.classes:
        lines += [
            "meta l4proto { tcp, udp } th sport 88 accept",
            "meta l4proto { tcp, udp } th dport 88 accept",
        ]
    if RSVP in ex.classes:
        lines.append("meta l4proto 46 accept")
    if MULTICAST in ex.classes:
        lines += ["ip daddr 224.0.0.0/4 accept", "ip6 daddr ff00::/8 accept"]
    if BROADCAST in ex.classes:
        v4 = sorted({str(a) for a in ex.broadcasts if a.version == 4} | {"255.255.255.255"})
        lines.append(f"ip daddr {{ {', '.join(v4)} }} accept")
    # IPv6 neighbour discovery and router discovery must work before any SA (RFC 4861): kernel-side
    # exemption, never captured.
    lines.append(
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, "
        "nd-router-advert, nd-redirect } accept"
    )
    return lines


def _outbound_lines(rules: Sequence[NftRule], capture: int) -> list[str]:
    out = []
    for r in rules:
        if r.verdict == CAPTURE:
            out.append(f"{r.match.expr()} counter meta mark set {capture:#x} accept")
        else:
            out.append(f"{r.match.expr()} counter accept")
    return out


def _inbound_lines(rules: Sequence[NftRule]) -> list[str]:
    out = []
    for r in rules:
        expr = r.match.expr()
        if r.verdict == ACCEPT:
            out.append(f"{expr} counter accept")
        elif r.verdict == SOFT_DROP:
            fam, sset = ("ip", "soft4") if r.match.version == 4 else ("ip6", "soft6")
            out.append(f"{fam} saddr @{sset} {expr} counter accept")
            out.append(f"{expr} counter drop")
        else:
            out.append(f"{expr} counter drop")
    return out


def build_ruleset(cfg: NftConfig) -> str:
    """The ``nft -f`` text that (re)defines table ``inet ipsecd`` in one transaction."""
    tun = f'"{cfg.tun}"'
    by, cap = f"{cfg.bypass_mark:#x}", f"{cfg.capture_mark:#x}"

    def chain(name: str, head: str, body: list[str]) -> list[str]:
        return [f"  chain {name} {{", f"    {head}", *(f"    {b}" for b in body), "  }"]

    outbound = _outbound_lines(cfg.outbound, cfg.capture_mark)
    inbound = _inbound_lines(cfg.inbound)
    lines = [
        f"table {FAMILY} {TABLE} {{}}",
        f"flush table {FAMILY} {TABLE}",
        f"table {FAMILY} {TABLE} {{",
        "  set soft4 { type ipv4_addr; flags timeout; }",
        "  set soft6 { type ipv6_addr; flags timeout; }",
        *chain("exempt", "# default exemptions (docs/policy.md)", _exempt_chain(cfg.exemptions)),
        *chain(
            "output",
            "type route hook output priority mangle; policy accept;",
            [f"meta mark {by} counter accept", f"meta mark {cap} accept", "jump exempt", *outbound],
        ),
        *chain(
            "prerouting",
            "type filter hook prerouting priority mangle; policy accept;",
            [
                f"iifname {tun} accept",
                "fib daddr type { local, broadcast, multicast } accept",
                "jump exempt",
                *outbound,
            ],
        ),
        *chain(
            "input",
            "type filter hook input priority filter; policy accept;",
            [f'iifname {{ "lo", {tun} }} accept', "meta l4proto { esp, ah } accept", "jump exempt", *inbound],
        ),
        *chain(
            "forward",
            "type filter hook forward priority filter; policy accept;",
            [f"iifname {tun} accept", f"meta mark {cap} accept", "jump exempt", *inbound],
        ),
        *chain(
            "postrouting",
            "type filter hook postrouting priority mangle; policy accept;",
            [
                f"meta mark {cap} oifname != {tun} counter drop",
                f"oifname {tun} tcp flags syn tcp option maxseg size set rt mtu",
            ],
        ),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _nft(args: Sequence[str], stdin: str | None = None, timeout: float = 10.0) -> str:
    try:
        r = subprocess.run(
            [NFT, *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NftError(f"cannot run nft: {exc}") from None
    if r.returncode != 0:
        raise NftError(f"nft {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def apply(ruleset: str) -> None:
    """Load a ruleset atomically (all or nothing)."""
    _nft(["-f", "-"], stdin=ruleset)


def table_exists() -> bool:
    try:
        _nft(["list", "table", FAMILY, TABLE])
    except NftError:
        return False
    return True


def delete_table() -> bool:
    """Delete our table; False if there was none."""
    if not table_exists():
        return False
    _nft(["delete", "table", FAMILY, TABLE])
    return True


def add_soft_peer(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Let plaintext from a soft association's peer in (sets ``soft4``/``soft6``)."""
    name = "soft4" if address.version == 4 else "soft6"
    _nft(["add", "element", FAMILY, TABLE, name, f"{{ {address} }}"])


def list_table() -> str:
    return _nft(["list", "table", FAMILY, TABLE])
