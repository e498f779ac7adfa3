/* Basic types: the freestanding headers gcc ships are allowed, nothing else. */
#ifndef RINGOS_TYPES_H
#define RINGOS_TYPES_H
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdarg.h>

#define ALIGN_UP(x, a)   (((x) + (a) - 1) & ~((a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((a) - 1))
#define ARRAY_SIZE(a)    (sizeof(a) / sizeof((a)[0]))
#define PAGE_SIZE 4096u
#endif
