/* Tasks and the round-robin scheduler. */
#ifndef RINGOS_SCHED_H
#define RINGOS_SCHED_H
#include "types.h"
#include "smp.h"

#define MAX_TASKS 16

enum task_state { T_UNUSED, T_RUNNABLE, T_SLEEPING, T_WAITING, T_ZOMBIE };

struct task {
	int pid, ppid;             /* ppid 0: the kernel reaps it */
	enum task_state state;
	uint32_t *pgdir;           /* NULL for the idle task (kernel_pgdir) */
	uint8_t *kstack;           /* one page; the trapframe sits at its top */
	uint32_t kesp;             /* saved kernel ESP while switched out */
	uint32_t wake_tick;        /* T_SLEEPING: when to wake */
	int exit_status;
	struct cpu *on_cpu;        /* the CPU running it, or NULL */
	unsigned home;             /* the CPU whose queue it is on (smp.h) */
};

#define current (this_cpu()->cur)
extern volatile uint32_t ticks;
extern uint32_t preemptions;

void sched_init(void);
void sched_tick(void);             /* timer interrupt (every CPU's) */
void sched_ap_start(struct cpu *c); /* an AP's idle task */
void sched_preempt(void);          /* on return to ring 3 */
void schedule(void);               /* IRQs off; current may block */
bool sched_idle_step(void);        /* idle loop; false when no task is left */
void sched_kick(struct task *t);   /* t became runnable: wake its CPU if idle */
void task_first_entry(void);       /* a new task's first kernel code */
void sched_set_pde(uint32_t index, uint32_t pde); /* in every task's directory */

int task_spawn(uint32_t fn, uint32_t arg, uint32_t arg2);
_Noreturn void task_exit(int status);
int task_wait(int *status);
void task_sleep(uint32_t nticks);
extern int init_exit_status;
#endif
