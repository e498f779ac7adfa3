"""Lazy arithmetic flags for generated code.

Compiled code does not compute EFLAGS after every instruction. It keeps
the operands and the raw result of each flag-producing instruction in
Python locals (a `Producer`), and the compiler tracks statically which
producer owns which status flag at every point (`FlagState`). Flags are
computed only where something reads them: a condition (specialised on the
producer: `cmp a,b; jb` becomes `a < b`), ADC/SBB, a handler call, an
exit, a fault.

Raw results: ADD/SUB keep `t` = a + b (+ carry) or a - b (- borrow) as an
unbounded Python int, so CF = (t >> bits) & 1 for both (Python's shifts of
negative ints are arithmetic), SF/OF/AF read the same bits as of the
masked result.

Where control flow merges (loop heads, the end of a skipped section) the
states of the incoming paths may differ; `Dyn` is such a merge: a local
selector `fsN`, set on every incoming edge, picks the path's state. Its
text is rendered at the end of compilation (the back edges of a loop are
generated after its body) as a `«N»` token.
"""
from __future__ import annotations

STATUS = 0x8D5                   # CF PF AF ZF SF OF
CF, PF, AF, ZF, SF, OF = 1, 4, 0x10, 0x40, 0x80, 0x800
BITS = {1: 8, 2: 16, 4: 32}
MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
SIGN = {1: 0x80, 2: 0x8000, 4: 0x80000000}
EFLAGS_ALL = 0x3FFFFF


def _shift_to(expr: str, frm: int, to: int) -> str:
    """Move bit `frm` of expr to bit `to` (other bits may remain; mask after)."""
    if frm > to:
        return f"({expr} >> {frm - to})"
    if frm < to:
        return f"({expr} << {to - frm})"
    return expr


class Producer:
    """An instruction that set flags: kind, width, operand/result locals.

    kinds: ADD SUB (t raw), LOGIC (t masked), SHL (t raw), SHR (v source,
    t masked, c count), SAR (v sign-extended source, t masked, c), ROL ROR
    (t masked; CF and OF only), MUL (p full signed product, t masked low
    half), BITS (CF and ZF given as 0/1-valued locals)."""
    __slots__ = ("kind", "w", "mask", "a", "b", "t", "v", "c", "borrow")

    def __init__(self, kind, w, mask=STATUS, a="0", b="0", t="0", v="0", c=0, borrow=False):
        self.kind, self.w, self.mask = kind, w, mask
        self.a, self.b, self.t, self.v, self.c = a, b, t, v, c
        self.borrow = borrow                # carry/borrow-in: ADC/SBB (no compare specialisation)

    # One expression per flag, valued 0 or the flag's bit.
    def flag(self, bit: int) -> str:
        k, w, t = self.kind, self.w, self.t
        bits = BITS[w]
        if bit == PF and k not in ("ROL", "ROR", "BITS"):
            return f"PAR[{t} & 0xFF]"
        if bit == ZF and k not in ("ROL", "ROR", "BITS"):
            return f"(0 if {t} & {MASK[w]:#x} else 0x40)"
        if bit == SF and k not in ("ROL", "ROR", "BITS"):
            return f"({_shift_to(t, bits - 1, 7)} & 0x80)"
        if k in ("ADD", "SUB"):
            a, b = self.a, self.b
            if bit == CF:
                return f"(({t} >> {bits}) & 1)"
            if bit == AF:
                return f"(({a} ^ {b} ^ {t}) & 0x10)"
            x = f"(({a} ^ {t}) & ({b} ^ {t}))" if k == "ADD" else f"(({a} ^ {b}) & ({a} ^ {t}))"
            return f"({_shift_to(x, bits - 1, 11)} & 0x800)"
        if k == "LOGIC":
            return "0"
        if k == "SHL":
            if bit == CF:
                return f"(({t} >> {bits}) & 1)"
            if bit == OF:
                return f"(((({t} >> {bits - 1}) ^ ({t} >> {bits})) & 1) << 11)"
            return "0"
        if k == "SHR":
            if bit == CF:
                return f"(({self.v} >> {self.c - 1}) & 1)"
            if bit == OF:
                return f"({_shift_to(self.v, bits - 1, 11)} & 0x800)"
            return "0"
        if k == "SAR":
            if bit == CF:
                return f"(({self.v} >> {self.c - 1}) & 1)"
            return "0"
        if k == "ROL":
            if bit == CF:
                return f"({t} & 1)"
            return f"(((({t} >> {bits - 1}) ^ {t}) & 1) << 11)"
        if k == "ROR":
            if bit == CF:
                return f"(({t} >> {bits - 1}) & 1)"
            return f"(((({t} >> {bits - 1}) ^ ({t} >> {bits - 2})) & 1) << 11)"
        if k == "MUL":
            if bit in (CF, OF):
                return f"(0 if {self.v} == ({t} ^ {SIGN[w]:#x}) - {SIGN[w]:#x} else {bit:#x})"
            return "0"
        if k == "BITS":
            if bit == CF:
                return self.a
            return f"({self.b} << 6)"
        raise AssertionError(k)


class Dyn:
    """A merge of flag states, selected at run time by local `fs<n>`."""
    __slots__ = ("n", "alts")

    def __init__(self, n: int):
        self.n = n
        self.alts: list = []            # FlagState per selector value

    def add(self, state: "FlagState") -> int | None:
        """Register an incoming edge's state; returns the selector value to
        assign on that edge (None: the edge carries this merge itself)."""
        if state.layers == () and state.base is self:
            return None
        for i, s in enumerate(self.alts):
            if s.same(state):
                return i
        self.alts.append(state)
        return len(self.alts) - 1

    def render(self) -> str:
        if not self.alts:
            return "f"
        if len(self.alts) == 1:
            return self.alts[0].materialize()
        expr = self.alts[-1].materialize()
        for i in range(len(self.alts) - 2, -1, -1):
            expr = f"({self.alts[i].materialize()} if fs{self.n} == {i} else {expr})"
        return expr


class FlagState:
    """Which producer owns which status flag; the rest come from `base`
    (the local `f`, or a Dyn merge)."""
    __slots__ = ("base", "layers")

    def __init__(self, base="f", layers=()):
        self.base = base
        self.layers = layers              # tuple of (Producer, owned mask), oldest first

    def same(self, other: "FlagState") -> bool:
        return self.base is other.base and len(self.layers) == len(other.layers) and all(
            p is q and m == n for (p, m), (q, n) in zip(self.layers, other.layers))

    def push(self, p: Producer) -> "FlagState":
        layers = tuple((q, m & ~p.mask) for q, m in self.layers if m & ~p.mask) + ((p, p.mask),)
        covered = 0
        for _, m in layers:
            covered |= m
        # With every status flag owned by a producer, the base gives only the
        # other EFLAGS bits, which only `f` assignments change: the local `f`
        # has them whatever merge the base was.
        return FlagState("f" if covered == STATUS else self.base, layers)

    def base_expr(self) -> str:
        return "f" if self.base == "f" else f"«{self.base.n}»"

    def owner(self, bit: int):
        for p, m in reversed(self.layers):
            if m & bit:
                return p
        return None

    def flag(self, bit: int) -> str:
        p = self.owner(bit)
        return p.flag(bit) if p else f"({self.base_expr()} & {bit:#x})"

    def materialize(self) -> str:
        if not self.layers:
            return self.base_expr()
        covered = 0
        for _, m in self.layers:
            covered |= m
        parts = [f"({self.base_expr()} & {EFLAGS_ALL & ~covered:#x})"]
        for p, m in self.layers:
            for bit in (CF, PF, AF, ZF, SF, OF):
                if m & bit:
                    e = p.flag(bit)
                    if e != "0":
                        parts.append(e)
        return "(" + " | ".join(parts) + ")"

    # --- conditions (tttn) -------------------------------------------------------------
    def cond(self, cc: int) -> str:
        """A Python expression true when condition `cc` holds."""
        e = self._special(cc & 14)
        if e is None:
            e = self._generic(cc & 14)
        if not cc & 1:
            return e
        if e.startswith("(not ") and e.count("(") == 1:
            return f"({e[5:]}"                # not (not x & m) -> (x & m)
        return f"not {e}"

    def _needed(self, k: int) -> tuple:
        return ((OF,), (CF,), (ZF,), (CF, ZF), (SF,), (PF,), (SF, OF), (ZF, SF, OF))[k >> 1]

    def _special(self, k: int):
        need = self._needed(k)
        p = self.owner(need[0])
        if p is None or any(self.owner(b) is not p for b in need):
            return None
        w = p.w
        m, s = MASK[w], SIGN[w]
        if p.kind == "SUB" and not p.borrow and p.mask == STATUS:
            a, b = p.a, p.b
            return {2: f"({a} < {b})", 4: f"({a} == {b})", 6: f"({a} <= {b})",
                    8: f"({p.t} & {s:#x})",
                    12: f"(({a} ^ {s:#x}) < ({b} ^ {s:#x}))",
                    14: f"(({a} ^ {s:#x}) <= ({b} ^ {s:#x}))"}.get(k)
        if p.kind == "LOGIC":
            t = p.t
            return {0: "False", 2: "False", 4: f"({t} == 0)", 6: f"({t} == 0)",
                    8: f"({t} & {s:#x})", 12: f"({t} & {s:#x})",
                    14: f"({t} == 0 or {t} & {s:#x})"}.get(k)
        if p.kind in ("ADD", "SUB"):
            t = p.t
            return {4: f"(not {t} & {m:#x})", 8: f"({t} & {s:#x})"}.get(k)
        return None

    def _generic(self, k: int) -> str:
        if k == 0:
            return self.flag(OF)
        if k == 2:
            return self.flag(CF)
        if k == 4:
            return self.flag(ZF)
        if k == 6:
            return f"({self.flag(CF)} or {self.flag(ZF)})"
        if k == 8:
            return self.flag(SF)
        if k == 10:
            return self.flag(PF)
        lt = f"(({self.flag(SF)} >> 7) != ({self.flag(OF)} >> 11))"
        if k == 12:
            return lt
        return f"({self.flag(ZF)} or {lt})"


def render(text: str, dyns: dict) -> str:
    """Replace every «n» token by its merge's expression (recursively)."""
    while "«" in text:
        i = text.index("«")
        j = text.index("»", i)
        text = text[:i] + dyns[int(text[i + 1:j])].render() + text[j + 1:]
    return text
