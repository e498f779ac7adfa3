"""Generating one Python function per trace.

`trace(cpu, target, eax … edi, f, ic)`: the caller passes the state in
(between traces it lives in the dispatcher's locals) and the guest
registers stay Python locals for the whole trace; flags are lazy
(lazyflags.py); `ic` is the retired-instruction count at the start of the
current straight-line segment, `off` (static) the instructions of the
segment so far. A branch out of the trace returns (eip, count, eflags,
eax … edi). Before a handler call the state is written to the CPU object
(the handler sees `cpu.r`, `cpu.flags`, `cpu.eip`, `cpu.instructions`
exactly as on the interpreter) and reloaded after.

Rare exits (a write hit compiled code, the budget or an interrupt between
loop iterations, a handler changed EIP) raise `Leave`; each source line has
a tag (`LINES`) saying what the state is there, and recover.py rebuilds it
from the frame's locals. Faults work the same way: each instruction does
everything that can fault before it assigns any register local, and
producer temporaries are named after their instruction, so at a fault the
locals hold the state at the start of the faulting instruction; no
per-instruction bookkeeping runs on the fast path. A fault inside a handler
call leaves the CPU state as the handler left it (as on the interpreter).

Loops (structure.py) run as `while True:` with the instruction budget and
the interrupt line (when IF=1) checked between iterations: on entering the
loop and on every back edge, where the flags of that path are known.
"""
from __future__ import annotations

from ringvisor.cpu.compiler.lazyflags import Dyn, FlagState, render
from ringvisor.cpu.compiler.structure import Loop, structure
from ringvisor.cpu.compiler.trace import BACK, DYN, EXIT, FWD, NEXT

REGS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
ALL_REGS = ", ".join(REGS)
MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
# Line tags (what recover.py does when a line raises):
FAULT = "fault"        # ("fault", step): roll back to the start of that instruction
HANDLER = "handler"    # ("handler",): a handler call, the CPU state is already synced
LEAVE = "leave"        # ("leave", eip or None for `v`, off, FlagState): exit here
SYNCED = "synced"      # ("synced", off): exit, state synced by a handler


class Leave(Exception):
    """A rare exit from generated code (see LEAVE)."""


class Merge:
    """A point where paths join: a Dyn merge if flags are live there."""
    __slots__ = ("dyn", "live")

    def __init__(self, gen, live: bool):
        self.live = live
        self.dyn = gen.new_dyn() if live else None

    def state(self) -> FlagState:
        return FlagState(self.dyn) if self.dyn else FlagState()


class Gen:
    def __init__(self, cpu, steps, env, templates):
        self.cpu = cpu
        self.steps = steps
        self.env = env
        self.templates = templates     # inline.py: TEMPLATES, effects()
        self.lines: list[tuple[int, str, object]] = []
        self.ind = 1
        self.tag = None
        self.state = FlagState()
        self.off = 0
        self.dyns: dict[int, Dyn] = {}
        self.selectors: list = []      # edge tokens: (Dyn, value)
        self.at: dict[int, tuple] = {}  # step -> (off, FlagState) at its start
        self.loops: list = []          # innermost last: (Loop, head Merge, exit Merge|None)
        self.stack32 = cpu.stack32
        self.cs_limit = cpu.shi[1]
        self.has_loops = False
        self.addr = "x"                # the current memory operand's offset (inline.address)

    # --- emission ---------------------------------------------------------------------
    def emit(self, *lines: str) -> None:
        for ln in lines:
            self.lines.append((self.ind, ln, self.tag))

    def block(self, head: str, body) -> None:
        self.emit(head)
        self.ind += 1
        body()
        self.ind -= 1

    def new_dyn(self) -> Dyn:
        d = Dyn(len(self.dyns))
        self.dyns[d.n] = d
        return d

    def flush(self) -> None:
        if self.off:
            self.emit(f"ic += {self.off}")
            self.off = 0

    def edge(self, merge: Merge, state: FlagState | None = None) -> None:
        """This path goes on to `merge` carrying `state` (default: now)."""
        if merge.dyn is None:
            return
        state = state or self.state
        if isinstance(state.base, Dyn) and not (state.base is merge.dyn and not state.layers):
            # A merge's inputs never rest on another merge (that would nest
            # their expressions, or make one depend on itself): this path's
            # flags go to `f`. Rare: a full flag write in between resets the base.
            e = state.materialize()
            if e != "f":
                self.emit(f"f = {e}")
            state = FlagState()
        v = merge.dyn.add(state)
        if v is not None:
            self.selectors.append((merge.dyn, v))
            self.emit(f"«s{len(self.selectors) - 1}»")

    # --- registers ----------------------------------------------------------------------
    def rget(self, w: int, i: int) -> str:
        if w == 4:
            return REGS[i]
        if w == 2:
            return f"({REGS[i]} & 0xFFFF)"
        if i < 4:
            return f"({REGS[i]} & 0xFF)"
        return f"(({REGS[i - 4]} >> 8) & 0xFF)"

    def rset(self, w: int, i: int, v: str) -> str:
        """A statement giving register (w, i) the masked value `v`."""
        if w == 4:
            return f"{REGS[i]} = {v}"
        if w == 2:
            return f"{REGS[i]} = ({REGS[i]} & 0xFFFF0000) | ({v})"
        if i < 4:
            return f"{REGS[i]} = ({REGS[i]} & 0xFFFFFF00) | ({v})"
        return f"{REGS[i - 4]} = ({REGS[i - 4]} & 0xFFFF00FF) | (({v}) << 8)"

    # --- exits ----------------------------------------------------------------------------
    def exit(self, eip: str, off: int | None = None, state: FlagState | None = None) -> None:
        off = self.off if off is None else off
        state = state or self.state
        self.emit(f"return {eip}, ic + {off}, {state.materialize()}, {ALL_REGS}")

    def leave(self, test: str, eip, off: int, state: FlagState | None = None) -> None:
        """`if test: raise Leave()`, leaving at eip (None: local `v`)."""
        tag, self.tag = self.tag, (LEAVE, eip, off, state or self.state)
        self.emit(f"if {test}: raise Leave()")
        self.tag = tag

    def goto(self, flow, s) -> None:
        """Code for taking `flow` from step s (its instructions counted)."""
        kind = flow[0]
        if kind == EXIT:
            self.exit(str(flow[1]))
        elif kind == BACK:
            assert self.loops[-1][0].head == flow[1]
            self.back_edge()
        elif kind == FWD:                              # a break out of the innermost loop
            self.flush()
            self.leave_loop()
        elif kind == DYN:
            self.exit("v")
        else:
            raise AssertionError(flow)

    def back_edge(self) -> None:
        """Go round the innermost loop: the budget and the interrupt line are
        checked here, between two iterations, with this path's own flags."""
        lp, head, _ = self.loops[-1]
        self.flush()
        self.check_budget(lp)
        self.edge(head)
        self.emit("continue")

    def check_budget(self, lp) -> None:
        self.leave(f"ic > lim{lp.head} or pend and pend()", self.steps[lp.head].eip, 0)

    def leave_loop(self) -> None:
        i = len(self.loops) - 1
        lp, head, out = self.loops[i]
        if out is None:
            out = Merge(self, self.live_from(lp.end + 1))
            self.loops[i] = (lp, head, out)
        self.edge(out)
        self.emit("break")

    # --- flag liveness --------------------------------------------------------------------
    def live_from(self, p: int, at_head: bool = False) -> bool:
        """Whether the flags at the start of step p can be read (by a
        consumer, an exit or a fault) before every flag is overwritten.
        (`at_head`: p is a loop head whose budget check is already done.)"""
        for s in self.steps[p:]:
            if s.index in self.heads and not (at_head and s.index == p):
                return True               # the budget/interrupt exit entering a loop
            reads, kills, faults = self.templates.effects(self, s)
            if reads or faults:
                return True
            if kills:
                return False
            if s.other is not None or s.cont[0] != NEXT:
                return True
        return True

    def live_after(self, s) -> bool:
        """Whether the flags step s sets can be read before all are overwritten."""
        if s.cont[0] != NEXT or s.other is not None or s.index + 1 >= len(self.steps):
            return True
        return self.live_from(s.index + 1)

    # --- the walk -----------------------------------------------------------------------------
    def generate(self, tree) -> None:
        self.nodes(tree)

    def nodes(self, nodes) -> None:
        for n in nodes:
            if isinstance(n, int):
                self.step(self.steps[n], None)
            elif isinstance(n, Loop):
                self.loop(n)
            else:
                self.step(self.steps[n.branch], n)

    def loop(self, lp: Loop) -> None:
        self.has_loops = True
        self.flush()
        self.emit(f"lim{lp.head} = target - {self.lengths[lp.head]}")
        self.check_budget(lp)
        head = Merge(self, self.live_from(lp.head, at_head=True))
        self.edge(head)
        self.loops.append((lp, head, None))
        self.emit("while True:")
        self.ind += 1
        self.state = head.state()
        self.nodes(lp.body)
        self.ind -= 1
        _, _, out = self.loops.pop()
        self.state = out.state() if out is not None else FlagState()
        self.off = 0

    def step(self, s, skip) -> None:
        k = s.index
        self.tag = (FAULT, k)
        self.at[k] = (self.off, self.state)
        cond = None
        if s.kind in self.templates.CONTROL:
            cond = self.templates.control(self, s)
        elif s.kind == "end" or not self.templates.emit(self, s):
            if self.handler(s):
                self.tag = None
                return                             # a block end: the handler decides
        self.tag = None
        self.off += 1
        if s.kind == "jcc":
            self.flush()
            if skip is not None:
                self.skip(cond, skip)
            else:
                other = s.other
                lp = self.loops[-1][0] if self.loops else None
                if other[0] == BACK and lp is not None and lp.end == k and s.cont[0] == NEXT:
                    # The loop's closing branch: go round while taken, else leave.
                    self.block(f"if {cond}:", self.back_edge)
                    self.leave_loop()
                    return
                self.block(f"if {cond}:", lambda: self.goto(other, s))
        cont = s.cont
        if cont[0] == NEXT:
            lp = self.loops[-1][0] if self.loops else None
            if lp is not None and lp.end == k:
                self.flush()
                self.leave_loop()
        else:
            self.goto(cont, s)

    def skip(self, cond: str, sk) -> None:
        merge = Merge(self, self.live_from(sk.to))
        before = self.state
        self.emit(f"if {cond}:")
        self.ind += 1
        n = len(self.lines)
        self.edge(merge, before)
        if len(self.lines) == n:
            self.emit("pass")
        self.ind -= 1
        self.emit("else:")
        self.ind += 1
        n = len(self.lines)
        self.nodes(sk.body)
        self.flush()
        self.edge(merge)
        if len(self.lines) == n:
            self.emit("pass")
        self.ind -= 1
        self.state = merge.state()

    # --- handler calls ------------------------------------------------------------------
    def handler(self, s) -> bool:
        """Call the table handler; True if the trace ends here."""
        k = s.index
        ins = s.ins
        if ins.ud or ins.row is None or ins.row.handler is None:
            self.emit("raise CpuFault(6)")
            return True
        self.env[f"i{k}"] = ins
        self.env[f"h{k}"] = ins.row.handler
        self.emit(f"r[:] = {ALL_REGS}", f"cpu.flags = {self.state.materialize()}",
                  f"cpu.cur_eip = {s.eip}; cpu.cur_esp = esp; cpu.eip = {s.nxt}; "
                  f"cpu.instructions = ic + {self.off}")
        self.tag = (HANDLER,)
        if ins.flags & self.templates.CHECKED:
            self.emit(f"check(cpu, i{k})")
        self.emit(f"h{k}(cpu, i{k})")
        self.tag = None
        if s.kind == "end":
            # Port I/O may let a device write guest memory: recheck code bytes.
            self.emit("cpu.dev_epoch += 1", f"cpu.instructions = ic + {self.off + 1}", "return")
            return True
        self.emit(f"{ALL_REGS} = r", "f = cpu.flags")
        self.tag = (SYNCED, self.off + 1)
        self.emit(f"if cpu.smc or cpu.eip != {s.nxt}: raise Leave()")
        self.tag = None
        self.state = FlagState()
        return False

    # --- the function ----------------------------------------------------------------------
    def source(self) -> tuple[str, dict]:
        """Assemble the function, render the tokens; LINES: line -> tag."""
        sel = [f"fs{d.n} = {v}" if len(d.alts) > 1 else "pass" for d, v in self.selectors]
        out = [f"def trace(cpu, target, {ALL_REGS}, f, ic):", " r = cpu.r", " sm = False"]
        if self.has_loops:
            out.append(" intr = cpu.interrupts")
            out.append(" pend = intr.pending if intr is not None and f & 0x200 else None")
        lines = {}
        resolved = {}
        for ind, text, tag in self.lines:
            if "«" in text:
                text = sel[int(text[2:-1])] if text.startswith("«s") else render(text, self.dyns)
            if tag is not None:
                r = resolved.get(id(tag))
                if r is None:
                    r = resolved[id(tag)] = self._resolve(tag)
                lines[len(out) + 1] = r
            out.append(" " * ind + text)
        self.env["LINES"] = lines
        self.env["DYNS"] = self.dyns
        return "\n".join(out) + "\n", self.env

    def _resolve(self, tag):
        """A line tag as recover.py reads it (the FlagState is rendered there, if ever)."""
        if tag[0] == FAULT:
            k = tag[1]
            off, st = self.at[k]
            return (FAULT, self.steps[k].eip, off, st)
        return tag


def generate(cpu, steps, env, templates):
    """(source, env, entry length) of the function for `steps`."""
    tree = structure(steps)
    g = Gen(cpu, steps, env, templates)
    g.lengths, g.heads = lengths(steps, tree)
    g.generate(tree)
    src, env = g.source()
    return src, env, g.lengths[0]


def lengths(steps, tree) -> tuple[list[int], set[int]]:
    """Per step: the most instructions that can retire from it before the
    next budget check (a loop head) or the end of the trace; and the heads."""
    heads = set()

    def collect(nodes):
        for n in nodes:
            if isinstance(n, Loop):
                heads.add(n.head)
                collect(n.body)
            elif not isinstance(n, int):
                collect(n.body)
    collect(tree)
    n = len(steps)
    out = [0] * n
    for i in range(n - 1, -1, -1):
        s = steps[i]
        best = 0
        for flow in (s.other, s.cont):
            if flow is None:
                continue
            j = i + 1 if flow[0] == NEXT else flow[1] if flow[0] == FWD else None
            if j is not None and j < n and j not in heads:
                best = max(best, out[j])
        out[i] = 1 + best
    return out, heads
