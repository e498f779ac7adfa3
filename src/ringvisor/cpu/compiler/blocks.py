"""Block compilation: the cache of compiled traces and the loop that runs them.

A trace (trace.py: the guest code execution reaches from one EIP inside one
4 KiB page, loops included) is decoded once through the same opcode table
and decoder as the interpreter and compiled into one Python function
(codegen.py), which runs until it leaves the trace, the instruction budget
is spent, or an interrupt is pending at a loop head.

* Cache key: (physical address, EIP, the mode: every segment cache, code
  and stack size, CPL, PE, PG, EFLAGS.VM: virtual-8086 code never shares
  traces with protected-mode code of the same segment caches). Generated code bakes in the segment caches
  (flat segments take the fast memory path). Lookups go through a per-mode
  dict EIP -> trace, valid while the mode and the TLB are unchanged: Core
  counts mode changes in `mode_epoch`, and a TLB flush or INVLPG clears it.
* Self-modifying code: a CPU write to a page holding traces goes through the
  slow path (memcode.py), drops every trace whose bytes it overlaps and sets
  `cpu.smc`; the running trace leaves at the next instruction boundary.
* Writes the CPU does not see (a loader, a monitor, device DMA) are caught
  by comparing a trace's bytes with memory on its first entry after
  `cpu.dev_epoch` moved: at every `SoftEngine.run()` and after every port
  I/O or MMIO access.
* Faults and rare exits: exact, rebuilt from the trace's locals (recover.py);
  the retired instruction count is exact.
"""
from __future__ import annotations

from ringvisor.cpu.architecture import VM
from ringvisor.cpu.compiler import inline
from ringvisor.cpu.compiler.codegen import Leave, generate
from ringvisor.cpu.compiler.coldpath import Cold, interpret
from ringvisor.cpu.compiler.memcode import FastPages
from ringvisor.cpu.compiler.recover import recover
from ringvisor.cpu.compiler.trace import MAX_STEPS, discover
from ringvisor.cpu.core import CS, IF, RF, TF, CpuFault
from ringvisor.cpu.flags import PARITY
from ringvisor.cpu.semantics.protection import check

MAX_MODES = 64
# More traces than this and the cache starts over (code that keeps faulting
# into new entry points, or a guest that runs much code once).
MAX_TRACES = 8192
# Code is interpreted until execution has reached it HOT times: compiling
# costs milliseconds, which code run once or twice (boot, setup) never repays.
HOT = 16


# Compiled code by source: the same guest code compiles to the same source
# (another machine in this process, the cache started over, a page reloaded).
_CODE: dict[str, object] = {}
MAX_SHARED = MAX_TRACES


def _code(src: str):
    code = _CODE.get(src)
    if code is None:
        if len(_CODE) >= MAX_SHARED:
            _CODE.clear()
        code = _CODE[src] = compile(src, "<trace>", "exec")
    return code


class Block:
    __slots__ = ("fn", "env", "n", "page", "key", "source", "code", "lo", "hi", "seen")


class BlockCache:
    def __init__(self, cpu):
        self.cpu = cpu
        self.blocks: dict = {}
        self.page_blocks: dict[int, list] = {}
        self.modes: dict = {}             # mode key -> {eip: Block}
        self.by_page: dict[int, list] = {}   # linear page -> [(modes' dict, eip)] (for INVLPG)
        self.fast: dict = {}
        self.mode = None
        self.mode_seen = -1
        self.compiled = 0
        self.cold: dict = {}              # key -> Cold: code being interpreted until hot
        self.hot = HOT
        self.pages = FastPages(cpu)
        self.rd_slow, self.wr_slow = self.pages.slow_paths()
        cpu.smc = False
        cpu.code_written = self.code_written
        cpu.memory_remapped = self.memory_remapped
        cpu.paging_changed = self.paging_changed
        cpu.page_invalidated = self.page_invalidated
        cpu.pages_dropped = self.pages_dropped

    def clear(self) -> None:
        self.blocks.clear()
        self.cold.clear()
        self.page_blocks.clear()
        self.cpu.code_pages.clear()
        self.cpu.code_pages.update(self.cpu.watched_pages)
        self._forget_lookups()

    def close(self) -> None:
        self.clear()
        self.pages.release()

    def _forget_lookups(self) -> None:
        self.modes.clear()
        self.by_page.clear()
        self.mode_seen = -1

    def paging_changed(self) -> None:
        self.pages.clear()
        self._forget_lookups()

    def page_invalidated(self, vpn: int) -> None:
        """INVLPG: forget what came from that page's translation only."""
        self.pages.forget(vpn)
        for fast, eip in self.by_page.pop(vpn, ()):
            fast.pop(eip, None)

    def pages_dropped(self, vpns) -> None:
        """A CR3 load kept the global pages: forget what came from the others."""
        if len(vpns) > 256:
            self.paging_changed()
            return
        for vpn in vpns:
            self.page_invalidated(vpn)

    def code_written(self, p: int, n: int) -> None:
        """The CPU wrote [p, p+n) on a page holding traces: drop the ones it hits."""
        cpu = self.cpu
        dropped = False
        for page in {p >> 12, (p + n - 1) >> 12}:
            keys = self.page_blocks.get(page)
            if not keys:
                continue
            keep = []
            for k in keys:
                b = self.blocks.get(k)
                if b is None:
                    continue
                if b.lo < p + n and p < b.hi:
                    del self.blocks[k]
                    dropped = True
                else:
                    keep.append(k)
            if keep:
                self.page_blocks[page] = keep
            else:
                del self.page_blocks[page]
                if page not in cpu.watched_pages:
                    cpu.code_pages.discard(page)
        if dropped:
            cpu.smc = True
            self._forget_lookups()

    def memory_remapped(self, lo: int, hi: int) -> None:
        """The chipset remapped physical [lo, hi) (PAM): drop the traces and
        the interpreted instructions decoded from it, and every fast write
        page (a watched page must take the slow path from now on)."""
        cpu = self.cpu
        self.code_written(lo, hi - lo)
        for key in [k for k, c in self.cold.items() if lo <= c.p < hi]:
            del self.cold[key]
        for page in range(lo >> 12, (hi + 0xFFF) >> 12):
            if page in cpu.watched_pages:
                cpu.code_pages.add(page)
            elif page not in self.page_blocks:
                cpu.code_pages.discard(page)
        self.pages.forget_writes()
        self._forget_lookups()
        cpu.dev_epoch += 1

    def _drop(self, b: Block) -> None:
        self.blocks.pop(b.key, None)
        self._forget_lookups()

    def _switch_mode(self) -> None:
        cpu = self.cpu
        self.mode_seen = cpu.mode_epoch
        self.mode = (tuple(cpu.sbase), tuple(cpu.slo), tuple(cpu.shi), tuple(cpu.sread),
                     tuple(cpu.swrite), cpu.code32, cpu.stack32, cpu.cpl, cpu.pe, cpu.pg,
                     cpu.flags & VM)
        fast = self.modes.get(self.mode)
        if fast is None:
            if len(self.modes) >= MAX_MODES:
                self.modes.clear()
                self.by_page.clear()
            fast = self.modes[self.mode] = {}
        self.fast = fast

    def run(self, target: int) -> None:
        """Run traces back to back until the budget is spent or something the
        engine loop must see happens (HLT, an interrupt shadow, TF, a pending
        interrupt with IF=1, a PAUSE that yields)."""
        cpu = self.cpu
        intr = cpu.interrupts
        debug = cpu.debug
        first = True
        while True:
            if cpu.mode_epoch != self.mode_seen:
                self._switch_mode()
            if debug is not None:
                if not first and (debug.breakpoints or debug.stop_requested or debug.single):
                    debug.boundary(cpu)       # (the engine checked the first one)
                if debug.single:
                    # Stepping or watching data: one instruction at a time
                    # through the accessors, never a compiled trace.
                    first = False
                    self._interpret_one(cpu.eip)
                    if cpu.halted or cpu.shadow or cpu.paused or cpu.instructions >= target or cpu.flags & (TF | RF):
                        return
                    if intr is not None and (cpu.flags & IF or cpu.vmx is not None) and intr.pending():
                        return
                    continue
            first = False
            eip = cpu.eip
            b = self.fast.get(eip)
            if b is None:
                b = self._lookup(eip, target)
            elif b.seen != cpu.dev_epoch:
                if cpu.mm[b.lo:b.hi] != b.code:
                    self._drop(b)             # written behind our back
                    continue
                b.seen = cpu.dev_epoch
            if b is None or b.__class__ is Cold:
                if b is None:
                    cpu.step()
                else:
                    interpret(cpu, b, eip)
            elif b.n > target - cpu.instructions:
                cpu.step()                    # the budget ends inside this trace
            else:
                self._chain(b, target, intr)
            if cpu.halted or cpu.shadow or cpu.paused or cpu.instructions >= target or cpu.flags & (TF | RF):
                return
            # (In VMX non-root operation some exits do not wait for IF: NMI
            # window, external-interrupt exiting.)
            if intr is not None and (cpu.flags & IF or cpu.vmx is not None) and intr.pending():
                return

    def _chain(self, b: Block, target: int, intr) -> None:
        """Run traces back to back while each leaves by a plain branch to
        another trace found at once: between them the state stays in locals
        (handlers, recover() and everything else see it in the CPU object
        again when this returns)."""
        cpu = self.cpu
        fast = self.fast
        pend = intr.pending if intr is not None else None
        r = cpu.r
        eax, ecx, edx, ebx, esp, ebp, esi, edi = r
        f, ic = cpu.flags, cpu.instructions
        cpu.smc = False
        while True:
            try:
                res = b.fn(cpu, target, eax, ecx, edx, ebx, esp, ebp, esi, edi, f, ic)
            except Leave as e:
                recover(cpu, b, e)
                return
            except BaseException as e:
                recover(cpu, b, e)
                raise
            if res is None:
                return                        # a handler ended the trace, the state is synced
            eip, ic, f, eax, ecx, edx, ebx, esp, ebp, esi, edi = res
            # (Only handlers change modes, HLT, shadows or TF; a plain branch did not.)
            if ic >= target or pend is not None and f & 0x200 and pend():
                break
            b = fast.get(eip)
            if b is None or b.n > target - ic:
                break
            if b.seen != cpu.dev_epoch:
                # The first entry since a device access or run(): are the
                # bytes still those compiled? (Stay in the chain if so.)
                if cpu.mm[b.lo:b.hi] != b.code:
                    break                     # run() drops it
                b.seen = cpu.dev_epoch
        cpu.eip, cpu.instructions, cpu.flags = eip, ic, f
        r[:] = eax, ecx, edx, ebx, esp, ebp, esi, edi

    def _interpret_one(self, eip: int) -> None:
        """One instruction, decoded once per place (Cold), never compiled."""
        cpu = self.cpu
        lin = (cpu.sbase[CS] + eip) & 0xFFFFFFFF
        try:
            p = cpu.translate(lin, 0, cpu.user) if cpu.pg else lin
        except CpuFault:
            return cpu.step()                 # which raises the fault with this EIP
        key = (p, eip, self.mode)
        cold = self.cold.get(key)
        if cold is None:
            cold = self.cold[key] = Cold(cpu, p, eip)
        interpret(cpu, cold, eip)

    def breakpoints_changed(self) -> None:
        """A debugger's breakpoints changed: no trace may run over one, so
        every lookup is made again (`_lookup` refuses breakpoint pages)."""
        self._forget_lookups()

    def _lookup(self, eip: int, target: int):
        cpu = self.cpu
        lin = (cpu.sbase[CS] + eip) & 0xFFFFFFFF
        debug = cpu.debug
        if debug is not None and lin >> 12 in debug.pages:
            return None                       # stepped, each instruction checked for a breakpoint
        try:
            p = cpu.translate(lin, 0, cpu.user) if cpu.pg else lin
        except CpuFault:
            return None                       # the interpreter raises it, with this EIP
        key = (p, eip, self.mode)
        b = self.blocks.get(key)
        if b is None:
            cold = self.cold.get(key)
            if cold is None:
                cold = self.cold[key] = Cold(cpu, p, eip)
            cold.heat += 1
            if cold.heat < self.hot or target - cpu.instructions < MAX_STEPS:
                # Not hot yet: interpret it. Nor at the end of a slice, where
                # a new trace could not run: each instruction after would
                # become hot in turn and be compiled for nothing.
                return cold
            del self.cold[key]
            b = self.compile(key, p, eip)
            if b is None:
                return None
        elif b.seen != cpu.dev_epoch:
            if cpu.mm[b.lo:b.hi] != b.code:
                self._drop(b)
                return None
            b.seen = cpu.dev_epoch
        self.fast[eip] = b
        self.by_page.setdefault(lin >> 12, []).append((self.fast, eip))
        return b

    # --- compilation ---------------------------------------------------------------
    def compile(self, key, p: int, eip: int):
        cpu = self.cpu
        if p + 0x1000 > cpu.ramsize:
            return None                       # code in MMIO/unbacked space: interpret
        steps = discover(cpu, eip)
        if not steps:
            return None
        if len(self.blocks) >= MAX_TRACES:
            self.clear()
            self._switch_mode()
        pages = self.pages
        env = {"PAR": PARITY, "RD": self.rd_slow, "WR": self.wr_slow, "M8": pages.m8,
               "M16": pages.m16, "M32": pages.m32, "FR": pages.read[cpu.user],
               "FW": pages.write[cpu.user], "CpuFault": CpuFault, "check": check, "Leave": Leave}
        src, env, n = generate(cpu, steps, env, inline)
        exec(_code(src), env)
        b = Block()
        b.fn, b.env, b.n, b.key, b.source = env["trace"], env, n, key, src
        b.page = p >> 12
        page_base = p & ~0xFFF
        sbase = cpu.sbase[CS]
        offs = [((sbase + s.eip) & 0xFFF, s.ins.length) for s in steps]
        b.lo = page_base + min(o for o, _ in offs)
        b.hi = page_base + max(o + k for o, k in offs)
        b.code = bytes(cpu.mm[b.lo:b.hi])
        b.seen = cpu.dev_epoch
        self.blocks[key] = b
        self.page_blocks.setdefault(b.page, []).append(key)
        if b.page not in cpu.code_pages:
            cpu.code_pages.add(b.page)
            pages.forget_writes()             # no fast write may reach this page now
        self.compiled += 1
        return b
