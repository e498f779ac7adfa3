/* The multitasking demo. init spawns four tasks:
 *   two CPU-bound spinners (only the timer can take the CPU from them),
 *   a sleeper that also grows its heap a page at a time (demand-zero),
 *   and a faulty task that writes to kernel memory and gets killed.
 * Each worker returns the number of lines it printed; init waits for all
 * and prints a summary that does not depend on the interleaving.
 *
 * With several CPUs each line also says which CPU printed it, init reports
 * which CPUs ran tasks, and a last act checks the TLB shootdown: a watcher
 * task on another CPU keeps reading the shared page (SYS_SHARED) while init
 * unmaps it. With the shootdown the watcher faults at its next read; without
 * it (shootdown=0) the watcher's stale TLB entry still reads the old frame
 * and sees the poison the kernel wrote there after the unmap. */
#include "layout.h"
#include "ulib.h"

static volatile uint32_t work_sink;

/* " on cpuN" with several CPUs, else nothing. (Every task has its own
 * copy of the data: each asks the kernel.) A line goes out in one write,
 * so that lines of tasks on other CPUs never cut into it. */
static const char *on_cpu(char *buf, size_t size)
{
	buf[0] = '\0';
	if (kstat(STAT_NCPUS) > 1)
		snprintf(buf, size, " on cpu%d", kstat(STAT_CPU));
	return buf;
}

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
	char cpu[16];
	for (int i = 1; i <= lines; i++) {
		spin_ticks(1);
		printf("[task %d] spin %d%s\n", pid, i, on_cpu(cpu, sizeof(cpu)));
	}
	return lines;
}

static int sleeper(int lines)
{
	int pid = getpid();
	uint32_t *heap = (uint32_t *)USER_HEAP_BASE;
	char cpu[16];
	for (int i = 1; i <= lines; i++) {
		uint32_t *page = heap + (i - 1) * (PAGE_SIZE / 4);
		uint32_t was = *page;       /* first touch: a fresh zero page */
		*page = (uint32_t)i;
		printf("[task %d] sleep %d (heap page %d was %u)%s\n", pid, i, i, was,
		       on_cpu(cpu, sizeof(cpu)));
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

/* Reads the shared page until the kernel says it was unmapped: returns
 * 2 if it got there, i.e. it read the old frame through a stale entry. */
static int watcher(int unused)
{
	volatile uint32_t *page = (volatile uint32_t *)SHARED_VA;
	(void)unused;
	if (page[0] != SHARED_MAGIC)        /* the translation is now in this CPU's TLB */
		return 1;
	page[1] = (uint32_t)kstat(STAT_CPU) + 1;
	while (!page[2])
		;                           /* faults here once the entry is gone */
	return page[0] == SHARED_POISON ? 2 : 1;
}

static int shootdown_check(void)
{
	volatile uint32_t *page = (volatile uint32_t *)SHARED_VA;
	int status, me, them, acked, pid;

	if (shared(SHARED_MAP) < 0 || (pid = spawn(watcher, 0)) < 0) {
		printf("[init] shared page: cannot set up\n");
		return 1;
	}
	while (!page[1])
		;                           /* until the watcher has read the page */
	them = (int)page[1] - 1;
	me = kstat(STAT_CPU);
	printf("[init] unmapping the shared page on cpu%d while task %d reads it on cpu%d\n",
	       me, pid, them);
	acked = shared(SHARED_UNMAP);
	printf("[init] %d CPU(s) acknowledged the TLB shootdown\n", acked);
	wait(&status);
	if (status == 128 + 14) {
		printf("tlb shootdown: ok (the reader faulted at its next access)\n");
		return me != them ? 0 : 1;
	}
	printf("tlb shootdown: STALE (the reader still read the unmapped page: status %d)\n", status);
	return 1;
}

int tasks_main(int lines)
{
	static const task_fn workers[] = { spinner, spinner, sleeper, faulty };
	int ntasks = 0, total = 0, killed = 0, status;

	int ncpus = kstat(STAT_NCPUS);

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
	if (ncpus == 1)
		return killed == 1 ? 0 : 1;

	uint32_t used = (uint32_t)kstat(STAT_CPUS_USED);
	printf("[init] CPUs that ran tasks:");
	for (int i = 0; i < ncpus; i++)
		if (used & (1u << i))
			printf(" cpu%d", i);
	printf(" (every CPU: %s)\n", used == (1u << ncpus) - 1 ? "yes" : "no");
	int bad = shootdown_check();
	return killed == 1 && used == (1u << ncpus) - 1 && !bad ? 0 : 1;
}
