/* Kernel-wide declarations. */
#ifndef RINGOS_KERNEL_H
#define RINGOS_KERNEL_H
#include "types.h"
#include "lib.h"
#include "arch.h"

#define RINGOS_VERSION "0.1"
#define TIMER_HZ 100

/* console.c */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void console_write(const char *s, size_t n);
_Noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void kernel_exit(int status);

/* cmdline.c */
struct options {
	int workload;        /* WL_* */
	const char *workload_name;
	uint32_t iters;      /* 0 = the workload's default */
	int ring;            /* compute: 0 or 3 */
	int enlighten;       /* 1: use ringvisor's hypercalls where found */
};
void parse_cmdline(const char *cmdline, struct options *opt, bool report);

/* frames.c: physical page frames (identity-mapped, so a frame's physical
 * address is also its kernel virtual address). */
void frames_init(const struct boot_info *bi);
void *frame_alloc(void);          /* zeroed page, or NULL */
void frame_free(void *frame);
uint32_t frames_free_count(void);
uint32_t ram_top(void);

/* workloads */
void probe_run(void);
void nanobench_kernel(uint32_t iters);
void compute_kernel(uint32_t iters);

extern struct options opts;
#endif
