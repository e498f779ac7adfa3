"""Running a guest under a monitor in-process: the same Machine the CLI
builds for `--engine soft --technique trap|bt|pv`, its console captured."""
from __future__ import annotations

from ringvisor.vm import VmConfig, build_machine

# The test guests' protected-mode start (Intel syntax, at 0x100000): load the
# guest's `gdtr`, reload CS with selector 0x08 and the data segments with
# 0x10, a stack below 0x170000, then its `idtr`.
FLAT_START = """    lgdt [gdtr]
    .byte 0xEA
    .long 1f
    .word 0x08
1:  mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x170000
    lidt [idtr]
"""
# The start of the GDT FLAT_START loads: null, flat ring-0 code (0x08) and
# data (0x10); a guest appends its other descriptors.
FLAT_GDT = """.align 8
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
"""


def machine(kernel, cmdline: str = "", technique: str = "trap", ring: int = 1, **config):
    out = bytearray()
    cfg = VmConfig(kernel=str(kernel), engine="soft", technique=technique, ring=ring,
                   cmdline=cmdline, timeout=120, **config)
    m = build_machine(cfg, out.extend)
    m.output = out
    return m


def run(kernel, cmdline: str = "", **kw):
    """(RunResult, console lines) of a run to the guest's exit."""
    m = machine(kernel, cmdline, **kw)
    try:
        result = m.run()
    finally:
        m.close()
    return result, m.output.decode(errors="replace").replace("\r", "").splitlines()
