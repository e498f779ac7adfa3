"""A fake `Target` for the stub's tests: an i386 register file, 64 KiB of
linear memory with an unmapped page, and an interpreter for the dozen
instructions program.S uses. It honours the target contract of
ringvisor.gdb.target (breakpoints before the instruction, except the first
of a resume; watchpoints after the access; latched interrupts)."""
from __future__ import annotations

import threading

from ringvisor.boot.elf import parse_elf32
from ringvisor.gdb.target import (BreakpointHit, Crashed, Exited, Interrupted, MemoryFault,
                                  Stepped, TargetError, WatchKind, WatchpointHit)
from ringvisor.cpu_state import CpuState

RAM_SIZE = 0x10000
HOLE = range(0x4000, 0x5000)       # a page the "guest's page tables" leave unmapped
GPRS = CpuState.GPRS               # encoding order: eax ecx edx ebx esp ebp esi edi


class FakeTarget:
    hardware_slots = 4

    def __init__(self, elf: bytes):
        image = parse_elf32(elf, "program")
        self.ram = bytearray(RAM_SIZE)
        for seg in image.segments:
            self.ram[seg.vaddr:seg.vaddr + len(seg.data)] = seg.data
        self.state = CpuState.protected_flat(image.entry, esp=0x8000)
        self.software = frozenset()
        self.hardware = frozenset()
        self.watchpoints = ()
        self.instructions = 0
        self.resumes = 0
        self._interrupt = threading.Event()
        self.refuse_segment_writes = True

    # -- registers and memory ------------------------------------------------------
    def read_registers(self) -> CpuState:
        return self.state.copy()

    def write_registers(self, state: CpuState) -> None:
        if self.refuse_segment_writes and any(
                getattr(state, s).selector != getattr(self.state, s).selector for s in CpuState.SEGMENTS):
            raise TargetError("the fake target has no descriptor tables to load segments from")
        self.state = state.copy()

    def _check(self, address: int, length: int) -> None:
        for a in range(address, address + length):
            if a >= RAM_SIZE or a in HOLE:
                raise MemoryFault(a)

    def read_memory(self, address: int, length: int) -> bytes:
        self._check(address, length)
        return bytes(self.ram[address:address + length])

    def write_memory(self, address: int, data: bytes) -> None:
        self._check(address, len(data))
        self.ram[address:address + len(data)] = data

    # -- debug state ----------------------------------------------------------------
    def set_breakpoints(self, software, hardware) -> None:
        self.software, self.hardware = software, hardware

    def set_watchpoints(self, watchpoints) -> None:
        self.watchpoints = watchpoints

    def interrupt(self) -> None:
        self._interrupt.set()

    def stats(self):
        return {"engine": "fake", "instructions": self.instructions,
                "platform": {"interrupts_by_irq": {}},
                "monitor": {"traps": {"general_protection": 3, "page_fault": 1}}}

    def describe(self) -> str:
        return "fake engine, no technique (tests)"

    # -- running --------------------------------------------------------------------
    def resume(self, step: bool):
        self.resumes += 1
        first = True
        while True:
            if self._interrupt.is_set():
                self._interrupt.clear()
                return Interrupted()
            eip = self.state.eip
            if not first and (eip in self.software or eip in self.hardware):
                return BreakpointHit(eip)
            first = False
            try:
                stop = self._execute()
            except MemoryFault as fault:
                return Crashed(f"page fault at {fault.address:#x}")
            self.instructions += 1
            if stop is not None:
                return stop
            if step:
                return Stepped()

    def _fetch(self, n: int) -> bytes:
        data = self.read_memory(self.state.eip, n)
        return data

    def _imm32(self, offset: int) -> int:
        return int.from_bytes(self.read_memory(self.state.eip + offset, 4), "little")

    def _reg(self, i: int) -> int:
        return getattr(self.state, GPRS[i])

    def _set_reg(self, i: int, v: int) -> None:
        setattr(self.state, GPRS[i], v & 0xFFFFFFFF)

    def _set_zf(self, value: int) -> None:
        self.state.eflags = (self.state.eflags & ~0x40) | (0x40 if value & 0xFFFFFFFF == 0 else 0)

    def _execute(self):
        """Run the instruction at EIP; return a Stop it causes, or None."""
        s = self.state
        op = self._fetch(1)[0]
        if op == 0x90:                                   # nop
            s.eip += 1
        elif 0x40 <= op <= 0x4F:                         # inc/dec r32
            r = op & 7
            v = (self._reg(r) + (1 if op < 0x48 else -1)) & 0xFFFFFFFF
            self._set_reg(r, v)
            self._set_zf(v)
            s.eip += 1
        elif 0xB8 <= op <= 0xBF:                         # mov r32, imm32
            self._set_reg(op & 7, self._imm32(1))
            s.eip += 5
        elif op in (0xA1, 0xA3):                         # mov eax, [moffs32] / mov [moffs32], eax
            address = self._imm32(1)
            if op == 0xA1:
                s.eax = int.from_bytes(self.read_memory(address, 4), "little")
            else:
                self.write_memory(address, s.eax.to_bytes(4, "little"))
            s.eip += 5
            return self._watch(address, 4, write=op == 0xA3)
        elif op == 0xEB or op == 0x75:                   # jmp rel8 / jnz rel8
            rel = int.from_bytes(self._fetch(2)[1:], "little", signed=True)
            taken = op == 0xEB or not s.eflags & 0x40
            s.eip = (s.eip + 2 + (rel if taken else 0)) & 0xFFFFFFFF
        elif op == 0xE8:                                 # call rel32
            rel = int.from_bytes(self.read_memory(s.eip + 1, 4), "little", signed=True)
            s.esp -= 4
            self.write_memory(s.esp, (s.eip + 5).to_bytes(4, "little"))
            s.eip = (s.eip + 5 + rel) & 0xFFFFFFFF
        elif op == 0xC3:                                 # ret
            s.eip = int.from_bytes(self.read_memory(s.esp, 4), "little")
            s.esp += 4
        elif op == 0xF4:                                 # hlt: the fake machine's exit
            s.eip += 1
            return Exited(s.eax & 0xFF)
        else:
            return Crashed(f"invalid opcode {op:#04x} at {s.eip:#x}")
        return None

    def _watch(self, address: int, size: int, write: bool):
        for w in self.watchpoints:
            if not w.covers(address, size):
                continue
            if w.kind is WatchKind.ACCESS:
                return WatchpointHit(address, WatchKind.ACCESS)
            if (w.kind is WatchKind.WRITE) == write:
                return WatchpointHit(address, w.kind)
        return None
