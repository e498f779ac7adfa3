/* IDT: interrupt gates for the 32 exceptions and the 16 PIC interrupts,
 * the local APIC's vectors (timer, reschedule and TLB-shootdown IPIs,
 * spurious), plus the system-call gate. All are interrupt gates (IF cleared
 * on entry): the kernel runs with interrupts off. All CPUs share it. */
#include "devices.h"
#include "layout.h"
#include "smp.h"
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

void idt_load(void)
{
	struct dtr d = { sizeof(idt) - 1, (uint32_t)idt };
	__asm__ volatile("lidt %0" : : "m"(d));
}

void idt_init(void)
{
	for (unsigned v = 0; v < 48; v++)
		idt[v] = gate(trap_stubs[v], 0);
	/* DPL 3: ring 3 may use `int $0x80`; every other vector raises #GP
	 * if a user task tries `int n` on it. */
	idt[SYSCALL_VECTOR] = gate((uint32_t)syscall_stub, 3);
	idt[VEC_APIC_TIMER] = gate((uint32_t)apic_timer_stub, 0);
	idt[VEC_RESCHED] = gate((uint32_t)resched_stub, 0);
	idt[VEC_TLB] = gate((uint32_t)tlb_stub, 0);
	idt[VEC_SPURIOUS] = gate((uint32_t)spurious_stub, 0);
	idt_load();
}
