/* The compute workload in ring 3; its buffer is demand-zero heap. */
#include "layout.h"
#include "ulib.h"

int compute_main(uint32_t iters)
{
	struct compute_state st = { 0, 0, 0 };
	unsigned char *buf = (unsigned char *)USER_HEAP_BASE;

	for (uint32_t i = 0; i < iters; i++)
		compute_round(&st, buf);
	printf("compute ring=3 rounds=%u sieve=%u primes=%u\n", iters,
	       COMPUTE_SIEVE_N, st.primes);
	printf("compute checksum=%08x instructions=%llu\n", st.crc, st.instructions);
	return 0;
}
