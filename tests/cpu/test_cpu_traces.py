"""Compiled traces (loops, skips, calls, lazy flags) against the reference
interpreter on random structured programs: run in slices of random sizes
(the budget ends inside loops), with and without paging (faults in the
middle of loops), with stores into the running code; every exit must leave
identical registers, flags, memory, counts and CR2."""
import random
import struct

import pytest

from ringvisor.cpu_state import CpuState, Segment
from ringvisor.exits import Fault, Halt
from cpu_rig import Rig
from trace_programs import CODE, COUNTERS, DATA, program

SLICES = (1, 2, 3, 5, 8, 13, 40, 97, 300, 1000, 2500)
LIMIT = 6000


def machine(code: bytes, seed: int, blocks: bool, paging, hot: int = 1) -> Rig:
    """paging: False (flat protected mode), True (and paging), "real" (16-bit
    real mode: CS=0x1000, DS=ES=0x6000, SS=0x7000 — the same bytes decode
    as 16-bit code, through non-flat segments and a 16-bit stack)."""
    rng = random.Random(seed ^ 0x77)
    rig = Rig()
    rig.cpu.blocks.hot = hot
    regs = {n: rng.getrandbits(32) for n in ("eax", "ebx", "ecx", "edx", "esi", "edi")}
    eflags = 0x2 | rng.getrandbits(1) | (rng.getrandbits(1) << 11)
    if paging == "real":
        rig.write(CODE, code)
        st = CpuState.real_mode(CODE >> 4, 0, sp=0xFFF0)
        st.ds, st.es, st.ss = Segment.real(DATA >> 4), Segment.real(DATA >> 4), Segment.real(0x7000)
        st.eflags = eflags
        for n, v in regs.items():
            setattr(st, n, v)
        rig.cpu.set_state(st)
    else:
        rig.protected(code, eflags=eflags, **regs)
    rig.write(DATA, bytes(rng.getrandbits(8) for _ in range(0x5000)))
    rig.write(COUNTERS, bytes(0x100))
    if paging is True:
        rig.identity_paging()
        rig.set_pte(DATA + 0x3000, (DATA + 0x3000) | 5)          # read-only
        rig.set_pte(DATA + 0x4000, 0)                            # not present
        rig.enable_paging(wp=True)
    rig.cpu.use_blocks = blocks
    rig.intercept(*range(32))
    return rig


def snapshot(rig: Rig, e) -> tuple:
    c = rig.cpu
    return (type(e).__name__, getattr(e, "vector", None), getattr(e, "error_code", None),
            list(c.r), c.eip, c.flags, c.instructions, c.cr2,
            rig.mem.read(DATA, 0x4000), rig.mem.read(0x7F000, 0x1000), rig.mem.read(CODE, 0x1000),
            rig.mem.read(COUNTERS, 0x40))


def trace_run(code: bytes, seed: int, blocks: bool, paging, hot: int = 1) -> list:
    rig = machine(code, seed, blocks, paging, hot)
    rng = random.Random(seed)
    out = []
    while rig.cpu.instructions < LIMIT:
        e = rig.run(rng.choice(SLICES))
        out.append(snapshot(rig, e))
        if isinstance(e, Halt):
            break
        if isinstance(e, Fault):
            # Skip the faulting instruction, as a fixed-up handler would.
            try:
                ins = rig.cpu.decode_at(rig.cpu.eip)
            except Exception:
                break
            rig.cpu.eip = (rig.cpu.eip + ins.length) & 0xFFFFFFFF
    return out


@pytest.mark.parametrize("paging", [False, True, "real"], ids=["flat", "paging", "real"])
@pytest.mark.parametrize("seed", range(60))
def test_traces_equal_interpreter(seed, paging):
    code = program(seed)
    a = trace_run(code, seed, False, paging)
    # (16-bit decoding of these bytes often runs into long stretches of
    # straight code: compile what runs twice, not every fresh entry.)
    b = trace_run(code, seed, True, paging, hot=2 if paging == "real" else 1)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x == y


@pytest.mark.parametrize("seed", range(100, 108))
def test_mixed_interpreted_and_compiled_equal_interpreter(seed):
    # Code is interpreted until reached 3 times, then compiled: traces start
    # wherever execution happens to be hot, in the middle of loops too.
    code = program(seed)
    assert trace_run(code, seed, False, True) == trace_run(code, seed, True, True, hot=3)


def test_trace_cache_starts_over_when_full(monkeypatch):
    from ringvisor.cpu.compiler import blocks
    monkeypatch.setattr(blocks, "MAX_TRACES", 3)
    code = program(5)
    assert trace_run(code, 5, False, False) == trace_run(code, 5, True, False)


def test_code_is_interpreted_until_hot():
    code = bytes.fromhex("b9e8030000" "01c8" "49" "75fb" "f4")
    rig = Rig()
    rig.cpu.blocks.hot = 8
    rig.protected(code)
    assert isinstance(rig.run(100_000), Halt) and rig.cpu.r[0] == sum(range(1, 1001))
    assert rig.cpu.blocks.compiled == 1            # the loop, once hot; not the MOV before it


def test_loop_runs_inside_one_trace():
    # mov ecx,1000; l: add eax,ecx; dec ecx; jnz l; hlt  — one compiled function.
    rig = Rig()
    rig.protected(bytes.fromhex("b9e8030000" "01c8" "49" "75fb" "f4"))
    e = rig.run(100_000)
    assert isinstance(e, Halt) and rig.cpu.r[0] == sum(range(1, 1001))
    assert rig.cpu.blocks.compiled == 1 and rig.cpu.instructions == 1 + 3 * 1000 + 1


def test_budget_ends_exactly_inside_a_loop():
    code = bytes.fromhex("b9e8030000" "01c8" "49" "75fb" "f4")
    for n in (2, 3, 4, 100, 1000, 2001):
        rig = Rig()
        rig.protected(code)
        rig.run(n)
        assert rig.cpu.instructions == n
        ref = Rig()
        ref.protected(code)
        ref.cpu.use_blocks = False
        ref.run(n)
        assert (rig.cpu.r, rig.cpu.eip, rig.cpu.flags) == (ref.cpu.r, ref.cpu.eip, ref.cpu.flags)


def test_store_into_the_running_loop():
    # l: mov [imm_of_add], ecx; add eax, imm32; dec ecx; jnz l — the loop rewrites its own ADD.
    imm = CODE + 5 + 6 + 1                                   # the ADD's immediate
    code = b"\xb9\x05\x00\x00\x00" + b"\x89\x0d" + struct.pack("<I", imm) + \
        b"\x05\x00\x00\x00\x00" + b"\x49" + b"\x75" + bytes([(-(6 + 5 + 1 + 2)) & 0xFF]) + b"\xf4"
    out = []
    for blocks in (False, True):
        rig = Rig()
        rig.protected(code)
        rig.cpu.use_blocks = blocks
        assert isinstance(rig.run(1000), Halt)
        out.append((rig.cpu.r[0], rig.cpu.instructions))
    assert out[0] == out[1] == (5 + 4 + 3 + 2 + 1, 1 + 4 * 5 + 1)


class Pin:
    """An interrupt line that rises at the `after`-th look at it (the CPU
    samples it between instructions, or between blocks when compiled)."""

    def __init__(self, after: int, vector: int = 0x40):
        self.after, self.vector, self.looks, self.taken = after, vector, 0, False

    def pending(self) -> bool:
        self.looks += 1
        return not self.taken and self.looks >= self.after

    def acknowledge(self) -> int:
        self.taken = True
        return self.vector


def test_interrupt_during_a_loop_is_taken_at_a_loop_head():
    # sti; mov ecx,5000; l: add eax,ecx; dec ecx; jnz l; hlt
    # handler: mov edx,[esp] (the interrupted EIP); inc ebx; iret
    from cpu_rig import KCODE
    code = bytes.fromhex("fb" "b988130000" "01c8" "49" "75fb" "f4")
    handler = CODE + 0x100
    for blocks in (False, True):
        rig = Rig()
        rig.cpu.interrupts = Pin(10)
        rig.protected(code)
        rig.write(handler, bytes.fromhex("8b1424" "43" "cf"))
        rig.set_idt(0x40, handler, sel=KCODE)
        rig.cpu.use_blocks = blocks
        e = rig.run(100_000)
        assert isinstance(e, Halt) and rig.cpu.r[3] == 1
        assert rig.cpu.r[0] == sum(range(1, 5001)) and rig.cpu.instructions == 2 + 3 * 5000 + 3 + 1
        if blocks:
            assert rig.cpu.r[2] == CODE + 6             # between two iterations


class Doorbell:
    """An MMIO register whose first write raises the interrupt line."""

    def __init__(self):
        self.rung = False
        self.taken = False

    def io_read(self, offset, size):
        return 0

    def io_write(self, offset, size, value):
        self.rung = True

    def pending(self) -> bool:
        return self.rung and not self.taken

    def acknowledge(self) -> int:
        self.taken = True
        return 0x40


def test_interrupt_raised_by_a_device_access_in_a_loop_is_taken_next_iteration():
    # sti; mov ecx,100; l: mov [MMIO],eax; dec ecx; jnz l; hlt — handler: mov edx,ecx; iret.
    # The interpreter takes it after the MOV (ECX=100), compiled code at the
    # next loop head (ECX=99): between blocks, not POLL instructions later.
    from cpu_rig import KCODE
    mmio = 0x10000000
    code = bytes.fromhex("fb" "b964000000" "a3") + struct.pack("<I", mmio) + bytes.fromhex("49" "75f9" "f4")
    for blocks, ecx in ((False, 100), (True, 99)):
        rig = Rig()
        bell = Doorbell()
        rig.cpu.mmio.register(mmio, 0x1000, bell, "doorbell")
        rig.cpu.interrupts = bell
        rig.protected(code)
        rig.write(CODE + 0x100, bytes.fromhex("89ca" "cf"))
        rig.set_idt(0x40, CODE + 0x100, sel=KCODE)
        rig.cpu.use_blocks = blocks
        assert isinstance(rig.run(10_000), Halt)
        assert rig.cpu.r[2] == ecx


def test_alu_register_destination_does_not_check_a_stale_write():
    # Found by the trace tests: `and ebx,[ebp+0x4d]` read the read-only page at
    # 0x63000; the next `xor dh,[ebp+0x40]` (register destination) ran the RMW
    # write check on that stale effective address and raised #PF(W).
    code = bytes.fromhex("235d4d" "327540" "f4")               # and ebx,[ebp+0x4d]; xor dh,[ebp+0x40]
    for blocks in (False, True):
        rig = Rig()
        rig.protected(code, ebp=0x62FB4)
        rig.identity_paging()
        rig.set_pte(0x63000, 0x63000 | 5)
        rig.enable_paging(wp=True)
        rig.cpu.use_blocks = blocks
        rig.intercept(14)
        assert isinstance(rig.run(100), Halt) and rig.cpu.instructions == 3


def test_split_rmw_into_a_read_only_page_reports_the_page_start():
    # Found by the trace tests: `and [ebp+6],edx` at 0x62FFE..0x63001 into the
    # read-only page 0x63000 gave CR2 = 0x63001 on the interpreter's RMW check
    # and 0x63000 on a plain split write; both say 0x63000 now.
    for code in ("215506f4", "895506f4"):                # and [ebp+6],edx / mov [ebp+6],edx
        for blocks in (False, True):
            rig = Rig()
            rig.protected(bytes.fromhex(code), ebp=0x62FF8)
            rig.identity_paging()
            rig.set_pte(0x63000, 0x63000 | 5)
            rig.enable_paging(wp=True)
            rig.cpu.use_blocks = blocks
            rig.intercept(14)
            e = rig.run(100)
            assert isinstance(e, Fault) and e.error_code == 3 and rig.cpu.cr2 == 0x63000


def test_flags_live_into_a_loop_head_exit():
    # Found by the trace tests: ADD's flags were judged dead because the loop
    # body overwrites them first, but the budget exit at the loop head reads them.
    # add bl,dl; mov ecx,ebx; l: mov edx,5; sub edi,1; jnz l; hlt
    code = bytes.fromhex("00d3" "89d9" "ba05000000" "83ef01" "75f6" "f4")
    for n in range(2, 9):
        out = []
        for blocks in (False, True):
            rig = Rig()
            rig.protected(code, ebx=0xF0, edx=0x20, edi=3)
            rig.cpu.use_blocks = blocks
            rig.run(n)                 # the budget ends at the loop head, mid-trace
            out.append((rig.cpu.r, rig.cpu.eip, rig.cpu.flags, rig.cpu.instructions))
        assert out[0] == out[1]


def test_invlpg_remaps_code_and_data_pages():
    # The code at 0x20000 calls a routine at linear 0x30000 and reads [0x31000],
    # then remaps both pages (PTE writes + INVLPG) and does it again: the
    # second call must run the new page's code and read the new page's data.
    from cpu_rig import asm
    main = asm("""
        mov ecx, 3
    again:
        call 0x30000
        add ebx, [0x31000]
        mov dword ptr [{pte30}], 0x40007
        mov dword ptr [{pte31}], 0x41007
        invlpg [0x30000]
        invlpg [0x31000]
        dec ecx
        jnz again
        hlt
    """.format(pte30=0x4000 + 0x1000 + 4 * 0x30, pte31=0x4000 + 0x1000 + 4 * 0x31), org=0x20000)
    out = []
    for blocks in (False, True):
        rig = Rig()
        rig.protected(b"\xe9" + struct.pack("<i", 0x20000 - (CODE + 5)))   # jmp 0x20000
        rig.write(0x20000, main)
        rig.write(0x30000, b"\x83\xc0\x01\xc3")         # old routine: add eax, 1; ret
        rig.write(0x40000, b"\x83\xc0\x10\xc3")         # new routine: add eax, 16; ret
        rig.write(0x31000, struct.pack("<I", 100))
        rig.write(0x41000, struct.pack("<I", 7))
        rig.identity_paging()
        rig.enable_paging()
        rig.cpu.use_blocks = blocks
        assert isinstance(rig.run(10_000), Halt)
        out.append((rig.cpu.r[0], rig.cpu.r[3], rig.cpu.instructions))
    assert out[0] == out[1] and out[0][:2] == (1 + 16 + 16, 100 + 7 + 7)


def test_traces_chained_across_pages():
    # A loop calling a routine in another page: two traces per iteration,
    # run back to back with the state in the dispatcher's locals; slices of
    # every size end between and inside them.
    from cpu_rig import asm
    main = asm("mov ecx, 300\nl: add eax, ecx\nxor edx, eax\ncall 0x30000\ndec ecx\njnz l\nhlt")
    sub = asm("add ebx, eax\nrol ebx, 3\nmov [0x60000], ebx\nret", org=0x30000)
    out = []
    for blocks in (False, True):
        rig = Rig()
        rig.protected(main)
        rig.write(0x30000, sub)
        rig.cpu.use_blocks = blocks
        states = []
        for n in (5, 1, 7, 64, 3, 100, 2, 1000, 9, 100_000):
            e = rig.run(n)
            states.append((type(e).__name__, list(rig.cpu.r), rig.cpu.eip, rig.cpu.flags,
                           rig.cpu.instructions, rig.mem.read(0x60000, 4)))
        out.append(states)
    assert out[0] == out[1] and out[0][-1][0] == "Halt"
