"""Lazy flags in compiled traces: every flag producer the compiler inlines,
at every width and with edge-case operands, read by every kind of
consumer (Jcc as a skipped section and as a trace exit, SETcc, CMOVcc,
ADC/SBB, PUSHF, LAHF, a fault right after, the end of the trace), must give
what the interpreter gives."""
import random
import struct

import pytest

from ringvisor.exits import Halt
from cpu_rig import Rig

DATA = 0x60000
EDGES = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
         0xFFFFFFFE, 0xFFFFFFFF, 0x12345678)

# Producers as (name, bytes) on EAX (and EBX); widths by prefix/opcode.
PRODUCERS = []
for op, base in (("add", 0x00), ("or", 0x08), ("adc", 0x10), ("sbb", 0x18), ("and", 0x20),
                 ("sub", 0x28), ("xor", 0x30), ("cmp", 0x38)):
    PRODUCERS += [(f"{op} al,bl", bytes([base, 0xD8])), (f"{op} ax,bx", bytes([0x66, base + 1, 0xD8])),
                  (f"{op} eax,ebx", bytes([base + 1, 0xD8])),
                  (f"{op} eax,imm8", bytes([0x83, 0xC0 | (base >> 3) << 3, 0x81])),
                  (f"{op} [m],eax", bytes([base + 1, 0x05]) + struct.pack("<I", DATA + 0x100))]
PRODUCERS += [("test eax,ebx", b"\x85\xd8"), ("test al,imm", b"\xa8\x81"),
              ("inc eax", b"\x40"), ("dec eax", b"\x48"), ("inc al", b"\xfe\xc0"), ("dec ax", b"\x66\x48"),
              ("neg eax", b"\xf7\xd8"), ("neg al", b"\xf6\xd8"), ("not eax", b"\xf7\xd0"),
              ("imul eax,ebx", b"\x0f\xaf\xc3"), ("imul ax,bx,imm", b"\x66\x6b\xc3\x85"),
              ("imul eax,ebx,imm", b"\x69\xc3\x01\x00\x01\x00")]
for n, r in (("rol", 0), ("ror", 1), ("shl", 4), ("shr", 5), ("sar", 7)):
    for c in (1, 4, 31):
        PRODUCERS += [(f"{n} eax,{c}", bytes([0xC1, 0xC0 | r << 3, c])),
                      (f"{n} al,{c}", bytes([0xC0, 0xC0 | r << 3, c])),
                      (f"{n} ax,{c}", bytes([0x66, 0xC1, 0xC0 | r << 3, c]))]
    PRODUCERS.append((f"{n} eax,1", bytes([0xD1, 0xC0 | r << 3])))

STORE_CL = b"\x88\x0d"        # mov [disp32], cl


def consumers(i: int) -> list[bytes]:
    """Consumer sequences; each leaves something in memory at DATA + 16*i…"""
    at = lambda k: struct.pack("<I", DATA + 16 * i + k)
    out = []
    for cc in range(16):
        out.append(bytes([0x0F, 0x90 + cc, 0xC1]) + STORE_CL + at(cc & 7))                  # setcc cl
        out.append(b"\xb9\x00\x00\x00\x00" + bytes([0x70 + cc, 7]) + b"\xc6\x05" + at(8) + b"\x01")  # jcc skip
        out.append(b"\x8b\x0d" + at(12) + bytes([0x0F, 0x40 + cc, 0xCB]) + b"\x89\x0d" + at(12))  # cmovcc
    out.append(b"\x9c\x59\x89\x0d" + at(4))                                              # pushfd; pop ecx
    out.append(b"\x9f\x88\x25" + at(0))                                                  # lahf; mov [m],ah
    out.append(b"\x83\xd1\x05\x89\x0d" + at(8))                                          # adc ecx,5
    out.append(b"\x83\xd9\x05\x89\x0d" + at(8))                                          # sbb ecx,5
    out.append(b"\x0f\x42\xcb\x89\x0d" + at(12))                                         # cmovb ecx,ebx
    return out


def run(code: bytes, regs: dict, blocks: bool):
    rig = Rig()
    rig.protected(code, **regs)
    rig.write(DATA, bytes(range(256)) * 16)
    rig.cpu.use_blocks = blocks
    e = rig.run(200_000)
    c = rig.cpu
    return type(e).__name__, list(c.r), c.eip, c.flags, c.instructions, rig.mem.read(DATA, 0x1000)


@pytest.mark.parametrize("name,producer", PRODUCERS, ids=[p[0] for p in PRODUCERS])
def test_producer_with_every_consumer(name, producer):
    rng = random.Random(name)
    code = b""
    for consumer in consumers(0) * 2:
        a, b = rng.choice(EDGES), rng.choice(EDGES + (rng.getrandbits(32),))
        code += b"\xb8" + struct.pack("<I", a) + b"\xbb" + struct.pack("<I", b)
        code += b"\x89\x05" + struct.pack("<I", DATA + 0x100)                            # [m] = a
        code += bytes([0xF9 if rng.random() < 0.5 else 0xF8])                            # stc/clc
        code += producer + consumer
    code += b"\xf4"
    regs = {"ecx": 0x11223344, "edx": 0, "esi": 0, "edi": 0}
    assert run(code, regs, False) == run(code, regs, True)


@pytest.mark.parametrize("name,producer", PRODUCERS[::3], ids=[p[0] for p in PRODUCERS[::3]])
def test_flags_at_a_fault_and_at_the_end_of_a_trace(name, producer):
    # The producer's flags must be exact in the #GP frame of the next
    # instruction (a write through a read-only segment) and at a trace exit.
    from ringvisor.exits import Fault
    out = []
    for blocks in (False, True):
        rig = Rig()
        rig.protected(b"\xb8\x85\x00\x00\x80\xbb\x03\x00\x00\x00" + producer + b"\xeb\x00" + producer
                      + b"\x2e\x89\x05" + struct.pack("<I", DATA) + b"\xf4")     # mov cs:[m], eax: #GP
        rig.cpu.use_blocks = blocks
        rig.intercept(13)
        e = rig.run(1000)
        assert isinstance(e, Fault) and e.vector == 13
        out.append((list(rig.cpu.r), rig.cpu.eip, rig.cpu.flags, rig.cpu.instructions))
    assert out[0] == out[1]
    _ = Halt
