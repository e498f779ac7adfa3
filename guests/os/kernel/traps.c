/* Exceptions, interrupts and system calls all arrive here (entry.S).
 * A fault in a user task is reported and the task is killed; a fault in
 * the kernel is fatal unless an exception-table fixup covers it. */
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "sched.h"
#include "smp.h"
#include "syscall.h"
#include "trap.h"

void syscall_dispatch(struct trapframe *tf);

extern const struct ex_entry __ex_table_start[], __ex_table_end[];

static const char *const exception_names[32] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint",
	"#OF overflow", "#BR bound range exceeded", "#UD invalid opcode",
	"#NM device not available", "#DF double fault",
	"coprocessor segment overrun", "#TS invalid TSS",
	"#NP segment not present", "#SS stack-segment fault",
	"#GP general protection", "#PF page fault", "reserved 15",
	"#MF x87 floating-point error", "#AC alignment check",
	"#MC machine check", "#XM SIMD floating-point",
	"#VE virtualization exception", "#CP control protection",
	"reserved 22", "reserved 23", "reserved 24", "reserved 25",
	"reserved 26", "reserved 27", "#HV hypervisor injection",
	"#VC VMM communication", "#SX security exception", "reserved 31",
};

const char *trap_name(unsigned vector)
{
	return vector < 32 ? exception_names[vector] : "interrupt";
}

static uint32_t fixup_for(uint32_t eip)
{
	for (const struct ex_entry *e = __ex_table_start; e < __ex_table_end; e++)
		if (e->fault == eip)
			return e->fixup;
	return 0;
}

static void exception(struct trapframe *tf)
{
	bool user = tf_from_user(tf);
	uint32_t v = tf->vector, cr2 = 0;

	if (v == 14) {
		cr2 = arch_fault_addr();
		if (cr2 >= USER_BASE && paging_fault(current->pgdir, cr2, tf->err))
			return;               /* demand-zero page mapped */
		if (!user && kernel_pf_hook && kernel_pf_hook(cr2))
			return;
	}
	if (!user) {
		uint32_t fixup = fixup_for(tf->eip);
		if (fixup) {
			tf->eip = fixup;      /* skip the faulting instruction */
			return;
		}
		panic("%s in kernel (ring %d): err=%#x eip=%08x cs=%x eflags=%08x "
		      "cr2=%08x\n  eax=%08x ebx=%08x ecx=%08x edx=%08x esi=%08x "
		      "edi=%08x ebp=%08x task=%d",
		      trap_name(v), arch_kernel_ring, tf->err, tf->eip, tf->cs,
		      tf->eflags, cr2, tf->eax, tf->ebx, tf->ecx, tf->edx,
		      tf->esi, tf->edi, tf->ebp, current->pid);
	}

	kprintf("ringos: task %d killed: %s at eip=%08x err=%#x", current->pid,
		trap_name(v), tf->eip, tf->err);
	if (v == 14)
		kprintf(" cr2=%08x (%s %s page)", cr2,
			tf->err & PF_WRITE ? "write to" : "read from",
			tf->err & PF_PRESENT ? "a protected" : "an unmapped");
	kprintf("\n");
	task_exit(128 + (int)v);
}

void trap_dispatch(struct trapframe *tf)
{
	uint32_t v = tf->vector;

	if (smp_on && smp_fast_irq(v))
		return;                   /* TLB shootdown, spurious: no lock */
	bool took = kernel_enter();

	if (v == SYSCALL_VECTOR)
		syscall_dispatch(tf);
	else if ((v >= IRQ_BASE && v < IRQ_BASE + 16) || v == VEC_EVENT ||
		 v == VEC_APIC_TIMER || v == VEC_RESCHED)
		arch_irq(tf);
	else if (v < 32)
		exception(tf);
	else
		kprintf("ringos: unexpected vector %#x\n", v);

	/* Going back to ring 3 is the one place a task can be preempted. */
	if (tf_from_user(tf))
		sched_preempt();
	kernel_leave(took);
}
