"""Parse ``ip xfrm`` words into the manual-keying value objects (ipsecd.policy.manual_model).

Every error is a ``ManualError`` naming the 1-based word number, the word and what was expected;
a key word is never echoed ("word 9 (key, not shown): ..."). docs/manual-keying.md has the grammar.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
from collections.abc import Sequence
from typing import TypeVar

from ipsecd.policy.manual_model import (
    _SPECS,
    ALGORITHMS,
    ALIASES,
    DEFAULT_REPLAY_WINDOW,
    LIMIT_WORDS,
    MAX_TEMPLATES,
    U32,
    U64,
    Algo,
    Encap,
    IPAddress,
    IPNetwork,
    Limits,
    ManualError,
    ManualPolicy,
    ManualState,
    PolicyAction,
    PolicyDir,
    PolicyId,
    StateId,
    Template,
    TmplLevel,
    XfrmMode,
    XfrmProto,
    XfrmSelector,
)

T = TypeVar("T")


# -- the word cursor ---------------------------------------------------------------------------
class _Words:
    """argv with a position; errors name the 1-based word number and the word (never a key)."""

    def __init__(self, words: Sequence[str], offset: int = 0) -> None:
        self.words = list(words)
        self.i = 0
        self.offset = offset  # words before these in the user's command line (for numbering)
        self.secrets: set[int] = set()  # indexes of key words: never echoed

    def more(self) -> bool:
        return self.i < len(self.words)

    def peek(self) -> str | None:
        return self.words[self.i] if self.more() else None

    def fail(self, message: str, at: int | None = None) -> ManualError:
        i = self.i if at is None else at
        if i in self.secrets:
            return self.secret_fail(i, message)
        if i < len(self.words):
            return ManualError(f"word {i + 1 + self.offset} {self.words[i]!r}: {message}")
        return ManualError(f"at the end: {message}")

    def take(self, what: str) -> str:
        if not self.more():
            if not self.i:
                raise ManualError(f"expected {what}")
            prev = "the key" if self.i - 1 in self.secrets else repr(self.words[self.i - 1])
            raise ManualError(f"after {prev}: expected {what}")
        w = self.words[self.i]
        self.i += 1
        return w

    def take_secret(self, what: str) -> tuple[str, int]:
        """A key word: returned with its index; errors about it must not echo it."""
        if not self.more():
            raise ManualError(f"after {self.words[self.i - 1]!r}: expected {what}")
        self.i += 1
        self.secrets.add(self.i - 1)
        return self.words[self.i - 1], self.i - 1

    def secret_fail(self, at: int, message: str) -> ManualError:
        return ManualError(f"word {at + 1 + self.offset} (key, not shown): {message}")

    def number(self, what: str, lo: int, hi: int) -> int:
        w = self.take(what)
        try:
            v = int(w[2:], 16) if w.lower().startswith("0x") else int(w, 10)
        except ValueError:
            raise self.fail(f"expected {what}: a number (decimal or 0x hex)", self.i - 1) from None
        if not lo <= v <= hi:
            raise self.fail(f"{what} must be in {lo}..{hi}", self.i - 1)
        return v

    def choice(self, what: str, enum_type: type[enum.Enum]) -> enum.Enum:
        w = self.take(what)
        for member in enum_type:
            if w.lower() == member.value:
                return member
        options = " or ".join(str(m.value) for m in enum_type)
        raise self.fail(f"expected {what}: {options}", self.i - 1)

    def address(self, what: str) -> IPAddress:
        w = self.take(what)
        try:
            return ipaddress.ip_address(w)
        except ValueError:
            raise self.fail(f"expected {what}: an IPv4 or IPv6 address", self.i - 1) from None

    def network(self, what: str) -> IPNetwork:
        w = self.take(what)
        try:
            return ipaddress.ip_network(w, strict=True)
        except ValueError as exc:
            hint = ""
            with contextlib.suppress(ValueError):
                hint = f" (did you mean {ipaddress.ip_network(w, strict=False)}?)"
            reason = "host bits set" if hint else "not an address or ADDRESS/PLEN"
            raise self.fail(f"expected {what}: {reason}{hint}", self.i - 1) from exc


PROTO_NAMES = {
    "any": 0,
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "dccp": 33,
    "ipv6": 41,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "sctp": 132,
    "udplite": 136,
}
PROTO_TEXT = {v: k for k, v in reversed(PROTO_NAMES.items())}
PROTO_TEXT[58] = "ipv6-icmp"
PORTED = frozenset({6, 17, 132, 136})  # the protocols whose ports the data path reads
UNSUPPORTED = {
    "mark",
    "mask",
    "if_id",
    "output-mark",
    "offload",
    "ctx",
    "coa",
    "seq",
    "replay-seq",
    "replay-oseq",
    "replay-seq-hi",
    "replay-oseq-hi",
    "extra-flag",
    "tfcpad",
    "comp",
    "dev",
    "index",
    "type",
    "code",
    "key",
    "pcpu-num",
}


def _proto(w: _Words, what: str) -> int:
    word = w.take(what)
    low = word.lower()
    if low in PROTO_NAMES:
        return PROTO_NAMES[low]
    if low.isdigit() and int(low) <= 255:
        return int(low)
    raise w.fail(f"expected {what}: a name (tcp, udp, icmp, ...) or 0..255", w.i - 1)


def _unsupported(w: _Words, at: int) -> ManualError:
    return w.fail("not supported by ipsecd (see docs/manual-keying.md)", at)


def _selector_words(w: _Words, words: set[str], values: dict[str, object], where: str) -> None:
    """Consume ``src/dst/proto/sport/dport`` words while they come (each at most once)."""
    while w.more() and (w.peek() or "").lower() in words:
        at = w.i
        kw = w.take("").lower()
        if kw in values:
            raise w.fail(f"{kw} given twice{where}", at)
        if kw in ("src", "dst"):
            values[kw] = w.network(f"the {kw} prefix (ADDRESS[/PLEN])")
        elif kw == "proto":
            values[kw] = _proto(w, "the upper-layer protocol")
        else:
            values[kw] = w.number(f"the {kw} port", 0, 65535)
            values[kw + "@"] = at


def _build_selector(w: _Words, values: dict[str, object], what: str) -> XfrmSelector:
    src, dst = values.get("src"), values.get("dst")
    if src is None or dst is None:
        raise ManualError(f"{what} needs both src and dst (use 0.0.0.0/0 or ::/0 for any)")
    assert isinstance(src, ipaddress.IPv4Network | ipaddress.IPv6Network)
    assert isinstance(dst, ipaddress.IPv4Network | ipaddress.IPv6Network)
    if src.version != dst.version:
        raise ManualError(f"{what}: src {src} and dst {dst} are not of the same address family")
    proto = values.get("proto", 0)
    assert isinstance(proto, int)
    ports = {}
    for kw in ("sport", "dport"):
        port = values.get(kw, 0)
        assert isinstance(port, int)
        if port and proto not in PORTED:
            at = values[kw + "@"]
            assert isinstance(at, int)
            raise w.fail(f"{kw} needs proto tcp, udp, sctp or udplite", at)
        ports[kw] = port
    return XfrmSelector(src, dst, proto, ports["sport"], ports["dport"])


# -- keys and algorithms -----------------------------------------------------------------------
def _key(w: _Words, what: str) -> bytes:
    text, at = w.take_secret(what)
    if text.lower().startswith("0x"):
        digits = text[2:]
        if len(digits) % 2:
            raise w.secret_fail(at, f"{what}: odd number of hex digits")
        try:
            return bytes.fromhex(digits)
        except ValueError:
            raise w.secret_fail(at, f"{what}: not valid hex after 0x") from None
    try:
        return text.encode("ascii")  # ip xfrm takes a key without 0x as its characters
    except UnicodeEncodeError:
        raise w.secret_fail(at, f"{what}: a key is 0x followed by hex digits, or ASCII text") from None


def _sizes(sizes: tuple[int, ...]) -> str:
    text = ", ".join(str(s) for s in sizes[:-1])
    return f"{text} or {sizes[-1]}" if text else str(sizes[-1])


def _algo(w: _Words, kind: str) -> Algo:
    at = w.i
    raw = w.take(f"an algorithm name after {kind}")
    name = ALIASES.get(raw.lower(), raw.lower())
    spec = ALGORITHMS.get(name)
    expected_kind = "auth" if kind in ("auth", "auth-trunc") else kind
    if spec is None or spec.kind != expected_kind:
        names = ", ".join(s.name for s in _SPECS if s.kind == expected_kind)
        raise w.fail(f"unsupported {kind} algorithm (supported: {names})", at)
    key = _key(w, f"the {name} key")
    if len(key) not in spec.key_sizes:
        salt = " (the cipher key followed by the 4-byte salt)" if kind == "aead" else ""
        raise w.secret_fail(
            w.i - 1, f"{kind} {name}: the key must be {_sizes(spec.key_sizes)} bytes{salt}, not {len(key)}"
        )
    bits = spec.bits
    if kind in ("aead", "auth-trunc"):
        what = "ICV length in bits" if kind == "aead" else "truncation length in bits"
        bits_at = w.i
        bits = w.number(f"the {what}", 0, 4096)
        if bits != spec.bits:
            raise w.fail(f"{name}: the only {what} ipsecd supports is {spec.bits}", bits_at)
    elif kind == "auth" and spec.legacy_bits:
        raise w.fail(
            f"plain 'auth {name}' truncates to {spec.legacy_bits} bits on Linux, which ipsecd does not "
            f"support; write: auth-trunc {name} KEY {spec.bits} (RFC 4868)",
            at,
        )
    return Algo(kind, name, key, bits)


# -- states ------------------------------------------------------------------------------------
def _state_id_words(w: _Words, values: dict[str, object], kw: str, at: int) -> None:
    if kw in values:
        raise w.fail(f"{kw} given twice", at)
    if kw in ("src", "dst"):
        values[kw] = w.address(f"the {kw} address")
    elif kw == "proto":
        values[kw] = w.choice("the IPsec protocol", XfrmProto)
    else:
        values[kw] = w.number("the SPI", 0, U32)
        values["spi@"] = w.i - 1


def _check_spi(w: _Words, values: dict[str, object]) -> None:
    spi = values.get("spi")
    if isinstance(spi, int) and spi < 256:
        at = values["spi@"]
        assert isinstance(at, int)
        raise w.fail("SPIs 0..255 are reserved (RFC 4303 section 2.1); use 256..0xffffffff", at)


def parse_state(words: Sequence[str], offset: int = 0) -> ManualState:
    """The words after ``xfrm state add`` (any order, as ip xfrm takes them)."""
    w = _Words(words, offset)
    v: dict[str, object] = {}
    algos: dict[str, Algo] = {}
    limits: dict[str, int] = {}
    while w.more():
        at = w.i
        kw = w.take("").lower()
        if kw in ("src", "dst", "proto", "spi"):
            _state_id_words(w, v, kw, at)
        elif kw in ("aead", "enc", "auth", "auth-trunc"):
            slot = "auth" if kw == "auth-trunc" else kw
            if slot in algos:
                raise w.fail(f"a second {'auth/auth-trunc' if slot == 'auth' else kw} algorithm", at)
            algos[slot] = _algo(w, kw)
        elif kw in ("mode", "reqid", "replay-window", "encap", "sel") and kw in v:
            raise w.fail(f"{kw} given twice", at)
        elif kw == "mode":
            v["mode"] = w.choice("the mode", XfrmMode)
        elif kw == "reqid":
            v["reqid"] = w.number("the reqid", 0, U32)
        elif kw == "replay-window":
            n = w.number("the replay window", 0, U32)
            if n % 32 or not 32 <= n <= 4096:
                raise w.fail(
                    "ipsecd always checks replay: the window must be a multiple of 32 in 32..4096 "
                    f"(leave it out for {DEFAULT_REPLAY_WINDOW})",
                    w.i - 1,
                )
            v["replay-window"] = n
        elif kw == "flag":
            flags = 0
            while w.more() and (w.peek() or "").lower() in (
                "esn",
                "noecn",
                "decap-dscp",
                "nopmtudisc",
                "wildrecv",
                "icmp",
                "af-unspec",
                "align4",
            ):
                if (w.peek() or "").lower() != "esn":
                    raise w.fail("only the esn flag is supported by ipsecd")
                w.take("")
                v["esn"] = True
                flags += 1
            if not flags:
                raise (
                    w.fail("expected a flag: esn") if w.more() else ManualError("after 'flag': expected esn")
                )
        elif kw == "encap":
            etype = w.take("the encapsulation type")
            if etype.lower() != "espinudp":
                raise w.fail("only espinudp (RFC 3948) is supported", w.i - 1)
            sport = w.number("the encapsulation source port", 1, 65535)
            dport = w.number("the encapsulation destination port", 1, 65535)
            v["encap"] = Encap(sport, dport, w.address("the original address (OADDR, e.g. 0.0.0.0)"))
        elif kw == "sel":
            sv: dict[str, object] = {}
            _selector_words(w, {"src", "dst", "proto", "sport", "dport"}, sv, " in sel")
            if not sv:
                raise w.fail("expected src, dst, proto, sport or dport after sel")
            v["sel"] = _build_selector(w, sv, "sel")
        elif kw == "limit":
            lk = w.take("a limit: " + ", ".join(LIMIT_WORDS)).lower()
            if lk not in LIMIT_WORDS:
                raise w.fail("expected a limit: " + ", ".join(LIMIT_WORDS), w.i - 1)
            if lk in limits:
                raise w.fail(f"limit {lk} given twice", w.i - 1)
            limits[lk] = w.number(f"the {lk} limit", 0, U64)
        elif kw in UNSUPPORTED or kw in ("time-use-soft", "time-use-hard", "espinudp-nonike"):
            raise _unsupported(w, at)
        else:
            raise w.fail(
                "unknown word (expected src, dst, proto, spi, mode, reqid, aead, enc, auth, auth-trunc, "
                "replay-window, flag, encap, sel or limit)",
                at,
            )
    for req in ("src", "dst", "proto", "spi"):
        if req not in v:
            raise ManualError(f"a state needs {req} (src ADDR dst ADDR proto esp|ah spi SPI)")
    _check_spi(w, v)
    return _make_state(v, algos, limits)


def _make_state(v: dict[str, object], algos: dict[str, Algo], limits: dict[str, int]) -> ManualState:
    src, dst, proto, spi = v["src"], v["dst"], v["proto"], v["spi"]
    assert isinstance(src, ipaddress.IPv4Address | ipaddress.IPv6Address)
    assert isinstance(dst, ipaddress.IPv4Address | ipaddress.IPv6Address)
    assert isinstance(proto, XfrmProto) and isinstance(spi, int)
    if src.version != dst.version:
        raise ManualError(f"src {src} and dst {dst} are not of the same address family")
    if v.get("mode") is XfrmMode.TUNNEL and (src.is_unspecified or dst.is_unspecified):
        raise ManualError("a tunnel-mode state needs unicast src and dst (the tunnel endpoints)")
    sel = v.get("sel")
    if (
        v.get("mode") is not XfrmMode.TUNNEL
        and isinstance(sel, XfrmSelector)
        and sel.src.version != src.version
    ):
        raise ManualError(f"sel: a transport-mode state carries IPv{src.version} traffic only (as on Linux)")
    aead, enc, auth = algos.get("aead"), algos.get("enc"), algos.get("auth")
    if proto is XfrmProto.AH:
        if aead is not None or enc is not None:
            raise ManualError("proto ah takes only an auth or auth-trunc algorithm (no enc, no aead)")
        if auth is None:
            raise ManualError("proto ah needs an auth-trunc (or auth) algorithm")
        if "encap" in v:
            raise ManualError("proto ah cannot be UDP-encapsulated (RFC 3948): remove encap")
    elif aead is not None:
        if enc is not None or auth is not None:
            raise ManualError(f"aead {aead.name} carries its own integrity: remove enc and auth")
    elif enc is None:
        raise ManualError(
            "proto esp needs aead ..., or enc ... with auth-trunc ... (enc cipher_null '' for integrity only)"
        )
    elif auth is None:
        raise ManualError("ESP without integrity is not supported: add auth-trunc ... (or use aead)")
    lim = Limits(**{k.replace("-", "_"): n for k, n in limits.items()})
    for kind in ("time", "byte", "packet"):
        soft, hard = getattr(lim, f"{kind}_soft"), getattr(lim, f"{kind}_hard")
        if soft and hard and soft > hard:
            raise ManualError(f"limit {kind}-soft {soft} is above {kind}-hard {hard}")
    mode = v.get("mode", XfrmMode.TRANSPORT)
    reqid = v.get("reqid", 0)
    window = v.get("replay-window", DEFAULT_REPLAY_WINDOW)
    encap = v.get("encap")
    assert isinstance(mode, XfrmMode) and isinstance(reqid, int) and isinstance(window, int)
    assert encap is None or isinstance(encap, Encap)
    assert sel is None or isinstance(sel, XfrmSelector)
    return ManualState(
        src, dst, proto, spi, mode, reqid, aead, enc, auth, window, bool(v.get("esn", False)), encap, sel, lim
    )


def parse_state_id(words: Sequence[str], offset: int = 0) -> StateId:
    """The words after ``xfrm state del``: ``[src ADDR] dst ADDR proto esp|ah spi SPI``."""
    w = _Words(words, offset)
    v: dict[str, object] = {}
    while w.more():
        at = w.i
        kw = w.take("").lower()
        if kw not in ("src", "dst", "proto", "spi"):
            raise w.fail("expected src, dst, proto or spi (a state is named by dst, proto and spi)", at)
        _state_id_words(w, v, kw, at)
    for req in ("dst", "proto", "spi"):
        if req not in v:
            raise ManualError(f"state del needs {req} ([src ADDR] dst ADDR proto esp|ah spi SPI)")
    dst, proto, spi, src = v["dst"], v["proto"], v["spi"], v.get("src")
    assert isinstance(dst, ipaddress.IPv4Address | ipaddress.IPv6Address)
    assert isinstance(proto, XfrmProto) and isinstance(spi, int)
    assert src is None or isinstance(src, ipaddress.IPv4Address | ipaddress.IPv6Address)
    return StateId(dst, proto, spi, src)


# -- policies ----------------------------------------------------------------------------------
def _get(v: dict[str, object], key: str, kind: type[T], default: T) -> T:
    value = v.get(key, default)
    assert isinstance(value, kind)
    return value


def _opt_address(v: dict[str, object], key: str) -> IPAddress | None:
    value = v.get(key)
    assert value is None or isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)
    return value


def _template(w: _Words) -> Template:
    v: dict[str, object] = {}
    start = w.i
    while w.more() and (w.peek() or "").lower() != "tmpl":
        at = w.i
        kw = w.take("").lower()
        if kw in ("src", "dst", "proto", "spi"):
            _state_id_words(w, v, kw, at)
        elif kw in ("mode", "reqid", "level") and kw in v:
            raise w.fail(f"{kw} given twice in this tmpl", at)
        elif kw == "mode":
            v["mode"] = w.choice("the mode", XfrmMode)
        elif kw == "reqid":
            v["reqid"] = w.number("the reqid", 0, U32)
        elif kw == "level":
            v["level"] = w.choice("the level", TmplLevel)
        else:
            raise w.fail("unknown word in tmpl (expected src, dst, proto, spi, mode, reqid or level)", at)
    if "proto" not in v:
        raise w.fail("this tmpl needs proto esp|ah", start - 1)
    if v.get("spi"):
        _check_spi(w, v)
    t = Template(
        proto=_get(v, "proto", XfrmProto, XfrmProto.ESP),
        src=_opt_address(v, "src"),
        dst=_opt_address(v, "dst"),
        spi=_get(v, "spi", int, 0),
        mode=_get(v, "mode", XfrmMode, XfrmMode.TRANSPORT),
        reqid=_get(v, "reqid", int, 0),
        level=_get(v, "level", TmplLevel, TmplLevel.REQUIRED),
    )
    if t.mode is XfrmMode.TUNNEL and (t.src is None or t.dst is None):
        raise w.fail("a tunnel-mode tmpl needs src and dst (the tunnel endpoints)", start - 1)
    for a in (t.src, t.dst) if t.mode is XfrmMode.TUNNEL else ():
        if a is not None and (a.is_unspecified or a.is_multicast):
            raise w.fail(f"tunnel endpoint {a} must be a unicast address", start - 1)
    if t.src is not None and t.dst is not None and t.src.version != t.dst.version:
        raise w.fail("tmpl src and dst are not of the same address family", start - 1)
    return t


def _policy_words(w: _Words, want_tmpl: bool) -> tuple[dict[str, object], list[Template]]:
    v: dict[str, object] = {}
    tmpls: list[Template] = []
    while w.more():
        at = w.i
        kw = (w.peek() or "").lower()
        if kw in ("src", "dst", "proto", "sport", "dport"):
            _selector_words(w, {"src", "dst", "proto", "sport", "dport"}, v, "")
            continue
        w.take("")
        if kw in ("dir", "action", "priority") and kw in v:
            raise w.fail(f"{kw} given twice", at)
        if kw == "dir":
            v["dir"] = w.choice("the direction", PolicyDir)
        elif want_tmpl and kw == "action":
            v["action"] = w.choice("the action", PolicyAction)
        elif want_tmpl and kw == "priority":
            v["priority"] = w.number("the priority", 0, U32)
        elif kw == "ptype":  # "main" is the only policy type, and the default (tutorials write it)
            if w.take("the policy type").lower() != "main":
                raise w.fail("only ptype main is supported", w.i - 1)
        elif want_tmpl and kw == "tmpl":
            if len(tmpls) == MAX_TEMPLATES:
                raise w.fail(f"at most {MAX_TEMPLATES} templates", at)
            tmpls.append(_template(w))
        elif kw in UNSUPPORTED or kw in ("flag", "limit"):
            raise _unsupported(w, at)
        else:
            allowed = "src, dst, proto, sport, dport, dir" + (
                ", action, priority or tmpl" if want_tmpl else ""
            )
            raise w.fail(f"unknown word (expected {allowed})", at)
    return v, tmpls


def parse_policy(words: Sequence[str], offset: int = 0) -> ManualPolicy:
    """The words after ``xfrm policy add``."""
    w = _Words(words, offset)
    v, tmpls = _policy_words(w, want_tmpl=True)
    sel = _build_selector(w, v, "a policy")
    if "dir" not in v:
        raise ManualError("a policy needs dir out|in|fwd")
    if v.get("action") is PolicyAction.BLOCK and tmpls:
        raise ManualError("a block policy takes no tmpl")
    # Transport mode keeps the addresses of the layer inside it: the selector's family, or the
    # outer family of the tunnel-mode template before it (RFC 4301 section 4.1).
    family = sel.src.version
    direction = _get(v, "dir", PolicyDir, PolicyDir.OUT)
    for i, t in enumerate(tmpls):
        if direction is PolicyDir.OUT and t.level is TmplLevel.USE and t.mode is not XfrmMode.TRANSPORT:
            raise ManualError(f"tmpl {i + 1}: level use needs mode transport in an out policy (as on Linux)")
        if t.mode is XfrmMode.TUNNEL and t.dst is not None:
            family = t.dst.version
        elif t.dst is not None and t.dst.version != family:
            raise ManualError(
                f"tmpl {i + 1}: a transport-mode tmpl's addresses must be IPv{family} like the traffic it carries"
            )
    return ManualPolicy(
        sel,
        _get(v, "dir", PolicyDir, PolicyDir.OUT),
        _get(v, "action", PolicyAction, PolicyAction.ALLOW),
        _get(v, "priority", int, 0),
        tuple(tmpls),
    )


def parse_policy_id(words: Sequence[str], offset: int = 0) -> PolicyId:
    """The words after ``xfrm policy del``: the selector and ``dir``."""
    w = _Words(words, offset)
    v, _ = _policy_words(w, want_tmpl=False)
    sel = _build_selector(w, v, "policy del")
    if "dir" not in v:
        raise ManualError("policy del needs dir out|in|fwd")
    return PolicyId(sel, _get(v, "dir", PolicyDir, PolicyDir.OUT))
