"""A small test machine for the soft CPU: RAM, a GDT/IDT/TSS builder, page
tables, and an assembler (GNU as, linked at the load address)."""
from __future__ import annotations

import functools
import os
import shutil
import struct
import subprocess
import tempfile

import pytest

from ringvisor.cpu import SoftEngine
from ringvisor.cpu_state import CpuState, Segment, TableRegister
from ringvisor.machine.bus import MmioBus, PortBus
from ringvisor.machine.memory import GuestMemory

HAVE_AS = shutil.which("as") is not None and shutil.which("ld") is not None
needs_as = pytest.mark.skipif(not HAVE_AS, reason="GNU as/ld not installed")

GDT, IDT, TSS, PD, CODE, STACK0, STACK3 = 0x1000, 0x2000, 0x3000, 0x4000, 0x10000, 0x80000, 0x90000
# Selectors of the standard GDT
KCODE, KDATA, UCODE, UDATA, TSSSEL, GATE, K16CODE, RING1CODE, RING1DATA = (
    0x08, 0x10, 0x1B, 0x23, 0x28, 0x33, 0x38, 0x41, 0x49)


@functools.lru_cache(maxsize=None)
def asm(src: str, org: int = CODE, bits: int = 32) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        s, o, b = (os.path.join(d, n) for n in ("a.s", "a.o", "a.bin"))
        with open(s, "w") as f:
            f.write(f".intel_syntax noprefix\n.code{bits}\n{src}\n")
        subprocess.run(["as", "--32", "-o", o, s], check=True, capture_output=True)
        subprocess.run(["ld", "-m", "elf_i386", f"-Ttext={org:#x}", "--oformat", "binary",
                        "-o", b, o], check=True, capture_output=True)
        return open(b, "rb").read()


def desc(base: int, limit: int, type_: int, s: bool = True, dpl: int = 0, db: bool = True,
         g: bool = True, p: bool = True) -> bytes:
    if g:
        limit >>= 12
    lo = (limit & 0xFFFF) | (base & 0xFFFF) << 16
    hi = ((base >> 16) & 0xFF) | type_ << 8 | s << 12 | dpl << 13 | p << 15 | \
        (limit & 0xF0000) | db << 22 | g << 23 | (base & 0xFF000000)
    return struct.pack("<II", lo, hi)


def gate(sel: int, off: int, type_: int, dpl: int = 0, params: int = 0, p: bool = True) -> bytes:
    lo = (off & 0xFFFF) | sel << 16
    hi = (off & 0xFFFF0000) | p << 15 | dpl << 13 | type_ << 8 | params
    return struct.pack("<II", lo, hi)


class Pic:
    """An interrupt controller holding one vector until the CPU acknowledges it."""
    def __init__(self):
        self.vector = None

    def pending(self):
        return self.vector is not None

    def acknowledge(self):
        v, self.vector = self.vector, None
        return v


class Rig:
    def __init__(self, mem_mb: int = 4, interrupts=None):
        self.mem = GuestMemory(mem_mb << 20)
        self.ports = PortBus()
        self.cpu = SoftEngine(self.mem, self.ports, MmioBus(), interrupts)
        self.cpu.blocks.hot = 1     # tests with use_blocks compile code at first sight
        self.gdt = [bytes(8)] * 16

    def write(self, addr: int, data: bytes) -> None:
        self.mem.write(addr, data)

    def u32(self, addr: int) -> int:
        return self.mem.read_u32(addr)

    def standard_gdt(self, gate_target: int = 0, gate_params: int = 0) -> None:
        self.gdt[1] = desc(0, 0xFFFFFFFF, 0xB)                 # 0x08 ring-0 code
        self.gdt[2] = desc(0, 0xFFFFFFFF, 0x3)                 # 0x10 ring-0 data
        self.gdt[3] = desc(0, 0xFFFFFFFF, 0xB, dpl=3)          # 0x18 ring-3 code
        self.gdt[4] = desc(0, 0xFFFFFFFF, 0x3, dpl=3)          # 0x20 ring-3 data
        self.gdt[5] = desc(TSS, 0x67 + 0x2000 // 8 + 1, 0x9, s=False, g=False, db=False)  # 0x28 TSS
        self.gdt[6] = gate(KCODE, gate_target, 0xC, dpl=3, params=gate_params)  # 0x30 call gate
        self.gdt[7] = desc(0, 0xFFFF, 0xB, db=False, g=False)   # 0x38 16-bit ring-0 code
        self.gdt[8] = desc(0, 0xFFFFFFFF, 0xB, dpl=1)          # 0x40 ring-1 code
        self.gdt[9] = desc(0, 0xFFFFFFFF, 0x3, dpl=1)          # 0x48 ring-1 data
        self.flush_gdt()
        # TSS: ESP0/SS0, ESP1/SS1; I/O bitmap right after the 104-byte header, all ports denied.
        tss = bytearray(0x68)
        struct.pack_into("<II", tss, 4, STACK0, KDATA)
        struct.pack_into("<II", tss, 12, STACK0 - 0x1000, RING1DATA)
        struct.pack_into("<H", tss, 102, 0x68)
        self.write(TSS, bytes(tss) + b"\xff" * (0x2000 // 8 + 1))

    def flush_gdt(self) -> None:
        self.write(GDT, b"".join(self.gdt))

    def set_idt(self, vector: int, off: int, type_: int = 0xE, dpl: int = 0, sel: int = KCODE):
        self.write(IDT + 8 * vector, gate(sel, off, type_, dpl))

    def protected(self, code: bytes | str, cpl: int = 0, eflags: int = 2, **regs) -> CpuState:
        """Load code at CODE and enter 32-bit protected mode at ring `cpl`."""
        if isinstance(code, str):
            code = asm(code)
        self.write(CODE, code)
        if self.gdt[1] == bytes(8):
            self.standard_gdt()
        if cpl == 0:
            cs, ds = Segment.flat32(KCODE, True), Segment.flat32(KDATA, False)
            esp = STACK0
        elif cpl == 3:
            cs, ds = Segment.flat32(UCODE, True, 3), Segment.flat32(UDATA, False, 3)
            esp = STACK3
        else:
            cs, ds = Segment.flat32(RING1CODE, True, 1), Segment.flat32(RING1DATA, False, 1)
            esp = STACK0 - 0x1000
        st = CpuState(eip=CODE, esp=esp, eflags=eflags, cs=cs, ds=ds, es=ds, fs=ds, gs=ds,
                      ss=Segment(**{**ds.__dict__}), cr0=0x11,
                      gdt=TableRegister(GDT, 16 * 8 - 1), idt=TableRegister(IDT, 256 * 8 - 1),
                      tr=Segment.system(TSSSEL, TSS, 0x67 + 0x2000 // 8 + 1, 11), **regs)
        self.cpu.set_state(st)
        return st

    def run(self, n: int = 100_000):
        return self.cpu.run(max_instructions=n)

    def intercept(self, *vectors: int) -> None:
        for v in vectors:
            self.cpu.intercept |= 1 << v

    # --- paging -----------------------------------------------------------------------
    def identity_paging(self, user: bool = True, writable: bool = True, pages_mb: int = 4) -> None:
        """PD at PD, page tables after it, identity-mapping the first `pages_mb` MiB."""
        flags = 1 | (2 if writable else 0) | (4 if user else 0)
        for t in range(pages_mb // 4):
            pt = PD + 0x1000 * (t + 1)
            self.write(PD + 4 * t, struct.pack("<I", pt | 7))
            self.write(pt, b"".join(struct.pack("<I", ((t << 22) + (i << 12)) | flags)
                                    for i in range(1024)))

    def pte_addr(self, lin: int) -> int:
        return PD + 0x1000 * ((lin >> 22) + 1) + 4 * ((lin >> 12) & 0x3FF)

    def set_pte(self, lin: int, value: int) -> None:
        self.mem.write_u32(self.pte_addr(lin), value)

    def enable_paging(self, wp: bool = False, cr4: int = 0) -> None:
        c = self.cpu
        c.cr3 = PD
        c.cr4 = cr4
        from ringvisor.cpu.semantics.protection import set_cr0
        set_cr0(c, c.cr0 | 0x80000000 | (0x10000 if wp else 0))
