"""The world a differential test runs in: a tiny flat 32-bit protected-mode
machine laid out in the first 68 KiB of guest memory, identical for every
engine.

* GDT: flat ring-0 code/data (0x08/0x10), flat ring-3 code/data
  (0x1B/0x23), a 32-bit TSS (0x28) with ESP0/SS0 and an I/O bitmap that
  denies every port.
* IDT: vectors 0-31, each an interrupt gate to a ring-0 stub that writes
  its vector and ESP to RECORD, then `OUT PORT, AL` and `HLT`. The stub
  changes no register, so the registers at the exception are the
  registers the harness reads; EIP, CS, EFLAGS (and ESP, SS from ring 3)
  are in the frame the processor pushed.  The KVM engine leaves run() at
  the OUT (Io exit); the soft engine's port bus sees the write and its
  run() returns at the HLT. No engine-specific hook is needed: the same
  guest code ends both runs.
* The test code at CODE, followed by a terminator: at CPL 3 a HLT, which
  must raise #GP(0) (so a normal end is "#GP(0) at the terminator"); at
  CPL 0 the stub body itself with the END vector (an exception would need
  a HLT at CPL 0, and with KVM's in-kernel interrupt controller a HLT
  blocks the vCPU).
* Optionally paging: one page table identity-mapping the first 1 MiB as
  user/writable, so the results must not change (PVM refuses CR0.PG in
  32-bit mode, so on these machines only the soft engine runs with it).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ringvisor.cpu_state import CpuState, Segment, TableRegister

GDT, IDT, TSS = 0x1000, 0x2000, 0x3000
STUBS, RECORD = 0x6000, 0x6800
LOOP_COUNTERS = (0x6900, 0x6904)  # program.Loop's counters: no test operand reaches them
STACK0_TOP = 0x8000               # ring-0 stack (TSS.ESP0) for exceptions from ring 3
PD, PT = 0x8000, 0x9000           # identity paging (soft engine, or VT-x/AMD-V hosts)
DATA, DATA_SIZE = 0xA000, 0x800   # memory operands point here
STACK, STACK_SIZE = 0xC000, 0x1000
STACK_START = 0xCC00              # the test's ESP: room to push and to pop
CODE = 0x10000
IMAGE_SIZE = 0x11000              # everything above is never touched
RAM = 1 << 20
PORT = 0xF0                       # the harness port (imm8: OUT needs no register)
END = 0xFF                        # the vector the CPL-0 terminator records

KCODE, KDATA, UCODE, UDATA, TSSSEL = 0x08, 0x10, 0x1B, 0x23, 0x28
TSS_LIMIT = 0x68 + 0x2000 + 1 - 1      # header, bitmap for 64 Ki ports, 0xFF terminator
IDT_VECTORS = 32                  # INT n above 31 is outside the IDT limit: #GP
USER_GATES = (3, 4)               # DPL 3: INT3 and INTO reach their handlers from ring 3
HAS_ERROR_CODE = frozenset((8, 10, 11, 12, 13, 14, 17))

CR0_PE, CR0_ET, CR0_PG = 1, 0x10, 1 << 31


def descriptor(base: int, limit: int, type_: int, dpl: int = 0, s: bool = True,
               db: bool = True, g: bool = True, present: bool = True) -> bytes:
    if g:
        limit >>= 12
    lo = (limit & 0xFFFF) | (base & 0xFFFF) << 16
    hi = ((base >> 16) & 0xFF) | type_ << 8 | s << 12 | dpl << 13 | present << 15 | \
        (limit & 0xF0000) | db << 22 | g << 23 | (base & 0xFF000000)
    return struct.pack("<II", lo, hi)


def interrupt_gate(selector: int, offset: int, dpl: int) -> bytes:
    return struct.pack("<II", (offset & 0xFFFF) | selector << 16,
                       (offset & 0xFFFF0000) | 1 << 15 | dpl << 13 | 0xE << 8)


def stub(vector: int) -> bytes:
    """mov dword ss:[RECORD], vector; mov ss:[RECORD+4], esp; out PORT, al;
    hlt; jmp $-1. Through SS: at CPL 0 it is always the flat ring-0 data
    segment, whatever the test left in DS."""
    return (b"\x36\xc7\x05" + struct.pack("<II", RECORD, vector) + b"\x36\x89\x25" +
            struct.pack("<I", RECORD + 4) + bytes((0xE6, PORT, 0xF4, 0xEB, 0xFD)))


def terminator(cpl: int) -> bytes:
    return b"\xf4" if cpl == 3 else stub(END)


# Descriptors for segment loads and far transfers to hit every check:
# (selector, base, limit, type, dpl, present, granular)
EXTRA_DESCRIPTORS = (
    (0x30, 0, 0xFFFFFFFF, 0x2, 3, True, True),      # ring-3 data, not accessed: loads set A
    (0x38, 0, 0xFFFFFFFF, 0x2, 0, True, True),      # ring-0 data, not accessed
    (0x40, 0, 0xFFFFFFFF, 0x8, 3, True, True),      # ring-3 code, execute-only
    (0x48, 0, 0xFFFFFFFF, 0x3, 3, False, True),     # ring-3 data, not present: #NP / #SS
    (0x50, 0, 0xFFFFFFFF, 0x1, 3, True, True),      # ring-3 data, read-only
    (0x58, 0, 0xA3FF, 0x3, 3, True, False),         # ring-3 data ending mid data area
    (0x60, 0, 0xFFFFFFFF, 0xF, 0, True, True),      # ring-0 conforming code, readable
    (0x68, 0, 0xFFFFFFFF, 0xB, 3, False, True),     # ring-3 code, not present
    (0x70, 0, 0xA3FF, 0x7, 3, True, False),         # ring-3 expand-down: offsets above 0xA3FF
)
GDT_ENTRIES = 0x78 // 8


def _gdt() -> bytes:
    flat = 0xFFFFFFFF
    gdt = bytearray(b"".join((bytes(8),
                              descriptor(0, flat, 0xB), descriptor(0, flat, 0x3),
                              descriptor(0, flat, 0xB, dpl=3), descriptor(0, flat, 0x3, dpl=3),
                              descriptor(TSS, TSS_LIMIT, 0xB, s=False, db=False, g=False))))   # busy: TR holds it
    gdt += bytes(GDT_ENTRIES * 8 - len(gdt))
    for sel, base, limit, type_, dpl, present, g in EXTRA_DESCRIPTORS:
        gdt[sel:sel + 8] = descriptor(base, limit, type_, dpl, g=g, present=present)
    return bytes(gdt)


OPEN_PORTS = range(0x80, 0x84)      # the TSS I/O bitmap lets ring 3 reach these


def _tss() -> bytes:
    tss = bytearray(0x68)
    struct.pack_into("<II", tss, 4, STACK0_TOP, KDATA)
    struct.pack_into("<H", tss, 102, 0x68)          # I/O bitmap right after the header
    bitmap = bytearray(b"\xff" * (0x2000 + 1))
    for port in OPEN_PORTS:
        bitmap[port >> 3] &= ~(1 << (port & 7))
    return bytes(tss) + bytes(bitmap)


def base_image(paging: bool) -> bytearray:
    """Everything below CODE except the data area and the test stack."""
    img = bytearray(IMAGE_SIZE)
    gdt = _gdt()
    img[GDT:GDT + len(gdt)] = gdt
    tss = _tss()
    img[TSS:TSS + len(tss)] = tss
    for v in range(IDT_VECTORS):
        code = stub(v)
        img[STUBS + 32 * v:STUBS + 32 * v + len(code)] = code
        gate = interrupt_gate(KCODE, STUBS + 32 * v, 3 if v in USER_GATES else 0)
        img[IDT + 8 * v:IDT + 8 * v + 8] = gate
    if paging:
        struct.pack_into("<I", img, PD, PT | 7)
        for i in range(RAM >> 12):
            struct.pack_into("<I", img, PT + 4 * i, i << 12 | 7)
    return img


GDT_LIMIT = GDT_ENTRIES * 8 - 1


def start_state(cpl: int, eflags: int, regs: dict[str, int], paging: bool) -> CpuState:
    if cpl == 3:
        cs, ds = Segment.flat32(UCODE, True, 3), Segment.flat32(UDATA, False, 3)
    else:
        cs, ds = Segment.flat32(KCODE, True), Segment.flat32(KDATA, False)

    def data() -> Segment:
        return Segment(**ds.__dict__)
    return CpuState(eip=CODE, esp=STACK_START, eflags=eflags | 2, cs=cs, ds=data(), es=data(),
                    fs=data(), gs=data(), ss=data(),
                    cr0=CR0_PE | CR0_ET | (CR0_PG if paging else 0), cr3=PD if paging else 0,
                    gdt=TableRegister(GDT, GDT_LIMIT),
                    idt=TableRegister(IDT, IDT_VECTORS * 8 - 1),
                    tr=Segment.system(TSSSEL, TSS, TSS_LIMIT, 11),
                    # No LDT: a null LDTR whose cache is unusable, as after LLDT 0
                    # (a usable cache would let KVM read "LDT" descriptors at 0).
                    ldt=Segment(selector=0, base=0, limit=0, type=2, present=False, s=False,
                                unusable=True), **regs)


@dataclass
class Outcome:
    """What one engine did with one test: how it ended and the architectural
    state at that point (the interrupted context, not the stub's)."""
    event: str                          # "end", "exception", or what went wrong
    vector: int | None = None
    error_code: int | None = None
    eip: int = 0
    eflags: int = 0
    regs: tuple[int, ...] = ()          # EAX ECX EDX EBX ESP EBP ESI EDI
    selectors: tuple[int, ...] = ()     # CS SS DS ES FS GS
    data: bytes = b""
    stack: bytes = b""
    gdt: bytes = b""                    # accessed bits set by segment loads
    caches: tuple = ()                  # DS ES FS GS descriptor caches (non-null selectors)
    detail: str = ""
    extra: dict = field(default_factory=dict)


GPR_ORDER = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")


def _caches(state: CpuState) -> tuple:
    """What a segment load put in the hidden part: base, limit, type (A
    included), DPL, D/B, for each data segment register that is not null
    (a null one's cache is not architectural: KVM marks it unusable)."""
    out = []
    for seg in (state.ds, state.es, state.fs, state.gs):
        if seg.selector & 0xFFFC:
            out.append((seg.selector, seg.base, seg.limit, seg.type, seg.dpl, bool(seg.db)))
        else:
            out.append((seg.selector,))
    return tuple(out)


def read_outcome(state: CpuState, memory, cpl: int, end_eip: int) -> Outcome:
    """The outcome of a run that reached a stub (or the CPL-0 terminator)."""
    vector, esp0 = struct.unpack("<II", memory.read(RECORD, 8))
    regs = [getattr(state, g) for g in GPR_ORDER]
    stack = bytearray(memory.read(STACK, STACK_SIZE))
    sel = [state.cs.selector, state.ss.selector, state.ds.selector, state.es.selector,
           state.fs.selector, state.gs.selector]
    gdt = memory.read(GDT, GDT_ENTRIES * 8)
    if vector == END:
        return Outcome("end", None, None, end_eip, state.eflags, tuple(regs), tuple(sel),
                       memory.read(DATA, DATA_SIZE), bytes(stack), gdt, _caches(state))
    code = None
    frame = esp0
    if vector in HAS_ERROR_CODE:
        code = memory.read_u32(frame)
        frame += 4
    eip, cs, eflags = struct.unpack("<III", memory.read(frame, 12))
    frame += 12
    if cs & 3:                        # from ring 3: ESP and SS were pushed too
        esp, ss = struct.unpack("<II", memory.read(frame, 8))
    else:
        esp, ss = frame, state.ss.selector
        # Same-ring frame on the test stack: not test data, blank it.
        lo, hi = max(esp0, STACK), min(frame, STACK + STACK_SIZE)
        if lo < hi:
            stack[lo - STACK:hi - STACK] = bytes(hi - lo)
    regs[4] = esp
    sel[0], sel[1] = cs & 0xFFFF, ss & 0xFFFF
    event = "exception"
    if cpl == 3 and vector == 13 and code == 0 and eip == end_eip:
        event, vector, code = "end", None, None
    return Outcome(event, vector, code, eip, eflags, tuple(regs), tuple(sel),
                   memory.read(DATA, DATA_SIZE), bytes(stack), gdt, _caches(state))
