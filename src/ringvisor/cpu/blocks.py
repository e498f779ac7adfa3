"""Block compilation: each guest basic block is decoded once (through the
same opcode table and decoder as the interpreter) and turned into one Python
function by generating source and exec'ing it.

* Cache key: (physical address, mode bits: CS base/limit, code/stack size,
  CPL, PE). The block never crosses a 4 KiB page, so the one translation of
  its start made on every entry validates it: CR3 loads, INVLPG and CR0/CR4
  changes need no flush of the cache itself (the TLB is flushed as usual).
* Self-modifying code: the physical pages holding blocks are tracked; a write
  to one (Core.wr_phys) drops that page's blocks and raises `cpu.smc`, which
  the generated code checks after every instruction that may write memory,
  leaving the block at the next instruction boundary.
* Common forms (MOV, the ALU group, INC/DEC, LEA, PUSH/POP reg, Jcc/JMP)
  are inlined; everything else calls its table handler, as the interpreter
  does. Flags are computed lazily in the sense that a flag result which the
  next instruction of the block overwrites before any reads is never
  computed (dead-flag elimination).
* Writes the CPU does not see (a loader, device DMA) are caught by comparing
  the block's bytes with memory on entry (one slice compare).
* Faults: the generated function records which instruction faulted so the
  engine rolls EIP/ESP back exactly as the interpreter would; the retired
  instruction count is exact.
"""
from __future__ import annotations

from ringvisor.cpu import flags as FL
from ringvisor.cpu.core import CS, CpuFault
from ringvisor.cpu.opcodes import ENDS_BLOCK
from ringvisor.cpu.protection import CHECKED, check
from ringvisor.cpu.shift import SHIFT_COMPUTE

MAX_INSNS = 48
ALU = {"ADD", "SUB", "AND", "OR", "XOR", "CMP", "TEST", "ADC", "SBB"}
# Mnemonics that write every status flag without reading any.
WRITES_ALL = {"ADD", "SUB", "AND", "OR", "XOR", "CMP", "TEST", "NEG"}
# (SHL/SHR with a non-zero count also write them all but are not listed:
# a zero count writes none.)
# Mnemonics that neither read nor write flags (safe to skip over when
# looking for the next flag consumer).
FLAG_NEUTRAL = {"MOV", "LEA", "MOVZX", "MOVSX", "XCHG", "NOP", "NOT", "BSWAP",
                "CBW", "CWD"}
COND_EXPR = {0: "f & 0x800", 2: "f & 1", 4: "f & 0x40", 6: "f & 0x41", 8: "f & 0x80", 10: "f & 4",
             12: "((f >> 7) ^ (f >> 11)) & 1", 14: "(f & 0x40) or (((f >> 7) ^ (f >> 11)) & 1)"}
MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class Block:
    __slots__ = ("fn", "n", "page", "key", "source", "code", "lo", "hi")


class BlockCache:
    def __init__(self, cpu):
        self.cpu = cpu
        self.blocks: dict = {}
        self.page_blocks: dict[int, list] = {}
        self.compiled = 0
        cpu.smc = False
        cpu.code_written = self.code_written

    def clear(self) -> None:
        self.blocks.clear()
        self.page_blocks.clear()
        self.cpu.code_pages.clear()

    def code_written(self, p: int, n: int) -> None:
        cpu = self.cpu
        for page in {p >> 12, (p + n - 1) >> 12}:
            keys = self.page_blocks.pop(page, None)
            if keys:
                for k in keys:
                    self.blocks.pop(k, None)
            cpu.code_pages.discard(page)
        cpu.smc = True

    def run(self, target: int) -> None:
        """Run blocks back to back until the budget is spent or something the
        engine loop must see happens (HLT, interrupt shadow, a pending
        interrupt with IF=1)."""
        cpu = self.cpu
        blocks = self.blocks
        intr = cpu.interrupts
        sbase, shi = cpu.sbase, cpu.shi
        while True:
            eip = cpu.eip
            lin = (sbase[CS] + eip) & 0xFFFFFFFF
            # A fetch fault here belongs to the instruction at eip: the engine
            # rolls back to cur_eip/cur_esp, so they must describe it.
            cpu.cur_eip, cpu.cur_esp = eip, cpu.r[4]
            p = cpu.translate(lin, 0, cpu.user) if cpu.pg else lin
            key = (p, eip, sbase[CS], shi[CS], cpu.code32, cpu.stack32, cpu.cpl, cpu.pe)
            b = blocks.get(key)
            if b is not None and cpu.mm[b.lo:b.hi] != b.code:
                b = None                      # written behind our back (DMA, loader)
            if b is None:
                b = self.compile(key, p, lin)
                if b is None:
                    cpu.step()
                    return
            if b.n > target - cpu.instructions:
                cpu.step()                    # keep the instruction budget exact
                return
            cpu.smc = False
            b.fn(cpu)
            if cpu.halted or cpu.shadow or cpu.instructions >= target:
                return
            if intr is not None and cpu.flags & 0x200 and intr.pending():
                return

    # --- compilation ---------------------------------------------------------------
    def compile(self, key, p: int, lin: int):
        cpu = self.cpu
        if p >= cpu.ramsize:
            return None                       # code in MMIO/unbacked space: interpret
        eip = cpu.eip
        insns = []
        mask = 0xFFFFFFFF if cpu.code32 else 0xFFFF
        try:
            while len(insns) < MAX_INSNS:
                l2 = (cpu.sbase[CS] + eip) & 0xFFFFFFFF
                if l2 >> 12 != lin >> 12:
                    break
                ins = cpu.decode_at(eip)
                if (l2 & 0xFFF) + ins.length > 0x1000:
                    break
                ins.eip = eip
                insns.append(ins)
                eip = (eip + ins.length) & mask
                if self._follow(ins, eip, lin, mask):
                    # Direct JMP/CALL to the same page: the block goes on at the target.
                    eip = (eip + ins.imm) & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF)
                    continue
                if ins.ud or ins.row.handler is None or ins.flags & ENDS_BLOCK or ins.rep:
                    break
        except CpuFault:
            pass
        if not insns:
            return None
        b = Block()
        b.n = len(insns)
        b.key = key
        b.page = p >> 12
        # The bytes the block was decoded from (one page; not contiguous when
        # it follows jumps), checked on every entry.
        page_base = p & ~0xFFF
        offs = [((cpu.sbase[CS] + i.eip) & 0xFFF, i.length) for i in insns]
        b.lo = page_base + min(o for o, _ in offs)
        b.hi = page_base + max(o + n for o, n in offs)
        b.code = bytes(cpu.mm[b.lo:b.hi])
        b.source, env = self._generate(insns, mask)
        exec(compile(b.source, f"<block {p:#x}>", "exec"), env)
        b.fn = env["block"]
        self.blocks[key] = b
        self.page_blocks.setdefault(b.page, []).append(key)
        cpu.code_pages.add(b.page)
        self.compiled += 1
        return b

    def _follow(self, ins, nxt, lin, mask) -> bool:
        cpu = self.cpu
        if ins.ud or ins.lock or ins.row is None or ins.row.mnemonic not in ("JMP", "CALL") \
                or ins.row.operands[0].kind != "J":
            return False
        t = (nxt + ins.imm) & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF)
        return t <= cpu.shi[CS] and ((cpu.sbase[CS] + t) & 0xFFFFFFFF) >> 12 == lin >> 12

    def _generate(self, insns, mask):
        env = {"FL": FL, "check": check, "CpuFault": CpuFault, "MASKS": MASK, "SH": SHIFT_COMPUTE}
        lines = ["def block(cpu):", " r = cpu.r", " rd = cpu.rd", " wr = cpu.wr",
                 " k = 0", " done = 0", " s = r[4]", " try:"]
        eips = []
        n = len(insns)
        esp_dirty = False
        synced = 0          # instructions already added to cpu.instructions (RDTSC sees exact counts)
        for idx, ins in enumerate(insns):
            eips.append(ins.eip)
            nxt = (ins.eip + ins.length) & mask
            env[f"i{idx}"] = ins
            last = idx == n - 1
            lines.append(f"  k = {idx}")
            if not last and self._follow(ins, nxt, (self.cpu.sbase[CS] + ins.eip) & 0xFFFFFFFF, mask):
                if ins.row.mnemonic == "CALL":
                    lines += ["  " + x for x in ["s = r[4]"] + _push_code(self.cpu.stack32, str(nxt), ins.osz)]
                    t = (nxt + ins.imm) & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF)
                    lines += ["  if cpu.smc:", f"   cpu.eip = {t}",
                              f"   cpu.instructions += {idx + 1 - synced}", "   return"]
                    esp_dirty = True
                continue
            body = None if ins.ud or ins.flags & CHECKED else self._inline(ins, idx, insns, nxt, last)
            m = ins.row.mnemonic if ins.row else ""
            # `s` must hold ESP as it was before the instruction that faults.
            if body is not None and (esp_dirty or any("r[4] =" in x for x in body)) \
                    and body[0] != "s = r[4]":
                body.insert(0, "s = r[4]")
            esp_dirty = body is None or any("r[4] =" in x or "cpu.p" in x for x in body)
            if body is None:
                if ins.ud or ins.row.handler is None:
                    body = ["s = r[4]", "raise CpuFault(6)"]
                else:
                    env[f"h{idx}"] = ins.row.handler
                    body = [f"s = r[4]", f"cpu.cur_eip = {ins.eip}", f"cpu.cur_esp = s",
                            f"cpu.eip = {nxt}"]
                    if idx > synced:
                        body += [f"cpu.instructions += {idx - synced}", f"done = {idx}"]
                        synced = idx
                    if ins.flags & CHECKED:
                        body.append(f"check(cpu, i{idx})")
                    body.append(f"h{idx}(cpu, i{idx})")
                    if not last:
                        body.append(f"if cpu.smc or cpu.eip != {nxt}:")
                        body.append(f" cpu.instructions += {idx + 1 - synced}")
                        body.append(" return")
            elif last and not any(x.startswith("cpu.eip") for x in body):
                body.append(f"cpu.eip = {nxt}")
            elif not last and (ins.mem or m == "PUSH"):
                body.append("if cpu.smc:")
                body.append(f" cpu.eip = {nxt}")
                body.append(f" cpu.instructions += {idx + 1 - synced}")
                body.append(" return")
            lines += ["  " + x for x in body]
        lines.append(f"  cpu.instructions += {n - synced}")
        lines.append(" except BaseException:")
        lines.append(f"  cpu.cur_eip = E[k]")
        lines.append("  cpu.cur_esp = s")
        lines.append("  cpu.instructions += k - done")
        lines.append("  raise")
        env["E"] = eips
        return "\n".join(lines) + "\n", env

    # --- inline templates --------------------------------------------------------------
    def _flags_dead(self, insns, idx) -> bool:
        """True if the flags `insns[idx]` writes are overwritten before anything
        reads them or anything can fault (a fault must see exact flags)."""
        for ins in insns[idx + 1:]:
            m = ins.row.mnemonic if ins.row else ""
            if ins.ud or ins.mem or ins.lock:
                return False
            if m in WRITES_ALL:
                return True
            if m not in FLAG_NEUTRAL:
                return False
        return False

    def _operand(self, ins, which):
        """(read_expr, write_fmt, setup) for operand 0/1 of an inlinable form."""
        op = ins.row.operands[which]
        w = ins.w if which == 0 else ins.w1
        kind = op.kind
        if kind in "EM" and ins.mem or kind == "O":
            return f"rd({ins.seg}, a, {w})", f"wr({ins.seg}, a, {w}, {{}})", self._ea(ins)
        if kind in "EGZ" or kind == "reg":
            i = ins.rm if kind == "E" else ins.reg if kind == "G" else \
                ins.row.zreg if kind == "Z" else op.reg
            return _reg_rw(w, i) + (None,)
        if kind == "I":
            return str(ins.imm & MASK[w]), None, None
        return None

    def _ea(self, ins):
        if ins.row.operands and any(o.kind == "O" for o in ins.row.operands):
            return f"a = {ins.disp}"
        parts = [str(ins.disp)] if ins.disp else []
        if ins.base >= 0:
            parts.append(f"r[{ins.base}]")
        if ins.index >= 0:
            parts.append(f"(r[{ins.index}] << {ins.scale})" if ins.asz == 4 and ins.scale
                         else f"r[{ins.index}]")
        expr = " + ".join(parts) or "0"
        return f"a = ({expr}) & {0xFFFF if ins.asz == 2 else 0xFFFFFFFF}"

    def _inline(self, ins, idx, insns, nxt, last):
        m = ins.row.mnemonic
        ops = ins.row.operands
        if ins.lock:
            return None
        if m in ALU and len(ops) == 2 and ins.w in MASK:
            a = self._operand(ins, 0)
            b = self._operand(ins, 1)
            if not a or not b or (b[2] and a[2]):
                return None
            ra, wa, setup = a[0], a[1], a[2] or b[2]
            rb = b[0]
            if wa is None:
                return None
            w = ins.w
            out = [setup] if setup else []
            dead = self._flags_dead(insns, idx) and m in ("ADD", "SUB", "AND", "OR", "XOR")
            if m in ("ADD", "ADC", "SUB", "SBB", "CMP"):
                fn = "add" if m in ("ADD", "ADC") else "sub"
                carry = "cpu.flags & 1" if m in ("ADC", "SBB") else "0"
                if dead:
                    op = "+" if fn == "add" else "-"
                    out.append(f"v = ({ra} {op} {rb}) & {MASK[w]}")
                else:
                    out.append(f"v = FL.{fn}(cpu, {ra}, {rb}, {carry}, {w})")
            else:
                sym = {"AND": "&", "OR": "|", "XOR": "^", "TEST": "&"}[m]
                if dead:
                    out.append(f"v = {ra} {sym} {rb}")
                else:
                    out.append(f"v = FL.logic(cpu, {ra} {sym} {rb}, {w})")
            if m not in ("CMP", "TEST"):
                out.append(wa.format("v"))
            return out
        if m == "MOV" and len(ops) == 2 and ops[0].kind in ("E", "G", "Z", "O", "reg") \
                and ops[1].kind in ("E", "G", "I", "Z", "O", "reg") and ins.w in MASK:
            a = self._operand(ins, 0)
            b = self._operand(ins, 1)
            if not a or not b or a[1] is None:
                return None
            setup = a[2] or b[2]
            out = [setup] if setup else []
            out.append(a[1].format(b[0]))
            return out
        if m in SHIFT_COMPUTE and ops[1].kind in ("I", "const") and ins.w in MASK:
            c = (ins.imm if ops[1].kind == "I" else 1) & 0x1F
            a = self._operand(ins, 0)
            if not a or a[1] is None:
                return None
            out = [a[2]] if a[2] else []
            if c == 0:
                if ins.mem:
                    out.append(a[1].format(a[0]))
                return out or ["pass"]
            w = ins.w
            if m in ("SHL", "SAL", "SHR") and self._flags_dead(insns, idx):
                expr = f"({a[0]} << {c}) & {MASK[w]}" if m != "SHR" else f"{a[0]} >> {c}"
                out.append(f"v = {expr}")
            else:
                out.append(f"v = SH['{m}'](cpu, {a[0]}, {c}, {w})")
            out.append(a[1].format("v"))
            return out
        if m in ("INC", "DEC") and not ins.mem and ins.w in MASK:
            a = self._operand(ins, 0)
            if not a:
                return None
            fn = "add" if m == "INC" else "sub"
            return ["c = cpu.flags & 1", f"v = FL.{fn}(cpu, {a[0]}, 1, 0, {ins.w})",
                    "cpu.flags = (cpu.flags & ~1) | c", a[1].format("v")]
        if m == "LEA" and ins.mem:
            a = self._operand(ins, 0)
            return [self._ea(ins), a[1].format(f"a & {MASK[ins.osz]}")]
        if m == "PUSH" and ops[0].kind == "Z":
            return ["s = r[4]"] + _push_code(self.cpu.stack32, _reg_rw(ins.osz, ins.row.zreg)[0],
                                             ins.osz)
        if m == "POP" and ops[0].kind == "Z":
            return ["s = r[4]"] + _pop_code(self.cpu.stack32, ins.osz) + \
                [_reg_rw(ins.osz, ins.row.zreg)[1].format("v")]
        if ins.row.family == "Jcc" and last:
            t = (nxt + ins.imm) & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF)
            if t > self.cpu.shi[CS]:
                return None
            cc = ins.row.cc
            expr = COND_EXPR[cc & 14]
            test = f"not ({expr})" if cc & 1 else f"({expr})"
            return ["f = cpu.flags", f"cpu.eip = {t} if {test} else {nxt}"]
        if m == "CALL" and ops[0].kind == "J" and last:
            t = (nxt + ins.imm) & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF)
            if t > self.cpu.shi[CS]:
                return None
            return ["s = r[4]"] + _push_code(self.cpu.stack32, str(nxt), ins.osz) + [f"cpu.eip = {t}"]
        if m == "RET" and last and not ops:
            return ["s = r[4]"] + _pop_code(self.cpu.stack32, ins.osz) + [
                    f"if v > cpu.shi[{CS}]:", " r[4] = s", " raise CpuFault(13, 0)",
                    "cpu.eip = v"]
        if m == "JMP" and ops[0].kind == "J" and last:
            t = (nxt + ins.imm) & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF)
            if t > self.cpu.shi[CS]:
                return None
            return [f"cpu.eip = {t}"]
        return None


def _push_code(stack32: bool, value: str, w: int) -> list[str]:
    if stack32:
        return [f"sp = (r[4] - {w}) & 0xFFFFFFFF", f"wr(2, sp, {w}, {value})", "r[4] = sp"]
    return [f"sp = (r[4] - {w}) & 0xFFFF", f"wr(2, sp, {w}, {value})",
            "r[4] = (r[4] & 0xFFFF0000) | sp"]


def _pop_code(stack32: bool, w: int) -> list[str]:
    if stack32:
        return [f"v = rd(2, r[4], {w})", f"r[4] = (r[4] + {w}) & 0xFFFFFFFF"]
    return ["sp = r[4] & 0xFFFF", f"v = rd(2, sp, {w})",
            f"r[4] = (r[4] & 0xFFFF0000) | ((sp + {w}) & 0xFFFF)"]


def _reg_rw(w, i):
    if w == 4:
        return f"r[{i}]", f"r[{i}] = {{}}"
    if w == 2:
        return f"(r[{i}] & 0xFFFF)", f"r[{i}] = (r[{i}] & 0xFFFF0000) | (({{}}) & 0xFFFF)"
    if i < 4:
        return f"(r[{i}] & 0xFF)", f"r[{i}] = (r[{i}] & 0xFFFFFF00) | (({{}}) & 0xFF)"
    j = i - 4
    return f"((r[{j}] >> 8) & 0xFF)", f"r[{j}] = (r[{j}] & 0xFFFF00FF) | ((({{}}) & 0xFF) << 8)"
