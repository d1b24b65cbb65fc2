"""Text renderings of the daemon's monitor views, close to ``netsh ipsec dynamic show`` output,
and the Wireshark ESP SA export of ``show qmsas keys=yes``.

The input is what the daemon answers (JSON dicts, keys in docs/monitor.md); these functions are
pure. ``resolve`` turns an address into a name for ``resolvedns=yes`` (identity by default).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ipsecd.cli.render import protocol_name
from ipsecd.log.statistics import MM_STATS, QM_STATS

View = Mapping[str, Any]
Resolver = Callable[[str], str]

_AUTH = {"psk": "Preshared key", "cert": "Certificate", "kerberos": "Kerberos"}
# RFC 3526 / RFC 5903 / RFC 8031 group numbers, named as Windows names the first two.
_GROUPS = {1: "Low(1)", 2: "Medium(2)", 14: "2048(14)", 19: "ECP256(19)", 20: "ECP384(20)"}


def _identity(a: str) -> str:
    return a


def _kv(label: str, value: object, indent: int = 0) -> str:
    return f"{' ' * indent}{label:<{30 - indent}}: {value}"


def _heading(title: str) -> list[str]:
    return [title, "-" * len(title)]


def _port(n: int) -> str:
    return str(n)


def config_text(c: View) -> list[str]:
    return [
        *_heading("System configuration parameters"),
        _kv("ipsecexempt", c["ipsecexempt"]),
        _kv("ikelogging", int(bool(c["ikelogging"]))),
        _kv("strongcrlcheck", c["strongcrlcheck"]),
        _kv("ipsecdiagnostics", c["ipsecdiagnostics"]),
        _kv("ipsecloginterval", c["ipsecloginterval"]),
        _kv("applied policy", c.get("policy") or "none"),
    ]


def stats_text(stats: View, which: str = "all") -> list[str]:
    out: list[str] = []
    if which in ("all", "ike"):
        out += _heading("IKE Main Mode Statistics")
        out += [_kv(label, stats["main_mode"].get(key, 0)) for key, label in MM_STATS.items()]
    if which in ("all", "ipsec"):
        if out:
            out.append("")
        out += _heading("IPsec Quick Mode Statistics")
        out += [_kv(label, stats["quick_mode"].get(key, 0)) for key, label in QM_STATS.items()]
    return out


def mmsas_text(sas: Sequence[View], resolve: Resolver = _identity, table: bool = False) -> list[str]:
    out = _heading("Main Mode SAs")
    if not sas:
        return [*out, "No SAs"]
    if table:
        out.append(f"{'ID':>4} {'Me':<24} {'Peer':<24} {'Auth':<14} {'Security methods':<24} {'Left':>7}")
        for s in sas:
            methods = f"{s['encryption']}/{s['integrity']}/DH{s['dh_group']}"
            out.append(
                f"{s['id']:>4} {resolve(s['local']):<24} {resolve(s['peer']):<24}"
                f" {_AUTH.get(s['auth_method'], s['auth_method']):<14} {methods:<24} {s['lifetime_left']:>6}s"
            )
        return out
    for n, s in enumerate(sas):
        if n:
            out.append("")
        out += [
            _kv("ID", s["id"]),
            "Me",
            _kv("IP Address", resolve(s["local"]), 1),
            _kv("Port", s["local_port"], 1),
            _kv("ID", s["local_identity"], 1),
            "Peer",
            _kv("IP Address", resolve(s["peer"]), 1),
            _kv("Port", s["peer_port"], 1),
            _kv("ID", s["peer_identity"], 1),
            _kv("Authentication Mode", _AUTH.get(s["auth_method"], s["auth_method"])),
            _kv("Encryption", s["encryption"]),
            _kv("Integrity", s["integrity"]),
            _kv("Diffie-Hellman Group", _GROUPS.get(s["dh_group"], f"Group {s['dh_group']}")),
            _kv("Lifetime", f"{s['lifetime_seconds']} seconds ({s['lifetime_left']} left)"),
            _kv("IKE Version", f"IKEv{s['ike_version']}"),
            _kv("Cookie Pair", f"{s['icookie']}:{s['rcookie']}"),
        ]
    return out


def _methods(s: View) -> str:
    parts = []
    if s.get("ah_integrity"):
        parts.append(f"AH[{s['ah_integrity']}]")
    if s.get("esp_encryption"):
        integ = s.get("esp_integrity")
        parts.append(f"ESP[{s['esp_encryption']}{',' + integ if integ else ''}]")
    return "+".join(parts) or "none"


def qmsas_text(sas: Sequence[View], resolve: Resolver = _identity, table: bool = False) -> list[str]:
    out = _heading("Quick Mode SAs")
    if not sas:
        return [*out, "No SAs"]
    if table:
        out.append(
            f"{'ID':>4} {'Source':<20} {'Destination':<20} {'Proto':<5} {'Mode':<9} {'SPI in':<10}"
            f" {'SPI out':<10} {'Methods':<24} {'Bytes in':>10} {'Bytes out':>10}"
        )
        for s in sas:
            out.append(
                f"{s['id']:>4} {resolve(s['srcaddr']):<20} {resolve(s['dstaddr']):<20}"
                f" {protocol_name(s['protocol']):<5} {s['mode']:<9} {s['inbound_spi']:<10} {s['outbound_spi']:<10}"
                f" {_methods(s):<24} {s['bytes_in']:>10} {s['bytes_out']:>10}"
            )
        return out
    for n, s in enumerate(sas):
        if n:
            out.append("")
        tunnel = s["mode"] == "tunnel"
        out += [
            "Tunnel Filter" if tunnel else "Transport Filter",
            _kv("Source Address", resolve(s["srcaddr"]), 1),
            _kv("Destination Address", resolve(s["dstaddr"]), 1),
            _kv("Protocol", protocol_name(s["protocol"]).upper(), 1),
            _kv("Source Port", _port(s["srcport"]), 1),
            _kv("Destination Port", _port(s["dstport"]), 1),
        ]
        if tunnel:
            out += [
                _kv("Src Tunnel Address", resolve(s["local"]), 1),
                _kv("Dst Tunnel Address", resolve(s["peer"]), 1),
            ]
        else:
            out += [_kv("Me", resolve(s["local"]), 1), _kv("Peer", resolve(s["peer"]), 1)]
        out += [
            _kv("Filter", s["filter"] or "-", 1),
            _kv("Policy Name", s["filteraction"] or "-", 1),
            " Offer Used",
            _kv("Security Methods", _methods(s), 2),
            _kv("PFS", f"yes, group {s['pfs_group']}" if s.get("pfs_group") else "no", 2),
            _kv("Lifetime", f"{s['lifetime_kilobytes']}kbytes/{s['lifetime_seconds']}seconds", 2),
            _kv("Lifetime Left", f"{s['kilobytes_left']}kbytes/{s['lifetime_left']}seconds", 2),
            _kv("Inbound SPI", s["inbound_spi"], 1),
            _kv("Outbound SPI", s["outbound_spi"], 1),
            _kv("Bytes In/Out", f"{s['bytes_in']}/{s['bytes_out']}", 1),
            _kv("Packets In/Out", f"{s['packets_in']}/{s['packets_out']}", 1),
            _kv("Soft Association", "yes" if s["soft"] else "no", 1),
            _kv("NAT Traversal", "yes (UDP 4500)" if s.get("udp_encap") else "no", 1),
        ]
    return out


def _auth_list(auth: Sequence[View]) -> str:
    return ", ".join(str(_AUTH.get(a["method"], a["method"])) for a in auth) or "none"


def filters_text(kind: str, rows: Sequence[View], resolve: Resolver = _identity) -> list[str]:
    """``show mmfilter`` / ``show qmfilter``: generic filters first, then specific ones."""
    title = "Main Mode Filters" if kind == "mmfilter" else "Quick Mode Filters"
    out: list[str] = []
    for typ in ("generic", "specific"):
        group = [r for r in rows if r["type"] == typ]
        if not group:
            continue
        if out:
            out.append("")
        out += _heading(f"{title} ({typ.capitalize()})")
        for n, r in enumerate(group):
            if n:
                out.append("")
            out.append(_kv("Filter name", r["name"]))
            if typ == "generic":
                out.append(_kv("Connection Type", r.get("conntype", "all").upper()))
            out += [
                _kv("Source Address", resolve(r["srcaddr"])),
                _kv("Destination Address", resolve(r["dstaddr"])),
            ]
            if typ == "specific":
                out += [_kv("Direction", "Outbound" if r["direction"] == "out" else "Inbound")]
            if r.get("tunnel"):
                out.append(_kv("Tunnel Destination", r["tunnel"]))
            if kind == "mmfilter":
                if "auth" in r:
                    out.append(_kv("Authentication Methods", _auth_list(r["auth"])))
                out.append(_kv("MM Policy Name", r["mmpolicy"]))
            else:
                out += [
                    _kv("Protocol", protocol_name(r["protocol"]).upper()),
                    _kv("Source Port", r["srcport"]),
                    _kv("Destination Port", r["dstport"]),
                    _kv("Action", r["action"].capitalize()),
                    _kv("QM Policy Name", r["qmpolicy"]),
                ]
            if typ == "specific":
                out.append(_kv("Weight", r["weight"]))
    return out or [*_heading(title), "No filters"]


def mmpolicy_text(rows: Sequence[View]) -> list[str]:
    out = _heading("Main Mode Policies")
    if not rows:
        return [*out, "No policies"]
    for p in rows:
        out += [
            _kv("Policy Name", p["name"]),
            _kv("Lifetime", f"{p['mmlifetime_minutes'] * 60} seconds"),
            _kv("QM Limit per MM", p["qmpermm"] or "unlimited"),
            _kv("Master key PFS", "yes" if p["mmpfs"] else "no"),
            f"  {'Encryption':<12} {'Integrity':<10} DH Group",
            *(
                f"  {m['encryption']:<12} {m['integrity']:<10} {_GROUPS.get(m['dh_group'], m['dh_group'])}"
                for m in p["mmsecmethods"]
            ),
        ]
    return out


def qmpolicy_text(rows: Sequence[View]) -> list[str]:
    out = _heading("Quick Mode Policies")
    if not rows:
        return [*out, "No policies"]
    for n, p in enumerate(rows):
        if n:
            out.append("")
        out += [
            _kv("Policy Name", p["name"]),
            _kv("PFS", "yes" if p["qmpfs"] else "no"),
            _kv("Inbound passthrough", "yes" if p["inpass"] else "no"),
            _kv("Soft associations", "yes" if p["soft"] else "no"),
            "  Security Methods (Kbytes/Seconds)",
            *(f"  {m['text']}" for m in p["qmsecmethods"]),
        ]
    return out


def rules_text(rows: Sequence[View]) -> list[str]:
    out = _heading("Rules")
    if not rows:
        return [*out, "No rules"]
    for n, r in enumerate(rows):
        if n:
            out.append("")
        out += [
            _kv("Rule Name", r["name"]),
            _kv("Policy Name", r["policy"]),
            _kv("Type", r["type"].capitalize()),
            _kv("Filter List", r["filterlist"]),
            _kv("Filter Action", f"{r['filteraction']} ({r['action']})"),
            _kv("Tunnel Endpoint", r["tunnel"] or "none"),
            _kv("Connection Type", r["conntype"].upper()),
            _kv("Authentication Methods", _auth_list(r["auth"])),
            _kv("IKE Version", f"IKEv{r['ikeversion']}"),
            *([_kv("UDP Encapsulation", "forced (forceencap)")] if r.get("forceencap") else []),
            _kv("Filters", f"{r['generic_filters']} generic, {r['specific_filters']} specific"),
        ]
    return out


# -- Wireshark ---------------------------------------------------------------------------------
# Wireshark's ESP preferences table ("esp_sa" in the profile directory): one line per SA, every
# field quoted: protocol, source, destination, SPI, encryption algorithm, encryption key,
# authentication algorithm, authentication key. Algorithm names are the table's choice labels.
WS_ENCRYPTION = {
    "None": "NULL",
    "3DES": "TripleDES-CBC [RFC2451]",
    "AES128": "AES-CBC [RFC3602]",
    "AES192": "AES-CBC [RFC3602]",
    "AES256": "AES-CBC [RFC3602]",
    "AESGCM128": "AES-GCM with 16 octet ICV [RFC4106]",
    "AESGCM192": "AES-GCM with 16 octet ICV [RFC4106]",
    "AESGCM256": "AES-GCM with 16 octet ICV [RFC4106]",
}
WS_INTEGRITY = {
    None: "NULL",
    "None": "NULL",
    "MD5": "HMAC-MD5-96 [RFC2403]",
    "SHA1": "HMAC-SHA-1-96 [RFC2404]",
    "SHA256": "HMAC-SHA-256-128 [RFC4868]",
    "SHA384": "HMAC-SHA-384-192 [RFC4868]",
    "SHA512": "HMAC-SHA-512-256 [RFC4868]",
}


def esp_sa_lines(keys: Sequence[View]) -> list[str]:
    """Wireshark ``esp_sa`` lines for the key records of ``dynamic.show qmsas keys``.

    An SA Wireshark's ESP table cannot describe (AH, ChaCha20-Poly1305, AES-GMAC) becomes a
    ``#`` comment line naming it, so the file still loads.
    """
    out = ["# Wireshark ESP SAs (esp_sa) written by ipsecctl dynamic show qmsas keys=yes; keep private"]
    for k in keys:
        enc = k.get("esp_encryption")
        what = f"SA {k['spi']} {k['direction']} {k['src']} -> {k['dst']}"
        if enc is None:
            out.append(f"# {what}: AH only, not in Wireshark's ESP table")
            continue
        ws_enc = WS_ENCRYPTION.get(enc)
        ws_auth = WS_INTEGRITY.get(k.get("esp_integrity"))
        if ws_enc is None or ws_auth is None:
            out.append(f"# {what}: {enc} has no Wireshark ESP decoder")
            continue
        version = ipaddress.ip_address(k["src"]).version
        fields = [
            f"IPv{version}",
            k["src"],
            k["dst"],
            k["spi"],
            ws_enc,
            f"0x{k['enc_key']}" if k["enc_key"] else "",
            ws_auth,
            f"0x{k['auth_key']}" if k["auth_key"] else "",
        ]
        out.append(",".join(f'"{f}"' for f in fields))
    return out
