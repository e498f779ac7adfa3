"""The framing of the GDB remote serial protocol: `$payload#cs` packets with a
modulo-256 checksum, `+`/`-` acknowledgements, the out-of-band interrupt byte
0x03, run-length encoding and the escaping of binary data.

Nothing here knows about sockets or commands: `PacketReader` turns a byte
stream, fed in whatever pieces the network delivers, into typed events.
"""
from __future__ import annotations

from dataclasses import dataclass

INTERRUPT = 0x03
ESCAPE = 0x7D                 # '}': the next byte is XORed with 0x20
RLE_MARK = 0x2A               # '*': repeat the previous character
MUST_ESCAPE = frozenset(b"#$}*")
# A run of N extra repeats is sent as the character N + 29; these counts would
# produce '#', '$' (framing, which gdb forbids), '+', '-' (acks) or '*' (a
# second mark): shorter runs are sent instead.
RLE_FORBIDDEN_COUNTS = frozenset(c - 29 for c in b"#$+-*")
RLE_MAX_COUNT = 126 - 29      # the count character must stay printable
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
MAX_PACKET = 0x4000           # what qSupported announces as PacketSize


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def frame(payload: bytes) -> bytes:
    """A complete packet for `payload` (already escaped/encoded as needed)."""
    return b"$" + payload + b"#" + b"%02x" % checksum(payload)


def escape_binary(data: bytes) -> bytes:
    """Binary data as gdb expects it inside a packet (qXfer replies, X)."""
    out = bytearray()
    for b in data:
        if b in MUST_ESCAPE:
            out += bytes((ESCAPE, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape_binary(data: bytes) -> bytes:
    """The inverse of `escape_binary`; a dangling escape is malformed."""
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == ESCAPE:
            try:
                out.append(next(it) ^ 0x20)
            except StopIteration:
                raise ValueError("binary data ends inside an escape") from None
        else:
            out.append(b)
    return bytes(out)


def rle_encode(payload: bytes) -> bytes:
    """Run-length encode a reply; binary-escaped payloads must not pass here
    (their `}` pairs would be split)."""
    out = bytearray()
    i, n = 0, len(payload)
    while i < n:
        ch = payload[i]
        run = 1
        while i + run < n and payload[i + run] == ch and run - 1 < RLE_MAX_COUNT:
            run += 1
        extra = run - 1
        while extra >= 3 and extra in RLE_FORBIDDEN_COUNTS:
            extra -= 1          # send a shorter run; the rest goes out plainly
        if extra >= 3:
            out += bytes((ch, RLE_MARK, extra + 29))
            i += extra + 1
        else:
            out.append(ch)
            i += 1
    return bytes(out)


def rle_decode(payload: bytes) -> bytes:
    """Expand `c*N` runs (gdb itself never sends them, but the protocol
    allows either side to)."""
    if RLE_MARK not in payload:
        return payload
    out = bytearray()
    i, n = 0, len(payload)
    while i < n:
        b = payload[i]
        if b == RLE_MARK:
            if not out or i + 1 >= n:
                raise ValueError("run-length mark without a character or a count")
            count = payload[i + 1] - 29
            if count < 0:
                raise ValueError("run-length count out of range")
            out += bytes((out[-1],)) * count
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


# Events a PacketReader produces.
@dataclass(frozen=True)
class Packet:
    payload: bytes


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Nak:
    pass


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class BadPacket:
    """A packet whose checksum is wrong or that overran MAX_PACKET: NAK it."""
    reason: str


class PacketReader:
    """An incremental parser: `feed(bytes)` returns the events completed by
    those bytes and keeps any partial packet for the next call."""

    def __init__(self, max_packet: int = MAX_PACKET * 2):
        self.max_packet = max_packet
        self._buf = bytearray()
        self._in_packet = False
        self._checksum_digits: bytearray | None = None

    def feed(self, data: bytes) -> list:
        events = []
        for b in data:
            ev = self._byte(b)
            if ev is not None:
                events.append(ev)
        return events

    def _byte(self, b: int):
        if not self._in_packet:
            if b == ord("$"):
                self._in_packet, self._checksum_digits = True, None
                self._buf.clear()
            elif b == ord("+"):
                return Ack()
            elif b == ord("-"):
                return Nak()
            elif b == INTERRUPT:
                return Interrupt()
            return None          # noise between packets is ignored, as gdbserver does
        if self._checksum_digits is not None:
            self._checksum_digits.append(b)
            if len(self._checksum_digits) < 2:
                return None
            return self._finish()
        if b == ord("#"):
            self._checksum_digits = bytearray()
        elif b == ord("$"):
            self._buf.clear()    # a new start inside a packet: the old one was cut off
        elif len(self._buf) >= self.max_packet:
            self._in_packet = False
            self._buf.clear()
            return BadPacket(f"packet longer than {self.max_packet} bytes")
        else:
            self._buf.append(b)
        return None

    def _finish(self):
        self._in_packet = False
        digits = bytes(self._checksum_digits)
        payload = bytes(self._buf)
        self._buf.clear()
        if any(c not in HEX_DIGITS for c in digits):
            return BadPacket(f"checksum {digits!r} is not hexadecimal")
        expected = int(digits, 16)
        if expected != checksum(payload):
            return BadPacket(f"checksum {expected:02x} does not match {checksum(payload):02x}")
        try:
            return Packet(rle_decode(payload))   # the checksum covers the encoded form
        except ValueError as e:
            return BadPacket(str(e))
