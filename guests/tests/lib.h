/* A few helpers for the test kernels: port I/O, a polled COM1, the
 * multiboot command line, and the debug-exit port. */
#ifndef TESTLIB_H
#define TESTLIB_H
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

struct multiboot_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    u32 syms[4], mmap_length, mmap_addr;
};

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

void putc(char c);
void puts(const char *s);
void put_hex(u32 v);
void put_dec(u32 v);
u32 arg(const struct multiboot_info *mbi, const char *name, u32 fallback);
void exit(u32 status) __attribute__((noreturn));
#endif
