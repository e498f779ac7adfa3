/* System call ABI of ringos, shared by the kernel and user programs.
 *
 *   int $0x80   EAX = number, arguments in EBX, ECX, EDX, result in EAX.
 *   Negative results are errors (-E* below). All registers but EAX are
 *   preserved.
 */
#ifndef RINGOS_SYSCALL_H
#define RINGOS_SYSCALL_H

#define SYSCALL_VECTOR 0x80

#define SYS_EXIT   0  /* exit(status)                 -> does not return   */
#define SYS_WRITE  1  /* write(fd=1, buf, len)        -> bytes written     */
#define SYS_GETPID 2  /* getpid()                     -> pid               */
#define SYS_YIELD  3  /* yield()                      -> 0                 */
#define SYS_SLEEP  4  /* sleep(ms)                    -> 0 (tick-granular) */
#define SYS_SPAWN  5  /* spawn(fn, arg)               -> pid of new task   */
#define SYS_WAIT   6  /* wait(&status)                -> pid of a dead child */
#define SYS_TIME   7  /* time()                       -> timer ticks since boot */
#define SYS_STAT   8  /* stat(which)                  -> kernel counter    */
#define SYS_SHARED 9  /* shared(op): the page at SHARED_VA -> see below     */
#define NR_SYSCALLS 10

/* SYS_STAT counters */
#define STAT_PREEMPTIONS 0  /* tasks switched out by the timer while runnable */
#define STAT_PAGEFAULTS  1  /* demand-zero faults resolved                    */
#define STAT_TICKS       2
#define STAT_HZ          3
#define STAT_CPU         4  /* the CPU this task runs on                      */
#define STAT_NCPUS       5  /* CPUs online                                    */
#define STAT_CPUS_USED   6  /* bit n: CPU n has run a user task               */

/* SYS_SHARED: one page at SHARED_VA, mapped in every address space through
 * one page table they all share (so every CPU may cache it in its TLB).
 * MAP maps a fresh page whose first word is SHARED_MAGIC and returns 0;
 * UNMAP unmaps it, shoots the translation down on the other CPUs (TLB
 * shootdown IPI, acknowledged), then writes SHARED_POISON into word 0 and 1
 * into word 2 of the old frame, and returns how many CPUs acknowledged. */
#define SHARED_MAP     0
#define SHARED_UNMAP   1
#define SHARED_MAGIC   0x5ca1ab1eu
#define SHARED_POISON  0xdeadbeefu

#define EPERM   1
#define ENOMEM  12
#define EFAULT  14
#define EINVAL  22
#define ECHILD  10
#define EAGAIN  11
#define ENOSYS  38

/* A spawned task starts at the user image's task entry with
 * EAX = fn, EBX = arg, ECX = arg2; the entry calls fn(arg, arg2) and exits
 * with its return value. The first task (init) gets fn = main,
 * arg = workload number, arg2 = iterations. */
#define WL_TASKS     0
#define WL_NANOBENCH 1
#define WL_PROBE     2
#define WL_COMPUTE   3

/* The kernel of the compute workload (compute.S), shared by ring 0 and 3. */
#define COMPUTE_SIEVE_N 4096   /* bytes of sieve; a 1 KiB CRC table follows */
#ifndef __ASSEMBLER__
struct compute_state {
	unsigned crc;          /* running CRC-32 (the checksum)            */
	unsigned primes;       /* primes below COMPUTE_SIEVE_N, last round */
	unsigned long long instructions; /* exact count of executed insns  */
};
void compute_round(struct compute_state *st, unsigned char *buf);
#endif
#endif
