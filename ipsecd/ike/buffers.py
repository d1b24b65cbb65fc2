"""Bounds-checked byte reader and writer for the IKE codecs.

Every read checks the length first: a short or inconsistent buffer raises ``CodecError`` (a
``ValueError``), never ``IndexError`` or ``struct.error``. The writer checks that each integer fits
its field, so an encoder never emits a silently truncated length.
"""

from __future__ import annotations


class CodecError(ValueError):
    """A malformed or inconsistent message: the one error type the IKE codecs raise."""


class Reader:
    """Reads big-endian fields from ``data[start:end]``; never reads past ``end``."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        stop = len(data) if end is None else end
        if not 0 <= start <= stop <= len(data):
            raise CodecError(f"bad window [{start}:{end}] over {len(data)} bytes")
        self._data = bytes(data)
        self._pos = start
        self._end = stop

    @property
    def offset(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _need(self, n: int, what: str) -> None:
        if n < 0:
            raise CodecError(f"{what}: negative length {n}")
        if n > self._end - self._pos:
            raise CodecError(f"{what}: need {n} bytes, {self._end - self._pos} left")

    def u8(self, what: str = "u8") -> int:
        self._need(1, what)
        v = self._data[self._pos]
        self._pos += 1
        return v

    def u16(self, what: str = "u16") -> int:
        self._need(2, what)
        v = int.from_bytes(self._data[self._pos : self._pos + 2], "big")
        self._pos += 2
        return v

    def u32(self, what: str = "u32") -> int:
        self._need(4, what)
        v = int.from_bytes(self._data[self._pos : self._pos + 4], "big")
        self._pos += 4
        return v

    def take(self, n: int, what: str = "bytes") -> bytes:
        self._need(n, what)
        v = self._data[self._pos : self._pos + n]
        self._pos += n
        return v

    def rest(self) -> bytes:
        v = self._data[self._pos : self._end]
        self._pos = self._end
        return v

    def sub(self, n: int, what: str = "sub-buffer") -> Reader:
        """A reader over the next ``n`` bytes; this reader skips past them."""
        self._need(n, what)
        r = Reader(self._data, self._pos, self._pos + n)
        self._pos += n
        return r

    def expect_end(self, what: str = "buffer") -> None:
        if self._pos != self._end:
            raise CodecError(f"{what}: {self._end - self._pos} unexpected trailing bytes")


class Writer:
    """Appends big-endian fields; each value is range-checked against its field width."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    @staticmethod
    def _check(v: int, bits: int, what: str) -> None:
        if not 0 <= v < (1 << bits):
            raise CodecError(f"{what}: {v} does not fit in {bits} bits")

    def u8(self, v: int, what: str = "u8") -> Writer:
        self._check(v, 8, what)
        self._buf.append(v)
        return self

    def u16(self, v: int, what: str = "u16") -> Writer:
        self._check(v, 16, what)
        self._buf += v.to_bytes(2, "big")
        return self

    def u32(self, v: int, what: str = "u32") -> Writer:
        self._check(v, 32, what)
        self._buf += v.to_bytes(4, "big")
        return self

    def put(self, data: bytes) -> Writer:
        self._buf += data
        return self

    def patch_u16(self, at: int, v: int, what: str = "length") -> None:
        """Overwrite a 16-bit field written earlier (a length known only at the end)."""
        self._check(v, 16, what)
        if not 0 <= at <= len(self._buf) - 2:
            raise CodecError(f"{what}: patch offset {at} out of range")
        self._buf[at : at + 2] = v.to_bytes(2, "big")

    def getvalue(self) -> bytes:
        return bytes(self._buf)
