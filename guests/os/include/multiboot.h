/* Multiboot 1 (the subset ringos uses). */
#ifndef RINGOS_MULTIBOOT_H
#define RINGOS_MULTIBOOT_H
#include "types.h"

#define MULTIBOOT_HEADER_MAGIC 0x1badb002
#define MULTIBOOT_BOOT_MAGIC   0x2badb002
#define MULTIBOOT_HEADER_FLAGS 0x00000003 /* page-align modules, memory info */

#define MBI_MEM     (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MMAP    (1u << 6)

struct multiboot_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
	uint32_t mods_count, mods_addr, syms[4];
	uint32_t mmap_length, mmap_addr;
} __attribute__((packed));

struct multiboot_mmap {
	uint32_t size;   /* of the rest of the entry, without this field */
	uint64_t addr, len;
	uint32_t type;   /* 1 = available RAM */
} __attribute__((packed));
#endif
