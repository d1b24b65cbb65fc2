"""Two ipsecd.ikev2 sessions talking in memory: deterministic (seeded randomness, a fake clock)."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from ikev2_certs import NOW, Issued, issue, make_ca

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.sa import Direction
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2.certauth import Credentials
from ipsecd.ikev2.constants import NotifyType
from ipsecd.ikev2.cookies import CookieGuard
from ipsecd.ikev2.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaRekeyed,
    Event,
    FailurePoint,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaRekeyed,
    NegotiationFailed,
    PeerDead,
)
from ipsecd.ikev2.payloads import Identity, TrafficSelector
from ipsecd.ikev2.proposals import parse_esp, parse_ike
from ipsecd.ikev2.session import Session, SessionConfig, State

A = ("192.0.2.1", 500)
B = ("192.0.2.2", 500)
SUITES = [
    ("aes128gcm16-prfsha256-x25519", "aes128gcm16"),
    ("aes256-sha256-modp2048", "aes256-sha256"),
    ("aes128-sha256-ecp256", "aes128-sha256"),
    ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305"),
    ("aes192-sha384-ecp384", "aes128-sha1"),
    ("aes256-sha512-prfsha512-x25519", "aes256gcm16"),
]


def config(
    local: str, lts: str, rts: str, ike: str = SUITES[0][0], esp: str = SUITES[0][1], **kw: object
) -> SessionConfig:
    base = SessionConfig(
        ike=(parse_ike(ike),),
        esp=(parse_esp(esp),),
        psk=b"in-memory-psk",
        local_id=Identity.address(local),
        local_ts=(TrafficSelector.network(lts),),
        remote_ts=(TrafficSelector.network(rts),),
        dpd_interval_s=0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class Pair:
    def __init__(
        self,
        ca: SessionConfig,
        cb: SessionConfig,
        seed: int = 1,
        wall_clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        r = random.Random(seed)
        self.rng: Callable[[int], bytes] = r.randbytes
        self.dh = DefaultDhProvider(self.rng)
        self.now = 0.0
        self.a = Session.initiate(
            ca, local=A, remote=B, now=0.0, rng=self.rng, dh=self.dh, wall_clock=wall_clock
        )
        self.b = Session.respond(
            cb, local=B, remote=A, now=0.0, rng=self.rng, dh=self.dh, wall_clock=wall_clock
        )
        self.ev: dict[str, list[Event]] = {"a": [], "b": []}
        self.wire: list[tuple[str, bytes]] = []  # every datagram, for tests that replay

    def run(self, drop: Callable[[str, bytes], bool] = lambda who, d: False, rounds: int = 30) -> None:
        for _ in range(rounds):
            moved = False
            for who, x, y, src in (("a", self.a, self.b, A), ("b", self.b, self.a, B)):
                x.poll(self.now)
                for d, _addr in x.datagrams_to_send(self.now):
                    moved = True
                    self.wire.append((who, d))
                    if not drop(who, d):
                        y.receive_datagram(d, src, self.now)
            for who, s in (("a", self.a), ("b", self.b)):
                while (e := s.next_event()) is not None:
                    self.ev[who].append(e)
            if not moved:
                return

    def tick(self, to: float, drop: Callable[[str, bytes], bool] = lambda who, d: False) -> None:
        """Advance the clock in timer steps, delivering everything in between."""
        for _ in range(200):
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None and t <= to]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            for s in (self.a, self.b):
                t = s.get_timer()
                if t is not None and t <= self.now:
                    s.handle_timer(self.now)
            self.run(drop)
        self.now = to
        self.run(drop)

    def of(self, who: str, cls: type) -> list[Event]:
        return [e for e in self.ev[who] if isinstance(e, cls)]


def pair(**kw: object) -> Pair:
    a_kw = {k[2:]: v for k, v in kw.items() if k.startswith("a_")}
    b_kw = {k[2:]: v for k, v in kw.items() if k.startswith("b_")}
    both = {k: v for k, v in kw.items() if not k.startswith(("a_", "b_"))}
    return Pair(
        config(A[0], "10.1.0.0/24", "10.2.0.0/24", **{**both, **a_kw}),
        config(B[0], "10.2.0.0/24", "10.1.0.0/24", **{**both, **b_kw}),
    )


def _children_agree(p: Pair) -> None:
    assert set(p.a.children) and len(p.a.children) == len(p.b.children)
    for spi, c in p.a.children.items():
        other = next(x for x in p.b.children.values() if x.peer_spi == spi)
        assert c.inbound == replace(other.outbound, iv_key=c.inbound.iv_key, lifetimes=c.inbound.lifetimes)
        assert c.inbound.enc_key == other.outbound.enc_key and c.outbound.enc_key == other.inbound.enc_key


@pytest.mark.parametrize(("ike", "esp"), SUITES)
def test_establish_and_esp_keys_work(ike: str, esp: str) -> None:
    p = pair(ike=ike, esp=esp)
    p.run()
    assert p.a.established and p.b.established
    ea, eb = p.of("a", IkeSaEstablished)[0], p.of("b", IkeSaEstablished)[0]
    assert isinstance(ea, IkeSaEstablished) and isinstance(eb, IkeSaEstablished)
    assert ea.initiator and not eb.initiator and (ea.spi_i, ea.spi_r) == (eb.spi_i, eb.spi_r)
    assert eb.peer_id == Identity.address(A[0]) and not ea.natt
    ca, cb = p.of("a", ChildSaEstablished)[0], p.of("b", ChildSaEstablished)[0]
    assert isinstance(ca, ChildSaEstablished) and isinstance(cb, ChildSaEstablished)
    # The keys really match: a's outbound ESP SA protects what b's inbound SA accepts.
    out_a = make_transform(ca.outbound, Direction.OUTBOUND, "python")
    in_b = make_transform(cb.inbound, Direction.INBOUND, "python")
    inner = bytes.fromhex("4500001c000000004001f7d60a0100010a020001") + bytes(8)
    prot = out_a.protect([inner])[0]
    assert prot is not None and in_b.unprotect([prot])[0] is not None
    assert p.a.counters.invalid_packets == p.b.counters.invalid_packets == 0


@pytest.mark.parametrize("pfs", [None, 31])
def test_rekeys_and_delete(pfs: int | None) -> None:
    esp = "aes128gcm16" + ("-x25519" if pfs else "")
    p = pair(esp=esp, pfs_group=pfs)
    p.run()
    spi = next(iter(p.a.children.values())).spi
    p.a.rekey_child(spi)
    p.run()
    rk = p.of("a", ChildSaRekeyed)
    assert len(rk) == 1 and isinstance(rk[0], ChildSaRekeyed) and rk[0].old_inbound_spi == spi
    assert rk[0].pfs_group == pfs
    assert len(p.of("a", ChildSaDeleted)) == len(p.of("b", ChildSaDeleted)) == 1
    _children_agree(p)
    old_spis = p.a.spis
    p.b.rekey_ike()  # the responder rekeys the IKE SA: it becomes the original initiator of the new one
    p.run()
    assert len(p.of("a", IkeSaRekeyed)) == len(p.of("b", IkeSaRekeyed)) == 1
    assert p.a.spis == p.b.spis != old_spis and p.b.sa.initiator and not p.a.sa.initiator
    assert p.a.old_sa is None and p.b.old_sa is None
    p.b.rekey_child(next(iter(p.b.children.values())).spi)  # a child rekey on the new IKE SA
    p.run()
    _children_agree(p)
    p.a.close()
    p.run()
    assert p.a.closed and p.b.closed
    assert len(p.of("b", IkeSaDeleted)) == 1 and not p.a.children and not p.b.children


def test_timers_rekey_on_short_lifetimes() -> None:
    p = pair(child_rekey_s=10.0, ike_rekey_s=25.0, rekey_margin_s=5.0)
    p.run()
    p.tick(40.0)
    assert len(p.of("a", ChildSaRekeyed)) + len(p.of("b", ChildSaRekeyed)) >= 3
    assert p.of("a", IkeSaRekeyed) and p.a.established and p.b.established
    assert len(p.a.children) == len(p.b.children) == 1
    _children_agree(p)


def test_lost_request_is_retransmitted_and_duplicate_answered_from_cache() -> None:
    p = pair()
    lost: list[bytes] = []

    def drop_first_auth(who: str, d: bytes) -> bool:
        if who == "a" and not lost and p.a.state is State.AUTH:
            lost.append(d)
            return True
        return False

    p.run(drop_first_auth)
    assert lost and not p.a.established
    p.tick(1.0)  # retransmission timeout 1 s
    assert p.a.established and p.a.counters.retransmissions == 1
    # The same request again: b answers with the cached response and changes nothing.
    before = list(p.b.children)
    p.b.receive_datagram(lost[0], A, p.now)
    out = p.b.datagrams_to_send(p.now)
    assert len(out) == 1 and p.b.counters.duplicate_requests == 1 and list(p.b.children) == before


def test_give_up_after_retries() -> None:
    p = pair(retransmit_tries=3)
    p.run(lambda who, d: who == "b")  # b's answers never arrive
    p.tick(20.0, lambda who, d: who == "b")
    f = p.of("a", NegotiationFailed)
    assert len(f) == 1 and isinstance(f[0], NegotiationFailed) and f[0].failure_point is FailurePoint.PEER
    assert p.a.counters.retransmissions == 2 and p.a.closed


def test_dead_peer_detected_by_liveness_check() -> None:
    p = pair(dpd_interval_s=5.0, retransmit_tries=2)
    p.run()
    p.b.state = State.CLOSED  # b disappears
    p.tick(30.0)
    assert p.of("a", PeerDead) and len(p.of("a", ChildSaDeleted)) == 1 and p.a.closed


def test_invalid_ke_payload_retry() -> None:
    both = parse_ike("aes128gcm16-prfsha256-ecp256-x25519")
    p = Pair(
        replace(config(A[0], "10.1.0.0/24", "10.2.0.0/24"), ike=(both,)),
        replace(config(B[0], "10.2.0.0/24", "10.1.0.0/24"), ike=(parse_ike("aes128gcm16-prfsha256-x25519"),)),
    )
    p.run()
    assert p.a.established and p.a.sa.group == 31


def test_cookie_challenge() -> None:
    r = random.Random(7)
    guard = CookieGuard(r.randbytes, 0.0, threshold=0)
    p = pair()
    first = p.a.datagrams_to_send(0.0)[0][0]
    v = guard.check(first, A, half_open=5, now=0.0)
    assert not v.accept and v.reply is not None
    p.a.receive_datagram(v.reply, B, 0.0)
    second = p.a.datagrams_to_send(0.0)[0][0]
    assert guard.check(second, A, half_open=5, now=0.0).accept
    assert not guard.check(second, ("198.51.100.9", 500), half_open=5, now=0.0).accept  # bound to the address
    p.b.receive_datagram(second, A, 0.0)
    p.run()
    assert p.a.established and p.b.established


def test_wrong_psk_fails_authentication() -> None:
    p = pair(b_psk=b"another-psk")
    p.run()
    fb, fa = p.of("b", NegotiationFailed), p.of("a", NegotiationFailed)
    assert isinstance(fb[0], NegotiationFailed) and fb[0].notify == NotifyType.AUTHENTICATION_FAILED
    assert isinstance(fa[0], NegotiationFailed) and fa[0].notify == NotifyType.AUTHENTICATION_FAILED
    assert p.b.counters.authentication_failures == 1 and not p.a.established


def test_no_proposal_chosen() -> None:
    p = pair(b_ike="aes256-sha512-modp4096")
    p.run()
    assert isinstance(p.of("a", NegotiationFailed)[0], NegotiationFailed)
    assert p.of("a", NegotiationFailed)[0].notify == NotifyType.NO_PROPOSAL_CHOSEN  # type: ignore[union-attr]


def test_responder_narrows_selectors() -> None:
    p = Pair(
        config(A[0], "10.1.0.0/16", "10.2.0.0/16"),
        config(B[0], "10.2.0.0/24", "10.1.0.0/25"),
    )
    p.run()
    ca = p.of("a", ChildSaEstablished)[0]
    assert isinstance(ca, ChildSaEstablished)
    assert ca.local_ts == (TrafficSelector.network("10.1.0.0/25"),)
    assert ca.remote_ts == (TrafficSelector.network("10.2.0.0/24"),)


def test_ts_unacceptable_keeps_the_ike_sa() -> None:
    p = Pair(config(A[0], "10.1.0.0/24", "10.2.0.0/24"), config(B[0], "10.9.0.0/24", "10.8.0.0/24"))
    p.run()
    assert p.a.established and p.b.established and not p.a.children
    f = p.of("a", ChildSaFailed)
    assert isinstance(f[0], ChildSaFailed) and f[0].notify == NotifyType.TS_UNACCEPTABLE


def test_transport_mode() -> None:
    p = pair(transport=True)
    p.run()
    c = p.of("a", ChildSaEstablished)[0]
    assert isinstance(c, ChildSaEstablished) and c.outbound.tunnel is None


def test_fragmented_messages() -> None:
    many = tuple(TrafficSelector.network(f"10.1.{i}.0/24") for i in range(40))
    p = Pair(
        replace(config(A[0], "10.1.0.0/24", "10.2.0.0/24"), local_ts=many, fragment_size=400),
        replace(config(B[0], "10.2.0.0/24", "10.1.0.0/16"), fragment_size=400),
    )
    p.run()
    assert p.a.established and len(p.a.children) == 1
    assert max(len(d) for who, d in p.wire if who == "a") <= 400
    c = next(iter(p.b.children.values()))
    assert len(c.remote_ts) == 40


def test_simultaneous_child_rekey() -> None:
    p = pair()
    p.run()
    spi_a = next(iter(p.a.children))
    p.a.rekey_child(int.from_bytes(spi_a, "big"))
    p.b.rekey_child(next(iter(p.b.children.values())).spi)
    p.a.poll(0.0)
    p.b.poll(0.0)
    p.run()
    p.tick(100.0)  # redundant SAs deleted, old ones expire at the latest after the margin
    assert len(p.a.children) == len(p.b.children) == 1
    _children_agree(p)


def test_tampered_or_replayed_messages_change_nothing() -> None:
    p = pair()
    p.run()
    keys, children = p.a.sa.keys, dict(p.a.children)
    for who, d in list(p.wire):
        if who != "b":
            continue
        for i in (0, 20, len(d) // 2, len(d) - 1):
            bad = bytearray(d)
            bad[i] ^= 0x40
            p.a.receive_datagram(bytes(bad), B, p.now)
        p.a.receive_datagram(d, B, p.now)  # replayed response: no request outstanding
    assert p.a.sa.keys == keys and p.a.children == children and p.a.established
    assert p.a.counters.invalid_packets >= 8


def test_peer_deletes_child_and_ike() -> None:
    p = pair()
    p.run()
    p.b.delete_child(next(iter(p.b.children.values())).spi)
    p.run()
    assert not p.a.children and not p.b.children
    p.b.create_child()
    p.run()
    assert len(p.a.children) == len(p.b.children) == 1
    p.b.close()
    p.run()
    assert p.a.closed and isinstance(p.of("a", IkeSaDeleted)[0], IkeSaDeleted)


@pytest.mark.parametrize("seed", range(1, 9))
def test_simultaneous_ike_rekey(seed: int) -> None:
    """RFC 7296 section 2.8.2: both new IKE SAs are made, the one with the lowest nonce is deleted
    by its initiator, the winner's initiator deletes the old one; both ends agree."""
    p = Pair(config(A[0], "10.1.0.0/24", "10.2.0.0/24"), config(B[0], "10.2.0.0/24", "10.1.0.0/24"), seed)
    p.run()
    old = p.a.spis
    p.a.rekey_ike()
    p.b.rekey_ike()
    p.a.poll(0.0)
    p.b.poll(0.0)
    p.run()
    assert len(p.of("a", IkeSaRekeyed)) == len(p.of("b", IkeSaRekeyed)) == 1
    assert p.a.spis == p.b.spis != old
    assert p.a.sa.initiator != p.b.sa.initiator
    for s in (p.a, p.b):
        assert s.old_sa is None and not s.extra and s.established
        assert s.counters.invalid_packets == 0, s.last_drop
    p.a.rekey_child(next(iter(p.a.children.values())).spi)  # the surviving IKE SA works
    p.run()
    assert len(p.of("b", ChildSaRekeyed)) == 1
    _children_agree(p)


def test_child_without_rekey_is_deleted_at_its_hard_lifetime() -> None:
    p = pair(child_rekey_s=10.0, rekey_margin_s=5.0)
    p.run()
    for s in (p.a, p.b):
        for c in s.children.values():
            c.rekey_at = float("inf")  # as if every rekey attempt had been lost
    p.tick(16.0)
    assert not p.a.children and not p.b.children
    assert p.of("a", ChildSaDeleted) and p.of("b", ChildSaDeleted)


@pytest.mark.parametrize(
    ("kind", "ca_kind", "rfc7427"),
    [
        ("ecdsa", "ecdsa", True),
        ("rsa", "ecdsa", True),
        ("ecdsa", "rsa", True),
        ("ecdsa", "ecdsa", False),
        ("rsa", "rsa", False),
    ],
)
def test_certificate_authentication(kind: str, ca_kind: str, rfc7427: bool) -> None:
    ca = make_ca(ca_kind)
    certs = {ip: issue(ca, ip, kind) for ip in (A[0], B[0])}

    def creds(ip: str, trusted: Issued = ca) -> Credentials:
        return Credentials.from_pem(certs[ip].key_pem(), certs[ip].cert_pem(), (trusted.cert_pem(),))

    def run(ca_a: Issued = ca, a_remote: Identity | None = None) -> Pair:
        p = Pair(
            config(
                A[0],
                "10.1.0.0/24",
                "10.2.0.0/24",
                psk=b"",
                certs=creds(A[0], ca_a),
                remote_id=a_remote,
                announce_rfc7427=rfc7427,
            ),
            config(B[0], "10.2.0.0/24", "10.1.0.0/24", psk=b"", certs=creds(B[0]), announce_rfc7427=rfc7427),
            wall_clock=lambda: NOW,
        )
        p.run()
        return p

    p = run()
    assert p.a.established and p.b.established and len(p.a.children) == 1
    assert p.a.peer_signature_hashes is rfc7427  # without it both sign with methods 1 / 9
    assert p.a.peer_id == Identity.address(B[0])
    # A CA a does not trust, or a certificate that does not name the identity: no IKE SA.
    for bad in (run(ca_a=make_ca(ca_kind, "another CA")), run(a_remote=Identity.address("192.0.2.99"))):
        f = bad.of("a", NegotiationFailed)
        assert not bad.a.established and isinstance(f[0], NegotiationFailed)
        assert f[0].notify == NotifyType.AUTHENTICATION_FAILED and bad.a.counters.authentication_failures == 1


def test_initiator_reports_a_bad_responder_auth() -> None:
    p = pair()
    good = p.b.x._auth

    def wrong(of_initiator: bool, body: bytes) -> bytes:
        out = good(of_initiator, body)
        return out if of_initiator else bytes(len(out))  # b signs with a wrong key

    p.b.x._auth = wrong  # type: ignore[method-assign]
    p.run()
    f = p.of("a", NegotiationFailed)
    assert isinstance(f[0], NegotiationFailed) and f[0].failure_point is FailurePoint.PEER
    assert p.a.closed and p.a.counters.authentication_failures == 1
    # b got the INFORMATIONAL with AUTHENTICATION_FAILED (authenticated under the IKE SA keys).
    assert p.b.counters.datagrams_received == 3 and p.b.counters.invalid_packets == 0


def test_policy_model_methods_map_to_ikev2() -> None:
    from ipsecd.ikev2.constants import EncrId, IntegId, PrfId
    from ipsecd.ikev2.proposals import ProposalError, child_from_qm, ike_from_mm
    from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod

    ike = ike_from_mm(MmSecMethod(MmEncryption.AES256, Integrity.SHA256, 14))
    assert (ike.suite.encr, ike.suite.key_bits, ike.suite.integ, ike.prf, ike.groups) == (
        EncrId.ENCR_AES_CBC,
        256,
        IntegId.AUTH_HMAC_SHA2_256_128,
        PrfId.PRF_HMAC_SHA2_256,
        (14,),
    )
    gcm = child_from_qm(QmSecMethod(esp_enc=EspEncryption.AESGCM128), pfs_groups=(31,))
    assert (gcm.suite.encr, gcm.suite.key_bits, gcm.suite.integ, gcm.groups) == (
        EncrId.ENCR_AES_GCM_16,
        128,
        0,
        (31,),
    )
    cbc = child_from_qm(QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA1))
    assert cbc.suite.integ == IntegId.AUTH_HMAC_SHA1_96
    for bad in (
        lambda: ike_from_mm(MmSecMethod(MmEncryption.DES3, Integrity.SHA1, 14)),
        lambda: ike_from_mm(MmSecMethod(MmEncryption.AES128, Integrity.MD5, 14)),
        lambda: child_from_qm(QmSecMethod(ah=Integrity.SHA1)),
        lambda: child_from_qm(QmSecMethod(esp_enc=EspEncryption.NONE, esp_auth=Integrity.SHA1)),
    ):
        with pytest.raises(ProposalError):
            bad()
    # The policy's methods negotiate end to end.
    p = Pair(
        replace(config(A[0], "10.1.0.0/24", "10.2.0.0/24"), ike=(ike,), esp=(cbc, gcm)),
        replace(config(B[0], "10.2.0.0/24", "10.1.0.0/24"), ike=(ike,), esp=(gcm,)),
    )
    p.run()
    c = p.of("a", ChildSaEstablished)
    assert (
        p.a.established and isinstance(c[0], ChildSaEstablished) and c[0].algorithms == "ENCR_AES_GCM_16-128"
    )


def test_ipv6_endpoints_and_selectors() -> None:
    a6, b6 = ("2001:db8::1", 500), ("2001:db8::2", 500)
    r = random.Random(5)
    dh = DefaultDhProvider(r.randbytes)
    a = Session.initiate(
        config(a6[0], "2001:db8:1::/64", "2001:db8:2::/64"),
        local=a6,
        remote=b6,
        now=0,
        rng=r.randbytes,
        dh=dh,
    )
    b = Session.respond(
        config(b6[0], "2001:db8:2::/64", "2001:db8:1::/64"),
        local=b6,
        remote=a6,
        now=0,
        rng=r.randbytes,
        dh=dh,
    )
    for _ in range(3):
        for d, _addr in a.datagrams_to_send(0):
            b.receive_datagram(d, a6, 0)
        for d, _addr in b.datagrams_to_send(0):
            a.receive_datagram(d, b6, 0)
    assert a.established and b.established
    c = next(iter(a.children.values()))
    assert c.outbound.tunnel is not None and str(c.outbound.tunnel.dst) == "2001:db8::2"
    assert str(c.outbound.selectors[0].dst) == "2001:db8:2::/64"
    assert b.peer_id == Identity.address("2001:db8::1")


def test_lost_ike_sa_init_response_is_resent_from_cache() -> None:
    p = pair()
    dropped: list[bytes] = []

    def drop_first_b(who: str, d: bytes) -> bool:
        if who == "b" and not dropped:
            dropped.append(d)
            return True
        return False

    p.run(drop_first_b)
    assert dropped and not p.a.established and p.b.state is State.AUTH
    p.tick(1.0)  # a retransmits IKE_SA_INIT; b answers with the same response, keeps its SPI and keys
    assert p.a.established and p.b.established and p.b.counters.duplicate_requests == 1
    assert [d for who, d in p.wire if who == "b"][1] == dropped[0]


def test_ike_rekey_request_after_the_other_one_completed() -> None:
    """b's IKE rekey request reaches a only after a's own rekey finished: a answers it on the old
    IKE SA with TEMPORARY_FAILURE, and b keeps the IKE SA it made for a's request."""
    p = pair()
    p.run()
    p.a.rekey_ike()
    p.b.rekey_ike()
    p.a.poll(0.0)
    p.b.poll(0.0)
    (req_a, _), (req_b, _) = p.a.datagrams_to_send(0.0)[0], p.b.datagrams_to_send(0.0)[0]
    p.b.receive_datagram(req_a, A, 0.0)  # b answers a's request and holds the collision
    ((resp_b, _),) = p.b.datagrams_to_send(0.0)
    p.a.receive_datagram(resp_b, B, 0.0)  # a switches, then sends the Delete of the old IKE SA
    ((delete_old, _),) = p.a.datagrams_to_send(0.0)
    p.a.receive_datagram(req_b, B, 0.0)  # b's request arrives late, on the old IKE SA
    ((refusal, _),) = p.a.datagrams_to_send(0.0)
    p.b.receive_datagram(refusal, A, 0.0)
    p.b.receive_datagram(delete_old, A, 0.0)
    p.run()
    assert p.a.spis == p.b.spis and p.a.sa.initiator and not p.b.sa.initiator
    for s in (p.a, p.b):
        assert s.old_sa is None and not s.extra and s.established and s.counters.invalid_packets == 0
