/* A far jump that reloads CS with the SAME selector after LGDT changed its
 * descriptor: the CPU reads the new descriptor (SDM vol. 3 3.4.3: a segment
 * register load always reads the table), so the new limit is in force.
 *
 * GDT A: 0x08 flat 4 GiB code. GDT B: 0x08 the same code with a 16 MiB
 * limit. After `lgdt B; ljmp $0x08` the kernel executes CLI (which traps under
 * a deprivileging monitor), then calls a RET placed at 17 MiB: on hardware
 * that is beyond CS's limit and raises #GP, whose handler prints
 *     csreload: the new descriptor's limit is in force
 * and exits 0. A monitor that keeps the cache it loaded before the jump (the
 * selector number did not change) lets the call through:
 *     csreload: the call ran past the new limit (a stale CS cache)
 * and exit 1. */
#include "lib.h"

typedef unsigned long long u64;

static u64 gdt_a[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 gdt_b[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 idt[14] __attribute__((aligned(8)));
static struct { u16 limit; u32 base; } __attribute__((packed)) gdtr_a, gdtr_b, idtr;

#define FAR_CODE 0x01100000u           /* 17 MiB: past GDT B's code limit */

static u64 descriptor(u32 base, u32 limit_pages, u32 type)
{
    /* G=1 (4 KiB units), D=1, present, DPL 0, code/data */
    u64 lo = (limit_pages & 0xFFFF) | (base & 0xFFFF) << 16;
    u64 hi = ((base >> 16) & 0xFF) | type << 8 | 1 << 12 | 1 << 15 | (limit_pages & 0xF0000)
             | 1 << 22 | 1 << 23 | (base & 0xFF000000);
    return lo | hi << 32;
}

void gp_stub(void);
__asm__(".text\n"
        "gp_stub:\n\t"
        "call gp_entry\n");

void __attribute__((used, noreturn)) gp_entry(void)
{
    puts("csreload: the new descriptor's limit is in force\n");
    exit(0);
}

u32 kmain(u32 magic, const struct multiboot_info *mbi)
{
    gdt_a[1] = descriptor(0, 0xFFFFF, 0xB);
    gdt_a[2] = descriptor(0, 0xFFFFF, 0x3);
    gdt_b[1] = descriptor(0, (16 << 20 >> 12) - 1, 0xB);
    gdt_b[2] = gdt_a[2];
    gdtr_a.limit = gdtr_b.limit = 3 * 8 - 1;
    gdtr_a.base = (u32)gdt_a;
    gdtr_b.base = (u32)gdt_b;
    u32 handler = (u32)gp_stub;
    idt[13] = (handler & 0xFFFF) | 0x08 << 16 | (u64)(0x8E00 | (handler & 0xFFFF0000)) << 32;
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (u32)idt;
    *(volatile u8 *)FAR_CODE = 0xC3;    /* ret */

    __asm__ volatile("lgdt %0\n\t"
                     "ljmp $0x08, $1f\n"
                     "1:\n\t"
                     "movl $0x10, %%eax\n\t"
                     "movl %%eax, %%ds\n\t"
                     "movl %%eax, %%es\n\t"
                     "movl %%eax, %%ss\n\t"
                     "lidt %1\n\t"
                     "lgdt %2\n\t"
                     "ljmp $0x08, $2f\n"
                     "2:\n\t"
                     "cli\n\t"
                     "movl %3, %%eax\n\t"
                     "call *%%eax"
                     :: "m"(gdtr_a), "m"(idtr), "m"(gdtr_b), "i"(FAR_CODE) : "eax", "memory");
    puts("csreload: the call ran past the new limit (a stale CS cache)\n");
    return 1;
}
