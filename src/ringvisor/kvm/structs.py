"""ctypes layouts of the KVM uapi structures (x86, <linux/kvm.h>, <asm/kvm.h>).

tests/kvm/test_abi.py checks every size and offset here against the
machine's own header through gcc.
"""
import ctypes as C

u8, u16, u32, u64, s16, s32 = C.c_uint8, C.c_uint16, C.c_uint32, C.c_uint64, C.c_int16, C.c_int32


class Struct(C.Structure):
    def __repr__(self):
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n, *_ in self._fields_ if not n.startswith("pad"))
        return f"{type(self).__name__}({fields})"


class kvm_userspace_memory_region(Struct):
    _fields_ = [("slot", u32), ("flags", u32), ("guest_phys_addr", u64),
                ("memory_size", u64), ("userspace_addr", u64)]


class kvm_regs(Struct):
    _fields_ = [(n, u64) for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                                   "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
                                   "rip", "rflags")]


class kvm_segment(Struct):
    _fields_ = [("base", u64), ("limit", u32), ("selector", u16), ("type", u8),
                ("present", u8), ("dpl", u8), ("db", u8), ("s", u8), ("l", u8),
                ("g", u8), ("avl", u8), ("unusable", u8), ("padding", u8)]


class kvm_dtable(Struct):
    _fields_ = [("base", u64), ("limit", u16), ("padding", u16 * 3)]


KVM_NR_INTERRUPTS = 256


class kvm_sregs(Struct):
    _fields_ = [(n, kvm_segment) for n in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")] + \
               [("gdt", kvm_dtable), ("idt", kvm_dtable)] + \
               [(n, u64) for n in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")] + \
               [("interrupt_bitmap", u64 * ((KVM_NR_INTERRUPTS + 63) // 64))]


class kvm_cpuid_entry2(Struct):
    _fields_ = [("function", u32), ("index", u32), ("flags", u32), ("eax", u32),
                ("ebx", u32), ("ecx", u32), ("edx", u32), ("padding", u32 * 3)]


def kvm_cpuid2(nent: int):
    """The variable-length kvm_cpuid2 with room for `nent` entries."""
    class _kvm_cpuid2(Struct):
        _fields_ = [("nent", u32), ("padding", u32), ("entries", kvm_cpuid_entry2 * nent)]
    return _kvm_cpuid2


class kvm_cpuid2_header(Struct):
    _fields_ = [("nent", u32), ("padding", u32)]


class kvm_pit_config(Struct):
    _fields_ = [("flags", u32), ("pad", u32 * 15)]


class kvm_irq_level(Struct):
    _fields_ = [("irq", u32), ("level", u32)]


class kvm_irq_routing_entry(Struct):
    # The union's irqchip member (irqchip, pin), padded to its 32 bytes.
    _fields_ = [("gsi", u32), ("type", u32), ("flags", u32), ("pad", u32),
                ("irqchip", u32), ("pin", u32), ("union_pad", u32 * 6)]


def kvm_irq_routing(nr: int):
    class _kvm_irq_routing(Struct):
        _fields_ = [("nr", u32), ("flags", u32), ("entries", kvm_irq_routing_entry * nr)]
    return _kvm_irq_routing


class kvm_irq_routing_header(Struct):
    _fields_ = [("nr", u32), ("flags", u32)]


class kvm_coalesced_mmio_zone(Struct):
    _fields_ = [("addr", u64), ("size", u32), ("pio", u32)]


class kvm_coalesced_mmio(Struct):
    _fields_ = [("phys_addr", u64), ("len", u32), ("pio", u32), ("data", u8 * 8)]


class kvm_coalesced_mmio_ring_header(Struct):
    _fields_ = [("first", u32), ("last", u32)]


class kvm_ioeventfd(Struct):
    _fields_ = [("datamatch", u64), ("addr", u64), ("len", u32), ("fd", s32),
                ("flags", u32), ("pad", u8 * 36)]


class kvm_enable_cap(Struct):
    _fields_ = [("cap", u32), ("flags", u32), ("args", u64 * 4), ("pad", u8 * 64)]


class kvm_stats_header(Struct):
    _fields_ = [("flags", u32), ("name_size", u32), ("num_desc", u32),
                ("id_offset", u32), ("desc_offset", u32), ("data_offset", u32)]


class kvm_stats_desc(Struct):
    _fields_ = [("flags", u32), ("exponent", s16), ("size", u16), ("offset", u32),
                ("bucket_size", u32)]


class kvm_msr_entry(Struct):
    _fields_ = [("index", u32), ("reserved", u32), ("data", u64)]


def kvm_msrs(nmsrs: int):
    class _kvm_msrs(Struct):
        _fields_ = [("nmsrs", u32), ("pad", u32), ("entries", kvm_msr_entry * nmsrs)]
    return _kvm_msrs


class kvm_msrs_header(Struct):
    _fields_ = [("nmsrs", u32), ("pad", u32)]


class kvm_msr_list_header(Struct):
    _fields_ = [("nmsrs", u32)]


class kvm_vcpu_events(Struct):
    _fields_ = [("exception_injected", u8), ("exception_nr", u8), ("exception_has_error_code", u8),
                ("exception_pending", u8), ("exception_error_code", u32),
                ("interrupt_injected", u8), ("interrupt_nr", u8), ("interrupt_soft", u8),
                ("interrupt_shadow", u8),
                ("nmi_injected", u8), ("nmi_pending", u8), ("nmi_masked", u8), ("nmi_pad", u8),
                ("sipi_vector", u32), ("flags", u32),
                ("smi", u8 * 4), ("triple_fault_pending", u8), ("reserved", u8 * 26),
                ("exception_has_payload", u8), ("exception_payload", u64)]


class kvm_mp_state(Struct):
    _fields_ = [("mp_state", u32)]


class kvm_translation(Struct):
    _fields_ = [("linear_address", u64), ("physical_address", u64), ("valid", u8),
                ("writeable", u8), ("usermode", u8), ("pad", u8 * 5)]


# The fixed head of struct kvm_run and the members of its exit union we use.
class kvm_run_head(Struct):
    _fields_ = [("request_interrupt_window", u8), ("immediate_exit", u8), ("padding1", u8 * 6),
                ("exit_reason", u32), ("ready_for_interrupt_injection", u8), ("if_flag", u8),
                ("flags", u16), ("cr8", u64), ("apic_base", u64)]


EXIT_UNION_OFFSET = C.sizeof(kvm_run_head)       # 32


class kvm_guest_debug(Struct):
    _fields_ = [("control", u32), ("pad", u32), ("debugreg", u64 * 8)]


class kvm_debug_exit_arch(Struct):
    _fields_ = [("exception", u32), ("pad", u32), ("pc", u64), ("dr6", u64), ("dr7", u64)]


class kvm_run_io(Struct):
    _fields_ = [("direction", u8), ("size", u8), ("port", u16), ("count", u32), ("data_offset", u64)]


class kvm_run_mmio(Struct):
    _fields_ = [("phys_addr", u64), ("data", u8 * 8), ("len", u32), ("is_write", u8)]


class kvm_run_internal(Struct):
    _fields_ = [("suberror", u32), ("ndata", u32), ("data", u64 * 16)]


class kvm_run_emulation_failure(Struct):
    _fields_ = [("suberror", u32), ("ndata", u32), ("flags", u64), ("insn_size", u8),
                ("insn_bytes", u8 * 15)]


class kvm_run_fail_entry(Struct):
    _fields_ = [("hardware_entry_failure_reason", u64), ("cpu", u32)]


class kvm_run_system_event(Struct):
    _fields_ = [("type", u32), ("ndata", u32), ("data", u64 * 16)]
