"""Random structured guest programs for differential tests of compiled
traces: loops (counted, while-style with break/continue, LOOP/LOOPcc/JECXZ),
nested loops, forward skips, calls (returning normally, with RET imm16, or
to a changed return address), memory through a walking pointer (EBP) that
runs into read-only and not-present pages, stores into the code itself,
and a broad mix of flag producers and consumers."""
from __future__ import annotations

import random
import struct

CODE = 0x10000
DATA = 0x60000          # EBP walks up from here; DATA+0x3000 read-only, DATA+0x4000 absent (paging)
COUNTERS = 0x70000      # loop counters, touched only by loop control
REGS = (0, 1, 2, 3, 6, 7)
ALU = (0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38)


class Asm:
    """Bytes and labels; branches encoded with rel32 (rel8 for LOOP/JECXZ/short Jcc)."""

    def __init__(self):
        self.items: list = []
        self.n = 0

    def label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def raw(self, b: bytes) -> None:
        self.items.append(b)

    def at(self, name: str) -> None:
        self.items.append(("at", name))

    def branch(self, opcode: bytes, name: str, size: int = 4) -> None:
        self.items.append(("br", opcode, name, size))

    def assemble(self, org: int = CODE) -> bytes:
        for _ in range(3):                       # rel8 overflows become rel32 forms
            addr, labels = org, {}
            for it in self.items:
                if isinstance(it, bytes):
                    addr += len(it)
                elif it[0] == "at":
                    labels[it[1]] = addr
                else:
                    addr += len(it[1]) + it[3]
            out, addr, redo = b"", org, False
            for i, it in enumerate(self.items):
                if isinstance(it, bytes):
                    out += it
                    addr += len(it)
                elif it[0] == "br":
                    _, op, name, size = it
                    end = addr + len(op) + size
                    rel = labels[name] - end
                    if size == 1 and not -128 <= rel < 128:
                        self.items[i] = ("br", _long(op), name, 4)
                        redo = True
                        continue
                    out += op + (struct.pack("<b", rel) if size == 1 else struct.pack("<i", rel))
                    addr = end
            if not redo:
                return out
        raise AssertionError("branch relaxation did not converge")


def _long(op: bytes) -> bytes:
    if 0x70 <= op[0] <= 0x7F:
        return bytes([0x0F, 0x80 + (op[0] & 15)])
    return b"\x49\x0f\x85"                       # LOOP/JECXZ out of range: dec ecx; jnz


def modrm(rng, reg: int) -> bytes:
    """A register, [disp32] in DATA, or [ebp+disp8] (sometimes misaligned)."""
    c = rng.random()
    if c < 0.5:
        return bytes([0xC0 | reg << 3 | rng.choice(REGS)])
    if c < 0.7:
        return bytes([0x05 | reg << 3]) + struct.pack("<I", DATA + rng.randrange(0, 64, rng.choice((1, 4))))
    return bytes([0x45 | reg << 3, rng.randrange(0, 125, rng.choice((1, 2, 4)))])


def insn(rng, code_len: int) -> bytes:
    r = lambda: rng.choice(REGS)
    c = rng.randrange(40)
    if c < 8:
        return bytes([rng.choice(ALU) + rng.randrange(4)]) + modrm(rng, r())
    if c < 10:
        return bytes([0x83]) + modrm(rng, rng.randrange(8)) + bytes([rng.getrandbits(8)])
    if c == 10:
        return bytes([0x81]) + modrm(rng, rng.randrange(8)) + struct.pack("<I", rng.getrandbits(32))
    if c == 11:
        return bytes([rng.choice(ALU) + 4, rng.getrandbits(8)])
    if c == 12:
        return b"\x66" + bytes([rng.choice(ALU) + rng.randrange(4)]) + modrm(rng, r())
    if c == 13:
        return bytes([rng.choice((0x40, 0x48)) + r()])
    if c == 14:
        return bytes([rng.choice((0xFE, 0xFF))]) + modrm(rng, rng.randrange(2))
    if c == 15:
        return bytes([rng.choice((0xF6, 0xF7))]) + modrm(rng, rng.choice((2, 3)))
    if c == 16:
        return bytes([rng.choice((0xC0, 0xC1))]) + modrm(rng, rng.randrange(8)) + bytes([rng.randrange(34)])
    if c == 17:
        return bytes([rng.choice((0xD0, 0xD1, 0xD2, 0xD3))]) + modrm(rng, rng.randrange(8))
    if c == 18:
        return b"\x0f\xaf" + modrm(rng, r())
    if c == 19:
        return rng.choice((b"\x6b" + modrm(rng, r()) + bytes([rng.getrandbits(8)]),
                           b"\x69" + modrm(rng, r()) + struct.pack("<I", rng.getrandbits(32))))
    if c == 20:
        return bytes([0x88 + rng.randrange(4)]) + modrm(rng, r())
    if c == 21:
        return bytes([0xB8 + r()]) + struct.pack("<I", rng.getrandbits(32))
    if c == 22:
        return rng.choice((b"\xc7" + modrm(rng, 0) + struct.pack("<I", rng.getrandbits(32)),
                           b"\xc6" + modrm(rng, 0) + bytes([rng.getrandbits(8)]),
                           bytes([rng.choice((0xA0, 0xA1, 0xA2, 0xA3))]) + struct.pack("<I", DATA + 8)))
    if c == 23:
        return b"\x0f" + bytes([rng.choice((0xB6, 0xB7, 0xBE, 0xBF))]) + modrm(rng, r())
    if c == 24:                                              # lea r, [base + index*scale + disp8]
        return b"\x8d" + bytes([0x44 | r() << 3, rng.randrange(4) << 6 | rng.choice(REGS) << 3 | r(),
                                rng.getrandbits(8)])
    if c == 25:
        return bytes([rng.choice((0x86, 0x87))]) + modrm(rng, r())
    if c == 26:
        return bytes([0x50 + r(), 0x58 + r()]) if rng.random() < 0.5 else \
            rng.choice((b"\x6a" + bytes([rng.getrandbits(8)]), b"\x68" + struct.pack("<I", rng.getrandbits(32)),
                        b"\xff" + modrm(rng, 6))) + bytes([0x58 + r()])
    if c == 27:
        return b"\x0f" + bytes([0x90 + rng.randrange(16)]) + modrm(rng, 0)
    if c == 28:
        return b"\x0f" + bytes([0x40 + rng.randrange(16)]) + modrm(rng, r())
    if c == 29:
        return bytes([rng.choice((0xF8, 0xF9, 0xF5, 0x9E, 0x9F, 0x98, 0x99, 0x90))])
    if c == 30:
        return b"\x9c" + bytes([0x58 + r()])                # pushfd; pop r
    if c == 31:
        return b"\x0f" + bytes([0xC8 + r()])
    if c == 32:
        return b"\x0f" + bytes([rng.choice((0xA3, 0xAB, 0xBC, 0xBD, 0xA5, 0xAD))]) + modrm(rng, r())
    if c == 33:
        return bytes([0x70 + rng.randrange(16), 0])         # jcc +0
    if c == 34:
        return b"\x83\xc5" + bytes([rng.choice((1, 2, 4, 4, 4, 8))])      # add ebp, k (walk)
    if c == 35:
        return b"\x8d\x6d" + bytes([rng.choice((4, 4, 16))])               # lea ebp, [ebp+k]
    if c == 36 and rng.random() < 0.3:
        # A store into the program itself (self-modifying code).
        return b"\xc6\x05" + struct.pack("<I", CODE + rng.randrange(max(code_len, 1))) + \
            bytes([rng.choice((0x90, 0x40, 0x48, 0x43, rng.getrandbits(8)))])
    if c == 37:
        return b"\xf7" + modrm(rng, rng.choice((4, 5, 6)))              # MUL IMUL DIV
    if c == 38:
        if rng.random() < 0.5:
            return b"\x66\xc1" + modrm(rng, rng.randrange(8)) + bytes([rng.randrange(20)])
        return b"\x66" + bytes([rng.choice((0x89, 0x8B))]) + modrm(rng, r())
    return bytes([rng.choice((0x91, 0x92, 0x93, 0x96, 0x97))])           # xchg eax, r


class Ctx:
    def __init__(self):
        self.loops: list = []       # (head label or None, end label)
        self.counters = 0
        self.functions: list = []


def body(rng, asm: Asm, ctx: Ctx, depth: int) -> None:
    for _ in range(rng.randrange(1, 6)):
        c = rng.random()
        if depth < 3 and c < 0.10:
            counted_loop(rng, asm, ctx, depth)
        elif depth < 3 and c < 0.17:
            while_loop(rng, asm, ctx, depth)
        elif depth < 3 and c < 0.21:
            ecx_loop(rng, asm, ctx, depth)
        elif c < 0.29:
            end = asm.label()
            if rng.random() < 0.3:
                asm.branch(bytes([0x70 + rng.randrange(16)]), end, 1)
            else:
                asm.branch(bytes([0x0F, 0x80 + rng.randrange(16)]), end)
            body(rng, asm, ctx, depth + 1)
            asm.at(end)
        elif c < 0.33 and ctx.loops:
            head, end = rng.choice(ctx.loops)
            if head is not None and rng.random() < 0.5:
                asm.branch(bytes([0x0F, 0x80 + rng.randrange(16)]), head)      # continue
            else:
                asm.branch(bytes([0x0F, 0x80 + rng.randrange(16)]), end)       # break
        elif c < 0.37:
            call(rng, asm, ctx)
        else:
            asm.raw(insn(rng, len(asm.items) * 4))


def _counter(ctx: Ctx, n: int, asm: Asm) -> bytes:
    addr = COUNTERS + 4 * ctx.counters
    ctx.counters += 1
    asm.raw(b"\xc7\x05" + struct.pack("<II", addr, n))
    return struct.pack("<I", addr)


def counted_loop(rng, asm, ctx, depth) -> None:
    cnt = _counter(ctx, rng.randrange(1, 12), asm)
    head, end = asm.label(), asm.label()
    asm.at(head)
    ctx.loops.append((None, end))
    body(rng, asm, ctx, depth + 1)
    ctx.loops.pop()
    asm.raw(b"\xff\x0d" + cnt)                                # dec dword [cnt]
    asm.branch(b"\x0f\x85", head)                             # jnz head
    asm.at(end)


def while_loop(rng, asm, ctx, depth) -> None:
    cnt = _counter(ctx, rng.randrange(0, 12), asm)
    head, end = asm.label(), asm.label()
    asm.at(head)
    asm.raw(b"\x83\x2d" + cnt + b"\x01")                      # sub dword [cnt], 1
    asm.branch(b"\x0f\x82", end)                              # jb end
    ctx.loops.append((head, end))
    body(rng, asm, ctx, depth + 1)
    ctx.loops.pop()
    asm.branch(b"\xe9", head)
    asm.at(end)


def ecx_loop(rng, asm, ctx, depth) -> None:
    asm.raw(b"\xb9" + struct.pack("<I", rng.randrange(0, 9)))
    head, end = asm.label(), asm.label()
    if rng.random() < 0.3:
        asm.branch(b"\xe3", end, 1)                           # jecxz end
    asm.at(head)
    ctx.loops.append((None, end))
    for _ in range(rng.randrange(1, 4)):
        asm.raw(insn(rng, 0))
    ctx.loops.pop()
    asm.branch(bytes([rng.choice((0xE2, 0xE2, 0xE1, 0xE0))]), head, 1)
    asm.at(end)


def call(rng, asm, ctx) -> None:
    name = asm.label()
    kind = rng.choice(("plain", "plain", "imm", "skip"))
    ctx.functions.append((name, kind))
    if kind == "imm":
        asm.raw(b"\x6a" + bytes([rng.getrandbits(7)]))        # push arg
    asm.branch(b"\xe8", name)
    if kind == "skip":
        asm.raw(b"\xb8" + struct.pack("<I", 0x11111111))      # skipped by the changed return address


def functions(rng, asm, ctx) -> None:
    i = 0
    while i < len(ctx.functions):
        name, kind = ctx.functions[i]
        asm.at(name)
        for _ in range(rng.randrange(0, 4)):
            asm.raw(insn(rng, 0))
        if kind == "skip":
            asm.raw(b"\x83\x04\x24\x05")                      # add dword [esp], 5
        asm.raw(b"\xc2\x04\x00" if kind == "imm" else b"\xc3")
        i += 1


def program(seed: int) -> bytes:
    rng = random.Random(seed)
    asm = Asm()
    ctx = Ctx()
    asm.raw(b"\xbd" + struct.pack("<I", DATA + 0x2F00 + rng.randrange(0, 0x100, 4)))   # mov ebp
    body(rng, asm, ctx, 0)
    body(rng, asm, ctx, 0)
    asm.raw(b"\xf4")
    functions(rng, asm, ctx)
    return asm.assemble()
