"""Framing of the GDB remote protocol: checksums, escapes, run-length
encoding, and the incremental reader (packets split anywhere, noise, bad
checksums, the interrupt byte)."""
from __future__ import annotations

from hypothesis import given, strategies as st

from ringvisor.gdb.packets import (Ack, BadPacket, Interrupt, Nak, Packet, PacketReader,
                                   checksum, escape_binary, frame, rle_decode, rle_encode,
                                   unescape_binary)


def test_frame_carries_the_modulo_256_checksum():
    # The protocol manual's own example: $OK#9a
    assert frame(b"OK") == b"$OK#9a"
    assert checksum(b"") == 0
    assert frame(b"") == b"$#00"


def test_binary_escapes_the_four_special_bytes():
    assert escape_binary(b"#$}*a") == b"}\x03}\x04}]}\x0aa"
    assert unescape_binary(b"}\x03}\x04}]}\x0aa") == b"#$}*a"


def test_a_dangling_escape_is_malformed():
    import pytest
    with pytest.raises(ValueError):
        unescape_binary(b"ab}")


@given(st.binary(max_size=300))
def test_escape_round_trips(data):
    escaped = escape_binary(data)
    assert not set(escaped) & set(b"#$*")
    assert unescape_binary(escaped) == data


def test_rle_uses_the_documented_encoding():
    # "0* " means three more zeros: four in all (the manual's example).
    assert rle_decode(b"0* ") == b"0000"
    assert rle_encode(b"0000") == b"0* "


def test_rle_never_emits_framing_or_ack_characters_as_counts():
    for n in range(1, 200):
        encoded = rle_encode(b"0" * n)
        counts = [encoded[i + 1] for i, b in enumerate(encoded) if b == ord("*")]
        assert not set(counts) & set(b"#$+-*"), n
        assert all(32 <= c <= 126 for c in counts), n
        assert rle_decode(encoded) == b"0" * n


@given(st.text(alphabet="0123456789abcdefOKTE;:", max_size=400))
def test_rle_round_trips(text):
    data = text.encode()
    assert rle_decode(rle_encode(data)) == data


def test_reader_reassembles_packets_split_anywhere():
    stream = b"+" + frame(b"qSupported:swbreak+") + frame(b"g")
    for cut in range(len(stream) + 1):
        reader = PacketReader()
        events = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert events == [Ack(), Packet(b"qSupported:swbreak+"), Packet(b"g")]


def test_reader_reports_bad_checksums_and_goes_on():
    reader = PacketReader()
    events = reader.feed(b"$g#00$g#67")
    assert isinstance(events[0], BadPacket)
    assert events[1] == Packet(b"g")


def test_reader_refuses_checksums_that_are_not_hex():
    # int('+7', 16) would accept this; the reader must not.
    events = PacketReader().feed(b"$g#+7$g# 7")
    assert all(isinstance(e, BadPacket) for e in events) and len(events) == 2


def test_reader_sees_interrupts_acks_naks_and_ignores_noise():
    events = PacketReader().feed(b"\x03+-garbage\x00\xff$?#3f")
    assert events == [Interrupt(), Ack(), Nak(), Packet(b"?")]


def test_reader_bounds_a_packet_that_never_ends():
    reader = PacketReader(max_packet=100)
    events = reader.feed(b"$" + b"a" * 500)
    assert len(events) == 1 and isinstance(events[0], BadPacket)
    assert reader.feed(frame(b"g")) == [Packet(b"g")]


def test_a_new_start_inside_a_packet_restarts_it():
    assert PacketReader().feed(b"$junk" + frame(b"g")) == [Packet(b"g")]


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_reader_survives_any_bytes_and_then_reads_a_good_packet(noise, more):
    reader = PacketReader()
    reader.feed(noise)
    reader.feed(more)
    events = reader.feed(b"#00" + frame(b"qC"))   # ends whatever packet the noise opened
    assert events[-1] == Packet(b"qC")


def test_reader_expands_run_length_encoding_after_the_checksum():
    # "M0,4:0000" sent as "M0,4:0* " (the checksum is of the encoded form).
    events = PacketReader().feed(frame(b"M0,4:0* "))
    assert events == [Packet(b"M0,4:0000")]


def test_reader_refuses_a_run_length_mark_without_a_character():
    events = PacketReader().feed(frame(b"*!"))
    assert len(events) == 1 and isinstance(events[0], BadPacket)
