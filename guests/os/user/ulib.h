/* The user program's view of the kernel: system-call wrappers and printf. */
#ifndef RINGOS_ULIB_H
#define RINGOS_ULIB_H
#include "lib.h"
#include "syscall.h"

static inline int syscall3(int nr, uint32_t a, uint32_t b, uint32_t c)
{
	int r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	return r;
}

static inline _Noreturn void exit(int status)
{
	syscall3(SYS_EXIT, (uint32_t)status, 0, 0);
	__builtin_unreachable();
}

static inline int write(int fd, const void *buf, size_t len)
{
	return syscall3(SYS_WRITE, (uint32_t)fd, (uint32_t)buf, len);
}

static inline int getpid(void) { return syscall3(SYS_GETPID, 0, 0, 0); }
static inline int yield(void) { return syscall3(SYS_YIELD, 0, 0, 0); }
static inline int sleep_ms(uint32_t ms) { return syscall3(SYS_SLEEP, ms, 0, 0); }
static inline uint32_t uptime_ticks(void) { return (uint32_t)syscall3(SYS_TIME, 0, 0, 0); }
static inline int kstat(int which) { return syscall3(SYS_STAT, (uint32_t)which, 0, 0); }
static inline int shared(int op) { return syscall3(SYS_SHARED, (uint32_t)op, 0, 0); }
static inline int wait(int *status) { return syscall3(SYS_WAIT, (uint32_t)status, 0, 0); }

typedef int (*task_fn)(int arg);
static inline int spawn(task_fn fn, int arg)
{
	return syscall3(SYS_SPAWN, (uint32_t)fn, (uint32_t)arg, 0);
}

int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* workloads */
int tasks_main(int lines);
int nanobench_main(uint32_t iters);
int compute_main(uint32_t iters);
#endif
