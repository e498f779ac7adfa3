"""Booting a firmware ROM (boot/firmware.py, `run --bios`): where the ROM
appears, the CPU's state after RESET (SDM vol. 3A 9.1.1 Table 9-1), the
first fetches through the high alias at 0xFFFFFFF0 until the first far jump,
POST codes, and how a final cli; hlt ends the run."""
from __future__ import annotations

import pytest

from rom_rig import BANNER, POST_CODES, needs_as, test_rom
from ringvisor.boot import firmware
from ringvisor.cpu_state import CpuState
from ringvisor.errors import GuestCrashed, GuestImageError
from ringvisor.machine.bus import MmioBus
from ringvisor.machine.memory import GuestMemory
from ringvisor.vm import VmConfig, build_machine


def rom_bytes(size: int) -> bytes:
    """Every 64 KiB block starts with its index, the last 16 bytes are the reset vector."""
    return b"".join(bytes((i,)) + bytes(0xFFFF) for i in range(size >> 16))[:-16] + b"\xea" + bytes(15)


@pytest.mark.parametrize("size, low_start", [(64 << 10, 0xF0000), (128 << 10, 0xE0000),
                                             (256 << 10, 0xE0000), (1 << 20, 0xE0000)])
def test_the_rom_tail_below_1mib_and_the_whole_rom_below_4gib(tmp_path, size, low_start):
    path = tmp_path / "rom.bin"
    data = rom_bytes(size)
    path.write_bytes(data)
    memory, mmio = GuestMemory(4 << 20), MmioBus()
    firmware.load(str(path), memory, mmio, signature=0x652)
    low = 0x100000 - low_start
    assert memory.read(low_start, low) == data[-low:]
    region = mmio.find(0xFFFFFFFF)
    assert (region.base, region.length) == ((1 << 32) - size, size)
    assert bytes(mmio.read(region.base + i, 1) for i in range(0, size, 0x10000)) == \
        bytes(range(size >> 16))
    assert mmio.read(0xFFFFFFF0, 1) == 0xEA
    mmio.write(0xFFFFFFF0, 1, 0x90)          # flash: writes are dropped
    assert mmio.read(0xFFFFFFF0, 1) == 0xEA


@pytest.mark.parametrize("size, message", [
    (0, "empty file"),
    (100 << 10, "not a multiple of 64 KiB"),
    (17 << 20, "above the 16 MiB a PC decodes"),
])
def test_rom_sizes_a_pc_cannot_map_are_refused(tmp_path, size, message):
    path = tmp_path / "rom.bin"
    path.write_bytes(bytes(size))
    with pytest.raises(GuestImageError, match=message):
        firmware.load(str(path), GuestMemory(4 << 20), MmioBus(), signature=0x652)


def test_a_missing_rom_is_one_line(tmp_path):
    with pytest.raises(GuestImageError, match="does not exist"):
        firmware.load(str(tmp_path / "none.bin"), GuestMemory(4 << 20), MmioBus(), signature=0x652)


def test_the_state_after_reset_is_table_9_1():
    s = CpuState.after_reset(0x652)
    assert (s.cs.selector, s.cs.base, s.cs.limit, s.eip) == (0xF000, 0xFFFF0000, 0xFFFF, 0xFFF0)
    assert (s.cr0, s.cr2, s.cr3, s.cr4, s.eflags) == (0x60000010, 0, 0, 0, 2)
    assert s.edx == 0x652
    assert [s.eax, s.ebx, s.ecx, s.esi, s.edi, s.ebp, s.esp] == [0] * 7
    for seg in (s.ds, s.es, s.fs, s.gs, s.ss):
        assert (seg.selector, seg.base, seg.limit) == (0, 0, 0xFFFF)
    assert (s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit) == (0, 0xFFFF, 0, 0xFFFF)
    assert not s.protected


def machine_for(tmp_path, halt_ok: bool = True, machine: str | None = None, console=None):
    path = tmp_path / "test.rom"
    path.write_bytes(test_rom())
    out = bytearray()
    config = VmConfig(kernel="", engine="soft", technique="native", memory=4 << 20, bios=str(path),
                      halt_ok=halt_ok, machine=machine)
    return build_machine(config, console or out.extend), out


@needs_as
def test_the_first_fetches_come_from_the_high_alias_until_the_far_jump(tmp_path):
    m, _ = machine_for(tmp_path)
    try:
        cpu = m.engine
        # The low copy's reset vector made a trap: were it fetched, the CPU would halt.
        m.memory.write(0xFFFF0, b"\xf4" * 16)
        state = cpu.get_state()
        assert state.edx == cpu.cpuid[1][0] and state.cs.base == 0xFFFF0000
        cpu.step()                                         # mov al, 1 (from 0xFFFFFFF0)
        cpu.step()                                         # out 0x80, al
        state = cpu.get_state()
        assert (state.cs.selector, state.cs.base, state.eip) == (0xF000, 0xFFFF0000, 0xFFF4)
        assert m.post.codes == [(0x80, 0x01)]
        cpu.step()                                         # jmp far F000:0000
        state = cpu.get_state()
        assert (state.cs.selector, state.cs.base, state.eip) == (0xF000, 0xF0000, 0)
        assert cpu.rd_phys(0xF0000, 2) == 0x11B0           # the low copy: mov al, 0x11
    finally:
        m.close()


@needs_as
@pytest.mark.parametrize("machine", [None, "isa"])
def test_the_rom_posts_enters_protected_mode_and_halts(tmp_path, machine):
    m, out = machine_for(tmp_path, machine=machine)
    try:
        result = m.run()
    finally:
        m.close()
    assert (result.status, result.reason) == (
        0, "halted with interrupts disabled (cli; hlt), next instruction at 0008:000f0064")
    assert bytes(out) == BANNER
    assert result.stats["post_codes"] == {"codes": [f"{c:#04x}" for c in POST_CODES],
                                          "writes": len(POST_CODES)}


@needs_as
def test_without_halt_ok_the_final_halt_is_a_crash_that_names_the_option(tmp_path):
    m, _ = machine_for(tmp_path, halt_ok=False)
    try:
        with pytest.raises(GuestCrashed, match=r"cli; hlt\): nothing can wake it \(--halt-ok"):
            m.run()
    finally:
        m.close()


def test_no_builtin_firmware_tables_or_apic_setup_under_a_rom(tmp_path):
    """The ROM brings its own tables; ringvisor writes none into 0xE0000-0xFFFFF."""
    path = tmp_path / "rom.bin"
    path.write_bytes(rom_bytes(128 << 10))
    m = build_machine(VmConfig(kernel="", engine="soft", technique="native", memory=4 << 20,
                               bios=str(path)), lambda data: None)
    try:
        assert m.platform.pc.tables is None
        assert m.memory.read(0xE0000, 0x20000) == rom_bytes(128 << 10)
        assert m.platform.pc.lapics[0].read_register(0xF0) & 0x100 == 0   # SVR: software-disabled
    finally:
        m.close()
