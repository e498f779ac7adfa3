/* 8259A programmable interrupt controller pair. The BIOS-era default maps
 * IRQ 0-7 onto CPU exception vectors 8-15, so we remap to 0x20-0x2f. */
#include "devices.h"
#include "layout.h"
#include "x86.h"

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xa0
#define PIC2_DATA 0xa1

void pic_init(void)
{
	outb(PIC1_CMD, 0x11);           /* ICW1: edge-triggered, cascade, ICW4 */
	outb(PIC2_CMD, 0x11);
	outb(PIC1_DATA, IRQ_BASE);      /* ICW2: vector base */
	outb(PIC2_DATA, IRQ_BASE + 8);
	outb(PIC1_DATA, 1 << 2);        /* ICW3: slave on IRQ2 */
	outb(PIC2_DATA, 2);
	outb(PIC1_DATA, 0x01);          /* ICW4: 8086 mode, normal EOI */
	outb(PIC2_DATA, 0x01);
	outb(PIC1_DATA, 0xff & ~(1 << 2)); /* all masked but the cascade */
	outb(PIC2_DATA, 0xff);
}

void pic_unmask(unsigned irq)
{
	uint16_t port = irq < 8 ? PIC1_DATA : PIC2_DATA;
	outb(port, inb(port) & ~(1 << (irq & 7)));
}

/* IRQ 7 and 15 can be spurious: the PIC raised the line but nothing is
 * in service. Those must not be acknowledged. */
bool pic_spurious(unsigned irq)
{
	if ((irq & 7) != 7)
		return false;
	uint16_t cmd = irq < 8 ? PIC1_CMD : PIC2_CMD;
	outb(cmd, 0x0b);                /* OCW3: read the in-service register */
	if (inb(cmd) & 0x80)
		return false;
	if (irq == 15)
		outb(PIC1_CMD, 0x20);   /* the master did see the cascade */
	return true;
}

void pic_eoi(unsigned irq)
{
	if (irq >= 8)
		outb(PIC2_CMD, 0x20);
	outb(PIC1_CMD, 0x20);
}
