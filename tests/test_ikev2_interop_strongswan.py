"""ipsecd.ikev2.Session against a real strongSwan charon (IKEv2, PSK, tunnel mode, kernel-libipsec so
ESP is UDP-encapsulated), in both roles. A test-side driver moves datagrams between the session and
UDP sockets inside charon's namespace. Each case establishes the IKE SA and the first child, checks
``swanctl --list-sas`` (ESTABLISHED, INSTALLED, the negotiated algorithms), rekeys the child (with or
without PFS) and the IKE SA from our side on short lifetimes (the session's own timers) and from
charon's side (``swanctl --rekey``), then deletes the IKE SA. Root only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import select
import socket
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from ikev2_certs import issue, make_ca
from strongswan_peer import available
from strongswan_v2_peer import CHARON_TS, OUR_TS, CharonV2Peer

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.sa import Direction
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2.certauth import Credentials
from ipsecd.ikev2.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaRekeyed,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaRekeyed,
)
from ipsecd.ikev2.payloads import Identity, TrafficSelector
from ipsecd.ikev2.proposals import parse_esp, parse_ike
from ipsecd.ikev2.session import Session, SessionConfig

pytestmark = pytest.mark.root
REASON = available()
PSK = "ikev2-interop-psk"

# (IKE proposal, ESP proposal, what charon prints for the IKE SA, and for the CHILD_SA)
PROPOSALS = [
    (
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16",
        "AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519",
        "ESP:AES_GCM_16-128",
    ),
    (
        "aes256-sha256-modp2048",
        "aes256-sha256",
        "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
        "ESP:AES_CBC-256/HMAC_SHA2_256_128",
    ),
    (
        "aes128-sha256-ecp256",
        "aes128-sha256",
        "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256",
        "ESP:AES_CBC-128/HMAC_SHA2_256_128",
    ),
    (
        "chacha20poly1305-prfsha256-x25519",
        "chacha20poly1305",
        "CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519",
        "ESP:CHACHA20_POLY1305",
    ),
]
# Every proposal in both roles; PFS on in one role and off in the other.
CASES = [
    (p, role, (i + (role == "responder")) % 2 == 0)
    for i, p in enumerate(PROPOSALS)
    for role in ("initiator", "responder")
]


def _ids(c: tuple[tuple[str, str, str, str], str, bool]) -> str:
    return f"{c[0][0]}-{c[1]}-{'pfs' if c[2] else 'nopfs'}"


class Driver:
    """Feeds one session from two UDP sockets (IKE port and NAT-T port); bounded waits only."""

    def __init__(self, ike: socket.socket, natt: socket.socket) -> None:
        self.ike, self.natt = ike, natt
        self.session: Session | None = None
        self.events: list[Event] = []
        self.make: Callable[[bytes, tuple[str, int]], Session] | None = None
        self.esp: list[bytes] = []  # ESP-in-UDP payloads that reached our NAT-T socket

    def _flush(self) -> None:
        assert self.session is not None
        for data, addr in self.session.datagrams_to_send(time.monotonic()):
            (self.natt if data[:4] == bytes(4) else self.ike).sendto(data, addr)
        while (e := self.session.next_event()) is not None:
            self.events.append(e)

    def run(self, until: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.session is not None:
                self.session.poll(time.monotonic())
                self._flush()
            if until():
                return
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; events: {[type(e).__name__ for e in self.events]}"
                )
            wait = 0.05
            if self.session is not None and (t := self.session.get_timer()) is not None:
                wait = max(0.0, min(wait, t - now))
            ready, _, _ = select.select([self.ike, self.natt], [], [], wait)
            for sock in ready:
                data, addr = sock.recvfrom(65535)
                if sock is self.natt and data[:4] != bytes(4):
                    if len(data) > 8:
                        self.esp.append(data)  # ESP in UDP (a NAT keepalive is one 0xFF byte)
                    continue
                if self.session is None:
                    assert self.make is not None
                    self.session = self.make(data, addr)
                self.session.receive_datagram(data, addr, time.monotonic())
            if self.session is not None:
                t = self.session.get_timer()
                if t is not None and time.monotonic() >= t:
                    self.session.handle_timer(time.monotonic())

    def count(self, cls: type) -> int:
        return sum(isinstance(e, cls) for e in self.events)


def _config(ike: str, esp: str, pfs: bool, rekey: bool) -> SessionConfig:
    ike_algs = parse_ike(ike)
    esp_algs = parse_esp(esp + (f"-{ike.rsplit('-', 1)[1]}" if pfs else ""))
    return SessionConfig(
        ike=(parse_ike("aes192-sha384-ecp384"), ike_algs),  # one charon refuses first
        esp=(parse_esp("aes192-sha512"), esp_algs),
        psk=PSK.encode(),
        local_id=Identity.address("127.0.0.2"),
        remote_id=Identity.address("127.0.0.1"),
        local_ts=(TrafficSelector.network(OUR_TS),),
        remote_ts=(TrafficSelector.network(CHARON_TS),),
        pfs_group=ike_algs.groups[0] if pfs else None,
        child_rekey_s=2.0 if rekey else 3600.0,
        ike_rekey_s=3.5 if rekey else 14400.0,
        rekey_margin_s=5.0,
        dpd_interval_s=0,
        retransmit_timeout_s=0.5,
        half_open_timeout_s=10.0,
    )


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize(("proposal", "role", "pfs"), CASES, ids=[_ids(c) for c in CASES])
def test_session_against_charon(proposal: tuple[str, str, str, str], role: str, pfs: bool) -> None:
    ike, esp, ike_text, esp_text = proposal
    ours_initiate = role == "initiator"
    peer = CharonV2Peer(
        ike_proposal=ike, esp_proposal=esp, psk=PSK, pfs=pfs, charon_port=500 if ours_initiate else 5500
    )
    socks: list[socket.socket] = []
    swanctl = None
    rng, dh = os.urandom, DefaultDhProvider(os.urandom)
    try:
        if ours_initiate:
            socks += [peer.socket(5500), peer.socket(4501)]
            drv = Driver(*socks)
            drv.session = Session.initiate(
                _config(ike, esp, pfs, rekey=True),
                local=("127.0.0.2", 5500),
                remote=("127.0.0.1", 500),
                now=time.monotonic(),
                rng=rng,
                dh=dh,
                local_natt_port=4501,
            )
        else:
            socks += [peer.socket(500), peer.socket(4500)]
            drv = Driver(*socks)
            drv.make = lambda data, addr: Session.respond(
                _config(ike, esp, pfs, rekey=True),
                local=("127.0.0.2", 500),
                remote=addr,
                now=time.monotonic(),
                rng=rng,
                dh=dh,
            )
            swanctl = peer.initiate()
        drv.run(lambda: drv.count(ChildSaEstablished) == 1, 10, "IKE_SA and CHILD_SA")
        est = next(e for e in drv.events if isinstance(e, IkeSaEstablished))
        assert est.initiator == ours_initiate and est.natt and est.peer_id == Identity.address("127.0.0.1")
        # No NAT on loopback, but kernel-libipsec makes charon fake its source hash.
        assert drv.session is not None and drv.session.peer_behind_nat and not drv.session.behind_nat
        child = next(e for e in drv.events if isinstance(e, ChildSaEstablished))
        assert child.outbound.encap is not None and child.inbound.tunnel is not None
        sas = peer.list_sas()
        assert re.search(r"^v2: #\d+, ESTABLISHED, IKEv2", sas, re.MULTILINE), sas
        assert ike_text in sas, sas
        assert re.search(rf"c: #\d+, reqid \d+, INSTALLED, TUNNEL-in-UDP, {re.escape(esp_text)}", sas), sas
        assert f"{child.inbound.spi:08x}" in sas and f"{child.outbound.spi:08x}" in sas, sas

        # Our timers: the child rekeys after ~2 s (PFS when configured), the IKE SA after ~3.5 s.
        drv.run(lambda: drv.count(ChildSaRekeyed) >= 1 and drv.count(IkeSaRekeyed) >= 1, 8, "our rekeys")
        drv.run(
            lambda: drv.count(ChildSaDeleted) >= 1 and drv.session is not None and drv.session.old_sa is None,
            5,
            "old SAs deleted",
        )
        rekeyed = next(e for e in drv.events if isinstance(e, ChildSaRekeyed))
        assert rekeyed.pfs_group == (_config(ike, esp, pfs, True).pfs_group)
        assert drv.session is not None
        drv.session.config = _config(ike, esp, pfs, rekey=False)  # no more rekeys of our own
        for c in drv.session.children.values():
            c.rekey_at = float("inf")
        drv.session.sa.rekey_at = float("inf")
        sas = peer.list_sas()
        assert len(peer.ike_sas()) == 1 and "ESTABLISHED" in peer.ike_sas()[0], sas
        assert len(peer.installed_children()) == 1, sas
        assert f"{rekeyed.inbound.spi:08x}" in sas and f"{rekeyed.outbound.spi:08x}" in sas, sas

        # charon's turn: rekey the child, then the IKE SA.
        n_child, n_ike = drv.count(ChildSaRekeyed), drv.count(IkeSaRekeyed)
        peer.swanctl("--rekey", "--child", "c")
        drv.run(
            lambda: drv.count(ChildSaRekeyed) > n_child and len(drv.session.children) == 1,
            5,
            "charon's child rekey",
        )  # type: ignore[union-attr]
        peer.swanctl("--rekey", "--ike", "v2")
        drv.run(
            lambda: drv.count(IkeSaRekeyed) > n_ike and drv.session.old_sa is None, 5, "charon's IKE rekey"
        )  # type: ignore[union-attr]
        drv.run(lambda: len(peer.ike_sas()) == 1 and len(peer.installed_children()) == 1, 5, "charon settled")
        last = [e for e in drv.events if isinstance(e, ChildSaRekeyed)][-1]
        sas = peer.list_sas()
        assert f"{last.inbound.spi:08x}" in sas and f"{last.outbound.spi:08x}" in sas, sas
        assert drv.session.counters.invalid_packets == 0, drv.session.last_drop

        # A second child from our side (CREATE_CHILD_SA without REKEY_SA), then charon deletes it.
        n_est, n_del = drv.count(ChildSaEstablished), drv.count(ChildSaDeleted)
        drv.session.create_child()
        drv.run(lambda: drv.count(ChildSaEstablished) > n_est, 5, "a second child")
        drv.run(lambda: len(peer.installed_children()) == 2, 5, "charon's second child")
        second = [e for e in drv.events if isinstance(e, ChildSaEstablished)][-1]
        # charon's "in" SPI of a child is our outbound SPI.
        ids = re.findall(
            r"c: #(\d+), reqid \d+, INSTALLED[^\n]*\n[^\n]*\n\s+in\s+([0-9a-f]{8}),", peer.list_sas()
        )
        child_id = next((i for i, spi in ids if int(spi, 16) == second.outbound.spi), None)
        assert child_id is not None, peer.list_sas()
        term = peer.swanctl_background("--terminate", "--child-id", child_id, "--timeout", "5")
        try:
            drv.run(lambda: drv.count(ChildSaDeleted) > n_del, 5, "charon's child delete")
        finally:
            assert term.wait(timeout=10) == 0
        assert {c.spi for c in drv.session.children.values()} == {last.inbound.spi}

        # We delete the IKE SA; charon has nothing left.
        drv.session.close()
        drv.run(lambda: drv.count(IkeSaDeleted) == 1, 5, "IKE SA deleted")
        drv.run(lambda: not peer.ike_sas(), 5, "charon's SAs gone")
    except BaseException:
        print(peer.log_text()[-8000:])
        raise
    finally:
        if swanctl is not None:
            swanctl.terminate()
            swanctl.wait(timeout=10)
        for s in socks:
            s.close()
        peer.close()


def _checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\x00"
    s = sum(int.from_bytes(b[i : i + 2], "big") for i in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    h = bytearray(
        bytes([0x45, 0]) + (20 + len(payload)).to_bytes(2, "big") + bytes([0, 1, 0, 0, 64, proto, 0, 0])
    )
    h += ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    h[10:12] = _checksum(bytes(h)).to_bytes(2, "big")
    return bytes(h) + payload


def _echo_request(seq: int) -> bytes:
    icmp = bytearray(bytes([8, 0, 0, 0, 0x12, 0x34]) + seq.to_bytes(2, "big") + b"ipsecd-ikev2-ping" * 2)
    icmp[2:4] = _checksum(bytes(icmp)).to_bytes(2, "big")
    return _ipv4("10.1.0.1", "10.2.0.1", 1, bytes(icmp))


PING_CASES = [PROPOSALS[0], PROPOSALS[1], PROPOSALS[3]]


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("proposal", PING_CASES, ids=[p[0] for p in PING_CASES])
def test_esp_ping_through_charon(proposal: tuple[str, str, str, str]) -> None:
    """The child SA keys carry traffic: ESP built with ipsecd.datapath from the session's SAParams
    goes through charon's kernel-libipsec tunnel to 10.2.0.1 and the echo replies come back."""
    ike, esp, _, _ = proposal
    peer = CharonV2Peer(ike_proposal=ike, esp_proposal=esp, psk=PSK, install_routes=True)
    socks: list[socket.socket] = []
    try:
        socks += [peer.socket(5500), peer.socket(4501)]
        drv = Driver(*socks)
        drv.session = Session.initiate(
            _config(ike, esp, False, rekey=False),
            local=("127.0.0.2", 5500),
            remote=("127.0.0.1", 500),
            now=time.monotonic(),
            rng=os.urandom,
            dh=DefaultDhProvider(os.urandom),
            local_natt_port=4501,
        )
        drv.run(lambda: drv.count(ChildSaEstablished) == 1, 10, "IKE_SA and CHILD_SA")
        child = next(e for e in drv.events if isinstance(e, ChildSaEstablished))
        out = make_transform(child.outbound, Direction.OUTBOUND, "python")
        inb = make_transform(child.inbound, Direction.INBOUND, "python")
        for seq in range(1, 4):
            outer = out.protect([_echo_request(seq)])[0]
            assert outer is not None
            drv.natt.sendto(outer[28:], drv.session.remote)  # strip outer IPv4 + UDP: the socket adds them
        drv.run(lambda: len(drv.esp) >= 3, 5, "three ESP replies")
        replies = []
        for data in drv.esp:
            udp = (
                (4500).to_bytes(2, "big")
                + (4501).to_bytes(2, "big")
                + (8 + len(data)).to_bytes(2, "big")
                + bytes(2)
            )
            inner = inb.unprotect([_ipv4("127.0.0.1", "127.0.0.2", 17, udp + data)])[0]
            assert inner is not None, inb.counters()
            replies.append(inner)
        assert all(
            r[9] == 1 and r[12:16] == bytes([10, 2, 0, 1]) and r[20] == 0 for r in replies
        )  # echo replies
        assert sorted(int.from_bytes(r[26:28], "big") for r in replies) == [1, 2, 3]
        sas = peer.list_sas()
        assert re.search(rf"in  {child.outbound.spi:08x},\s+\d+ bytes,\s+3 packets", sas), sas
        assert re.search(rf"out {child.inbound.spi:08x},\s+\d+ bytes,\s+3 packets", sas), sas
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        for s in socks:
            s.close()
        peer.close()


CERT_CASES = [
    ("initiator", "ecdsa", True),
    ("responder", "ecdsa", True),
    ("initiator", "rsa", True),
    ("responder", "rsa", True),
    ("initiator", "ecdsa", False),  # charon without RFC 7427: methods 9 (RFC 4754) and 1
    ("responder", "rsa", False),
]


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize(
    ("role", "kind", "rfc7427"),
    CERT_CASES,
    ids=[f"{r}-{k}-{'rfc7427' if x else 'classic'}" for r, k, x in CERT_CASES],
)
def test_certificate_authentication_with_charon(role: str, kind: str, rfc7427: bool) -> None:
    """Both ends authenticate with X.509 certificates from one test CA (RFC 7427 signatures)."""
    ca = make_ca(kind)
    ours, theirs = issue(ca, "127.0.0.2", kind), issue(ca, "127.0.0.1", kind)
    pki = {
        "x509ca/ca.pem": ca.cert_pem(),
        "x509/charon.pem": theirs.cert_pem(),
        "private/charon.key": theirs.key_pem(),
    }
    ike, esp = "aes128gcm16-prfsha256-x25519", "aes128gcm16"
    ours_initiate = role == "initiator"
    peer = CharonV2Peer(
        ike_proposal=ike,
        esp_proposal=esp,
        psk=PSK,
        charon_port=500 if ours_initiate else 5500,
        pki=pki,
        rfc7427=rfc7427,
    )
    cfg = replace(
        _config(ike, esp, False, rekey=False),
        psk=b"",
        certs=Credentials.from_pem(ours.key_pem(), ours.cert_pem(), (ca.cert_pem(),)),
    )
    socks: list[socket.socket] = []
    swanctl = None
    kw = {
        "rng": os.urandom,
        "dh": DefaultDhProvider(os.urandom),
        "wall_clock": lambda: datetime.datetime.now(datetime.UTC),
    }
    try:
        if ours_initiate:
            socks += [peer.socket(5500), peer.socket(4501)]
            drv = Driver(*socks)
            drv.session = Session.initiate(
                cfg,
                local=("127.0.0.2", 5500),
                remote=("127.0.0.1", 500),
                now=time.monotonic(),
                local_natt_port=4501,
                **kw,
            )
        else:
            socks += [peer.socket(500), peer.socket(4500)]
            drv = Driver(*socks)
            drv.make = lambda data, addr: Session.respond(
                cfg, local=("127.0.0.2", 500), remote=addr, now=time.monotonic(), **kw
            )
            swanctl = peer.initiate()
        drv.run(lambda: drv.count(ChildSaEstablished) == 1, 10, "IKE_SA and CHILD_SA with certificates")
        assert drv.session is not None and drv.session.peer_id == Identity.address("127.0.0.1")
        want = {
            ("ecdsa", True): "ECDSA_WITH_SHA256_DER",
            ("rsa", True): "RSA_EMSA_PKCS1_SHA2_256",
            ("ecdsa", False): "ECDSA-256 signature",
            ("rsa", False): "RSA signature",
        }[kind, rfc7427]
        assert drv.session.peer_signature_hashes is rfc7427
        assert peer.wait_log(f"authentication of '127.0.0.2' with {want} successful", 5.0)
        sas = peer.list_sas()
        assert re.search(r"^v2: #\d+, ESTABLISHED, IKEv2", sas, re.MULTILINE) and peer.installed_children(), (
            sas
        )
    except BaseException:
        print(peer.log_text()[-8000:])
        raise
    finally:
        if swanctl is not None:
            swanctl.terminate()
            swanctl.wait(timeout=10)
        for s in socks:
            s.close()
        peer.close()
