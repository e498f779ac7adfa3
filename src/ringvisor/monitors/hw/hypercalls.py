"""The hw monitor's hypercalls (docs/hw-abi.md): VMCALL with the number in
EAX and arguments in EBX, ECX, EDX, the result in EAX, as KVM's
convention. An enlightened guest (ringos with enlighten=1) finds them by
the CPUID leaf 0x40000000 and HC_VERSION, and uses them where a hypercall
replaces several exits: console output (one exit per string instead of
several port exits per byte) and, under shadow paging, a page-table store
with its TLB flush (one exit instead of #PF, monitor trap flag and INVLPG).
An unknown number answers -KVM_ENOSYS, as KVM does."""
from __future__ import annotations

from ringvisor.cpu.vmx.operation import invvpid

HC_VERSION, HC_CONSOLE_WRITE, HC_SET_PTE_FLUSH = 0x52560000, 0x52560001, 0x52560002
ABI_VERSION = 1
FEATURE_CONSOLE, FEATURE_MMU = 1, 2
KVM_ENOSYS = 1000
EINVAL = 22
MAX_CONSOLE_WRITE = 4096
NAMES = {HC_VERSION: "version", HC_CONSOLE_WRITE: "console_write", HC_SET_PTE_FLUSH: "set_pte_flush"}


def version(mon, a, b, c) -> int:
    features = FEATURE_CONSOLE | (FEATURE_MMU if mon.shadow is not None else 0)
    mon.cpu.r[3] = features                      # EBX
    return ABI_VERSION


def console_write(mon, linear, length, _) -> int:
    if length > MAX_CONSOLE_WRITE:
        return -EINVAL
    data = mon.read_linear(linear, length)
    console = getattr(mon.machine, "console", None)
    if console is not None:
        console(data)
    return 0


def set_pte_flush(mon, pte_linear, va, value) -> int:
    """Store `value` into the guest PTE at `pte_linear` and flush `va`."""
    if pte_linear & 3:
        return -EINVAL
    phys = mon.guest_physical(pte_linear, write=True)
    mon.memory.mmap[phys:phys + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
    if mon.shadow is not None:
        mon.shadow.guest_wrote(phys, 4)
    invvpid(mon.cpu, 0, mon.vmcs["VPID"], va)
    return 0


CALLS = {HC_VERSION: version, HC_CONSOLE_WRITE: console_write, HC_SET_PTE_FLUSH: set_pte_flush}


def dispatch(mon) -> None:
    r = mon.cpu.r
    number = r[0]
    call = CALLS.get(number)
    mon.hypercalls[NAMES.get(number, f"{number:#x}")] += 1
    result = -KVM_ENOSYS if call is None else call(mon, r[3], r[1], r[2])
    r[0] = result & 0xFFFFFFFF
