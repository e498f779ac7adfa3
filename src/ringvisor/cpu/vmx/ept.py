"""EPT (SDM vol. 3C 28.3): guest-physical addresses through 4-level EPT
tables, and the two-dimensional walk that combines them with the guest's
own 32-bit paging.

Every guest-physical address the CPU uses in non-root operation with EPT
goes through `Ept.translate`: the guest's page-directory and page-table
entries (each a guest-physical address) and the final page. The TLB then
caches the combined mapping, linear page -> host-physical page, so a TLB
hit costs what it costs natively; a miss costs the 2-D walk, whose memory
references are counted (`refs`, `misses`): with 2-level guest paging and
4-level EPT a miss reads up to 3 x 4 EPT entries plus 2 guest entries.

EPT entries: R 0, W 1, X 2, memory type 5:3 (leaves), ignore-PAT 6, page
size 7 (PDE: 2 MiB; PDPTE: 1 GiB), accessed 8, dirty 9 (leaves), address
51:12. A not-present entry (bits 2:0 = 0) or missing permission is an EPT
violation; W without R, a reserved memory type (2, 3, 7), page size in a
PML4E or a reserved address bit is an EPT misconfiguration. The soft TLB
keeps one kind of entry for reads and fetches: fetches need R here (X is
reported in the qualification, not enforced separately).
"""
from __future__ import annotations

from ringvisor.cpu.architecture import CR0_WP, CR4_PGE, CR4_PSE
from ringvisor.cpu.paging import A, D, G, P, PS, RW, US, page_fault
from ringvisor.cpu.vmx.exits import (EPT_GLA_TRANSLATED, EPT_GLA_VALID, EPT_READ, EPT_WRITE, R,
                                     VmExitSignal)

MAXPHYADDR = 36
ADDR = ((1 << MAXPHYADDR) - 1) & ~0xFFF
RESERVED = ((1 << 52) - 1) & ~((1 << MAXPHYADDR) - 1)
ER, EW, EX, EPS, EA, ED = 1, 2, 4, 0x80, 0x100, 0x200
BAD_MEMORY_TYPES = {2, 3, 7}


class Ept:
    def __init__(self, cpu, eptp: int):
        self.cpu, self.eptp = cpu, eptp
        self.root = eptp & ADDR
        self.ad = bool(eptp & 0x40)
        self.refs = 0                     # memory references by TLB-miss walks
        self.misses = 0
        self.violations = 0

    # --- guest-physical -> host-physical ----------------------------------------------
    def translate(self, gpa: int, write: bool, lin: int | None, final: bool,
                  count: bool = True) -> int:
        """The host-physical address of `gpa`, or a VM exit (violation or
        misconfiguration). `lin`: the linear address being translated (None
        when the guest does not page); `final`: the access is to the
        translated address, not to a guest paging-structure entry. `count`:
        False for the A/D write-back to an entry just read (the same access)."""
        cpu = self.cpu
        addr = self.root
        perms = ER | EW | EX
        for level in (39, 30, 21, 12):
            at = addr | ((gpa >> level) & 0x1FF) << 3
            e = cpu.rd_phys(at, 8)
            if count:
                self.refs += 1
            if not e & 7:
                self._violation(gpa, write, lin, final, 0)
            if (e & 3) == EW or e & RESERVED or (level == 39 and e & EPS) or \
                    (level == 39 and e & 0x78) or ((e & EPS or level == 12)
                                                    and (e >> 3) & 7 in BAD_MEMORY_TYPES):
                raise VmExitSignal(R["EPT_MISCONFIG"], 0, gpa=gpa)
            perms &= e
            leaf = level == 12 or (e & EPS and level in (30, 21))
            if self.ad:
                new = e | EA | (ED if leaf and write else 0)
                if new != e:
                    cpu.wr_phys(at, 8, new)
            if leaf:
                size = 1 << level
                if not perms & ER or (write and not perms & EW):
                    self._violation(gpa, write, lin, final, perms)
                return (e & ADDR & ~(size - 1)) | (gpa & (size - 1))
            addr = e & ADDR
        raise AssertionError("unreachable")

    def statistics(self) -> dict:
        return {"tlb_misses": self.misses, "walk_references": self.refs,
                "references_per_miss": round(self.refs / self.misses, 2) if self.misses else 0.0,
                "violations": self.violations}

    def _violation(self, gpa, write, lin, final, perms) -> None:
        self.violations += 1
        q = (EPT_WRITE if write else EPT_READ) | (perms & 7) << 3
        if lin is not None:
            q |= EPT_GLA_VALID | (EPT_GLA_TRANSLATED if final else 0)
        raise VmExitSignal(R["EPT_VIOLATION"], q, gpa=gpa, gla=lin or 0)

    # --- the 2-D walk ------------------------------------------------------------------
    def walk(self, cpu, lin: int, write: int, user: int) -> int:
        """Core.translate's walker in non-root operation with EPT: the
        guest's paging (if on) with each entry read through EPT, then the
        final guest-physical page through EPT; fills the TLB with the
        host-physical page."""
        self.misses += 1
        lin &= 0xFFFFFFFF
        if not (cpu.cr0 & 0x80000000 and cpu.cr0 & 1):
            base = self.translate(lin, bool(write), None, True) & ~0xFFF
            cpu.tlb[user | write << 1][lin >> 12] = base
            return base
        # A/D-enabled EPT treats guest paging-structure accesses as writes (28.3.3.2).
        pt_write = self.ad
        pde_gpa = (cpu.cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)
        pde_hpa = self.translate(pde_gpa, pt_write, lin, False)
        pde = cpu.rd_phys(pde_hpa, 4)
        self.refs += 1
        if not pde & P:
            raise page_fault(cpu, lin, False, write, user)
        wp = bool(cpu.cr0 & CR0_WP)
        if pde & PS and cpu.cr4 & CR4_PSE:
            if not _allowed(pde, write, user, wp):
                raise page_fault(cpu, lin, True, write, user)
            new = pde | A | (D if write else 0)
            if new != pde:
                self.translate(pde_gpa, True, lin, False, count=False)
                cpu.wr_phys(pde_hpa, 4, new)
            gpa = (pde & 0xFFC00000) | (lin & 0x3FF000)
            glob = bool(pde & G)
        else:
            pte_gpa = (pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)
            pte_hpa = self.translate(pte_gpa, pt_write, lin, False)
            pte = cpu.rd_phys(pte_hpa, 4)
            self.refs += 1
            if not pte & P:
                raise page_fault(cpu, lin, False, write, user)
            eff = (pde & pte & (US | RW)) | (pte & ~(US | RW))
            if not _allowed(eff, write, user, wp):
                raise page_fault(cpu, lin, True, write, user)
            if not pde & A:
                self.translate(pde_gpa, True, lin, False, count=False)
                cpu.wr_phys(pde_hpa, 4, pde | A)
            new = pte | A | (D if write else 0)
            if new != pte:
                self.translate(pte_gpa, True, lin, False, count=False)
                cpu.wr_phys(pte_hpa, 4, new)
            gpa = pte & 0xFFFFF000
            glob = bool(pte & G)
        base = self.translate(gpa | (lin & 0xFFF), bool(write), lin, True) & ~0xFFF
        vpn = lin >> 12
        cpu.tlb[user | write << 1][vpn] = base
        if glob and cpu.cr4 & CR4_PGE:
            cpu.tlb_global.add(vpn)
        return base


def _allowed(flags: int, write: int, user: int, wp: bool) -> bool:
    if user:
        return bool(flags & US) and (not write or bool(flags & RW))
    return not write or not wp or bool(flags & RW)


def identity_tables(alloc, write_u64, size: int, holes=()) -> int:
    """EPT tables mapping guest-physical [0, size) to the same host-physical
    addresses, read/write/execute, write-back, with 2 MiB pages where a
    whole 2 MiB is mapped and 4 KiB pages elsewhere; `holes` (start, end)
    stay unmapped (an access there is an EPT violation). `alloc()` returns a
    zeroed 4 KiB host-physical frame. Returns the PML4's address."""
    leaf = ER | EW | EX | 6 << 3          # RWX, memory type WB
    pml4 = alloc()
    pdpt = alloc()
    write_u64(pml4, pdpt | ER | EW | EX)
    pds: dict[int, int] = {}

    def mapped(a: int) -> bool:
        return a < size and not any(s <= a < e for s, e in holes)

    for big in range(0, size, 1 << 21):
        i3, i2 = big >> 30, (big >> 21) & 0x1FF
        if i3 not in pds:
            pds[i3] = alloc()
            write_u64(pdpt + 8 * i3, pds[i3] | ER | EW | EX)
        pd = pds[i3]
        if all(mapped(big + k) for k in (0, (1 << 21) - 1)) and \
                not any(big < e and s < big + (1 << 21) for s, e in holes):
            write_u64(pd + 8 * i2, big | leaf | EPS)
            continue
        pt = alloc()
        write_u64(pd + 8 * i2, pt | ER | EW | EX)
        for i1 in range(512):
            a = big + (i1 << 12)
            if mapped(a):
                write_u64(pt + 8 * i1, a | leaf)
    return pml4
