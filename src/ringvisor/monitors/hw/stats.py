"""The hw monitor's `--stats` figures, summed over its vCPUs (--cpus N:
the per-vCPU exits are on the `cpu<N>` lines, machine/smp.py)."""
from __future__ import annotations

from collections import Counter

from ringvisor.cpu.vmx.exits import REASONS


def _sum(mons, attribute: str) -> Counter:
    total = Counter()
    for mon in mons:
        total.update(getattr(mon, attribute))
    return total


def statistics(mon) -> dict:
    mons = mon.siblings if mon is mon.siblings[0] else [mon]
    exits = _sum(mons, "exits")
    total = sum(exits.values())
    seconds = sum(m.monitor_seconds for m in mons)
    stats = {
        "technique": "hw", "paging": mon.paging,
        **({"vcpus": len(mons)} if len(mons) > 1 else {}),
        "exits": total,
        "exits_by_reason": {REASONS.get(r, str(r)).lower(): n for r, n in exits.most_common()},
        "io_exits_by_port": {f"{p:#06x}": n for p, n in _sum(mons, "io_ports").most_common()},
        "mmio_exits_by_page": {f"{p:#010x}": n for p, n in _sum(mons, "mmio_accesses").most_common()},
        "task_switches_emulated": {("call", "iret", "jmp", "task gate")[s]: n
                                   for s, n in _sum(mons, "stats_task_switches").items()},
        "interrupts_injected": sum(m.injected for m in mons),
        **({"nmis_injected": sum(m.nmis_injected for m in mons)} if mon.apic is not None else {}),
        "events_reinjected": sum(m.reinjected for m in mons),
        "x87_errors_as_ferr": sum(m.fpu_errors for m in mons),
        "hypercalls": dict(_sum(mons, "hypercalls").most_common()),
        "monitor_host_seconds": round(seconds, 3),
        "monitor_us_per_exit": round(1e6 * seconds / total, 1) if total else 0.0,
    }
    real = sum(m.real_mode_instructions for m in mons)
    if real:
        stats["real_mode_start_instructions_emulated"] = real
    if mon.shadow is not None:
        stats["shadow_paging"] = dict(sum((Counter(m.shadow.statistics()) for m in mons), Counter()))
    else:
        epts = [e for e in (getattr(m.cpu, "vmx_ept", None) for m in mons) if e is not None]
        if epts:
            misses, refs = sum(e.misses for e in epts), sum(e.refs for e in epts)
            stats["ept"] = {"tlb_misses": misses, "walk_references": refs,
                            "references_per_miss": round(refs / misses, 2) if misses else 0.0,
                            "violations": sum(e.violations for e in epts)}
    return stats
