"""Run SingleStepTests MOO vectors on the soft engine (real mode).

Each test: load the INIT registers (real mode: base = selector * 16, limit
0xFFFF) and RAM bytes into zeroed 16 MiB RAM, run until the HLT after the
instruction (an exception vectors through the test's IVT to an injected HLT),
compare registers (flags masked) and every FINA RAM byte.

Exclusions are named here, each with the reason (286 data checked on a
386-class CPU; see the data README):
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ringvisor.cpu_state import CpuState, Segment
from ringvisor.machine.bus import MmioBus, PortBus
from ringvisor.machine.memory import GuestMemory
from ringvisor.testvectors.data import singlestep_dir
from ringvisor.testvectors.moo import REGS16, Test, load, revoked

DATA = singlestep_dir()

# Named exclusions and masks ----------------------------------------------------------
# FLAGS bits 12-15: the 286 in real mode always stores them as 0; a 386 keeps
# IOPL/NT as loaded. Never compared on 286 data.
FLAGS_286_HIGH = 0xF000
# SS_LIMIT_286: in real mode the 286 raises #GP(13) for a word access at
# offset 0xFFFF in every segment; the 386 raises #SS(12) when the segment is
# SS (SDM vol. 3 6.15, "Interrupt 12 ... real-address mode"). Such a test is
# excluded when our CPU raised #SS where the 286 raised #GP.
SS_LIMIT_286 = "SS_LIMIT_286"
# LOCK_386: the 286 ignores LOCK on any instruction; the 386 raises #UD when
# LOCK prefixes an instruction that is not lockable or has no memory
# destination (SDM vol. 2 "LOCK"). Such tests are excluded (our decoder says
# the encoding is #UD, which is checked separately in tests/cpu).
LOCK_386 = "LOCK_386"
# CAPTURE_ANOMALY: individual captures whose result no x86 can produce,
# listed by hash with what is wrong (candidates for the upstream revocation list).
CAPTURE_ANOMALIES = {
    # CD #2044 "int 3Bh": the pushed return CS is the value of SS (0x12F2), not CS (0xC93A).
    "ba5bb16b5a4306333a359c3abd2169b871ffa42c": "int 3Bh pushed SS in place of CS",
}
CAPTURE_ANOMALY = "CAPTURE_ANOMALY"
# 386 sample: EFLAGS bits above 17 (AC/ID... do not exist on the 386EX; the
# capture shows them as whatever was loaded) are not compared.
FLAGS_386_MASK = 0x3FFFF


@dataclass
class Outcome:
    status: str            # "pass", "fail", "excluded", "revoked"
    detail: str = ""


def flags_mask_for(meta: dict, name: str) -> int:
    """`flags-mask` for a file name like "F6.4" from metadata.json."""
    op, _, reg = name.partition(".")
    entry = meta.get("opcodes", {}).get(op, {})
    if reg and "reg" in entry:
        entry = entry["reg"].get(reg, {})
    return entry.get("flags-mask", 0xFFFF)


class VectorRunner:
    def __init__(self, blocks: bool = False):
        from ringvisor.cpu import SoftEngine
        self.memory = GuestMemory(16 << 20)
        self.engine = SoftEngine(self.memory, PortBus(), MmioBus())
        # One instruction: the interpreter is the reference; blocks=True runs
        # the same vectors through the block compiler.
        self.engine.use_blocks = blocks
        self.engine.blocks.hot = 1          # compile at first sight: each vector runs once

    def run(self, t: Test, flags_mask: int, cpu286: bool) -> Outcome:
        eng, mem = self.engine, self.memory
        touched = [a for a, _ in t.init.ram] + [a for a, _ in t.final.ram]
        try:
            for a, v in t.init.ram:
                mem.mmap[a] = v
            regs = t.init.regs
            st = self._state(regs, cpu286)
            eng.set_state(st)
            if cpu286 and 0xF0 in t.bytes[:t.bytes.find(b"\xf4") if b"\xf4" in t.bytes else None]:
                from ringvisor.cpu.isa.decoder import decode
                ins = decode(t.bytes, False)
                if ins.lock and ins.ud:
                    return Outcome("excluded", LOCK_386)
            eng.last_exception = None
            eng.intercept = 1 << 12 if cpu286 else 0
            exit_ = None
            for _ in range(200):
                exit_ = eng.run(max_instructions=100_000)
                if type(exit_).__name__ != "Interrupted":
                    break
            if type(exit_).__name__ == "Fault":
                if t.exception and t.exception[0] == 13:
                    return Outcome("excluded", SS_LIMIT_286)
                eng.intercept = 0
                from ringvisor.cpu.semantics.interrupts import exception
                exception(eng, exit_.vector, exit_.error_code)
                exit_ = eng.run(max_instructions=100_000)
            if type(exit_).__name__ != "Halt":
                return Outcome("fail", f"ended with {exit_!r}")
            return self._compare(t, flags_mask, cpu286)
        finally:
            for a in touched:
                mem.mmap[a] = 0

    def _state(self, regs: dict, cpu286: bool) -> CpuState:
        if cpu286:
            g = {k: regs[k] for k in ("ax", "bx", "cx", "dx", "sp", "bp", "si", "di")}
            st = CpuState(eax=g["ax"], ebx=g["bx"], ecx=g["cx"], edx=g["dx"], esp=g["sp"],
                          ebp=g["bp"], esi=g["si"], edi=g["di"], eip=regs["ip"],
                          eflags=regs["flags"] | 2)
            segs = {k: regs[k] for k in ("cs", "ss", "ds", "es")}
            segs["fs"] = segs["gs"] = 0
        else:
            st = CpuState(eax=regs["eax"], ebx=regs["ebx"], ecx=regs["ecx"], edx=regs["edx"],
                          esp=regs["esp"], ebp=regs["ebp"], esi=regs["esi"], edi=regs["edi"],
                          eip=regs["eip"], eflags=regs["eflags"] & FLAGS_386_MASK | 2)
            segs = {k: regs[k] for k in ("cs", "ss", "ds", "es", "fs", "gs")}
        for k, sel in segs.items():
            setattr(st, k, Segment.real(sel, code=(k == "cs")))
        return st

    def _compare(self, t: Test, flags_mask: int, cpu286: bool) -> Outcome:
        eng = self.engine
        st = eng.get_state()
        exp = dict(t.init.regs)
        exp.update(t.final.regs)
        fmask = flags_mask & ~FLAGS_286_HIGH & 0xFFFF if cpu286 else flags_mask & FLAGS_386_MASK
        bad = []
        if cpu286:
            names = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx", "sp": "esp", "bp": "ebp",
                     "si": "esi", "di": "edi", "ip": "eip", "flags": "eflags"}
            for r in REGS16:
                if r in ("cs", "ss", "ds", "es"):
                    got = getattr(st, r).selector
                else:
                    got = getattr(st, names[r]) & 0xFFFF
                want = exp[r]
                if r == "flags":
                    got, want = got & fmask, want & fmask
                if got != want:
                    bad.append(f"{r}={got:#x} want {want:#x}")
        else:
            for r, want in exp.items():
                if r in ("cr0", "cr3", "dr6", "dr7"):
                    continue
                if r in ("cs", "ss", "ds", "es", "fs", "gs"):
                    got = getattr(st, r).selector
                else:
                    got = getattr(st, r)
                if r == "eflags":
                    got, want = got & fmask, want & fmask
                if got != want:
                    bad.append(f"{r}={got:#x} want {want:#x}")
        # Where FLAGS were pushed (INT/exception frame or PUSHF), the same
        # masks apply to the stack image. (The EXCP address is one byte low
        # in some captures, so it is computed from the final SS:SP.)
        flags_at = None
        ss_base = (exp.get("ss", 0) << 4) if cpu286 else None
        if cpu286 and (t.exception or t.bytes.rstrip(b"\xf4")[-2:-1] == b"\xcd"
                       or t.name.startswith(("int", "pushf"))):
            off = 0 if t.name.startswith("pushf") else 4
            flags_at = ss_base + ((exp["sp"] + off) & 0xFFFF)
        for a, want in t.final.ram:
            got = self.memory.mmap[a]
            if flags_at is not None and a in (flags_at, flags_at + 1):
                m = (fmask >> (8 * (a - flags_at))) & 0xFF
                got, want = got & m, want & m
            if got != want:
                bad.append(f"[{a:#x}]={got:#x} want {want:#x}")
        if bad:
            return Outcome("fail", "; ".join(bad[:6]))
        return Outcome("pass")


def vector_files() -> list[Path]:
    files = sorted((DATA / "80286_v1_real_mode").glob("*.MOO.gz"))
    files += sorted((DATA / "80386_ex_real_mode_sample").glob("*.MOO.gz"))
    return files


def run_file(path: Path, sample: int | None = None, seed: int = 1,
             runner: VectorRunner | None = None) -> dict:
    """Run a file's tests (a deterministic random sample when `sample` is
    set); returns counts and the first failures."""
    runner = runner or VectorRunner()
    mf = load(path)
    cpu286 = mf.cpu.startswith("C286") or "286" in mf.cpu
    meta_file = path.parent / "metadata.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    name = path.name.removesuffix(".MOO.gz")
    fmask = flags_mask_for(meta, name)
    rev = revoked(path.parent)
    tests = mf.tests
    if sample is not None and sample < len(tests):
        tests = random.Random(seed).sample(tests, sample)
    counts = {"pass": 0, "fail": 0, "excluded": 0, "revoked": 0}
    reasons: dict[str, int] = {}
    failures = []
    for t in tests:
        if t.hash in rev:
            counts["revoked"] += 1
            continue
        if t.hash in CAPTURE_ANOMALIES:
            counts["excluded"] += 1
            reasons[CAPTURE_ANOMALY] = reasons.get(CAPTURE_ANOMALY, 0) + 1
            continue
        out = runner.run(t, fmask, cpu286)
        counts[out.status] += 1
        if out.status == "excluded":
            reasons[out.detail] = reasons.get(out.detail, 0) + 1
        elif out.status == "fail" and len(failures) < 20:
            failures.append((t.index, t.name, t.bytes.hex(), out.detail))
    return {"file": f"{path.parent.name}/{name}", "cpu": mf.cpu, "total": len(tests),
            "counts": counts, "excluded": reasons, "failures": failures}
