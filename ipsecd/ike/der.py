"""A minimal DER reader and writer (ITU-T X.690) for the few structures IKE handles itself.

Only definite lengths, single-byte tags (tag numbers below 31) and lengths up to 4 bytes: what
AlgorithmIdentifiers (RFC 7427), ECDSA signature values and certificate names need. Every reader
raises ``DerError`` (a ValueError) on malformed input and never reads past its buffer.

A TLV::

    +-----+--------------------------+-------------------+
    | tag | length (1, or 0x8n + n)  | value (length B)  |
    +-----+--------------------------+-------------------+
"""

from __future__ import annotations

SEQUENCE = 0x30
INTEGER = 0x02
NULL = 0x05
OID = 0x06


class DerError(ValueError):
    """Malformed DER."""


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """The TLV at ``pos``: (tag, value, position after it)."""
    if pos + 2 > len(data):
        raise DerError("truncated DER header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tags are not supported")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        count = n & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("bad DER length")
        n = int.from_bytes(data[pos : pos + count], "big")
        if n < 0x80 or data[pos] == 0:
            raise DerError("non-minimal DER length")
        pos += count
    if pos + n > len(data):
        raise DerError("DER value runs past its buffer")
    return tag, data[pos : pos + n], pos + n


def read_one(data: bytes, tag: int) -> bytes:
    """The value of the only TLV of ``data``, which must carry ``tag``."""
    t, value, end = read_tlv(data)
    if t != tag or end != len(data):
        raise DerError(f"expected a single DER element of tag 0x{tag:02x}")
    return value


def children(value: bytes) -> list[tuple[int, bytes, bytes]]:
    """The elements of a constructed value: (tag, value, whole encoding)."""
    out = []
    pos = 0
    while pos < len(value):
        tag, inner, end = read_tlv(value, pos)
        out.append((tag, inner, value[pos:end]))
        pos = end
        if len(out) > 4096:
            raise DerError("too many DER elements")
    return out


def encode(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + value


def encode_oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER TLV from its dotted form (X.690 section 8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"bad OID {dotted!r}")
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return encode(OID, bytes(body))


def decode_oid(value: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's value (without its tag and length)."""
    if not value or value[-1] & 0x80:
        raise DerError("bad OID encoding")
    arcs: list[int] = []
    acc = 0
    for b in value:
        if acc == 0 and b == 0x80:
            raise DerError("non-minimal OID arc")
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(acc)
            acc = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def encode_uint(n: int) -> bytes:
    """A non-negative INTEGER TLV."""
    if n < 0:
        raise ValueError("negative INTEGER")
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")  # always room for a leading 0 bit
    return encode(INTEGER, body)


def decode_uint(value: bytes) -> int:
    if not value or value[0] & 0x80:
        raise DerError("INTEGER is empty or negative")
    if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
        raise DerError("non-minimal INTEGER")
    return int.from_bytes(value, "big")


def certificate_subject(cert_der: bytes) -> bytes:
    """The DER subject Name exactly as encoded in a certificate (RFC 5280 section 4.1)."""
    tbs = children(read_one(cert_der, SEQUENCE))[0]
    if tbs[0] != SEQUENCE:
        raise DerError("certificate without a TBSCertificate")
    fields = children(tbs[1])
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[4][0] != SEQUENCE:
        raise DerError("TBSCertificate without a subject")
    return fields[4][2]


def name_values(name_der: bytes) -> list[tuple[str, str]]:
    """(OID, text) of each attribute of a DER Name (RFC 5280 section 4.1.2.4), string types ignored.

    Peers re-encode a configured DN (PrintableString for UTF8String and the like), so identities
    given as ID_DER_ASN1_DN are compared by these values when the octets differ.
    """
    out: list[tuple[str, str]] = []
    for rtag, rdn, _ in children(read_one(name_der, 0x30)):
        if rtag != 0x31:
            raise DerError("DN: RDN is not a SET")
        for atag, atv, _ in children(rdn):
            parts = children(atv)
            if atag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                raise DerError("DN: malformed attribute")
            out.append((decode_oid(parts[0][1]), parts[1][1].decode("utf-8", "replace")))
            if len(out) > 64:
                raise DerError("DN: too many attributes")
    return out
