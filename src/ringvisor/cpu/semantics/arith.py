"""Binary arithmetic (SDM vol. 1 7.3.2): ADD ADC SUB SBB CMP INC DEC NEG,
MUL IMUL DIV IDIV (#DE), decimal adjust (DAA DAS AAA AAS AAM AAD), sign
extension (CBW/CWDE, CWD/CDQ), exchange-and-add and compare-and-exchange."""
from __future__ import annotations

from ringvisor.cpu import flags as FL
from ringvisor.cpu.core import AF, CF, DE, OF, SF, ZF, CpuFault
from ringvisor.cpu.flags import MASK, NSTATUS, PARITY, SIGN, szp
from ringvisor.cpu.isa.operands import get_for_update as RMW
from ringvisor.cpu.semantics.registry import register, sem


def _binop(kind):
    if kind == "ADD":
        def fn(cpu, ins):
            ins.wb0(cpu, ins, FL.add(cpu, RMW(cpu, ins), ins.g1(cpu, ins), 0, ins.w))
    elif kind == "ADC":
        def fn(cpu, ins):
            ins.wb0(cpu, ins, FL.add(cpu, RMW(cpu, ins), ins.g1(cpu, ins), cpu.flags & 1, ins.w))
    elif kind == "SUB":
        def fn(cpu, ins):
            ins.wb0(cpu, ins, FL.sub(cpu, RMW(cpu, ins), ins.g1(cpu, ins), 0, ins.w))
    elif kind == "SBB":
        def fn(cpu, ins):
            ins.wb0(cpu, ins, FL.sub(cpu, RMW(cpu, ins), ins.g1(cpu, ins), cpu.flags & 1, ins.w))
    elif kind == "CMP":
        def fn(cpu, ins):
            FL.sub(cpu, ins.g0(cpu, ins), ins.g1(cpu, ins), 0, ins.w)
    elif kind == "AND":
        def fn(cpu, ins):
            ins.wb0(cpu, ins, FL.logic(cpu, RMW(cpu, ins) & ins.g1(cpu, ins), ins.w))
    elif kind == "OR":
        def fn(cpu, ins):
            ins.wb0(cpu, ins, FL.logic(cpu, RMW(cpu, ins) | ins.g1(cpu, ins), ins.w))
    elif kind == "XOR":
        def fn(cpu, ins):
            ins.wb0(cpu, ins, FL.logic(cpu, RMW(cpu, ins) ^ ins.g1(cpu, ins), ins.w))
    elif kind == "TEST":
        def fn(cpu, ins):
            FL.logic(cpu, ins.g0(cpu, ins) & ins.g1(cpu, ins), ins.w)
    fn.__name__ = kind.lower()
    return fn


for _k in ("ADD", "ADC", "SUB", "SBB", "CMP", "AND", "OR", "XOR", "TEST"):
    register(_k, _binop(_k))


@sem("INC")
def inc(cpu, ins):
    c = cpu.flags & CF
    ins.wb0(cpu, ins, FL.add(cpu, RMW(cpu, ins), 1, 0, ins.w))
    cpu.flags = (cpu.flags & ~CF) | c


@sem("DEC")
def dec(cpu, ins):
    c = cpu.flags & CF
    ins.wb0(cpu, ins, FL.sub(cpu, RMW(cpu, ins), 1, 0, ins.w))
    cpu.flags = (cpu.flags & ~CF) | c


@sem("NEG")
def neg(cpu, ins):
    ins.wb0(cpu, ins, FL.sub(cpu, 0, RMW(cpu, ins), 0, ins.w))


@sem("NOT")
def not_(cpu, ins):
    ins.wb0(cpu, ins, ~ins.g0(cpu, ins) & MASK[ins.w])


# --- multiply and divide --------------------------------------------------------
def _acc_get(cpu, w):
    r = cpu.r
    if w == 1:
        return r[0] & 0xFF, 0
    if w == 2:
        return r[0] & 0xFFFF, r[2] & 0xFFFF
    return r[0], r[2]


def _acc_set(cpu, w, lo, hi):
    r = cpu.r
    if w == 1:
        r[0] = (r[0] & 0xFFFF0000) | (hi & 0xFF) << 8 | (lo & 0xFF)
    elif w == 2:
        r[0] = (r[0] & 0xFFFF0000) | (lo & 0xFFFF)
        r[2] = (r[2] & 0xFFFF0000) | (hi & 0xFFFF)
    else:
        r[0], r[2] = lo & 0xFFFFFFFF, hi & 0xFFFFFFFF


def _mul_flags(cpu, lo, w, overflow):
    # CF = OF = upper half significant; SF ZF PF from the low half (the SDM
    # leaves them undefined), AF cleared.
    f = (cpu.flags & NSTATUS) | szp(lo & MASK[w], w)
    if overflow:
        f |= CF | OF
    cpu.flags = f


def _signed(v, w):
    return v - (1 << (8 * w)) if v & SIGN[w] else v


@sem("MUL")
def mul(cpu, ins):
    w = ins.w
    a, _ = _acc_get(cpu, w)
    p = a * ins.g0(cpu, ins)
    hi = p >> (8 * w)
    _acc_set(cpu, w, p, hi)
    _mul_flags(cpu, p, w, hi != 0)


@sem("IMUL")
def imul(cpu, ins):
    w = ins.w
    nops = len(ins.row.operands)
    if nops == 1:
        a, _ = _acc_get(cpu, w)
        p = _signed(a, w) * _signed(ins.g0(cpu, ins), w)
        _acc_set(cpu, w, p, p >> (8 * w))
    else:
        if nops == 2:
            x, y = ins.g0(cpu, ins), ins.g1(cpu, ins)
        else:
            x, y = ins.g1(cpu, ins), ins.g2(cpu, ins)
        p = _signed(x, w) * _signed(y & MASK[w], w)
        ins.s0(cpu, ins, p & MASK[w])
    _mul_flags(cpu, p, w, p != _signed(p & MASK[w], w))


@sem("DIV")
def div(cpu, ins):
    w = ins.w
    d = ins.g0(cpu, ins)
    lo, hi = _acc_get(cpu, w)
    n = cpu.r[0] & 0xFFFF if w == 1 else hi << (8 * w) | lo
    if d == 0:
        raise CpuFault(DE)
    q, rem = divmod(n, d)
    if q > MASK[w]:
        raise CpuFault(DE)
    _acc_set(cpu, w, q, rem)


@sem("IDIV")
def idiv(cpu, ins):
    w = ins.w
    d = _signed(ins.g0(cpu, ins), w)
    lo, hi = _acc_get(cpu, w)
    bits = 8 * w
    n = cpu.r[0] & 0xFFFF if w == 1 else (hi << bits | lo)
    n = n - (1 << (2 * bits)) if n >> (2 * bits - 1) else n
    if d == 0:
        raise CpuFault(DE)
    q = abs(n) // abs(d)
    if (n < 0) != (d < 0):
        q = -q
    rem = n - q * d
    if not -(1 << (bits - 1)) <= q < (1 << (bits - 1)):
        raise CpuFault(DE)
    _acc_set(cpu, w, q, rem)


# --- decimal adjust ----------------------------------------------------------------
def _set_szp8(cpu, al, keep):
    cpu.flags = (cpu.flags & ~(SF | ZF | 4)) | szp(al, 1) | keep


@sem("DAA")
def daa(cpu, ins):
    al = cpu.r[0] & 0xFF
    f = cpu.flags
    old_al, old_cf = al, f & CF
    cf = af = 0
    if (al & 0xF) > 9 or f & AF:
        al += 6
        cf = old_cf or al > 0xFF
        af = AF
        al &= 0xFF
    if old_al > 0x99 or old_cf:
        al = (al + 0x60) & 0xFF
        cf = 1
    cpu.r[0] = (cpu.r[0] & ~0xFF) | al
    # OF is undefined; silicon computes it like the addition it performs.
    of = OF if (~old_al & al & 0x80) else 0
    cpu.flags = (f & NSTATUS) | szp(al, 1) | (CF if cf else 0) | af | of


@sem("DAS")
def das(cpu, ins):
    al = cpu.r[0] & 0xFF
    f = cpu.flags
    old_al, old_cf = al, f & CF
    cf = af = 0
    if (al & 0xF) > 9 or f & AF:
        cf = old_cf or al < 6
        al = (al - 6) & 0xFF
        af = AF
    if old_al > 0x99 or old_cf:
        al = (al - 0x60) & 0xFF
        cf = 1
    cpu.r[0] = (cpu.r[0] & ~0xFF) | al
    of = OF if (old_al & ~al & 0x80) else 0
    cpu.flags = (f & NSTATUS) | szp(al, 1) | (CF if cf else 0) | af | of


@sem("AAA")
def aaa(cpu, ins):
    r = cpu.r
    ax = r[0] & 0xFFFF
    f = cpu.flags & NSTATUS
    if (ax & 0xF) > 9 or cpu.flags & AF:
        ax = (ax + 0x106) & 0xFFFF
        f |= AF | CF
    ax &= 0xFF0F
    r[0] = (r[0] & 0xFFFF0000) | ax
    cpu.flags = f | szp(ax & 0xFF, 1)


@sem("AAS")
def aas(cpu, ins):
    r = cpu.r
    ax = r[0] & 0xFFFF
    f = cpu.flags & NSTATUS
    if (ax & 0xF) > 9 or cpu.flags & AF:
        # IA-32 form (SDM AAS): AX <- AX - 6 (borrowing into AH), then AH <- AH - 1.
        ax = (ax - 6) & 0xFFFF
        ax = (((ax >> 8) - 1) & 0xFF) << 8 | (ax & 0xFF)
        f |= AF | CF
    ax &= 0xFF0F
    r[0] = (r[0] & 0xFFFF0000) | ax
    cpu.flags = f | szp(ax & 0xFF, 1)


@sem("AAM")
def aam(cpu, ins):
    base = ins.imm & 0xFF
    if base == 0:
        raise CpuFault(DE)
    al = cpu.r[0] & 0xFF
    ah, al = divmod(al, base)
    cpu.r[0] = (cpu.r[0] & 0xFFFF0000) | ah << 8 | al
    cpu.flags = (cpu.flags & NSTATUS) | szp(al, 1)


@sem("AAD")
def aad(cpu, ins):
    r = cpu.r
    al, ah = r[0] & 0xFF, (r[0] >> 8) & 0xFF
    # Computed as the byte addition AL + AH*imm, whose flags silicon leaves.
    FL.add(cpu, al, (ah * (ins.imm & 0xFF)) & 0xFF, 0, 1)
    res = (al + ah * (ins.imm & 0xFF)) & 0xFF
    r[0] = (r[0] & 0xFFFF0000) | res


@sem("CBW")
def cbw(cpu, ins):
    r = cpu.r
    if ins.osz == 2:
        al = r[0] & 0xFF
        r[0] = (r[0] & 0xFFFF0000) | ((al | 0xFF00) if al & 0x80 else al)
    else:
        ax = r[0] & 0xFFFF
        r[0] = (ax | 0xFFFF0000) if ax & 0x8000 else ax


@sem("CWD")
def cwd(cpu, ins):
    r = cpu.r
    if ins.osz == 2:
        r[2] = (r[2] & 0xFFFF0000) | (0xFFFF if r[0] & 0x8000 else 0)
    else:
        r[2] = 0xFFFFFFFF if r[0] & 0x80000000 else 0


@sem("XADD")
def xadd(cpu, ins):
    d = RMW(cpu, ins)
    s = ins.g1(cpu, ins)
    t = FL.add(cpu, d, s, 0, ins.w)
    if ins.mem:
        ins.wb0(cpu, ins, t)
        ins.s1(cpu, ins, d)
    else:
        ins.s1(cpu, ins, d)
        ins.wb0(cpu, ins, t)


@sem("CMPXCHG")
def cmpxchg(cpu, ins):
    w = ins.w
    d = RMW(cpu, ins)            # always written, even when not equal
    acc = cpu.r[0] & MASK[w]
    FL.sub(cpu, acc, d, 0, w)
    if acc == d:
        ins.wb0(cpu, ins, ins.g1(cpu, ins))
    else:
        if ins.mem:
            ins.wb0(cpu, ins, d)      # the processor always writes the destination
        from ringvisor.cpu.isa.operands import reg_set
        reg_set(cpu, w, 0, d)


@sem("CMPXCHG8B")
def cmpxchg8b(cpu, ins):
    r = cpu.r
    m = ins.g0(cpu, ins)
    if m == (r[2] << 32 | r[0]):
        ins.wb0(cpu, ins, r[1] << 32 | r[3])
        cpu.flags |= ZF
    else:
        ins.wb0(cpu, ins, m)
        r[0], r[2] = m & 0xFFFFFFFF, m >> 32
        cpu.flags &= ~ZF


_ = PARITY
