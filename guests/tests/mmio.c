/* Device memory and the local APIC as a deprivileged kernel's monitor must
 * virtualize them (ringvisor's trap and bt monitors never map a device
 * page: every access traps and is emulated or single-stepped). Each line it
 * prints must read the same natively and under every monitor:
 *   - the forms of access: MOV loads and stores (r/m, moffs, immediate,
 *     8/16/32-bit), MOVZX, a read-modify-write OR, XCHG, REP MOVSL out of
 *     the APIC page, ADD from the APIC page;
 *   - paging on: the APIC mapped at another linear address, and a write
 *     through a read-only mapping with CR0.WP=1 (the guest's own #PF);
 *   - IA32_APIC_BASE written (same value, a reserved bit: #GP, relocation),
 *     IA32_TSC_DEADLINE absent (#GP: no TSC-deadline timer);
 *   - interrupts: a self-IPI held off by IF=0 and by the TPR, delivered
 *     when they allow it; the PIT through the 8259 as ExtINT on LINT0.
 * The exit status is the number of failed checks. */
#include "lib.h"

#define APIC 0xFEE00000u
#define IOAPIC 0xFEC00000u
#define MOVED 0xFEF00000u         /* a free page above the xAPIC's */
#define ALIAS 0x00400000u         /* linear: the APIC page, paging on */
#define ALIAS_RO 0x00401000u      /* linear: the APIC page, read-only */
#define V_SELF 0x41
#define V_PIT 0x20

static u64 gdt[3], idt[256];
static struct dtr gdtr, idtr;
static u32 page_dir[1024] __attribute__((aligned(4096)));
static u32 page_table[2][1024] __attribute__((aligned(4096)));
volatile u32 self_ipis, pit_ticks, gp_faults, page_faults, fault_cr2, fault_code;
static u32 failures;

static inline u32 rd(u32 base, u32 reg) { return *(volatile u32 *)(base + reg); }
static inline void wr(u32 base, u32 reg, u32 v) { *(volatile u32 *)(base + reg) = v; }

static void check(int ok, const char *what)
{
    puts(ok ? "ok " : "FAIL ");
    puts(what);
    putc('\n');
    failures += !ok;
}

static void show(const char *what, u32 v)
{
    puts(what); puts("="); put_hex(v); putc('\n');
}

/* #GP and #PF skip the 2-byte instruction that faulted (WRMSR, RDMSR,
 * MOV %eax,(%ebx)); the IPI handler EOIs the APIC, the PIT's the 8259. */
extern char gp_entry[], pf_entry[], self_entry[], pit_entry[];
__asm__(".text\n"
        "gp_entry: incl gp_faults\n addl $4, %esp\n addl $2, (%esp)\n iret\n"
        "pf_entry: incl page_faults\n popl fault_code\n pushl %eax\n movl %cr2, %eax\n"
        " movl %eax, fault_cr2\n popl %eax\n addl $2, (%esp)\n iret\n"
        "self_entry: incl self_ipis\n movl $0, 0xFEE000B0\n iret\n"
        "pit_entry: incl pit_ticks\n pushl %eax\n movb $0x20, %al\n outb %al, $0x20\n popl %eax\n iret\n");

static u32 rdmsr_lo(u32 msr)
{
    u32 lo = 0, hi = 0;
    __asm__ volatile("rdmsr" : "+a"(lo), "=d"(hi) : "c"(msr));
    return lo;
}

static void wrmsr_lo(u32 msr, u32 lo)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"(lo), "d"(0));
}

/* The forms of access, against the APIC at `base` (linear). */
static void access_forms(u32 base, const char *where)
{
    u32 v, w;
    puts("-- "); puts(where); putc('\n');
    __asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(base + 0x30));         /* 8B */
    show("MOV r32,m32 version", v & 0xFF);
    __asm__ volatile("movzbl (%1), %0" : "=r"(v) : "r"(base + 0x30));       /* 0F B6: stepped */
    show("MOVZX version byte", v);
    __asm__ volatile("movw (%1), %%ax" : "=a"(v) : "r"(base + 0x30), "0"(0)); /* 66 8B */
    show("MOV r16,m16 version", v);
    __asm__ volatile("movb (%1), %%al" : "=a"(v) : "r"(base + 0x32), "0"(0)); /* 8A */
    show("MOV r8,m8 max LVT", v);
    __asm__ volatile("movl $0x30, (%0)" :: "r"(base + 0x80) : "memory");     /* C7 */
    __asm__ volatile("movl %1, %%eax\n movl (%%eax), %0" : "=r"(v) : "r"(base + 0x80) : "eax");
    show("MOV m32,imm32 TPR", v);
    __asm__ volatile("movl %0, (%1)" :: "r"(0x20u), "r"(base + 0x80) : "memory"); /* 89 */
    show("MOV m32,r32 TPR", rd(base, 0x80));
    w = 0x10;
    __asm__ volatile("xchgl %0, (%1)" : "+r"(w) : "r"(base + 0x80) : "memory");  /* stepped */
    show("XCHG old TPR", w);
    show("XCHG new TPR", rd(base, 0x80));
    __asm__ volatile("orl $0x20, (%0)" :: "r"(base + 0x80) : "memory");     /* RMW: stepped */
    show("OR m32,imm TPR", rd(base, 0x80));
    wr(base, 0x80, 0);
    u32 copy[4] = { 0, 0, 0, 0 };
    __asm__ volatile("cld\n rep movsl" :: "S"(base + 0x30), "D"(copy), "c"(4) : "memory");
    show("REP MOVSL version", copy[0]);
    show("REP MOVSL (reserved)", copy[1]);
    v = 1;
    __asm__ volatile("addl (%1), %0" : "+r"(v) : "r"(base + 0x30));          /* 03: stepped */
    show("ADD version+1", v & 0xFF);
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    gdt[1] = 0x00cf9b000000ffffull;
    gdt[2] = 0x00cf93000000ffffull;
    idt[13] = int_gate(gp_entry);
    idt[14] = int_gate(pf_entry);
    idt[V_SELF] = int_gate(self_entry);
    idt[V_PIT] = int_gate(pit_entry);
    gdtr = (struct dtr){ sizeof(gdt) - 1, (u32)gdt };
    idtr = (struct dtr){ sizeof(idt) - 1, (u32)idt };
    load_flat_tables(&gdtr, &idtr);
    wr(APIC, 0xF0, 0x1FF);                    /* software-enabled, spurious vector 0xFF */

    /* moffs forms (A1, A3), paging off. */
    u32 v;
    __asm__ volatile("movl 0xFEE00030, %0" : "=a"(v));
    show("MOV eax,moffs version", v & 0xFF);
    __asm__ volatile("movl %0, 0xFEE00080" :: "a"(0x40u) : "memory");
    show("MOV moffs,eax TPR", rd(APIC, 0x80));
    wr(APIC, 0x80, 0);
    access_forms(APIC, "paging off");

    /* Paging on: RAM identity-mapped up to 4 MiB; the APIC again at ALIAS,
     * and read-only at ALIAS_RO; the I/O APIC identity-mapped. */
    for (u32 i = 0; i < 1024; i++)
        page_table[0][i] = i << 12 | 3;
    page_table[1][0] = APIC | 0x13;           /* present, writable, PCD */
    page_table[1][1] = APIC | 0x11;           /* present, read-only, PCD */
    page_dir[0] = (u32)page_table[0] | 3;
    page_dir[1] = (u32)page_table[1] | 3;
    static u32 io_table[1024] __attribute__((aligned(4096)));
    io_table[0] = IOAPIC | 0x13;
    io_table[0x200] = APIC | 0x13;            /* 0xFEE00000 identity-mapped too */
    page_dir[IOAPIC >> 22] = (u32)io_table | 3;
    __asm__ volatile("movl %0, %%cr3\n movl %%cr0, %%eax\n orl $0x80010000, %%eax\n movl %%eax, %%cr0"
                     :: "r"(page_dir) : "eax", "memory");   /* PG and WP */
    access_forms(ALIAS, "paging on, aliased");
    *(volatile u32 *)IOAPIC = 1;
    show("I/O APIC version", *(volatile u32 *)(IOAPIC + 0x10) & 0xFF);
    show("read-only alias version", rd(ALIAS_RO, 0x30) & 0xFF);
    __asm__ volatile("movl %0, (%1)" :: "a"(0x30u), "b"(ALIAS_RO + 0x80) : "memory");  /* 89 03 */
    check(page_faults == 1 && fault_cr2 == ALIAS_RO + 0x80 && fault_code == 3,
          "a write through the read-only alias is the guest's #PF (present, write)");
    check(rd(APIC, 0x80) == 0, "and did not reach the TPR");

    /* IA32_APIC_BASE: the same value; a reserved bit (#GP); relocation. */
    u32 base = rdmsr_lo(0x1B);
    show("IA32_APIC_BASE", base);
    wrmsr_lo(0x1B, base);
    check(gp_faults == 0 && rdmsr_lo(0x1B) == base, "IA32_APIC_BASE rewritten unchanged");
    wrmsr_lo(0x1B, base | 1);                 /* bit 0 is reserved */
    check(gp_faults == 1, "a reserved bit in IA32_APIC_BASE is #GP");
    rdmsr_lo(0x6E0);
    check(gp_faults == 2, "IA32_TSC_DEADLINE is #GP (CPUID reports no TSC-deadline timer)");
    io_table[0x300] = MOVED | 0x13;           /* 0xFEF00000 (the moved APIC) mapped */
    __asm__ volatile("movl %%cr3, %%eax\n movl %%eax, %%cr3" ::: "eax", "memory");
    wrmsr_lo(0x1B, (base & 0xFFF) | MOVED);
    show("moved APIC version", rd(MOVED, 0x30) & 0xFF);
    wr(MOVED, 0x80, 0x50);
    show("moved APIC TPR", rd(MOVED, 0x80));
    wr(MOVED, 0x80, 0);
    wrmsr_lo(0x1B, base);
    check(rdmsr_lo(0x1B) == base, "APIC moved back");

    /* A self-IPI held off by IF=0, then by the TPR (class 5 > vector 0x41's 4). */
    wr(APIC, 0x300, 0x40000 | V_SELF);        /* shorthand: self, fixed */
    check(self_ipis == 0, "self-IPI waits while IF=0");
    __asm__ volatile("sti\n nop\n cli");
    check(self_ipis == 1, "self-IPI delivered at STI");
    wr(APIC, 0x80, 0x50);
    __asm__ volatile("sti");
    wr(APIC, 0x300, 0x40000 | V_SELF);
    __asm__ volatile("nop\n nop");
    check(self_ipis == 1, "self-IPI held off by TPR 0x50");
    show("IRR word 2 while held", rd(APIC, 0x200 + 0x20));
    wr(APIC, 0x80, 0);
    __asm__ volatile("nop");
    check(self_ipis == 2, "self-IPI delivered when the TPR drops");
    show("ISR word 2 after EOI", rd(APIC, 0x100 + 0x20));

    /* ExtINT: the PIT through the 8259 pair, LINT0 in ExtINT mode. */
    __asm__ volatile("cli");
    outb(0x20, 0x11); outb(0x21, V_PIT); outb(0x21, 4); outb(0x21, 1);
    outb(0xA0, 0x11); outb(0xA1, 0x28); outb(0xA1, 2); outb(0xA1, 1);
    outb(0x21, 0xFE); outb(0xA1, 0xFF);
    wr(APIC, 0x350, 0x700);                   /* LINT0: ExtINT, unmasked */
    outb(0x43, 0x34); outb(0x40, 0x9B); outb(0x40, 0x2E);    /* 100 Hz */
    __asm__ volatile("sti");
    while (pit_ticks < 3)
        __asm__ volatile("hlt");
    __asm__ volatile("cli");
    check(pit_ticks >= 3, "PIT through the 8259 as ExtINT on LINT0: 3 interrupts");
    show("ISR word 1 (ExtINT sets none)", rd(APIC, 0x100 + 0x10));

    /* Polling a device register from one instruction (the timer's current
     * count, one-shot, masked): a trap at the same place each time. */
    wr(APIC, 0x3E0, 0xB);                     /* divide by 1 */
    wr(APIC, 0x320, 1 << 16);
    wr(APIC, 0x380, 20000);
    u32 polls = 0;
    while (rd(APIC, 0x390) != 0)
        polls++;
    check(polls > 8, "the timer's current count polled down to 0");
    check(page_faults == 1, "no other page fault reached the guest");
    puts("mmio done failures="); put_dec(failures); putc('\n');
    exit(failures);
}
