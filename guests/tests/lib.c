#include "lib.h"

#define COM1 0x3F8
#define LSR_THRE 0x20

void putc(char c)
{
    if (c == '\n')
        putc('\r');
    while (!(inb(COM1 + 5) & LSR_THRE))
        ;
    outb(COM1, c);
}

void puts(const char *s) { while (*s) putc(*s++); }

void put_hex(u32 v)
{
    puts("0x");
    for (int i = 28; i >= 0; i -= 4)
        putc("0123456789abcdef"[(v >> i) & 15]);
}

void put_dec(u32 v)
{
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do { buf[--i] = '0' + v % 10; v /= 10; } while (v);
    puts(buf + i);
}

/* "name=value" from the multiboot command line (decimal or 0x hex). */
u32 arg(const struct multiboot_info *mbi, const char *name, u32 fallback)
{
    if (!(mbi->flags & 4))
        return fallback;
    for (const char *p = (const char *)mbi->cmdline; *p; p++) {
        if (p != (const char *)mbi->cmdline && p[-1] != ' ')
            continue;
        const char *n = name, *q = p;
        while (*n && *q == *n) { n++; q++; }
        if (*n || *q != '=')
            continue;
        q++;
        u32 v = 0, base = 10;
        if (q[0] == '0' && q[1] == 'x') { base = 16; q += 2; }
        for (;; q++) {
            u32 d = *q >= '0' && *q <= '9' ? *q - '0' :
                    *q >= 'a' && *q <= 'f' ? *q - 'a' + 10 : 99;
            if (d >= base) break;
            v = v * base + d;
        }
        return v;
    }
    return fallback;
}

void exit(u32 status)
{
    outb(0xF4, status);
    for (;;)
        __asm__ volatile("cli; hlt");
}

static u32 gdt[2 * GDT_PAGE_QWORDS] GDT_PAGE = {
    0, 0,
    0x0000FFFF, 0x00CF9A00,   /* 0x08 ring-0 code: SYSENTER_CS */
    0x0000FFFF, 0x00CF9200,   /* 0x10 ring-0 data (SYSENTER_CS + 8) */
    0x0000FFFF, 0x00CFFA00,   /* 0x18 ring-3 code (SYSENTER_CS + 16) */
    0x0000FFFF, 0x00CFF200,   /* 0x20 ring-3 data (SYSENTER_CS + 24) */
};
static struct dtr gdtr = { 5 * 8 - 1, (u32)gdt };

void ring3_enter(void (*fn)(void), u32 *stack_top)
{
    __asm__ volatile("lgdt %0" :: "m"(gdtr));
    wrmsr(0x174, SEL_KCODE);                  /* IA32_SYSENTER_CS */
    /* IOPL 3; SYSEXIT keeps EFLAGS as they are. */
    __asm__ volatile("pushfl\n\torl $0x3000, (%%esp)\n\tpopfl" ::: "memory", "cc");
    __asm__ volatile(
        "movl $1f, %%edx\n\t"
        "sysexit\n"
        "1: movw $0x23, %%ax\n\t"              /* ring 3: user data segments */
        "movw %%ax, %%ds\n\tmovw %%ax, %%es\n\t"
        "jmp *%%ebx"
        :: "c"(stack_top), "b"(fn) : "eax", "edx", "memory");
    __builtin_unreachable();
}

u64 seg_descriptor(u32 base, u32 limit, u32 type, int pages)
{
    u64 lo = (limit & 0xFFFF) | (base & 0xFFFF) << 16;
    u64 hi = ((base >> 16) & 0xFF) | type << 8 | 1 << 12 | 1 << 15 | (limit & 0xF0000)
             | 1 << 22 | (u64)(pages ? 1 : 0) << 23 | (base & 0xFF000000);
    return lo | hi << 32;
}

u64 int_gate(void *handler)
{
    u32 h = (u32)handler;
    return (h & 0xffff) | (u64)0x08 << 16 | (u64)0x8e << 40 | (u64)(h >> 16) << 48;
}

void load_flat_tables(const struct dtr *gdtr, const struct dtr *idtr)
{
    __asm__ volatile("lgdt %0\n ljmp $0x08, $1f\n1: movl $0x10, %%eax\n movl %%eax, %%ds\n"
                     " movl %%eax, %%es\n movl %%eax, %%ss\n lidt %1"
                     :: "m"(*gdtr), "m"(*idtr) : "eax", "memory");
}
