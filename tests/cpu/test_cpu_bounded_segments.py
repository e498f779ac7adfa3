"""The compiled fast memory path on segments based at 0 with a limit below
4 GiB (what a monitor gives a deprivileged guest): every access that ends
past the limit must still raise the interpreter's #GP/#SS, at the same
instruction with the same state, for every width and both directions."""
from __future__ import annotations

import struct

import pytest

from ringvisor.exits import Fault
from cpu_rig import Rig

LIMIT = 0x60FFF            # byte-granular top of DS/ES/SS


def loop(op: bytes) -> bytes:
    # mov edx,fs:[LIMIT+1] ; mov fs:[LIMIT+1],edx (FS is flat: the page past
    # the limit becomes one the fast path knows, for reads and writes) ;
    # mov ecx,16 ; L: <op on [ebx]> ; inc ebx ; dec ecx ; jnz L ; hlt
    past = struct.pack("<I", LIMIT + 1)
    return b"\x64\x8b\x15" + past + b"\x64\x89\x15" + past + b"\xb9\x10\x00\x00\x00" + op + \
        b"\x43\x49\x75" + bytes([0x100 - (len(op) + 4)]) + b"\xf4"


def bounded(seg):
    seg = seg.copy()
    seg.limit, seg.g = LIMIT, False
    return seg


OPS = {
    "load8": b"\x8a\x03", "load16": b"\x66\x8b\x03", "load32": b"\x8b\x03",
    "store8": b"\x88\x03", "store16": b"\x66\x89\x03", "store32": b"\x89\x03",
    "add32 rmw": b"\x01\x03", "push [ebx]": b"\xff\x33\x58",
}


def run(op: bytes, start: int, blocks: bool):
    rig = Rig()
    st = rig.protected(loop(op), ebx=start, eax=0x11223344)
    st.ds = st.es = bounded(st.ds)            # FS and SS stay flat
    rig.cpu.set_state(st)
    rig.cpu.use_blocks = blocks
    if blocks:
        rig.cpu.blocks.hot = 1                  # compile at first sight
    rig.write(LIMIT - 15, bytes(range(16)))
    rig.intercept(*range(32))
    e = rig.run(10_000)
    c = rig.cpu
    return (type(e).__name__, getattr(e, "vector", None), getattr(e, "error_code", None), list(c.r),
            c.eip, c.flags, c.instructions, rig.mem.read(LIMIT - 15, 16))


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("start", [LIMIT - 10, LIMIT - 7, LIMIT - 4])
def test_compiled_accesses_stop_at_the_limit_like_the_interpreter(name, start):
    interp, compiled = run(OPS[name], start, False), run(OPS[name], start, True)
    assert compiled == interp
    assert interp[0] == Fault.__name__ and interp[1] == 13      # the loop runs into the limit


def test_the_fast_path_is_taken_below_the_limit():
    from ringvisor.cpu.compiler import memcode
    rig = Rig()
    st = rig.protected(loop(OPS["load32"]), ebx=0x50000)
    st.ds = bounded(st.ds)
    rig.cpu.set_state(st)
    assert memcode.flat(rig.cpu, 3, False) == LIMIT                # DS: bounded fast path
    lines = memcode.load("v", 3, "a", 4, LIMIT)
    assert lines[0] == f"if a > {LIMIT - 3}:"
    # (A misaligned access misses the dict: its low bits are in the key.)
    assert any("FR[a >> 12 | (a & 3) << 20]" in ln for ln in lines)


def test_a_segment_with_a_base_takes_the_fast_path_at_its_linear_address():
    # Linux's per-CPU data is reached through FS with a base other than 0:
    # the fast path adds the base (baked into the trace: segment loads end
    # traces and the cache key holds every segment cache).
    from ringvisor.cpu.compiler import memcode
    lines = memcode.load("v", 4, "a", 4, 0xFFFFFFFF, 0x1FE6000)
    assert lines[0] == "la = (a + 33447936) & 0xFFFFFFFF"
    assert any("M32[(la + FR[la >> 12 | (la & 3) << 20]) >> 2]" in ln for ln in lines)
    assert any("RD(4, a, 4)" in ln for ln in lines)            # the slow path takes the offset


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("base", [0x1003, 0x2000, 0xFFFFF000])
def test_compiled_accesses_through_a_based_segment_like_the_interpreter(name, base):
    # DS and ES based elsewhere (an odd base makes aligned offsets misaligned
    # linear addresses; the last base wraps round 4 GiB), the loop walking
    # into the limit: the same values, faults and state on both paths.
    def run_based(blocks):
        rig = Rig()
        st = rig.protected(loop(OPS[name]), ebx=LIMIT - 40, eax=0x11223344)
        st.ds = bounded(st.ds)
        st.ds.base = base
        st.es = st.ds
        rig.cpu.set_state(st)
        rig.cpu.use_blocks = blocks
        rig.cpu.blocks.hot = 1
        rig.write((base + LIMIT - 47) & 0xFFFFFFFF, bytes(range(48)))
        rig.intercept(*range(32))
        e = rig.run(10_000)
        c = rig.cpu
        return (type(e).__name__, getattr(e, "vector", None), list(c.r), c.eip, c.flags,
                c.instructions, rig.mem.read((base + LIMIT - 47) & 0xFFFFFFFF, 48))
    assert run_based(True) == run_based(False)
