/* Tasks and preemptive round-robin scheduling.
 *
 * Task 0 is the kernel itself (kmain, then the idle loop); it never runs
 * in ring 3. Every other task is a ring-3 program with its own page
 * directory and a one-page kernel stack. The kernel is not preemptible:
 * it runs with interrupts off, and a task is switched out only when it
 * blocks, yields, exits, or is interrupted by the timer in ring 3. */
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "sched.h"
#include "syscall.h"
#include "trap.h"

void swtch(uint32_t *save_esp, uint32_t new_esp);  /* entry.S */

static struct task tasks[MAX_TASKS];
struct task *current = &tasks[0];
volatile uint32_t ticks;
uint32_t preemptions;
int init_exit_status;
static bool need_resched;
static int next_pid = 1;

void sched_init(void)
{
	tasks[0].state = T_RUNNABLE;
}

/* Round robin: the next runnable task after the current one; the idle
 * task only when there is none. */
static struct task *pick_next(void)
{
	int cur = (int)(current - tasks);
	for (int i = 1; i <= MAX_TASKS; i++) {
		struct task *t = &tasks[(cur + i) % MAX_TASKS];
		if (t != &tasks[0] && t->state == T_RUNNABLE)
			return t;
	}
	return &tasks[0];
}

void schedule(void)
{
	struct task *prev = current, *next = pick_next();

	if (next == prev)
		return;
	current = next;
	if (next->kstack)
		arch_set_kernel_stack((uint32_t)next->kstack + KSTACK_SIZE);
	arch_load_pgdir((uint32_t)(next->pgdir ? next->pgdir : kernel_pgdir));
	swtch(&prev->kesp, next->kesp);
}

void sched_tick(void)
{
	ticks++;
	for (int i = 1; i < MAX_TASKS; i++)
		if (tasks[i].state == T_SLEEPING && (int32_t)(ticks - tasks[i].wake_tick) >= 0)
			tasks[i].state = T_RUNNABLE;
	if (current != &tasks[0])
		need_resched = true;        /* the quantum is one tick */
}

void sched_preempt(void)
{
	if (!need_resched)
		return;
	need_resched = false;
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
	 * address trap_return. */
	uint32_t *sp = (uint32_t *)tf;
	*--sp = (uint32_t)trap_return;
	for (int i = 0; i < 4; i++)
		*--sp = 0;                  /* ebp, ebx, esi, edi */

	t->kesp = (uint32_t)sp;
	t->kstack = kstack;
	t->pgdir = pd;
	t->pid = next_pid++;
	t->ppid = current->pid;
	t->state = T_RUNNABLE;
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
		if (tasks[i].state == T_WAITING && tasks[i].pid == t->ppid)
			tasks[i].state = T_RUNNABLE;
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

bool sched_idle_step(void)
{
	bool live = false;

	arch_irq_disable();
	for (int i = 1; i < MAX_TASKS; i++) {
		if (tasks[i].state == T_ZOMBIE && tasks[i].ppid == 0)
			reap(&tasks[i]);
		else if (tasks[i].state != T_UNUSED)
			live = true;
	}
	if (!live)
		return false;
	if (pick_next() != current)
		schedule();
	else
		arch_idle();        /* returns after an interrupt, IRQs on */
	return true;
}
