import pytest

from ringvisor.errors import ConfigError, GuestMemoryError
from ringvisor.machine.memory import GuestMemory, check_size, parse_size


@pytest.mark.parametrize("text,size", [("64M", 64 << 20), ("1G", 1 << 30), ("2048K", 2 << 20),
                                       ("16MiB", 16 << 20), ("0x200000", 2 << 20)])
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "12Q", "M"])
def test_garbage_sizes_are_one_line_errors(text):
    with pytest.raises(ConfigError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize("size,message", [(0, "positive"), (-4096, "positive"), ((1 << 20) + 1, "multiple of 4 KiB"),
                                          (4096, "1 MiB minimum"), (4 << 30, "maximum")])
def test_bad_sizes_are_refused(size, message):
    with pytest.raises(ConfigError, match=message):
        check_size(size)


def test_accesses_are_bounds_checked():
    mem = GuestMemory(1 << 20)
    mem.write_u32(0xFFFFC, 0x11223344)
    assert mem.read_u32(0xFFFFC) == 0x11223344 and mem.read(0xFFFFC, 2) == b"\x44\x33"
    for bad in (lambda: mem.read(0xFFFFE, 4), lambda: mem.write(1 << 20, b"x"),
                lambda: mem.read_u8(-1), lambda: mem.fill(0xFFFFF, 2)):
        with pytest.raises(GuestMemoryError, match="outside guest RAM"):
            bad()
    mem.write(0x1000, b"abc\0def")
    assert mem.read_cstring(0x1000) == b"abc"
