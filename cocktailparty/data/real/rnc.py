"""Rob Northen ProPack (RNC) method 1 decompression, as used inside Beneath a Steel Sky's
sky.dsk (see :func:`.archives.find_sky`). Written from the format's description:

- an 18-byte header, big-endian: ``RNC``, the method (1), the unpacked and packed sizes
  (uint32 each), the CRC-16 of the unpacked and of the packed data (uint16 each), a leeway
  byte and the number of chunks;
- then one stream in which a bit stream (16-bit little-endian words, read from their lowest
  bit up, a word fetched only when its first bit is needed) is interleaved with literal
  bytes (read from wherever the input stands when they are due). Its first two bits are
  unused; its last word may be cut short by the packed size (the missing bytes are zero). Each chunk holds three Huffman tables (literal run lengths, match distances,
  match lengths: a 5-bit count of codes, then a 4-bit code length per symbol; canonical
  codes, shortest first, sent first bit first), a 16-bit count of steps, and the steps: a
  literal run (its length from the first table, then that many bytes), then, unless it is
  the chunk's last step, a match (distance - 1 and length - 2 from the other two tables)
  copied from the output already written. A symbol ``s`` of 2 or more stands for the value
  ``2**(s-1)`` plus ``s-1`` more bits; 0 and 1 stand for themselves.

The CRC is CRC-16/ARC (reflected polynomial 0xA001, starting at 0).
"""

from __future__ import annotations

import struct

RNC_HEADER = 18


class RncError(ValueError):
    """A stream that is not RNC method 1 data, is cut short, or fails its CRC."""


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/ARC of ``data`` (RNC's checksum)."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC[(crc ^ byte) & 0xFF]
    return crc


class _Bits:
    """The interleaved reader: bits from 16-bit little-endian words fetched on demand, and
    bytes from the current input position."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos
        self.word, self.left = 0, 0  # the current word's unread bits (lowest first) and their count

    def _fetch(self) -> int:
        # The stream's last word may lack its (zero) bytes: the packed size ends with the data.
        if self.pos > len(self.data):
            raise RncError("RNC stream cut short")
        value = int.from_bytes(self.data[self.pos:self.pos + 2].ljust(2, b"\0"), "little")
        self.pos += 2
        return value

    def bits(self, count: int) -> int:
        value, have = 0, 0
        while have < count:
            if not self.left:
                self.word, self.left = self._fetch(), 16
            take = min(count - have, self.left)
            value |= (self.word & ((1 << take) - 1)) << have
            self.word >>= take
            self.left -= take
            have += take
        return value

    def raw(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise RncError("RNC stream cut short")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def table(self) -> dict[tuple[int, int], int]:
        """A Huffman table: (code length, code) -> symbol."""
        lengths = [self.bits(4) for _ in range(self.bits(5))]
        codes, code = {}, 0
        for length in range(1, 17):
            for symbol, bits in enumerate(lengths):
                if bits == length:
                    codes[(length, code >> (16 - length))] = symbol
                    code += 1 << (16 - length)
        return codes

    def value(self, codes: dict[tuple[int, int], int]) -> int:
        code = 0
        for length in range(1, 17):
            code = code << 1 | self.bits(1)
            symbol = codes.get((length, code))
            if symbol is not None:
                return symbol if symbol < 2 else (1 << (symbol - 1)) | self.bits(symbol - 1)
        raise RncError("RNC stream holds a code that its table does not")


def rnc_sizes(data: bytes) -> tuple[int, int]:
    """(unpacked, packed) sizes of an RNC method 1 stream, from its header."""
    if len(data) < RNC_HEADER or data[:4] != b"RNC\x01":
        raise RncError("not an RNC method 1 stream")
    return struct.unpack(">II", data[4:12])


def rnc_unpack(data: bytes) -> bytes:
    """The unpacked bytes of an RNC method 1 stream (checked against both CRCs)."""
    unpacked, packed = rnc_sizes(data)
    crc_unpacked, crc_packed, _leeway, chunks = struct.unpack(">HHBB", data[12:RNC_HEADER])
    body = data[RNC_HEADER:RNC_HEADER + packed]
    if len(body) < packed:
        raise RncError("RNC stream cut short")
    if crc16(body) != crc_packed:
        raise RncError("RNC packed data fails its CRC")
    stream = _Bits(data[:RNC_HEADER + packed], RNC_HEADER)
    out = bytearray()
    stream.bits(2)
    for _ in range(chunks):
        literals, distances, lengths = stream.table(), stream.table(), stream.table()
        steps = stream.bits(16)
        for step in range(steps):
            run = stream.value(literals)
            if run:
                out += stream.raw(run)
            if step < steps - 1:
                distance = stream.value(distances) + 1
                length = stream.value(lengths) + 2
                if distance > len(out):
                    raise RncError("RNC match reaches before the start of the output")
                start = len(out) - distance
                if distance >= length:
                    out += out[start:start + length]
                else:  # overlapping: the copy repeats what it has just written
                    for i in range(length):
                        out.append(out[start + i])
    if len(out) != unpacked or crc16(bytes(out)) != crc_unpacked:
        raise RncError("RNC unpacked data fails its size or CRC")
    return bytes(out)
