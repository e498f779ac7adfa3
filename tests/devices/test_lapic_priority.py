"""The local APIC's priority and in-service rules against the Intel SDM vol. 3A 10.8."""
import pytest
from hypothesis import given, settings, strategies as st

from ringvisor.devices.lapic import Delivery, LocalApic, Reg
from lapic_rig import enabled, irr_bits, isr_bits, rd, wr


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
