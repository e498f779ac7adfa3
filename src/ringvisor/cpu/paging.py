"""Paging (SDM vol. 3 ch. 4, 32-bit paging): the page walk behind the TLB.

4 KiB pages and, with CR4.PSE, 4 MiB pages; U/S and R/W at both levels
(supervisor writes honour read-only pages only when CR0.WP is set);
accessed bits on every level walked and the dirty bit on writes; a #PF sets
CR2 and pushes the error code (P, W/R, U/S, RSVD). The TLB caches one entry
per (user, write) kind, filled only after the walk has set A (and D), so a
later write through a read-only-cached page walks again and sets D. Global
pages (CR4.PGE and G=1) survive CR3 loads.
"""
from __future__ import annotations

from ringvisor.cpu.architecture import CR0_WP, CR4_PGE, CR4_PSE, PFV, CpuFault

P, RW, US, A, D, PS, G = 1, 2, 4, 0x20, 0x40, 0x80, 0x100


def page_fault(cpu, lin: int, present: bool, write: int, user: int, rsvd: bool = False):
    cpu.cr2_before = cpu.cr2           # a #PF that causes a VM exit leaves CR2 alone (SDM 27.1)
    cpu.cr2 = lin & 0xFFFFFFFF
    return CpuFault(PFV, (1 if present else 0) | (write << 1) | (user << 2) | (8 if rsvd else 0))


def _allowed(flags: int, write: int, user: int, wp: bool) -> bool:
    if user:
        return bool(flags & US) and (not write or bool(flags & RW))
    return not write or not wp or bool(flags & RW)


def walk(cpu, lin: int, write: int, user: int) -> int:
    """Translate `lin`; returns the physical page base and fills the TLB."""
    lin &= 0xFFFFFFFF
    pde_addr = (cpu.cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)
    pde = cpu.rd_phys(pde_addr, 4)
    if not pde & P:
        raise page_fault(cpu, lin, False, write, user)
    wp = bool(cpu.cr0 & CR0_WP)
    if pde & PS and cpu.cr4 & CR4_PSE:
        if not _allowed(pde, write, user, wp):
            raise page_fault(cpu, lin, True, write, user)
        new = pde | A | (D if write else 0)
        if new != pde:
            cpu.wr_phys(pde_addr, 4, new)
        base = (pde & 0xFFC00000) | (lin & 0x3FF000)
        glob = bool(pde & G)
        eff = pde
    else:
        pte_addr = (pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)
        pte = cpu.rd_phys(pte_addr, 4)
        if not pte & P:
            raise page_fault(cpu, lin, False, write, user)
        eff = (pde & pte & (US | RW)) | (pte & ~(US | RW))
        if not _allowed(eff, write, user, wp):
            raise page_fault(cpu, lin, True, write, user)
        if not pde & A:
            cpu.wr_phys(pde_addr, 4, pde | A)
        new = pte | A | (D if write else 0)
        if new != pte:
            cpu.wr_phys(pte_addr, 4, new)
        base = pte & 0xFFFFF000
        glob = bool(pte & G)
    vpn = lin >> 12
    cpu.tlb[user | write << 1][vpn] = base
    if not write:
        # A read walk also validates reads of the other privilege where allowed.
        pass
    if glob and cpu.cr4 & CR4_PGE:
        cpu.tlb_global.add(vpn)
    return base


def probe(cpu, lin: int, write: int = 0, user: int = 0) -> int | None:
    """Translate without side effects (for traces, monitors and tests)."""
    try:
        saved_cr2 = cpu.cr2
        tlbs = [dict(t) for t in cpu.tlb]
        glob = set(cpu.tlb_global)
        return cpu.translate(lin, write, user)
    except CpuFault:
        return None
    finally:
        cpu.cr2 = saved_cr2
        cpu.tlb, cpu.tlb_global = tlbs, glob
