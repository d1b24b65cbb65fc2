"""Parse the endpoint syntax of filters (``srcaddr``/``dstaddr`` plus optional netsh-style mask).

``me | any | dns | wins | dhcp | gateway | ADDRESS | ADDRESS/PREFIX | FIRST-LAST | DNS.NAME``;
keywords are case-insensitive. Errors are ValueErrors whose text names the bad input.
"""

from __future__ import annotations

import ipaddress
import re

from ipsecd.policy.model import AddressSpec, AddrKind, IPAddress

_KEYWORDS = {k.value: k for k in AddrKind if k not in (AddrKind.NETWORK, AddrKind.RANGE, AddrKind.DNSNAME)}
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def is_dns_name(text: str) -> bool:
    """A syntactically valid host name (RFC 1123 labels), not all-numeric at the top."""
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def parse_address(text: str, mask: str | None = None) -> AddressSpec:
    """One filter endpoint. ``mask`` (dotted netmask or prefix length) only with a plain address."""
    t = text.strip()
    low = t.lower()
    if not t:
        raise ValueError("empty address")
    if low in _KEYWORDS:
        if mask is not None:
            raise ValueError(f"a mask is only allowed with a plain address, not with {t!r}")
        return AddressSpec(_KEYWORDS[low])
    if "/" in t:
        if mask is not None:
            raise ValueError(f"{t!r} already has a prefix; leave out the mask")
        base, _, prefix = t.partition("/")
        if _ip(base) is None:
            raise ValueError(f"{t!r}: {base!r} is not an IP address")
        try:
            return AddressSpec(AddrKind.NETWORK, network=ipaddress.ip_network(t, strict=True))
        except ValueError as exc:
            if "host bits set" in str(exc):
                net = ipaddress.ip_network(t, strict=False)
                raise ValueError(f"{t!r} has host bits set; did you mean {net}?") from None
            raise ValueError(f"{t!r}: bad prefix length {prefix!r}") from None
    if "-" in t:
        first_t, _, last_t = t.partition("-")
        first, last = _ip(first_t), _ip(last_t)
        if first is not None or last is not None:
            if first is None or last is None:
                raise ValueError(f"{t!r}: a range is FIRST-LAST with two IP addresses")
            if first.version != last.version:
                raise ValueError(f"{t!r}: a range cannot mix IPv4 and IPv6")
            if int(first) > int(last):
                raise ValueError(f"{t!r}: the first address of a range is after the last")
            if mask is not None:
                raise ValueError("a mask is only allowed with a plain address, not with a range")
            return AddressSpec(AddrKind.RANGE, first=first, last=last)
    addr = _ip(t)
    if addr is not None:
        if mask is None:
            return AddressSpec(AddrKind.NETWORK, network=ipaddress.ip_network(addr))
        m = mask.strip()
        try:
            net = ipaddress.ip_network(f"{addr}/{m}", strict=False)
        except ValueError:
            raise ValueError(f"bad mask {m!r} for {t}") from None
        if net.network_address != addr:
            raise ValueError(f"{t} with mask {m} has host bits set; did you mean {net}?")
        return AddressSpec(AddrKind.NETWORK, network=net)
    if re.fullmatch(r"[0-9.]+", t) or ":" in t:
        raise ValueError(f"{t!r} is not a valid IP address")
    if is_dns_name(t):
        if mask is not None:
            raise ValueError("a mask is only allowed with a plain address, not with a DNS name")
        return AddressSpec(AddrKind.DNSNAME, name=t.lower().rstrip("."))
    raise ValueError(f"{t!r} is not an address, subnet, range, keyword or DNS name")


def family(spec: AddressSpec) -> int | None:
    """4 or 6 for concrete endpoints; None for keywords and names (known only at expansion)."""
    if spec.network is not None:
        return spec.network.version
    if spec.first is not None:
        return spec.first.version
    return None
