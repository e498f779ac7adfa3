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

static u64 gdt_a[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 gdt_b[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 idt[14] __attribute__((aligned(8)));
static struct dtr gdtr_a, gdtr_b, idtr;

#define FAR_CODE 0x01100000u           /* 17 MiB: past GDT B's code limit */


void __attribute__((used, noreturn)) gp_entry(void)
{
    puts("csreload: the new descriptor's limit is in force\n");
    exit(0);
}

u32 kmain(u32 magic, const struct multiboot_info *mbi)
{
    gdt_a[1] = seg_descriptor(0, 0xFFFFF, 0xB, 1);
    gdt_a[2] = seg_descriptor(0, 0xFFFFF, 0x3, 1);
    gdt_b[1] = seg_descriptor(0, (16 << 20 >> 12) - 1, 0xB, 1);
    gdt_b[2] = gdt_a[2];
    gdtr_a.limit = gdtr_b.limit = 3 * 8 - 1;
    gdtr_a.base = (u32)gdt_a;
    gdtr_b.base = (u32)gdt_b;
    idt[13] = int_gate(gp_entry);
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
