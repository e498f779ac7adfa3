/* Descriptors written into the GDT after LGDT, then loaded: the CPU reads
 * the table at every segment load (SDM vol. 3 3.4.3), so the new descriptor
 * is the one in force. Linux does this at every context switch (its TLS
 * slots) and for its ESPFIX stack segment.
 *
 * After `lgdt` of a table whose slot 3 (selector 0x18) is empty, the kernel
 * writes slot 3 as a data segment based at `first`, loads FS with 0x18 and
 * reads %fs:0; then rewrites slot 3 with the base of `second` (as a TLS
 * switch would), reloads FS and reads again. It prints
 *     gdtwrite: fs read 0x11111111 then 0x22222222
 * and exits 0. A monitor whose real GDT still has the empty slot raises
 * #GP(0x18) instead ("gdtwrite: #GP loading the new selector", exit 13);
 * one that kept the first descriptor reads 0x11111111 twice (exit 1). */
#include "lib.h"

static u64 gdt[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 idt[14] __attribute__((aligned(8)));
static struct dtr gdtr, idtr;
static volatile u32 first = 0x11111111, second = 0x22222222;


void __attribute__((used, noreturn)) gp_entry(void)
{
    puts("gdtwrite: #GP loading the new selector\n");
    exit(13);
}

static u32 read_fs0(void)
{
    u32 v;
    __asm__ volatile("movl $0x18, %%eax\n\t"
                     "movl %%eax, %%fs\n\t"
                     "movl %%fs:0, %0" : "=r"(v) :: "eax", "memory");
    return v;
}

u32 kmain(u32 magic, const struct multiboot_info *mbi)
{
    gdt[1] = seg_descriptor(0, 0xFFFFF, 0xB, 1);
    gdt[2] = seg_descriptor(0, 0xFFFFF, 0x3, 1);
    gdtr.limit = 4 * 8 - 1;
    gdtr.base = (u32)gdt;
    idt[13] = int_gate(gp_entry);
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (u32)idt;
    load_flat_tables(&gdtr, &idtr);

    gdt[3] = seg_descriptor((u32)&first, 0, 0x3, 1);          /* after LGDT */
    u32 a = read_fs0();
    gdt[3] = seg_descriptor((u32)&second, 0, 0x3, 1);         /* a TLS switch */
    u32 b = read_fs0();
    puts("gdtwrite: fs read ");
    put_hex(a);
    puts(" then ");
    put_hex(b);
    puts("\n");
    return a == 0x11111111 && b == 0x22222222 ? 0 : 1;
}
