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


def test_the_default_ram_is_qemus_pc_128_mib_and_the_monitors_keep_their_top():
    from ringvisor import monitors
    from ringvisor.cli.main import build_parser
    from ringvisor.vm import VmConfig
    assert VmConfig(kernel="k").memory == 128 << 20
    assert parse_size(build_parser().parse_args(["run", "k"]).memory) == 128 << 20
    for technique in ("native", "trap", "bt", "hw", "pv"):
        config = VmConfig(kernel="k", engine="soft", technique=technique).machine_config()
        assert config.memory == 128 << 20
        assert config.reserved_top == monitors.reserved_top(technique, "soft")
    assert VmConfig(kernel="k", engine="soft", technique="trap").machine_config().reserved_top > 0


def test_guest_ram_is_mapped_lazily():
    """128 MiB cost nothing until touched: of the mapping's pages, only the
    ones written are resident (mincore(2) over exactly the guest's range)."""
    mem = GuestMemory(128 << 20)
    try:
        mem.write(0x100000, b"x" * 4096)
        # One touched page, or the 2 MiB huge page that holds it when the
        # host's transparent huge pages are on: far from 128 MiB either way.
        assert 1 <= _resident_pages(mem.host_address, 128 << 20) <= 512
    finally:
        mem.close()


def _resident_pages(address: int, size: int) -> int:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pages = size // 4096
    vec = (ctypes.c_ubyte * pages)()
    if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vec) != 0:
        raise OSError(ctypes.get_errno(), "mincore")
    return sum(b & 1 for b in vec)
