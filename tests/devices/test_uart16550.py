import threading

import pytest

from ringvisor.devices.uart16550 import IIR, LSR, MSR, Uart16550

RBR = THR = DLL = 0
IER = DLM = 1
IIR_ = FCR = 2
LCR, MCR, LSR_, MSR_, SCR = 3, 4, 5, 6, 7


class Wire:
    """Records the IRQ line as the PIC would see it."""

    def __init__(self):
        self.level = 0
        self.edges = 0
        self.history = []

    def __call__(self, level):
        assert level != self.level, "the UART only reports changes"
        if level:
            self.edges += 1
        self.level = level
        self.history.append(level)


@pytest.fixture
def wire():
    return Wire()


@pytest.fixture
def out():
    return bytearray()


@pytest.fixture
def uart(wire, out):
    return Uart16550(irq=wire, output=out.extend)


def rd(u, reg):
    return u.io_read(reg, 1)


def wr(u, reg, value):
    u.io_write(reg, 1, value)


# -- reset state and plain registers --------------------------------------------

def test_reset_values(uart):
    assert rd(uart, IER) == 0
    assert rd(uart, IIR_) == 0x01          # no interrupt, FIFOs off
    assert rd(uart, LCR) == 0
    assert rd(uart, MCR) == 0
    assert rd(uart, LSR_) == LSR.THRE | LSR.TEMT == 0x60
    assert rd(uart, MSR_) & 0xF0 == MSR.CTS | MSR.DSR | MSR.DCD


def test_scratch_register(uart):
    for v in (0x00, 0x55, 0xAA, 0xFF):
        wr(uart, SCR, v)
        assert rd(uart, SCR) == v


def test_dlab_switches_divisor_latch(uart):
    wr(uart, IER, 0x05)
    wr(uart, LCR, 0x83)                    # DLAB | 8 bits
    wr(uart, DLL, 0x01)
    wr(uart, DLM, 0x00)
    assert rd(uart, DLL) == 1 and rd(uart, DLM) == 0
    assert uart.baud == 115200
    wr(uart, LCR, 0x03)
    assert rd(uart, IER) == 0x05           # IER untouched by the DLM write
    assert rd(uart, LCR) == 0x03
    wr(uart, LCR, 0x80)
    wr(uart, DLL, 0x0C)
    assert uart.baud == 9600


def test_ier_high_bits_read_zero(uart):
    # Linux autoconfig: IER=0 reads 0, IER=0x0F reads back 0x0F (low nibble).
    wr(uart, IER, 0xFF)
    assert rd(uart, IER) == 0x0F


def test_mcr_high_bits_read_zero(uart):
    wr(uart, MCR, 0xFF)
    assert rd(uart, MCR) == 0x1F


# -- transmit --------------------------------------------------------------------

def test_transmit_goes_to_output_at_once(uart, out):
    for ch in b"hi\n":
        wr(uart, THR, ch)
        assert rd(uart, LSR_) & 0x60 == 0x60
    assert bytes(out) == b"hi\n"
    assert uart.stats.bytes_out == 3


def test_writes_to_read_only_registers_are_ignored(uart, out):
    wr(uart, LSR_, 0x00)
    wr(uart, MSR_, 0x00)
    assert rd(uart, LSR_) == 0x60
    assert rd(uart, MSR_) & 0xF0 == 0xB0
    assert not out


# -- FIFO and the 16550A signature -----------------------------------------------

def test_fifo_signature(uart):
    wr(uart, FCR, 0x01)
    assert rd(uart, IIR_) & 0xC0 == 0xC0
    wr(uart, FCR, 0x00)
    assert rd(uart, IIR_) & 0xC0 == 0x00


def test_fifo_holds_sixteen_then_overruns(uart):
    wr(uart, FCR, 0x07)
    assert uart.receive(bytes(range(20))) == 16
    assert uart.stats.bytes_dropped == 4
    lsr = rd(uart, LSR_)
    assert lsr & LSR.OE and lsr & LSR.DR
    assert not rd(uart, LSR_) & LSR.OE      # reported once
    got = [rd(uart, RBR) for _ in range(16)]
    assert got == list(range(16))
    assert not rd(uart, LSR_) & LSR.DR


def test_non_fifo_mode_holds_one_byte_and_overwrites(uart):
    assert uart.receive(b"ab") == 1
    assert rd(uart, LSR_) & (LSR.OE | LSR.DR) == LSR.OE | LSR.DR
    assert rd(uart, RBR) == ord("b")        # the holding register was overwritten


def test_fcr_clear_rx(uart):
    wr(uart, FCR, 0x01)
    uart.receive(b"xyz")
    wr(uart, FCR, 0x03)
    assert not rd(uart, LSR_) & LSR.DR
    assert uart.rx_room() == 16


def test_toggling_fifo_enable_empties_fifo(uart):
    wr(uart, FCR, 0x01)
    uart.receive(b"xyz")
    wr(uart, FCR, 0x00)
    assert not rd(uart, LSR_) & LSR.DR
    assert uart.rx_room() == 1


def test_fcr_bits_need_fcr0(uart):
    wr(uart, FCR, 0xC1)                      # trigger 14
    assert uart.trigger_level == 14
    wr(uart, FCR, 0x40 | 0x01)
    assert uart.trigger_level == 4
    wr(uart, FCR, 0x00)
    wr(uart, FCR, 0x80)                      # ignored: FCR0 clear
    assert uart.trigger_level == 4


def test_reading_empty_rbr_is_defined(uart):
    assert rd(uart, RBR) == 0
    uart.receive(b"q")
    assert rd(uart, RBR) == ord("q")
    assert rd(uart, RBR) == ord("q")         # stale holding register


# -- interrupts --------------------------------------------------------------------

def enable_irq_gate(u):
    wr(u, MCR, 0x0B)                         # DTR | RTS | OUT2, what Linux sets


def test_out2_gates_the_irq_line(uart, wire):
    wr(uart, IER, 0x01)
    uart.receive(b"x")
    assert rd(uart, IIR_) == IIR.RX_DATA     # pending inside the chip...
    assert wire.level == 0                   # ...but not on the PIC's pin
    enable_irq_gate(uart)
    assert wire.level == 1
    wr(uart, MCR, 0x03)
    assert wire.level == 0


def test_rx_interrupt_cleared_by_reading_rbr(uart, wire):
    enable_irq_gate(uart)
    wr(uart, IER, 0x01)
    uart.receive(b"a")
    assert wire.level == 1 and wire.edges == 1
    assert rd(uart, IIR_) == 0x04
    assert rd(uart, RBR) == ord("a")
    assert rd(uart, IIR_) == 0x01
    assert wire.level == 0
    assert uart.stats.interrupts == 1


def test_trigger_level_and_timeout(uart):
    wr(uart, FCR, 0x81)                      # FIFO on, trigger 8
    wr(uart, IER, 0x01)
    uart.receive(b"abc")
    assert rd(uart, IIR_) == 0xCC            # below trigger: character timeout
    uart.receive(b"defgh")
    assert rd(uart, IIR_) == 0xC4            # trigger reached: data available
    rd(uart, RBR)
    assert rd(uart, IIR_) == 0xCC            # below again
    for _ in range(7):
        rd(uart, RBR)
    assert rd(uart, IIR_) == 0xC1


def test_thre_interrupt_on_enable_and_cleared_by_iir_read(uart, wire):
    enable_irq_gate(uart)
    wr(uart, IER, 0x02)
    assert wire.level == 1
    assert rd(uart, IIR_) == 0x02            # THRE is the source: this read clears it
    assert wire.level == 0
    assert rd(uart, IIR_) == 0x01


def test_linux_thre_test_reasserts(uart):
    # serial8250_THRE_test: IER=THRI, read IIR, IER=0, IER=THRI, read IIR.
    wr(uart, IER, 0x02)
    iir1 = rd(uart, IIR_)
    wr(uart, IER, 0x00)
    wr(uart, IER, 0x02)
    iir2 = rd(uart, IIR_)
    assert iir1 == 0x02 and iir2 == 0x02


def test_thre_interrupt_after_thr_write(uart, wire, out):
    enable_irq_gate(uart)
    wr(uart, IER, 0x02)
    rd(uart, IIR_)
    assert wire.level == 0
    wr(uart, THR, ord("z"))                  # byte leaves, THR empty again
    assert wire.level == 1 and wire.edges == 2
    wr(uart, IER, 0x00)                      # driver stops TX
    assert wire.level == 0
    assert rd(uart, IIR_) == 0x01


def test_thre_not_cleared_by_iir_read_when_not_the_source(uart):
    wr(uart, IER, 0x03)
    uart.receive(b"x")
    assert rd(uart, IIR_) == 0x04            # RX outranks THRE
    rd(uart, RBR)
    assert rd(uart, IIR_) == 0x02            # THRE still latched


def test_line_status_has_top_priority(uart):
    wr(uart, FCR, 0x01)
    wr(uart, IER, 0x0F)
    uart.receive(bytes(17))
    assert rd(uart, IIR_) == 0xC6
    rd(uart, LSR_)                           # clears OE
    assert rd(uart, IIR_) == 0xC4            # 16 >= trigger 1: data available


def test_modem_status_interrupt_lowest(uart):
    wr(uart, IER, 0x08)
    wr(uart, MCR, 0x10)                      # loopback: CTS/DSR/DCD drop -> deltas
    assert rd(uart, IIR_) == 0x00
    msr = rd(uart, MSR_)
    assert msr & MSR.DELTAS == MSR.DCTS | MSR.DDSR | MSR.DDCD
    assert rd(uart, IIR_) == 0x01            # reading MSR cleared it
    wr(uart, IER, 0x0A)
    wr(uart, MCR, 0x12)                      # RTS -> CTS: modem status pending
    assert rd(uart, IIR_) == 0x02            # THRE outranks modem status
    assert rd(uart, IIR_) == 0x00


def test_no_irq_in_loopback_even_with_out2(uart, wire):
    wr(uart, IER, 0x02)
    wr(uart, MCR, 0x18)
    assert wire.level == 0
    wr(uart, MCR, 0x08)
    assert wire.level == 1


# -- loopback and the Linux probe ------------------------------------------------

def test_loopback_modem_bits(uart):
    wr(uart, MCR, 0x10 | 0x0A)               # LOOP | OUT2 | RTS
    assert rd(uart, MSR_) & 0xF0 == 0x90     # DCD | CTS: Linux checks exactly this
    wr(uart, MCR, 0x10 | 0x05)               # LOOP | OUT1 | DTR
    assert rd(uart, MSR_) & 0xF0 == 0x60     # RI | DSR
    wr(uart, MCR, 0x10)
    assert rd(uart, MSR_) & MSR.TERI         # RI fell


def test_loopback_data(uart, out):
    wr(uart, MCR, 0x1F)
    wr(uart, THR, 0x5A)
    assert rd(uart, LSR_) & LSR.DR
    assert rd(uart, RBR) == 0x5A
    assert not out
    assert uart.receive(b"host") == 0        # the RX pin is disconnected
    wr(uart, MCR, 0x0B)
    assert uart.receive(b"h") == 1


def test_linux_autoconfig_sequence(uart, out):
    """drivers/tty/serial/8250/8250_port.c autoconfig(), in order."""
    scratch = rd(uart, IER)
    wr(uart, IER, 0)
    scratch2 = rd(uart, IER) & 0x0F
    wr(uart, IER, 0x0F)
    scratch3 = rd(uart, IER) & 0x0F
    wr(uart, IER, scratch)
    assert scratch2 == 0 and scratch3 == 0x0F
    save_mcr, save_lcr = rd(uart, MCR), rd(uart, LCR)
    wr(uart, MCR, 0x10 | 0x0A)
    status1 = rd(uart, MSR_) & 0xF0
    wr(uart, MCR, save_mcr)
    assert status1 == 0x90
    wr(uart, LCR, 0xBF)                       # conf mode B
    wr(uart, 2, 0)                            # EFR (FCR here)
    wr(uart, LCR, 0)
    wr(uart, FCR, 0x01)
    assert rd(uart, IIR_) >> 6 == 3           # -> autoconfig_16550a
    # autoconfig_16550a: no EFR under DLAB (IIR must not read 0)
    wr(uart, LCR, 0x80)
    assert rd(uart, 2) != 0
    wr(uart, LCR, 0xBF)
    assert rd(uart, 2) != 0
    # not a TI16750: IIR bit 5 never set
    wr(uart, LCR, 0)
    wr(uart, FCR, 0x21)
    assert rd(uart, IIR_) >> 5 == 6
    wr(uart, FCR, 0x01)
    # not an XScale: IER bit 6 does not stick
    wr(uart, IER, 0x40)
    assert not rd(uart, IER) & 0x40
    wr(uart, IER, 0)
    wr(uart, LCR, save_lcr)
    # startup: clear FIFOs, clear interrupt registers, LSR must not be 0xFF
    wr(uart, FCR, 0x01)
    wr(uart, FCR, 0x07)
    wr(uart, FCR, 0)
    for reg in (LSR_, RBR, IIR_, MSR_):
        rd(uart, reg)
    assert rd(uart, LSR_) != 0xFF
    wr(uart, LCR, 0x03)
    wr(uart, MCR, 0x0B)
    # TX-enable test: IER=THRI must show THRI in IIR, LSR.TEMT set
    wr(uart, IER, 0x02)
    lsr, iir = rd(uart, LSR_), rd(uart, IIR_)
    wr(uart, IER, 0)
    assert lsr & LSR.TEMT and not iir & 0x01
    assert not out                            # the probe transmitted nothing


# -- odd sizes and threads ---------------------------------------------------------

def test_wide_access_is_split_into_bytes(uart):
    uart.io_write(3, 2, 0x0B_03)             # LCR=0x03, MCR=0x0B
    assert rd(uart, LCR) == 0x03 and rd(uart, MCR) == 0x0B
    assert uart.io_read(6, 4) == 0xFFFF0000 | rd(uart, SCR) << 8 | (rd(uart, MSR_))
    assert uart.io_read(0, 3) in range(256)  # unusual size: treated as a byte


def test_receive_from_another_thread(uart):
    wr(uart, FCR, 0x01)
    got = bytearray()
    data = bytes(range(256)) * 4

    def feeder():
        sent = 0
        while sent < len(data):
            room = uart.rx_room()
            if room:
                sent += uart.receive(data[sent:sent + room])

    t = threading.Thread(target=feeder)
    t.start()
    while len(got) < len(data):
        if rd(uart, LSR_) & LSR.DR:
            got.append(rd(uart, RBR))
    t.join()
    assert bytes(got) == data
    assert uart.stats.bytes_dropped == 0


def test_linux_size_fifo_counts_sixteen(uart, out):
    """8250_port.c size_fifo(): loopback 256 bytes at divisor 1, count what came back."""
    wr(uart, LCR, 0)
    old_fcr = rd(uart, IIR_)
    wr(uart, FCR, 0x07)
    wr(uart, MCR, 0x10)
    wr(uart, LCR, 0x80)
    wr(uart, DLL, 1)
    wr(uart, DLM, 0)
    wr(uart, LCR, 0x03)
    for count in range(256):
        wr(uart, THR, count)
    count = 0
    while rd(uart, LSR_) & LSR.DR and count < 256:
        rd(uart, RBR)
        count += 1
    wr(uart, FCR, old_fcr)
    wr(uart, MCR, 0)
    assert count == 16                       # a 16550A, not a 64-byte U6 16550A
    assert not out


def test_interrupt_driven_echo_through_the_pic(out):
    """A guest's IRQ 4 handler loop: read IIR until no interrupt is pending."""
    from ringvisor.devices.pic8259 import PicPair
    pic = PicPair()
    u = Uart16550(irq=pic.irq_line(4), output=out.extend)
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0x21, 0xEF)):
        pic.master.io_write(port & 1, 1, value)
    wr(u, FCR, 0x07)
    wr(u, LCR, 0x03)
    wr(u, MCR, 0x0B)
    wr(u, IER, 0x01)
    u.receive(b"ping")
    handled = 0
    while pic.pending():
        assert pic.acknowledge() == 0x24
        while True:
            iir = rd(u, IIR_)
            if iir & 1:
                break
            if iir & 0x0E in (0x04, 0x0C):
                while rd(u, LSR_) & LSR.DR:
                    wr(u, THR, rd(u, RBR))    # echo
        pic.master.io_write(0, 1, 0x20)
        handled += 1
    assert handled == 1
    assert bytes(out) == b"ping"
