"""The sans-I/O Main Mode state machine against strongSwan charon, in both roles (root only)."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest
from strongswan_peer import CharonV1Peer, available

from ipsecd.ike.buffers import CodecError
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev1 import codec
from ipsecd.ikev1.main_mode import MainMode, MainModeConfig, Phase1Sa
from ipsecd.ikev1.payloads import IdPayload
from ipsecd.policy.model import Integrity, MmEncryption, MmSecMethod

pytestmark = pytest.mark.root
REASON = available()
PSK = "state-machine-psk"
OUR_ID = IdPayload.for_address(ipaddress.IPv4Address("127.0.0.2"))
CHARON_ID = IdPayload.for_address(ipaddress.IPv4Address("127.0.0.1"))
CASES = [
    ("aes128-sha1-modp2048", MmSecMethod(MmEncryption.AES128, Integrity.SHA1, 14)),
    ("aes256-sha256-ecp256", MmSecMethod(MmEncryption.AES256, Integrity.SHA256, 19)),
    ("3des-sha1-x25519", MmSecMethod(MmEncryption.DES3, Integrity.SHA1, 31)),
]


def _config(method: MmSecMethod) -> MainModeConfig:
    # Offer a method charon does not accept first, so the choice is exercised.
    other = MmSecMethod(MmEncryption.AES192, Integrity.SHA512, 15)
    return MainModeConfig((other, method), PSK.encode(), OUR_ID)


def _drive(mm: MainMode, sock: socket.socket, peer: tuple[str, int], first: bytes | None) -> Phase1Sa:
    """Feeds datagrams from ``sock`` into ``mm`` until it is established (bounded)."""
    if first is not None:
        sock.sendto(first, peer)
    for _ in range(30):  # each recv has the socket's timeout
        data, src = sock.recvfrom(65535)
        try:
            codec.split(data)
        except CodecError:
            continue
        step = mm.receive(data)
        if step.send is not None:
            sock.sendto(step.send, src)
        if step.failed:
            raise AssertionError(step.failed)
        if step.established is not None:
            return step.established
    raise AssertionError("Main Mode did not finish")


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize(("ike", "method"), CASES, ids=[c[0] for c in CASES])
def test_our_initiator_with_charon_responder(ike: str, method: MmSecMethod) -> None:
    peer = CharonV1Peer(ike_proposal=ike, esp_proposal="aes128-sha1", psk=PSK)
    sock = None
    try:
        sock = peer.socket(5500)
        mm = MainMode.initiator(_config(method), rng=os.urandom, dh=DefaultDhProvider(os.urandom))
        start = mm.start().send
        sa = _drive(mm, sock, ("127.0.0.1", 500), start)
        assert sa.peer_id == CHARON_ID and sa.params.group == method.group
        assert peer.wait_log("IKE_SA v1[1] established", 5.0)
    except BaseException:
        print(peer.log_text()[-5000:])
        raise
    finally:
        if sock is not None:
            sock.close()
        peer.close()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize(("ike", "method"), CASES, ids=[c[0] for c in CASES])
def test_our_responder_with_charon_initiator(ike: str, method: MmSecMethod) -> None:
    peer = CharonV1Peer(ike_proposal=ike, esp_proposal="aes128-sha1", psk=PSK, charon_port=5500)
    sock = None
    swanctl = None
    try:
        sock = peer.socket(500)
        mm = MainMode.responder(_config(method), rng=os.urandom, dh=DefaultDhProvider(os.urandom))
        swanctl = peer.initiate()
        sa = _drive(mm, sock, ("127.0.0.1", 5500), None)
        assert sa.peer_id == CHARON_ID and not sa.initiator
        assert peer.wait_log("IKE_SA v1[1] established", 5.0)
    except BaseException:
        print(peer.log_text()[-5000:])
        raise
    finally:
        if swanctl is not None:
            swanctl.terminate()
            swanctl.wait(timeout=10)
        if sock is not None:
            sock.close()
        peer.close()
