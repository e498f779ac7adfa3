"""The 440FX's Programmable Attribute Map: where the CPU's reads and writes
of 0xC0000-0xFFFFF go (82441FX datasheet, PAM0-PAM6 at 0x59-0x5F).

Thirteen segments: 0xF0000-0xFFFFF (PAM0 bits 5:4) and twelve 16 KiB ones
from 0xC0000 to 0xEFFFF (PAM1-PAM6, low nibble first). Each has two bits:
RE (bit 0) sends reads to DRAM, WE (bit 1) sends writes to DRAM; what does
not go to DRAM goes to PCI, where the PIIX3 decodes the BIOS ROM's last
128 KiB at 0xE0000-0xFFFFF (read-only: writes vanish) and nothing answers
below it (a master abort: reads 0xFF). After reset every segment is 00:
the BIOS runs from ROM until it copies itself to RAM and switches the
segments over (SeaBIOS: 0x33/0x30 to shadow, 0x11/0x10 to write-protect).

How it is done without slowing the soft CPU's memory path: guest RAM (the
mmap every access reads) always holds what a *read* of the segment sees;
the segment's DRAM contents live in `dram` while they are not visible
(RE=0) or must be kept from writes (WE=0). Every segment not 11 is a
watched page set on every CPU: a write there reaches RAM at once, like any
write, and then `written()` puts it right (keeps the bytes in `dram` if
WE=1, restores what reads see). A PAM change swaps the bytes and tells each
CPU (`memory_remapped`) to drop the code it compiled from those pages.
"""
from __future__ import annotations

LOW, HIGH = 0xC0000, 0x100000
RE, WE = 1, 2
RAM_RW = RE | WE
OPEN_BUS = 0xFF


def segments() -> list[tuple[int, int, int, int]]:
    """(PAM register index 0-6, bit shift, base, size) for each segment."""
    table = [(0, 4, 0xF0000, 0x10000)]
    for i in range(12):
        table.append((1 + i // 2, 4 * (i % 2), LOW + i * 0x4000, 0x4000))
    return table


SEGMENTS = segments()


class Pam:
    def __init__(self, memory, modes: list[int] | None = None):
        """`modes` per segment (SEGMENTS order); the default keeps all 11,
        plain RAM, until the chipset's reset applies its registers."""
        self.memory = memory
        self.mm = memory.mmap
        self.rom = bytearray([OPEN_BUS]) * (HIGH - LOW)     # what PCI answers
        self.dram = bytearray(HIGH - LOW)                  # DRAM where reads do not see it
        self.modes = [RAM_RW] * len(SEGMENTS)
        self.watched: set[int] = set()                     # physical page numbers
        self.cpus: list = []
        self.switches = 0
        self.fixups = 0
        if modes is not None:
            for i, mode in enumerate(modes):
                self._set(i, mode)

    # -- what the chipset and the firmware loader call ----------------------------------
    def install_rom(self, base: int, data: bytes) -> None:
        """The BIOS ROM's bytes that PCI decodes at [base, base+len) below 1 MiB."""
        if base < LOW or base + len(data) > HIGH:
            raise ValueError(f"ROM window {base:#x}+{len(data):#x} is outside 0xC0000-0xFFFFF")
        self.rom[base - LOW:base - LOW + len(data)] = data
        for i, (_, _, seg, size) in enumerate(SEGMENTS):
            if not self.modes[i] & RE and seg < base + len(data) and base < seg + size:
                self.mm[seg:seg + size] = self.rom[seg - LOW:seg - LOW + size]
                self._remapped(seg, seg + size)

    def set_registers(self, pam: bytes) -> None:
        """PAM0-PAM6 as the host bridge holds them now."""
        for i, (reg, shift, _, _) in enumerate(SEGMENTS):
            self._set(i, (pam[reg] >> shift) & 3)

    def attach(self, cpu) -> None:
        """A CPU whose writes to the watched pages must come back here."""
        inner = cpu.code_written

        def written(p: int, n: int) -> None:
            if p < HIGH and p + n > LOW:
                self.written(p, n)
            inner(p, n)
        cpu.code_written = written
        cpu.watched_pages = self.watched
        self.cpus.append(cpu)
        cpu.memory_remapped(LOW, HIGH)

    def mode_at(self, addr: int) -> int:
        return self.modes[_segment_of(addr)]

    # -- the two halves of the mechanism ----------------------------------------------------
    def written(self, p: int, n: int) -> None:
        """The CPU just wrote [p, p+n) into RAM: undo what the PAM forbids."""
        mm, dram, rom = self.mm, self.dram, self.rom
        end = min(p + n, HIGH)
        at = max(p, LOW)
        while at < end:
            i = _segment_of(at)
            _, _, seg, size = SEGMENTS[i]
            upto = min(end, seg + size)
            mode = self.modes[i]
            if mode != RAM_RW:
                lo, hi = at - LOW, upto - LOW
                if mode & WE:
                    dram[lo:hi] = mm[at:upto]
                mm[at:upto] = dram[lo:hi] if mode & RE else rom[lo:hi]
                self.fixups += 1
            at = upto

    def _set(self, i: int, mode: int) -> None:
        old = self.modes[i]
        if mode == old:
            return
        _, _, seg, size = SEGMENTS[i]
        lo, hi = seg - LOW, seg - LOW + size
        contents = self.mm[seg:seg + size] if old & RE else bytes(self.dram[lo:hi])
        self.dram[lo:hi] = contents
        self.mm[seg:seg + size] = contents if mode & RE else self.rom[lo:hi]
        self.modes[i] = mode
        pages = range(seg >> 12, (seg + size) >> 12)
        if mode == RAM_RW:
            self.watched.difference_update(pages)
        else:
            self.watched.update(pages)
        self.switches += 1
        self._remapped(seg, seg + size)

    def _remapped(self, lo: int, hi: int) -> None:
        for cpu in self.cpus:
            cpu.memory_remapped(lo, hi)

    def statistics(self) -> dict:
        return {"registers": [f"{m:#x}" for m in self.modes], "switches": self.switches,
                "writes_fixed": self.fixups}


def _segment_of(addr: int) -> int:
    if addr >= 0xF0000:
        return 0
    return 1 + (addr - LOW) // 0x4000
