"""The binary translator's counters and how `--stats`/`--json` show them
(`stats["monitor"]["translation"]`)."""
from __future__ import annotations

from collections import Counter


class BtStats:
    def __init__(self):
        self.blocks = 0                 # blocks translated (retranslations included)
        self.ahead = 0                  # of which translated ahead of execution (jump targets)
        self.guest_insns = 0            # guest instructions in them
        self.kinds = Counter()          # callout sites translated, by kind
        self.callouts = Counter()       # callouts executed, by kind ("chain": exit stubs, "miss": lookups)
        self.hits = 0                   # monitor lookups that found a translation
        self.chain_patches = 0          # exit stubs replaced by a direct jump
        self.code_page_writes = 0       # writes to frames code was translated from
        self.invalidations = 0          # of which changed translated bytes
        self.blocks_invalidated = 0
        self.remap_flushes = 0
        self.return_fixups = 0          # traps inside an inline RET, completed by the monitor
        self.adaptive = 0               # stores retranslated as pte-store callouts (bt_adaptive.py)
        self.unadapt_drops = 0          # blocks dropped to copy an unadapted store again
        self.unadapted = 0              # pte-store sites that went back to being copied
        self.pte_stores = 0             # stores performed by the monitor in one trap
        self.pte_store_steps = 0        # pte-store sites single-stepped instead (another form now)

    def report(self, tc) -> dict:
        return {
            "blocks_translated": self.blocks,
            "blocks_translated_ahead": self.ahead,
            "guest_instructions_translated": self.guest_insns,
            "instructions_per_block": round(self.guest_insns / self.blocks, 2) if self.blocks else 0.0,
            "callouts": sum(self.callouts.values()),
            "callouts_by_kind": dict(self.callouts.most_common()),
            "callout_sites_by_kind": dict(self.kinds.most_common()),
            "cache_hits": self.hits,
            "chain_patches": self.chain_patches,
            "chained_when_translated": tc.late_links,
            "code_page_writes": self.code_page_writes,
            "invalidations": self.invalidations,
            "blocks_invalidated": self.blocks_invalidated,
            "blocks_live": tc.blocks,
            "cache_flushes": tc.flushes,
            "remap_flushes": self.remap_flushes,
            "return_fixups": self.return_fixups,
            "adaptive_retranslations": self.adaptive,
            "blocks_dropped_unadapting": self.unadapt_drops,
            "adaptive_sites_unadapted": self.unadapted,
            "pte_stores_one_trap": self.pte_stores,
            "pte_store_steps": self.pte_store_steps,
            "cache_bytes_used": tc.used,
            "cache_bytes": tc.size,
        }

    def traced(self, tc) -> dict:
        """What `--trace` shows a callout or trap did to the cache."""
        return {"blocks translated": self.blocks, "jumps chained": tc.late_links + self.chain_patches,
                "translated blocks invalidated": self.blocks_invalidated,
                "inline lookup completed": self.return_fixups,
                "store retranslated as a callout": self.adaptive,
                "PTE store performed and mirrored": self.pte_stores}
