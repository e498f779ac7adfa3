/* void mips_run(struct mips_state *st, u8 *buf, u32 rounds)
 *
 * The compute loop of bench/mips.py: `rounds` rounds of a sieve of
 * Eratosthenes over SIEVE_N bytes of buf, then a table-driven CRC-32 of the
 * sieve (table built in the 1 KiB after it), continuing st->crc. The round is
 * the bundled OS's compute workload (guests/os/workloads/compute_round.S,
 * included at the end), so both count the same instructions.
 *
 * Exact instruction counting: %ebp counts. Every basic block starts with
 * `addl $n, %ebp` where n is the number of instructions in the block, that
 * add and the block's final branch included; each round adds its count to
 * st->instructions, and mips_run adds its own loop's at the end. Nothing
 * depends on the compiler, so the count is the same on every engine: from
 * mips_run's first instruction to its `ret`, both included.
 *
 * Plain i386 integer instructions only.
 */
#define COUNT(n) addl $n, %ebp

	.text
	.globl mips_run
	.type mips_run, @function
mips_run:
	pushl %ebp                      /* 1 */
	pushl %ebx                      /* 2 */
	xorl %ebp, %ebp                 /* 3 */
	COUNT(7)                        /* 4 */
	movl 20(%esp), %ebx             /* 5  rounds */
	testl %ebx, %ebx                /* 6 */
	jz .Ldone                       /* 7 */

.Lround:                                /* compute_round(st, buf); %ebp survives it */
	COUNT(7)
	pushl 16(%esp)                  /* buf */
	pushl 16(%esp)                  /* st */
	call compute_round
	addl $8, %esp
	decl %ebx
	jnz .Lround

.Ldone:
	COUNT(7)
	movl 12(%esp), %eax             /* st */
	addl %ebp, 8(%eax)              /* st->instructions += this loop's own */
	adcl $0, 12(%eax)
	popl %ebx
	popl %ebp
	ret
	.size mips_run, . - mips_run

/* The round itself: the bundled OS's compute workload, the same source. */
#include "../os/workloads/compute_round.S"

	.section .note.GNU-stack, "", @progbits
