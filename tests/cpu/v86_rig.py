"""The virtual-8086 test rig: a ring-0 kernel that IRETs to a piece of 8086
code, every IDT vector a gate to a ring-0 `hlt` unless given code (shared by
test_cpu_v86*.py, test_cpu_vme.py and test_cpu_pvi.py)."""
import pytest

from cpu_rig import Rig, asm, desc


from ringvisor.exits import Fault, Halt
from cpu_rig import (CODE, GDT, IDT, KCODE, KDATA, STACK0, TSS, TSSSEL, Pic, Rig, asm, desc, needs_as)

pytestmark = needs_as

VM, IF, TF, NT, RF = 0x20000, 0x200, 0x100, 0x4000, 0x10000
V86_CS, V86_IP, V86_SS, V86_SP = 0x2000, 0x0100, 0x3000, 0xFFF0
V86_DS, V86_ES, V86_FS, V86_GS = 0x4000, 0x5000, 0x6000, 0x7000
HANDLERS = 0x11000                  # ring-0 handlers, one 16-byte slot per vector
KCODE_CONFORMING, KCODE_RING1 = 0x50, 0x40


def handler_at(vector: int) -> int:
    return HANDLERS + 16 * vector


def v86_rig(v86_code: str, blocks: bool, iopl: int = 0, extra_flags: int = 0,
            handlers: dict[int, str] | None = None, gate_dpl: dict[int, int] | None = None,
            interrupts=None) -> Rig:
    """A ring-0 kernel that IRETs to `v86_code` at V86_CS:V86_IP; every IDT
    vector has a 32-bit interrupt gate to a ring-0 `hlt` unless `handlers`
    gives its code."""
    rig = Rig(interrupts=interrupts)
    rig.cpu.use_blocks = blocks
    rig.standard_gdt()
    rig.gdt[10] = desc(0, 0xFFFFFFFF, 0xF)                 # 0x50 conforming ring-0 code
    rig.flush_gdt()
    rig.write(HANDLERS, b"\xf4" * 16 * 256)                # hlt
    for v, code in (handlers or {}).items():
        rig.write(handler_at(v), asm(code, org=handler_at(v)))
    for v in range(256):
        rig.set_idt(v, handler_at(v), dpl=(gate_dpl or {}).get(v, 3))
    rig.write((V86_CS << 4) + V86_IP, asm(v86_code, org=V86_IP, bits=16))
    flags = 0x2 | VM | iopl << 12 | extra_flags
    rig.protected(f"""
        push {V86_GS}
        push {V86_FS}
        push {V86_DS}
        push {V86_ES}
        push {V86_SS}
        push {V86_SP}
        push {flags}
        push {V86_CS}
        push {V86_IP}
        iretd
    """)
    return rig


def frame(rig, n: int) -> list[int]:
    """`n` dwords at the top of the ring-0 stack."""
    return [rig.u32(rig.cpu.r[4] + 4 * i) for i in range(n)]


def lin(seg: int, off: int) -> int:
    return (seg << 4) + off


both = pytest.mark.parametrize("blocks", [False, True], ids=["interp", "blocks"])
