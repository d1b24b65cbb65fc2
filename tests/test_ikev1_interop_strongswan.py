"""Interop: this test plays an IKEv1 initiator by hand with ipsecd's codec, DH, crypto and proposal
modules against a real strongSwan charon responder (Main Mode PSK, then Quick Mode). charon
decrypting message 5 and checking HASH_I, our checking its HASH_R and HASH(2), and charon
establishing the CHILD_SA after our HASH(3) validate the RFC 2409 derivations, IV chains and the
ISAKMP encoding against an independent implementation. NAT traversal (RFC 3947) is negotiated with a
deliberately wrong local NAT-D, because charon's kernel-libipsec only installs UDP-encapsulated SAs;
from message 5 on, both sides use the NAT-T port with the non-ESP marker (RFC 3948 section 2.2).
Root only (network namespace)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket

import pytest
from strongswan_peer import CharonV1Peer, available

from ipsecd.ike import crypto
from ipsecd.ike.buffers import CodecError
from ipsecd.ike.constants import (
    AuthMethod,
    EncapsulationMode,
    ExchangeType,
    NotifyType,
    ProtocolId,
)
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ike.proposals import match_qm, mm_sa_payload, parse_mm_transform, qm_sa_payload
from ipsecd.ikev1 import codec
from ipsecd.ikev1.codec import Header, Message
from ipsecd.ikev1.payloads import (
    HashPayload,
    IdPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    VendorIdPayload,
)
from ipsecd.ikev1.sa import SaPayload
from ipsecd.policy.model import EspEncryption, Integrity, MmEncryption, MmSecMethod, QmSecMethod

pytestmark = pytest.mark.root
REASON = available()
PEER = ("127.0.0.1", 500)
PEER_NATT = ("127.0.0.1", 4500)
PSK = "interop-test-psk"
RFC3947_VID = hashlib.md5(b"RFC 3947").digest()  # RFC 3947 section 3.1
NON_ESP_MARKER = bytes(4)

CASES = [
    ("aes128-sha1-modp2048", MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 14), False),
    ("3des-md5-modp1024", MmSecMethod(MmEncryption.DES3, Integrity.MD5, 2), False),
    ("aes256-sha256-ecp256", MmSecMethod(MmEncryption.AES256, Integrity.SHA256, 19), True),
    ("aes192-sha384-x25519", MmSecMethod(MmEncryption.AES192, Integrity.SHA384, 31), False),
    ("aes256-sha512-ecp384", MmSecMethod(MmEncryption.AES256, Integrity.SHA512, 20), False),
]


class Initiator:
    def __init__(self, sock: socket.socket, natt_sock: socket.socket) -> None:
        self.sock = sock
        self.natt_sock = natt_sock
        self.natt = False
        self.cky_i = os.urandom(8)
        self.cky_r = bytes(8)

    def send(self, data: bytes) -> None:
        if self.natt:
            self.natt_sock.sendto(NON_ESP_MARKER + data, PEER_NATT)
        else:
            self.sock.sendto(data, PEER)

    def recv(self, exchange: int, message_id: int) -> tuple[Header, bytes]:
        for _ in range(20):  # bounded: the socket has a timeout, retransmits are skipped
            if self.natt:
                data, _ = self.natt_sock.recvfrom(65535)
                if data[:4] != NON_ESP_MARKER:
                    continue
                data = data[4:]
            else:
                data, _ = self.sock.recvfrom(65535)
            try:
                h, body = codec.split(data)
            except CodecError:
                continue
            if h.icookie == self.cky_i and h.exchange_type == exchange and h.message_id == message_id:
                return h, body
        raise AssertionError("no reply")


def _only(msg: Message, cls: type[Payload]) -> Payload:
    found = msg.find(cls)
    assert len(found) == 1, (cls, msg.payloads)
    return found[0]


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize(("ike", "method", "pfs"), CASES, ids=[c[0] for c in CASES])
def test_main_mode_and_quick_mode_against_charon(ike: str, method: MmSecMethod, pfs: bool) -> None:
    peer = CharonV1Peer(ike_proposal=ike, esp_proposal="aes128-sha1", psk=PSK, pfs=pfs)
    socks: list[socket.socket] = []
    try:
        socks += [peer.socket(5500), peer.socket(4501)]
        _exchange(Initiator(*socks), peer, method, pfs)
    except BaseException:
        print(peer.log_text()[-6000:])
        raise
    finally:
        for s in socks:
            s.close()
        peer.close()


def _exchange(ini: Initiator, peer: CharonV1Peer, method: MmSecMethod, pfs: bool) -> None:
    mm = ExchangeType.IDENTITY_PROTECTION
    # Message 1 / 2: SA.
    sa_i = mm_sa_payload([method], [AuthMethod.PRE_SHARED_KEY], 28800)
    _, sa_wire = codec.encode_payloads([sa_i])
    sai_b = sa_wire[4:]
    ini.send(codec.encode(Message(Header(ini.cky_i, bytes(8), mm), (sa_i, VendorIdPayload(RFC3947_VID)))))
    h2, body2 = ini.recv(mm, 0)
    ini.cky_r = h2.rcookie
    msg2 = codec.decode_body(h2, body2, padded=False)
    sa_r = _only(msg2, SaPayload)
    assert isinstance(sa_r, SaPayload)
    params = parse_mm_transform(sa_r.proposals[0].transforms[0])
    assert params.group == method.group
    assert VendorIdPayload(RFC3947_VID) in msg2.payloads
    alg, group = params.hash, params.group
    cipher = crypto.cbc_cipher(params.encryption, params.key_bits)

    # Message 3 / 4: KE, Nonce.
    dh = DefaultDhProvider(os.urandom).generate(group)
    ni = os.urandom(20)
    hdr = Header(ini.cky_i, ini.cky_r, mm)

    # RFC 3947 section 3.2: HASH(CKY-I | CKY-R | IP | Port), the peer's address first, then ours;
    # ours is hashed with a wrong port so that charon sees us behind a NAT.
    def nat_d(ip: str, port: int) -> NatDPayload:
        return NatDPayload(
            crypto.hash_(
                alg, ini.cky_i + ini.cky_r + ipaddress.IPv4Address(ip).packed + port.to_bytes(2, "big")
            )
        )

    natd = (nat_d(PEER[0], PEER[1]), nat_d("127.0.0.2", 1))
    ini.send(codec.encode(Message(hdr, (KePayload(dh.public_value()), NoncePayload(ni), *natd))))
    h4, body4 = ini.recv(mm, 0)
    msg4 = codec.decode_body(h4, body4, padded=False)
    ke_r, n_r = _only(msg4, KePayload), _only(msg4, NoncePayload)
    assert len(msg4.find(NatDPayload)) == 2
    ini.natt = True  # RFC 3947 section 4: message 5 goes to the NAT-T port
    assert isinstance(ke_r, KePayload) and isinstance(n_r, NoncePayload)
    gxi, gxr, nr = dh.public_value(), ke_r.data, n_r.data
    skeyid = crypto.skeyid_psk(alg, PSK.encode(), ni, nr)
    keys = crypto.derive_phase1(alg, skeyid, dh.shared_secret(gxr), ini.cky_i, ini.cky_r, cipher.key_size)

    # Message 5: IDii, HASH_I (encrypted, first Phase 1 IV).
    idii = IdPayload.for_address(ipaddress.IPv4Address("127.0.0.2"))
    _, idii_wire = codec.encode_payloads([idii])
    hash_i = crypto.hash_i(alg, skeyid, gxi, gxr, ini.cky_i, ini.cky_r, sai_b, idii_wire[4:])
    first, body = codec.encode_payloads([idii, HashPayload(hash_i)])
    ct, iv = crypto.cbc_encrypt(
        cipher, keys.enc_key, crypto.phase1_iv(alg, gxi, gxr, cipher.block_size), body
    )
    ini.send(codec.encode_encrypted(hdr, first, ct))

    # Message 6: IDir, HASH_R.
    h6, ct6 = ini.recv(mm, 0)
    assert h6.encrypted
    pt6, iv = crypto.cbc_decrypt(cipher, keys.enc_key, iv, ct6)
    msg6 = codec.decode_body(h6, pt6)
    idir_i = msg6.payloads.index(_only(msg6, IdPayload))
    got_hash_r = _only(msg6, HashPayload)
    assert isinstance(got_hash_r, HashPayload)
    want = crypto.hash_r(alg, skeyid, gxr, gxi, ini.cky_r, ini.cky_i, sai_b, msg6.raw_payloads[idir_i][4:])
    assert hmac.compare_digest(want, got_hash_r.data), "HASH_R from charon does not verify"
    last_p1 = iv

    # Quick Mode 1: HASH(1), SA, Ni, [KE], IDci, IDcr.
    mid = int.from_bytes(os.urandom(4), "big") | 1
    qm_method = QmSecMethod(esp_enc=EspEncryption.AES128, esp_auth=Integrity.SHA1)
    spi_i = os.urandom(4)
    qm_dh = DefaultDhProvider(os.urandom).generate(14) if pfs else None
    qm_sa = qm_sa_payload(
        [qm_method],
        {ProtocolId.PROTO_IPSEC_ESP: spi_i},
        EncapsulationMode.UDP_ENCAPSULATED_TUNNEL,
        14 if pfs else None,
    )
    ni2 = os.urandom(16)
    rest: list[Payload] = [qm_sa, NoncePayload(ni2)]
    if qm_dh is not None:
        rest.append(KePayload(qm_dh.public_value()))
    rest += [
        IdPayload.for_network(ipaddress.IPv4Network("10.1.0.0/24")),
        IdPayload.for_network(ipaddress.IPv4Network("10.2.0.0/24")),
    ]
    _, rest_b = codec.encode_payloads(rest)
    first, body = codec.encode_payloads(
        [HashPayload(crypto.qm_hash1(alg, keys.skeyid_a, mid, rest_b)), *rest]
    )
    qhdr = Header(ini.cky_i, ini.cky_r, ExchangeType.QUICK_MODE, message_id=mid)
    ct, iv = crypto.cbc_encrypt(
        cipher, keys.enc_key, crypto.phase2_iv(alg, last_p1, mid, cipher.block_size), body
    )
    ini.send(codec.encode_encrypted(qhdr, first, ct))

    # Quick Mode 2: verify HASH(2), match the SA against our method.
    hq2, ctq2 = ini.recv(ExchangeType.QUICK_MODE, mid)
    ptq2, iv = crypto.cbc_decrypt(cipher, keys.enc_key, iv, ctq2)
    qm2 = codec.decode_body(hq2, ptq2)
    assert isinstance(qm2.payloads[0], HashPayload)
    want2 = crypto.qm_hash2(alg, keys.skeyid_a, mid, ni2, b"".join(qm2.raw_payloads[1:]))
    assert hmac.compare_digest(want2, qm2.payloads[0].data), "HASH(2) from charon does not verify"
    sa2 = _only(qm2, SaPayload)
    assert isinstance(sa2, SaPayload)
    choice = match_qm(sa2, [qm_method], EncapsulationMode.UDP_ENCAPSULATED_TUNNEL, 14 if pfs else None)
    assert choice is not None and len(choice.params[0].peer_spi) == 4
    nr2 = _only(qm2, NoncePayload)
    assert isinstance(nr2, NoncePayload)
    notifies = [p.notify_type for p in qm2.find(NotifyPayload) if isinstance(p, NotifyPayload)]
    assert all(n == NotifyType.RESPONDER_LIFETIME for n in notifies)
    if qm_dh is not None:
        ke2 = _only(qm2, KePayload)
        assert isinstance(ke2, KePayload)
        gqm = qm_dh.shared_secret(ke2.data)
        keymat = crypto.keymat(alg, keys.skeyid_d, 3, spi_i, ni2, nr2.data, 36, gqm)
        assert len(keymat) == 36

    # Quick Mode 3: HASH(3); charon then installs the CHILD_SA.
    h3 = crypto.qm_hash3(alg, keys.skeyid_a, mid, ni2, nr2.data)
    first, body = codec.encode_payloads([HashPayload(h3)])
    ct3, _ = crypto.cbc_encrypt(cipher, keys.enc_key, iv, body)
    ini.send(codec.encode_encrypted(qhdr, first, ct3))
    assert peer.wait_log("CHILD_SA c{1} established", 10.0), "charon did not establish the CHILD_SA"
