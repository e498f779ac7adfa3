"""Runs x87 instruction sequences on the host's FPU (harness.c) and on the soft
FPU, and reports what differs.

A case is a start image in FRSTOR's 108-byte layout, EFLAGS, 512 bytes of
memory at the operand address, and a few instructions, each (opcode, modrm,
o16): modrm >= 0xC0 is a register form; otherwise a memory form whose reg
field selects the instruction and whose operand is at DATA_ADDR (encoded for
the 64-bit host as [disp32] through a SIB byte: ModRM 0x04 | reg << 3, which is
also the FOP the silicon records). The harness runs in 64-bit user mode; x87
semantics, the protected-mode FNSAVE layout included, do not depend on it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ringvisor.cpu.x87 import environment as env
from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.execute import DONE, MF, execute
from ringvisor.cpu.x87.state import Fpu

HARNESS = Path(__file__).with_name("harness.c")
CODE_ADDR = 0x20000000
DATA_ADDR = 0x30000000
DATA_SIZE = 1024
OPERAND_SIZE = 512
IMAGE_IN, IMAGE_OUT = 512, 640
EFLAGS_IN, EFLAGS_OUT, RAX_OUT = 768, 776, 784
EFLAGS_STATUS = 0x8D5
RESULT_SIZE = 16 + DATA_SIZE + 512
# What the host stores for FCS and FDS in 64-bit mode is learnt from the first
# result (selectors or zero, by vendor) and given to the soft FPU.


class HarnessUnavailable(RuntimeError):
    pass


def build_harness() -> Path:
    """Compile harness.c once per source version (cached in the temp dir)."""
    source = HARNESS.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"ringvisor-x87-harness-{digest}"
    if target.exists():
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise HarnessUnavailable("gcc is not installed")
    tmp = target.with_suffix(f".{os.getpid()}")
    proc = subprocess.run([gcc, "-O1", "-o", str(tmp), str(HARNESS)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise HarnessUnavailable(proc.stderr.strip().splitlines()[-1])
    os.replace(tmp, target)
    return target


@dataclass
class Case:
    image: bytes                        # 108 bytes, FRSTOR layout (32-bit, protected)
    insns: list                         # [(opcode, modrm, o16)]
    memory: bytes = bytes(OPERAND_SIZE)
    eflags: int = 0


@dataclass
class Outcome:
    fault: int | None                   # index of the instruction that raised #MF
    image: bytes                        # FNSAVE layout (or the fault state in it)
    eflags: int
    ax: int
    memory: bytes
    notes: list = field(default_factory=list)


def _abs32(value: int) -> bytes:
    return struct.pack("<I", value)


def encode(opcode: int, modrm: int, o16: bool) -> bytes:
    prefix = b"\x66" if o16 else b""
    if opcode == 0x9B:
        return b"\x9b"
    if modrm >= 0xC0:
        return prefix + bytes((opcode, modrm))
    return prefix + bytes((opcode, 0x04 | (modrm & 0x38), 0x25)) + _abs32(DATA_ADDR)


def assemble(insns) -> tuple[bytes, list[int]]:
    """The case's code and the address of each instruction under test."""
    code = bytearray()
    code += b"\xdb\xe3"                                         # fninit
    code += b"\xdd\x24\x25" + _abs32(DATA_ADDR + IMAGE_IN)      # frstor [in]
    code += b"\x48\x8b\x04\x25" + _abs32(DATA_ADDR + EFLAGS_IN)  # mov rax,[eflags]
    code += b"\x50\x31\xc0\x9d"                                 # push rax; xor eax,eax; popfq
    addresses = []
    for opcode, modrm, o16 in insns:
        addresses.append(CODE_ADDR + len(code))
        code += encode(opcode, modrm, o16)
    code += b"\x9c\x5a"                                         # pushfq; pop rdx
    code += b"\x48\x89\x14\x25" + _abs32(DATA_ADDR + EFLAGS_OUT)
    code += b"\x48\x89\x04\x25" + _abs32(DATA_ADDR + RAX_OUT)
    code += b"\xdd\x34\x25" + _abs32(DATA_ADDR + IMAGE_OUT)     # fnsave [out]
    code += b"\xc3"
    return bytes(code), addresses


def run_silicon(cases: list[Case], harness: Path | None = None) -> list[Outcome]:
    harness = harness or build_harness()
    stream = bytearray()
    layouts = []
    for case in cases:
        code, addresses = assemble(case.insns)
        layouts.append(addresses)
        data = bytearray(DATA_SIZE)
        data[:OPERAND_SIZE] = case.memory
        data[IMAGE_IN:IMAGE_IN + 108] = case.image
        data[EFLAGS_IN:EFLAGS_IN + 8] = struct.pack("<Q", case.eflags & EFLAGS_STATUS | 2)
        stream += struct.pack("<I", len(code)) + code + data
    proc = subprocess.run([str(harness)], input=bytes(stream), capture_output=True)
    if proc.returncode or len(proc.stdout) != RESULT_SIZE * len(cases):
        raise HarnessUnavailable(f"x87 harness failed: {proc.stderr.decode().strip()}")
    outcomes = []
    for n, addresses in enumerate(layouts):
        chunk = proc.stdout[n * RESULT_SIZE:(n + 1) * RESULT_SIZE]
        status, sig, rip = struct.unpack_from("<IIQ", chunk)
        data = chunk[16:16 + DATA_SIZE]
        fx = chunk[16 + DATA_SIZE:]
        if status == 0:
            eflags, rax = struct.unpack_from("<QQ", data, EFLAGS_OUT)
            outcomes.append(Outcome(None, bytes(data[IMAGE_OUT:IMAGE_OUT + 108]),
                                    eflags & EFLAGS_STATUS, rax & 0xFFFF,
                                    bytes(data[:OPERAND_SIZE])))
        elif status == 1:
            index = addresses.index(rip) if rip in addresses else -1
            outcomes.append(Outcome(index, fxsave_as_image(fx), -1, -1,
                                    bytes(data[:OPERAND_SIZE])))
        else:
            raise HarnessUnavailable(f"x87 harness: signal {sig} at {rip:#x}")
    return outcomes


def fxsave_as_image(fx: bytes) -> bytes:
    """The FXSAVE image the kernel delivered with SIGFPE, re-expressed in the
    FNSAVE layout (full tags computed from the registers, as silicon would)."""
    fcw, fsw, ftw_abridged, fop, fip, fdp = struct.unpack_from("<HHBxHQQ", fx)
    fpu = Fpu()
    fpu.cw, fpu.fop, fpu.fip, fpu.fdp = fcw, fop & 0x7FF, fip & 0xFFFFFFFF, fdp & 0xFFFFFFFF
    fpu.set_status_word(fsw)
    fpu.valid = ftw_abridged
    for i in range(8):
        raw = int.from_bytes(fx[32 + 16 * i:32 + 16 * i + 10], "little")
        fpu.regs[(fpu.top + i) & 7] = raw
    buf = Buffer(bytearray(108), 0, 0)
    env.store_env(fpu, buf, True, True)
    for i in range(8):
        buf.write(28 + 10 * i, 10, fpu.st(i))
    return bytes(buf.data)


class Buffer:
    """The operand-access object over a bytearray (the protocol the CPU gives)."""

    __slots__ = ("data", "ea", "seg")

    def __init__(self, data: bytearray, ea: int, seg: int):
        self.data, self.ea, self.seg = data, ea, seg

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int):
        self.data[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


class Context:
    """What the CPU tells the FPU: CR0, CS:EIP, operand size, mode, EFLAGS, AX."""

    __slots__ = ("cr0", "cs", "eip", "o32", "protected", "eflags", "ax")

    def __init__(self, cr0=0x33, cs=0, eip=0, o32=True, protected=True, eflags=2, ax=0):
        self.cr0, self.cs, self.eip, self.o32 = cr0, cs, eip, o32
        self.protected, self.eflags, self.ax = protected, eflags, ax


def run_soft(case: Case, cs: int = 0x33, ds: int = 0) -> Outcome:
    fpu = Fpu()
    ctx = Context(eflags=case.eflags & EFLAGS_STATUS | 2)
    env.frstor(fpu, None, Buffer(bytearray(case.image), 0, 0), ctx)
    memory = Buffer(bytearray(case.memory), DATA_ADDR, ds)
    _, addresses = assemble(case.insns)
    fault = None
    notes = []
    for n, ((opcode, modrm, o16), address) in enumerate(zip(addresses and case.insns, addresses)):
        ctx.eip, ctx.cs, ctx.o32 = address, cs, not o16
        if modrm < 0xC0:
            modrm = 0x04 | (modrm & 0x38)
        if outside_domain(fpu, opcode, modrm):
            notes.append("outside the SDM's domain")
        outcome = execute(fpu, opcode, modrm, memory if modrm < 0xC0 and opcode != 0x9B else None, ctx)
        if outcome == MF:
            fault = n
            break
        if outcome != DONE:
            raise AssertionError(f"soft FPU outcome {outcome} for {opcode:02x} {modrm:02x}")
    image = Buffer(bytearray(108), 0, 0)
    ctx.o32 = True
    env.store_env(fpu, image, True, True)
    for i in range(8):
        image.write(28 + 10 * i, 10, fpu.st(i))
    if fault is not None:
        return Outcome(fault, bytes(image.data), -1, -1, bytes(memory.data), notes)
    return Outcome(None, bytes(image.data), ctx.eflags & EFLAGS_STATUS, ctx.ax,
                   bytes(memory.data), notes)


# F2XM1 is defined for -1 <= x <= 1, FYL2XP1 for |x| < 1 - sqrt(2)/2 (SDM vol. 2):
# outside, silicon's result is undefined and not compared as a divergence.
FYL2XP1_LIMIT = 0x3FFD << 64 | 0x95F619980C4336F7      # 1 - sqrt(2)/2, rounded down


def outside_domain(fpu, opcode: int, modrm: int) -> bool:
    if opcode != 0xD9 or modrm not in (0xF0, 0xF9) or fpu.is_empty(0):
        return False
    raw = fpu.st(0)
    cls = f80.classify(raw)
    if cls not in (f80.NORMAL, f80.DENORMAL, f80.INF):
        return False
    magnitude = raw & ~f80.SIGN
    if cls == f80.INF:
        return True
    if modrm == 0xF0:
        return magnitude > f80.ONE
    return magnitude > FYL2XP1_LIMIT
