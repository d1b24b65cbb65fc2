"""Pure helpers of the daemon's IKE logging: one Oakley line per IKE message from its header, and
the IKEv1 delete reasons as event-log end reasons. No I/O."""

from __future__ import annotations

from ipsecd.ikev1 import events as v1
from ipsecd.log import events as ev

NATT_PORT = 4500  # RFC 3948 section 2.2: IKE there starts with the 4-byte non-ESP marker
HEADER_LEN = 28  # RFC 2408 section 3.1 / RFC 7296 section 3.1

# ISAKMP / IKEv2 header (RFC 2408 section 3.1, RFC 7296 section 3.1), the fields read here:
#  0                   1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |            Initiator Cookie / IKE SA Initiator's SPI (8)      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |            Responder Cookie / IKE SA Responder's SPI (8)      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                          Message ID                           |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                            Length                             |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
EXCHANGES = {  # RFC 2408 section 3.1 / RFC 2409 (IKEv1), RFC 7296 section 3.1 (IKEv2)
    (1, 2): "Main Mode",
    (1, 4): "Aggressive Mode",
    (1, 5): "Informational",
    (1, 32): "Quick Mode",
    (2, 34): "IKE_SA_INIT",
    (2, 35): "IKE_AUTH",
    (2, 36): "CREATE_CHILD_SA",
    (2, 37): "INFORMATIONAL",
}


def message_line(what: str, data: bytes, peer: str, port: int) -> tuple[str, dict[str, object]] | None:
    """("IKEv1 Main Mode sent", fields) for a datagram; None when it is too short to have a header."""
    body = data[4:] if port == NATT_PORT and data[:4] == bytes(4) else data
    if len(body) < HEADER_LEN:
        return None
    version = body[17] >> 4
    exch = EXCHANGES.get((version, body[18]), str(body[18]))
    fields: dict[str, object] = {
        "peer": peer,
        "port": port,
        "cookie": body[:8].hex(),
        "msgid": f"0x{int.from_bytes(body[20:24], 'big'):08x}",
        "length": len(body),
    }
    return f"IKEv{version} {exch} {what}", fields


def end_reason(r: v1.DeleteReason) -> ev.EndReason:
    return {
        v1.DeleteReason.LOCAL: ev.EndReason.DELETED_LOCALLY,
        v1.DeleteReason.PEER: ev.EndReason.DELETED_BY_PEER,
        v1.DeleteReason.EXPIRED: ev.EndReason.EXPIRED,
        v1.DeleteReason.REKEYED: ev.EndReason.REKEYED,
        v1.DeleteReason.PEER_DEAD: ev.EndReason.PEER_DEAD,
    }[r]
