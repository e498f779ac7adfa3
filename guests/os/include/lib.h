/* Tiny libc subset shared by the kernel and the user programs. */
#ifndef RINGOS_LIB_H
#define RINGOS_LIB_H
#include "types.h"

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* printf-style formatting: %c %s %d %u %x %p, width, 0 and # flags, ll. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...);

/* 64-bit division without libgcc (the CPU's divl does 64/32). */
uint64_t udiv64(uint64_t n, uint32_t d, uint32_t *rem);
#endif
