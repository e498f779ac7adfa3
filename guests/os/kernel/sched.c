/* Tasks and preemptive round-robin scheduling.
 *
 * Task 0 is the kernel itself (kmain, then the idle loop); it never runs
 * in ring 3. Every other task is a ring-3 program with its own page
 * directory and a one-page kernel stack. The kernel is not preemptible:
 * it runs with interrupts off, and a task is switched out only when it
 * blocks, yields, exits, or is interrupted by the timer in ring 3.
 *
 * With several CPUs (smp.h) every CPU has its own idle task and current
 * task; the task table, under the big kernel lock, holds every CPU's run
 * queue: a task is placed on a home CPU at spawn (round robin) and runs
 * only there. A CPU that idles is woken by a reschedule IPI when one of
 * its tasks becomes runnable. */
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "sched.h"
#include "syscall.h"
#include "trap.h"

void swtch(uint32_t *save_esp, uint32_t new_esp);  /* entry.S */
extern char task_start[];   /* entry.S: task_first_entry, then trap_return */

static struct task tasks[MAX_TASKS];
static struct task ap_idle[MAX_CPUS];   /* the APs' idle tasks (pid 0) */
volatile uint32_t ticks;
uint32_t preemptions;
int init_exit_status;
static int next_pid = 1;
static unsigned next_home;

void sched_init(void)
{
	tasks[0].state = T_RUNNABLE;
	tasks[0].on_cpu = &cpus[0];
	cpus[0].cur = cpus[0].idle = &tasks[0];
}

void sched_ap_start(struct cpu *c)
{
	struct task *t = &ap_idle[c->index];
	t->state = T_RUNNABLE;
	t->on_cpu = c;
	c->cur = c->idle = t;
}

/* Round robin: the next runnable task of this CPU after the current one;
 * this CPU's idle task only when there is none. */
static struct task *pick_next(void)
{
	struct cpu *c = this_cpu();
	struct task *me = c->cur;
	int cur = me >= tasks && me < tasks + MAX_TASKS ? (int)(me - tasks) : 0;
	for (int i = 1; i <= MAX_TASKS; i++) {
		struct task *t = &tasks[(cur + i) % MAX_TASKS];
		if (t != &tasks[0] && t->state == T_RUNNABLE && t->home == c->index &&
		    (!t->on_cpu || t->on_cpu == c))
			return t;
	}
	return c->idle;
}

void sched_kick(struct task *t)
{
	struct cpu *c = &cpus[t->home];
	if (smp_on && c != this_cpu() && c->cur == c->idle && !c->kicked) {
		c->kicked = true;
		smp_kick(t->home);
	}
}

void schedule(void)
{
	struct cpu *c = this_cpu();
	struct task *prev = c->cur, *next = pick_next();

	if (next == prev)
		return;
	/* The big kernel lock stays with this CPU through swtch: no other CPU
	 * can pick prev before its registers are saved. */
	c->cur = next;
	prev->on_cpu = NULL;
	next->on_cpu = c;
	if (next != c->idle)
		c->user_dispatches++;
	if (next->kstack)
		arch_set_kernel_stack((uint32_t)next->kstack + KSTACK_SIZE);
	arch_load_pgdir((uint32_t)(next->pgdir ? next->pgdir : kernel_pgdir));
	swtch(&prev->kesp, next->kesp);
}

void sched_tick(void)
{
	struct cpu *c = this_cpu();

	if (c->index == 0) {                /* the BSP's timer keeps the time */
		ticks++;
		for (int i = 1; i < MAX_TASKS; i++)
			if (tasks[i].state == T_SLEEPING && (int32_t)(ticks - tasks[i].wake_tick) >= 0) {
				tasks[i].state = T_RUNNABLE;
				sched_kick(&tasks[i]);
			}
	}
	if (c->cur != c->idle)
		c->need_resched = true;     /* the quantum is one tick */
}

void sched_preempt(void)
{
	struct cpu *c = this_cpu();

	if (!c->need_resched)
		return;
	c->need_resched = false;
	if (current->state == T_RUNNABLE && pick_next() != current)
		preemptions++;
	schedule();
}

int task_spawn(uint32_t fn, uint32_t arg, uint32_t arg2)
{
	struct task *t = NULL;
	for (int i = 1; i < MAX_TASKS && !t; i++)
		if (tasks[i].state == T_UNUSED)
			t = &tasks[i];
	if (!t)
		return -EAGAIN;

	uint8_t *kstack = frame_alloc();
	uint32_t *pd = kstack ? pgdir_create() : NULL;
	if (!pd || !user_image_map(pd)) {
		if (pd)
			pgdir_destroy(pd);
		if (kstack)
			frame_free(kstack);
		return -ENOMEM;
	}

	/* The first return to ring 3 "returns" from this made-up trap. */
	struct trapframe *tf = (void *)(kstack + KSTACK_SIZE - sizeof(*tf));
	memset(tf, 0, sizeof(*tf));
	tf->eip = user_image()->task_entry;
	tf->cs = SEL_UCODE;
	tf->eflags = 0x202;                 /* IF set, IOPL 0 */
	tf->user_esp = USER_STACK_TOP;
	tf->user_ss = tf->ds = tf->es = SEL_UDATA;
	tf->eax = fn;
	tf->ebx = arg;
	tf->ecx = arg2;

	/* ...reached through swtch: callee-saved registers, then the return
	 * address task_start (which drops the big kernel lock, then goes to
	 * trap_return). */
	uint32_t *sp = (uint32_t *)tf;
	*--sp = (uint32_t)task_start;
	for (int i = 0; i < 4; i++)
		*--sp = 0;                  /* ebp, ebx, esi, edi */

	t->kesp = (uint32_t)sp;
	t->kstack = kstack;
	t->pgdir = pd;
	t->pid = next_pid++;
	t->ppid = current->pid;
	t->state = T_RUNNABLE;
	do                                  /* placement: round robin over the CPUs */
		t->home = smp_on ? next_home++ % ncpus : 0;
	while (!cpus[t->home].online);
	sched_kick(t);
	return t->pid;
}

static void reap(struct task *t)
{
	frame_free(t->kstack);   /* not in use: t is not the running task */
	memset(t, 0, sizeof(*t));
}

void task_exit(int status)
{
	struct task *t = current;

	arch_load_pgdir((uint32_t)kernel_pgdir);
	pgdir_destroy(t->pgdir);
	t->pgdir = NULL;
	t->exit_status = status;
	if (t->pid == 1)
		init_exit_status = status;
	for (int i = 1; i < MAX_TASKS; i++) {
		if (tasks[i].state != T_UNUSED && tasks[i].ppid == t->pid)
			tasks[i].ppid = 0;  /* orphans are reaped by the kernel */
		if (tasks[i].state == T_WAITING && tasks[i].pid == t->ppid) {
			tasks[i].state = T_RUNNABLE;
			sched_kick(&tasks[i]);
		}
	}
	t->state = T_ZOMBIE;
	schedule();
	panic("a dead task was scheduled");
}

int task_wait(int *status)
{
	for (;;) {
		bool children = false;
		for (int i = 1; i < MAX_TASKS; i++) {
			struct task *t = &tasks[i];
			if (t->state == T_UNUSED || t->ppid != current->pid)
				continue;
			children = true;
			if (t->state == T_ZOMBIE) {
				int pid = t->pid;
				*status = t->exit_status;
				reap(t);
				return pid;
			}
		}
		if (!children)
			return -ECHILD;
		current->state = T_WAITING;
		schedule();
	}
}

void task_sleep(uint32_t nticks)
{
	current->wake_tick = ticks + nticks;
	current->state = T_SLEEPING;
	schedule();
}

void sched_set_pde(uint32_t index, uint32_t pde)
{
	for (int i = 1; i < MAX_TASKS; i++)
		if (tasks[i].pgdir)
			arch_set_pte(&tasks[i].pgdir[index], pde);
}

void task_first_entry(void)
{
	kernel_unlock();            /* schedule() switched here holding it */
}

/* One step of a CPU's idle task; false (on the BSP) when no task is left. */
bool sched_idle_step(void)
{
	bool live = false;

	arch_irq_disable();
	this_cpu()->kicked = false;         /* it looks at the run queue now */
	for (int i = 1; i < MAX_TASKS; i++) {
		if (tasks[i].state == T_ZOMBIE && tasks[i].ppid == 0)
			reap(&tasks[i]);
		else if (tasks[i].state != T_UNUSED)
			live = true;
	}
	if (!live && this_cpu()->index == 0)
		return false;
	if (live && pick_next() != current) {
		schedule();
	} else {
		kernel_unlock();
		arch_idle();        /* returns after an interrupt, IRQs on */
		arch_irq_disable();
		kernel_lock();
	}
	return true;
}
