"""Two strongSwan instances in two namespaces bring up IKEv2/IKEv1 PSK tunnels: the interop peer works."""

from __future__ import annotations

import struct

import pytest

from tests import netns, strongswan

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not strongswan.available(), reason="strongSwan (charon, swanctl) is not installed"),
]

PSK = "test-only-psk-0123456789"


def _esp_in_udp_spis(frames: list[bytes]) -> list[int]:
    """SPIs of ESP-in-UDP datagrams (RFC 3948 section 2.2: a non-zero SPI where IKE has zero)."""
    spis = []
    for f in frames:
        if f[12:14] != b"\x08\x00" or f[14 + 9] != 17:  # Ethernet + IPv4 + UDP only
            continue
        ihl = (f[14] & 0x0F) * 4
        udp = 14 + ihl
        sport, dport = struct.unpack_from("!HH", f, udp)
        spi = int.from_bytes(f[udp + 8 : udp + 12], "big")
        if 4500 in (sport, dport) and spi != 0:
            spis.append(spi)
    return spis


@pytest.mark.parametrize(
    ("version", "proposals"),
    [(2, "aes128gcm16-prfsha256-x25519"), (1, "aes128-sha256-x25519")],  # no AEAD for IKEv1 SAs
    ids=["ikev2", "ikev1"],
)
def test_two_strongswans_establish_a_psk_tunnel_and_ping_passes(
    lab: netns.Lab, version: int, proposals: str
) -> None:
    p = netns.two_hosts(lab)
    # kernel-libipsec needs an address inside local_ts on each host.
    p.a.add_address("lo", "10.1.0.1/32")
    p.b.add_address("lo", "10.2.0.1/32")
    conf_a = strongswan.psk_tunnel_conf(
        local_addr="192.0.2.1",
        remote_addr="192.0.2.2",
        local_id="a.test",
        remote_id="b.test",
        local_ts="10.1.0.0/24",
        remote_ts="10.2.0.0/24",
        psk=PSK,
        version=version,
        proposals=proposals,
    )
    conf_b = strongswan.psk_tunnel_conf(
        local_addr="192.0.2.2",
        remote_addr="192.0.2.1",
        local_id="b.test",
        remote_id="a.test",
        local_ts="10.2.0.0/24",
        remote_ts="10.1.0.0/24",
        psk=PSK,
        version=version,
        proposals=proposals,
    )
    a = strongswan.Charon(p.a, conf_a).start()
    b = strongswan.Charon(p.b, conf_b).start()
    # Before the tunnel, the inner networks are unreachable.
    assert p.a.ping("10.2.0.1", count=1, wait=0.3, src="10.1.0.1").received == 0

    out = a.initiate("t")
    assert "initiate completed successfully" in out and "CHILD_SA t{1} established" in out, out
    assert a.established("t", "t") and b.established("t", "t"), a.list_sas() + b.list_sas()
    sas = a.list_sas()
    assert f"IKEv{version}" in sas and "TUNNEL-in-UDP" in sas and "ESP:AES_GCM_16-128" in sas, sas

    with p.b.capture(p.link.b_ifname, "ip") as cap:
        r = p.a.ping("10.2.0.1", count=3, interval=0.1, src="10.1.0.1")
    assert r.received == 3, r.output + a.log_text()[-3000:]
    # On the wire between the peers: only UDP 4500, carrying ESP (no cleartext ICMP, no raw ESP).
    assert cap.count("ip and not udp port 4500") == 0, cap.lines()
    assert cap.count("icmp") == 0 and cap.count("ip proto 50") == 0
    spis = _esp_in_udp_spis(cap.packets())
    assert len(spis) >= 6 and len(set(spis)) == 2, spis  # 3 requests + 3 replies, one SPI per direction

    a.terminate("t")
    wait = netns.wait_until
    wait(lambda: not b.established("t"), 5, 0.1, "the responder to delete its IKE_SA")


def test_strongswan_initiator_behind_a_nat_router(lab: netns.Lab) -> None:
    t = netns.nat_topology(lab)
    t.left.add_address("lo", "10.1.0.1/32")
    t.right.add_address("lo", "10.2.0.1/32")
    left = strongswan.Charon(
        t.left,
        strongswan.psk_tunnel_conf(
            local_addr="10.0.1.2",
            remote_addr="198.51.100.2",
            local_id="left.test",
            remote_id="right.test",
            local_ts="10.1.0.0/24",
            remote_ts="10.2.0.0/24",
            psk=PSK,
        ),
    ).start()
    right = strongswan.Charon(
        t.right,
        strongswan.psk_tunnel_conf(
            local_addr="198.51.100.2",
            remote_addr="%any",
            local_id="right.test",
            remote_id="left.test",
            local_ts="10.2.0.0/24",
            remote_ts="10.1.0.0/24",
            psk=PSK,
        ),
    ).start()
    with t.right.capture(t.outside.b_ifname, "ip") as cap:
        left.initiate("t")
        r = t.left.ping("10.2.0.1", count=2, interval=0.1, src="10.1.0.1")
    assert r.received == 2, r.output
    assert right.established("t", "t")
    assert f"remote 'left.test' @ {t.router_public}[4500]" in right.list_sas()
    # The responder only ever sees the router's address: IKE on 500 then 4500, ESP in UDP 4500.
    assert cap.count(f"ip and not host {t.router_public}") == 0
    assert cap.count("udp port 500") >= 2 and cap.count("ip and not udp port 500 and not udp port 4500") == 0
    assert len(_esp_in_udp_spis(cap.packets())) >= 4
