"""The KVM ioctl numbers, computed from the Linux _IOC encoding and our ctypes
layouts (a table: name -> direction, number, argument structure)."""
import ctypes as C

from ringvisor.kvm import structs as S

KVMIO = 0xAE
_NONE, _WRITE, _READ = 0, 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


#            name                           direction         nr    argument (None: by value)
_TABLE = [
    ("KVM_GET_API_VERSION",            _NONE,             0x00, None),
    ("KVM_CREATE_VM",                  _NONE,             0x01, None),
    ("KVM_GET_MSR_INDEX_LIST",         _READ | _WRITE,    0x02, S.kvm_msr_list_header),
    ("KVM_CHECK_EXTENSION",            _NONE,             0x03, None),
    ("KVM_GET_VCPU_MMAP_SIZE",         _NONE,             0x04, None),
    ("KVM_GET_SUPPORTED_CPUID",        _READ | _WRITE,    0x05, S.kvm_cpuid2_header),
    ("KVM_CREATE_VCPU",                _NONE,             0x41, None),
    ("KVM_SET_USER_MEMORY_REGION",     _WRITE,            0x46, S.kvm_userspace_memory_region),
    ("KVM_SET_TSS_ADDR",               _NONE,             0x47, None),
    ("KVM_SET_IDENTITY_MAP_ADDR",      _WRITE,            0x48, C.c_uint64),
    ("KVM_CREATE_IRQCHIP",             _NONE,             0x60, None),
    ("KVM_IRQ_LINE",                   _WRITE,            0x61, S.kvm_irq_level),
    ("KVM_SET_GSI_ROUTING",            _WRITE,            0x6A, S.kvm_irq_routing_header),
    ("KVM_REGISTER_COALESCED_MMIO",    _WRITE,            0x67, S.kvm_coalesced_mmio_zone),
    ("KVM_UNREGISTER_COALESCED_MMIO",  _WRITE,            0x68, S.kvm_coalesced_mmio_zone),
    ("KVM_CREATE_PIT2",                _WRITE,            0x77, S.kvm_pit_config),
    ("KVM_IOEVENTFD",                  _WRITE,            0x79, S.kvm_ioeventfd),
    ("KVM_RUN",                        _NONE,             0x80, None),
    ("KVM_GET_REGS",                   _READ,             0x81, S.kvm_regs),
    ("KVM_SET_REGS",                   _WRITE,            0x82, S.kvm_regs),
    ("KVM_GET_SREGS",                  _READ,             0x83, S.kvm_sregs),
    ("KVM_SET_SREGS",                  _WRITE,            0x84, S.kvm_sregs),
    ("KVM_TRANSLATE",                  _READ | _WRITE,    0x85, S.kvm_translation),
    ("KVM_GET_MSRS",                   _READ | _WRITE,    0x88, S.kvm_msrs_header),
    ("KVM_SET_MSRS",                   _WRITE,            0x89, S.kvm_msrs_header),
    ("KVM_GET_MP_STATE",               _READ,             0x98, S.kvm_mp_state),
    ("KVM_SET_MP_STATE",               _WRITE,            0x99, S.kvm_mp_state),
    ("KVM_SET_CPUID2",                 _WRITE,            0x90, S.kvm_cpuid2_header),
    ("KVM_GET_VCPU_EVENTS",            _READ,             0x9F, S.kvm_vcpu_events),
    ("KVM_SET_VCPU_EVENTS",            _WRITE,            0xA0, S.kvm_vcpu_events),
    ("KVM_SET_GUEST_DEBUG",            _WRITE,            0x9B, S.kvm_guest_debug),
    ("KVM_GET_TSC_KHZ",                _NONE,             0xA3, None),
    ("KVM_ENABLE_CAP",                 _WRITE,            0xA3, S.kvm_enable_cap),
    ("KVM_GET_STATS_FD",               _NONE,             0xCE, None),
]

IOCTLS = {name: _ioc(d, nr, C.sizeof(arg) if arg else 0) for name, d, nr, arg in _TABLE}
globals().update(IOCTLS)

# Capabilities (KVM_CHECK_EXTENSION / KVM_ENABLE_CAP).
CAPS = {
    "KVM_CAP_IRQCHIP": 0, "KVM_CAP_HLT": 1, "KVM_CAP_USER_MEMORY": 3, "KVM_CAP_SET_TSS_ADDR": 4,
    "KVM_CAP_EXT_CPUID": 7, "KVM_CAP_NR_VCPUS": 9, "KVM_CAP_NR_MEMSLOTS": 10,
    "KVM_CAP_IRQ_ROUTING": 25, "KVM_CAP_MAX_VCPUS": 66,
    "KVM_CAP_COALESCED_MMIO": 15, "KVM_CAP_PIT2": 33, "KVM_CAP_IOEVENTFD": 36,
    "KVM_CAP_SET_IDENTITY_MAP_ADDR": 37, "KVM_CAP_IMMEDIATE_EXIT": 136,
    "KVM_CAP_COALESCED_PIO": 162, "KVM_CAP_BINARY_STATS_FD": 203,
    "KVM_CAP_EXIT_ON_EMULATION_FAILURE": 204,
}
globals().update(CAPS)

# Exit reasons of struct kvm_run (those KVM can produce on x86).
EXIT_REASONS = {
    0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT", 6: "MMIO",
    7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR", 11: "SET_TPR",
    12: "TPR_ACCESS", 16: "NMI", 17: "INTERNAL_ERROR", 24: "SYSTEM_EVENT", 26: "IOAPIC_EOI",
    27: "HYPERV", 29: "X86_RDMSR", 30: "X86_WRMSR", 31: "DIRTY_RING_FULL", 33: "X86_BUS_LOCK",
    34: "XEN", 37: "NOTIFY", 39: "MEMORY_FAULT",
}
EXIT_DEBUG = 4
EXIT_IO, EXIT_HLT, EXIT_MMIO, EXIT_SHUTDOWN, EXIT_FAIL_ENTRY, EXIT_INTR = 2, 5, 6, 8, 9, 10
EXIT_INTERNAL_ERROR, EXIT_SYSTEM_EVENT = 17, 24
EXIT_IO_IN, EXIT_IO_OUT = 0, 1

INTERNAL_ERRORS = {1: "emulation failure", 2: "exception while delivering an exception",
                   3: "exit while delivering an event", 4: "unexpected exit reason"}
INTERNAL_ERROR_EMULATION = 1
EMULATION_FLAG_INSTRUCTION_BYTES = 1

SYSTEM_EVENTS = {1: "shutdown", 2: "reset", 3: "crash", 4: "wakeup", 5: "suspend", 6: "SEV termination"}

IOEVENTFD_FLAG_DATAMATCH, IOEVENTFD_FLAG_PIO, IOEVENTFD_FLAG_DEASSIGN = 1, 2, 4
PIT_SPEAKER_DUMMY = 1

MP_STATE_RUNNABLE, MP_STATE_UNINITIALIZED, MP_STATE_INIT_RECEIVED, MP_STATE_HALTED, MP_STATE_SIPI_RECEIVED = 0, 1, 2, 3, 4
MP_STATES = {0: "runnable", 1: "uninitialized", 2: "init-received", 3: "halted", 4: "sipi-received"}

# GSI routing (KVM_SET_GSI_ROUTING): route type and the irqchips' numbers.
IRQ_ROUTING_IRQCHIP = 1
IRQCHIP_PIC_MASTER, IRQCHIP_PIC_SLAVE, IRQCHIP_IOAPIC = 0, 1, 2

API_VERSION = 12

# KVM_SET_GUEST_DEBUG control bits (x86).
GUESTDBG_ENABLE, GUESTDBG_SINGLESTEP = 0x1, 0x2
GUESTDBG_USE_SW_BP, GUESTDBG_USE_HW_BP = 0x10000, 0x20000
