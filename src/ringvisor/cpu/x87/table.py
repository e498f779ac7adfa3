"""The x87 opcode map (SDM vol. 2 appendix A.4) as data: one row per encoding,
in Intel mnemonic notation, with its handler and the handler's argument.

Memory forms are keyed by opcode and ModRM.reg, register forms by opcode and
the whole ModRM byte (mod = 11). `KIND` says how the dispatcher treats a row:
  "arith"    a waiting instruction that records FIP/FCS/FOP (and FDP/FDS)
  "control"  a waiting control instruction: pointers untouched (FLDCW, FLDENV, FRSTOR)
  "nowait"   a non-waiting control instruction (FNINIT, FNCLEX, FNSTSW, ...)
The undocumented aliases of P6-class processors (FSTP1, FCOM2, FCOMP3, FXCH4,
FCOMP5, FFREEP, FXCH7, FSTP8, FSTP9, FENI/FDISI/FSETPM as FNOP) are rows too:
silicon executes them.
"""
from __future__ import annotations

from ringvisor.cpu.x87 import basic_arith as ba
from ringvisor.cpu.x87 import compare as cmp
from ringvisor.cpu.x87 import environment as env
from ringvisor.cpu.x87 import load_store as ls
from ringvisor.cpu.x87 import more_arith as ma
from ringvisor.cpu.x87 import transcendental as tr

OPS = ba.OPERATIONS
ARITH_ORDER = ("ADD", "MUL", None, None, "SUB", "SUBR", "DIV", "DIVR")

# (opcode, reg, mnemonic, kind, handler, argument)
MEMORY_FORMS = [
    (0xD9, 0, "FLD m32fp", "arith", ls.fld_memory, ls.M32FP),
    (0xD9, 2, "FST m32fp", "arith", ls.fst_memory, (ls.M32FP, 0)),
    (0xD9, 3, "FSTP m32fp", "arith", ls.fst_memory, (ls.M32FP, 1)),
    (0xD9, 4, "FLDENV m14/28byte", "control", env.fldenv, None),
    (0xD9, 5, "FLDCW m2byte", "control", env.fldcw, None),
    (0xD9, 6, "FNSTENV m14/28byte", "nowait", env.fnstenv, None),
    (0xD9, 7, "FNSTCW m2byte", "nowait", env.fnstcw, None),
    (0xDB, 0, "FILD m32int", "arith", ls.fld_memory, ls.M32INT),
    (0xDB, 2, "FIST m32int", "arith", ls.fst_memory, (ls.M32INT, 0)),
    (0xDB, 3, "FISTP m32int", "arith", ls.fst_memory, (ls.M32INT, 1)),
    (0xDB, 5, "FLD m80fp", "arith", ls.fld_memory, ls.M80FP),
    (0xDB, 7, "FSTP m80fp", "arith", ls.fst_memory, (ls.M80FP, 1)),
    (0xDD, 0, "FLD m64fp", "arith", ls.fld_memory, ls.M64FP),
    (0xDD, 2, "FST m64fp", "arith", ls.fst_memory, (ls.M64FP, 0)),
    (0xDD, 3, "FSTP m64fp", "arith", ls.fst_memory, (ls.M64FP, 1)),
    (0xDD, 4, "FRSTOR m94/108byte", "control", env.frstor, None),
    (0xDD, 6, "FNSAVE m94/108byte", "nowait", env.fnsave, None),
    (0xDD, 7, "FNSTSW m2byte", "nowait", env.fnstsw_memory, None),
    (0xDF, 0, "FILD m16int", "arith", ls.fld_memory, ls.M16INT),
    (0xDF, 2, "FIST m16int", "arith", ls.fst_memory, (ls.M16INT, 0)),
    (0xDF, 3, "FISTP m16int", "arith", ls.fst_memory, (ls.M16INT, 1)),
    (0xDF, 4, "FBLD m80bcd", "arith", ls.fld_memory, ls.M80BCD),
    (0xDF, 5, "FILD m64int", "arith", ls.fld_memory, ls.M64INT),
    (0xDF, 6, "FBSTP m80bcd", "arith", ls.fst_memory, (ls.M80BCD, 1)),
    (0xDF, 7, "FISTP m64int", "arith", ls.fst_memory, (ls.M64INT, 1)),
]
# Arithmetic and compares with a memory source: D8 m32fp, DC m64fp, DA m32int, DE m16int.
for _opcode, _fmt, _prefix in ((0xD8, ls.M32FP, "F"), (0xDC, ls.M64FP, "F"),
                               (0xDA, ls.M32INT, "FI"), (0xDE, ls.M16INT, "FI")):
    _name = f"m{_fmt[1] * 8}{'fp' if _fmt[0] == 'fp' else 'int'}"
    for _reg, _op in enumerate(ARITH_ORDER):
        if _op:
            MEMORY_FORMS.append((_opcode, _reg, f"{_prefix}{_op} {_name}", "arith",
                                 ba.arith_memory, (OPS[_op], _fmt)))
    MEMORY_FORMS.append((_opcode, 2, f"{_prefix}COM {_name}", "arith", cmp.fcom_memory, (_fmt, 0)))
    MEMORY_FORMS.append((_opcode, 3, f"{_prefix}COMP {_name}", "arith", cmp.fcom_memory, (_fmt, 1)))

# (opcode, modrm, mnemonic, kind, handler, argument): single encodings ...
REGISTER_FORMS = [
    (0xD9, 0xD0, "FNOP", "arith", env.fnop, None),
    (0xD9, 0xE0, "FCHS", "arith", ba.fchs, None),
    (0xD9, 0xE1, "FABS", "arith", ba.fabs, None),
    (0xD9, 0xE4, "FTST", "arith", cmp.ftst, None),
    (0xD9, 0xE5, "FXAM", "arith", cmp.fxam, None),
    (0xD9, 0xE8, "FLD1", "arith", ls.fld_constant, "1"),
    (0xD9, 0xE9, "FLDL2T", "arith", ls.fld_constant, "L2T"),
    (0xD9, 0xEA, "FLDL2E", "arith", ls.fld_constant, "L2E"),
    (0xD9, 0xEB, "FLDPI", "arith", ls.fld_constant, "PI"),
    (0xD9, 0xEC, "FLDLG2", "arith", ls.fld_constant, "LG2"),
    (0xD9, 0xED, "FLDLN2", "arith", ls.fld_constant, "LN2"),
    (0xD9, 0xEE, "FLDZ", "arith", ls.fld_constant, "Z"),
    (0xD9, 0xF0, "F2XM1", "arith", ba.unary, tr.f2xm1),
    (0xD9, 0xF1, "FYL2X", "arith", tr.fyl2x, False),
    (0xD9, 0xF2, "FPTAN", "arith", tr.fptan, None),
    (0xD9, 0xF3, "FPATAN", "arith", tr.fpatan, None),
    (0xD9, 0xF4, "FXTRACT", "arith", ma.fxtract, None),
    (0xD9, 0xF5, "FPREM1", "arith", ma.fprem, True),
    (0xD9, 0xF6, "FDECSTP", "arith", ls.fincstp, -1),
    (0xD9, 0xF7, "FINCSTP", "arith", ls.fincstp, 1),
    (0xD9, 0xF8, "FPREM", "arith", ma.fprem, False),
    (0xD9, 0xF9, "FYL2XP1", "arith", tr.fyl2x, True),
    (0xD9, 0xFA, "FSQRT", "arith", ba.unary, ba.fsqrt),
    (0xD9, 0xFB, "FSINCOS", "arith", tr.fsincos, None),
    (0xD9, 0xFC, "FRNDINT", "arith", ba.unary, ma.frndint),
    (0xD9, 0xFD, "FSCALE", "arith", ma.fscale, None),
    (0xD9, 0xFE, "FSIN", "arith", tr.fsin_fcos, "sin"),
    (0xD9, 0xFF, "FCOS", "arith", tr.fsin_fcos, "cos"),
    (0xDA, 0xE9, "FUCOMPP", "arith", cmp.fcom_registers, (1, True, 2)),
    (0xDB, 0xE0, "FENI (FNOP on P6)", "nowait", env.fnop, None),
    (0xDB, 0xE1, "FDISI (FNOP on P6)", "nowait", env.fnop, None),
    (0xDB, 0xE2, "FNCLEX", "nowait", env.fnclex, None),
    (0xDB, 0xE3, "FNINIT", "nowait", env.fninit, None),
    (0xDB, 0xE4, "FSETPM (FNOP on P6)", "nowait", env.fnop, None),
    (0xDE, 0xD9, "FCOMPP", "arith", cmp.fcom_registers, (1, False, 2)),
    (0xDF, 0xE0, "FNSTSW AX", "nowait", env.fnstsw_ax, None),
]
# ... and rows with ST(i): (opcode, base, mnemonic with {i}, kind, handler, arg(i)).
_STI_FORMS = [
    (0xD9, 0xC0, "FLD ST({i})", ls.fld_register, lambda i: i),
    (0xD9, 0xC8, "FXCH ST({i})", ls.fxch, lambda i: i),
    (0xD9, 0xD8, "FSTP1 ST({i})", ls.fst_register, lambda i: (i, 1)),
    (0xDA, 0xC0, "FCMOVB ST(0),ST({i})", ls.fcmov, lambda i: ("B", i)),
    (0xDA, 0xC8, "FCMOVE ST(0),ST({i})", ls.fcmov, lambda i: ("E", i)),
    (0xDA, 0xD0, "FCMOVBE ST(0),ST({i})", ls.fcmov, lambda i: ("BE", i)),
    (0xDA, 0xD8, "FCMOVU ST(0),ST({i})", ls.fcmov, lambda i: ("U", i)),
    (0xDB, 0xC0, "FCMOVNB ST(0),ST({i})", ls.fcmov, lambda i: ("NB", i)),
    (0xDB, 0xC8, "FCMOVNE ST(0),ST({i})", ls.fcmov, lambda i: ("NE", i)),
    (0xDB, 0xD0, "FCMOVNBE ST(0),ST({i})", ls.fcmov, lambda i: ("NBE", i)),
    (0xDB, 0xD8, "FCMOVNU ST(0),ST({i})", ls.fcmov, lambda i: ("NU", i)),
    (0xDB, 0xE8, "FUCOMI ST(0),ST({i})", cmp.fcomi, lambda i: (i, True, 0)),
    (0xDB, 0xF0, "FCOMI ST(0),ST({i})", cmp.fcomi, lambda i: (i, False, 0)),
    (0xDC, 0xD0, "FCOM2 ST({i})", cmp.fcom_registers, lambda i: (i, False, 0)),
    (0xDC, 0xD8, "FCOMP3 ST({i})", cmp.fcom_registers, lambda i: (i, False, 1)),
    (0xDD, 0xC0, "FFREE ST({i})", ls.ffree, lambda i: (i, 0)),
    (0xDD, 0xC8, "FXCH4 ST({i})", ls.fxch, lambda i: i),
    (0xDD, 0xD0, "FST ST({i})", ls.fst_register, lambda i: (i, 0)),
    (0xDD, 0xD8, "FSTP ST({i})", ls.fst_register, lambda i: (i, 1)),
    (0xDD, 0xE0, "FUCOM ST({i})", cmp.fcom_registers, lambda i: (i, True, 0)),
    (0xDD, 0xE8, "FUCOMP ST({i})", cmp.fcom_registers, lambda i: (i, True, 1)),
    (0xDE, 0xD0, "FCOMP5 ST({i})", cmp.fcom_registers, lambda i: (i, False, 1)),
    (0xDF, 0xC0, "FFREEP ST({i})", ls.ffree, lambda i: (i, 1)),
    (0xDF, 0xC8, "FXCH7 ST({i})", ls.fxch, lambda i: i),
    (0xDF, 0xD0, "FSTP8 ST({i})", ls.fst_register, lambda i: (i, 1)),
    (0xDF, 0xD8, "FSTP9 ST({i})", ls.fst_register, lambda i: (i, 1)),
    (0xDF, 0xE8, "FUCOMIP ST(0),ST({i})", cmp.fcomi, lambda i: (i, True, 1)),
    (0xDF, 0xF0, "FCOMIP ST(0),ST({i})", cmp.fcomi, lambda i: (i, False, 1)),
    (0xD8, 0xD0, "FCOM ST({i})", cmp.fcom_registers, lambda i: (i, False, 0)),
    (0xD8, 0xD8, "FCOMP ST({i})", cmp.fcom_registers, lambda i: (i, False, 1)),
]
# Two-operand arithmetic: D8 ST(0),ST(i); DC ST(i),ST(0); DE ST(i),ST(0) and pop.
# DC/DE swap SUB/SUBR and DIV/DIVR against D8's order (SDM vol. 2 A.4.2).
for _opcode, _to_sti, _pops, _suffix in ((0xD8, False, 0, ""), (0xDC, True, 0, ""),
                                          (0xDE, True, 1, "P")):
    for _reg, _op in enumerate(ARITH_ORDER):
        if not _op:
            continue
        if _to_sti and _op in ("SUB", "SUBR", "DIV", "DIVR"):
            _op = {"SUB": "SUBR", "SUBR": "SUB", "DIV": "DIVR", "DIVR": "DIV"}[_op]
        _operands = "ST({i}),ST(0)" if _to_sti else "ST(0),ST({i})"
        _STI_FORMS.append((_opcode, 0xC0 | _reg << 3, f"F{_op}{_suffix} {_operands}",
                           ba.arith_registers,
                           (lambda op, t, p: lambda i: (op, i, t, p))(OPS[_op], _to_sti, _pops)))

for _opcode, _base, _name, _handler, _arg in _STI_FORMS:
    for _i in range(8):
        REGISTER_FORMS.append((_opcode, _base + _i, _name.format(i=_i), "arith",
                               _handler, _arg(_i)))

KIND_CODES = {"arith": 0, "control": 1, "nowait": 2}


def build():
    """{key: (handler, argument, kind code, mnemonic)}; key = opcode << 8 | modrm
    for register forms and opcode << 8 | reg << 3 for memory forms."""
    table = {}
    for opcode, reg, name, kind, handler, arg in MEMORY_FORMS:
        key = opcode << 8 | reg << 3
        assert key not in table, name
        table[key] = (handler, arg, KIND_CODES[kind], name)
    for opcode, modrm, name, kind, handler, arg in REGISTER_FORMS:
        key = opcode << 8 | modrm
        assert key not in table, name
        table[key] = (handler, arg, KIND_CODES[kind], name)
    return table


TABLE = build()
