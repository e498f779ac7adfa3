"""Letting exactly one guest instruction run under special conditions, with
the real CPU's single-step trap (EFLAGS.TF -> #DB after the instruction):

* a write the shadow keeps read-only on purpose (to a traced guest page
  table, to the guest's GDT, to a frame of translated code under bt, or a
  supervisor write to a read-only page under virtual CR0.WP=0): the shadow PTE is made writable
  for the one instruction, then restored; the bytes it changed in a traced
  frame are mirrored into the shadows, in a code frame reported to bt.
  Any instruction works (MOV, XCHG, CMPXCHG, one iteration of REP STOS...)
  without an x86 emulator in the monitor;
* an access to a device page the shadow never maps (device_access.py): the
  page is mapped for the one instruction, so the real CPU's access reaches
  the device; then the entry is absent again;
* the interrupt shadow of STI and MOV SS: the next instruction runs with the
  real IF still 0, so a pending interrupt arrives after it, as on hardware.
"""
from __future__ import annotations

from ringvisor.monitors.common.guest_mmu import D, RW
from ringvisor.monitors.common.vcpu import IF, TF


class Step:
    def __init__(self, mask_interrupts: bool = False):
        self.mask_interrupts = mask_interrupts
        self.lifted: list[tuple[int, int]] = []          # (shadow PTE address, saved value)
        self.snapshots: dict[int, bytes] = {}            # traced guest frame -> bytes before


class Stepper:
    def __init__(self, region, shadow, on_code_write=None):
        self.region, self.shadow, self.mm = region, shadow, region.mm
        self.step: Step | None = None
        # (frame, lo, hi): bytes the stepped instruction changed in a frame the
        # shadow keeps read-only for a client (bt: translated code).
        self.on_code_write = on_code_write
        # (frame, lo, hi): the same for a frame of the guest's GDT (gdt_watch.py).
        self.on_descriptor_write = None

    @property
    def active(self) -> bool:
        return self.step is not None

    def lift(self, pte_addr: int, frame: int) -> None:
        """Make one shadow PTE writable until the step ends."""
        if self.step is None:
            self.step = Step()
        old = self.region.read_u32(pte_addr)
        self.step.lifted.append((pte_addr, old))
        self.region.write_u32(pte_addr, old | RW | D)
        watched = self.shadow.traced(frame) or frame in self.shadow.protected \
            or frame in self.shadow.descriptor_frames
        if watched and frame not in self.step.snapshots:
            self.step.snapshots[frame] = bytes(self.mm[frame:frame + 0x1000])

    def map_once(self, pte_addr: int, entry: int) -> None:
        """Give one shadow PTE the value `entry` until the step ends (a
        device page: nothing to snapshot or mirror)."""
        if self.step is None:
            self.step = Step()
        self.step.lifted.append((pte_addr, self.region.read_u32(pte_addr)))
        self.region.write_u32(pte_addr, entry)

    def single_step(self) -> None:
        """Step the next instruction for the monitor's own reasons (trap's
        watch of a CS cache a far transfer may replace)."""
        if self.step is None:
            self.step = Step()

    def interrupt_shadow(self) -> None:
        if self.step is None:
            self.step = Step(mask_interrupts=True)
        else:
            self.step.mask_interrupts = True

    def real_flags(self, eflags: int) -> int:
        """EFLAGS to resume with while a step is active."""
        if self.step is None:
            return eflags
        eflags |= TF
        return eflags & ~IF if self.step.mask_interrupts else eflags

    def end(self, st) -> None:
        """The stepped instruction ran (or was pre-empted by another event):
        restore the shadow and mirror what the guest wrote."""
        step, self.step = self.step, None
        for addr, old in reversed(step.lifted):
            self.region.write_u32(addr, old)
        for frame, before in step.snapshots.items():
            span = changed_range(before, bytes(self.mm[frame:frame + 0x1000]))
            if span:
                if self.shadow.traced(frame):
                    self.shadow.mirror(frame, *span)
                if frame in self.shadow.protected and self.on_code_write:
                    self.on_code_write(frame, *span)
                if frame in self.shadow.descriptor_frames and self.on_descriptor_write:
                    self.on_descriptor_write(frame, *span)
        st.eflags &= ~TF


def changed_range(a: bytes, b: bytes, chunk: int = 64) -> tuple[int, int] | None:
    """[lo, hi) covering every byte where a and b differ, or None."""
    if a == b:
        return None
    n = len(a)
    lo = 0
    while a[lo:lo + chunk] == b[lo:lo + chunk]:
        lo += chunk
    while a[lo] == b[lo]:
        lo += 1
    hi = n
    while a[hi - chunk:hi] == b[hi - chunk:hi]:
        hi -= chunk
    while a[hi - 1] == b[hi - 1]:
        hi -= 1
    return lo, hi
