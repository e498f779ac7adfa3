"""The debugger's page walk (ringvisor.gdb.linear): the guest's own page
tables, SDM vol. 3 ch. 4, without side effects; checked by hand-built tables
and against the soft CPU's own walk on random ones."""
from __future__ import annotations

import random

import pytest

from ringvisor.gdb.linear import LinearMemory
from ringvisor.gdb.target import MemoryFault
from ringvisor.cpu_state import CpuState
from ringvisor.machine.memory import GuestMemory

PG, PSE, PAE = 1 << 31, 1 << 4, 1 << 5
P, RW, US, A, D, PS = 1, 2, 4, 0x20, 0x40, 0x80
PD, PT = 0x10000, 0x11000


@pytest.fixture
def mem():
    m = GuestMemory(8 << 20)
    yield m
    m.close()


def paged(cr3=PD, cr4=0):
    state = CpuState.protected_flat(0)
    state.cr0, state.cr3, state.cr4 = state.cr0 | PG, cr3, cr4
    return state


def test_paging_off_is_identity(mem):
    mem.write(0x5000, b"abc")
    lin = LinearMemory(mem, lambda: CpuState.protected_flat(0))
    assert lin.read(0x5000, 3) == b"abc"
    with pytest.raises(MemoryFault) as e:
        lin.read(mem.size - 2, 4)
    assert e.value.address == mem.size


def test_4k_pages_cross_page_reads_and_faults_without_side_effects(mem):
    # linear 0xC0000000 -> physical 0x200000, 0xC0001000 -> 0x300000 (read-only,
    # supervisor), 0xC0002000 not present.
    mem.write_u32(PD + 0x300 * 4, PT | P | RW)
    mem.write_u32(PT + 0, 0x200000 | P | RW)
    mem.write_u32(PT + 4, 0x300000 | P)
    mem.write(0x200FFE, b"\x11\x22")
    mem.write(0x300000, b"\x33\x44")
    before = mem.read(PD, 0x2000)
    lin = LinearMemory(mem, paged)
    assert lin.translate(0xC0000123) == 0x200123
    assert lin.read(0xC0000FFE, 4) == b"\x11\x22\x33\x44"
    lin.write(0xC0001000, b"\xCC")                     # read-only for the guest, not for gdb
    assert mem.read(0x300000, 1) == b"\xCC"
    with pytest.raises(MemoryFault) as e:
        lin.read(0xC0001FFE, 4)
    assert e.value.address == 0xC0002000 and "not present" in e.value.reason
    with pytest.raises(MemoryFault):
        lin.write(0xC0001FFF, b"\x01\x02")             # all or nothing
    assert mem.read(0x300FFF, 1) == b"\x00"
    with pytest.raises(MemoryFault):
        lin.read(0x1000, 1)                            # page directory entry not present
    assert mem.read(PD, 0x2000) == before               # no accessed or dirty bit was set
    assert not mem.read_u32(PT) & (A | D) and not mem.read_u32(PD + 0x300 * 4) & A


def test_4m_pages_need_cr4_pse(mem):
    mem.write_u32(PD + 1 * 4, 0x400000 | P | RW | PS)  # linear 4 MiB..8 MiB
    mem.write(0x400000 + 0x1234, b"big")
    assert LinearMemory(mem, lambda: paged(cr4=PSE)).read(0x401234, 3) == b"big"
    # Without CR4.PSE the PS bit is ignored: the entry points at a "page
    # table" at 0x400000, whose entry for this address is zero.
    with pytest.raises(MemoryFault, match="page table entry not present"):
        LinearMemory(mem, paged).translate(0x401234)


def test_pae_4k_and_2m_pages(mem):
    pdpt, pd, pt = 0x20000, 0x21000, 0x22000
    mem.write(pdpt + 3 * 8, (pd | P).to_bytes(8, "little"))          # 0xC0000000..
    mem.write(pd + 0, (pt | P | RW).to_bytes(8, "little"))
    mem.write(pd + 8, (0x600000 | P | RW | PS).to_bytes(8, "little"))
    mem.write(pt + 5 * 8, (0x700000 | P).to_bytes(8, "little"))
    lin = LinearMemory(mem, lambda: paged(cr3=pdpt, cr4=PAE))
    assert lin.translate(0xC0005ABC) == 0x700ABC
    assert lin.translate(0xC0212345) == 0x612345
    with pytest.raises(MemoryFault):
        lin.translate(0x00001000)                                    # PDPTE 0 not present


def test_physical_beyond_ram_is_a_fault_not_mmio(mem):
    mem.write_u32(PD, PT | P)
    mem.write_u32(PT, 0xFEE00000 | P)                                # the local APIC, say
    with pytest.raises(MemoryFault, match="not RAM"):
        LinearMemory(mem, paged).read(0x10, 4)


def test_writes_are_reported_for_code_invalidation(mem):
    seen = []
    LinearMemory(mem, lambda: CpuState.protected_flat(0),
                 lambda physical, n: seen.append((physical, n))).write(0x1FFE, b"1234")
    assert seen == [(0x1FFE, 2), (0x2000, 2)]


def test_the_4_gib_edge(mem):
    lin = LinearMemory(mem, lambda: CpuState.protected_flat(0))
    with pytest.raises(MemoryFault) as e:
        lin.read(0xFFFFFFFE, 4)
    assert e.value.address == 1 << 32


def test_agrees_with_the_soft_cpus_walk_on_random_tables(mem):
    """The soft CPU's page walk (ringvisor.cpu.paging) is the reference for a
    supervisor read; random directories, tables and 4 MiB pages."""
    from ringvisor.cpu import SoftEngine
    from ringvisor.cpu.paging import probe
    from ringvisor.machine.bus import MmioBus, PortBus
    rng = random.Random(15)
    for cr4 in (0, PSE):
        mem.fill(PD, 0x40000)
        for i in range(1024):
            choice = rng.random()
            if choice < 0.5:
                continue
            if choice < 0.6:
                mem.write_u32(PD + 4 * i, (rng.randrange(2) << 22) | P | PS | rng.choice((0, RW, US)))
            else:
                table = PT + 0x1000 * rng.randrange(32)
                mem.write_u32(PD + 4 * i, table | P | RW | US)
                for j in rng.sample(range(1024), 8):
                    mem.write_u32(table + 4 * j, (rng.randrange(0x800) << 12) | rng.choice((0, P, P | RW)))
        state = paged(cr4=cr4)
        cpu = SoftEngine(mem, PortBus(), MmioBus(), None)
        cpu.set_state(state)
        lin = LinearMemory(mem, lambda: state)
        hits = 0
        for _ in range(3000):
            address = rng.randrange(1 << 32) if rng.random() < 0.5 else \
                (rng.randrange(1024) << 22) | (rng.choice((0, 1, 2, 3, 4, 5, 6, 7)) << 12) | rng.randrange(4096)
            expected = probe(cpu, address)
            try:
                got = lin.translate(address)
            except MemoryFault:
                got = None
            assert got == expected, (hex(address), cr4)
            hits += got is not None
        assert hits > 30, f"only {hits} mapped addresses drawn"
