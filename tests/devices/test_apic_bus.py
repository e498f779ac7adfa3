"""IPIs and interrupt messages between local APICs (SDM vol. 3A 10.6, 10.7, 8.4)."""
import pytest

from ringvisor.devices.apic_bus import ApicBus
from ringvisor.devices.lapic import DEFAULT_BASE, Delivery, LocalApic, Reg
from ringvisor.machine.bus import MmioBus

FIXED, LOWEST, NMI, INIT, STARTUP = 0, 1, 4, 5, 6
LOGICAL = 1 << 11
ASSERT = 1 << 14
LEVEL = 1 << 15
SELF, ALL, OTHERS = 1 << 18, 2 << 18, 3 << 18


def machine(n=4, enable=True):
    mmio = MmioBus()
    bus = ApicBus(mmio)
    apics = [LocalApic(i, bsp=i == 0) for i in range(n)]
    for apic in apics:
        bus.attach(apic)
        if enable:
            apic.mmio_write(Reg.SVR, 4, 0x1FF)
    return bus, apics


def ipi(apic, low, dest=0):
    apic.mmio_write(Reg.ICR_HIGH, 4, dest << 24)
    apic.mmio_write(Reg.ICR_LOW, 4, low)


def who_got(apics, vector):
    return [a.initial_id for a in apics if a.irr >> vector & 1]


def test_physical_destination_and_broadcast():
    bus, apics = machine()
    ipi(apics[0], FIXED << 8 | 0x40, dest=2)
    assert who_got(apics, 0x40) == [2]
    ipi(apics[0], FIXED << 8 | 0x41, dest=0xFF)
    assert who_got(apics, 0x41) == [0, 1, 2, 3]
    ipi(apics[0], FIXED << 8 | 0x42, dest=9)                 # nobody has ID 9
    assert who_got(apics, 0x42) == []


def test_logical_flat_model():
    bus, apics = machine()
    for i, apic in enumerate(apics):
        apic.mmio_write(Reg.LDR, 4, (1 << i) << 24)          # what Linux's flat mode does
    ipi(apics[0], LOGICAL | 0x50, dest=0b1010)
    assert who_got(apics, 0x50) == [1, 3]
    ipi(apics[0], LOGICAL | 0x51, dest=0xFF)
    assert who_got(apics, 0x51) == [0, 1, 2, 3]


def test_logical_cluster_model():
    bus, apics = machine()
    for i, apic in enumerate(apics):
        apic.mmio_write(Reg.DFR, 4, 0x0FFFFFFF)
        cluster, member = divmod(i, 2)
        apic.mmio_write(Reg.LDR, 4, (cluster << 4 | 1 << member) << 24)
    ipi(apics[0], LOGICAL | 0x52, dest=0x12)                 # cluster 1, member bit 1
    assert who_got(apics, 0x52) == [3]
    ipi(apics[0], LOGICAL | 0x53, dest=0xF1)                 # every cluster, member bit 0
    assert who_got(apics, 0x53) == [0, 2]


@pytest.mark.parametrize("shorthand, expected", [(SELF, [1]), (ALL, [0, 1, 2, 3]), (OTHERS, [0, 2, 3])])
def test_destination_shorthands(shorthand, expected):
    bus, apics = machine()
    ipi(apics[1], shorthand | 0x60, dest=3)                  # the destination field is ignored
    assert who_got(apics, 0x60) == expected


def test_invalid_shorthand_combinations_are_not_sent():
    bus, apics = machine()
    ipi(apics[1], SELF | NMI << 8)
    ipi(apics[1], ALL | INIT << 8 | ASSERT)
    ipi(apics[1], SELF | LOWEST << 8 | 0x61)
    assert not any(a.nmi_pending or a.init_pending for a in apics)
    assert who_got(apics, 0x61) == []
    ipi(apics[1], OTHERS | NMI << 8)
    assert [a.initial_id for a in apics if a.take_nmi()] == [0, 2, 3]


def test_ipis_are_edge_triggered_even_with_the_level_bit():
    bus, apics = machine()
    ipi(apics[0], LEVEL | ASSERT | 0x70, dest=1)
    assert apics[1].irr >> 0x70 & 1 and not apics[1].tmr >> 0x70 & 1


def test_lowest_priority_goes_to_the_lowest_arbitration_priority():
    bus, apics = machine()
    for apic, tpr in zip(apics, (0x40, 0x20, 0x30, 0x20)):
        apic.mmio_write(Reg.TPR, 4, tpr)
    ipi(apics[0], LOWEST << 8 | 0x80, dest=0xFF)
    assert who_got(apics, 0x80) == [1]                       # ties: the first attached
    apics[1].acknowledge()
    ipi(apics[0], LOWEST << 8 | 0x81, dest=0xFF)
    assert who_got(apics, 0x81) == [3]                       # CPU 1 now runs at class 8


def test_lowest_priority_prefers_a_focus_processor():
    bus, apics = machine()
    apics[2].mmio_write(Reg.TPR, 4, 0x70)
    apics[2].accept(Delivery.FIXED, 0x90)
    apics[2].acknowledge()                                   # 0x90 in service on CPU 2
    ipi(apics[0], LOWEST << 8 | 0x90, dest=0xFF)
    assert who_got(apics, 0x90) == [2]
    apics[2].mmio_write(Reg.SVR, 4, 0x3FF)                   # focus checking disabled
    ipi(apics[0], LOWEST << 8 | 0x90, dest=0xFF)
    assert who_got(apics, 0x90) == [0, 2]


def test_nmi_ipi():
    bus, apics = machine()
    ipi(apics[0], NMI << 8, dest=3)
    assert apics[3].take_nmi() and not apics[1].nmi_pending


def test_init_sipi_sipi_starts_an_application_processor():
    """The MP start-up sequence (SDM 8.4.4.1): INIT, then two SIPIs."""
    bus, apics = machine(2, enable=False)
    bsp, ap = apics
    bsp.mmio_write(Reg.SVR, 4, 0x1FF)
    ap.mmio_write(Reg.ID, 4, 0x07 << 24)                     # INIT keeps a changed ID
    woken = []
    ap.on_wake = lambda: woken.append(1)
    ipi(bsp, LEVEL | ASSERT | INIT << 8, dest=7)             # INIT assert
    assert ap.take_init() and ap.wait_for_sipi and woken
    ipi(bsp, LEVEL | INIT << 8, dest=7)                      # INIT de-assert: no effect
    assert not ap.take_init()
    assert ap.mmio_read(Reg.ID, 4) == 0x07 << 24 and ap.mmio_read(Reg.SVR, 4) == 0xFF
    ipi(bsp, ASSERT | STARTUP << 8 | 0x9A, dest=7)
    assert ap.take_sipi() == 0x9A and not ap.wait_for_sipi
    ipi(bsp, ASSERT | STARTUP << 8 | 0x9B, dest=7)           # the second SIPI finds it running
    assert ap.take_sipi() is None
    assert bsp.stats.ipis_sent == {"INIT": 2, "STARTUP": 2}


def test_sipi_without_init_is_ignored_and_init_on_the_bsp_does_not_park_it():
    bus, apics = machine(2)
    ipi(apics[0], STARTUP << 8 | 0x10, dest=1)
    assert apics[1].take_sipi() is None
    ipi(apics[1], INIT << 8 | ASSERT, dest=0)
    assert apics[0].take_init() and not apics[0].wait_for_sipi


def test_level_triggered_message_sets_tmr_and_eoi_reaches_the_io_apics():
    bus, apics = machine(2)

    class IoApic:
        eois = []

        def eoi(self, vector):
            self.eois.append(vector)
    bus.attach_ioapic(IoApic())
    bus.deliver(dest=1, logical=False, mode=Delivery.FIXED, vector=0xA0, level=True)
    assert apics[1].tmr >> 0xA0 & 1
    assert apics[1].acknowledge() == 0xA0
    apics[1].mmio_write(Reg.EOI, 4, 0)
    assert IoApic.eois == [0xA0]
    bus.deliver(dest=1, logical=False, mode=Delivery.FIXED, vector=0xA1, level=False)
    apics[1].acknowledge()
    apics[1].mmio_write(Reg.EOI, 4, 0)
    assert IoApic.eois == [0xA0]                             # edge: no EOI message


def test_bus_gathers_the_timers():
    bus, apics = machine(2)
    for apic, count in zip(apics, (500, 300)):
        apic.mmio_write(Reg.TIMER_DIVIDE, 4, 0xB)
        apic.mmio_write(0x320, 4, 0x30)
        apic.mmio_write(Reg.TIMER_INITIAL, 4, count)
    assert bus.next_event_ns() == 3000
    bus.advance_to(5000)
    assert apics[0].pending() and apics[1].pending()


def test_duplicate_apic_ids_are_refused():
    bus = ApicBus(MmioBus())
    bus.attach(LocalApic(1))
    with pytest.raises(Exception, match="two local APICs with ID 1"):
        bus.attach(LocalApic(1))


def test_mmio_icr_write_through_the_window_sends_from_the_running_cpu():
    bus, apics = machine(3)
    bus.current = 2
    bus.mmio.write(DEFAULT_BASE + Reg.ICR_LOW, 4, SELF | 0x77)
    assert who_got(apics, 0x77) == [2]


def test_one_lock_orders_device_threads_and_the_cpu():
    """The UART's reader thread raises lines while the vCPU acknowledges:
    every APIC and I/O APIC on a bus share its lock."""
    import threading

    from ringvisor.devices.ioapic import IoApic
    bus, apics = machine(2)
    ioapic = IoApic(2)
    bus.attach_ioapic(ioapic)
    assert all(a.lock is bus.lock for a in apics) and ioapic.lock is bus.lock
    ioapic.write_register(0x10 + 2 * 4, 0x41)                # pin 4 -> CPU 0, edge
    taken = []

    def device():
        for _ in range(2000):
            ioapic.set_irq(4, 1)
            ioapic.set_irq(4, 0)
    thread = threading.Thread(target=device)
    thread.start()
    while thread.is_alive() or apics[0].pending():
        if apics[0].pending():
            taken.append(apics[0].acknowledge())
            apics[0].mmio_write(Reg.EOI, 4, 0)
    thread.join()
    assert set(taken) <= {0x41} and ioapic.messages[4] == 2000
    assert apics[0].isr == 0
