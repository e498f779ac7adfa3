"""The 440FX's PAM registers on the soft CPU: each segment's reads and
writes reach ROM (PCI) or DRAM as its two bits say, code compiled from a
segment is dropped when the map changes, the compiled fast write path is
redirected, and a hard reset (not a CPU-only one) puts the reset map back."""
import sys
from pathlib import Path

import pytest

from ringvisor.devices import chipset
from ringvisor.devices.pam import Pam
from ringvisor.devices.pci_host import PciHost, address
from ringvisor.exits import GuestStopped

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))
from cpu_rig import Rig, asm, needs_as  # noqa: E402

ROM_BASE = 0xE0000
ROM = bytes((i * 7 + 3) & 0xFF for i in range(0x20000))      # 0xE0000-0xFFFFF as PCI decodes it


class Chipset:
    """A soft CPU with the host bridge on its port bus and the PAM on its memory path."""

    def __init__(self, rom=ROM):
        self.rig = Rig()
        self.mem, self.cpu = self.rig.mem, self.rig.cpu
        self.pam = Pam(self.mem)
        self.pci = PciHost()
        self.bridge = chipset.host_bridge(self.pam.set_registers)
        self.pci.attach(0, 0, self.bridge)
        self.pci.register(self.rig.ports)
        self.pci.reset()
        self.pam.install_rom(ROM_BASE, rom)
        self.pam.attach(self.cpu)

    def set_pam(self, reg: int, value: int) -> None:
        self.rig.ports.write(0xCF8, 4, address(0, 0, 0, reg))
        self.rig.ports.write(0xCFC + (reg & 3), 1, value)

    def cpu_write(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.cpu.wr_phys(addr + i, 1, b)

    def cpu_read(self, addr: int, n: int) -> bytes:
        return bytes(self.cpu.rd_phys(addr + i, 1) for i in range(n))


def test_after_reset_reads_reach_the_rom_and_writes_vanish():
    c = Chipset()
    assert c.cpu_read(0xFFFF0, 16) == ROM[-16:]
    assert c.cpu_read(0xC0000, 4) == b"\xff" * 4                # nothing decodes it on PCI
    c.cpu_write(0xF0000, b"RAM!")
    assert c.cpu_read(0xF0000, 4) == ROM[0x10000:0x10004]


@pytest.mark.parametrize("mode, reads_ram, writes_ram", [(0, False, False), (1, True, False),
                                                          (2, False, True), (3, True, True)])
def test_each_mode_of_a_16k_segment(mode, reads_ram, writes_ram):
    c = Chipset()
    seg = 0xE4000                                              # PAM5 bits 5:4
    c.set_pam(0x5E, 0x30)
    c.cpu_write(seg, b"old!")                                  # DRAM beneath holds "old!"
    c.set_pam(0x5E, mode << 4)
    rom = ROM[seg - ROM_BASE:seg - ROM_BASE + 4]
    assert c.cpu_read(seg, 4) == (b"old!" if reads_ram else rom)
    c.cpu_write(seg, b"new!")
    assert c.cpu_read(seg, 4) == ((b"new!" if writes_ram else b"old!") if reads_ram else rom)
    c.set_pam(0x5E, 0x30)
    assert c.cpu_read(seg, 4) == (b"new!" if writes_ram else b"old!")
    assert c.cpu_read(seg - 4, 4) == ROM[seg - 4 - ROM_BASE:seg - ROM_BASE]   # E0000's segment: still ROM


def test_segments_follow_the_register_layout():
    c = Chipset()
    for i, (reg, shift, base, size) in enumerate([(0x59, 4, 0xF0000, 0x10000)] +
                                                 [(0x5A + k // 2, 4 * (k % 2), 0xC0000 + k * 0x4000, 0x4000)
                                                  for k in range(12)]):
        c.pci.reset()
        c.set_pam(reg, 3 << shift)
        for addr in (base, base + size - 1):
            c.cpu_write(addr, b"\x5a")
            assert c.cpu_read(addr, 1) == b"\x5a", hex(addr)
        for outside in (base - 1, base + size):
            if 0xC0000 <= outside < 0x100000:
                assert c.pam.mode_at(outside) == 0, hex(outside)


def test_a_write_across_a_segment_boundary_is_split():
    c = Chipset()
    c.set_pam(0x5F, 0x03)                                      # 0xE8000 RW, 0xE7FFF (PAM5 hi) ROM
    c.cpu.wr_phys(0xE7FFE, 4, 0x44332211)
    assert c.cpu_read(0xE7FFE, 2) == ROM[0x7FFE:0x8000]
    assert c.cpu_read(0xE8000, 2) == b"\x33\x44"


def test_seabios_shadowing_sequence():
    """Copy from the ROM alias, make the RAM read-write, then read-only."""
    c = Chipset()
    c.set_pam(0x59, 0x30)                                      # F segment: RAM, read/write
    assert c.cpu_read(0xF0000, 4) == bytes(4)                  # fresh DRAM
    c.mem.write(0xF0000, ROM[0x10000:])                        # (the firmware's copy)
    c.set_pam(0x59, 0x10)                                      # read-only
    c.cpu_write(0xFFFF0, b"\x90" * 16)
    assert c.cpu_read(0xFFFF0, 16) == ROM[-16:]
    assert c.pam.fixups == 16                                  # one per byte written


def _call_e0000(rig, times=3):
    """Protected-mode code calling 0xE0000 `times` times, adding the results."""
    return rig.protected(asm(f"""
        xor ebx, ebx
        mov ecx, {times}
    1:  mov eax, 0xE0000
        call eax
        add ebx, eax
        loop 1b
        hlt
    """))


@needs_as
def test_a_pam_switch_drops_code_compiled_from_the_segment():
    ram_code = asm("mov eax, 1\nret", org=0xE0000)
    rom = bytearray(ROM)
    rom[:len(ram_code)] = asm("mov eax, 100\nret", org=0xE0000)
    c = Chipset(bytes(rom))
    c.set_pam(0x5E, 0x03)                                      # 0xE0000 RAM
    c.mem.write(0xE0000, ram_code)
    _call_e0000(c.rig)
    c.rig.run()
    assert c.cpu.r[3] == 3 and c.cpu.code_pages & {0xE0}       # compiled from the RAM copy
    assert any(b.page == 0xE0 for b in c.cpu.blocks.blocks.values())
    c.set_pam(0x5E, 0x00)                                      # now the ROM answers
    # Dropped at the switch, not found stale later (another CPU's switch
    # does not pass through this CPU's I/O path).
    assert not any(b.page == 0xE0 for b in c.cpu.blocks.blocks.values())
    _call_e0000(c.rig)
    c.rig.run()
    assert c.cpu.r[3] == 300


@needs_as
def test_the_guest_write_protects_a_segment_its_fast_writes_stop():
    """Guest code writes 0xF0000 in a loop (the compiled fast path learns
    the page), then sets PAM0 to read-only through 0xCF8/0xCFC itself,
    and writes again: the second write must vanish."""
    c = Chipset()
    c.set_pam(0x59, 0x30)
    c.rig.protected(asm(f"""
        mov ecx, 50
    1:  mov dword ptr [0xF0000], ecx
        loop 1b
        mov eax, {address(0, 0, 0, 0x58):#x}
        mov dx, 0xCF8
        out dx, eax
        mov dx, 0xCFD
        mov al, 0x10
        out dx, al
        mov ecx, 50
    2:  mov dword ptr [0xF0000], 0xDEAD
        mov dword ptr [0xF0004], ecx
        loop 2b
        mov edi, 0xF0100
        mov eax, 0x77777777
        mov ecx, 64
        rep stosd
        hlt
    """))
    c.rig.run()
    assert c.cpu.halted
    assert c.mem.read_u32(0xF0000) == 1 and c.mem.read_u32(0xF0004) == 0
    assert c.mem.read(0xF0100, 256) == bytes(256)              # rep stosd (the bulk path) too
    assert c.bridge.config[0x59] == 0x10


def _machine(tmp_path):
    from ringvisor.vm import VmConfig, build_machine
    rom = tmp_path / "rom.bin"
    rom.write_bytes(ROM[-0x10000:])
    return build_machine(VmConfig(kernel="", engine="soft", technique="native", bios=str(rom)),
                         lambda data: None)


@pytest.mark.parametrize("port, value, survives", [(0xCF9, 0x06, False), (0xCF9, 0x0E, False),
                                                   (0xCF9, 0x04, True), (0x92, 0x01, True)])
def test_reset_puts_pam_back_unless_only_the_cpu_resets(tmp_path, port, value, survives):
    machine = _machine(tmp_path)
    try:
        pc, ports = machine.platform.pc, machine.ports
        ports.write(0xCF8, 4, address(0, 0, 0, 0x58))
        ports.write(0xCFD, 1, 0x30)
        machine.memory.write(0xF0000, b"shadow")
        with pytest.raises(GuestStopped):
            ports.write(port, 1, value)
        assert pc.host_bridge.config[0x59] == (0x30 if survives else 0x00)
        assert machine.memory.read(0xF0000, 6) == (b"shadow" if survives else ROM[-0x10000:][:6])
    finally:
        machine.close()


def test_without_a_rom_the_bios_area_is_plain_ram(tmp_path):
    """ringvisor as the firmware leaves 0xC0000-0xFFFFF read/write RAM."""
    from ringvisor.vm import VmConfig, build_machine
    guest = Path(__file__).resolve().parents[2] / "guests" / "tests" / "build"
    kernels = sorted(guest.glob("*.elf")) if guest.exists() else []
    if not kernels:
        pytest.skip("no test kernel built")
    machine = build_machine(VmConfig(kernel=str(kernels[0]), engine="soft", technique="native"),
                            lambda data: None)
    try:
        assert bytes(machine.platform.pc.host_bridge.config[0x59:0x60]) == bytes([0x30] + [0x33] * 6)
        assert not machine.platform.cpus[0].watched_pages
    finally:
        machine.close()
