"""The block compiler against the reference interpreter: random instruction
sequences must leave identical state (registers, all flags, memory, counts)."""
import random
import struct

import pytest

from ringvisor.exits import Fault, Halt
from cpu_rig import CODE, Rig, asm

DATA = 0x60000
REGS = [0, 1, 2, 3, 5, 6, 7]          # never ESP


def modrm(rng, reg=None):
    reg = rng.choice(REGS) if reg is None else reg
    if rng.random() < 0.3:
        return bytes([0x05 | reg << 3]) + struct.pack("<I", DATA + rng.randrange(0, 256, 4))
    return bytes([0xC0 | reg << 3 | rng.choice(REGS)])


def random_insn(rng):
    c = rng.randrange(24)
    if c == 22:
        return b"\xe8\x00\x00\x00\x00" + bytes([0x58 + rng.choice(REGS)])   # call +0; pop r
    if c == 23:
        return b"\xeb\x00"                                 # jmp +0 (followed by blocks)
    if c < 5:
        op = rng.choice([0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38]) + rng.randrange(4)
        return bytes([op]) + modrm(rng)
    if c == 5:
        return bytes([0x81, 0]) [:1] + modrm(rng, rng.randrange(8)) + struct.pack("<I", rng.getrandbits(32))
    if c == 6:
        return b"\x83" + modrm(rng, rng.randrange(8)) + bytes([rng.getrandbits(8)])
    if c == 7:
        return bytes([rng.choice([0x40, 0x48]) + rng.choice(REGS)])
    if c == 8:
        return bytes([rng.choice([0xC1, 0xD1, 0xD3])]) + modrm(rng, rng.randrange(8)) + \
            (bytes([rng.getrandbits(5)]) if True else b"")
    if c == 9:
        return bytes([0x88 + rng.randrange(4)]) + modrm(rng)
    if c == 10:
        return bytes([0xB8 + rng.choice(REGS)]) + struct.pack("<I", rng.getrandbits(32))
    if c == 11:
        return bytes([rng.choice([0x84, 0x85, 0x87, 0x8D])]) + modrm(rng)
    if c == 12:
        return b"\x0f" + bytes([rng.choice([0xB6, 0xB7, 0xBE, 0xBF, 0xAF, 0xA3, 0xBC, 0xBD])]) + modrm(rng)
    if c == 13:
        return b"\x0f" + bytes([0x90 + rng.randrange(16)]) + modrm(rng)
    if c == 14:
        return b"\x0f" + bytes([0x40 + rng.randrange(16)]) + modrm(rng)
    if c == 15:
        return b"\xf7" + modrm(rng, rng.choice([2, 3, 4, 5]))
    if c == 16:
        r = rng.choice(REGS)
        return bytes([0x50 + r, 0x58 + rng.choice(REGS)])
    if c == 17:
        return bytes([0x70 + rng.randrange(16), 0])          # Jcc +0: a block end
    if c == 18:
        return b"\x66" + bytes([rng.choice([0x01, 0x29, 0x31, 0x89, 0x8B])]) + modrm(rng)
    if c == 19:
        return bytes([rng.choice([0xF8, 0xF9, 0xF5, 0x9C, 0x98, 0x99, 0x27, 0x2F, 0x37, 0x3F])]) + \
            (b"\x58" if False else b"")
    if c == 20:
        return b"\x0f" + bytes([0xC8 + rng.choice(REGS)])
    return bytes([0x0F, rng.choice([0xA4, 0xAC])]) + modrm(rng) + bytes([rng.getrandbits(5)])


def program(seed):
    rng = random.Random(seed)
    code = b""
    for _ in range(rng.randrange(5, 60)):
        ins = random_insn(rng)
        if ins == b"\x9c":
            ins = b"\x9c\x58"            # pushfd; pop eax
        code += ins
    return code + b"\xf4", rng


def run(code, seed, blocks):
    rng = random.Random(seed ^ 0x5A5A)
    rig = Rig()
    regs = {n: rng.getrandbits(32) for n in ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp")}
    rig.protected(code, eflags=0x2 | rng.getrandbits(1) | (rng.getrandbits(1) << 11), **regs)
    rig.write(DATA, bytes(rng.getrandbits(8) for _ in range(260)))
    rig.cpu.use_blocks = blocks
    rig.intercept(*range(32))
    e = rig.run(10_000)
    c = rig.cpu
    return (type(e).__name__, getattr(e, "vector", None), list(c.r), c.eip, c.flags,
            c.instructions, rig.mem.read(DATA, 260), rig.mem.read(0x7FF00, 0x100))


@pytest.mark.parametrize("seed", range(150))
def test_compiled_equals_interpreted(seed):
    code, _ = program(seed)
    assert run(code, seed, False) == run(code, seed, True)


def test_fault_inside_block_rolls_back_exactly():
    # The third instruction faults (#PF on an unmapped page): EIP/ESP/count as the interpreter.
    code = b"\x50\x01\xd8\x8b\x05\x00\x00\x40\x00\x40\xf4"   # push eax; add eax,ebx; mov eax,[0x400000]
    out = []
    for blocks in (False, True):
        rig = Rig()
        rig.protected(code, eax=5, ebx=7)
        rig.identity_paging()
        rig.enable_paging()
        rig.cpu.use_blocks = blocks
        rig.intercept(14)
        e = rig.run()
        assert isinstance(e, Fault) and e.vector == 14
        out.append((rig.cpu.eip, rig.cpu.r[4], rig.cpu.r[0], rig.cpu.instructions, rig.cpu.flags))
    assert out[0] == out[1] and out[0][0] == CODE + 3


def test_blocks_are_reused_and_invalidated():
    rig = Rig()
    rig.protected(b"\x40\x43\xeb\xfc")                      # inc eax; inc ebx; jmp -4 (loop)
    rig.run(1000)
    assert rig.cpu.blocks.compiled <= 3           # reused, not recompiled per pass
    rig.mem.write(CODE, b"\x48")                           # host write: dec eax
    a = rig.cpu.r[0]
    rig.run(300)
    assert rig.cpu.r[0] < a
    _ = Halt


def test_tsc_counts_instructions_exactly_in_blocks():
    out = []
    for blocks in (False, True):
        rig = Rig()
        rig.protected(b"\x40\x40\x40\x0f\x31\x89\xc3\x40\x0f\x31\xf4")  # inc x3; rdtsc; mov ebx,eax; inc; rdtsc
        rig.cpu.use_blocks = blocks
        rig.run()
        out.append((rig.cpu.r[3], rig.cpu.r[0], rig.cpu.instructions))
    assert out[0] == out[1] and out[0][:2] == (3, 6)


def test_stack_write_over_code_in_the_running_block():
    # ESP points into the code page: the CALL's push overwrites the next
    # instructions of the same (followed) block; both paths must agree.
    code = bytes.fromhex("e800000000" "90" * 6 + "b801000000" "f4")
    out = []
    for blocks in (False, True):
        rig = Rig()
        rig.protected(code)
        rig.cpu.r[4] = CODE + 15
        rig.cpu.use_blocks = blocks
        rig.intercept(*range(32))
        e = rig.run(1000)
        out.append((type(e).__name__, rig.cpu.eip, list(rig.cpu.r), rig.cpu.instructions))
    assert out[0] == out[1]


@pytest.mark.parametrize("paging", [False, True])
def test_misaligned_accesses_on_fast_pages(paging):
    # A loop (compiled, its data page learned by the fast path) reading and
    # writing words and dwords at every alignment, the last ones across the
    # page boundary: the fast path must send each misaligned one to the slow
    # path (memcode._page) and leave what the interpreter leaves.
    code = asm("""
        mov esi, 0x60FF0
    again:
        mov eax, [esi]
        add [esi + 1], eax
        movzx ebx, word ptr [esi + 3]
        xor [esi + 5], bx
        add edx, [esi + 2]
        inc dword ptr [esi + 6]
        inc esi
        cmp esi, 0x61003
        jb again
        hlt
    """)
    out = []
    for blocks in (False, True):
        rig = Rig()
        rig.protected(code)
        rig.write(0x60FE0, bytes(range(7, 7 + 0x60)))
        if paging:
            rig.identity_paging()
            rig.enable_paging()
        rig.cpu.use_blocks = blocks
        rig.cpu.blocks.hot = 1
        rig.intercept(*range(32))
        e = rig.run(10_000)
        out.append((type(e).__name__, list(rig.cpu.r), rig.cpu.eip, rig.cpu.flags,
                    rig.cpu.instructions, rig.mem.read(0x60FE0, 0x60)))
    assert out[0] == out[1] and out[0][0] == "Halt"
