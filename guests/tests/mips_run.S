/* void mips_run(struct mips_state *st, u8 *buf, u32 rounds)
 *
 * The compute loop of bench/mips.py: `rounds` rounds of a sieve of
 * Eratosthenes over SIEVE_N bytes of buf, then a table-driven CRC-32 of the
 * sieve (table built in the 1 KiB after it), continuing st->crc. The round is
 * the bundled OS's compute workload (guests/os/workloads/compute_round.S),
 * copied so the test kernels stay self-contained.
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
#define N 4096
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

	.type compute_round, @function
compute_round:
	pushl %ebp                      /* 1 */
	pushl %ebx                      /* 2 */
	pushl %esi                      /* 3 */
	pushl %edi                      /* 4 */
	xorl %ebp, %ebp                 /* 5 */
	COUNT(11)                       /* 6 */
	movl 24(%esp), %edi             /* 7  buf */
	movl %edi, %edx                 /* 8  edx = buf for the whole round */
	movl $0x01010101, %eax          /* 9  every byte "maybe prime" */
	movl $N/4, %ecx                 /* 10 */
	jmp .Lfill                      /* 11 */

.Lfill:                                 /* memset(buf, 1, N), 4 bytes a time */
	COUNT(5)
	movl %eax, (%edi)
	addl $4, %edi
	decl %ecx
	jnz .Lfill

	COUNT(5)
	movb $0, (%edx)                 /* 0 and 1 are not prime */
	movb $0, 1(%edx)
	movl $2, %esi                   /* i = 2 */
	jmp .Louter

.Louter:                                /* while (i * i < N) */
	COUNT(5)
	movl %esi, %eax
	imull %esi, %eax
	cmpl $N, %eax
	jae .Lsieved

	COUNT(3)                        /* if (buf[i]) strike its multiples */
	cmpb $0, (%edx,%esi)
	je .Lnext

.Linner:                                /* for (j = i*i; j < N; j += i) */
	COUNT(5)
	movb $0, (%edx,%eax)
	addl %esi, %eax
	cmpl $N, %eax
	jb .Linner

.Lnext:
	COUNT(3)
	incl %esi
	jmp .Louter

.Lsieved:                               /* count the primes */
	COUNT(4)
	xorl %ebx, %ebx
	xorl %ecx, %ecx
	jmp .Lcount

.Lcount:
	COUNT(6)
	movzbl (%edx,%ecx), %eax
	addl %eax, %ebx
	incl %ecx
	cmpl $N, %ecx
	jb .Lcount

	COUNT(5)
	movl 20(%esp), %eax             /* st */
	movl %ebx, 4(%eax)              /* st->primes */
	xorl %ecx, %ecx                 /* n = 0 */
	jmp .Ltable

.Ltable:                                /* table[n] = crc32 of byte n */
	COUNT(4)
	movl %ecx, %eax
	movl $8, %esi
	jmp .Lbit

.Lbit:                                  /* c = c >> 1 ^ (c & 1 ? poly : 0) */
	COUNT(9)
	movl %eax, %ebx
	andl $1, %ebx
	negl %ebx
	andl $0xedb88320, %ebx
	shrl $1, %eax
	xorl %ebx, %eax
	decl %esi
	jnz .Lbit

	COUNT(5)
	movl %eax, N(%edx,%ecx,4)
	incl %ecx
	cmpl $256, %ecx
	jb .Ltable

	COUNT(6)                        /* crc = ~st->crc */
	movl 20(%esp), %eax
	movl (%eax), %eax
	notl %eax
	xorl %ecx, %ecx
	jmp .Lcrc

.Lcrc:                                  /* crc = table[(crc ^ b) & 255] ^ crc >> 8 */
	COUNT(9)
	movzbl (%edx,%ecx), %ebx
	xorl %eax, %ebx
	movzbl %bl, %ebx
	shrl $8, %eax
	xorl N(%edx,%ebx,4), %eax
	incl %ecx
	cmpl $N, %ecx
	jb .Lcrc

	COUNT(11)
	notl %eax
	movl 20(%esp), %ebx
	movl %eax, (%ebx)               /* st->crc */
	addl %ebp, 8(%ebx)              /* st->instructions += this round */
	adcl $0, 12(%ebx)
	popl %edi
	popl %esi
	popl %ebx
	popl %ebp
	ret
	.size compute_round, . - compute_round

	.section .note.GNU-stack, "", @progbits
