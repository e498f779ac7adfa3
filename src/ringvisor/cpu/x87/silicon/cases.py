"""Hypothesis strategies for x87 difftest cases: start states, operands and
instruction sequences, weighted towards what breaks FPUs (denormals,
pseudo-denormals, unnormals, NaNs, infinities, rounding ties, the exponent
boundaries, every PC/RC setting, unmasked exceptions, stack faults)."""
from __future__ import annotations

import struct

from hypothesis import strategies as st

from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.silicon.runner import Case
from ringvisor.cpu.x87.table import TABLE

SIG = f80.SIG_MASK
ENV_KEYS = {0xD9 << 8 | 4 << 3, 0xD9 << 8 | 6 << 3, 0xDD << 8 | 4 << 3, 0xDD << 8 | 6 << 3}


def _raw(sign, exp, sig):
    return sign << 79 | exp << 64 | sig


significands = st.one_of(
    st.integers(0, SIG),
    st.integers(0, SIG).map(lambda s: s | f80.INT_BIT),
    st.sampled_from([f80.INT_BIT, SIG, f80.INT_BIT | 1, f80.INT_BIT | f80.QUIET_BIT,
                     f80.INT_BIT | 1 << 39, f80.INT_BIT | 1 << 10, f80.INT_BIT | 0x400,
                     f80.INT_BIT | 0xFFFFFFFFFF, f80.INT_BIT | 0x8000000000,
                     f80.INT_BIT | 0x7FF, f80.INT_BIT | 0x3FF, (1 << 64) - 0x800]),
    # ties and near-ties at 24, 53 and 64 bits
    st.builds(lambda hi, cut, low: f80.INT_BIT | hi << cut | low,
              st.integers(0, (1 << 23) - 1), st.sampled_from([40, 11]),
              st.sampled_from([0, 1, 0x3FF, 0x400, 0x401, 0x7FF, 1 << 39, (1 << 39) + 1, (1 << 39) - 1])),
)
exponents = st.one_of(
    st.integers(0, f80.EXP_MAX),
    st.sampled_from([0, 1, 2, 0x7FFE, 0x7FFD, 0x7FFF, f80.BIAS, f80.BIAS + 1, f80.BIAS - 1,
                     f80.BIAS + 63, f80.BIAS + 62, f80.BIAS + 64, f80.BIAS + 15, f80.BIAS + 31,
                     f80.BIAS + 59, f80.BIAS + 60, 0x3F81, 0x3F80, 0x3C01, 0x3C00, 0x407E,
                     0x407F, 0x43FE, 0x43FF, 0x3F6A, 0x3BCD]),
    st.integers(f80.BIAS - 80, f80.BIAS + 80),
)
values = st.one_of(
    st.builds(_raw, st.integers(0, 1), exponents, significands),
    st.sampled_from([0, f80.SIGN, f80.ONE, f80.ONE | f80.SIGN, f80.POS_INF, f80.POS_INF | f80.SIGN,
                     f80.INDEFINITE, f80.INDEFINITE ^ f80.SIGN, _raw(0, 0x7FFF, f80.INT_BIT | 1),
                     _raw(0, 0x7FFF, 1), _raw(0, 0x7FFF, 0), _raw(0, 0, 1), _raw(0, 0, f80.INT_BIT),
                     _raw(0, 0x3FFF, 0x4000000000000000), _raw(1, 0x4000, f80.INT_BIT)]),
    st.integers(-2**20, 2**20).map(lambda n: f80.pack(int(n < 0), abs(n), 0) if n else 0),
)


memory_values = st.one_of(
    values.map(lambda r: r.to_bytes(10, "little")),
    st.integers(0, (1 << 64) - 1).map(lambda v: v.to_bytes(8, "little") + b"\0\0"),
    st.integers(0, (1 << 32) - 1).map(lambda v: v.to_bytes(4, "little") + bytes(6)),
    st.sampled_from([0x7F800001, 0x7FC00000, 0x00000001, 0x00800000, 0x80000000, 0xFF800000,
                     0x7F7FFFFF, 0x007FFFFF]).map(lambda v: v.to_bytes(4, "little") + bytes(6)),
    st.sampled_from([0x7FF0000000000001, 0x0000000000000001, 0x8000000000000000,
                     0x7FEFFFFFFFFFFFFF, 0x000FFFFFFFFFFFFF, 0x7FF8000000000000])
    .map(lambda v: v.to_bytes(8, "little") + b"\0\0"),
    st.integers(-2**15, 2**15 - 1).map(lambda v: (v & 0xFFFF).to_bytes(2, "little") + bytes(8)),
    st.tuples(st.lists(st.integers(0, 9), min_size=18, max_size=18), st.integers(0, 1))
    .map(lambda t: (sum(d << (4 * i) for i, d in enumerate(t[0])) | t[1] << 79).to_bytes(10, "little")),
)

control_words = st.builds(
    lambda masks, pc, rc, extra: masks | pc << 8 | rc << 10 | extra,
    st.one_of(st.just(0x3F), st.integers(0, 0x3F), st.sampled_from([0x3E, 0x3D, 0x3B, 0x37, 0x2F, 0x1F])),
    st.sampled_from([3, 3, 0, 2, 1]), st.integers(0, 3), st.sampled_from([0x40, 0x40, 0, 0x1040, 0xE0C0]))

# D9 D8+i is FSTP1 on Intel's P6 (an FSTP alias) but FSTPNCE on AMD, which
# skips the stack-fault check: the two vendors differ, so it is not drawn.
KEYS = sorted(key for key in TABLE if not 0xD9D8 <= key <= 0xD9DF)
instructions = st.one_of(
    st.sampled_from(KEYS).flatmap(
        lambda key: st.just((key >> 8, key & 0xFF, False)) if key & 0xFF >= 0xC0 or key not in ENV_KEYS
        else st.booleans().map(lambda o16: (key >> 8, key & 0xFF, o16))),
    st.just((0x9B, 0, False)),
)


def restrict(mnemonics):
    """Draw only the instructions whose mnemonic (first word) is listed."""
    global instructions
    wanted = {m.upper() for m in mnemonics}
    keys = [k for k in KEYS if TABLE[k][3].split()[0] in wanted]
    unknown = wanted - {TABLE[k][3].split()[0] for k in keys}
    if unknown:
        raise ValueError(f"unknown x87 mnemonic(s): {', '.join(sorted(unknown))}")
    instructions = st.sampled_from(keys).map(lambda key: (key >> 8, key & 0xFF, False))


@st.composite
def cases(draw, max_insns=3):
    cw = draw(control_words)
    top = draw(st.integers(0, 7))
    flags = draw(st.one_of(st.just(0), st.integers(0, 0x7F)))
    cond = draw(st.sampled_from([0, 0x4700, 0x0100, 0x4000]))
    sw = flags | cond | top << 11
    valid = draw(st.one_of(st.just(0xFF), st.just(0), st.integers(0, 0xFF)))
    regs = [draw(values) for _ in range(8)]
    tags = 0
    for i in range(8):
        tags |= (0 if valid >> i & 1 else 3) << (2 * i)
    image = bytearray(108)
    struct.pack_into("<III", image, 0, cw | 0xFFFF0000, sw | 0xFFFF0000, tags | 0xFFFF0000)
    for i in range(8):
        image[28 + 10 * i:38 + 10 * i] = regs[(top + i) & 7].to_bytes(10, "little")
    memory = bytearray(draw(memory_values) + draw(st.binary(max_size=98)))
    memory += bytes(512 - len(memory))
    insns = draw(st.lists(instructions, min_size=1, max_size=max_insns))
    eflags = draw(st.integers(0, 0x8D5)) & 0x8D5
    return Case(bytes(image), insns, bytes(memory), eflags)
