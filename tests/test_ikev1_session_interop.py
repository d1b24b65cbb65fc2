"""The sans-I/O IKEv1 session (Main Mode + Quick Mode, NAT-T, PFS) against a real strongSwan charon
(kernel-libipsec: tunnel mode, UDP-encapsulated ESP), in both roles (root only).

A test-side driver owns two UDP sockets on 127.0.0.2 inside charon's namespace (IKE and NAT-T
ports) and feeds the session; charon must report the CHILD_SA INSTALLED in ``swanctl --list-sas``
with exactly the SPIs and algorithms the session negotiated. With ``traffic``, the driver also runs
a ping through the tunnel with ipsecd.datapath transforms built from the negotiated SAParams: charon
decrypting our ESP and our decrypting its reply proves the keys, not just the SPIs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import re
import select
import socket
import struct
import time
from dataclasses import dataclass

import ikev1_pki as pki
import pytest
from strongswan_peer import CharonV1Peer, available

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.sa import Direction
from ipsecd.ike.constants import IdType
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev1.certs import CertCredentials
from ipsecd.ikev1.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    DeleteReason,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    NegotiationFailed,
    PeerDead,
)
from ipsecd.ikev1.payloads import IdPayload
from ipsecd.ikev1.quick_mode import QmPolicy
from ipsecd.ikev1.selectors import TrafficSelector
from ipsecd.ikev1.session import IkeV1Session, SessionConfig
from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod
from tests import netns, strongswan

pytestmark = pytest.mark.root
REASON = available()
PSK = "session-interop-psk"
US = ipaddress.IPv4Address("127.0.0.2")
CHARON = ipaddress.IPv4Address("127.0.0.1")
OUR_NET = TrafficSelector.of("10.1.0.0/24")
CHARON_NET = TrafficSelector.of("10.2.0.0/24")


@dataclass(frozen=True)
class Case:
    name: str
    ike: str  # charon's IKE proposal
    mm: MmSecMethod
    esp: str  # charon's ESP proposal (without the PFS group)
    qm: QmSecMethod
    pfs: str | None  # charon's name of the PFS group (ours is the Main Mode group, ``qmpfs``)
    want_ike: str  # swanctl's IKE algorithm line
    want_esp: str  # swanctl's CHILD_SA algorithm text


AES128_SHA1 = QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA1)
AES256_SHA256 = QmSecMethod(esp_enc=EspEncryption.AES256, esp_auth=Integrity.SHA256)
GCM128 = QmSecMethod(esp_enc=EspEncryption.AESGCM128)
GCM256 = QmSecMethod(esp_enc=EspEncryption.AESGCM256)
DES3_SHA1 = QmSecMethod(esp_enc=EspEncryption.DES3, esp_auth=Integrity.SHA1)

CASES = [
    Case(
        "3des-sha1-modp1024",
        "3des-sha1-modp1024",
        MmSecMethod(MmEncryption.DES3, Integrity.SHA1, 2),
        "3des-sha1",
        DES3_SHA1,
        None,
        "3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024",
        "ESP:3DES_CBC/HMAC_SHA1_96",
    ),
    Case(
        "aes128-sha1-modp2048-pfs",
        "aes128-sha1-modp2048",
        MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 14),
        "aes128-sha1",
        AES128_SHA1,
        "modp2048",
        "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048",
        "ESP:AES_CBC-128/HMAC_SHA1_96/MODP_2048",
    ),
    Case(
        "aes256-sha256-modp2048-gcm",
        "aes256-sha256-modp2048",
        MmSecMethod(MmEncryption.AES256, Integrity.SHA256, 14),
        "aes256gcm16",
        GCM256,
        None,
        "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
        "ESP:AES_GCM_16-256",
    ),
    Case(
        "aes128-sha256-ecp256-pfs-gcm",
        "aes128-sha256-ecp256",
        MmSecMethod(MmEncryption.AES128, Integrity.SHA256, 19),
        "aes128gcm16",
        GCM128,
        "ecp256",
        "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256",
        "ESP:AES_GCM_16-128/ECP_256",
    ),
    Case(
        "aes256-sha256-curve25519-pfs",
        "aes256-sha256-curve25519",
        MmSecMethod(MmEncryption.AES256, Integrity.SHA256, 31),
        "aes256-sha256",
        AES256_SHA256,
        "curve25519",
        "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519",
        "ESP:AES_CBC-256/HMAC_SHA2_256_128/CURVE_25519",
    ),
]


AES128_SHA256 = QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA256)
CASES += [
    Case(
        "3des-sha1-modp1024-pfs",
        "3des-sha1-modp1024",
        MmSecMethod(MmEncryption.DES3, Integrity.SHA1, 2),
        "aes128-sha1",
        AES128_SHA1,
        "modp1024",
        "3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024",
        "ESP:AES_CBC-128/HMAC_SHA1_96/MODP_1024",
    ),
    Case(
        "aes128-sha1-modp2048-gcm",
        "aes128-sha1-modp2048",
        MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 14),
        "aes128gcm16",
        GCM128,
        None,
        "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048",
        "ESP:AES_GCM_16-128",
    ),
    Case(
        "aes128-sha256-ecp256-cbc",
        "aes128-sha256-ecp256",
        MmSecMethod(MmEncryption.AES128, Integrity.SHA256, 19),
        "aes128-sha256",
        AES128_SHA256,
        None,
        "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256",
        "ESP:AES_CBC-128/HMAC_SHA2_256_128",
    ),
    Case(
        "aes256-sha256-curve25519-pfs-gcm",
        "aes256-sha256-curve25519",
        MmSecMethod(MmEncryption.AES256, Integrity.SHA256, 31),
        "aes256gcm16",
        GCM256,
        "curve25519",
        "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519",
        "ESP:AES_GCM_16-256/CURVE_25519",
    ),
]


class Driver:
    """Feeds the session from the sockets and sends what it produces, until ``done`` (bounded)."""

    def __init__(self, session: IkeV1Session, socks: dict[int, socket.socket]) -> None:
        self.s = session
        self.socks = socks
        self.events: list[Event] = []
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def flush(self) -> None:
        for data, addr, lport in self.s.datagrams_to_send_from(self.now()):
            self.socks[lport].sendto(data, (str(addr[0]), addr[1]))
        while (e := self.s.next_event()) is not None:
            self.events.append(e)

    def run(self, done: type[Event], timeout: float = 15.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.flush()
            for e in self.events:
                if isinstance(e, done):
                    return e
                if isinstance(e, NegotiationFailed):
                    raise AssertionError(f"negotiation failed: {e}")
            timer = self.s.get_timer()
            wait = 0.2 if timer is None else max(0.0, min(0.2, timer - self.now()))
            ready, _, _ = select.select(list(self.socks.values()), [], [], wait)
            for sock in ready:
                data, src = sock.recvfrom(65535)
                lport = sock.getsockname()[1]
                self.s.receive_datagram(data, (ipaddress.ip_address(src[0]), src[1]), self.now(), lport)
            timer = self.s.get_timer()
            if timer is not None and timer <= self.now():
                self.s.handle_timer(self.now())
        raise AssertionError(f"no {done.__name__} within {timeout} s; events: {self.events}")


def _session(case: Case, *, local_ports: tuple[int, int], peer_port: int, initiator: bool) -> IkeV1Session:
    group = case.mm.group if case.pfs else None

    def lookup(local: TrafficSelector, remote: TrafficSelector) -> QmPolicy | None:
        if OUR_NET.contains(local) and CHARON_NET.contains(remote):
            return QmPolicy((case.qm,), group, True, OUR_NET, CHARON_NET)
        return None

    other = MmSecMethod(MmEncryption.AES192, Integrity.SHA512, 15)  # charon is not offered this one
    cfg = SessionConfig(
        local=(US, local_ports[0]),
        peer=(CHARON, peer_port),
        mm_methods=(other, case.mm) if initiator else (case.mm,),
        psk=PSK.encode(),
        local_natt_port=local_ports[1],
        peer_natt_port=4500,
        qm_lookup=lookup,
    )
    return IkeV1Session(cfg, rng=os.urandom, dh=DefaultDhProvider(os.urandom), now=0.0)


def _charon_child(peer: CharonV1Peer, child: ChildSaEstablished, case: Case) -> None:
    """``swanctl --list-sas`` shows the CHILD_SA installed with our SPIs and algorithms."""
    text = ""
    for _ in range(50):  # up to 5 s
        text = peer.swanctl("--list-sas")
        if "INSTALLED" in text:
            break
        time.sleep(0.1)
    assert re.search(
        r"c: #\d+, reqid \d+, INSTALLED, TUNNEL-in-UDP, " + re.escape(case.want_esp) + r"\s", text
    ), text
    assert case.want_ike in text, text
    m_in = re.search(r"\bin\s+([0-9a-f]{8})", text)
    m_out = re.search(r"\bout\s+([0-9a-f]{8})", text)
    assert m_in and m_out, text
    # charon's inbound SPI is our outbound one and the other way round.
    assert int(m_in.group(1), 16) == child.outbound.spi, text
    assert int(m_out.group(1), 16) == child.inbound.spi, text
    assert re.search(r"local\s+10\.2\.0\.0/24", text) and re.search(r"remote\s+10\.1\.0\.0/24", text), text


def _check_child(child: ChildSaEstablished, case: Case) -> None:
    assert child.outbound.encap is not None and child.inbound.encap is not None  # UDP-encapsulated
    assert child.outbound.tunnel is not None and child.outbound.tunnel.dst == CHARON
    assert child.pfs_group == (case.mm.group if case.pfs else None)
    assert child.local_ts == OUR_NET and child.remote_ts == CHARON_NET


def _ping_through(peer: CharonV1Peer, child: ChildSaEstablished, sock: socket.socket) -> None:
    """ESP-encapsulated ICMP echo 10.1.0.1 -> 10.2.0.1 via charon's tunnel; the reply decrypts."""
    peer.ip("route", "replace", "10.1.0.0/24", "dev", "ipsec0", "src", "10.2.0.1")
    _ping(child, sock)


def _ping(child: ChildSaEstablished, sock: socket.socket) -> None:
    """The ping of ``_ping_through`` once charon's namespace routes 10.1.0.0/24 into ipsec0."""
    assert child.outbound.tunnel is not None and child.inbound.tunnel is not None
    charon, us = str(child.outbound.tunnel.dst), str(child.inbound.tunnel.dst)
    out = make_transform(child.outbound, Direction.OUTBOUND, "python")
    inb = make_transform(child.inbound, Direction.INBOUND, "python")
    ident = os.getpid() & 0xFFFF
    for seq in range(1, 6):  # charon may need a moment before ipsec0 forwards: retry (bounded)
        packet = _icmp_echo("10.1.0.1", "10.2.0.1", ident, seq)
        outer = out.protect([packet])[0]
        assert outer is not None and child.outbound.encap is not None
        ihl = (outer[0] & 0x0F) * 4
        sock.sendto(outer[ihl + 8 :], (charon, child.outbound.encap.dport))  # the UDP payload
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            data, src = sock.recvfrom(65535)
            if data[:4] == bytes(4) or len(data) < 8:
                continue  # IKE (non-ESP marker) or keep-alive
            udp = struct.pack("!HHHH", src[1], sock.getsockname()[1], 8 + len(data), 0) + data
            plain = inb.unprotect([_ipv4(charon, us, 17, udp, 1)])[0]
            assert plain is not None, "charon's ESP reply does not decrypt with our inbound SA"
            assert plain[9] == 1 and plain[20] == 0, "not an ICMP echo reply"
            assert plain[12:16] == ipaddress.IPv4Address("10.2.0.1").packed
            return
    raise AssertionError("no ESP reply from charon")


def _icmp_echo(src: str, dst: str, ident: int, seq: int) -> bytes:
    payload = b"ipsecd-ikev1-interop"
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + _csum(icmp).to_bytes(2, "big") + icmp[4:]
    return _ipv4(src, dst, 1, icmp, seq)


def _ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return hdr[:10] + _csum(hdr).to_bytes(2, "big") + hdr[12:] + payload


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _peer(case: Case, charon_port: int) -> CharonV1Peer:
    esp = case.esp + (f"-{case.pfs}" if case.pfs else "")
    return CharonV1Peer(ike_proposal=case.ike, esp_proposal=esp, psk=PSK, charon_port=charon_port, encap=True)


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_session_initiator_with_charon(case: Case) -> None:
    peer = _peer(case, 500)
    socks: dict[int, socket.socket] = {}
    try:
        socks = {5500: peer.socket(5500), 4501: peer.socket(4501)}
        session = _session(case, local_ports=(5500, 4501), peer_port=500, initiator=True)
        drv = Driver(session, socks)
        group = case.mm.group if case.pfs else None
        session.initiate(QmPolicy((GCM256, case.qm), group, True, OUR_NET, CHARON_NET), drv.now())
        child = drv.run(ChildSaEstablished)
        assert isinstance(child, ChildSaEstablished) and child.initiator
        ike = next(e for e in drv.events if isinstance(e, IkeSaEstablished))
        assert ike.natt and ike.nat_peer  # kernel-libipsec charon pretends a NAT: UDP-encapsulated
        _check_child(child, case)
        _charon_child(peer, child, case)
        _ping_through(peer, child, socks[4501])
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        for s in socks.values():
            s.close()
        peer.close()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_session_responder_with_charon(case: Case) -> None:
    peer = _peer(case, 5500)
    socks: dict[int, socket.socket] = {}
    swanctl = None
    try:
        socks = {500: peer.socket(500), 4500: peer.socket(4500)}
        session = _session(case, local_ports=(500, 4500), peer_port=5500, initiator=False)
        drv = Driver(session, socks)
        swanctl = peer.initiate()
        child = drv.run(ChildSaEstablished)
        assert isinstance(child, ChildSaEstablished) and not child.initiator
        _check_child(child, case)
        assert child.outbound.encap is not None and child.outbound.encap.dport == 5501
        _charon_child(peer, child, case)
        _ping_through(peer, child, socks[4500])
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        if swanctl is not None:
            swanctl.terminate()
            swanctl.wait(timeout=10)
        for s in socks.values():
            s.close()
        peer.close()


def _established_with_charon(
    peer: CharonV1Peer, socks: dict[int, socket.socket]
) -> tuple[Driver, ChildSaEstablished]:
    case = CASES[1]
    session = _session(case, local_ports=(5500, 4501), peer_port=500, initiator=True)
    drv = Driver(session, socks)
    session.initiate(QmPolicy((case.qm,), case.mm.group, True, OUR_NET, CHARON_NET), drv.now())
    child = drv.run(ChildSaEstablished)
    assert isinstance(child, ChildSaEstablished)
    return drv, child


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_charon_deletes_reach_the_session() -> None:
    """charon's DELETEs (RFC 2408 section 3.15, protected Informationals) end our SAs."""
    case = CASES[1]
    peer = _peer(case, 500)
    socks: dict[int, socket.socket] = {}
    try:
        socks = {5500: peer.socket(5500), 4501: peer.socket(4501)}
        drv, child = _established_with_charon(peer, socks)
        term = peer.swanctl("--terminate", "--ike", "v1", "--timeout", "1", "--force")
        gone = drv.run(IkeSaDeleted)
        assert isinstance(gone, IkeSaDeleted) and gone.reason is DeleteReason.PEER, term
        deleted = [e for e in drv.events if isinstance(e, ChildSaDeleted)]
        assert [(e.inbound_spi, e.reason) for e in deleted] == [(child.inbound.spi, DeleteReason.PEER)]
        assert not drv.s.children and not drv.s.ike_sas
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        for s in socks.values():
            s.close()
        peer.close()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_session_close_deletes_at_charon() -> None:
    case = CASES[1]
    peer = _peer(case, 500)
    socks: dict[int, socket.socket] = {}
    try:
        socks = {5500: peer.socket(5500), 4501: peer.socket(4501)}
        drv, _ = _established_with_charon(peer, socks)
        assert "INSTALLED" in peer.swanctl("--list-sas")
        drv.s.close(drv.now())
        drv.flush()
        assert peer.wait_log("received DELETE for ESP CHILD_SA", 5.0)
        assert peer.wait_log("received DELETE for IKE_SA", 5.0)
        text = ""
        for _ in range(50):
            text = peer.swanctl("--list-sas")
            if "ESTABLISHED" not in text:
                break
            time.sleep(0.1)
        assert "ESTABLISHED" not in text and "INSTALLED" not in text, text
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        for s in socks.values():
            s.close()
        peer.close()


def _cert_peer(charon_port: int) -> tuple[CharonV1Peer, CertCredentials]:
    ca = pki.root()
    ours, theirs = pki.leaf(ca, "ipsecd", serial=100), pki.leaf(ca, "charon", serial=101)
    conf = """connections {
  v1 {
    version = 1
    local_addrs = 127.0.0.1
    remote_addrs = 127.0.0.2
    proposals = aes128-sha256-modp2048
    encap = yes
    mobike = no
    local { auth = pubkey
      certs = charon.pem
      id = "O=ipsecd test, CN=charon" }
    remote { auth = pubkey
      id = "O=ipsecd test, CN=ipsecd" }
    children { c { local_ts = 10.2.0.0/24
      remote_ts = 10.1.0.0/24
      esp_proposals = aes128-sha1
      mode = tunnel } }
  }
}
"""
    peer = CharonV1Peer(
        ike_proposal="unused",
        esp_proposal="unused",
        psk="unused",
        charon_port=charon_port,
        swanctl_conf=conf,
        files={
            "x509ca/ca.pem": ca.cert_pem(),
            "x509/charon.pem": theirs.cert_pem(),
            "private/charon.pem": theirs.key_pem(),
        },
        extra_plugins="x509 pem pkcs1 pkcs8 pubkey constraints",
    )
    cred = CertCredentials(ours.cert, ours.key, (ca.cert,), lambda: dt.datetime.now(dt.UTC))
    return peer, cred


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("we_initiate", [True, False], ids=["initiator", "responder"])
def test_certificate_authentication_with_charon(we_initiate: bool) -> None:
    """RFC 2409 section 5.1 Main Mode with RSA signatures and X.509 certificates, then Quick Mode."""
    peer, cred = _cert_peer(500 if we_initiate else 5500)
    ports = (5500, 4501) if we_initiate else (500, 4500)
    socks: dict[int, socket.socket] = {}
    swanctl = None
    try:
        socks = {p: peer.socket(p) for p in ports}
        case = Case(
            "cert", "", MmSecMethod(MmEncryption.AES128, Integrity.SHA256, 14), "", AES128_SHA1, None, "", ""
        )
        base = _session(
            case, local_ports=ports, peer_port=500 if we_initiate else 5500, initiator=we_initiate
        )
        session = IkeV1Session(
            dataclasses.replace(base.cfg, cert=cred, psk=b""),
            rng=os.urandom,
            dh=DefaultDhProvider(os.urandom),
            now=0.0,
        )
        drv = Driver(session, socks)
        if we_initiate:
            session.initiate(QmPolicy((AES128_SHA1,), None, True, OUR_NET, CHARON_NET), drv.now())
        else:
            swanctl = peer.initiate()
        child = drv.run(ChildSaEstablished)
        assert isinstance(child, ChildSaEstablished)
        assert session.ike_sas[0].peer_cert_subject == "CN=charon,O=ipsecd test"
        text = peer.swanctl("--list-sas")
        assert "ESTABLISHED" in text and "INSTALLED" in text, text
        assert peer.wait_log("authentication of 'O=ipsecd test, CN=ipsecd'", 1.0) or "CN=ipsecd" in text
        _ping_through(peer, child, socks[ports[1]])
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        if swanctl is not None:
            swanctl.terminate()
            swanctl.wait(timeout=10)
        for s in socks.values():
            s.close()
        peer.close()


def _psk_conf(case: Case, extra_conn: str = "", extra_child: str = "") -> str:
    esp = case.esp + (f"-{case.pfs}" if case.pfs else "")
    return f"""connections {{
  v1 {{
    version = 1
    local_addrs = 127.0.0.1
    remote_addrs = 127.0.0.2
    proposals = {case.ike}
    encap = yes
    mobike = no
    {extra_conn}
    local {{ auth = psk
      id = 127.0.0.1 }}
    remote {{ auth = psk
      id = 127.0.0.2 }}
    children {{ c {{ local_ts = 10.2.0.0/24
      remote_ts = 10.1.0.0/24
      esp_proposals = {esp}
      mode = tunnel
      {extra_child} }} }}
  }}
}}
secrets {{ ike-1 {{ id-1 = 127.0.0.1
  id-2 = 127.0.0.2
  secret = "{PSK}" }} }}
"""


def _drive_for(drv: Driver, seconds: float) -> None:
    """Runs the session's I/O for ``seconds`` (wall clock)."""
    with pytest.raises(AssertionError, match="no _Never"):
        drv.run(_Never, timeout=seconds)


class _Never(Event):
    pass


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("prober", ["charon", "ipsecd", "ipsecd-charon-killed"])
def test_dpd_with_charon(prober: str) -> None:
    """RFC 3706 with charon: both announce DPD; the side with the short interval probes after 1 s of
    silence and the other answers (any authenticated message counts as liveness, so only one side
    probes at a time). With two unanswered probes our session declares charon dead (killed charon)."""
    case = CASES[1]
    conf = _psk_conf(case, extra_conn="dpd_delay = " + ("1s" if prober == "charon" else "100s"))
    peer = CharonV1Peer(ike_proposal="-", esp_proposal="-", psk=PSK, swanctl_conf=conf)
    socks: dict[int, socket.socket] = {}
    try:
        socks = {5500: peer.socket(5500), 4501: peer.socket(4501)}
        base = _session(case, local_ports=(5500, 4501), peer_port=500, initiator=True)
        interval = 100.0 if prober == "charon" else 1.0
        session = IkeV1Session(
            dataclasses.replace(base.cfg, dpd_interval=interval, dpd_retries=2),
            rng=os.urandom,
            dh=DefaultDhProvider(os.urandom),
            now=0.0,
        )
        drv = Driver(session, socks)
        session.initiate(QmPolicy((case.qm,), case.mm.group, True, OUR_NET, CHARON_NET), drv.now())
        drv.run(ChildSaEstablished)
        if prober == "ipsecd-charon-killed":
            assert peer.proc is not None
            peer.proc.kill()  # no DELETE: charon just vanishes
            peer.proc.wait(timeout=10)
            dead = drv.run(PeerDead, timeout=10.0)
            assert isinstance(dead, PeerDead) and dead.unanswered == 2
            assert not session.ike_sas and not session.children
            return
        _drive_for(drv, 4.5)
        log = peer.log_text()
        assert "received DPD vendor ID" in log
        parsed = [line for line in log.splitlines() if "parsed INFORMATIONAL_V1 request" in line]
        if prober == "ipsecd":
            assert sum("[ HASH N(DPD) ]" in line for line in parsed) >= 3, log[-3000:]  # our R-U-THEREs
        else:
            assert "sending DPD request" in log
            assert sum("[ HASH N(DPD_ACK) ]" in line for line in parsed) >= 3, log[-3000:]  # our ACKs
        assert not [e for e in drv.events if isinstance(e, PeerDead)]
        assert session.ike_sas and session.children
        assert "ESTABLISHED" in peer.swanctl("--list-sas")
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        for s in socks.values():
            s.close()
        peer.close()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_quick_mode_and_main_mode_rekey_with_charon() -> None:
    """Our rekeys at 10 % of short lifetimes: a new CHILD_SA (then DELETE of the old) and a new
    ISAKMP SA (then DELETE of the old); charon ends with the new SPIs installed."""
    case = CASES[1]
    peer = _peer(case, 500)
    socks: dict[int, socket.socket] = {}
    try:
        socks = {5500: peer.socket(5500), 4501: peer.socket(4501)}
        base = _session(case, local_ports=(5500, 4501), peer_port=500, initiator=True)
        session = IkeV1Session(
            dataclasses.replace(base.cfg, rekey_fraction=0.1, mm_lifetime_s=30),
            rng=os.urandom,
            dh=DefaultDhProvider(os.urandom),
            now=0.0,
        )
        drv = Driver(session, socks)
        qm = dataclasses.replace(case.qm, lifetime_s=20)
        session.initiate(QmPolicy((qm,), case.mm.group, True, OUR_NET, CHARON_NET), drv.now())
        first = drv.run(ChildSaEstablished)
        assert isinstance(first, ChildSaEstablished)
        drv.run(ChildSaDeleted, timeout=10.0)
        new = [e for e in drv.events if isinstance(e, ChildSaEstablished)][-1]
        assert new.rekey_of == first.inbound.spi
        drv.run(IkeSaDeleted, timeout=10.0)
        ikes = [e for e in drv.events if isinstance(e, IkeSaEstablished)]
        assert len(ikes) == 2 and ikes[1].rekey
        assert len(session.ike_sas) == 1 and len(session.children) == 1
        _drive_for(drv, 0.5)
        text = peer.swanctl("--list-sas")
        assert f"in  {new.outbound.spi:08x}" in text and f"out {new.inbound.spi:08x}" in text, text
        assert f"{first.outbound.spi:08x}" not in text, text
        _ping_through(peer, new, socks[4501])
    except BaseException:
        print(peer.log_text()[-8000:])
        raise
    finally:
        for s in socks.values():
            s.close()
        peer.close()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_charon_rekeys_its_child_sa_with_our_responder() -> None:
    """charon (initiator) rekeys its CHILD_SA after 3 s with a new Quick Mode on the same ISAKMP SA;
    our responder takes it and traffic flows on the new SA. (strongSwan's IKEv1 default
    ``delete_rekeyed = no`` keeps the old SA until it expires, so no DELETE comes here.)"""
    case = CASES[1]
    conf = _psk_conf(case, extra_child="rekey_time = 3s\n      life_time = 30s\n      rand_time = 0s")
    peer = CharonV1Peer(ike_proposal="-", esp_proposal="-", psk=PSK, swanctl_conf=conf, charon_port=5500)
    socks: dict[int, socket.socket] = {}
    swanctl = None
    try:
        socks = {500: peer.socket(500), 4500: peer.socket(4500)}
        session = _session(case, local_ports=(500, 4500), peer_port=5500, initiator=False)
        drv = Driver(session, socks)
        swanctl = peer.initiate()
        first = drv.run(ChildSaEstablished)
        assert isinstance(first, ChildSaEstablished) and first.life_seconds == 30  # charon's life_time
        drv.events.remove(first)
        second = drv.run(ChildSaEstablished, timeout=10.0)
        assert isinstance(second, ChildSaEstablished) and second.inbound.spi != first.inbound.spi
        assert len(session.ike_sas) == 1 and len(session.children) == 2
        assert peer.wait_log(f"CHILD_SA c{{2}} established with SPIs {second.outbound.spi:08x}_i", 2.0)
        _ping_through(peer, second, socks[4500])
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        if swanctl is not None:
            swanctl.terminate()
            swanctl.wait(timeout=10)
        for s in socks.values():
            s.close()
        peer.close()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_session_behind_a_real_nat_with_charon(lab: netns.Lab) -> None:
    """Our initiator behind an nftables masquerade router (tests/netns.py nat_topology): NAT-D shows
    the NAT on our side, we float to 4500, send keep-alives, and ESP-in-UDP passes the NAT."""
    t = netns.nat_topology(lab)
    t.right.add_address("lo", "10.2.0.1/32")
    conf = strongswan.psk_tunnel_conf(
        local_addr="198.51.100.2",
        remote_addr="%any",
        local_id="right.test",
        remote_id="left.test",
        local_ts="10.2.0.0/24",
        remote_ts="10.1.0.0/24",
        psk=PSK,
        version=1,
        proposals="aes128-sha256-x25519",
        esp_proposals="aes128gcm16",
    )
    charon = strongswan.Charon(t.right, conf).start()
    with t.left.entered():
        socks = {p: socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for p in (500, 4500)}
    try:
        for p, s in socks.items():
            s.bind(("10.0.1.2", p))
        cfg = SessionConfig(
            local=(ipaddress.IPv4Address("10.0.1.2"), 500),
            peer=(ipaddress.IPv4Address("198.51.100.2"), 500),
            mm_methods=(MmSecMethod(MmEncryption.AES128, Integrity.SHA256, 31),),
            psk=PSK.encode(),
            local_id=IdPayload(IdType.ID_FQDN, 0, 0, b"left.test"),
            keepalive_interval=0.3,
        )
        session = IkeV1Session(cfg, rng=os.urandom, dh=DefaultDhProvider(os.urandom), now=0.0)
        drv = Driver(session, socks)
        with t.right.capture(t.outside.b_ifname, "udp") as cap:
            session.initiate(QmPolicy((GCM128,), None, True, OUR_NET, CHARON_NET), drv.now())
            child = drv.run(ChildSaEstablished)
            assert isinstance(child, ChildSaEstablished)
            ike = next(e for e in drv.events if isinstance(e, IkeSaEstablished))
            assert ike.natt and ike.nat_local  # the router rewrote our address: a real NAT
            assert session.natt_active and session.local_port == 4500
            _drive_for(drv, 1.0)  # keep-alives every 0.3 s
            t.right.run(["ip", "route", "replace", "10.1.0.0/24", "dev", "ipsec0", "src", "10.2.0.1"])
            _ping(child, socks[4500])
        assert charon.established("t", "t")
        assert f"remote 'left.test' @ {t.router_public}[4500]" in charon.list_sas()
        assert cap.count(f"ip and not host {t.router_public} and not host 198.51.100.2") == 0
        assert cap.count("udp port 4500 and udp[4:2] = 9") >= 2  # RFC 3948 section 2.3 keep-alives
        assert len([p for p in cap.packets() if len(p) > 60]) >= 4
    except BaseException:
        print(charon.log_text()[-6000:])
        raise
    finally:
        for s in socks.values():
            s.close()
