/* The ring-3 nanobenchmark: a system call round trip (int $0x80 to the
 * kernel and iret back), timed with RDTSC, which ring 3 may use. */
#include "ulib.h"

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

int nanobench_main(uint32_t iters)
{
	uint64_t t0 = rdtsc();
	for (uint32_t i = 0; i < iters; i++)
		getpid();
	uint64_t t1 = rdtsc();
	printf("nanobench syscall iters=%u cycles_per_iter=%llu\n", iters,
	       udiv64(t1 - t0, iters, NULL));
	return 0;
}
