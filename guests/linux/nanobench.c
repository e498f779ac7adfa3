/* nanobench: Adams & Agesen's nanobenchmarks (ASPLOS 2006) as a Linux
 * process sees them, for `ringvisor compare --guest linux`. i386, static,
 * no libc: the kernel's own int $0x80 ABI (arch/x86/entry/syscalls/
 * syscall_32.tbl), so it builds with the same `gcc -m32 -ffreestanding` and
 * `ld -m elf_i386` as ringos and needs no 32-bit libc (libc6-dev-i386).
 *
 *   nanobench ITERS     after a warm-up, times ITERS repetitions of each:
 *     syscall    getpid through int $0x80 (no vDSO, no sysenter): the round trip
 *     in         a read of the master PIC's mask register (port 0x21) after
 *                ioperm(), ringos's `in`; skipped with a line saying why if
 *                the kernel refuses the port or the read faults
 *     call/ret   a call to an empty function: the baseline, nothing privileged
 *     pgfault    first touch of fresh anonymous memory (demand-zero fault)
 *     divzero    #DE -> SIGFPE -> handler (skips the div) -> sigreturn
 *     mprotect   one present page toggled read-only / read-write: a PTE
 *                change and its TLB flush, through a system call
 *
 * Each prints, with RDTSC read around the loop,
 *   nanobench NAME iters=N cycles_per_iter=C tsc_begin=T0 tsc_end=T1
 * the format ringos's nanobench prints plus the two raw reads, by which
 * `ringvisor compare` finds the loop in its log of every RDTSC the guest
 * (kernel included) executed. */

typedef unsigned int u32;
typedef unsigned long long u64;

enum { SYS_exit = 1, SYS_write = 4, SYS_getpid = 20, SYS_munmap = 91, SYS_ioperm = 101,
       SYS_mprotect = 125, SYS_rt_sigreturn = 173, SYS_rt_sigaction = 174, SYS_mmap2 = 192 };
enum { PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20 };
enum { SIGFPE = 8, SIGSEGV = 11, SA_SIGINFO = 4, SA_RESTORER = 0x04000000, SA_NODEFER = 0x40000000 };
enum { PAGE = 4096, PIC_MASTER_DATA = 0x21, WARMUP = 100 };
/* struct ucontext (i386): uc_flags, uc_link, uc_stack (12 bytes), then
 * struct sigcontext, whose eip is its 15th 32-bit word. */
enum { UC_EIP = (5 + 14) * 4 };

static inline long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "0"(n), "b"(a), "c"(b), "d"(c) : "memory");
	return r;
}

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	/* ebx, esi, edi and ebp (the sixth argument) may hold gcc's values:
	 * saved here, loaded from the array eax points to, eax last */
	long args[7] = {n, a, b, c, d, e, f}, r;
	__asm__ volatile("push %%ebp\n\tpush %%ebx\n\tpush %%esi\n\tpush %%edi\n\t"
			 "movl 4(%%eax), %%ebx\n\tmovl 8(%%eax), %%ecx\n\tmovl 12(%%eax), %%edx\n\t"
			 "movl 16(%%eax), %%esi\n\tmovl 20(%%eax), %%edi\n\tmovl 24(%%eax), %%ebp\n\t"
			 "movl 0(%%eax), %%eax\n\tint $0x80\n\t"
			 "pop %%edi\n\tpop %%esi\n\tpop %%ebx\n\tpop %%ebp"
			 : "=a"(r) : "0"(args) : "ecx", "edx", "memory");
	return r;
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (u64)hi << 32 | lo;
}

/* n / d and n % d with 32-bit divl only (no libgcc for 64-bit division). */
static u64 divmod(u64 n, u32 d, u32 *rem)
{
	u32 hi = (u32)(n >> 32), lo = (u32)n, qhi = hi / d, r = hi % d, qlo;
	__asm__("divl %4" : "=a"(qlo), "=d"(r) : "0"(lo), "1"(r), "rm"(d));
	if (rem)
		*rem = r;
	return (u64)qhi << 32 | qlo;
}

static char out[256];
static u32 used;

static void put(const char *s)
{
	while (*s && used < sizeof out)
		out[used++] = *s++;
}

static void put_u64(u64 v)
{
	char digits[24];
	int n = 0;
	do {
		u32 r;
		v = divmod(v, 10, &r);
		digits[n++] = (char)('0' + r);
	} while (v);
	while (n && used < sizeof out)
		out[used++] = digits[--n];
}

static void flush(void)
{
	sys3(SYS_write, 1, (long)out, used);
	used = 0;
}

static void say(const char *line)
{
	put(line);
	put("\n");
	flush();
}

static void report(const char *name, u32 iters, u64 t0, u64 t1)
{
	put("nanobench ");
	put(name);
	put(" iters=");
	put_u64(iters);
	put(" cycles_per_iter=");
	put_u64(divmod(t1 - t0, iters, 0));
	put(" tsc_begin=");
	put_u64(t0);
	put(" tsc_end=");
	put_u64(t1);
	put("\n");
	flush();
}

static void die(const char *why)
{
	put("nanobench: ");
	say(why);
	sys3(SYS_exit, 1, 0, 0);
	for (;;)
		;
}

/* ---- signals: the kernel's struct sigaction, with our own restorer ---- */

struct kernel_sigaction {
	void (*handler)(int, void *, void *);
	u32 flags;
	void (*restorer)(void);
	u32 mask[2];
};

extern void sigreturn_trampoline(void);
__asm__(".text\nsigreturn_trampoline:\n\tmovl $173, %eax\n\tint $0x80\n");

static void on_signal(int sig, void (*handler)(int, void *, void *))
{
	struct kernel_sigaction sa = {handler, SA_SIGINFO | SA_RESTORER | SA_NODEFER,
				      sigreturn_trampoline, {0, 0}};
	if (!handler)
		sa.flags = 0;                /* SIG_DFL */
	if (sys6(SYS_rt_sigaction, sig, (long)&sa, 0, sizeof sa.mask, 0, 0) != 0)
		die("rt_sigaction failed");
}

static void skip_bytes(void *context, u32 n)
{
	*(u32 *)((char *)context + UC_EIP) += n;
}

static void on_sigfpe(int sig, void *info, void *context)
{
	(void)sig; (void)info;
	skip_bytes(context, 2);              /* divl %ecx: f7 f1 */
}

static volatile u32 in_faulted;

static void on_sigsegv(int sig, void *info, void *context)
{
	(void)sig; (void)info;
	in_faulted = 1;
	skip_bytes(context, 1);              /* inb (%dx), %al: ec */
}

/* ---- the benchmarks ---- */

static volatile u32 sink;

static void bench_syscall(u32 iters)
{
	for (u32 i = 0; i < WARMUP; i++)
		sys3(SYS_getpid, 0, 0, 0);
	u64 t0 = rdtsc();
	for (u32 i = 0; i < iters; i++)
		sys3(SYS_getpid, 0, 0, 0);
	u64 t1 = rdtsc();
	report("syscall", iters, t0, t1);
}

static inline u32 inb_pic(void)
{
	u32 v;
	__asm__ volatile(".byte 0xec" : "=a"(v) : "0"(0), "d"(PIC_MASTER_DATA));
	return v & 0xFF;
}

static void bench_in(u32 iters)
{
	long err = sys3(SYS_ioperm, PIC_MASTER_DATA, 1, 1);
	if (err != 0) {
		say("nanobench in skipped: ioperm(0x21) refused");
		return;
	}
	on_signal(SIGSEGV, on_sigsegv);
	sink = inb_pic();
	if (in_faulted) {
		say("nanobench in skipped: inb 0x21 faulted after ioperm()");
		return;
	}
	u64 t0 = rdtsc();
	for (u32 i = 0; i < iters; i++)
		sink = inb_pic();
	u64 t1 = rdtsc();
	on_signal(SIGSEGV, 0);
	report("in", iters, t0, t1);
}

static __attribute__((noinline, noclone)) void empty_call(void)
{
	__asm__ volatile("" ::: "memory");
}

static void bench_callret(u32 iters)
{
	u64 t0 = rdtsc();
	for (u32 i = 0; i < iters; i++)
		empty_call();
	u64 t1 = rdtsc();
	report("call/ret", iters, t0, t1);
}

static char *map_pages(u32 n)
{
	long addr = sys6(SYS_mmap2, 0, (long)n * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((unsigned long)addr >= (unsigned long)-4095)
		die("mmap2 failed (too many iterations for the memory?)");
	return (char *)addr;
}

static void bench_pgfault(u32 iters)
{
	/* One fresh mapping of `iters` pages (4 MiB per 1,000 iterations),
	 * made before the clock starts: the loop holds nothing but the touches. */
	volatile char *mem = map_pages(iters);
	u64 t0 = rdtsc();
	for (u32 i = 0; i < iters; i++)
		mem[i * PAGE] = 1;
	u64 t1 = rdtsc();
	sys3(SYS_munmap, (long)mem, (long)iters * PAGE, 0);
	report("pgfault", iters, t0, t1);
}

static void divide_by_zero(void)
{
	__asm__ volatile("xorl %%ecx, %%ecx\n\tmovl $1, %%eax\n\txorl %%edx, %%edx\n\t"
			 ".byte 0xf7, 0xf1" ::: "eax", "ecx", "edx");
}

static void bench_divzero(u32 iters)
{
	on_signal(SIGFPE, on_sigfpe);
	for (u32 i = 0; i < WARMUP; i++)
		divide_by_zero();
	u64 t0 = rdtsc();
	for (u32 i = 0; i < iters; i++)
		divide_by_zero();
	u64 t1 = rdtsc();
	report("divzero", iters, t0, t1);
}

static void bench_mprotect(u32 iters)
{
	volatile char *mem = map_pages(1);
	mem[0] = 1;                          /* present: each mprotect rewrites a live PTE */
	u64 t0 = rdtsc();
	for (u32 i = 0; i < iters; i++)
		sys3(SYS_mprotect, (long)mem, PAGE, i & 1 ? PROT_READ | PROT_WRITE : PROT_READ);
	u64 t1 = rdtsc();
	report("mprotect", iters, t0, t1);
}

static u32 parse_u32(const char *s)
{
	u32 v = 0;
	if (!*s)
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > 100000000)
			return 0;
		v = v * 10 + (u32)(*s - '0');
	}
	return v;
}

int main(int argc, char **argv)
{
	u32 iters = argc == 2 ? parse_u32(argv[1]) : 0;
	if (iters < 10)
		die("usage: nanobench ITERS (ITERS at least 10)");
	bench_syscall(iters);
	bench_in(iters);
	bench_callret(iters);
	bench_pgfault(iters);
	bench_divzero(iters);
	bench_mprotect(iters);
	return 0;
}

/* The process entry: argc, then argv[], on the stack (the i386 ELF ABI). */
__asm__(".text\n.globl _start\n_start:\n"
	"\txorl %ebp, %ebp\n"
	"\tmovl (%esp), %eax\n"
	"\tleal 4(%esp), %ecx\n"
	"\tandl $-16, %esp\n"
	"\tsubl $8, %esp\n"
	"\tpushl %ecx\n"
	"\tpushl %eax\n"
	"\tcall main\n"
	"\tmovl %eax, %ebx\n"
	"\tmovl $1, %eax\n"
	"\tint $0x80\n");
