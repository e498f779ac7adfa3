"""The ringvisor paravirtual ABI 1.0 as data: the monitor's copy of
guests/os/include/pv_abi.h (normative numbers) and docs/pv-abi.md (layouts).
Nothing here does anything; every other pv_* module reads these tables."""
from __future__ import annotations

ABI_VERSION = 0x00010000            # major << 16 | minor
BOOT_MAGIC = 0x52565056             # EAX at the PV entry ("VPVR")
NOTE_NAME, NOTE_TYPE_ABI = b"ringvisor", 1
HYPERCALL_VECTOR = 0x82
START_MAGIC = b"ringvisor-pv-1.0"
GUEST_CR0 = 0x80010011              # PE | ET | WP | PG: what the guest may assume
HOLE = 0xF0000000                   # linear addresses the guest never reaches
HOLE_PDE = HOLE >> 22               # page-directory entries 960..1023 are the monitor's
KSEG_LIMIT = HOLE - 1

# Selectors of the monitor's GDT (section 2).
MONITOR_CODE, MONITOR_DATA = 0x08, 0x10
USER_CODE, USER_DATA = 0x1B, 0x23
TSS_SELECTOR = 0x28
KERNEL_CODE, KERNEL_DATA = 0x31, 0x39

# Hypercalls: number -> name (section 9). Handlers live in pv_hypercalls.py.
HYPERCALLS = {
    0: "set_trap_table", 1: "mmu_update", 2: "update_va_mapping", 3: "pin_table",
    4: "unpin_table", 5: "new_baseptr", 6: "invlpg", 7: "tlb_flush", 8: "stack_switch",
    9: "iret", 10: "set_callback", 11: "set_timer", 12: "yield", 13: "block",
    14: "console_write", 15: "shutdown", 16: "version",
}
HC = {name: nr for nr, name in HYPERCALLS.items()}

# Negative errno results (section 3).
EPERM, ENOMEM, EFAULT, EBUSY, EINVAL, ENOSYS = 1, 12, 14, 16, 22, 38
ERRNO_NAMES = {EPERM: "EPERM", ENOMEM: "ENOMEM", EFAULT: "EFAULT", EBUSY: "EBUSY",
               EINVAL: "EINVAL", ENOSYS: "ENOSYS"}

# HC_UPDATE_VA_MAPPING flags.
UVM_NONE, UVM_INVLPG, UVM_FLUSH = 0, 1, 2

# trap_info entries (section 8): u8 vector, u8 flags, u16 cs, u32 address.
TRAP_INFO_SIZE = 8
TI_DPL_MASK, TI_MASK_EVENTS = 3, 4
MAX_TRAP_ENTRIES = 256

# start_info page (section 4): field -> offset.
START_INFO = {"magic": 0x00, "nr_pages": 0x10, "shared_info": 0x14, "pt_base": 0x18,
              "nr_pt_frames": 0x1C, "first_free_pfn": 0x20, "flags": 0x24, "tsc_khz": 0x28,
              "cmd_line": 0x30}
CMDLINE_MAX = 1024

# shared_info page (section 5): field -> (offset, size).
SHARED_INFO = {"evt_mask": (0x00, 1), "evt_pending": (0x04, 4), "cr2": (0x08, 4),
               "time_version": (0x0C, 4), "system_time_ns": (0x10, 8),
               "tsc_timestamp": (0x18, 8), "tsc_khz": (0x20, 4)}

# Events (section 6): bit -> name.
EVT_TIMER, EVT_CONSOLE = 0, 1
EVENT_NAMES = {EVT_TIMER: "timer", EVT_CONSOLE: "console"}

# Exceptions the CPU pushes an error code for (section 8).
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17})

CONSOLE_WRITE_MAX = 4096            # bytes per HC_CONSOLE_WRITE; the guest loops


def errno_name(result: int) -> str:
    return ERRNO_NAMES.get(-result, str(result))
