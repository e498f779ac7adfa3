/* kmain: bring the machine up, run the chosen workload, exit through the
 * debug-exit port with the workload's status. */
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "sched.h"
#include "smp.h"
#include "syscall.h"

struct options opts;
static struct boot_info bi;

static const uint32_t default_iters[] = {
	[WL_TASKS] = 5,        /* lines per worker task */
	[WL_NANOBENCH] = 1000, /* iterations of each nanobenchmark */
	[WL_PROBE] = 1,
	[WL_COMPUTE] = 10,     /* sieve+CRC rounds, ~100k instructions each */
};

static void start_init(void)
{
	const struct user_header *h = user_image();
	uint32_t flags = arch_irq_save();
	int pid = task_spawn(h->main, (uint32_t)opts.workload, opts.iters);
	arch_irq_restore(flags);
	if (pid != 1)
		panic("cannot start the first user task (%d)", pid);
}

void kmain(uint32_t magic, uint32_t info)
{
	int status = 0;

	arch_early_init(magic, info, &bi);
	parse_cmdline(bi.cmdline, &opts, false);
	kprintf("ringos %s (%s build) workload=%s\n", RINGOS_VERSION, arch_name,
		opts.workload_name);
	if (bi.cmdline_truncated)
		kprintf("ringos: warning: command line longer than %u bytes: the rest is ignored\n",
			(unsigned)sizeof(bi.cmdline) - 1);
	parse_cmdline(bi.cmdline, &opts, true);
	if (opts.enlighten)
		arch_enlighten();
	if (!opts.iters)
		opts.iters = default_iters[opts.workload];

	arch_cpu_init();
	frames_init(&bi);
	paging_init(&bi);
	if (user_image()->magic != USER_MAGIC)
		panic("user image missing");
	sched_init();
	arch_devices_init(TIMER_HZ);
	kprintf("ringos: ring %d kernel, %u KiB free RAM below %#x, timer %u Hz\n",
		arch_kernel_ring, frames_free_count() * 4, ram_top(), TIMER_HZ);
	smp_boot();
	if (smp_on) {
		kprintf("ringos: smp: %u CPUs online, APIC IDs", ncpus);
		for (unsigned i = 0; i < ncpus; i++)
			if (cpus[i].online)
				kprintf(" %u", cpus[i].apic_id);
		kprintf("\n");
	}
	arch_irq_enable();

	switch (opts.workload) {
	case WL_PROBE:
		probe_run();
		break;
	case WL_NANOBENCH:
		nanobench_kernel(opts.iters);   /* the ring-0 ones */
		start_init();                   /* the ring-3 one (syscall) */
		break;
	case WL_COMPUTE:
		if (opts.ring == 0)
			compute_kernel(opts.iters);
		else
			start_init();
		break;
	default:
		start_init();
	}

	/* Task 0 becomes the idle task until every user task has exited. */
	while (sched_idle_step())
		;
	if (opts.workload != WL_PROBE && !(opts.workload == WL_COMPUTE && opts.ring == 0))
		status = init_exit_status;
	if (smp_on) {
		for (unsigned i = 0; i < ncpus; i++)
			kprintf("ringos: cpu%u: %u task switches, %u IPIs taken\n", i,
				cpus[i].user_dispatches, cpus[i].ipis_received);
		kprintf("ringos: smp: %u reschedule IPIs, %u TLB shootdown IPIs sent\n",
			resched_ipis, tlb_shootdowns);
	}
	kernel_exit(status);
}
