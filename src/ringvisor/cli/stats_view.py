"""The --stats report: exits by reason and port beside the host kernel's own
counters, the wall time, and which hardware served the run."""
from __future__ import annotations

import sys

from rich.table import Table

from ringvisor.cli.report_console import report_console


def print_stats(result, file=None) -> None:
    console = report_console(file or sys.stderr)
    s = result.stats
    console.print(f"[bold]ringvisor[/] guest exited with status {result.status} ({result.reason}) "
                  f"after {result.wall_seconds:.3f} s on the {s.get('engine')} engine")
    if "backend" in s:
        console.print(f"backend: {s['backend']['description']}")

    post = s.get("post_codes", {})
    if post.get("writes"):
        shown = " ".join(code.replace("0x", "") for code in post["codes"])
        more = f" (the first {len(post['codes'])} of {post['writes']:,})" if post["writes"] > len(post["codes"]) else ""
        console.print(f"POST codes{more}: {shown}", highlight=False, soft_wrap=True)
    if "instructions" in s:
        _print_soft(console, s)
    else:
        _print_exits(console, s)

    ports = Table(title="port accesses" if "instructions" in s else "port exits", title_justify="left")
    for col, justify in (("port", "left"), ("device", "left"), ("reads", "right"), ("writes", "right")):
        ports.add_column(col, justify=justify)
    for p in s.get("ports", []):
        ports.add_row(f"{p['port']:#06x}", p["device"], f"{p['reads']:,}", f"{p['writes']:,}")
    console.print(ports)

    kernel = s.get("kernel", {}).get("vcpu", {})
    if kernel:
        table = Table(title="host kernel (KVM stats, this vCPU)", title_justify="left")
        table.add_column("counter")
        table.add_column("delta", justify="right")
        for name, v in sorted(kernel.items(), key=lambda kv: -kv[1]):
            table.add_row(name, f"{v:,}")
        console.print(table)
    unknown = s.get("unknown_accesses", [])
    if unknown:
        console.print("unassigned accesses: " + ", ".join(
            f"{u['bus']} {u['access']} {u['address']:#x} x{u['count']}" for u in unknown))


def _print_soft(console, s) -> None:
    """The soft engine has no exits to count: its figures are instructions,
    virtual time and interrupts (and the monitor's traps, when one runs)."""
    p = s["platform"]
    console.print(f"{s['instructions']:,} guest instructions, {s['mips']:.2f} MIPS; "
                  f"virtual time {p['virtual_seconds']:.3f} s "
                  f"({p['idle_virtual_seconds']:.3f} s halted, {p['halts_skipped']:,} halts skipped)")
    irqs = ", ".join(f"IRQ{irq} x{n:,}" for irq, n in p["interrupts_by_irq"].items()) or "none"
    console.print(f"interrupts delivered: {irqs}")
    for cpu in s.get("cpus", []):
        console.print(cpu_line(cpu), highlight=False, soft_wrap=True, markup=False)
    monitor = s.get("monitor")
    if monitor:
        table = Table(title="monitor", title_justify="left")
        table.add_column("counter")
        table.add_column("value", justify="right")
        for name, value in _flatten(monitor):
            table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
        console.print(table)


def cpu_line(cpu: dict) -> str:
    """One CPU's line, for scripts: `cpu<N> instructions=<count> key=value ...`."""
    rest = " ".join(f"{k}={v}" for k, v in cpu.items() if k not in ("cpu", "instructions"))
    return f"cpu{cpu['cpu']} instructions={cpu['instructions']} {rest}"


def kvm_cpu_line(cpu: dict) -> str:
    """One vCPU's line on the kvm engine: `cpu<N> key=value ...` with what
    KVM counts (the guest runs on the host CPU: no instruction count)."""
    return f"cpu{cpu['cpu']} " + " ".join(f"{k}={v}" for k, v in cpu.items() if k != "cpu")


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _print_exits(console, s) -> None:
    exits = Table(title="exits to ringvisor", title_justify="left")
    exits.add_column("reason")
    exits.add_column("count", justify="right")
    for reason, n in sorted(s.get("userspace_exits", {}).items(), key=lambda kv: -kv[1]):
        exits.add_row(reason, f"{n:,}")
    if s.get("coalesced_writes"):
        exits.add_row("(coalesced writes, no exit)", f"{s['coalesced_writes']:,}")
    console.print(exits)
    for cpu in s.get("cpus", []):
        console.print(kvm_cpu_line(cpu), highlight=False, soft_wrap=True, markup=False)
