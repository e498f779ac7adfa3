/* The pc machine as a test kernel in the style of kvm-unit-tests sees it:
 * IA32_APIC_BASE by RDMSR, the xAPIC page, the CPU count (fw_cfg's, else the
 * MP table's enabled processors: the kvm engine has no fw_cfg), the I/O APIC,
 * the local APIC timer, and the application processors started by
 * INIT-SIPI-SIPI (a real-mode trampoline at 0x8000 that enters protected
 * mode and joins in). Each step prints one line; the exit status is the
 * number of failed checks. */
#include "lib.h"

#define APIC 0xFEE00000u
#define IOAPIC 0xFEC00000u
#define TRAMPOLINE 0x8000u
#define V_IPI 0x40          /* AP -> BSP, and BSP -> AP */
#define V_TIMER 0x41
#define V_PIT 0x50          /* I/O APIC pin 2 (IRQ 0) */
#define MAX_CPUS 8

static u64 gdt[3], idt[256];
static struct dtr gdtr, idtr;

volatile u32 ipis[MAX_CPUS], timer_ticks, pit_ticks, alive, ap_ids;
volatile u32 ap_stack_next;
static u32 failures;

static inline u32 rd(u32 reg) { return *(volatile u32 *)(APIC + reg); }
static inline void wr(u32 reg, u32 v) { *(volatile u32 *)(APIC + reg) = v; }
static u32 io_rd(u32 reg) { *(volatile u32 *)IOAPIC = reg; return *(volatile u32 *)(IOAPIC + 0x10); }
static void io_wr(u32 reg, u32 v) { *(volatile u32 *)IOAPIC = reg; *(volatile u32 *)(IOAPIC + 0x10) = v; }

static u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (u64)hi << 32 | lo;
}

static void check(int ok, const char *what)
{
    puts(ok ? "ok " : "FAIL ");
    puts(what);
    putc('\n');
    failures += !ok;
}

/* Interrupt handlers: count, EOI, IRET. */
extern char ipi_entry[], timer_entry[], pit_entry[];
__asm__(".text\n"
        "ipi_entry: pushl %eax\n movl 0xFEE00020, %eax\n shrl $24, %eax\n"
        " lock incl ipis(,%eax,4)\n movl $0, 0xFEE000B0\n popl %eax\n iret\n"
        "timer_entry: lock incl timer_ticks\n movl $0, 0xFEE000B0\n iret\n"
        "pit_entry: lock incl pit_ticks\n movl $0, 0xFEE000B0\n iret\n");


/* The AP's 32-bit entry (from the trampoline, on its own stack). */
void ap_main(void)
{
    load_flat_tables(&gdtr, &idtr);
    u32 id = rd(0x20) >> 24;
    wr(0xF0, 0x1FF);                          /* software-enable the APIC */
    __asm__ volatile("lock orl %0, ap_ids" :: "r"(1u << id) : "memory");
    __asm__ volatile("lock incl alive" ::: "memory");
    wr(0x310, 0);                             /* fixed IPI to APIC 0 */
    wr(0x300, V_IPI);
    __asm__ volatile("sti");
    for (;;)
        __asm__ volatile("hlt");
}

/* Real mode at 0x8000 (SIPI vector 8): load a GDT, enter protected mode,
 * take a stack, call ap_main. Assembled for 0x8000 and copied there. */
extern char tramp_start[], tramp_end[];
__asm__(".code16\n tramp_start:\n cli\n"
        " lgdtl %cs:(tramp_gdtr - tramp_start)\n"
        " movl %cr0, %eax\n orl $1, %eax\n movl %eax, %cr0\n"
        " ljmpl $0x08, $(0x8000 + tramp_32 - tramp_start)\n"
        ".code32\n tramp_32: movl $0x10, %eax\n movl %eax, %ds\n movl %eax, %es\n movl %eax, %ss\n"
        " movl $4096, %eax\n lock xaddl %eax, ap_stack_next\n leal 4096(%eax), %esp\n"
        " movl $ap_main, %eax\n call *%eax\n"               /* absolute: this code runs copied */
        ".balign 8\n tramp_gdt: .quad 0, 0x00cf9b000000ffff, 0x00cf93000000ffff\n"
        " tramp_gdtr: .word 23\n .long 0x8000 + tramp_gdt - tramp_start\n"
        " tramp_end:\n .code32\n");

static u8 ap_stacks[MAX_CPUS][4096] __attribute__((aligned(16)));

static u32 fw_cfg_cpus(void)
{
    __asm__ volatile("outw %0, %1" :: "a"((u16)0), "Nd"((u16)0x510));     /* signature */
    char sig[4];
    for (int i = 0; i < 4; i++)
        sig[i] = inb(0x511);
    if (sig[0] != 'Q' || sig[1] != 'E' || sig[2] != 'M' || sig[3] != 'U')
        return 0;
    __asm__ volatile("outw %0, %1" :: "a"((u16)5), "Nd"((u16)0x510));     /* FW_CFG_NB_CPUS */
    return inb(0x511) | inb(0x511) << 8;
}

/* The MP floating pointer (MP spec 1.4, 4.): the last KiB of base memory or
 * the BIOS ROM area; its configuration table lists the processors. */
static u32 mptable_cpus(void)
{
    static const u32 areas[][2] = { { 0x9FC00, 0xA0000 }, { 0xF0000, 0x100000 } };
    for (u32 a = 0; a < 2; a++)
        for (u32 p = areas[a][0]; p < areas[a][1]; p += 16) {
            if (*(volatile u32 *)p != 0x5F504D5F)                   /* "_MP_" */
                continue;
            u8 *config = (u8 *)*(u32 *)(p + 4);
            if (!config || *(u32 *)config != 0x504D4350)            /* "PCMP" */
                return 0;
            u32 count = *(u16 *)(config + 34), cpus = 0;
            u8 *entry = config + 44;
            for (u32 i = 0; i < count; i++) {
                if (entry[0] == 0) {                                 /* processor, 20 bytes */
                    cpus += entry[3] & 1;                            /* enabled */
                    entry += 20;
                } else {
                    entry += 8;
                }
            }
            return cpus;
        }
    return 0;
}

static void wait_for(volatile u32 *what, u32 value)
{
    for (u32 spins = 0; *what < value && spins < 20000000; spins++)
        __asm__ volatile("pause");
}

static void ipi(u32 dest, u32 icr)
{
    wr(0x310, dest << 24);
    wr(0x300, icr);
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    gdt[1] = 0x00cf9b000000ffffull;
    gdt[2] = 0x00cf93000000ffffull;
    idt[V_IPI] = int_gate(ipi_entry);
    idt[V_TIMER] = int_gate(timer_entry);
    idt[V_PIT] = int_gate(pit_entry);
    gdtr = (struct dtr){ sizeof(gdt) - 1, (u32)gdt };
    idtr = (struct dtr){ sizeof(idt) - 1, (u32)idt };
    load_flat_tables(&gdtr, &idtr);

    u32 eax = 1, ebx, ecx, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx));
    check(edx >> 9 & 1, "CPUID.1:EDX.APIC");
    u64 base = rdmsr(0x1B);
    puts("IA32_APIC_BASE="); put_hex((u32)base); putc('\n');
    check((base & 0xFFFFF000) == APIC && base >> 11 & 1 && base >> 8 & 1, "APIC enabled at 0xFEE00000, BSP");
    check((rd(0x30) & 0xFF) == 0x14, "APIC version 0x14");
    check(rd(0x20) >> 24 == ebx >> 24, "APIC ID = CPUID initial APIC ID");
    u32 cpus = fw_cfg_cpus();
    if (cpus) {
        puts("fw_cfg cpus="); put_dec(cpus); putc('\n');
    } else {
        cpus = mptable_cpus();
        puts("mptable cpus="); put_dec(cpus); putc('\n');
    }
    wr(0xF0, 0x1FF);

    /* The application processors first, with interrupts still off here
     * (their IPIs wait in this APIC's IRR until the STI below): INIT, SIPI,
     * SIPI (MP spec B.4). */
    if (cpus > 1) {
        u8 *dst = (u8 *)TRAMPOLINE;
        for (char *p = tramp_start; p < tramp_end; p++)
            *dst++ = *p;
        ap_stack_next = (u32)ap_stacks[1];
        ipi(0, 0xC4500);                      /* INIT, all excluding self */
        ipi(0, 0xC4600 | TRAMPOLINE >> 12);   /* STARTUP */
        ipi(0, 0xC4600 | TRAMPOLINE >> 12);   /* the second is ignored by running APs */
        wait_for(&alive, cpus - 1);
        puts("APs alive="); put_dec(alive); puts(" ids="); put_hex(ap_ids); putc('\n');
        check(alive == cpus - 1, "every AP started once");
    }

    /* The local APIC timer: periodic, divide by 16, 10000 counts. */
    wr(0x3E0, 0x3);
    wr(0x320, 1 << 17 | V_TIMER);
    wr(0x380, 10000);
    __asm__ volatile("sti");
    while (timer_ticks < 3)
        __asm__ volatile("hlt");
    wr(0x320, 1 << 16);                       /* masked */
    check(timer_ticks >= 3, "local APIC timer: 3 periodic interrupts");

    /* The PIT through the I/O APIC: pin 2 (the MADT's override of IRQ 0),
     * with the 8259 pair masked and LINT0 masked (no virtual wire). */
    check((io_rd(1) & 0xFF) == 0x20 && (io_rd(1) >> 16 & 0xFF) == 23, "I/O APIC version 0x20, 24 pins");
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    wr(0x350, 1 << 16);
    io_wr(0x10 + 2 * 2 + 1, 0);               /* destination APIC 0 */
    io_wr(0x10 + 2 * 2, V_PIT);               /* fixed, edge, unmasked */
    outb(0x43, 0x34);
    outb(0x40, 0x9B);
    outb(0x40, 0x2E);                         /* 100 Hz */
    while (pit_ticks < 3)
        __asm__ volatile("hlt");
    io_wr(0x10 + 2 * 2, 1 << 16);
    check(pit_ticks >= 3, "PIT through I/O APIC pin 2: 3 interrupts");

    if (cpus > 1) {
        /* The APs' IPIs share a vector: ones that arrive while it is still
         * in the IRR merge into one, as on hardware. */
        wait_for(&ipis[0], 1);
        check(ipis[0] >= 1 && ap_ids == ((1u << cpus) - 2), "IPIs from the APs, every AP's ID seen");
        for (u32 id = 1; id < cpus; id++)
            ipi(id, V_IPI);
        for (u32 id = 1; id < cpus; id++)
            wait_for(&ipis[id], 1);
        u32 got = 0;
        for (u32 id = 1; id < cpus; id++)
            got += ipis[id];
        check(got == cpus - 1, "an IPI to every AP");
    }
    __asm__ volatile("cli");
    puts("apic done failures="); put_dec(failures); putc('\n');
    return failures;
}
