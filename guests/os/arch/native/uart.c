/* 16550A UART on COM1. Output goes into a ring buffer; the transmitter-
 * empty interrupt moves it to the UART up to a FIFO-full (16 bytes) at a
 * time, so a line costs a couple of interrupts instead of one busy-wait per
 * byte. Early boot, panics and the final flush poll the line status. */
#include "arch.h"
#include "devices.h"
#include "x86.h"

#define COM1 0x3f8
#define THR (COM1 + 0)  /* transmit holding (write) / receive buffer (read) */
#define IER (COM1 + 1)
#define IIR (COM1 + 2)  /* interrupt identification (read) / FIFO control (write) */
#define LCR (COM1 + 3)
#define MCR (COM1 + 4)
#define LSR (COM1 + 5)

#define IER_RDI  0x01   /* received data available */
#define IER_THRI 0x02   /* transmit holding register empty */
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define TX_SIZE 4096u   /* power of two */
#define RX_SIZE 256u

static char tx[TX_SIZE], rx[RX_SIZE];
static uint32_t tx_head, tx_tail, rx_head;  /* free-running indices */
static bool irq_mode, tx_active;
static unsigned fifo_size = 1;
static uint8_t ier;

void uart_init(void)
{
	outb(IER, 0);
	outb(LCR, 0x80);        /* DLAB: set the divisor */
	outb(COM1 + 0, 1);      /* 115200 baud */
	outb(COM1 + 1, 0);
	outb(LCR, 0x03);        /* 8N1 */
	outb(IIR, 0xc7);        /* enable and clear FIFOs, 14-byte RX trigger */
	if ((inb(IIR) & 0xc0) == 0xc0)
		fifo_size = 16; /* a real 16550A; a 16450 has no FIFO */
	outb(MCR, 0x0b);        /* DTR, RTS, OUT2 (OUT2 gates the IRQ line) */
}

static void put_polled(char c)
{
	while (!(inb(LSR) & LSR_THRE))
		;
	outb(THR, c);
}

/* Fill the (empty) transmit FIFO from the ring. */
static void tx_pump(void)
{
	for (unsigned n = 0; n < fifo_size && tx_tail != tx_head; n++)
		outb(THR, tx[tx_tail++ % TX_SIZE]);
	if (tx_tail == tx_head && tx_active) {
		tx_active = false;
		ier &= ~IER_THRI;
		outb(IER, ier);
	}
}

void uart_write(const char *s, size_t n)
{
	uint32_t flags = arch_irq_save();

	for (size_t i = 0; i < n; i++) {
		if (!irq_mode) {
			put_polled(s[i]);
			continue;
		}
		if (tx_head - tx_tail == TX_SIZE)  /* full: make room by hand */
			put_polled(tx[tx_tail++ % TX_SIZE]);
		tx[tx_head++ % TX_SIZE] = s[i];
	}
	if (irq_mode && !tx_active && tx_tail != tx_head) {
		tx_active = true;
		/* Enabling THRI raises the interrupt at once if THR is empty. */
		ier |= IER_THRI;
		outb(IER, ier);
	}
	arch_irq_restore(flags);
}

void uart_isr(void)
{
	for (;;) {
		uint8_t iir = inb(IIR);
		if (iir & 1)
			break;                    /* nothing (more) pending */
		switch (iir & 0x0e) {
		case 0x02:                        /* THR empty */
			tx_pump();
			break;
		case 0x04:                        /* RX data */
		case 0x0c:                        /* RX timeout */
			while (inb(LSR) & LSR_DR)
				rx[rx_head++ % RX_SIZE] = inb(THR); /* kept, unused */
			break;
		case 0x06:                        /* line status */
			inb(LSR);
			break;
		default:                          /* modem status */
			inb(COM1 + 6);
		}
	}
}

void uart_enable_irq(void)
{
	irq_mode = true;
	ier = IER_RDI;
	outb(IER, ier);
}

void uart_sync(void)
{
	uint32_t flags = arch_irq_save();
	irq_mode = false;
	tx_active = false;
	ier = 0;
	outb(IER, 0);
	while (tx_tail != tx_head)
		put_polled(tx[tx_tail++ % TX_SIZE]);
	while (!(inb(LSR) & LSR_TEMT))
		;
	arch_irq_restore(flags);
}
