"""The local APIC against the Intel SDM vol. 3A chapter 10 (xAPIC mode)."""
import pytest
from hypothesis import given, settings, strategies as st

from ringvisor.devices.apic_bus import ApicBus
from ringvisor.devices.lapic import (
    DEFAULT_BASE, ESR_ILLEGAL_REGISTER, ESR_RECEIVE_ILLEGAL_VECTOR, ESR_SEND_ILLEGAL_VECTOR,
    MSR_APIC_BASE, ApicMsrFault, Delivery, LocalApic, Reg, cpuid1_ebx_id,
)
from ringvisor.machine.bus import MmioBus

LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = (
    0x320, 0x330, 0x340, 0x350, 0x360, 0x370)
MASKED = 1 << 16


class Clock:
    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


def rd(apic, reg):
    return apic.mmio_read(reg, 4)


def wr(apic, reg, value):
    apic.mmio_write(reg, 4, value)


def enabled(apic_id=0, **kw):
    apic = LocalApic(apic_id, **kw)
    wr(apic, Reg.SVR, 0x1FF)
    return apic


def isr_bits(apic):
    return sum(rd(apic, Reg.ISR + 16 * i) << (32 * i) for i in range(8))


def irr_bits(apic):
    return sum(rd(apic, Reg.IRR + 16 * i) << (32 * i) for i in range(8))


# -- power-up state (SDM 10.4.7.1) ---------------------------------------------------------

def test_power_up_state():
    apic = LocalApic(3)
    assert rd(apic, Reg.ID) == 3 << 24
    assert rd(apic, Reg.VERSION) == 0x00050014      # integrated APIC, 6 LVT entries
    assert rd(apic, Reg.DFR) == 0xFFFFFFFF
    assert rd(apic, Reg.SVR) == 0xFF
    assert rd(apic, Reg.TPR) == rd(apic, Reg.PPR) == rd(apic, Reg.APR) == rd(apic, Reg.LDR) == 0
    for reg in (LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR):
        assert rd(apic, reg) == MASKED
    assert rd(apic, Reg.TIMER_INITIAL) == rd(apic, Reg.TIMER_CURRENT) == rd(apic, Reg.TIMER_DIVIDE) == 0
    assert apic.read_msr(MSR_APIC_BASE) == DEFAULT_BASE | 0x800
    assert LocalApic(0, bsp=True).read_msr(MSR_APIC_BASE) == DEFAULT_BASE | 0x900
    assert cpuid1_ebx_id(apic) == 3 << 24


def test_writable_bits_of_each_register():
    apic = LocalApic(0)
    wr(apic, Reg.ID, 0xFFFFFFFF)
    assert rd(apic, Reg.ID) == 0xFF000000
    wr(apic, Reg.LDR, 0xFFFFFFFF)
    assert rd(apic, Reg.LDR) == 0xFF000000
    wr(apic, Reg.DFR, 0)
    assert rd(apic, Reg.DFR) == 0x0FFFFFFF                 # cluster model; bits 27:0 read 1
    wr(apic, Reg.TPR, 0xFFFFFFFF)
    assert rd(apic, Reg.TPR) == 0xFF
    wr(apic, Reg.SVR, 0xFFFFFFFF)
    assert rd(apic, Reg.SVR) == 0x3FF
    wr(apic, Reg.ICR_HIGH, 0xFFFFFFFF)
    assert rd(apic, Reg.ICR_HIGH) == 0xFF000000
    wr(apic, Reg.TIMER_DIVIDE, 0xFFFFFFFF)
    assert rd(apic, Reg.TIMER_DIVIDE) == 0xB
    expected = {LVT_TIMER: 0x000700FF, LVT_THERMAL: 0x000107FF, LVT_PERF: 0x000107FF,
                LVT_LINT0: 0x0001A7FF, LVT_LINT1: 0x0001A7FF, LVT_ERROR: 0x000100FF}
    for reg, mask in expected.items():
        wr(apic, reg, 0xFFFFFFFF)
        assert rd(apic, reg) == mask, hex(reg)


def test_read_only_registers_ignore_writes():
    apic = enabled()
    apic.accept(Delivery.FIXED, 0x40)
    for reg in (Reg.VERSION, Reg.PPR, Reg.APR, Reg.IRR + 0x20, Reg.TIMER_CURRENT):
        before = rd(apic, reg)
        wr(apic, reg, 0)
        assert rd(apic, reg) == before


def test_software_disable_masks_every_lvt_and_keeps_them_masked():
    apic = enabled()
    wr(apic, LVT_LINT0, 0x700)
    assert rd(apic, LVT_LINT0) == 0x700
    wr(apic, Reg.SVR, 0xFF)                                  # software disable
    assert rd(apic, LVT_LINT0) == MASKED | 0x700
    wr(apic, LVT_LINT0, 0x700)
    assert rd(apic, LVT_LINT0) & MASKED                      # cannot be cleared while disabled


def test_narrow_reads_give_register_bytes_and_narrow_writes_are_ignored():
    apic = LocalApic(0x12)
    assert apic.mmio_read(Reg.ID + 3, 1) == 0x12
    assert apic.mmio_read(Reg.VERSION, 2) == 0x0014
    assert apic.mmio_read(Reg.ID + 4, 4) == 0                # bytes 4-15 of a register
    apic.mmio_write(Reg.TPR, 1, 0x50)
    assert rd(apic, Reg.TPR) == 0


# -- priority and in-service (SDM 10.8) -------------------------------------------------------

@pytest.mark.parametrize("tpr, isrv, ppr", [
    (0x00, None, 0x00), (0x35, None, 0x35), (0x00, 0x41, 0x40), (0x45, 0x41, 0x45),
    (0x3F, 0x41, 0x40), (0x50, 0x41, 0x50)])
def test_processor_priority(tpr, isrv, ppr):
    apic = enabled()
    if isrv is not None:
        apic.accept(Delivery.FIXED, isrv)
        assert apic.acknowledge() == isrv
    wr(apic, Reg.TPR, tpr)
    assert rd(apic, Reg.PPR) == ppr


def test_fixed_interrupt_acceptance_nesting_and_eoi():
    apic = enabled()
    apic.accept(Delivery.FIXED, 0x31)
    apic.accept(Delivery.FIXED, 0x35)
    assert irr_bits(apic) == (1 << 0x31) | (1 << 0x35)
    assert apic.pending()
    assert apic.acknowledge() == 0x35                        # highest vector first
    assert isr_bits(apic) == 1 << 0x35
    assert not apic.pending()                                # 0x31 is in the same class
    apic.accept(Delivery.FIXED, 0x61)
    assert apic.pending() and apic.acknowledge() == 0x61     # a higher class nests
    wr(apic, Reg.EOI, 0)                                     # ends 0x61, the highest in service
    assert isr_bits(apic) == 1 << 0x35
    wr(apic, Reg.EOI, 0)
    assert apic.acknowledge() == 0x31
    wr(apic, Reg.EOI, 0)
    assert isr_bits(apic) == irr_bits(apic) == 0
    assert apic.stats.delivered[0x31] == 1


def test_tpr_holds_back_its_class_and_below():
    apic = enabled()
    wr(apic, Reg.TPR, 0x40)
    apic.accept(Delivery.FIXED, 0x4F)
    assert not apic.pending()
    apic.accept(Delivery.FIXED, 0x50)
    assert apic.pending()
    wr(apic, Reg.TPR, 0x50)
    assert not apic.pending()
    wr(apic, Reg.TPR, 0)
    assert apic.acknowledge() == 0x50


def test_request_withdrawn_before_inta_gives_the_spurious_vector():
    apic = enabled()
    wr(apic, Reg.SVR, 0x1EF)
    apic.accept(Delivery.FIXED, 0x40)
    assert apic.pending()
    wr(apic, Reg.TPR, 0xF0)                                  # raised between INTR and INTA
    assert apic.acknowledge() == 0xEF
    assert isr_bits(apic) == 0 and irr_bits(apic) == 1 << 0x40
    assert apic.stats.spurious == 1


def test_irr_holds_one_request_per_vector():
    apic = enabled()
    apic.accept(Delivery.FIXED, 0x40)
    apic.accept(Delivery.FIXED, 0x40)
    assert apic.acknowledge() == 0x40
    apic.accept(Delivery.FIXED, 0x40)                        # one more while in service
    wr(apic, Reg.EOI, 0)
    assert apic.acknowledge() == 0x40
    wr(apic, Reg.EOI, 0)
    assert not apic.pending()


@pytest.mark.parametrize("tpr, isrv, irrv, apr", [
    (0x20, None, None, 0x20), (0x20, 0x41, None, 0x40), (0x50, 0x41, 0x61, 0x60),
    (0x72, 0x41, 0x61, 0x72), (0x00, None, 0x61, 0x60)])
def test_arbitration_priority(tpr, isrv, irrv, apr):
    apic = enabled()
    if isrv is not None:
        apic.accept(Delivery.FIXED, isrv)
        apic.acknowledge()
    if irrv is not None:
        wr(apic, Reg.TPR, 0xFF)
        apic.accept(Delivery.FIXED, irrv)
    wr(apic, Reg.TPR, tpr)
    assert rd(apic, Reg.APR) == apr


def test_software_disabled_apic_drops_fixed_but_takes_nmi_and_init():
    apic = LocalApic(1)
    apic.accept(Delivery.FIXED, 0x40)
    assert irr_bits(apic) == 0 and apic.stats.dropped == 1
    apic.accept(Delivery.NMI, 0)
    assert apic.take_nmi() and not apic.take_nmi()
    apic.accept(Delivery.INIT, 0)
    assert apic.take_init() and apic.wait_for_sipi


# -- errors (SDM 10.5.3) ---------------------------------------------------------------------

def test_esr_reports_after_a_write_and_clears_on_back_to_back_writes():
    apic = enabled()
    apic.accept(Delivery.FIXED, 0x05)                        # vectors 0-15 are illegal
    assert irr_bits(apic) == 0
    assert rd(apic, Reg.ESR) == 0                            # not visible before a write
    wr(apic, Reg.ESR, 0)
    assert rd(apic, Reg.ESR) == ESR_RECEIVE_ILLEGAL_VECTOR
    wr(apic, Reg.ESR, 0)
    assert rd(apic, Reg.ESR) == 0


def test_send_illegal_vector_and_illegal_register():
    apic = enabled()
    wr(apic, Reg.ICR_LOW, 0x0000000F)
    rd(apic, 0x3F0)                                          # reserved offset
    wr(apic, Reg.ESR, 0)
    assert rd(apic, Reg.ESR) == ESR_SEND_ILLEGAL_VECTOR | ESR_ILLEGAL_REGISTER


def test_error_interrupt_through_lvt_error():
    apic = enabled()
    wr(apic, LVT_ERROR, 0xFE)
    apic.accept(Delivery.FIXED, 0x01)
    assert apic.acknowledge() == 0xFE


# -- the timer (SDM 10.5.4) --------------------------------------------------------------------

@pytest.mark.parametrize("dcr, divisor", [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32),
                                           (0x9, 64), (0xA, 128), (0xB, 1)])
def test_timer_divide_configuration(dcr, divisor):
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, dcr)
    wr(apic, LVT_TIMER, 0x40)
    wr(apic, Reg.TIMER_INITIAL, 100)
    assert apic.next_event_ns() == 100 * divisor * 10       # 100 MHz bus clock
    clock.ns = 10 * divisor * 30
    assert rd(apic, Reg.TIMER_CURRENT) == 70


def test_one_shot_timer_fires_once_at_the_exact_count():
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, 0xB)
    wr(apic, LVT_TIMER, 0x40)
    wr(apic, Reg.TIMER_INITIAL, 1000)
    apic.advance_to(9_999)
    assert not apic.pending()
    clock.ns = 9_999
    assert rd(apic, Reg.TIMER_CURRENT) == 1
    apic.advance_to(10_000)
    assert apic.acknowledge() == 0x40
    clock.ns = 50_000
    apic.advance_to(50_000)
    assert rd(apic, Reg.TIMER_CURRENT) == 0
    assert apic.next_event_ns() is None and apic.stats.timer_expiries == 1


def test_periodic_timer_period_in_virtual_time_and_coalescing():
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, 0x3)                          # divide by 16
    wr(apic, LVT_TIMER, 1 << 17 | 0x41)
    wr(apic, Reg.TIMER_INITIAL, 625)                         # 625 * 16 * 10 ns = 100 us
    fired = []
    for step in range(1, 11):
        t = apic.next_event_ns()
        assert t == step * 100_000
        clock.ns = t
        apic.advance_to(t)
        fired.append(apic.acknowledge())
        wr(apic, Reg.EOI, 0)
    assert fired == [0x41] * 10
    clock.ns = 1_000_000 + 350_000                           # three and a half periods later
    apic.advance_to(clock.ns)
    assert apic.stats.timer_expiries == 13 and apic.stats.timer_coalesced == 2
    assert rd(apic, Reg.TIMER_CURRENT) == 625 - (50_000 // 160)


def test_zero_initial_count_stops_the_timer_and_masked_timer_still_counts():
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, 0xB)
    wr(apic, LVT_TIMER, MASKED | 0x40)
    wr(apic, Reg.TIMER_INITIAL, 100)
    clock.ns = 500
    assert rd(apic, Reg.TIMER_CURRENT) == 50
    apic.advance_to(2000)
    assert not apic.pending() and apic.stats.timer_expiries == 1
    wr(apic, Reg.TIMER_INITIAL, 100)
    wr(apic, Reg.TIMER_INITIAL, 0)
    assert apic.next_event_ns() is None


def test_tsc_deadline_mode():
    clock = Clock()
    apic = enabled(clock=clock)                              # TSC = ns / 10
    wr(apic, LVT_TIMER, 2 << 17 | 0x42)
    wr(apic, Reg.TIMER_INITIAL, 1234)                        # ignored in this mode
    assert rd(apic, Reg.TIMER_INITIAL) == 0 and apic.next_event_ns() is None
    clock.ns = 1000
    apic.write_msr(0x6E0, 500)                               # TSC 100 now: 400 ticks ahead
    assert apic.read_msr(0x6E0) == 500 and apic.next_event_ns() == 5000
    clock.ns = 5000
    apic.advance_to(5000)
    assert apic.acknowledge() == 0x42
    assert apic.read_msr(0x6E0) == 0                         # cleared once it fired
    wr(apic, Reg.EOI, 0)
    apic.write_msr(0x6E0, 10)                                # already past: fires at once
    assert apic.pending()
    apic.write_msr(0x6E0, 10**6)
    wr(apic, LVT_TIMER, 0x42)                                # leaving the mode disarms
    assert apic.next_event_ns() is None and apic.read_msr(0x6E0) == 0
    apic.write_msr(0x6E0, 10**6)                             # ignored outside the mode
    assert apic.next_event_ns() is None


def test_tsc_deadline_not_offered_when_cpuid_does_not_report_it():
    apic = enabled(tsc_deadline=False)
    wr(apic, LVT_TIMER, 2 << 17 | 0x42)
    assert rd(apic, LVT_TIMER) == 0x42
    assert apic.read_msr(0x6E0) is None and not apic.write_msr(0x6E0, 1)


# -- IA32_APIC_BASE (SDM 10.4.4) ----------------------------------------------------------------

def test_apic_base_msr_reserved_bits_fault_and_bsp_is_read_only():
    apic = LocalApic(0, bsp=True)
    for bad in (1 << 32, 1 << 10, 1 << 9, 0xFF):
        with pytest.raises(ApicMsrFault):
            apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE | 0x800 | bad)
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE | 0x800)
    assert apic.read_msr(MSR_APIC_BASE) == DEFAULT_BASE | 0x900
    assert apic.read_msr(0x10) is None and not apic.write_msr(0x10, 0)


def test_global_disable_returns_to_power_up_state_and_hides_the_page():
    mmio = MmioBus()
    bus = ApicBus(mmio)
    apic = enabled(5)
    bus.attach(apic)
    wr(apic, Reg.TPR, 0x30)
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE)              # EN = 0
    assert mmio.read(DEFAULT_BASE + Reg.ID, 4) == 0xFFFFFFFF
    apic.accept(Delivery.FIXED, 0x40)
    assert not apic.pending()
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE | 0x800)
    assert mmio.read(DEFAULT_BASE + Reg.ID, 4) == 5 << 24
    assert mmio.read(DEFAULT_BASE + Reg.TPR, 4) == 0 and mmio.read(DEFAULT_BASE + Reg.SVR, 4) == 0xFF


def test_relocated_page():
    mmio = MmioBus()
    bus = ApicBus(mmio)
    apic = LocalApic(2)
    bus.attach(apic)
    apic.write_msr(MSR_APIC_BASE, 0xFED00000 | 0x800)
    assert mmio.read(0xFED00000 + Reg.ID, 4) == 2 << 24
    assert mmio.read(DEFAULT_BASE + Reg.ID, 4) == 0xFFFFFFFF


def test_each_cpu_sees_its_own_apic_at_the_same_address():
    mmio = MmioBus()
    bus = ApicBus(mmio)
    for i in range(3):
        bus.attach(LocalApic(i, bsp=i == 0))
    for i in range(3):
        bus.current = i
        assert mmio.read(DEFAULT_BASE + Reg.ID, 4) == i << 24


# -- LINT0 / LINT1 (SDM 10.5.1) ----------------------------------------------------------------

class FakePic:
    def __init__(self):
        self.int_pin, self.vector = False, 0x20

    def pending(self):
        return self.int_pin

    def acknowledge(self):
        self.int_pin = False
        return self.vector


def test_virtual_wire_mode_takes_the_8259_vector_through_lint0():
    pic = FakePic()
    apic = LocalApic(0, bsp=True, extint=pic)
    pic.int_pin = True
    assert not apic.pending()                                # LINT0 masked at power-up
    wr(apic, Reg.SVR, 0x1FF)
    wr(apic, LVT_LINT0, 0x700)                               # ExtINT, as firmware leaves it
    assert apic.pending()
    wr(apic, Reg.TPR, 0xFF)                                  # ExtINT bypasses the priorities
    assert apic.acknowledge() == 0x20
    assert isr_bits(apic) == 0 and not apic.pending()


def test_globally_disabled_apic_passes_intr_and_nmi_pins_through():
    pic = FakePic()
    apic = LocalApic(0, bsp=True, extint=pic)
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE)
    pic.int_pin = True
    assert apic.pending() and apic.acknowledge() == 0x20
    apic.set_lint(1, 1)
    assert apic.take_nmi()


def test_lint1_nmi_and_lint0_fixed_edge():
    apic = enabled()
    wr(apic, LVT_LINT1, 0x400)
    apic.set_lint(1, 1)
    apic.set_lint(1, 1)                                      # no second edge
    assert apic.take_nmi() and not apic.take_nmi()
    wr(apic, LVT_LINT0, 0x33)
    apic.set_lint(0, 1)
    assert apic.acknowledge() == 0x33
    assert rd(apic, Reg.TMR + 0x10) == 0


def test_lint0_level_triggered_fixed_uses_remote_irr():
    apic = enabled()
    wr(apic, LVT_LINT0, 1 << 15 | 0x34)
    apic.set_lint(0, 1)
    assert rd(apic, LVT_LINT0) & (1 << 14)                   # remote IRR
    assert rd(apic, Reg.TMR + 0x10) == 1 << (0x34 - 32)
    assert apic.acknowledge() == 0x34
    apic.set_lint(0, 1)
    assert not apic.pending()                                # held off by remote IRR
    wr(apic, Reg.EOI, 0)                                     # line still high: again
    assert apic.pending() and apic.acknowledge() == 0x34
    apic.set_lint(0, 0)
    wr(apic, Reg.EOI, 0)
    assert not apic.pending() and not rd(apic, LVT_LINT0) & (1 << 14)


def test_timer_mode_changes_keep_the_count_going():
    """The sequence of kvm-unit-tests' x86/apic.c test_apic_change_mode."""
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, 0xB)
    tmict = 1000
    wr(apic, Reg.TIMER_INITIAL, tmict)
    wr(apic, LVT_TIMER, 1 << 17 | 0x40)                      # to periodic
    assert rd(apic, Reg.TIMER_INITIAL) == tmict
    wr(apic, LVT_TIMER, 0x40)                                # one-shot, restarted
    wr(apic, Reg.TIMER_INITIAL, tmict)
    assert rd(apic, Reg.TIMER_CURRENT) == tmict
    clock.ns += tmict * 10
    assert rd(apic, Reg.TIMER_CURRENT) == 0                  # one-shot reached 0
    wr(apic, Reg.TIMER_INITIAL, tmict)
    clock.ns += 600 * 10
    wr(apic, LVT_TIMER, 1 << 17 | 0x40)                      # one-shot -> periodic mid-count
    assert rd(apic, Reg.TIMER_CURRENT) == 400                # not reset
    clock.ns += 400 * 10 + 100 * 10
    assert rd(apic, Reg.TIMER_CURRENT) == 900                # wrapped to the initial count
    clock.ns += 500 * 10
    wr(apic, LVT_TIMER, 0x40)                                # periodic -> one-shot mid-count
    assert rd(apic, Reg.TIMER_CURRENT) == 400
    clock.ns += 400 * 10
    assert rd(apic, Reg.TIMER_CURRENT) == 0
    clock.ns += 10_000
    assert rd(apic, Reg.TIMER_CURRENT) == 0                  # and stays there
    wr(apic, LVT_TIMER, 1 << 17 | 0x40)                      # expired one-shot -> periodic
    clock.ns += 10_000
    assert rd(apic, Reg.TIMER_CURRENT) == 0                  # stays at zero


def test_tsc_deadline_at_the_present_tsc_fires_at_once():
    """kvm-unit-tests: wrmsr(TSCDEADLINE, rdmsr(TSC)); the next instruction sees it."""
    clock = Clock()
    clock.ns = 12_340
    apic = enabled(clock=clock)
    wr(apic, LVT_TIMER, 2 << 17 | 0xEF)
    apic.write_msr(0x6E0, apic.tsc())
    assert apic.acknowledge() == 0xEF and apic.read_msr(0x6E0) == 0


# -- the priority rules as properties (SDM 10.8.3) ------------------------------------------


OPS = st.lists(st.one_of(
    st.tuples(st.just("accept"), st.integers(16, 255)),
    st.tuples(st.just("tpr"), st.integers(0, 255)),
    st.tuples(st.just("ack"), st.just(0)),
    st.tuples(st.just("eoi"), st.just(0))), max_size=60)


def _class(vector):
    return vector >> 4


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_delivery_respects_priority_classes(ops):
    apic = enabled()
    wr(apic, Reg.SVR, 0x10F)                                 # spurious vector 0x0F
    for op, arg in ops:
        irr, isr, tpr = apic.irr, apic.isr, apic.tpr
        blocking = max(_class(tpr), _class(isr.bit_length() - 1) if isr else 0)
        eligible = [v for v in range(256) if irr >> v & 1 and _class(v) > blocking]
        if op == "accept":
            apic.accept(Delivery.FIXED, arg)
            assert apic.irr >> arg & 1
        elif op == "tpr":
            wr(apic, Reg.TPR, arg)
        elif op == "ack":
            assert apic.pending() == bool(eligible)
            vector = apic.acknowledge()
            if eligible:
                assert vector == max(eligible)               # the highest eligible, into the ISR
                assert apic.isr == isr | 1 << vector and not apic.irr >> vector & 1
            else:
                assert vector == 0x0F and apic.isr == isr and apic.irr == irr
        else:
            wr(apic, Reg.EOI, 0)
            top = isr.bit_length() - 1
            assert apic.isr == (isr & ~(1 << top) if isr else 0)
        # In-service vectors nest by class: never two of one class.
        classes = [_class(v) for v in range(256) if apic.isr >> v & 1]
        assert len(classes) == len(set(classes))
