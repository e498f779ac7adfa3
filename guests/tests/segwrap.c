/* A negative offset that wraps around 4 GiB, as glibc's i386 TLS uses
 * (`mov %gs:0xffffffac, %edx`): the segment has a 4 GiB limit, so the
 * offset is legal and the address is base - 0x54 (SDM vol. 3 3.4.5: the
 * linear address wraps). A monitor that cut the limit below its region
 * must still let it through.
 *
 * FS gets a data segment based 4 bytes past `value`, limit 4 GiB; the
 * kernel reads %fs:0xfffffffc and prints
 *     segwrap: fs:-4 read 0x5eed5eed
 * then loads FS with a segment of limit 0xfff and reads %fs:0x1000, beyond
 * the segment's own limit: that #GP is the guest's, and its handler prints
 *     segwrap: #GP beyond the segment's own limit
 * and exits 0. A monitor that raises #GP for the wrapping read exits 13
 * after "segwrap: #GP at the wrapping read". */
#include "lib.h"

static u64 gdt[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 idt[14] __attribute__((aligned(8)));
static struct dtr gdtr, idtr;
static volatile u32 value = 0x5eed5eed;
static volatile int stage;


void __attribute__((used, noreturn)) gp_entry(void)
{
    if (stage == 0) {
        puts("segwrap: #GP at the wrapping read\n");
        exit(13);
    }
    puts("segwrap: #GP beyond the segment's own limit\n");
    exit(0);
}

u32 kmain(u32 magic, const struct multiboot_info *mbi)
{
    gdt[1] = seg_descriptor(0, 0xFFFFF, 0xB, 1);
    gdt[2] = seg_descriptor(0, 0xFFFFF, 0x3, 1);
    gdt[3] = seg_descriptor((u32)&value + 4, 0xFFFFF, 0x3, 1);    /* 4 GiB limit */
    gdt[4] = seg_descriptor((u32)&value, 0xFFF, 0x3, 0);          /* 4 KiB limit */
    gdtr.limit = 5 * 8 - 1;
    gdtr.base = (u32)gdt;
    idt[13] = int_gate(gp_entry);
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (u32)idt;
    load_flat_tables(&gdtr, &idtr);

    u32 v;
    __asm__ volatile("movl $0x18, %%eax\n\t"
                     "movl %%eax, %%fs\n\t"
                     "movl %%fs:0xfffffffc, %0" : "=r"(v) :: "eax", "memory");
    puts("segwrap: fs:-4 read ");
    put_hex(v);
    puts("\n");
    stage = 1;
    __asm__ volatile("movl $0x20, %%eax\n\t"
                     "movl %%eax, %%fs\n\t"
                     "movl %%fs:0x1000, %0" : "=r"(v) :: "eax", "memory");
    puts("segwrap: the read beyond the limit ran\n");
    return 1;
}
