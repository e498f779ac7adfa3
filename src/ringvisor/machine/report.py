"""A readable report of the guest's CPU state for crashes and hangs:
registers, segments, control registers and the instruction at CS:EIP
disassembled with iced-x86. A guest in IA-32e mode (the kvm engine's
`CpuState.long_mode`) is reported with its 64-bit registers, and its code
disassembled as 64-bit (or 32/16-bit in compatibility mode)."""
from __future__ import annotations

from ringvisor.cpu_state import CR0_PG, EFER_LMA, CpuState

CR4_PSE = 1 << 4


def disassemble(code: bytes, address: int, bitness: int) -> str:
    if not code:
        return "(instruction bytes unavailable)"
    try:
        from iced_x86 import Decoder, Formatter, FormatterSyntax
    except ImportError:
        return code.hex(" ")
    decoder = Decoder(bitness, code, ip=address)
    formatter = Formatter(FormatterSyntax.NASM)
    insn = decoder.decode()
    if insn.is_invalid:
        return f"(invalid instruction) {code[:8].hex(' ')}"
    return f"{formatter.format(insn)}    [{code[:insn.len].hex(' ')}]"


def code_bytes(state: CpuState, memory, translate, length: int = 15) -> bytes:
    """Bytes at CS:EIP (RIP in 64-bit mode, where CS's base is 0), through
    the guest's paging when it is on."""
    lm = state.long_mode
    if lm is not None and lm.cs_l:
        linear = lm.rip
    else:
        linear = (state.cs.base + state.eip) & 0xFFFFFFFF
    out = bytearray()
    for i in range(length):
        phys = translate(linear + i) if translate else linear + i
        if phys is None or not memory.contains(phys, 1):
            break
        out.append(memory.read_u8(phys))
    return bytes(out)


def page_walk(state: CpuState, memory):
    """A translate function for `code_bytes` that reads the 32-bit page
    tables `state` points at (4 KiB and PSE 4 MiB pages) without touching
    them: no accessed bits set, no faults, None where nothing is mapped."""
    if state.efer & EFER_LMA:
        return _walk_4level(state, memory)
    pse = bool(state.cr4 & CR4_PSE)

    def translate(linear: int) -> int | None:
        linear &= 0xFFFFFFFF
        pde_addr = (state.cr3 & 0xFFFFF000) | (linear >> 22) * 4
        if not memory.contains(pde_addr, 4):
            return None
        pde = memory.read_u32(pde_addr)
        if not pde & 1:
            return None
        if pde & 0x80 and pse:
            return (pde & 0xFFC00000) | (linear & 0x3FFFFF)
        pte_addr = (pde & 0xFFFFF000) | ((linear >> 12) & 0x3FF) * 4
        if not memory.contains(pte_addr, 4):
            return None
        pte = memory.read_u32(pte_addr)
        return (pte & 0xFFFFF000) | (linear & 0xFFF) if pte & 1 else None
    return translate


def _walk_4level(state: CpuState, memory):
    """IA-32e paging (SDM vol. 3 4.5): PML4, PDPT (1 GiB pages), PD (2 MiB
    pages), PT; read-only, None where nothing is mapped."""
    lm = state.long_mode
    cr3 = lm.cr3 if lm is not None else state.cr3

    def entry(table: int, index: int) -> int | None:
        at = (table & 0x000FFFFFFFFFF000) + index * 8
        if not memory.contains(at, 8):
            return None
        e = memory.read_u32(at) | memory.read_u32(at + 4) << 32
        return e if e & 1 else None

    def translate(linear: int) -> int | None:
        table = cr3
        for level, shift in enumerate((39, 30, 21, 12)):
            e = entry(table, (linear >> shift) & 0x1FF)
            if e is None:
                return None
            frame = e & 0x000FFFFFFFFFF000
            if shift == 12 or (level in (1, 2) and e & 0x80):
                return (frame & ~((1 << shift) - 1)) | (linear & ((1 << shift) - 1))
            table = frame
        return None
    return translate


def _describe_long(s: CpuState, memory, translate, insn: bytes) -> str:
    lm = s.long_mode
    bitness = 64 if lm.cs_l else 32 if s.cs.db else 16
    mode = "64-bit mode" if lm.cs_l else f"compatibility mode, {bitness}-bit code"
    r = lm.gprs
    lines = [f"  long mode (IA-32e), {mode}, CPL {s.cs.selector & 3}"]
    names = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
    for i in range(0, 16, 4):
        lines.append("  " + " ".join(f"{n:>3}={r[n]:016x}" for n in names[i:i + 4]))
    lines += [f"  rip={lm.rip:016x} rflags={lm.rflags:08x}",
              "  " + " ".join(f"{n}={getattr(s, n).selector:04x}"
                              for n in ("cs", "ss", "ds", "es", "fs", "gs"))
              + f" tr={s.tr.selector:04x} ldt={s.ldt.selector:04x}",
              f"  fs.base={lm.fs_base:016x} gs.base={lm.gs_base:016x}",
              f"  cr0={s.cr0:08x} cr2={lm.cr2:016x} cr3={lm.cr3:016x} cr4={s.cr4:08x}"
              f" efer={s.efer:08x}",
              f"  gdt={lm.gdt_base:016x}/{s.gdt.limit:04x} idt={lm.idt_base:016x}/{s.idt.limit:04x}"]
    if not insn and memory is not None:
        insn = code_bytes(s, memory, translate)
    ip = lm.rip if lm.cs_l else s.eip
    lines.append(f"  at {s.cs.selector:04x}:{ip:016x}: {disassemble(insn, ip, bitness)}")
    return "\n".join(lines)


def describe(state: CpuState, memory=None, translate=None, insn: bytes = b"") -> str:
    s = state
    if s.long_mode is not None:
        return _describe_long(s, memory, translate, insn)
    bitness = 32 if (s.protected and s.cs.db and not s.virtual8086) else 16
    if not s.protected:
        mode = "real mode"
    elif s.virtual8086:
        mode = "virtual-8086 mode, CPL 3, 16-bit code"
    else:
        mode = f"protected mode, CPL {s.cpl}, {bitness}-bit code"
    if s.protected and s.cr0 & CR0_PG:
        mode += ", paging on"
    lines = [f"  {mode}",
             f"  eax={s.eax:08x} ebx={s.ebx:08x} ecx={s.ecx:08x} edx={s.edx:08x}",
             f"  esi={s.esi:08x} edi={s.edi:08x} ebp={s.ebp:08x} esp={s.esp:08x}",
             f"  eip={s.eip:08x} eflags={s.eflags:08x}",
             "  " + " ".join(f"{n}={getattr(s, n).selector:04x}" for n in ("cs", "ss", "ds", "es", "fs", "gs"))
             + f" tr={s.tr.selector:04x} ldt={s.ldt.selector:04x}",
             f"  cr0={s.cr0:08x} cr2={s.cr2:08x} cr3={s.cr3:08x} cr4={s.cr4:08x}",
             f"  gdt={s.gdt.base:08x}/{s.gdt.limit:04x} idt={s.idt.base:08x}/{s.idt.limit:04x}"]
    if not insn and memory is not None:
        insn = code_bytes(s, memory, translate)
    lines.append(f"  at {s.cs.selector:04x}:{s.eip:08x}: {disassemble(insn, s.eip, bitness)}")
    return "\n".join(lines)
