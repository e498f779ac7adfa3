/* Guests that are hostile to (or trip over) a trap-and-emulate monitor:
 *   how=1  garbage IDT, then `int $0x30`: no gate is valid (triple fault)
 *   how=2  garbage GDT, then a far jump through it (triple fault)
 *   how=3  the POPF hole: cli, then interrupts re-enabled with POPF and a
 *          wait for three timer ticks (fine natively; a deprivileged kernel's
 *          POPF cannot set IF, so under trap-and-emulate it waits forever)
 *   how=4  reads the first byte past the RAM the memory map gives it (under
 *          a monitor: the monitor's reserved region)
 *   how=5  writes linear 0xFFC00000 (where trap and bt map their region,
 *          every guest segment cut below it); a #GP or #PF is reported and
 *          exits with status 13 or 14
 *   how=6  reads linear 0xFEE00030 with paging off (the xAPIC's version
 *          register, where a PC has one): below the monitors' region, so
 *          the read reaches the machine's MMIO bus as natively; exits 0
 * It runs with its own GDT and IDT (kernel code 0x08, data 0x10). */
#include "lib.h"

volatile u32 hostile_ticks;
static u64 gdt[GDT_PAGE_QWORDS] GDT_PAGE, idt[256];
static u8 garbage[512];

extern char irq0_entry[], gp_entry[], pf_entry[];
__asm__(".text\n"
        "irq0_entry: pushl %eax\n incl hostile_ticks\n movb $0x20, %al\n outb %al, $0x20\n"
        " popl %eax\n iret\n"
        "gp_entry: pushl $13\n call fault_exit\n"
        "pf_entry: pushl $14\n call fault_exit\n");

void fault_exit(u32 vector)
{
    puts(vector == 13 ? "#GP at the monitor's hole\n" : "#PF at the monitor's hole\n");
    exit(vector);
}


static void tables(void)
{
    gdt[1] = 0x00cf9b000000ffffull;         /* 0x08: ring-0 code, flat */
    gdt[2] = 0x00cf93000000ffffull;         /* 0x10: ring-0 data, flat */
    struct dtr g = { 3 * 8 - 1, (u32)gdt }, i = { sizeof(idt) - 1, (u32)idt };
    idt[13] = int_gate(gp_entry);
    idt[14] = int_gate(pf_entry);
    idt[0x20] = int_gate(irq0_entry);
    load_flat_tables(&g, &i);
}

static void timer_on(void)
{
    outb(0x20, 0x11); outb(0xa0, 0x11);     /* 8259 pair: vectors 0x20 and 0x28 */
    outb(0x21, 0x20); outb(0xa1, 0x28);
    outb(0x21, 4); outb(0xa1, 2);
    outb(0x21, 1); outb(0xa1, 1);
    outb(0x21, 0xfe); outb(0xa1, 0xff);     /* IRQ 0 only */
    outb(0x43, 0x34);                       /* PIT channel 0, rate generator, 100 Hz */
    outb(0x40, 11932 & 0xff); outb(0x40, 11932 >> 8);
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    for (unsigned i = 0; i < sizeof(garbage); i++)
        garbage[i] = 0x5a;
    tables();
    switch (arg(mbi, "how", 0)) {
    case 1: {
        struct dtr bad = { 0x7ff, (u32)garbage };
        puts("loading a garbage IDT\n");
        __asm__ volatile("lidt %0\n int $0x30" :: "m"(bad));
        break;
    }
    case 2: {
        struct dtr bad = { 0x3f, (u32)garbage };
        puts("loading a garbage GDT\n");
        __asm__ volatile("lgdt %0\n ljmp $0x08, $1f\n1:" :: "m"(bad));
        break;
    }
    case 3:
        timer_on();
        puts("interrupts re-enabled with popf; waiting for 3 timer ticks\n");
        __asm__ volatile("cli\n pushfl\n orl $0x200, (%%esp)\n popfl" ::: "memory", "cc");
        while (hostile_ticks < 3)
            ;
        puts("3 timer ticks arrived\n");
        return 0;
    case 4: {
        u32 top = (mbi->mem_upper + 1024) << 10;
        puts("reading past the end of my RAM at ");
        put_hex(top);
        puts("\n");
        put_hex(*(volatile u32 *)top);
        puts(" read\n");
        return 0;
    }
    case 6:
        puts("reading 0xfee00030: ");
        put_hex(*(volatile u32 *)0xfee00030u);
        puts("\n");
        return 0;
    case 5:
        puts("writing to 0xffc00000\n");
        *(volatile u32 *)0xffc00000u = 0xdeadbeef;
        puts("written\n");
        return 0;
    }
    return 9;
}
