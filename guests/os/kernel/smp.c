/* Several CPUs: spinlocks, the big kernel lock, bringing the APs up, and
 * the two IPIs (reschedule, TLB shootdown). On one CPU smp_on stays false
 * and every function here is a no-op or a plain local operation, so the
 * uniprocessor kernel runs exactly as it did. */
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "sched.h"
#include "smp.h"

struct cpu cpus[MAX_CPUS];
unsigned ncpus = 1;
bool smp_on;
bool smp_shootdown = true;
bool smp_no_acpi;
uint32_t tlb_shootdowns, resched_ipis;

static struct spinlock big_lock;

/* -- spinlocks ------------------------------------------------------------ */

void spin_lock(struct spinlock *l)
{
	uint32_t me = this_cpu()->index + 1;
	while (atomic_xchg(&l->word, me) != 0) {
		/* Spin reading (no locked write) until it looks free. A CPU
		 * that spins here has interrupts off: it must still answer a
		 * shootdown, whose sender may be the lock's holder. */
		while (l->word != 0) {
			smp_poll();
			cpu_relax();
		}
	}
}

void spin_unlock(struct spinlock *l)
{
	atomic_xchg(&l->word, 0);
}

bool spin_held(const struct spinlock *l)
{
	return l->word == this_cpu()->index + 1;
}

/* -- the big kernel lock ---------------------------------------------------- */

bool kernel_enter(void)
{
	if (!smp_on || spin_held(&big_lock))
		return false;
	spin_lock(&big_lock);
	return true;
}

void kernel_leave(bool took)
{
	if (took)
		spin_unlock(&big_lock);
}

void kernel_lock(void)
{
	if (smp_on)
		spin_lock(&big_lock);
}

void kernel_unlock(void)
{
	if (smp_on)
		spin_unlock(&big_lock);
}

/* -- IPIs ----------------------------------------------------------------------- */

void smp_kick(unsigned index)
{
	resched_ipis++;
	arch_send_ipi(index, VEC_RESCHED);
}

/* Serve this CPU's shootdown request, if any: invalidate, then acknowledge
 * by clearing the request (the sender waits for that). */
void smp_poll(void)
{
	struct cpu *c = &cpus[arch_cpu_index()];
	uint32_t va = c->tlb_va;
	if (va) {
		arch_invlpg(va);
		c->tlb_va = 0;
	}
}

bool smp_fast_irq(unsigned vector)
{
	if (vector == VEC_SPURIOUS)
		return true;                    /* no EOI for the spurious vector */
	if (vector != VEC_TLB)
		return false;
	atomic_inc(&cpus[arch_cpu_index()].ipis_received);
	smp_poll();
	arch_eoi();
	return true;
}

/* The caller has changed or cleared the PTE of va in a page table every
 * address space shares and invalidated its own TLB entry; every other CPU
 * may still hold the old translation. Ask each to INVLPG and wait until all
 * have. Returns how many CPUs acknowledged. Big kernel lock held. */
int tlb_shootdown(uint32_t va)
{
	struct cpu *me = this_cpu();
	int acked = 0;

	if (!smp_on || !smp_shootdown)
		return 0;
	for (unsigned i = 0; i < ncpus; i++) {
		struct cpu *c = &cpus[i];
		if (c == me || !c->online)
			continue;
		c->tlb_va = va;
		tlb_shootdowns++;
		arch_send_ipi(i, VEC_TLB);
	}
	for (unsigned i = 0; i < ncpus; i++) {
		struct cpu *c = &cpus[i];
		if (c == me || !c->online)
			continue;
		while (c->tlb_va)
			cpu_relax();
		acked++;
	}
	return acked;
}

/* -- bringing the APs up ------------------------------------------------------------ */

void smp_boot(void)
{
	unsigned found = arch_smp_detect();

	cpus[0].online = true;
	if (found < 2)
		return;
	/* From here on the kernel lock is real; the BSP holds it (kmain). */
	smp_on = true;
	kernel_lock();
	for (unsigned i = 1; i < found; i++) {
		if (!arch_start_ap(i)) {
			kprintf("ringos: smp: cpu%u (APIC ID %u) did not start\n", i, cpus[i].apic_id);
			continue;
		}
		ncpus = i + 1;
	}
}

/* An AP, on its idle stack with paging on, coming from the trampoline. */
void ap_main(unsigned index)
{
	struct cpu *c = &cpus[index];

	arch_ap_init(index);
	sched_ap_start(c);
	c->online = true;               /* the BSP waits for this, holding the lock */
	kernel_lock();
	for (;;)
		sched_idle_step();
}
