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

typedef unsigned long long u64;

static u64 gdt[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 idt[14] __attribute__((aligned(8)));
static struct { u16 limit; u32 base; } __attribute__((packed)) gdtr, idtr;
static volatile u32 value = 0x5eed5eed;
static volatile int stage;

static u64 descriptor(u32 base, u32 limit, u32 type, int pages)
{
    /* present, DPL 0, code/data, D=1; G as asked */
    u64 lo = (limit & 0xFFFF) | (base & 0xFFFF) << 16;
    u64 hi = ((base >> 16) & 0xFF) | type << 8 | 1 << 12 | 1 << 15 | (limit & 0xF0000)
             | 1 << 22 | (u64)(pages ? 1 : 0) << 23 | (base & 0xFF000000);
    return lo | hi << 32;
}

void gp_stub(void);
__asm__(".text\n"
        "gp_stub:\n\t"
        "call gp_entry\n");

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
    gdt[1] = descriptor(0, 0xFFFFF, 0xB, 1);
    gdt[2] = descriptor(0, 0xFFFFF, 0x3, 1);
    gdt[3] = descriptor((u32)&value + 4, 0xFFFFF, 0x3, 1);    /* 4 GiB limit */
    gdt[4] = descriptor((u32)&value, 0xFFF, 0x3, 0);          /* 4 KiB limit */
    gdtr.limit = 5 * 8 - 1;
    gdtr.base = (u32)gdt;
    u32 handler = (u32)gp_stub;
    idt[13] = (handler & 0xFFFF) | 0x08 << 16 | (u64)(0x8E00 | (handler & 0xFFFF0000)) << 32;
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (u32)idt;
    __asm__ volatile("lgdt %0\n\t"
                     "ljmp $0x08, $1f\n"
                     "1:\n\t"
                     "movl $0x10, %%eax\n\t"
                     "movl %%eax, %%ds\n\t"
                     "movl %%eax, %%es\n\t"
                     "movl %%eax, %%ss\n\t"
                     "lidt %1" :: "m"(gdtr), "m"(idtr) : "eax", "memory");

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
