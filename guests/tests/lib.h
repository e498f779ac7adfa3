/* A few helpers for the test kernels: port I/O, a polled COM1, the
 * multiboot command line, and the debug-exit port. */
#ifndef TESTLIB_H
#define TESTLIB_H
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

struct multiboot_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    u32 syms[4], mmap_length, mmap_addr;
};

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline void wrmsr(u32 msr, u32 value)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"(value), "d"(0));
}

/* Selectors of the GDT ring3_enter loads (SYSENTER_CS is 0x08). */
/* A GDT in a page of its own: ringvisor's trap and bt monitors watch the
 * GDT's page (descriptors written after LGDT), so any other store there,
 * a stack push included, would cost them two traps. */
#define GDT_PAGE __attribute__((aligned(4096)))
#define GDT_PAGE_QWORDS 512

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UCODE 0x1B
#define SEL_UDATA 0x23

/* Load the test kernels' flat GDT, point IA32_SYSENTER_CS at it, set IOPL 3
 * (ring 3 may reach the serial and debug-exit ports) and continue in `fn`
 * at ring 3 on `stack_top`. SYSEXIT, not IRET: PVM runs guest ring-0 code
 * in the host kernel's instruction emulator, which has no protected-mode
 * IRET (nor INT n, nor RETF to an outer ring), but does have SYSEXIT. */
void ring3_enter(void (*fn)(void), u32 *stack_top) __attribute__((noreturn));

/* Descriptor tables of the test kernels. */
struct dtr { u16 limit; u32 base; } __attribute__((packed));
/* A present DPL-0 code/data descriptor with D=1; `limit` in 4 KiB pages if
 * `pages` (G=1), else in bytes. */
u64 seg_descriptor(u32 base, u32 limit, u32 type, int pages);
/* A 32-bit ring-0 interrupt gate to `handler` through selector 0x08. */
u64 int_gate(void *handler);
/* LGDT, CS reloaded as 0x08 and DS/ES/SS as 0x10, then LIDT. */
void load_flat_tables(const struct dtr *gdtr, const struct dtr *idtr);

void putc(char c);
void puts(const char *s);
void put_hex(u32 v);
void put_dec(u32 v);
u32 arg(const struct multiboot_info *mbi, const char *name, u32 fallback);
void exit(u32 status) __attribute__((noreturn));
#endif
