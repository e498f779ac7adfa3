/* Raw x86 instructions. Only the native arch layer, the drivers and the
 * probe/nanobench workloads use these directly; the rest of the kernel goes
 * through arch.h so the paravirtual build can replace them. */
#ifndef RINGOS_X86_H
#define RINGOS_X86_H
#include "types.h"

#define EFLAGS_IF   (1u << 9)
#define EFLAGS_IOPL (3u << 12)

#define CR0_PG (1u << 31)
#define CR0_WP (1u << 16)

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t read_eflags(void)
{
	uint32_t f;
	__asm__ volatile("pushfl; popl %0" : "=r"(f));
	return f;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c,
			 uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			 : "a"(leaf), "c"(0));
}

struct __attribute__((packed)) dtr {
	uint16_t limit;
	uint32_t base;
};
#endif
