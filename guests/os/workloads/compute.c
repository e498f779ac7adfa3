/* compute ring=0: the compute workload's rounds run in the kernel. */
#include "kernel.h"
#include "syscall.h"

static uint8_t buf[COMPUTE_SIEVE_N + 1024] __attribute__((aligned(4096)));

void compute_kernel(uint32_t iters)
{
	struct compute_state st = { 0, 0, 0 };

	for (uint32_t i = 0; i < iters; i++)
		compute_round(&st, buf);
	kprintf("compute ring=0 rounds=%u sieve=%u primes=%u\n", iters,
		COMPUTE_SIEVE_N, st.primes);
	kprintf("compute checksum=%08x instructions=%llu\n", st.crc, st.instructions);
}
