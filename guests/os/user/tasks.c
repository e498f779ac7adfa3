/* The multitasking demo. init spawns four tasks:
 *   two CPU-bound spinners (only the timer can take the CPU from them),
 *   a sleeper that also grows its heap a page at a time (demand-zero),
 *   and a faulty task that writes to kernel memory and gets killed.
 * Each worker returns the number of lines it printed; init waits for all
 * and prints a summary that does not depend on the interleaving. */
#include "layout.h"
#include "ulib.h"

static volatile uint32_t work_sink;

/* Burn CPU until n timer ticks have passed, asking the time less and less
 * often. With n = 1 a spin ends at the next tick: a tick is certain to hit
 * a spinner while the other one is runnable (so preemption is seen), yet
 * the cost stays small however the machine's clock relates to its speed. */
static void spin_ticks(uint32_t n)
{
	uint32_t start = uptime_ticks(), chunk = 256, x = 1;
	while (uptime_ticks() - start < n) {
		for (uint32_t i = 0; i < chunk; i++)
			x = x * 1103515245u + 12345u;
		if (chunk < (1u << 20))
			chunk *= 2;
	}
	work_sink = x;
}

static int spinner(int lines)
{
	int pid = getpid();
	for (int i = 1; i <= lines; i++) {
		spin_ticks(1);
		printf("[task %d] spin %d\n", pid, i);
	}
	return lines;
}

static int sleeper(int lines)
{
	int pid = getpid();
	uint32_t *heap = (uint32_t *)USER_HEAP_BASE;
	for (int i = 1; i <= lines; i++) {
		uint32_t *page = heap + (i - 1) * (PAGE_SIZE / 4);
		uint32_t was = *page;       /* first touch: a fresh zero page */
		*page = (uint32_t)i;
		printf("[task %d] sleep %d (heap page %d was %u)\n", pid, i, i, was);
		sleep_ms(30);
	}
	return lines;
}

static int faulty(int unused)
{
	(void)unused;
	printf("[task %d] writing to kernel memory at 0x00100000\n", getpid());
	*(volatile uint32_t *)KERNEL_BASE = 0xdead;  /* supervisor page: #PF */
	printf("[task %d] still alive?!\n", getpid());
	return 0;
}

int tasks_main(int lines)
{
	static const task_fn workers[] = { spinner, spinner, sleeper, faulty };
	int ntasks = 0, total = 0, killed = 0, status;

	printf("[init] spawning %d tasks, %d lines each\n", (int)ARRAY_SIZE(workers), lines);
	for (unsigned i = 0; i < ARRAY_SIZE(workers); i++) {
		int pid = spawn(workers[i], lines);
		if (pid < 0) {
			printf("[init] spawn failed: %d\n", pid);
			return 1;
		}
		ntasks++;
	}
	while (wait(&status) > 0) {
		if (status >= 128)
			killed++;
		else
			total += status;
	}
	int preempted = kstat(STAT_PREEMPTIONS);
	printf("tasks done: %d tasks, %d lines, %d killed, preemptions>0 %s\n",
	       ntasks, total, killed, preempted > 0 ? "yes" : "no");
	return killed == 1 ? 0 : 1;
}
