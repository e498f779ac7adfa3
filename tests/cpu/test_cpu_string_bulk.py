"""Repeated string instructions in bulk (cpu/semantics/bulk.py) against the
same instructions done one element at a time (`cpu.watch_memory` forces
that path, which is the interpreter's memory path element by element):
registers, flags, CR2, the exception and every byte of the data area must be
identical, whatever the count, width, direction, address size, overlap,
page boundaries, absent or read-only pages and segment limits. Fixed cases
pin the corners the SDM names; hypothesis covers their combinations."""
from __future__ import annotations

import struct

import pytest

from hypothesis import HealthCheck, given, settings, strategies as st

from cpu_rig import Rig, desc
from ringvisor.cpu_state import Segment
from ringvisor.exits import Fault

DATA = 0x100000                 # the data segment's base (linear = physical: identity paging)
DATA_SIZE = 0x12000             # bytes compared (offsets 0 .. DATA_SIZE-1, beyond the a16 wrap)
SEL = 0x50                      # GDT[10]: the data segment DS and ES use
DF_BIT = 0x400
OPS = {                         # mnemonic -> opcode bytes (operand size comes from a prefix)
    "movs": {1: b"\xa4", 2: b"\x66\xa5", 4: b"\xa5"},
    "stos": {1: b"\xaa", 2: b"\x66\xab", 4: b"\xab"},
    "scas": {1: b"\xae", 2: b"\x66\xaf", 4: b"\xaf"},
    "cmps": {1: b"\xa6", 2: b"\x66\xa7", 4: b"\xa7"},
    "lods": {1: b"\xac", 2: b"\x66\xad", 4: b"\xad"},
}


def program(op: str, w: int, rep: bytes = b"\xf3", a16: bool = False) -> bytes:
    body = OPS[op][w]
    if body[0] == 0x66:
        pre, body = b"\x66", body[1:]
    else:
        pre = b""
    return pre + (b"\x67" if a16 else b"") + rep + body + b"\xf4"


def run(code: bytes, element_by_element: bool, *, limit: int = 0xFFFFF, absent: int | None = None,
        readonly: int | None = None, df: bool = False, blocks: bool = True, budget: int = 1_000_000,
        base: int = DATA, **regs):
    """Run `code` at CPL 0 with DS=ES=the data segment and paging on (page
    `absent` not present, page `readonly` read-only with CR0.WP); returns
    everything the two paths must agree on."""
    rig = Rig(mem_mb=4)
    rig.standard_gdt()
    rig.gdt[10] = desc(DATA, limit, 0x3, g=False)
    rig.flush_gdt()
    rig.write(DATA, bytes((i * 7 + (i >> 8) * 13) & 0xFF for i in range(DATA_SIZE)))
    rig.protected(code, eflags=2 | (DF_BIT if df else 0), **regs)
    rig.identity_paging()
    for page, value in ((absent, 0), (readonly, 1)):
        if page is not None:
            rig.set_pte(DATA + page * 0x1000, (DATA + page * 0x1000) | value)
    rig.enable_paging(wp=True)
    cpu = rig.cpu
    seg = Segment(**{**cpu.segs[3].__dict__})
    seg.selector, seg.base, seg.limit = SEL, base, limit
    cpu.set_seg(3, seg)
    cpu.set_seg(0, seg.copy())
    cpu.watch_memory = element_by_element
    cpu.use_blocks = blocks
    rig.intercept(13, 14)
    exit_ = rig.run(budget)
    fault = (exit_.vector, exit_.error_code, exit_.cr2) if isinstance(exit_, Fault) else type(exit_).__name__
    return (fault, list(cpu.r), cpu.eip, cpu.flags, cpu.cr2, cpu.instructions,
            rig.mem.read(DATA, DATA_SIZE))


def same(code: bytes, **kw):
    bulk, ref = run(code, False, **kw), run(code, True, **kw)
    assert bulk[:6] == ref[:6]
    assert bulk[6] == ref[6]
    return bulk


# --- the corners, one by one ----------------------------------------------------------------
def test_fault_in_the_middle_of_rep_movs_across_a_page_boundary():
    # Destination page 3 is absent: the copy stops at its first byte, ECX and
    # the index registers say how many elements were done (SDM vol. 2 REP).
    fault, r, eip, *_ = same(program("movs", 4), ecx=0x800, esi=0x100, edi=0x2F00, absent=3)
    assert fault == (14, 2, DATA + 0x3000)
    assert r[7] == 0x3000 and r[6] == 0x200 and r[1] == 0x800 - 0x40


def test_fault_on_the_source_page():
    fault, r, *_ = same(program("movs", 1), ecx=0x3000, esi=0x4F00, edi=0x8000, absent=5)
    assert fault == (14, 0, DATA + 0x5000) and r[6] == 0x5000 and r[1] == 0x3000 - 0x100


def test_element_straddling_a_page_boundary_faults_on_the_second_page():
    fault, r, *_ = same(program("stos", 4), ecx=0x100, edi=0x2FF2, eax=0x11223344, absent=3)
    assert fault == (14, 2, DATA + 0x3000) and r[7] == 0x2FFE


def test_read_only_page_with_wp():
    fault, r, *_ = same(program("stos", 2), ecx=0x2000, edi=0x1000, eax=0xBEEF, readonly=2)
    assert fault == (14, 3, DATA + 0x2000) and r[1] == 0x2000 - 0x800


def test_df_set_goes_down():
    _, r, _, _, _, _, mem = same(program("movs", 4), df=True, ecx=0x900, esi=0x5FFC, edi=0x9FFC)
    assert r[6] == 0x5FFC - 0x2400 and r[7] == 0x9FFC - 0x2400 and r[1] == 0


def test_ecx_zero_does_nothing():
    fault, r, eip, *_ = same(program("movs", 1), ecx=0, esi=0x10, edi=0x20)
    assert r[1] == 0 and r[6] == 0x10 and r[7] == 0x20


def test_overlapping_copy_forward_replicates_the_pattern():
    # dst = src + 3: byte-wise MOVSB copies bytes it has just written.
    *_, mem = same(program("movs", 1), ecx=0x1800, esi=0x1000, edi=0x1003)
    assert mem[0x1003:0x2803] == (mem[0x1000:0x1003] * 0x800)


def test_overlapping_copies_in_every_direction_and_width():
    for w in (1, 2, 4):
        for delta in (-9, -4, -3, -1, 1, 2, 3, 4, 5, 8, 0x1000):
            for df in (False, True):
                same(program("movs", w), df=df, ecx=0x700, esi=0x3000, edi=0x3000 + delta)


def test_address_size_16_wraps_the_index_registers():
    # 67 F3 AB: DI wraps from 0xFFFC to 0 and the upper halves of ECX and EDI stay.
    fault, r, *_, mem = same(program("stos", 4, a16=True), ecx=0xABCD0010, edi=0x1234FFF0,
                             eax=0x55AA55AA)
    assert r[1] == 0xABCD0000 and r[7] == 0x12340030
    assert mem[0xFFF0:0x10000] == b"\xaa\x55" * 8 and mem[0:0x30] == b"\xaa\x55" * 24


def test_segment_limit_hit_mid_way():
    fault, r, *_ = same(program("movs", 4), limit=0x5FFF, ecx=0x1000, esi=0x100, edi=0x4000)
    assert fault[0] == 13 and r[7] == 0x6000 and r[1] == 0x1000 - 0x800
    fault, r, *_ = same(program("stos", 4), limit=0x5FFF, df=True, ecx=0x1000, edi=0x5FFD)
    assert fault[0] == 13 and r[7] == 0x5FFD


def test_repne_and_repe_scasb():
    for rep in (b"\xf2", b"\xf3"):
        for df in (False, True):
            for eax in (0x00, 0x4D, 0xFF):
                same(program("scas", 1, rep), df=df, ecx=0x3000, edi=0x1800, eax=eax)


def test_cmps_lods_and_wider_scas_element_by_element():
    for op in ("cmps", "lods", "scas"):
        for w in (1, 2, 4):
            same(program(op, w), ecx=0x300, esi=0x200, edi=0x200, eax=0x1234)


def test_rep_stos_over_compiled_code_drops_it():
    """The bulk write goes through the self-modifying-code check: the loop
    body below is compiled, then overwritten with NOPs while it runs."""
    rig = Rig(mem_mb=4)
    code = bytes.fromhex(
        "b9 03 00 00 00"          # mov ecx, 3
        "bf 20 00 01 00"          # mov edi, 0x10020 (the INC below)
        "b8 90 90 90 90"          # mov eax, 0x90909090
        "f3 ab"                   # rep stosd (over the INC, the NOPs run)
        "f4" + "90" * 14 +        # hlt; pad to 0x10020
        "43 43 43 43 43 43 43 43 43 43 43 43"   # 12 x inc ebx
        "f4")
    rig.protected(code)
    rig.cpu.eip = 0x10020
    rig.run(100)                  # compile and run the INCs once: EBX = 12
    assert rig.cpu.r[3] == 12
    for eip in (0x10000, 0x10020):
        rig.cpu.eip, rig.cpu.halted = eip, False
        rig.run(100)                 # the INCs are gone: EBX stays
    assert rig.cpu.r[3] == 12


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(op=st.sampled_from(["movs", "stos", "scas"]), w=st.sampled_from([1, 2, 4]),
       rep=st.sampled_from([b"\xf3", b"\xf2"]), df=st.booleans(), a16=st.booleans(),
       count=st.integers(0, 0x2400), si=st.integers(0, 0x9FFF), delta=st.one_of(
           st.integers(-12, 12), st.integers(-0x3000, 0x3000)),
       absent=st.one_of(st.none(), st.integers(0, 9)), readonly=st.one_of(st.none(), st.integers(0, 9)),
       limit=st.one_of(st.just(0xFFFFF), st.integers(0x800, 0xFFFF)), eax=st.integers(0, 0xFFFFFFFF))
def test_bulk_equals_element_by_element(op, w, rep, df, a16, count, si, delta, absent, readonly,
                                         limit, eax):
    if a16:
        si = 0xFFFF - (si & 0x1FFF)            # near the 64 KiB wrap
    di = (si + delta) & 0xFFFF
    same(program(op, w, rep, a16), df=df, ecx=count | 0x5A5A0000 * a16, esi=si | 0x77770000 * a16,
         edi=di | 0x33330000 * a16, absent=absent, readonly=readonly, limit=limit, eax=eax)


# --- single string instructions compiled inline (compiler/inline/string.py) ---------------
def string_loop(seed: int, flat: bool) -> tuple[bytes, dict]:
    """A loop of random un-repeated string instructions (every width, both
    address sizes, a segment override), direction changes and flag readers;
    `flat`: DS and ES based at 0 (the compiler's fast memory path), 32-bit
    addresses only."""
    import random
    rng = random.Random(seed)
    body = b""
    for _ in range(rng.randrange(3, 14)):
        c = rng.randrange(9)
        if c < 6:
            op = rng.choice(list(OPS))
            code = OPS[op][rng.choice([1, 2, 4])]
            pre = b"\x66" if code[0] == 0x66 else b""
            code = code[len(pre):]
            body += pre + (b"\x67" if rng.random() < 0.2 and not flat else b"") + \
                (b"\x64" if rng.random() < 0.1 else b"") + code
        elif c == 6:
            body += rng.choice([b"\xfc", b"\xfd"])                      # CLD / STD
        elif c == 7:
            body += b"\x0f" + bytes([0x90 + rng.randrange(16), 0xC3]) + b"\x01\xd8"  # setcc bl; add eax, ebx
        else:
            body += b"\x83\xd3\x00"                                     # adc ebx, 0
    loop = b"\xbd" + struct.pack("<I", rng.randrange(1, 40)) + body + b"\x4d\x0f\x85" + \
        struct.pack("<i", -(len(body) + 7)) + b"\xf4"            # mov ebp,n; body; dec ebp; jnz body
    edge = rng.choice([0x1000, 0x3000, 0x5000, 0xFFF0 - 0x1000, 0x10000])
    regs = dict(esi=edge - rng.randrange(0, 64), edi=edge - rng.randrange(0, 64) + rng.choice([0, 0x2000]),
                eax=rng.getrandbits(32), ebx=rng.getrandbits(32))
    if flat:
        regs["esi"] += DATA
        regs["edi"] += DATA
    return loop, dict(regs, df=rng.random() < 0.3, base=0 if flat else DATA,
                      absent=rng.choice([None, None, 1, 3, 5]),
                      limit=0xFFFFFFFF if flat else rng.choice([0xFFFFF, 0xFFFFF, 0x4FFF]))


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("seed", range(60))
def test_inline_string_instructions_equal_the_interpreter(seed, flat):
    code, kw = string_loop(seed, flat)
    compiled = run(code, False, blocks=True, budget=5000, **kw)
    interpreted = run(code, False, blocks=False, budget=5000, **kw)
    assert compiled == interpreted
