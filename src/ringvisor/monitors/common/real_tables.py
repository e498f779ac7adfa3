"""What the real CPU sees while a monitor runs the guest deprivileged: the
monitor's page table for its region, its ring-0 code/data/TSS descriptors,
the real IDT whose every gate leads to a trap stub, the stubs themselves,
and the TSS that gives the CPU the monitor's ring-0 stack.

How a trap reaches the monitor on any engine: the CPU delivers the event
through the real IDT to stub n (ring 0, IF cleared by the interrupt gate,
the guest's SS:ESP, EFLAGS, CS:EIP and error code pushed on the monitor
stack); the stub writes to TRAP_PORT (an exit on every engine) and halts
with IF=0 (the soft engine returns Halt). The monitor recognises the real
EIP inside the stub page and reads the vector from it.
"""
from __future__ import annotations

from ringvisor.monitors.common import region as R
from ringvisor.monitors.common.descriptors import (CODE_EXEC_ONLY, CODE_EXEC_READ, DATA_READ_WRITE, ACCESSED, TSS32_BUSY,
                                            encode_gate, encode_segment)

TRAP_PORT = 0xF5                  # next to the debug-exit port; unassigned otherwise
# The monitor's selectors sit at the top of the 64 KiB GDT, out of the guest's way.
MONITOR_CODE, MONITOR_DATA, MONITOR_TSS = 0xFFE8, 0xFFF0, 0xFFF8
# bt: the ring-1 segment translated code runs in (execute-only: no guest
# data access can read the region through it). Only the bt monitor writes it.
TC_CODE = 0xFFE0
FIRST_MONITOR_SELECTOR = TC_CODE
PTE_P, PTE_RW, PTE_A, PTE_D = 1, 2, 0x20, 0x40
STUB_CODE = bytes([0xE6, TRAP_PORT, 0xF4, 0x90])     # out %al, $TRAP_PORT; hlt; nop
HALT_OFFSET = 3                   # EIP after the stub's HLT, from the stub's start
TSS_LIMIT = 103


class TrapPort:
    """The port the stubs write: records that a trap is waiting."""

    def __init__(self):
        self.pending = False

    def io_read(self, offset: int, size: int) -> int:
        return 0xFF

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.pending = True


def monitor_descriptors(region: R.MonitorRegion) -> dict[int, int]:
    """selector -> descriptor of the monitor's own GDT entries (both views)."""
    flat = 0xFFFFFFFF
    return {MONITOR_CODE: encode_segment(0, flat, CODE_EXEC_READ | ACCESSED, 0),
            MONITOR_DATA: encode_segment(0, flat, DATA_READ_WRITE | ACCESSED, 0),
            MONITOR_TSS: encode_segment(region.linear(R.TSS), TSS_LIMIT, TSS32_BUSY, 0, s=False,
                                        db=False)}


def tc_descriptor() -> int:
    """Base 0, limit 4 GiB, DPL 1, execute-only: the translation cache's CS."""
    return encode_segment(0, 0xFFFFFFFF, CODE_EXEC_ONLY | ACCESSED, 1)


def build(region: R.MonitorRegion) -> None:
    """Write the monitor page table, stubs, IDT and TSS into the region."""
    pt = region.physical(R.PAGE_TABLE)
    for i in range(R.RESERVED_BYTES // R.PAGE):
        region.write_u32(pt + 4 * i, region.physical(i * R.PAGE) | PTE_P | PTE_RW | PTE_A | PTE_D)
    stubs = region.physical(R.STUBS)
    region.write_bytes(stubs, STUB_CODE * 256)
    idt = region.physical(R.IDT)
    for v in range(256):
        region.write_u64(idt + 8 * v, encode_gate(MONITOR_CODE, stub_address(region, v)))
    tss = region.physical(R.TSS)
    region.write_bytes(tss, bytes(TSS_LIMIT + 1))
    region.write_u32(tss + 4, region.linear(R.STACK_TOP))     # ESP0
    region.write_u32(tss + 8, MONITOR_DATA)                   # SS0
    region.write_u32(tss + 100, (TSS_LIMIT + 1) << 16)        # I/O map base past the limit


def stub_address(region: R.MonitorRegion, vector: int) -> int:
    return region.linear(R.STUBS) + R.STUB_SIZE * vector


def stub_vector(region: R.MonitorRegion, eip: int) -> int | None:
    """The vector whose stub halted with EIP = eip, or None if eip is not a stub's."""
    off = eip - HALT_OFFSET - region.linear(R.STUBS)
    if 0 <= off < 256 * R.STUB_SIZE and off % R.STUB_SIZE == 0:
        return off // R.STUB_SIZE
    return None


def monitor_pde(region: R.MonitorRegion) -> int:
    """The page-directory entry every real page directory has at index 960."""
    return region.physical(R.PAGE_TABLE) | PTE_P | PTE_RW | PTE_A
