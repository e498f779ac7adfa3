/* Nanobenchmarks after Adams & Agesen, "A Comparison of Software and
 * Hardware Techniques for x86 Virtualization" (ASPLOS 2006), in 32 bits.
 * Each times `iters` repetitions of one privileged operation with RDTSC
 * and prints one line. These run in the kernel; the syscall one runs in
 * ring 3 (user/nanobench.c). Interrupts are off while timing. */
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "x86.h"

#define PAGE_A (SCRATCH_BASE + 0 * PAGE_SIZE)
#define PAGE_B (SCRATCH_BASE + 1 * PAGE_SIZE)
#define PAGE_C (SCRATCH_BASE + 2 * PAGE_SIZE)

static uint32_t *pte_a, *pte_b, *pte_c;
static uint32_t frame_x, frame_y;
static volatile uint32_t sink;

static void report(const char *name, uint32_t iters, uint64_t t0, uint64_t t1)
{
	kprintf("nanobench %s iters=%u cycles_per_iter=%llu\n", name, iters,
		udiv64(t1 - t0, iters, NULL));
}

static __attribute__((noinline, noclone)) void empty_call(void)
{
	__asm__ volatile("" ::: "memory");
}

/* A working set of one page: pages A and B share a frame but only one of
 * them is mapped at a time, so touching them alternately faults on every
 * touch; the handler maps the faulting page and evicts the other. */
static bool swap_fault(uint32_t addr)
{
	uint32_t page = ALIGN_DOWN(addr, PAGE_SIZE);
	if (page != PAGE_A && page != PAGE_B)
		return false;
	uint32_t other = page == PAGE_A ? PAGE_B : PAGE_A;
	arch_set_pte(page == PAGE_A ? pte_a : pte_b, frame_x | PTE_P | PTE_W);
	arch_set_pte_flush(page == PAGE_A ? pte_b : pte_a, other, 0);
	return true;
}

void nanobench_kernel(uint32_t iters)
{
	uint32_t flags = arch_irq_save();
	uint64_t t0, t1;

	frame_x = (uint32_t)frame_alloc();
	frame_y = (uint32_t)frame_alloc();
	pte_a = pte_get(kernel_pgdir, PAGE_A, false);
	pte_b = pte_get(kernel_pgdir, PAGE_B, false);
	pte_c = pte_get(kernel_pgdir, PAGE_C, false);
	if (!frame_x || !frame_y || !pte_a)
		panic("nanobench: no memory");

	/* in: a port read that the hardware must do (or a monitor emulate) */
	t0 = rdtsc();
	for (uint32_t i = 0; i < iters; i++)
		sink = arch_bench_in();
	t1 = rdtsc();
	report(arch_bench_in_name, iters, t0, t1);

	/* cr: a control-register write (CR3 reload: also a TLB flush) */
	t0 = rdtsc();
	for (uint32_t i = 0; i < iters; i++)
		arch_bench_cr();
	t1 = rdtsc();
	report(arch_bench_cr_name, iters, t0, t1);

	/* call/ret: the baseline, nothing privileged */
	t0 = rdtsc();
	for (uint32_t i = 0; i < iters; i++)
		empty_call();
	t1 = rdtsc();
	report("call/ret", iters, t0, t1);

	/* pgfault: a #PF taken, resolved by a PTE update, instruction retried */
	kernel_pf_hook = swap_fault;
	t0 = rdtsc();
	for (uint32_t i = 0; i < iters; i++)
		*(volatile uint32_t *)(i & 1 ? PAGE_B : PAGE_A) = i;
	t1 = rdtsc();
	kernel_pf_hook = NULL;
	report("pgfault", iters, t0, t1);
	arch_set_pte_flush(pte_a, PAGE_A, 0);
	arch_set_pte_flush(pte_b, PAGE_B, 0);

	/* divzero: a #DE; the exception table makes the handler skip the div */
	t0 = rdtsc();
	for (uint32_t i = 0; i < iters; i++) {
		uint32_t q, r;
		__asm__ volatile("1:\tdivl %2\n2:\n"
				 "\t.pushsection __ex_table, \"a\"\n"
				 "\t.long 1b, 2b\n"
				 "\t.popsection"
				 : "=a"(q), "=d"(r) : "r"(0u), "0"(1u), "1"(0u));
		sink = q;
	}
	t1 = rdtsc();
	report("divzero", iters, t0, t1);

	/* ptemod: change a live PTE and flush its TLB entry with invlpg */
	t0 = rdtsc();
	for (uint32_t i = 0; i < iters; i++)
		arch_set_pte_flush(pte_c, PAGE_C, (i & 1 ? frame_y : frame_x) | PTE_P | PTE_W);
	t1 = rdtsc();
	report(arch_bench_ptemod_name, iters, t0, t1);
	arch_set_pte_flush(pte_c, PAGE_C, 0);

	frame_free((void *)frame_x);
	frame_free((void *)frame_y);
	arch_irq_restore(flags);
}
