"""Architectural CPU state as plain data, common to every engine.

Loaders describe the state a guest starts in with these classes; each engine
converts it to its own form (kvm_regs/kvm_sregs, or the soft CPU's registers),
and the differential tests compare engines through them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# EFLAGS bits the loaders need (the soft CPU has the full table).
EFLAGS_RESERVED_1 = 1 << 1
EFLAGS_IF = 1 << 9
EFLAGS_VM = 1 << 17

CR0_PE = 1 << 0
CR0_ET = 1 << 4
CR0_PG = 1 << 31
CR0_AFTER_RESET = 0x60000010   # CD, NW, ET (SDM Table 9-1)


@dataclass
class Segment:
    """A segment register with its hidden descriptor cache."""
    selector: int = 0
    base: int = 0
    limit: int = 0xFFFF
    type: int = 3          # for data: read/write, accessed; for code: 11 = execute/read, accessed
    present: bool = True
    dpl: int = 0
    db: bool = False       # default operand size 32 (code) / big (stack)
    s: bool = True         # code/data (not system)
    g: bool = False        # limit in 4 KiB units (the cached limit is in bytes either way)
    avl: bool = False
    unusable: bool = False

    def copy(self) -> "Segment":
        """A copy (dataclasses.replace costs about 10 µs; monitors copy
        segments on every trap)."""
        c = object.__new__(Segment)
        c.__dict__.update(self.__dict__)
        return c

    @classmethod
    def real(cls, selector: int, code: bool = False) -> "Segment":
        return cls(selector=selector, base=(selector << 4) & 0xFFFFF, limit=0xFFFF,
                   type=11 if code else 3)

    @classmethod
    def flat32(cls, selector: int, code: bool, dpl: int = 0) -> "Segment":
        return cls(selector=selector, base=0, limit=0xFFFFFFFF, type=11 if code else 3,
                   dpl=dpl, db=True, g=True)

    @classmethod
    def system(cls, selector: int, base: int, limit: int, type: int) -> "Segment":
        return cls(selector=selector, base=base, limit=limit, type=type, s=False)


@dataclass
class TableRegister:
    base: int = 0
    limit: int = 0xFFFF

    def copy(self) -> "TableRegister":
        return TableRegister(self.base, self.limit)


EFER_LMA = 1 << 10


@dataclass(frozen=True)
class LongModeView:
    """What the 32-bit fields of a CpuState cannot hold of a guest in IA-32e
    mode (EFER.LMA: the kvm engine can run one): the full 64-bit registers,
    RIP and RFLAGS, CS.L (64-bit code or compatibility mode), CR2/CR3 and
    the 64-bit bases. Filled by the engine that saw them, read by reports."""
    gprs: dict[str, int]            # rax rbx rcx rdx rsi rdi rsp rbp r8 ... r15
    rip: int
    rflags: int
    cs_l: bool
    cr2: int
    cr3: int
    fs_base: int
    gs_base: int
    gdt_base: int
    idt_base: int


@dataclass
class CpuState:
    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0
    esi: int = 0
    edi: int = 0
    esp: int = 0
    ebp: int = 0
    eip: int = 0
    eflags: int = EFLAGS_RESERVED_1
    cs: Segment = field(default_factory=lambda: Segment.real(0, code=True))
    ds: Segment = field(default_factory=lambda: Segment.real(0))
    es: Segment = field(default_factory=lambda: Segment.real(0))
    fs: Segment = field(default_factory=lambda: Segment.real(0))
    gs: Segment = field(default_factory=lambda: Segment.real(0))
    ss: Segment = field(default_factory=lambda: Segment.real(0))
    tr: Segment = field(default_factory=lambda: Segment.system(0, 0, 0xFFFF, 11))
    ldt: Segment = field(default_factory=lambda: Segment.system(0, 0, 0xFFFF, 2))
    gdt: TableRegister = field(default_factory=TableRegister)
    idt: TableRegister = field(default_factory=lambda: TableRegister(0, 0x3FF))
    cr0: int = CR0_ET
    cr2: int = 0
    cr3: int = 0
    cr4: int = 0
    efer: int = 0
    long_mode: LongModeView | None = None   # set for an IA-32e guest (EFER.LMA)

    def copy(self) -> "CpuState":
        """A shallow copy (the segments are shared, as with dataclasses.replace,
        at a tenth of its cost: monitors copy the state on every trap)."""
        c = object.__new__(CpuState)
        c.__dict__.update(self.__dict__)
        return c

    GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")   # encoding order
    SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs")                    # encoding order

    @classmethod
    def after_reset(cls, signature: int) -> "CpuState":
        """The registers after RESET or INIT (SDM vol. 3A 9.1.1, Table 9-1):
        real mode at F000:FFF0 with CS.base FFFF0000, so the first fetch is at
        FFFFFFF0 (the top of the firmware ROM) until the first far jump loads
        CS the real-mode way; CR0 60000010 (CD, NW, ET), GDTR and IDTR limit
        FFFF, EDX the processor signature (CPUID.1:EAX), the rest zero."""
        cs = Segment(selector=0xF000, base=0xFFFF0000, limit=0xFFFF, type=11)
        return cls(eip=0xFFF0, edx=signature, cs=cs, cr0=CR0_AFTER_RESET,
                   gdt=TableRegister(0, 0xFFFF), idt=TableRegister(0, 0xFFFF))

    @classmethod
    def protected_flat(cls, eip: int, **gprs: int) -> "CpuState":
        """32-bit protected mode, paging off, flat 4 GiB segments, interrupts
        off: the state Multiboot 1 promises a kernel (selectors 0x08/0x10 as
        in a conventional GDT; the descriptor caches are what matters)."""
        def data() -> Segment:
            return Segment.flat32(0x10, code=False)
        state = cls(eip=eip, cs=Segment.flat32(0x08, code=True), ds=data(), es=data(),
                    fs=data(), gs=data(), ss=data(), cr0=CR0_PE | CR0_ET, **gprs)
        return state

    @classmethod
    def real_mode(cls, cs: int, ip: int, sp: int = 0) -> "CpuState":
        return cls(eip=ip, esp=sp, cs=Segment.real(cs, code=True),
                   ds=Segment.real(cs), es=Segment.real(cs), ss=Segment.real(cs),
                   fs=Segment.real(cs), gs=Segment.real(cs))

    @property
    def protected(self) -> bool:
        return bool(self.cr0 & CR0_PE)

    @property
    def virtual8086(self) -> bool:
        return self.protected and bool(self.eflags & EFLAGS_VM)

    @property
    def cpl(self) -> int:
        # The processor keeps CS.RPL equal to the CPL; virtual-8086 mode runs
        # at CPL 3 whatever the 8086-style CS selector says.
        if self.virtual8086:
            return 3
        return self.cs.selector & 3 if self.protected else 0
