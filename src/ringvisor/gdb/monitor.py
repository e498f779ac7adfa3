"""`monitor ...` commands (gdb's qRcmd): what ringvisor can tell a gdb user
beyond registers and memory. Each command returns plain text."""
from __future__ import annotations

from typing import Callable, Mapping

from ringvisor.gdb.target import Target

SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")


def run_command(line: str, target: Target, breakpoints_text: Callable[[], str]) -> str:
    words = line.split()
    if not words or words == ["help"]:
        return HELP
    key = " ".join(words[:2]) if words[0] == "info" else words[0]
    if key in ("info registers", "info reg", "info r"):
        return registers_text(target)
    if key == "info exits":
        return exits_text(target.stats())
    if key == "info traps":
        return traps_text(target.stats())
    if key in ("info breakpoints", "info break"):
        return breakpoints_text()
    if key == "technique":
        return target.describe() + "\n"
    return f"unknown monitor command {line.strip()!r}; 'monitor help' lists them\n"


HELP = """ringvisor monitor commands:
  monitor info registers    the guest's CPU: registers, CPL, segment caches, control registers
  monitor info exits        exits to ringvisor (kvm) or instructions and interrupts (soft), as --stats
  monitor info traps        the monitor's counters (trap, bt, pv), as --stats
  monitor info breakpoints  breakpoints and watchpoints the stub holds
  monitor technique         engine and virtualization technique of this run
"""


def registers_text(target: Target) -> str:
    s = target.read_registers()
    v86 = bool(s.cr0 & 1 and s.eflags & 0x20000)
    cpl = 0 if not s.cr0 & 1 else 3 if v86 else s.cs.selector & 3
    mode = "real mode" if not s.cr0 & 1 else "virtual-8086 mode" if v86 else "protected mode"
    lines = [
        f"{mode}, CPL {cpl}, paging {'on' if s.cr0 & 0x80000000 else 'off'}",
        f"eax={s.eax:08x} ebx={s.ebx:08x} ecx={s.ecx:08x} edx={s.edx:08x}",
        f"esi={s.esi:08x} edi={s.edi:08x} ebp={s.ebp:08x} esp={s.esp:08x}",
        f"eip={s.eip:08x} eflags={s.eflags:08x} iopl={(s.eflags >> 12) & 3}",
    ]
    for name in SEGMENTS:
        seg = getattr(s, name)
        lines.append(f"{name}={seg.selector:04x} base={seg.base:08x} limit={seg.limit:08x} "
                     f"dpl={seg.dpl} type={seg.type:x}{' 32-bit' if seg.db else ''}"
                     f"{'' if seg.present else ' not-present'}")
    lines += [
        f"ldtr={s.ldt.selector:04x} base={s.ldt.base:08x} limit={s.ldt.limit:08x}",
        f"tr={s.tr.selector:04x} base={s.tr.base:08x} limit={s.tr.limit:08x}",
        f"gdtr={s.gdt.base:08x}/{s.gdt.limit:04x} idtr={s.idt.base:08x}/{s.idt.limit:04x}",
        f"cr0={s.cr0:08x} cr2={s.cr2:08x} cr3={s.cr3:08x} cr4={s.cr4:08x}",
    ]
    return "\n".join(lines) + "\n"


def exits_text(stats: Mapping) -> str:
    lines = [f"engine: {stats.get('engine', '?')}"]
    if "instructions" in stats:
        lines.append(f"guest instructions: {stats['instructions']:,} (the soft engine has no exits: "
                     "every instruction is its own)")
        irqs = stats.get("platform", {}).get("interrupts_by_irq", {})
        lines.append("interrupts delivered: " +
                     (", ".join(f"IRQ{irq} x{n:,}" for irq, n in irqs.items()) or "none"))
    exits = stats.get("userspace_exits", {})
    if exits:
        lines.append("exits to ringvisor:")
        lines += [f"  {reason:<24} {n:>12,}" for reason, n in sorted(exits.items(), key=lambda kv: -kv[1])]
    elif "instructions" not in stats:
        lines.append("exits to ringvisor: none yet")
    ports = stats.get("ports", [])
    if ports:
        lines.append("port accesses:")
        lines += [f"  {p['port']:#06x} {p['device']:<14} reads {p['reads']:>10,} writes {p['writes']:>10,}"
                  for p in ports]
    return "\n".join(lines) + "\n"


def traps_text(stats: Mapping) -> str:
    monitor = stats.get("monitor")
    if not monitor:
        return "no monitor counters: nothing runs between this guest and its CPU (native or hw)\n"
    return "\n".join(f"{name:<40} {value:>12,}" if isinstance(value, int) else f"{name:<40} {value}"
                     for name, value in _flatten(monitor)) + "\n"


def _flatten(d: Mapping, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, Mapping):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
