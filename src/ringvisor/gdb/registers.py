"""The i386 register file as gdb numbers it, the target description that
tells gdb so, and the conversion between a `CpuState` and gdb's register
bytes (little-endian, in gdb's register order).

The first 32 registers are gdb's own `org.gnu.gdb.i386.core` feature, with the
names and order gdb's i386 architecture checks (general registers, EIP,
EFLAGS, the segment selectors, then the x87 stack and control words). The soft
CPU has no FPU: the x87 registers read as zero and writes to them are refused.
The system registers form a feature of ringvisor's own, which gdb shows with
`info registers` by name ($cr0, $gdtr_base ...).
"""
from __future__ import annotations

from dataclasses import dataclass

from ringvisor.cpu_state import CpuState

CORE_FEATURE = "org.gnu.gdb.i386.core"
SYSTEM_FEATURE = "org.ringvisor.i386.system"


@dataclass(frozen=True)
class Register:
    name: str
    bits: int
    type: str
    feature: str
    field: str | None          # CpuState attribute path; None: no such hardware here
    group: str | None = None

    @property
    def size(self) -> int:
        return self.bits // 8


def _core(name, type_="int32", field=None, bits=32, group=None):
    return Register(name, bits, type_, CORE_FEATURE, field, group)


def _system(name, field, bits=32, type_="int32"):
    return Register(name, bits, type_, SYSTEM_FEATURE, field, "system")


REGISTERS: tuple[Register, ...] = (
    _core("eax", field="eax"), _core("ecx", field="ecx"),
    _core("edx", field="edx"), _core("ebx", field="ebx"),
    _core("esp", "data_ptr", "esp"), _core("ebp", "data_ptr", "ebp"),
    _core("esi", field="esi"), _core("edi", field="edi"),
    _core("eip", "code_ptr", "eip"), _core("eflags", "i386_eflags", "eflags"),
    _core("cs", field="cs.selector"), _core("ss", field="ss.selector"),
    _core("ds", field="ds.selector"), _core("es", field="es.selector"),
    _core("fs", field="fs.selector"), _core("gs", field="gs.selector"),
    *(_core(f"st{i}", "i387_ext", bits=80) for i in range(8)),
    *(_core(n, "int", group="float")
      for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")),
    _system("cr0", "cr0"), _system("cr2", "cr2"), _system("cr3", "cr3"), _system("cr4", "cr4"),
    _system("gdtr_base", "gdt.base"), _system("gdtr_limit", "gdt.limit", 16, "uint16"),
    _system("idtr_base", "idt.base"), _system("idtr_limit", "idt.limit", 16, "uint16"),
    _system("ldtr", "ldt.selector"), _system("tr", "tr.selector"),
)
BY_NAME = {r.name: i for i, r in enumerate(REGISTERS)}
G_PACKET_SIZE = sum(r.size for r in REGISTERS)

# EFLAGS bits as gdb's own i386 feature names them (bit, name).
EFLAGS_FIELDS = ((0, "CF"), (1, ""), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"),
                 (9, "IF"), (10, "DF"), (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"),
                 (18, "AC"), (19, "VIF"), (20, "VIP"), (21, "ID"))


class RegisterError(ValueError):
    """A register number or value gdb sent that this target cannot take."""


def _get(state: CpuState, path: str) -> int:
    obj = state
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set(state: CpuState, path: str, value: int) -> None:
    """Set a field; segment and table registers are copied first, since a
    `CpuState.copy()` shares them with the state it came from."""
    head, _, leaf = path.rpartition(".")
    if head:
        inner = getattr(state, head).copy()
        setattr(inner, leaf, value)
        setattr(state, head, inner)
    else:
        setattr(state, leaf, value)


def read_register(state: CpuState, number: int) -> bytes:
    reg = _register(number)
    value = 0 if reg.field is None else _get(state, reg.field) & ((1 << reg.bits) - 1)
    return value.to_bytes(reg.size, "little")


def write_register(state: CpuState, number: int, raw: bytes) -> None:
    """Store gdb's bytes for register `number` into `state` (in place)."""
    reg = _register(number)
    if len(raw) != reg.size:
        raise RegisterError(f"{reg.name} takes {reg.size} bytes, not {len(raw)}")
    if reg.field is None:
        raise RegisterError(f"{reg.name}: this CPU has no FPU")
    _set(state, reg.field, int.from_bytes(raw, "little"))


def encode_all(state: CpuState) -> bytes:
    return b"".join(read_register(state, i) for i in range(len(REGISTERS)))


def decode_all(state: CpuState, raw: bytes) -> CpuState:
    """A copy of `state` with the registers of a `G` packet; registers the
    packet leaves out (a short G) and the x87 ones keep their values."""
    if len(raw) > G_PACKET_SIZE:
        raise RegisterError(f"G packet of {len(raw)} bytes; the register file has {G_PACKET_SIZE}")
    new = state.copy()
    offset = 0
    for i, reg in enumerate(REGISTERS):
        chunk = raw[offset:offset + reg.size]
        offset += reg.size
        if len(chunk) < reg.size:
            break
        if reg.field is not None:
            _set(new, reg.field, int.from_bytes(chunk, "little"))
    return new


def _register(number: int) -> Register:
    if not 0 <= number < len(REGISTERS):
        raise RegisterError(f"no register number {number}")
    return REGISTERS[number]


def target_xml() -> str:
    """The whole target description, both features inline (no xi:include,
    so one qXfer object serves it)."""
    lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
             "<target>", "  <architecture>i386</architecture>"]
    for feature in (CORE_FEATURE, SYSTEM_FEATURE):
        lines.append(f'  <feature name="{feature}">')
        if feature == CORE_FEATURE:
            lines.append('    <flags id="i386_eflags" size="4">')
            lines += [f'      <field name="{n}" start="{b}" end="{b}"/>' for b, n in EFLAGS_FIELDS]
            lines.append("    </flags>")
        for number, reg in enumerate(REGISTERS):
            if reg.feature != feature:
                continue
            group = f' group="{reg.group}"' if reg.group else ""
            lines.append(f'    <reg name="{reg.name}" bitsize="{reg.bits}" type="{reg.type}" '
                         f'regnum="{number}"{group}/>')
        lines.append("  </feature>")
    lines.append("</target>")
    return "\n".join(lines) + "\n"
