"""Field-by-field comparison of a soft and a silicon outcome."""
from __future__ import annotations

from ringvisor.cpu.x87.table import TABLE

# (name, offset, size) in the 32-bit protected FNSAVE image
FIELDS = [("FCW", 0, 2), ("FSW", 4, 2), ("FTW", 8, 2), ("FIP", 12, 4), ("FCS", 16, 2),
          ("FOP", 18, 2), ("FDP", 20, 4), ("FDS", 24, 2)]
FIELDS += [(f"ST{i}", 28 + 10 * i, 10) for i in range(8)]
# Fields a SIGFPE's FXSAVE image does not carry (selectors, reserved words).
NOT_IN_FXSAVE = {"FCS", "FDS"}


def fields(image: bytes) -> dict:
    return {name: int.from_bytes(image[off:off + size], "little") for name, off, size in FIELDS}


def differences(soft, silicon) -> list[str]:
    """'field: soft=... silicon=...' for every field that differs."""
    out = []
    if soft.fault != silicon.fault:
        out.append(f"#MF at instruction: soft={soft.fault} silicon={silicon.fault}")
        return out
    a, b = fields(soft.image), fields(silicon.image)
    for name, _, size in FIELDS:
        if soft.fault is not None and name in NOT_IN_FXSAVE:
            continue
        if name == "FOP":
            a[name] &= 0x7FF
            b[name] &= 0x7FF
        if a[name] != b[name]:
            out.append(f"{name}: soft={a[name]:0{size * 2}x} silicon={b[name]:0{size * 2}x}")
    if soft.image[:28] != silicon.image[:28] and not out and soft.fault is None:
        out.append(f"env reserved bits: soft={soft.image[:28].hex()} silicon={silicon.image[:28].hex()}")
    if soft.fault is None:
        if soft.eflags != silicon.eflags:
            out.append(f"EFLAGS: soft={soft.eflags:#x} silicon={silicon.eflags:#x}")
        if soft.ax != silicon.ax:
            out.append(f"AX: soft={soft.ax:#06x} silicon={silicon.ax:#06x}")
    if soft.memory != silicon.memory:
        at = next(i for i in range(len(soft.memory)) if soft.memory[i] != silicon.memory[i])
        out.append(f"memory from +{at}: soft={soft.memory[at:at + 16].hex()} "
                   f"silicon={silicon.memory[at:at + 16].hex()}")
    return out


def describe(case) -> str:
    names = []
    for opcode, modrm, o16 in case.insns:
        if opcode == 0x9B:
            names.append("FWAIT")
            continue
        key = opcode << 8 | (modrm if modrm >= 0xC0 else modrm & 0x38)
        names.append(("o16 " if o16 else "") + TABLE[key][3])
    return "; ".join(names)


def replay_source(case) -> str:
    """A Python expression that rebuilds the case, for regression tests."""
    return (f"Case(bytes.fromhex({case.image.hex()!r}), {case.insns!r}, "
            f"bytes.fromhex({case.memory[:108].hex()!r}).ljust(512, b'\\0'), {case.eflags:#x})")

