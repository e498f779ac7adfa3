/* IDT: interrupt gates for the 32 exceptions and the 16 PIC interrupts,
 * plus the system-call gate. All are interrupt gates (IF cleared on entry):
 * the kernel runs with interrupts off, which keeps it simple on one CPU. */
#include "devices.h"
#include "layout.h"
#include "syscall.h"
#include "trap.h"
#include "x86.h"

uint64_t idt[256];

static uint64_t gate(uint32_t handler, uint8_t dpl)
{
	uint8_t attr = 0x80 | (uint8_t)(dpl << 5) | 0xe; /* present, 32-bit int gate */
	return (handler & 0xffff) | (uint64_t)SEL_KCODE0 << 16 |
	       (uint64_t)attr << 40 | (uint64_t)(handler >> 16) << 48;
}

void idt_init(void)
{
	for (unsigned v = 0; v < 48; v++)
		idt[v] = gate(trap_stubs[v], 0);
	/* DPL 3: ring 3 may use `int $0x80`; every other vector raises #GP
	 * if a user task tries `int n` on it. */
	idt[SYSCALL_VECTOR] = gate((uint32_t)syscall_stub, 3);

	struct dtr d = { sizeof(idt) - 1, (uint32_t)idt };
	__asm__ volatile("lidt %0" : : "m"(d));
}
