"""The virtual CPU: the guest's view of the privileged state, kept apart from
what the real CPU holds. The guest believes it runs at CPL `cpl` with these
control registers, descriptor-table registers and interrupt flag; the real
CPU runs it deprivileged (ring 1 or 3) on the monitor's tables.

Real and virtual EFLAGS differ in IF (real IF = virtual IF, maintained by
the monitor, so the hardware only interrupts the guest when the guest
allows it), IOPL (real 0, so CLI/STI/IN/OUT trap; in virtual-8086 mode also
PUSHF/POPF/INT n/IRET), VM (real = virtual: v86 code runs as itself), NT (real 0: a real IRET
must never task-switch through the monitor's TSS) and the monitor's own TF
while it single-steps a guest instruction.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ringvisor.cpu_state import CpuState, Segment, TableRegister

IF, TF, IOPL, NT, RF, VM = 0x200, 0x100, 0x3000, 0x4000, 0x10000, 0x20000
CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET, CR0_NE = 1, 2, 4, 8, 0x10, 0x20
CR0_WP, CR0_PG = 1 << 16, 1 << 31
CR4_PSE, CR4_PGE = 0x10, 0x80
# FPU policy bits the real CPU must honour for the guest (and SMSW then shows the guest's).
MIRRORED_CR0 = CR0_MP | CR0_EM | CR0_TS | CR0_NE
VIRTUAL_FLAGS = IF | IOPL | NT


@dataclass
class VirtualCpu:
    ring: int                                   # the real ring the guest kernel runs in (1 or 3)
    cpl: int = 0
    if_: bool = False
    iopl: int = 0
    nt: bool = False
    vm: bool = False                            # in virtual-8086 mode (monitors/common/v86.py)
    cr0: int = CR0_PE | CR0_ET
    cr2: int = 0
    cr3: int = 0
    cr4: int = 0
    efer: int = 0
    gdtr: TableRegister = field(default_factory=lambda: TableRegister(0, 0xFFFF))
    idtr: TableRegister = field(default_factory=lambda: TableRegister(0, 0x3FF))
    ldtr: Segment = field(default_factory=lambda: Segment.system(0, 0, 0xFFFF, 2))
    tr: Segment = field(default_factory=lambda: Segment.system(0, 0, 0xFFFF, 11))
    msr: dict[int, int] = field(default_factory=dict)
    dr: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400])

    # --- rings -----------------------------------------------------------------
    def real_ring(self, cpl: int | None = None) -> int:
        """The ring the real CPU runs virtual CPL `cpl` in: 0/1/3 maps guest
        ring 0 to 1 (rings 1 and 2 stay put); 0/3/3 compresses all to 3."""
        c = self.cpl if cpl is None else cpl
        return 3 if self.ring == 3 else max(c, 1)

    @property
    def user_mode(self) -> bool:
        return self.cpl == 3

    @property
    def paging(self) -> bool:
        return bool(self.cr0 & CR0_PG)

    # --- EFLAGS ------------------------------------------------------------------
    def virtual_flags(self, real: int) -> int:
        f = real & ~(VIRTUAL_FLAGS | TF | RF | VM)
        return f | (IF if self.if_ else 0) | (self.iopl << 12) | (NT if self.nt else 0) | \
            (VM if self.vm else 0) | 2

    def real_flags(self, virtual: int) -> int:
        f = virtual & ~(VIRTUAL_FLAGS | RF | VM)
        return f | (IF if self.if_ else 0) | (VM if self.vm else 0) | 2

    def set_from_flags(self, virtual: int) -> None:
        self.if_ = bool(virtual & IF)
        self.iopl = (virtual >> 12) & 3
        self.nt = bool(virtual & NT)

    # --- control registers ----------------------------------------------------------
    def real_cr0(self) -> int:
        return CR0_PE | CR0_ET | CR0_PG | CR0_WP | (self.cr0 & MIRRORED_CR0)

    # --- the guest's view, for reports ----------------------------------------------
    def view(self, real: CpuState) -> CpuState:
        """The guest's state as it believes it to be: the real registers with
        the virtual privilege, flags, control and table registers."""
        s = real.copy()
        s.cs, s.ss = real.cs.copy(), real.ss.copy()
        if not self.vm:                         # virtual-8086 selectors are paragraphs, as they are
            s.cs.selector, s.ss.selector = (real.cs.selector & ~3) | self.cpl, (real.ss.selector & ~3) | self.cpl
            s.cs.dpl = s.ss.dpl = self.cpl
        s.eflags = self.virtual_flags(real.eflags)
        s.cr0, s.cr2, s.cr3, s.cr4, s.efer = self.cr0, self.cr2, self.cr3, self.cr4, self.efer
        s.gdt, s.idt = self.gdtr.copy(), self.idtr.copy()
        s.ldt, s.tr = self.ldtr.copy(), self.tr.copy()
        return s

    @classmethod
    def from_boot(cls, ring: int, st: CpuState) -> "VirtualCpu":
        v = cls(ring=ring, cpl=st.cpl, cr0=st.cr0, cr2=st.cr2, cr3=st.cr3, cr4=st.cr4,
                efer=st.efer, gdtr=replace(st.gdt), idtr=replace(st.idt), ldtr=replace(st.ldt),
                tr=replace(st.tr))
        v.set_from_flags(st.eflags)
        return v
