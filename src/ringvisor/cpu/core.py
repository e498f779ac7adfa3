"""The soft CPU's hardware state and its memory path.

State is plain data (registers in a list in encoding order, EFLAGS as an int,
segment registers as `Segment` descriptor caches); this module adds the one
path every guest memory access takes: segment check -> linear address ->
paging (TLB) -> physical RAM or the MMIO bus, with the self-modifying-code
check on every physical write.
"""
from __future__ import annotations

from ringvisor.cpu.architecture import (  # noqa: F401  (the CPU's names, used through core too)
    CF, PF, AF, ZF, SF, TF, IF, DF, OF, IOPL_MASK, NT, RF, VM, AC, ID, STATUS, EFLAGS_WRITABLE,
    CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET, CR0_NE, CR0_WP, CR0_AM, CR0_NW, CR0_CD, CR0_PG,
    CR4_VME, CR4_PVI, CR4_TSD, CR4_DE, CR4_PSE, CR4_PGE, ES, CS, SS, DS, FS, GS, SEG_NAMES, DE,
    DB, NMI, BP, OFV, BR, UD, NM, DF_, TS, NP, SSF, GP, PFV, MASKS, CpuFault, gp, ud)
from ringvisor.cpu.paging import walk
from ringvisor.cpu_state import Segment, TableRegister


class Core:
    """Registers, descriptor caches and the memory path of one CPU."""

    def __init__(self, memory, ports, mmio):
        self.memory = memory
        self.ports = ports
        self.mmio = mmio
        self.mm = memory.mmap
        self.ramsize = memory.size
        self.r = [0] * 8
        self.eip = 0
        self.flags = 2
        self.segs = [Segment.real(0, code=(i == CS)) for i in range(6)]
        self.sbase = [0] * 6
        self.slo = [0] * 6
        self.shi = [0xFFFF] * 6
        self.sread = [True] * 6
        self.swrite = [True] * 6
        self.gdtr = TableRegister(0, 0xFFFF)
        self.idtr = TableRegister(0, 0x3FF)
        self.ldtr = Segment.system(0, 0, 0xFFFF, 2)
        self.tr = Segment.system(0, 0, 0xFFFF, 11)
        self.cr0 = CR0_ET
        self.cr2 = self.cr3 = self.cr4 = 0
        self.dr = [0] * 8
        self.dr[6], self.dr[7] = 0xFFFF0FF0, 0x400
        self.efer = 0
        self.msr: dict[int, int] = {}
        self.cpl = 0
        self.user = 0              # 1 when paging checks apply user rights (CPL 3)
        self.pe = False
        self.pg = False            # linear addresses go through the TLB (paging, or EPT)
        self.always_translate = False   # VMX non-root with EPT: guest-physical is translated too
        self.walk = walk           # the TLB-miss walker (cpu/vmx/ept.py's 2-D walk under EPT)
        self.vmx = None            # VMX non-root operation: cpu/vmx/nonroot.py's NonRoot
        self.code32 = False
        self.stack32 = False
        self.ea = 0                # effective address of the current memory operand
        self.cur_eip = 0           # EIP of the instruction being executed
        self.cur_esp = 0
        # TLB: per (user, write) a dict linear page -> physical page base.
        self.tlb = [{}, {}, {}, {}]
        self.tlb_global: set[int] = set()
        self.code_pages: set[int] = set()   # physical pages holding compiled blocks
        # Pages whose every write must reach code_written, code or not: the
        # chipset's PAM segments not plain RAM (devices/pam.py); kept in code_pages.
        self.watched_pages: set[int] = set()
        # Set when something must see every data access one by one (a
        # debugger's watchpoints): repeated string instructions then leave bulk.
        self.watch_memory = False
        # Compiled code bakes in the segment caches and CPL: any change bumps this.
        self.mode_epoch = 0
        # Bumped when memory may have changed behind the CPU (MMIO, port I/O).
        self.dev_epoch = 0
        for i in range(6):
            self._cache_seg(i)

    # --- segment caches ------------------------------------------------------
    def _cache_seg(self, i: int) -> None:
        s = self.segs[i]
        self.mode_epoch += 1
        self.sbase[i] = s.base & 0xFFFFFFFF
        if not self.pe:
            # Real mode: the cached limit still applies (unreal mode keeps it).
            self.slo[i], self.shi[i] = 0, s.limit
            self.sread[i] = self.swrite[i] = True
        elif s.unusable or not s.present:
            self.slo[i], self.shi[i] = 1, 0           # every access faults
            self.sread[i] = self.swrite[i] = False
        elif s.s and (s.type & 0xC) == 0x4:            # expand-down data
            self.slo[i] = s.limit + 1
            self.shi[i] = 0xFFFFFFFF if s.db else 0xFFFF
            self.sread[i], self.swrite[i] = True, bool(s.type & 2)
        else:
            self.slo[i], self.shi[i] = 0, s.limit
            code = s.s and (s.type & 8)
            self.sread[i] = bool(not code or s.type & 2) if s.s else False
            self.swrite[i] = bool(s.s and not code and s.type & 2)
        if i == CS:
            self.code32 = bool(s.db) and self.pe and not self.flags & VM
        elif i == SS:
            self.stack32 = bool(s.db) and self.pe and not self.flags & VM

    def set_seg(self, i: int, seg: Segment) -> None:
        self.segs[i] = seg
        self._cache_seg(i)

    def recache_all(self) -> None:
        self.pe = bool(self.cr0 & CR0_PE)
        self.pg = bool(self.cr0 & CR0_PG) and self.pe or self.always_translate
        for i in range(6):
            self._cache_seg(i)
        self.set_cpl(self.segs[CS].selector & 3 if self.pe and not self.flags & VM else
                     (3 if self.flags & VM else 0))

    def set_cpl(self, cpl: int) -> None:
        self.mode_epoch += 1
        self.cpl = cpl
        self.user = 1 if cpl == 3 else 0

    def seg_fault(self, s: int):
        if self.pe and self.segs[s].unusable and s != SS:
            return gp(0)
        return CpuFault(SSF, 0) if s == SS else gp(0)

    # --- segmented access ----------------------------------------------------
    def rd(self, s: int, off: int, n: int) -> int:
        if off < self.slo[s] or off + n - 1 > self.shi[s] or not self.sread[s]:
            raise self.seg_fault(s)
        lin = (self.sbase[s] + off) & 0xFFFFFFFF
        # Fast path (hot): a TLB hit or no paging, inside one page of RAM.
        if self.pg:
            base = self.tlb[self.user].get(lin >> 12)
            if base is None or (lin & 0xFFF) + n > 0x1000:
                return self.rd_lin(lin, n)
            p = base | (lin & 0xFFF)
        else:
            p = lin
        if p + n <= self.ramsize:
            if n == 1:
                return self.mm[p]
            return int.from_bytes(self.mm[p:p + n], "little")
        return self._rd_phys_slow(p, n)

    def wr(self, s: int, off: int, n: int, v: int) -> None:
        if off < self.slo[s] or off + n - 1 > self.shi[s] or not self.swrite[s]:
            raise self.seg_fault(s)
        lin = (self.sbase[s] + off) & 0xFFFFFFFF
        if self.pg:
            base = self.tlb[self.user | 2].get(lin >> 12)
            if base is None or (lin & 0xFFF) + n > 0x1000:
                return self.wr_lin(lin, n, v)
            p = base | (lin & 0xFFF)
        else:
            p = lin
        if p + n <= self.ramsize:
            if n == 1:
                self.mm[p] = v & 0xFF
            else:
                self.mm[p:p + n] = (v & MASKS[n]).to_bytes(n, "little")
            cp = self.code_pages
            if cp and ((p >> 12) in cp or ((p + n - 1) >> 12) in cp):
                self.code_written(p, n)
            return
        self.wr_phys(p, n, v)

    def check_wr(self, s: int, off: int, n: int) -> int:
        """Segment and page checks of a write without writing (for
        instructions that must not fault half-way). Returns the linear address."""
        if off < self.slo[s] or off + n - 1 > self.shi[s] or not self.swrite[s]:
            raise self.seg_fault(s)
        lin = (self.sbase[s] + off) & 0xFFFFFFFF
        if self.pg:
            self.translate(lin, 1, self.user)
            if (lin & 0xFFF) + n > 0x1000:
                # The second page's first byte, as a split write reports it (CR2).
                self.translate(((lin | 0xFFF) + 1) & 0xFFFFFFFF, 1, self.user)
        return lin

    # --- stack ---------------------------------------------------------------
    def push(self, v: int, n: int) -> None:
        r = self.r
        if self.stack32:
            sp = (r[4] - n) & 0xFFFFFFFF
            self.wr(SS, sp, n, v)
            r[4] = sp
        else:
            sp = (r[4] - n) & 0xFFFF
            self.wr(SS, sp, n, v)
            r[4] = (r[4] & 0xFFFF0000) | sp

    def pop(self, n: int) -> int:
        r = self.r
        if self.stack32:
            v = self.rd(SS, r[4], n)
            r[4] = (r[4] + n) & 0xFFFFFFFF
        else:
            sp = r[4] & 0xFFFF
            v = self.rd(SS, sp, n)
            r[4] = (r[4] & 0xFFFF0000) | ((sp + n) & 0xFFFF)
        return v

    def sp_add(self, k: int) -> None:
        if self.stack32:
            self.r[4] = (self.r[4] + k) & 0xFFFFFFFF
        else:
            self.r[4] = (self.r[4] & 0xFFFF0000) | ((self.r[4] + k) & 0xFFFF)

    # --- linear access (paging) ----------------------------------------------
    def translate(self, lin: int, write: int, user: int) -> int:
        base = self.tlb[user | write << 1].get(lin >> 12)
        if base is None:
            base = self.walk(self, lin, write, user)
        return base | (lin & 0xFFF)

    def rd_lin(self, lin: int, n: int, user: int | None = None) -> int:
        if self.pg:
            if (lin & 0xFFF) + n > 0x1000:
                return self._split_rd(lin, n, user)
            p = self.translate(lin, 0, self.user if user is None else user)
        else:
            p = lin
        if p + n <= self.ramsize:
            if n == 1:
                return self.mm[p]
            return int.from_bytes(self.mm[p:p + n], "little")
        return self._rd_phys_slow(p, n)

    def wr_lin(self, lin: int, n: int, v: int, user: int | None = None) -> None:
        if self.pg:
            if (lin & 0xFFF) + n > 0x1000:
                return self._split_wr(lin, n, v, user)
            p = self.translate(lin, 1, self.user if user is None else user)
        else:
            p = lin
        self.wr_phys(p, n, v)

    def _split_rd(self, lin, n, user):
        u = self.user if user is None else user
        ps = [self.translate((lin + i) & 0xFFFFFFFF, 0, u) for i in range(n)]
        return sum(self.rd_phys(p, 1) << (8 * i) for i, p in enumerate(ps))

    def _split_wr(self, lin, n, v, user):
        u = self.user if user is None else user
        ps = [self.translate((lin + i) & 0xFFFFFFFF, 1, u) for i in range(n)]
        for i, p in enumerate(ps):
            self.wr_phys(p, 1, (v >> (8 * i)) & 0xFF)

    # System (descriptor table, TSS, IDT) accesses are supervisor accesses.
    def rd_sys(self, lin: int, n: int) -> int:
        return self.rd_lin(lin & 0xFFFFFFFF, n, 0)

    def wr_sys(self, lin: int, n: int, v: int) -> None:
        self.wr_lin(lin & 0xFFFFFFFF, n, v, 0)

    # --- physical access ---------------------------------------------------------
    def rd_phys(self, p: int, n: int) -> int:
        if p + n <= self.ramsize:
            return int.from_bytes(self.mm[p:p + n], "little")
        return self._rd_phys_slow(p, n)

    def _rd_phys_slow(self, p: int, n: int) -> int:
        p &= 0xFFFFFFFF
        if p >= self.ramsize:
            self.dev_epoch += 1
            return self.mmio.read(p, n) & MASKS[n]
        return sum(self.rd_phys((p + i) & 0xFFFFFFFF, 1) << (8 * i) for i in range(n))

    def wr_phys(self, p: int, n: int, v: int) -> None:
        if p + n <= self.ramsize:
            if n == 1:
                self.mm[p] = v & 0xFF
            else:
                self.mm[p:p + n] = (v & MASKS[n]).to_bytes(n, "little")
            cp = self.code_pages
            if cp and ((p >> 12) in cp or ((p + n - 1) >> 12) in cp):
                self.code_written(p, n)
            return
        p &= 0xFFFFFFFF
        if p >= self.ramsize:
            self.dev_epoch += 1
            self.mmio.write(p, n, v & MASKS[n])
            return
        for i in range(n):
            self.wr_phys((p + i) & 0xFFFFFFFF, 1, (v >> (8 * i)) & 0xFF)

    def code_written(self, p: int, n: int) -> None:
        """Hook: the block cache invalidates blocks on written code pages."""

    def memory_remapped(self, lo: int, hi: int) -> None:
        """Hook: the chipset changed what physical [lo, hi) reads and
        writes reach (PAM): the block cache drops code compiled from there."""
        self.code_pages.update(self.watched_pages)
        self.dev_epoch += 1

    # --- TLB -----------------------------------------------------------------------
    def flush_tlb(self, keep_global: bool = False) -> None:
        if keep_global and self.tlb_global and self.cr4 & CR4_PGE:
            # A CR3 load: only the pages not global go (few, with a kernel
            # mapped global), and only what was derived from them.
            dropped = set()
            for t in self.tlb:
                dropped.update(t.keys())
            dropped -= self.tlb_global
            for t in self.tlb:
                for vpn in dropped:
                    t.pop(vpn, None)
            self.pages_dropped(dropped)
            return
        self.tlb = [{}, {}, {}, {}]
        self.tlb_global = set()
        self.paging_changed()

    def invlpg(self, lin: int) -> None:
        vpn = lin >> 12
        for t in self.tlb:
            t.pop(vpn, None)
        self.tlb_global.discard(vpn)
        self.page_invalidated(vpn)

    def paging_changed(self) -> None:
        """Hook: the block cache drops translations it derived from the TLB."""

    def page_invalidated(self, vpn: int) -> None:
        """Hook: one linear page's translation was dropped (INVLPG)."""
        self.paging_changed()

    def pages_dropped(self, vpns: set[int]) -> None:
        """Hook: these linear pages' translations were dropped (a CR3 load
        that kept the global pages)."""
        self.paging_changed()

    # --- small helpers -------------------------------------------------------------
    @property
    def iopl(self) -> int:
        return (self.flags >> 12) & 3

    def copy_seg(self, i: int) -> Segment:
        return self.segs[i].copy()
