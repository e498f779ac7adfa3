"""`--paging shadow`: first-generation VT-x, as in Adams & Agesen's paper.
Without EPT the CPU walks the monitor's shadow page tables
(monitors/common/shadow_paging.py, shared with the trap monitor), so the
monitor takes what keeps them right: MOV to/from CR3 (CR3-load and
CR3-store exiting), the guest's CR0/CR4 paging bits (owned through the
guest/host masks: the real CR0 always has PG and WP, the real CR4 no PSE or
PGE), INVLPG, and #PF (the exception bitmap): a hidden fault is filled, a
write to a traced guest page table is let through for one instruction
(the monitor trap flag) and mirrored, and a fault the guest's own tables
cause is reflected into the guest with its CR2.
"""
from __future__ import annotations

from collections import Counter

from ringvisor.cpu.semantics import protection
from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.capabilities import CR4_VMXE
from ringvisor.cpu.vmx.exits import decode_cr
from ringvisor.cpu.vmx.operation import invvpid
from ringvisor.errors import GuestCrashed
from ringvisor.monitors.common.guest_mmu import GuestMmu, ReservedAccess, VirtualFault
from ringvisor.monitors.common.shadow_paging import PoolExhausted
from ringvisor.monitors.hw import shadow_peers
from ringvisor.monitors.hw.shadow_peers import PeerShadowMmu
from ringvisor.monitors.common.stepper import changed_range
from ringvisor.monitors.common.vcpu import VirtualCpu
from ringvisor.monitors.hw import fpu

CR0_PE, CR0_NE, CR0_WP, CR0_PG = 1, 0x20, 1 << 16, 1 << 31
CR4_PSE, CR4_PGE = 0x10, 0x80
CR0_OWNED = CR0_PE | CR0_NE | CR0_WP | CR0_PG
CR4_OWNED = CR4_VMXE | CR4_PSE | CR4_PGE
CR4_VALID = protection.CR4_VALID    # the CPU's own (VME/PVI pass through to GUEST_CR4)
RW = 2


class ShadowPaging:
    def __init__(self, mon):
        self.mon = mon
        self.stats = Counter()
        self.vcpu = VirtualCpu(ring=1)
        self.gmmu = GuestMmu(mon.memory, self.vcpu, mon.region)
        # The guest has the whole linear space: no hole for the monitor, who
        # lives in root operation's own address space (the host CR3).
        self.shadow = PeerShadowMmu(mon.region, self.vcpu, self.gmmu, 1, self.stats, linear_top=1 << 32,
                                    peers=self.peers)
        self.step = None                 # (shadow PTE, its value, guest frame, bytes before)
        v = mon.vmcs
        v["EXCEPTION_BITMAP"] = 1 << 14
        v["CR0_GUEST_HOST_MASK"] = CR0_OWNED
        v["CR4_GUEST_HOST_MASK"] = CR4_OWNED

    def peers(self) -> list["ShadowPaging"]:
        """The other vCPUs' shadow paging (--cpus N: shadow_peers.py)."""
        return [m.shadow for m in self.mon.siblings if m is not self.mon]

    def keep_read_only(self, frame: int) -> None:
        shadow_peers.keep_read_only(self, frame)

    # --- state -------------------------------------------------------------------------
    def set_guest(self, st) -> None:
        if not st.cr0 & CR0_PE:
            raise GuestCrashed("--paging shadow runs protected-mode guests (first-generation VT-x "
                               "has no unrestricted guest); use --paging ept")
        self.vcpu.cr0, self.vcpu.cr3, self.vcpu.cr4 = st.cr0, st.cr3, st.cr4
        self._load_cr0()
        self._load_cr4()
        self._switch()

    def view(self, st):
        """The guest's control registers in a state read from the VMCS: the
        bits the monitor owns as the guest set them, the others (CR0.TS
        after CLTS, CR4.TSD...) as the CPU holds them."""
        v, vcpu = self.mon.vmcs, self.vcpu
        st.cr0 = (v["GUEST_CR0"] & ~CR0_OWNED) | (vcpu.cr0 & CR0_OWNED)
        st.cr4 = (v["GUEST_CR4"] & ~CR4_OWNED) | (vcpu.cr4 & CR4_OWNED & ~CR4_VMXE)
        st.cr3 = vcpu.cr3
        return st

    def guest_control_registers(self, cr0: int, cr4: int) -> tuple[int, int, int]:
        """(CR0, CR3, CR4) as the guest set them, from the CPU's CR0/CR4 in
        the VMCS (for the monitor's emulator, interpret.py)."""
        vcpu = self.vcpu
        return (cr0 & ~CR0_OWNED) | (vcpu.cr0 & CR0_OWNED), vcpu.cr3, \
            (cr4 & ~CR4_OWNED) | (vcpu.cr4 & CR4_OWNED & ~CR4_VMXE)

    def emulated(self, cr0: int, cr3: int, cr4: int) -> None:
        """The emulator ran on the guest's own control registers (saved into
        the VMCS as they were): back to the shadow's, following a CR3 it
        loaded (a task switch) and keeping the CR0 bits it set (TS)."""
        vcpu = self.vcpu
        vcpu.cr0 = (vcpu.cr0 & CR0_OWNED) | (cr0 & ~CR0_OWNED)
        self._load_cr0()
        self._load_cr4()
        if (cr3 ^ vcpu.cr3) & 0xFFFFF018:
            vcpu.cr3 = cr3 & 0xFFFFF018
            self.stats["cr3_writes"] += 1
        self._switch()

    def _load_cr0(self) -> None:
        v, cr0 = self.mon.vmcs, self.vcpu.cr0
        v["GUEST_CR0"] = cr0 | CR0_OWNED
        v["CR0_READ_SHADOW"] = cr0 & CR0_OWNED
        fpu.follow_ne(v, cr0)

    def _load_cr4(self) -> None:
        v, cr4 = self.mon.vmcs, self.vcpu.cr4
        v["GUEST_CR4"] = (cr4 & ~(CR4_PSE | CR4_PGE)) | CR4_VMXE
        v["CR4_READ_SHADOW"] = cr4 & CR4_OWNED

    def _switch(self) -> None:
        """Load the shadow directory for the guest's CR3 (or its identity
        view while its paging is off); the guest's TLB goes with it."""
        try:
            frame = self.shadow.activate()
        except PoolExhausted:
            self.shadow.reset()
            frame = self.shadow.activate()
        self.mon.vmcs["GUEST_CR3"] = frame
        self.flush()

    def flush(self) -> None:
        invvpid(self.mon.cpu, 1, self.mon.vmcs["VPID"])
        self.shadow.need_flush = False

    # --- exits ---------------------------------------------------------------------------
    def cr_access(self, exit) -> None:
        mon, q = self.mon, decode_cr(exit.qualification)
        r, v = mon.cpu.r, mon.vmcs
        gpr = (lambda: v["GUEST_RSP"]) if q["gpr"] == 4 else (lambda: r[q["gpr"]])
        cr, access = q["cr"], q["access"]
        if access == "mov from" and cr == 3:
            value = self.vcpu.cr3
            if q["gpr"] == 4:
                v["GUEST_RSP"] = value
            else:
                r[q["gpr"]] = value
            self.stats["cr3_reads"] += 1
        elif access == "mov to" and cr == 3:
            self.vcpu.cr3 = gpr() & 0xFFFFF018
            self.stats["cr3_writes"] += 1
            self._switch()
        elif access == "mov to" and cr == 0:
            value = (gpr() | 0x10) & 0xE005003F
            if value & CR0_PG and not value & CR0_PE or not value & CR0_PE:
                mon.inject_exception(13, 0)
                return
            old, self.vcpu.cr0 = self.vcpu.cr0, value
            self._load_cr0()
            if (old ^ value) & (CR0_PG | CR0_WP):
                self.stats["cr0_paging_writes"] += 1
                self._switch()
        elif access == "mov to" and cr == 4:
            value = gpr()
            if value & ~CR4_VALID:
                mon.inject_exception(13, 0)
                return
            old, self.vcpu.cr4 = self.vcpu.cr4, value
            self._load_cr4()
            if (old ^ value) & CR4_PSE:
                self.shadow.reset()
            self._switch()
        elif access == "lmsw":
            value = (self.vcpu.cr0 & ~0xE) | (q["lmsw_data"] & 0xF) | (self.vcpu.cr0 & CR0_PE)
            self.vcpu.cr0 = value
            self._load_cr0()
        else:
            mon.crash(f"unexpected CR access exit under shadow paging: {q}")
        mon.skip(exit)

    def invlpg(self, exit) -> None:
        # The shadow is kept in sync eagerly (traced page tables): only the TLB entry goes.
        self.stats["invlpg"] += 1
        invvpid(self.mon.cpu, 0, self.mon.vmcs["VPID"], exit.qualification)
        self.mon.skip(exit)

    def page_fault(self, exit) -> None:
        mon, v = self.mon, self.mon.vmcs
        lin, code = exit.qualification, v["VM_EXIT_INTR_ERROR_CODE"]
        try:
            step = self.shadow.fill(lin, bool(code & 2), bool(code & 4))
        except VirtualFault as e:
            # The guest's own tables say no: its #PF, its CR2.
            self.stats["reflected_faults"] += 1
            mon.cpu.cr2 = e.cr2
            mon.inject_exception(e.vector, e.code)
            return
        except ReservedAccess as e:
            mon.crash(str(e))
        except PoolExhausted:
            self.shadow.reset()
            self._switch()
            return
        self.stats["hidden_faults"] += 1
        if step is not None and shadow_peers.release_if_unused(self, step[1]):
            step = self.shadow.fill(lin, bool(code & 2), bool(code & 4))
        if step is not None:
            # A write the shadow must keep read-only (a traced page table):
            # let this one instruction write, then mirror what it changed.
            pte_addr, frame = step
            region = mon.region
            old = region.read_u32(pte_addr)
            region.write_u32(pte_addr, old | RW)
            self.step = (pte_addr, old, frame, bytes(mon.memory.mmap[frame:frame + 0x1000]))
            v["CPU_BASED_VM_EXEC_CONTROL"] |= C.CPU_MONITOR_TRAP_FLAG
            self.stats["pte_write_traps"] += 1
        if self.shadow.need_flush:
            self.flush()
        else:
            invvpid(mon.cpu, 0, v["VPID"], lin)

    def stepped(self, exit) -> None:
        """Monitor trap flag: the guest's page-table write happened."""
        mon = self.mon
        mon.vmcs["CPU_BASED_VM_EXEC_CONTROL"] &= ~C.CPU_MONITOR_TRAP_FLAG
        pte_addr, old, frame, before = self.step
        self.step = None
        mon.region.write_u32(pte_addr, old)
        span = changed_range(before, bytes(mon.memory.mmap[frame:frame + 0x1000]))
        if span:
            shadow_peers.mirror_everywhere(self, frame, *span)
        self.flush()

    def guest_wrote(self, phys: int, length: int) -> None:
        """The monitor wrote guest memory for the guest: if it is a traced
        page table, the shadows follow."""
        frame = phys & 0xFFFFF000
        shadow_peers.mirror_everywhere(self, frame, phys & 0xFFF, (phys & 0xFFF) + length)
        if self.shadow.need_flush:
            self.flush()

    def statistics(self) -> dict:
        return dict(self.stats)
