"""A KVM vCPU: registers, CPUID, and `run()` returning typed exits.

The exit path is the hot path of the kvm engine (every port access of the
guest that the kernel does not absorb comes through here), so it allocates
nothing: kvm_run is read through precomputed typed views of its mmap, and each
exit type has one preallocated instance per vCPU that `run()` refills.
"""
from __future__ import annotations

import ctypes as C
import fcntl
import mmap
import os

from ringvisor import exits as X
from ringvisor.cpu_state import EFER_LMA, CpuState, LongModeView, Segment, TableRegister
from ringvisor.kvm import ioctls as I
from ringvisor.kvm import structs as S
from ringvisor.kvm.system import ioctl_struct

_IO = S.EXIT_UNION_OFFSET
# Byte offsets of kvm_run fields read on the hot path.
_EXIT_REASON_U32 = 8 // 4
_IO_DIRECTION, _IO_SIZE, _IO_PORT_U16, _IO_COUNT_U32, _IO_DATA_OFFSET_U64 = (
    _IO, _IO + 1, (_IO + 2) // 2, (_IO + 4) // 4, (_IO + 8) // 8)
_COALESCED_ENTRY = C.sizeof(S.kvm_coalesced_mmio)


class Vcpu:
    # Where KVM puts the data of port I/O exits (KVM_PIO_PAGE_OFFSET = 1 on x86).
    PIO_DATA_OFFSET = mmap.PAGESIZE
    def __init__(self, vm, fd: int, index: int):
        self.vm, self.fd, self.index = vm, fd, index
        size = vm.kvm.vcpu_mmap_size
        self.run_area = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        mv = memoryview(self.run_area)
        self._u8, self._u16, self._u32, self._u64 = mv, mv.cast("H"), mv.cast("I"), mv.cast("Q")
        self.head = S.kvm_run_head.from_buffer(self.run_area)
        self._io, self._mmio = X.Io(), X.Mmio()
        self._halt, self._interrupted = X.Halt(), X.Interrupted()
        self._pio_views: dict[tuple[int, int], memoryview] = {}
        self._mmio_data = mv[_IO + 8:_IO + 16]
        self._decoders = {I.EXIT_IO: self._exit_io, I.EXIT_MMIO: self._exit_mmio,
                          I.EXIT_HLT: lambda: self._halt, I.EXIT_INTR: lambda: self._interrupted,
                          I.EXIT_SHUTDOWN: lambda: X.Shutdown("triple fault"),
                          I.EXIT_INTERNAL_ERROR: self._exit_internal,
                          I.EXIT_FAIL_ENTRY: self._exit_fail_entry,
                          I.EXIT_SYSTEM_EVENT: self._exit_system_event,
                          I.EXIT_DEBUG: self._exit_debug}
        # The coalesced-I/O ring, when the kernel offers one, sits a few pages in.
        page = vm.check_extension(I.KVM_CAP_COALESCED_MMIO)
        self.ring_u32 = None
        if page and (page + 1) * mmap.PAGESIZE <= size:
            base = page * mmap.PAGESIZE
            self.ring_base = base
            self.ring_u32 = mv[base:base + 8].cast("I")
            self.ring_entries = (mmap.PAGESIZE - 8) // _COALESCED_ENTRY
        self.exit_counts = [0] * 64   # by KVM exit reason: the exits that reached userspace
        self.coalesced_sink = None     # sink(addr, size, data, pio) for queued writes
        self.coalesced_writes = 0
        self.ports = None

    # -- running -----------------------------------------------------------
    def attach_ports(self, bus) -> None:
        """Serve single port accesses from `bus` inside run() (the common
        exit), instead of returning them as Io exits."""
        self.ports = bus

    def run(self) -> X.Exit:
        """Run the guest until an exit the caller must see. With a port bus
        attached, single (non-string) port accesses are completed here and
        the guest resumed at once: this loop is the engine's hot path."""
        ioctl, fd, KVM_RUN = fcntl.ioctl, self.fd, I.KVM_RUN
        u8, u16, u32, counts, ring = self._u8, self._u16, self._u32, self.exit_counts, self.ring_u32
        bus = self.ports
        pio = self.PIO_DATA_OFFSET
        while True:
            try:
                ioctl(fd, KVM_RUN, 0)
            except InterruptedError:
                self.head.immediate_exit = 0
                return self._interrupted
            except BlockingIOError:
                # An AP that waited for INIT/SIPI in the kernel and got one
                # (x86.c: -EAGAIN after kvm_vcpu_block): enter again, as QEMU does.
                continue
            except OSError as e:
                return X.InternalError(0, f"KVM_RUN failed: {e.strerror}")
            if ring is not None and ring[0] != ring[1]:
                self.drain_coalesced(self.coalesced_sink)
            reason = u32[_EXIT_REASON_U32]
            counts[reason & 63] += 1
            if reason != I.EXIT_IO or bus is None or u32[_IO_COUNT_U32] != 1 \
                    or self._u64[_IO_DATA_OFFSET_U64] != pio:
                decode = self._decoders.get(reason)
                return decode() if decode else X.Unknown(reason, {"name": I.EXIT_REASONS.get(reason, "?")})
            port, size = u16[_IO_PORT_U16], u8[_IO_SIZE]
            if u8[_IO_DIRECTION]:
                bus.write(port, size, u8[pio] if size == 1 else
                          u16[pio >> 1] if size == 2 else u32[pio >> 2])
            elif size == 1:
                u8[pio] = bus.read(port, 1) & 0xFF
            elif size == 2:
                u16[pio >> 1] = bus.read(port, 2) & 0xFFFF
            else:
                u32[pio >> 2] = bus.read(port, 4) & 0xFFFFFFFF

    def _exit_io(self) -> X.Io:
        io, u8 = self._io, self._u8
        io.write = u8[_IO_DIRECTION] == I.EXIT_IO_OUT
        io.size = size = u8[_IO_SIZE]
        io.port = self._u16[_IO_PORT_U16]
        io.count = count = self._u32[_IO_COUNT_U32]
        key = (self._u64[_IO_DATA_OFFSET_U64], size * count)
        view = self._pio_views.get(key)
        if view is None:
            view = self._pio_views[key] = u8[key[0]:key[0] + key[1]]
        io.data = view
        return io

    def _exit_mmio(self) -> X.Mmio:
        m = S.kvm_run_mmio.from_buffer(self.run_area, _IO)
        mmio = self._mmio
        mmio.address, mmio.size, mmio.write = m.phys_addr, m.len, bool(m.is_write)
        mmio.data = self._mmio_data[:m.len]
        return mmio

    def _exit_debug(self) -> X.Debug:
        d = S.kvm_debug_exit_arch.from_buffer(self.run_area, _IO)
        return X.Debug(d.exception, d.pc & 0xFFFFFFFF, d.dr6)

    def set_guest_debug(self, control: int, debugreg: tuple[int, ...] = ()) -> None:
        """KVM_SET_GUEST_DEBUG: `control` is I.GUESTDBG_* bits, `debugreg`
        DR0-DR7 for hardware breakpoints (DR4 and DR5 unused)."""
        arg = S.kvm_guest_debug(control=control)
        for i, value in enumerate(debugreg):
            arg.debugreg[i] = value
        ioctl_struct(self.fd, I.KVM_SET_GUEST_DEBUG, arg, "KVM_SET_GUEST_DEBUG")

    def _exit_internal(self) -> X.InternalError:
        e = S.kvm_run_internal.from_buffer_copy(self.run_area, _IO)
        insn = b""
        if e.suberror == I.INTERNAL_ERROR_EMULATION:
            f = S.kvm_run_emulation_failure.from_buffer_copy(self.run_area, _IO)
            if f.ndata >= 1 and f.flags & I.EMULATION_FLAG_INSTRUCTION_BYTES:
                insn = bytes(f.insn_bytes[:min(f.insn_size, 15)])
        return X.InternalError(e.suberror, I.INTERNAL_ERRORS.get(e.suberror, f"suberror {e.suberror}"),
                               insn, tuple(e.data[:min(e.ndata, 16)]))

    def _exit_fail_entry(self) -> X.InternalError:
        f = S.kvm_run_fail_entry.from_buffer_copy(self.run_area, _IO)
        return X.InternalError(0, f"VM entry failed (hardware reason {f.hardware_entry_failure_reason:#x})")

    def _exit_system_event(self) -> X.Exit:
        ev = S.kvm_run_system_event.from_buffer_copy(self.run_area, _IO)
        name = I.SYSTEM_EVENTS.get(ev.type, f"system event {ev.type}")
        return X.Shutdown(name)

    def request_stop(self) -> None:
        """Make the current or next KVM_RUN return at once (from any thread;
        pair with a signal to the vCPU thread to interrupt a running guest)."""
        self.head.immediate_exit = 1

    def drain_coalesced(self, sink) -> int:
        """Hand every queued coalesced write to `sink(addr, size, data, pio)`,
        oldest first. Returns how many there were."""
        ring = self.ring_u32
        if ring is None:
            return 0
        first, last = ring[0], ring[1]
        if first == last:
            return 0
        n, entries, base = 0, self.ring_entries, self.ring_base + 8
        while first != last:
            e = S.kvm_coalesced_mmio.from_buffer(self.run_area, base + first * _COALESCED_ENTRY)
            sink(e.phys_addr, e.len, bytes(e.data[:e.len]), bool(e.pio))
            first = (first + 1) % entries
            ring[0] = first
            n += 1
        self.coalesced_writes += n
        return n

    # -- state ---------------------------------------------------------------
    def get_regs(self) -> S.kvm_regs:
        regs = S.kvm_regs()
        fcntl.ioctl(self.fd, I.KVM_GET_REGS, regs)
        return regs

    def set_regs(self, regs: S.kvm_regs) -> None:
        ioctl_struct(self.fd, I.KVM_SET_REGS, regs, "KVM_SET_REGS")

    def get_sregs(self) -> S.kvm_sregs:
        sregs = S.kvm_sregs()
        fcntl.ioctl(self.fd, I.KVM_GET_SREGS, sregs)
        return sregs

    def set_sregs(self, sregs: S.kvm_sregs) -> None:
        ioctl_struct(self.fd, I.KVM_SET_SREGS, sregs, "KVM_SET_SREGS")

    def get_events(self) -> S.kvm_vcpu_events:
        ev = S.kvm_vcpu_events()
        fcntl.ioctl(self.fd, I.KVM_GET_VCPU_EVENTS, ev)
        return ev

    def mp_state(self) -> int:
        st = S.kvm_mp_state()
        fcntl.ioctl(self.fd, I.KVM_GET_MP_STATE, st)
        return st.mp_state

    def set_mp_state(self, state: int) -> None:
        ioctl_struct(self.fd, I.KVM_SET_MP_STATE, S.kvm_mp_state(mp_state=state), "KVM_SET_MP_STATE")

    def set_cpuid(self, entries: list[S.kvm_cpuid_entry2]) -> None:
        buf = S.kvm_cpuid2(len(entries))()
        buf.nent = len(entries)
        for i, e in enumerate(entries):
            buf.entries[i] = e
        ioctl_struct(self.fd, I.KVM_SET_CPUID2, buf, "KVM_SET_CPUID2")

    def tsc_khz(self) -> int:
        """The guest TSC's frequency (what RDTSC cycles are worth in time)."""
        return fcntl.ioctl(self.fd, I.KVM_GET_TSC_KHZ, 0)

    def translate(self, linear: int) -> int | None:
        t = S.kvm_translation(linear_address=linear)
        try:
            fcntl.ioctl(self.fd, I.KVM_TRANSLATE, t)
        except OSError:
            return None
        return t.physical_address if t.valid else None

    def get_state(self) -> CpuState:
        return state_from_kvm(self.get_regs(), self.get_sregs())

    def set_state(self, state: CpuState) -> None:
        sregs = self.get_sregs()
        regs = S.kvm_regs()
        state_to_kvm(state, regs, sregs)
        self.set_sregs(sregs)
        self.set_regs(regs)

    def close(self) -> None:
        if self.fd >= 0:
            self.head = None
            self._pio_views.clear()
            os.close(self.fd)
            self.fd = -1


_GPRS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp")
_GPRS64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
           "r12", "r13", "r14", "r15")
_SEGS = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")
_SEG_FIELDS = ("selector", "base", "limit", "type", "present", "dpl", "db", "s", "g", "avl", "unusable")


def _seg_from_kvm(k: S.kvm_segment) -> Segment:
    return Segment(selector=k.selector, base=k.base & 0xFFFFFFFF, limit=k.limit, type=k.type,
                   present=bool(k.present), dpl=k.dpl, db=bool(k.db), s=bool(k.s), g=bool(k.g),
                   avl=bool(k.avl), unusable=bool(k.unusable))


def _seg_to_kvm(seg: Segment, k: S.kvm_segment) -> None:
    for name in _SEG_FIELDS:
        setattr(k, name, int(getattr(seg, name)))
    k.l = 0


def state_from_kvm(regs: S.kvm_regs, sregs: S.kvm_sregs) -> CpuState:
    state = CpuState(**{g: getattr(regs, "r" + g[1:]) & 0xFFFFFFFF for g in _GPRS},
                     eip=regs.rip & 0xFFFFFFFF, eflags=regs.rflags & 0xFFFFFFFF)
    for name in _SEGS:
        setattr(state, name, _seg_from_kvm(getattr(sregs, name)))
    state.gdt = TableRegister(sregs.gdt.base & 0xFFFFFFFF, sregs.gdt.limit)
    state.idt = TableRegister(sregs.idt.base & 0xFFFFFFFF, sregs.idt.limit)
    state.cr0, state.cr2, state.cr3, state.cr4, state.efer = (
        sregs.cr0 & 0xFFFFFFFF, sregs.cr2 & 0xFFFFFFFF, sregs.cr3 & 0xFFFFFFFF, sregs.cr4, sregs.efer)
    if sregs.efer & EFER_LMA:
        state.long_mode = LongModeView(
            gprs={n: getattr(regs, n) for n in _GPRS64}, rip=regs.rip, rflags=regs.rflags,
            cs_l=bool(sregs.cs.l), cr2=sregs.cr2, cr3=sregs.cr3, fs_base=sregs.fs.base,
            gs_base=sregs.gs.base, gdt_base=sregs.gdt.base, idt_base=sregs.idt.base)
    return state


def state_to_kvm(state: CpuState, regs: S.kvm_regs, sregs: S.kvm_sregs) -> None:
    for g in _GPRS:
        setattr(regs, "r" + g[1:], getattr(state, g))
    regs.rip, regs.rflags = state.eip, state.eflags
    for name in _SEGS:
        _seg_to_kvm(getattr(state, name), getattr(sregs, name))
    sregs.gdt.base, sregs.gdt.limit = state.gdt.base, state.gdt.limit
    sregs.idt.base, sregs.idt.limit = state.idt.base, state.idt.limit
    sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer = (
        state.cr0, state.cr2, state.cr3, state.cr4, state.efer)
