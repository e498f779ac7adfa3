"""The binary-translation monitor (`--technique bt`), VMware-style.

Built on the trap-and-emulate monitor (trap.py) in the 0/1/3 model: the
same region, real GDT/IDT/TSS, shadow page tables, delivery into the guest's
IDT and emulation of privileged instructions. What changes is how guest
*kernel* code runs: never directly, always from the translation cache
(bt_cache.py, bt_translate.py), at real ring 1 with CS = the monitor's
execute-only TC segment and the guest's own data and stack segments.
Guest user code (virtual CPL 3) runs directly, as under trap.

* Sensitive and privileged instructions become callouts (a HLT: #GP at
  ring 1, through the monitor's IDT); the monitor maps the cache EIP back to
  the guest instruction, emulates it against the virtual CPU (emulate.py
  for the privileged ones, bt_sensitive.py for the holes of x86,
  bt_control.py for returns and indirect/far jumps) and resumes at the
  translation of the next guest EIP.
* Any other trap in the cache (a #PF, an interrupt, the monitor's
  single-step) is first turned into the guest's view (EIP = the guest
  instruction, CS = the guest's kernel CS), then handled exactly as by trap.
* Resuming the guest at virtual CPL 0 means: CS = the TC segment, EIP = the
  translation of the guest EIP, or a "miss" callout that translates it
  (translation faults then reach the guest at that EIP, as a fetch would).
* Writes to translated guest code: every frame a block comes from is
  write-protected in the shadow page tables; a write the guest's tables
  allow is let through by single-stepping it (the stepper, as for traced
  page tables), and the blocks translated from the bytes it changed are
  dropped (jumps into them unchained) before the guest goes on, so a store
  to the very next instruction runs the new bytes. Data written on a code
  page drops nothing.
* Adaptive translation (bt_adaptive.py): a copied store that takes a
  write #PF on a traced guest page table is retranslated as a "pte store"
  callout, which performs the store and mirrors it in one trap instead of
  a #PF and a single-step #DB.
"""
from __future__ import annotations

from ringvisor.cpu.core import CS
from ringvisor.cpu.isa.decoder import NeedMore
from ringvisor.cpu_state import Segment
from ringvisor.monitors.bt import adaptive as bt_adaptive, classify as C
from ringvisor.monitors.bt import control as bt_control, sensitive as bt_sensitive
from ringvisor.monitors.bt.cache import CHAIN, TranslationCache
from ringvisor.monitors.bt.returns import STACK2, UNDO1, ReturnCache
from ringvisor.monitors.bt.returns import AREA as RET_AREA_BYTES
from ringvisor.monitors.bt.stats import BtStats
from ringvisor.monitors.bt.translate import MAX_INSNS, Undecodable, translate
from ringvisor.monitors.common import emulate as E
from ringvisor.monitors.common import region as R
from ringvisor.monitors.common import real_tables as T
from ringvisor.monitors.common.delivery import Unsupported
from ringvisor.monitors.common.descriptors import decode
from ringvisor.monitors.common.guest_mmu import GP, ReservedAccess, VirtualFault
from ringvisor.monitors.common.shadow_gdt import KERNEL_VIEW
from ringvisor.monitors.common.stepper import Step
from ringvisor.monitors.common.vcpu import VM
from ringvisor.monitors.trap.monitor import TrapMonitor

MISS, LOOKUP_MISS = "miss", "lookup miss"
BLOCK_ROOM = MAX_INSNS * 24 + 64          # the most bytes one block can take
AHEAD = 32                                 # blocks translated ahead of execution per miss
RET_AREA = (RET_AREA_BYTES + 0xFFF) & ~0xFFF
RETURN_FAULTS = (12, 13, 14)              # on an inline lookup's push: emulate the instruction instead
HANDLERS = {**bt_sensitive.HANDLERS, **bt_control.HANDLERS}


class BtMonitor(TrapMonitor):
    name = "bt"
    tc_bytes = R.TC_BYTES
    hide_user_code = False              # IRET/RETF/far jumps are callouts: user code can stay present
    far_transfers_trap = True           # so CS is always loaded through the monitor

    def __init__(self, machine, engine, fast_faults: bool = False):
        super().__init__(machine, engine, 1, fast_faults)
        self.rets = ReturnCache(self.region, R.TC)
        self.tc = TranslationCache(self.region, R.TC + RET_AREA, R.TC_BYTES - RET_AREA,
                                   on_unused=self.shadow.unprotect)
        self.bt = BtStats()
        self.tc_cs = decode(T.tc_descriptor()).segment(T.TC_CODE | 1)
        self.region.write_u64(self.gdt.bases[KERNEL_VIEW] + T.TC_CODE, T.tc_descriptor())
        self.kernel_cs: Segment | None = None     # the guest's CS while it runs in the cache
        self.miss_at = self.tc.base + self.tc.size - 1   # one HLT: "translate the pending EIP"
        self.region.write_bytes(self.tc.phys + self.tc.size - 1, b"\xF4")
        self.tc.size -= 1
        self.pending_eip = 0
        self.site = None                          # the callout being handled
        self.step_direct = False                  # a STEP callout: the next resume runs guest code
        self.trap_tc: int | None = None           # the cache EIP of the trap being handled
        self.trap_direct = False                  # ... or it came from guest kernel code (a step)
        self.adapted: dict[int, int] = {}         # pte-store sites (guest EIP) -> stores in a row elsewhere
        self.unadapted: dict[int, int] = {}       # site -> times it went back to being copied
        self.stepper.on_code_write = self._code_written
        self.debug_stops: frozenset[int] = frozenset()    # a debugger's breakpoints (guest EIPs)

    # --- into the guest's view ----------------------------------------------------------------
    def _in_cache(self, st) -> bool:
        return st.cs.selector == self.tc_cs.selector and not st.eflags & VM

    def _guest_view(self, st, count: bool = False):
        """A real state inside the cache, as the guest would have it (in place)."""
        if not self._in_cache(st):
            return st
        tc = st.eip
        fix = None
        if tc == self.miss_at:
            g = self.pending_eip
        elif self.rets.contains(tc):
            fix, g = self.rets.fixup(tc)
        else:
            g = self.tc.guest_eip(tc)
            fix = self.tc.fixups.get(tc)
        st.cs = self.kernel_cs.copy()
        if fix is not None:
            g = self._complete_transfer(st, fix, g)
            self.bt.return_fixups += count and tc != self.rets.miss_hlt     # the miss is no fixup
        if g is None:
            self.crash(f"the real CPU stopped at {tc:#010x} in the translation cache, where no guest "
                       "instruction was translated", st)
        st.eip = g
        return st

    def _complete_transfer(self, st, fix: str, g: int | None) -> int | None:
        """A trap inside an inline RET/JMP/CALL lookup (bt_returns.py)."""
        if fix == UNDO1:                             # a CALL's return EIP pushed, nothing else
            st.esp = (st.esp + 4) & 0xFFFFFFFF
            return g
        if fix == STACK2:
            st.ecx = self._pop(st)
        return self._pop(st)

    def _pop(self, st) -> int:
        try:
            value = self.gmmu.read_u((st.ss.base + st.esp) & 0xFFFFFFFF, 4)
        except (VirtualFault, ReservedAccess):      # the CPU was just using this stack
            self.crash(f"a trap inside an inline RET, and the guest's stack at {st.esp:#010x} cannot "
                       "be read to complete it", st)
        st.esp = (st.esp + 4) & 0xFFFFFFFF
        return value

    # --- a debugger's view: guest boundaries in the cache, breakpoints never translated ------
    def debug_eip(self, cpu) -> int | None:
        """Inside the cache, only where the translation of a guest instruction
        begins (never inside a rewritten sequence or the glue)."""
        if cpu.cpl == 0:
            return None
        if cpu.segs[CS].selector != self.tc_cs.selector:
            return (cpu.sbase[CS] + cpu.eip) & 0xFFFFFFFF
        tc = cpu.eip
        if tc == self.miss_at:
            g = self.pending_eip
        else:
            g = self.tc.back.get(tc)
            if g is None or self.tc.at.get(g) != tc:
                return None
        return (self.kernel_cs.base + g) & 0xFFFFFFFF

    def debug_breakpoints(self, linear: frozenset[int]) -> None:
        """The guest instructions at these addresses run from the guest's own
        code at ring 1 (one step, as a STEP callout), never from the cache,
        so that the CPU stops at the guest's address: blocks end before them."""
        base = self.kernel_cs.base if self.kernel_cs is not None else 0
        stops = frozenset((a - base) & 0xFFFFFFFF for a in linear)
        real = self.real.get_state()
        here = self._guest_view(real.copy()) if self._in_cache(real) else None
        dropped = 0
        for g in stops - self.debug_stops:
            phys = self._code_phys(g) if self.kernel_cs is not None else None
            if phys is not None:
                dropped += self._drop_code(phys & ~0xFFF, phys & 0xFFF, (phys & 0xFFF) + 1)
        self.debug_stops = stops
        if dropped and here is not None:
            self._resume(here)          # the CPU stood in the cache: where the guest's EIP is now

    def masked_reason(self) -> str:
        return ("Its POPF, STI and IRET are all callouts here, so it is spinning with interrupts "
                "off (a hang natively too)")

    def guest_state_of(self, st):
        """The guest's view, also of a state inside the cache."""
        return self.vcpu.view(self._guest_view(st.copy()))

    def crash(self, what: str, st):
        if self._in_cache(st) and self.kernel_cs is not None:
            st = self._guest_view(st.copy())
        super().crash(what, st)

    def label(self) -> str:
        return "bt monitor (guest kernel code from the translation cache, real ring 1)"

    def _site_at(self, tc: int, vector: int, external: bool):
        """The callout a trap at cache address `tc` is (None: a real trap)."""
        if external:
            return None
        if vector == 13:
            return MISS if tc == self.miss_at else LOOKUP_MISS if tc == self.rets.miss_hlt \
                else self.tc.sites.get(tc)
        if vector in RETURN_FAULTS:
            site = self.tc.sites.get(tc)              # a fault on an inline lookup's own push
            if site is not None and site.kind != CHAIN:
                return site
        return None

    def _dispatch(self, st, vector: int, code, external: bool):
        self.site = self.trap_tc = None
        self.trap_direct = self.vcpu.cpl == 0 and not self._in_cache(st)
        if self._in_cache(st):
            self.trap_tc = st.eip
            self.site = self._site_at(st.eip, vector, external)
            if self.site is not None:
                vector, code = GP, 0
            self._guest_view(st, count=True)
        return super()._dispatch(st, vector, code, external)

    # --- ringvisor run --trace: callouts by kind, translation work in the outcome ---------------
    def _trace_begin(self, tracer, st, vector: int, code, external: bool) -> None:
        site = self._site_at(st.eip, vector, external) if self._in_cache(st) else None
        if site is None:
            return super()._trace_begin(tracer, st, vector, code, external)
        kind = site if isinstance(site, str) else site.kind
        tracer.trap_begin(self, f"callout {kind}", 1, self.guest_state_of(st), self.memory,
                          self.trace_counters(), at_instruction=True)

    def trace_counters(self) -> dict:
        tc = self.tc
        return {**super().trace_counters(), "": {**self.stats, **self.bt.traced(tc)}}

    def _trap_kind(self, vector: int, external: bool) -> str:
        return "callout" if self.site is not None else super()._trap_kind(vector, external)

    # --- callouts --------------------------------------------------------------------------------
    def _emulate(self, st, vector: int, code):
        site, self.site = self.site, None
        if site is None:
            return super()._emulate(st, vector, code)          # a real #GP/#NP
        if site in (MISS, LOOKUP_MISS):
            self.bt.callouts[site] += 1
            if st.eip in self.debug_stops:
                return self._resume(st)           # runs directly (see debug_breakpoints)
            tc = self._lookup(st.eip)
            if tc is None:
                tc = self._translate(st.eip)      # a fetch fault here is the guest's, at its EIP
            if site == LOOKUP_MISS:
                self.rets.add(st.eip, tc)
            return self._resume(st)
        kind = site.kind
        self.bt.callouts[kind] += 1
        if kind == CHAIN:
            return self._chain(st, site)
        if kind == bt_adaptive.PTE_STORE:
            return self._pte_store(st, E.fetch_decode(self, st), site.guest)
        if kind == C.STEP:
            self.step_direct = True               # _resume runs this one from the guest's code
            return self._resume(st)
        fn = HANDLERS.get(kind)
        if fn is None:
            return super()._emulate(st, GP, 0)                  # privileged: as trap emulates it
        ins = E.fetch_decode(self, st)
        self.emulated[ins.row.mnemonic] += 1
        if fn(self, st, ins) == E.NEXT:
            st.eip = (st.eip + ins.length) & 0xFFFFFFFF
        return self._resume(st)

    def _chain(self, st, site):
        """An exit stub ran: translate its target and patch the jump."""
        target = site.guest
        if target in self.debug_stops:
            st.eip = target
            return self._resume(st)                # left as a stub: runs directly
        self.tc.unwait(site)                       # patched here, not when the target is installed
        if self._lookup(target) is None:
            self._translate(target)
        if site.block.alive and target in self.tc.at and self.tc.points_at(site.field, site.tc):
            self.tc.link(site.field, target, site.block, site.tc)
            self.bt.chain_patches += 1
        return self._resume(st)

    # --- the cache ------------------------------------------------------------------------------
    def _lookup(self, eip: int) -> int | None:
        tc = self.tc.at.get(eip)
        if tc is None:
            return None
        phys = self._code_phys(eip)
        if phys is None or phys & ~0xFFF != self.tc.owner[eip].pages.get(eip & ~0xFFF):
            self.bt.remap_flushes += 1             # the page now maps another frame
            self._flush()
            return None
        self.bt.hits += 1
        return tc

    def _code_phys(self, eip: int) -> int | None:
        """Where guest kernel EIP `eip` is now (no side effects), None if unmapped."""
        return self.gmmu.peek((self.kernel_cs.base + eip) & 0xFFFFFFFF)

    def _flush(self) -> None:
        self.tc.flush()
        self.rets.reset()

    def _translate(self, eip: int) -> int:
        """Translate the block at guest EIP `eip` (a fetch fault is the
        guest's), then up to AHEAD blocks its jumps lead to on pages already
        translated, so that their exit stubs need not trap."""
        if eip > self.kernel_cs.limit:
            raise VirtualFault(GP, 0)              # beyond CS (cut below the monitor's hole)
        if not self.tc.room(BLOCK_ROOM * (AHEAD + 1)):
            self._flush()
        try:
            d = self._translate_one(eip)
        except Undecodable:
            raise VirtualFault(GP, 0) from None
        work = [t for _, t in d.links] + d.returns
        returns = list(d.returns)
        ahead = 0
        while work and ahead < AHEAD:
            t = work.pop()
            if t in self.tc.at or t > self.kernel_cs.limit or t in self.debug_stops:
                continue
            phys = self._code_phys(t)
            if phys is None or (phys & ~0xFFF) not in self.shadow.protected:
                continue                           # only code pages already known: no data page protected
            try:
                more = self._translate_one(t)
            except (Undecodable, VirtualFault, ReservedAccess, NeedMore):
                continue
            work += [x for _, x in more.links] + more.returns
            returns += more.returns
            ahead += 1
            self.bt.ahead += 1
        for r in returns:                          # the RETs to these EIPs will find them in the cache
            if r in self.tc.at:
                self.rets.add(r, self.tc.at[r])
        return self.tc.at[eip]

    def _translate_one(self, eip: int):
        base = self.kernel_cs.base

        def fetch(g):
            return self.gmmu.fetch((base + g) & 0xFFFFFFFF, user=False)

        def frame_of(g):
            return self.gmmu.walk((base + g) & 0xFFFFFFFF, False, False) & ~0xFFF

        stops = self.debug_stops
        d = translate(eip, fetch, frame_of, lambda g: g in self.tc.at or g in stops, self.rets,
                      self.adapted)
        b = self.tc.install(d)
        for f in b.frames:
            self.shadow.protect(f)
        self.bt.blocks += 1
        self.bt.guest_insns += b.insns
        self.bt.kinds.update(k for k, _ in d.sites.values() if k != CHAIN)
        return d

    # --- adaptive translation of page-table stores ----------------------------------------------
    def _page_fault(self, st, code: int):
        if self.trap_tc is not None and code & 2 and not self.stepper.active:
            ins = self._adapt(st)
            if ins is not None:
                return self._pte_store(st, ins, st.eip)
        return super()._page_fault(st, code)

    def _adapt(self, st):
        """A copied store in the cache wrote to a traced page table: retranslate
        it as a pte-store callout (the first time already: a kernel store that
        hits a page table is almost always a set-PTE helper's, and a wrong
        guess is undone after MISS_LIMIT stores elsewhere). In place: its
        first byte in the cache becomes the callout's HLT, so no block is
        dropped and no jump or return entry into it changes; later
        translations of it emit the callout. Returns the decoded store, or
        None: the fault takes the old path."""
        g = st.eip
        phys = self.gmmu.peek(st.cr2)
        if phys is None or not self.shadow.traced(phys) \
                or self.tc.at.get(g) != self.trap_tc:       # not a copied instruction of its block
            return None
        try:
            ins = E.fetch_decode(self, st)
        except (VirtualFault, ReservedAccess, NeedMore):
            return None
        if not bt_adaptive.handled(ins):
            return None
        self.adapted[g] = 0
        self.bt.adaptive += 1
        self.bt.kinds[bt_adaptive.PTE_STORE] += 1
        self.tc.patch_callout(self.trap_tc, bt_adaptive.PTE_STORE, g)
        return ins

    def _unadapt(self, g: int, length: int) -> None:
        """Guest instruction `g` is copied again: in place if the callout was
        patched over its copy, else its blocks are dropped and translated again."""
        tc = self.tc.at.get(g)
        if tc in self.tc.patched:
            self.tc.unpatch(tc)
            return
        phys = self._code_phys(g)
        if phys is None:
            return
        lo = phys & 0xFFF
        self.bt.unadapt_drops += self._drop_code(phys & ~0xFFF, lo, min(lo + length, 0x1000))

    def _pte_store(self, st, ins, g: int):
        """The store at a pte-store site, in this one trap."""
        if not bt_adaptive.handled(ins):           # the guest rewrote the site: run it as it is now
            phys = None
        else:
            phys = bt_adaptive.store(self, st, ins)      # the guest's #GP/#PF propagate from here
        if phys is None:
            self.bt.pte_store_steps += 1
            self.step_direct = True
            return self._resume(st)
        self.bt.pte_stores += 1
        if self.shadow.traced(phys):
            self.adapted[g] = 0
        elif g in self.adapted:
            self.adapted[g] += 1
            # It stores elsewhere (a table not in use yet): copied again, until
            # it traps on a traced table again, each time after twice as many.
            if self.adapted[g] >= bt_adaptive.MISS_LIMIT << self.unadapted.get(g, 0):
                del self.adapted[g]
                self.unadapted[g] = self.unadapted.get(g, 0) + 1
                self.bt.unadapted += 1
                self._unadapt(g, ins.length)
        st.eip = (st.eip + ins.length) & 0xFFFFFFFF
        return self._resume(st)

    # --- resuming -----------------------------------------------------------------------------------
    def _resume(self, st):
        if self.vcpu.cpl == 0 and not self._in_cache(st):
            if not st.cs.db:
                raise Unsupported("16-bit kernel code: the binary translator translates 32-bit code only")
            if self.kernel_cs is not None and self.kernel_cs.base != st.cs.base:
                self._flush()                    # translations are keyed by EIP under one CS base
            self.kernel_cs = st.cs.copy()
            # One instruction at ring 1, TF set, as trap would; a #PF it took
            # (a fill, a lifted PTE) resumes it there, not in the cache.
            if self.step_direct or (self.trap_direct and self.stepper.active) or \
                    st.eip in self.debug_stops:
                self.step_direct = False
                if self.stepper.step is None:
                    self.stepper.step = Step()
                return super()._resume(st)
            tc = self._lookup(st.eip)
            if tc is None:
                self.pending_eip, tc = st.eip, self.miss_at
            st.eip, st.cs = tc, self.tc_cs.copy()
        return super()._resume(st)

    # --- writes to translated code ---------------------------------------------------------------------
    def _code_written(self, frame: int, lo: int, hi: int) -> None:
        """Bytes [lo, hi) of a frame code was translated from have changed
        (a guest store let through by the stepper, or the monitor's own
        write): drop the blocks translated from them."""
        self.bt.code_page_writes += 1
        dropped = self._drop_code(frame, lo, hi)
        if dropped:
            self.bt.invalidations += 1
            self.bt.blocks_invalidated += dropped

    def _drop_code(self, frame: int, lo: int, hi: int) -> int:
        """Drop the blocks translated from bytes [lo, hi) of `frame`; how many."""
        dropped = self.tc.invalidate_frame(frame, lo, hi)
        if dropped:
            self.rets.reset()                      # entries may jump into the dropped blocks
        return dropped

    def _guest_written(self, phys: int, length: int) -> None:
        super()._guest_written(phys, length)
        end = phys + length
        while phys < end:
            frame = phys & ~0xFFF
            upto = min(end, frame + 0x1000)
            if frame in self.shadow.protected:
                self._code_written(frame, phys - frame, upto - frame)
            phys = upto

    # --- statistics ------------------------------------------------------------------------------------
    def statistics(self) -> dict:
        s = super().statistics()
        s["technique"] = "bt"
        s["translation"] = self.bt.report(self.tc)
        s["translation"]["code_write_steps"] = self.stats["code_write_steps"]
        s["translation"]["adaptive_sites"] = len(self.adapted)
        return s
