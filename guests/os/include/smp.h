/* Several CPUs (native kernel on a machine with local APICs and an MP table
 * or MADT; everywhere else one CPU and none of this is switched on).
 *
 * The kernel stays simple the way early SMP Unix kernels did: one big
 * kernel lock, held whenever a CPU runs kernel code, dropped when it
 * returns to ring 3 or halts in the idle loop. User tasks run in parallel;
 * the kernel's data needs no finer locking. Each task has a home CPU,
 * given round robin at spawn (init's is CPU 0), and runs only there: a
 * deterministic placement that needs no balancing. Two interrupts are taken
 * without the lock: the TLB shootdown (its sender holds the lock and waits
 * for the acknowledgement) and the APIC's spurious vector. */
#ifndef RINGOS_SMP_H
#define RINGOS_SMP_H
#include "types.h"

#define MAX_CPUS 8

struct task;

struct spinlock {
	volatile uint32_t word;        /* 0 free, else the holder's CPU index + 1 */
};

/* Per-CPU data. */
struct cpu {
	unsigned index;                /* 0 = the bootstrap processor */
	uint32_t apic_id;
	struct task *cur;              /* the task running on this CPU */
	struct task *idle;             /* this CPU's idle task */
	bool need_resched;
	bool kicked;                   /* a reschedule IPI is on its way to it */
	volatile bool online;
	uint32_t cur_pd;               /* arch: the page directory in CR3 */
	volatile uint32_t tlb_va;      /* TLB shootdown request: page, or 0 */
	uint32_t user_dispatches;      /* user tasks switched to on this CPU */
	uint32_t ipis_received;        /* reschedule and shootdown, lock-free count */
};

extern struct cpu cpus[MAX_CPUS];
extern unsigned ncpus;                 /* CPUs online */
extern bool smp_on;                    /* more than one CPU was started */
extern bool smp_shootdown;             /* cmdline shootdown=0 leaves it out (the test's control) */
extern bool smp_no_acpi;               /* cmdline acpi=off: the MP table, not the MADT */
extern uint32_t tlb_shootdowns, resched_ipis;

unsigned arch_cpu_index(void);         /* native SMP: this CPU's index */

static inline struct cpu *this_cpu(void)
{
	return smp_on ? &cpus[arch_cpu_index()] : &cpus[0];
}

/* LOCK-prefixed exchange: atomic against the other CPUs. */
static inline uint32_t atomic_xchg(volatile uint32_t *p, uint32_t v)
{
	__asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
	return v;   /* XCHG with memory is always locked (SDM vol. 2B) */
}

static inline void atomic_inc(volatile uint32_t *p)
{
	__asm__ volatile("lock incl %0" : "+m"(*p) : : "memory");
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

void spin_lock(struct spinlock *l);
void spin_unlock(struct spinlock *l);
bool spin_held(const struct spinlock *l);   /* by this CPU */

/* The big kernel lock: kernel_enter() takes it unless this CPU holds it
 * already and says whether it did; kernel_leave(took) gives it back. */
bool kernel_enter(void);
void kernel_leave(bool took);
void kernel_unlock(void);              /* idle loop, first entry of a task */
void kernel_lock(void);

/* Cross-CPU work. */
void smp_boot(void);                   /* start the APs the firmware lists */
void smp_kick(unsigned index);         /* reschedule IPI to an idle CPU */
int tlb_shootdown(uint32_t va);        /* after unmapping va on this CPU; CPUs acked */
void smp_poll(void);                   /* while spinning: serve a shootdown */
bool smp_fast_irq(unsigned vector);    /* lock-free vectors; true if handled */
_Noreturn void ap_main(unsigned index);

/* The arch layer's side (arch/native/apic.c; PV: one CPU). */
#define VEC_APIC_TIMER 0x40
#define VEC_RESCHED    0x41
#define VEC_TLB        0x42
#define VEC_SPURIOUS   0xff
unsigned arch_smp_detect(void);         /* CPUs this machine has for us; 1 = uniprocessor */
bool arch_start_ap(unsigned index);     /* INIT-SIPI-SIPI; true once it runs */
void arch_ap_init(unsigned index);      /* on the AP: tables, APIC, timer */
void arch_send_ipi(unsigned index, unsigned vector);
void arch_eoi(void);
#endif
