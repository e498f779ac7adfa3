"""The PV monitor's pieces on their own: direct-paging validation against
crafted frames (and, with hypothesis, its invariants after any sequence of
requests), the one-shot timer on the platform's PIT, and the image checks."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from ringvisor.errors import GuestImageError
from ringvisor.machine.bus import PortBus
from ringvisor.machine.soft_platform import NS_PER_INSTRUCTION, SoftPlatform
from ringvisor.monitors.pv import abi as A
from ringvisor.monitors.pv.image import read_image
from ringvisor.monitors.pv.mmu import ENTRIES, PAGE, DirectPaging, PvError
from ringvisor.monitors.pv.timer import PvTimer

P, W, PS, G = 1, 2, 0x80, 0x100
NR = 16                              # guest frames; frame 16 and up are "the monitor's"
MONITOR_PDE = (NR + 1) * PAGE | 3


def paging() -> DirectPaging:
    return DirectPaging(bytearray((NR + 2) * PAGE), NR, MONITOR_PDE, Counter())


def put(dp: DirectPaging, pfn: int, index: int, value: int) -> None:
    dp.mm[pfn * PAGE + 4 * index:pfn * PAGE + 4 * index + 4] = value.to_bytes(4, "little")


def refused(fn, *args) -> tuple[int, str]:
    with pytest.raises(PvError) as e:
        fn(*args)
    return e.value.errno, e.value.reason


@pytest.mark.parametrize("entry, errno, why", [
    (NR * PAGE | P, A.EPERM, "not the guest's"),              # the monitor's first frame
    (0xFFFFF000 | P, A.EPERM, "not the guest's"),
    (3 * PAGE | P | W, A.EPERM, "writable mapping of a page table"),   # the table itself
    (4 * PAGE | P | G, A.EPERM, "reserved bits"),
    (4 * PAGE | P | PS, A.EPERM, "reserved bits"),            # PAT is not offered
])
def test_pinning_a_bad_page_table_changes_nothing(entry, errno, why):
    dp = paging()
    put(dp, 3, 7, entry)
    got, reason = refused(dp.pin, 3 * PAGE, 1)
    assert got == errno and why in reason
    assert dp.level == {} and not dp.writable and not dp.l1_users


def test_directory_rules():
    dp = paging()
    put(dp, 2, 0, 3 * PAGE | P | W)
    assert "unpinned page table" in refused(dp.pin, 2 * PAGE, 2)[1]
    dp.pin(3 * PAGE, 1)
    put(dp, 2, 0, 3 * PAGE | P | W | PS)
    assert refused(dp.pin, 2 * PAGE, 2)[0] == A.EPERM
    put(dp, 2, 0, 3 * PAGE | P | W)
    put(dp, 2, A.HOLE_PDE + 5, 1)
    assert "hole" in refused(dp.pin, 2 * PAGE, 2)[1]
    put(dp, 2, A.HOLE_PDE + 5, 0)
    dp.pin(2 * PAGE, 2)
    assert dp.entry(2, A.HOLE_PDE) == MONITOR_PDE          # the monitor's own mapping
    assert dp.l1_users[3] == 1
    assert refused(dp.unpin, 3 * PAGE, 0)[0] == A.EBUSY     # used by the directory
    assert refused(dp.unpin, 2 * PAGE, 2 * PAGE)[0] == A.EBUSY   # the current base
    assert refused(dp.update, 2 * PAGE + 4 * A.HOLE_PDE, 0)[0] == A.EPERM
    assert refused(dp.update, 2 * PAGE + 4, 3 * PAGE | P | PS)[0] == A.EINVAL
    assert refused(dp.update, 2 * PAGE + 4, 5 * PAGE | P)[0] == A.EPERM     # unpinned target
    dp.unpin(2 * PAGE, 0)
    assert dp.entry(2, A.HOLE_PDE) == 0 and not dp.l1_users
    dp.unpin(3 * PAGE, 0)
    assert dp.level == {}


def test_writable_mappings_are_counted():
    dp = paging()
    put(dp, 3, 0, 5 * PAGE | P | W)
    dp.pin(3 * PAGE, 1)
    assert dp.writable == {5: 1}
    assert "writable" in refused(dp.pin, 5 * PAGE, 1)[1]
    dp.update(3 * PAGE, 5 * PAGE | P)                     # read-only now
    dp.pin(5 * PAGE, 1)
    assert refused(dp.update, 3 * PAGE + 4, 5 * PAGE | P | W)[0] == A.EPERM
    assert refused(dp.update, 3 * PAGE + 2, 0)[0] == A.EINVAL          # misaligned
    assert refused(dp.update, 6 * PAGE, 0)[0] == A.EINVAL              # not a pinned table
    assert refused(dp.pin, 5 * PAGE, 1)[0] == A.EBUSY
    dp.read_only.add(6)
    assert refused(dp.update, 3 * PAGE + 8, 6 * PAGE | P | W)[0] == A.EPERM
    assert refused(dp.pin, NR * PAGE, 1)[0] == A.EINVAL                # beyond the guest
    assert refused(dp.pin, 3 * PAGE + 4, 1)[0] == A.EINVAL
    assert refused(dp.pin, 7 * PAGE, 3)[0] == A.EINVAL


# --- invariants under any sequence of requests ------------------------------------------
INDICES = (0, 1, A.HOLE_PDE - 1, A.HOLE_PDE, ENTRIES - 1)
VALUES = st.builds(lambda pfn, flags: pfn * PAGE | flags, st.integers(0, NR + 1),
                   st.sampled_from((0, P, P | W, P | 4, P | W | PS, P | G, W)))
OPS = st.one_of(
    st.tuples(st.just("pin"), st.integers(0, NR), st.sampled_from((1, 2))),
    st.tuples(st.just("unpin"), st.integers(0, NR), st.just(0)),
    st.tuples(st.just("update"), st.integers(0, NR - 1), st.sampled_from(INDICES), VALUES),
    st.tuples(st.just("store"), st.integers(0, NR - 1), st.sampled_from(INDICES), VALUES),
)


def check_invariants(dp: DirectPaging) -> None:
    writable, users = Counter(), Counter()
    for pfn, level in dp.level.items():
        for i in range(ENTRIES):
            e = dp.entry(pfn, i)
            if level == 2 and i >= A.HOLE_PDE:
                assert e == (MONITOR_PDE if i == A.HOLE_PDE else 0)
                continue
            if not e & P:
                continue
            target = e >> 12
            assert target < NR
            if level == 1:
                assert not e & 0x180
                assert not (e & W and target in dp.level)
                writable[target] += bool(e & W)
            else:
                assert not e & 0x1C0 and dp.level.get(target) == 1
                users[target] += 1
    assert +writable == dp.writable and +users == dp.l1_users


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=25))
def test_no_sequence_of_requests_breaks_the_invariants(ops):
    dp = paging()
    for op in ops:
        try:
            if op[0] == "pin":
                dp.pin(op[1] * PAGE, op[2])
            elif op[0] == "unpin":
                dp.unpin(op[1] * PAGE, 0)
            elif op[0] == "update":
                dp.update(op[1] * PAGE + 4 * op[2], op[3])
            elif op[1] not in dp.level:
                put(dp, op[1], op[2], op[3])        # the guest may store to any unpinned frame
        except PvError:
            pass
        check_invariants(dp)


# --- the timer ----------------------------------------------------------------------------
class Clock:
    instructions = 0
    tsc_offset = 0


def timer():
    ports, cpu = PortBus(), Clock()
    platform = SoftPlatform(ports, engine=cpu)
    t = PvTimer(ports, platform)
    t.start()
    return t, platform, cpu


def run_to_irq(platform, cpu) -> None:
    nxt = platform.pit.next_event_ns()
    assert nxt is not None
    cpu.instructions = -(-nxt // NS_PER_INSTRUCTION)
    platform.sync()
    assert platform.pic.pending()
    assert platform.pic.acknowledge() == 0xF0              # IRQ 0 at the monitor's vector


def test_a_deadline_beyond_one_pit_period_is_reached_in_steps():
    t, platform, cpu = timer()
    assert not t.arm(120_000_000)                        # 120 ms: more than 65535 PIT ticks
    run_to_irq(platform, cpu)
    assert not t.on_irq() and t.now() < 120_000_000     # 55 ms: reloaded for the rest
    run_to_irq(platform, cpu)
    assert not t.on_irq()
    run_to_irq(platform, cpu)
    assert t.on_irq() and 120_000_000 <= t.now() < 120_000_000 + 2 * 839
    assert not t.armed and platform.pit.next_event_ns() is None


def test_past_deadlines_fire_at_once_and_zero_cancels():
    t, platform, cpu = timer()
    cpu.instructions = 1000
    assert t.arm(5_000)                                  # already passed
    assert not t.arm(50_000_000) and t.armed
    assert not t.arm(0) and not t.armed
    assert platform.pit.next_event_ns() is None


# --- the image ------------------------------------------------------------------------------
def test_images_without_the_note_or_with_another_abi_are_refused(ringos, tmp_path):
    with pytest.raises(GuestImageError, match="no ringvisor PV note"):
        read_image(str(ringos / "ringos.elf"))
    image = read_image(str(ringos / "ringos-pv.elf"))
    assert image.version == A.ABI_VERSION
    data = bytearray((ringos / "ringos-pv.elf").read_bytes())
    desc = data.index(b"ringvisor\0\0\0") + 12
    bad = tmp_path / "v2.elf"
    bad.write_bytes(data[:desc] + (0x00020000).to_bytes(4, "little") + data[desc + 4:])
    with pytest.raises(GuestImageError, match="speaks PV ABI 2.0"):
        read_image(str(bad))
    bad.write_bytes(data[:desc + 4] + (image.entry + 4).to_bytes(4, "little") + data[desc + 8:])
    with pytest.raises(GuestImageError, match="is not the ELF entry"):
        read_image(str(bad))
