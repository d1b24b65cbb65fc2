"""ipsecd.ikev2.Session behind a real NAPT router (nftables masquerade) initiating to strongSwan:
NAT detection from the hashes (RFC 7296 section 2.23), the move to port 4500, UDP-encapsulated ESP
whose replies come back through the router's mapping. Root only (network namespaces)."""

from __future__ import annotations

import os
import socket
import time

import pytest
from test_ikev2_interop_strongswan import Driver, _config, _echo_request, _ipv4

from ipsecd.datapath.factory import make_transform
from ipsecd.datapath.sa import Direction
from ipsecd.ike.dh import DefaultDhProvider
from ipsecd.ikev2.events import ChildSaEstablished, IkeSaEstablished
from ipsecd.ikev2.payloads import Identity
from ipsecd.ikev2.session import Session
from tests import netns, strongswan

pytestmark = pytest.mark.root
PSK = "ikev2-interop-psk"


@pytest.mark.skipif(not strongswan.available(), reason="strongSwan not installed")
def test_session_behind_a_nat_router(lab: netns.Lab) -> None:
    t = netns.nat_topology(lab)
    t.right.add_address("lo", "10.2.0.1/32")
    charon = strongswan.Charon(
        t.right,
        strongswan.psk_tunnel_conf(
            local_addr="198.51.100.2",
            remote_addr="%any",
            local_id="127.0.0.1",
            remote_id="127.0.0.2",
            local_ts="10.2.0.0/24",
            remote_ts="10.1.0.0/24",
            psk=PSK,
            name="v2",
            proposals="aes128gcm16-prfsha256-x25519",
            esp_proposals="aes128gcm16",
        ),
    ).start()
    with t.left.entered():
        ike_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        natt_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ike_sock.bind(("10.0.1.2", 500))
        natt_sock.bind(("10.0.1.2", 4500))
        drv = Driver(ike_sock, natt_sock)
        cfg = _config("aes128gcm16-prfsha256-x25519", "aes128gcm16", False, rekey=False)
        drv.session = Session.initiate(
            cfg,
            local=("10.0.1.2", 500),
            remote=("198.51.100.2", 500),
            now=time.monotonic(),
            rng=os.urandom,
            dh=DefaultDhProvider(os.urandom),
        )
        drv.run(lambda: drv.count(ChildSaEstablished) == 1, 10, "IKE_SA and CHILD_SA through the NAT")
        s = drv.session
        assert s.behind_nat and s.natt and s.remote == ("198.51.100.2", 4500)
        est = next(e for e in drv.events if isinstance(e, IkeSaEstablished))
        assert est.natt and est.peer_id == Identity.address("127.0.0.1")
        assert f"remote '127.0.0.2' @ {t.router_public}[4500]" in charon.list_sas()
        assert charon.established("v2", "v2")

        child = next(e for e in drv.events if isinstance(e, ChildSaEstablished))
        assert child.outbound.encap is not None and child.outbound.encap.sport == 4500
        out = make_transform(child.outbound, Direction.OUTBOUND, "python")
        inb = make_transform(child.inbound, Direction.INBOUND, "python")
        for seq in (1, 2):
            prot = out.protect([_echo_request(seq)])[0]
            assert prot is not None
            natt_sock.sendto(prot[28:], s.remote)
        drv.run(lambda: len(drv.esp) >= 2, 5, "ESP replies through the NAT")
        for data in drv.esp:
            udp = (4500).to_bytes(2, "big") * 2 + (8 + len(data)).to_bytes(2, "big") + bytes(2)
            inner = inb.unprotect([_ipv4("198.51.100.2", "10.0.1.2", 17, udp + data)])[0]
            assert inner is not None and inner[20] == 0  # ICMP echo reply
    except BaseException:
        print(charon.log_text()[-6000:])
        raise
    finally:
        ike_sock.close()
        natt_sock.close()
