"""Guest-linear memory as the guest's own page tables define it: what the
monitor reads and writes on the guest's behalf (interrupt frames, IRET
frames, descriptor tables, instruction bytes) and the page walk behind
shadow-table fills. Walks follow SDM vol. 3 4.3 (32-bit paging, 4 KiB and
PSE 4 MiB pages, U/S and R/W at both levels, CR0.WP) and set the accessed
and dirty bits exactly where the hardware would, so they stay truthful.

A denied access raises VirtualFault: the exception the guest's own CPU
would take (#PF with the guest's error code and faulting address)."""
from __future__ import annotations

from ringvisor.monitors.common.vcpu import CR0_WP, CR4_PSE

P, RW, US, A, D, PS = 1, 2, 4, 0x20, 0x40, 0x80
PF, GP, SS_FAULT = 14, 13, 12


class ReservedAccess(Exception):
    """The guest reached memory that is not its own (the monitor's region,
    or beyond RAM where the monitor must read a guest structure)."""


class VirtualFault(Exception):
    """An exception for the guest (not for the monitor): vector, error code,
    and for #PF the faulting linear address (the guest's CR2)."""

    def __init__(self, vector: int, code: int | None = 0, cr2: int | None = None):
        super().__init__(vector, code, cr2)
        self.vector, self.code, self.cr2 = vector, code, cr2


class GuestMmu:
    def __init__(self, memory, vcpu, region, on_write=None):
        self.memory, self.mm, self.vcpu, self.region = memory, memory.mmap, vcpu, region
        self.on_write = on_write          # (physical, length): the shadow mirrors page-table writes

    # --- the walk -------------------------------------------------------------------
    def walk(self, lin: int, write: bool, user: bool, set_bits: bool = True) -> int:
        """Physical address of `lin` for this access, or VirtualFault(#PF)."""
        lin &= 0xFFFFFFFF
        v = self.vcpu
        if not v.paging:
            return lin
        code = (2 if write else 0) | (4 if user else 0)
        pde_addr = (v.cr3 & 0xFFFFF000) | ((lin >> 20) & 0xFFC)
        pde = self._entry(pde_addr)
        if not pde & P:
            raise VirtualFault(PF, code, lin)
        wp = bool(v.cr0 & CR0_WP)
        if pde & PS and v.cr4 & CR4_PSE:
            if not allowed(pde, write, user, wp):
                raise VirtualFault(PF, code | 1, lin)
            if set_bits:
                self._set(pde_addr, pde, A | (D if write else 0))
            return (pde & 0xFFC00000) | (lin & 0x3FFFFF)
        pte_addr = (pde & 0xFFFFF000) | ((lin >> 10) & 0xFFC)
        pte = self._entry(pte_addr)
        if not pte & P:
            raise VirtualFault(PF, code, lin)
        if not allowed(pde & pte, write, user, wp):
            raise VirtualFault(PF, code | 1, lin)
        if set_bits:
            self._set(pde_addr, pde, A)
            self._set(pte_addr, pte, A | (D if write else 0))
        return (pte & 0xFFFFF000) | (lin & 0xFFF)

    def peek(self, lin: int) -> int | None:
        """Translate without side effects (reports); None when unmapped."""
        try:
            return self.walk(lin, False, False, set_bits=False)
        except (VirtualFault, ReservedAccess):
            return None

    def _entry(self, addr: int) -> int:
        self._check_phys(addr, 4, "a page-table entry")
        return int.from_bytes(self.mm[addr:addr + 4], "little")

    def _set(self, addr: int, entry: int, bits: int) -> None:
        if entry & bits != bits:
            self.mm[addr:addr + 4] = (entry | bits).to_bytes(4, "little")

    def _check_phys(self, phys: int, n: int, what: str) -> None:
        if self.region.contains(phys) or self.region.contains(phys + n - 1):
            raise ReservedAccess(f"the guest pointed the monitor at {what} in the memory the memory "
                                 f"map reserves for ringvisor's monitor (physical {phys:#x})")
        if phys + n > self.memory.size:
            raise ReservedAccess(f"the guest pointed the monitor at {what} outside guest RAM "
                                 f"(physical {phys:#x})")

    # --- linear access ------------------------------------------------------------------
    def read(self, lin: int, n: int, user: bool = False, what: str = "guest memory") -> bytes:
        out = bytearray()
        while n:
            chunk = min(n, 0x1000 - (lin & 0xFFF))
            p = self.walk(lin, False, user)
            self._check_phys(p, chunk, what)
            out += self.mm[p:p + chunk]
            lin, n = (lin + chunk) & 0xFFFFFFFF, n - chunk
        return bytes(out)

    def write(self, lin: int, data: bytes, user: bool = False, what: str = "guest memory") -> None:
        # Translate every page first: a write that faults must change nothing.
        parts, off, n = [], 0, len(data)
        while off < n:
            chunk = min(n - off, 0x1000 - ((lin + off) & 0xFFF))
            p = self.walk((lin + off) & 0xFFFFFFFF, True, user)
            self._check_phys(p, chunk, what)
            parts.append((p, off, chunk))
            off += chunk
        for p, off, chunk in parts:
            self.mm[p:p + chunk] = data[off:off + chunk]
            if self.on_write:
                self.on_write(p, chunk)

    def read_u(self, lin: int, n: int, user: bool = False) -> int:
        return int.from_bytes(self.read(lin, n, user), "little")

    def write_u(self, lin: int, n: int, value: int, user: bool = False) -> None:
        self.write(lin, (value & ((1 << (8 * n)) - 1)).to_bytes(n, "little"), user)

    def fetch(self, lin: int, user: bool, n: int = 15) -> bytes:
        """Up to n instruction bytes at `lin` (fewer if the next page is unmapped)."""
        first = min(n, 0x1000 - (lin & 0xFFF))
        code = self.read(lin, first, user, "instruction bytes")
        if first < n:
            try:
                code += self.read((lin + first) & 0xFFFFFFFF, n - first, user, "instruction bytes")
            except VirtualFault:
                pass
        return code


def allowed(flags: int, write: bool, user: bool, wp: bool) -> bool:
    if user:
        return bool(flags & US) and (not write or bool(flags & RW))
    return not write or not wp or bool(flags & RW)
