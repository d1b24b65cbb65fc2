"""Mutation fuzzing of the ISAKMP decoder: valid messages are bit-flipped, truncated, extended and
spliced; the decoder must return a Message or raise CodecError, never anything else. Bounded in
examples (and each example is a single decode of at most a few KB). IPSECD_FUZZ_EXAMPLES raises the
count for a longer run, e.g. IPSECD_FUZZ_EXAMPLES=20000."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikev1_strategies import messages

from ipsecd.ike.buffers import CodecError
from ipsecd.ikev1 import codec
from ipsecd.ikev1.codec import Message

EXAMPLES = int(os.environ.get("IPSECD_FUZZ_EXAMPLES", "250"))


def _decode_all_ways(data: bytes) -> None:
    """Every decoder entry point: only a Message or a CodecError may come out."""
    try:
        msg = codec.decode(data)
        assert isinstance(msg, Message)
        # A successfully decoded message re-encodes and decodes to itself.
        assert codec.decode(codec.encode(msg)) == msg
    except CodecError:
        pass
    try:
        header, body = codec.split(data)
        assert isinstance(codec.decode_body(header, body, padded=True), Message)
    except CodecError:
        pass


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    wire = bytearray(codec.encode(draw(messages)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set_byte", "fix_length"]))
        if op == "flip" and wire:
            i = draw(st.integers(0, len(wire) - 1))
            wire[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del wire[draw(st.integers(0, len(wire))) :]
        elif op == "insert":
            i = draw(st.integers(0, len(wire)))
            wire[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and wire:
            i = draw(st.integers(0, len(wire) - 1))
            del wire[i : i + draw(st.integers(1, 8))]
        elif op == "set_byte" and wire:
            wire[draw(st.integers(0, len(wire) - 1))] = draw(st.sampled_from([0, 1, 3, 4, 0x7F, 0x80, 0xFF]))
        elif op == "fix_length" and len(wire) >= 28:
            # Keep the header length consistent so the mutation reaches the payload decoders.
            wire[24:28] = len(wire).to_bytes(4, "big")
    return bytes(wire)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_only_raise_codec_error(data: bytes) -> None:
    _decode_all_ways(data)


@settings(max_examples=max(100, EXAMPLES // 4), deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_codec_error(data: bytes) -> None:
    _decode_all_ways(data)
    if len(data) >= 28:
        _decode_all_ways(data[:24] + len(data).to_bytes(4, "big") + data[28:])
