"""The trap monitor's `--stats`/`--json` figures, read from its counters
(the bt monitor, built on it, adds its translation counters: monitors/bt/stats.py)."""

# The shadow MMU's counters and the v86 counters, in the order they print.
SHADOW_PAGING = ("hidden_faults", "fills", "pte_write_traps", "pte_writes_mirrored", "wp0_write_steps",
                 "cr3_writes", "invlpg", "directories_created", "page_tables_created",
                 "directories_dropped", "frames_traced", "frames_untraced_flood", "resets")
VIRTUAL_8086 = ("entries", "exits", "emulated", "redirected")


def statistics(monitor) -> dict:
    total = sum(monitor.trap_kinds.values())
    s = monitor.stats
    return {
        "technique": "trap", "ring": monitor.ring,
        "traps": total,
        "traps_by_kind": dict(monitor.trap_kinds.most_common()),
        "emulated": dict(monitor.emulated.most_common()),
        "reflected": dict(monitor.reflected.most_common()),
        "shadow_paging": {k: s[k] for k in SHADOW_PAGING},
        "gdt_loads": s["gdt_loads"], "gdt_write_steps": s["gdt_write_steps"],
        "cut_limit_steps": s["cut_limit_steps"],
        "virtual_8086": {k: s[f"v86_{k}"] for k in VIRTUAL_8086},
        "device_mmio": {"emulated": s["mmio_emulated"], "stepped": s["mmio_steps"],
                        "by_device": dict(monitor.device_accesses.most_common())},
        "descriptors_updated": monitor.gdt.updated, "delivery_faults": s["delivery_faults"],
        "monitor_host_seconds": round(monitor.monitor_seconds, 3),
        "monitor_us_per_trap": round(1e6 * monitor.monitor_seconds / total, 1) if total else 0.0,
    }
