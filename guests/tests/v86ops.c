/* Virtual-8086 mode, instruction by instruction, for comparing a monitor
 * with bare hardware (SDM vol. 3A ch. 20; tests/monitors/
 * test_v86_under_monitors.py runs it natively and under trap and bt and
 * wants the same console output).
 *
 * The kernel turns paging on (identity, user pages; 0x50000 not present,
 * 0x60000 supervisor-only), gives its TSS an I/O permission bitmap that
 * grants port 0x80 only, and IRETs to an 8086 program at IOPL 0 or 3
 * (iopl=N on the command line) with IF clear. The program uses PUSHF/POPF
 * (16 and 32 bit), IRET (16 and 32 bit) inside v86 mode, CLI/STI, INT n
 * through a DPL-3 gate, a DPL-0 gate, a gate to a conforming and to a
 * DPL-3 code segment, INT3 (DPL-0 gate), INTO, a #DE, a #UD, two page
 * faults, IN/OUT/OUTSB granted and denied by the bitmap (a word OUT
 * straddling a denied port), INT 0x34 (which the TSS's interrupt
 * redirection bitmap sends to the program's own IVT entry under VME), and
 * waits with IF set for a timer interrupt (INT 0x35 asks the kernel to
 * open it), and remaps a page by storing into the kernel's page table
 * (which the trap and bt monitors trace). With vme=1 on the command line the kernel sets CR4.VME and
 * CR4.PVI first (SDM 20.3, Table 20-2): below IOPL 3 CLI/STI/PUSHF/POPF/
 * 16-bit IRET then use VIF instead of trapping.
 *
 * The kernel logs every event out of v86 mode, one line each: the vector,
 * error code and the frame the CPU pushed (IP, CS, EFLAGS, SP, SS, ES, DS,
 * FS, GS), and whether DS was null at the handler's entry. Its #GP handler
 * emulates only CLI/STI (the frame's IF) and skips the instruction; HLT
 * ends the program: the kernel prints the words the program stored, and
 * exits 0. */
#include "lib.h"

#define V86_CS 0x2000
#define V86_SS 0x1000
#define V86_SP 0xFFF0
#define EFLAGS_VM 0x20000
#define IOMAP_BYTES 32                  /* ports 0-255, then the 0xFF terminator */

static u64 gdt[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 idt[256] __attribute__((aligned(8)));
static struct {
    u32 regs[26];
    u8 redirect[32];                    /* the interrupt redirection bitmap (VME) */
    u8 iomap[IOMAP_BYTES + 1];
} __attribute__((packed, aligned(16))) tss;
static u32 kstack[1024] __attribute__((aligned(16)));
static u32 pd[1024] __attribute__((aligned(4096)));
static u32 pt[1024] __attribute__((aligned(4096)));

struct frame {
    u32 edi, esi, ebp, kesp, ebx, edx, ecx, eax;
    u32 vector, err;
    u32 eip, cs, eflags, esp, ss, es, ds, fs, gs;
};

u32 handler_ds;
static u32 events;
extern char v86_begin[], v86_end[];
extern char e0[], e3[], e4[], e6[], e13[], e14[], e20[], e30[], e31[], e32[], e33[], e34[], e35[];
extern char v86_int34[];

#define RESULTS 0x30000                 /* 0x3000:0000, where the program stores */
#define DONE_FLAG 0x300FF               /* set by the timer handler */

__asm__(".text\n"
        ".code16\n"
        "v86_begin:\n\t"
        "movw $0x3000, %ax\n\t"
        "movw %ax, %ds\n\t"
        "movw $0x4444, %ax\n\t"
        "movw %ax, %fs\n\t"
        "movw $0x5555, %ax\n\t"
        "movw %ax, %gs\n\t"
        "xorw %di, %di\n\t"
        /* PUSHF / POPF, 16 bit */
        "pushw $0x1234\n\t"
        "pushf\n\t"
        "popw %ax\n\t"
        "movw %ax, (%di)\n\t"
        "popw %ax\n\t"                      /* 0x1234 unless PUSHF pushed */
        "movw %ax, 2(%di)\n\t"
        "pushw $0x4CD5\n\t"                 /* NT, OF, DF, SF, ZF, AF, PF, CF; IOPL 0 */
        "popf\n\t"
        "pushf\n\t"
        "popw %ax\n\t"
        "movw %ax, 4(%di)\n\t"
        "pushw $0x0002\n\t"
        "popf\n\t"
        /* PUSHFD / POPFD */
        "pushfl\n\t"
        "popl %eax\n\t"
        "movl %eax, 6(%di)\n\t"
        "pushl $0x002508C3\n\t"             /* ID, AC, RF, OF, SF, ZF, CF; not IF */
        "popfl\n\t"
        "pushfl\n\t"
        "popl %eax\n\t"
        "movl %eax, 10(%di)\n\t"
        "pushl $0x00000002\n\t"
        "popfl\n\t"
        /* IRET within virtual-8086 mode, 16 and 32 bit */
        "pushw $0x08D5\n\t"
        "pushw %cs\n\t"
        "pushw $(1f - v86_begin)\n\t"
        "iret\n"
        "1:\n\t"
        "pushf\n\t"
        "popw %ax\n\t"
        "movw %ax, 14(%di)\n\t"
        "pushl $0x00010CC7\n\t"             /* RF, OF, DF, SF, ZF, PF, CF */
        "pushl $0x2000\n\t"
        "pushl $(2f - v86_begin)\n\t"
        "iretl\n"
        "2:\n\t"
        "pushfl\n\t"
        "popl %eax\n\t"
        "movl %eax, 16(%di)\n\t"
        "pushl $0x00000002\n\t"
        "popfl\n\t"
        "movw %sp, 20(%di)\n\t"
        /* INT n and the gates' checks; INT3, INTO */
        "int $0x30\n\t"
        "int $0x31\n\t"
        "int $0x32\n\t"
        "int $0x33\n\t"
        "int3\n\t"
        "movb $0x7F, %al\n\t"
        "addb $1, %al\n\t"
        "into\n\t"
        /* #DE, #UD */
        "xorw %cx, %cx\n\t"
        "movw $7, %ax\n\t"
        "divw %cx\n\t"
        "ud2\n\t"
        /* page faults: not present (read), supervisor (write) */
        "movw $0x5000, %ax\n\t"
        "movw %ax, %es\n\t"
        "movw %es:0x10, %ax\n\t"
        "movw %ax, 22(%di)\n\t"
        "movw $0x6000, %ax\n\t"
        "movw %ax, %es\n\t"
        "movw $0x5678, %es:4\n\t"
        "movw %es:4, %ax\n\t"
        "movw %ax, 24(%di)\n\t"
        /* I/O: port 0x80 granted by the bitmap, 0x84 and 0x7F not */
        "movb $0x42, %al\n\t"
        "outb %al, $0x80\n\t"
        "outb %al, $0x84\n\t"
        "movw $0x4243, %ax\n\t"
        "outw %ax, $0x7F\n\t"
        "movw $0x80, %dx\n\t"
        "movw $(v86_end - v86_begin - 1), %si\n\t"
        "pushw %ds\n\t"
        "pushw %cs\n\t"
        "popw %ds\n\t"
        "outsb\n\t"
        "popw %ds\n\t"
        "movw %si, 26(%di)\n\t"
        "inb $0x84, %al\n\t"
        /* INT 0x34: redirected to v86_int34 under VME */
        "int $0x34\n\t"
        "pushf\n\t"
        "popw %ax\n\t"
        "movw %ax, 34(%di)\n\t"
        /* a store into the kernel's page table (its PTE for 0x70000, at the
         * offset from 0xFFFF:0 the kernel left at DS:0x80), then a read
         * through the new mapping (0x71000) */
        "movw 0x80, %bx\n\t"
        "movw $0xFFFF, %ax\n\t"
        "movw %ax, %es\n\t"
        "movl $0x71007, %es:(%bx)\n\t"
        "movw $0x7000, %ax\n\t"
        "movw %ax, %es\n\t"
        "movw %es:0, %ax\n\t"
        "movw %ax, 36(%di)\n\t"
        /* a timer interrupt, with IF set */
        "sti\n\t"
        "int $0x35\n"
        "3:\n\t"
        "cmpb $0, 0xFF\n\t"
        "je 3b\n\t"
        "cli\n\t"
        "movw %sp, 28(%di)\n\t"
        "hlt\n"
        "v86_int34:\n\t"
        "movw $0x3434, 30(%di)\n\t"
        "pushf\n\t"
        "popw %ax\n\t"
        "movw %ax, 32(%di)\n\t"
        "iret\n"
        "v86_end:\n"
        ".code32\n"
        "e0: pushl $0\n pushl $0\n jmp common\n"
        "e3: pushl $0\n pushl $3\n jmp common\n"
        "e4: pushl $0\n pushl $4\n jmp common\n"
        "e6: pushl $0\n pushl $6\n jmp common\n"
        "e13: pushl $13\n jmp common\n"
        "e14: pushl $14\n jmp common\n"
        "e20: pushl $0\n pushl $0x20\n jmp common\n"
        "e30: pushl $0\n pushl $0x30\n jmp common\n"
        "e31: pushl $0\n pushl $0x31\n jmp common\n"
        "e32: pushl $0\n pushl $0x32\n jmp common\n"
        "e33: pushl $0\n pushl $0x33\n jmp common\n"
        "e34: pushl $0\n pushl $0x34\n jmp common\n"
        "e35: pushl $0\n pushl $0x35\n"
        "common:\n\t"
        "pushal\n\t"
        "movl %ds, %eax\n\t"
        "movl %eax, %ss:handler_ds\n\t"
        "movl $0x10, %eax\n\t"
        "movl %eax, %ds\n\t"
        "movl %eax, %es\n\t"
        "pushl %esp\n\t"
        "call handle\n\t"
        "addl $4, %esp\n\t"
        "popal\n\t"
        "addl $8, %esp\n\t"
        "iret\n");

static void hex(const char *name, u32 v)
{
    puts(name);
    put_hex(v);
}

static void finish(void)
{
    puts("v86ops results");
    for (u32 i = 0; i < 38; i += 2)
        hex(" ", *(volatile u16 *)(RESULTS + i));
    puts(" events=");
    put_dec(events);
    putc('\n');
    exit(0);
}

/* The length of the instruction at CS:IP the #GP handler skips. */
static u32 length(const u8 *ip)
{
    u32 prefix = ip[0] == 0x66;
    switch (ip[prefix]) {
    case 0xCD: case 0xE4: case 0xE5: case 0xE6: case 0xE7:
        return prefix + 2;
    }
    return prefix + 1;
}

/* INT 0x35 (through its gate, or its #GP): open the timer's IRQ and set IF. */
static void open_timer(struct frame *f)
{
    f->eflags |= 0x200u;
    outb(0x21, 0xFE);
}

void __attribute__((used)) handle(struct frame *f)
{
    events++;
    if (f->vector == 0x20) {            /* where it lands in the loop is timing */
        hex("irq vm=", f->eflags >> 17 & 1);
        hex(" if=", f->eflags >> 9 & 1);
        hex(" cs=", f->cs);
        hex(" ds=", f->ds);
        putc('\n');
        *(volatile u8 *)DONE_FLAG = 1;
        outb(0x21, 0xFF);
        outb(0x20, 0x20);
        return;
    }
    hex("ev v=", f->vector);
    hex(" e=", f->err);
    hex(" ip=", f->eip);
    hex(" cs=", f->cs);
    hex(" fl=", f->eflags);
    hex(" sp=", f->esp);
    hex(" ss=", f->ss);
    hex(" es=", f->es);
    hex(" ds=", f->ds);
    hex(" fs=", f->fs);
    hex(" gs=", f->gs);
    hex(" hds=", handler_ds);
    if (f->vector == 14) {
        u32 cr2;
        __asm__ volatile("movl %%cr2, %0" : "=r"(cr2));
        hex(" cr2=", cr2);
        pt[cr2 >> 12 & 0x3FF] = (cr2 & ~0xFFFu) | 7;  /* present, writable, user */
        __asm__ volatile("invlpg (%0)" :: "r"(cr2) : "memory");
    }
    putc('\n');
    if (!(f->eflags & EFLAGS_VM)) {
        puts("v86ops: an event outside virtual-8086 mode\n");
        exit(2);
    }
    const u8 *ip = (const u8 *)((f->cs << 4) + (f->eip & 0xFFFF));
    if (f->vector == 0 || f->vector == 6)
        f->eip += 2;                    /* DIV CX, UD2 */
    if (f->vector == 0x35)
        open_timer(f);
    if (f->vector != 13)
        return;
    if (ip[0] == 0xCD && ip[1] == 0x35)
        open_timer(f);
    if (ip[0] == 0xF4)
        finish();
    if (ip[0] == 0xFA)
        f->eflags &= ~0x200u;
    if (ip[0] == 0xFB)
        f->eflags |= 0x200u;
    f->eip += length(ip);
}

static u64 gate(void *handler, u32 selector, u32 type_dpl)
{
    u32 h = (u32)handler;
    return (h & 0xffff) | (u64)selector << 16 | (u64)type_dpl << 40 | (u64)(h >> 16) << 48;
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    u32 base = (u32)&tss;
    *(volatile u16 *)0x70000 = 0x7070;              /* before paging: no TLB entry for them */
    *(volatile u16 *)0x71000 = 0x7171;
    gdt[1] = 0x00cf9b000000ffffull;                 /* 0x08: ring-0 code */
    gdt[2] = 0x00cf93000000ffffull;                 /* 0x10: ring-0 data */
    gdt[3] = (sizeof(tss) - 1) | (u64)(base & 0xFFFFFF) << 16 | (u64)0x89 << 40
             | (u64)(base >> 24) << 56;             /* 0x18: TSS */
    gdt[5] = 0x00cf9f000000ffffull;                 /* 0x28: conforming ring-0 code */
    gdt[7] = 0x00cffb000000ffffull;                 /* 0x38: ring-3 code */
    tss.regs[1] = (u32)(kstack + 1024);
    tss.regs[2] = 0x10;
    tss.regs[25] = 136u << 16;                      /* the I/O bitmap after the redirection one */
    for (u32 i = 0; i < 32; i++)
        tss.redirect[i] = 0xFF;                     /* every INT n to the IDT ... */
    tss.redirect[0x34 / 8] &= ~(1u << (0x34 % 8));  /* ... but INT 0x34 (under VME) */
    for (u32 i = 0; i < IOMAP_BYTES; i++)
        tss.iomap[i] = 0xFF;
    tss.iomap[0x80 / 8] = 0xFE;                     /* port 0x80 only */
    tss.iomap[IOMAP_BYTES] = 0xFF;
    idt[0] = gate(e0, 0x08, 0x8E);
    idt[3] = gate(e3, 0x08, 0x8E);                  /* DPL 0: INT3 in v86 gets #GP */
    idt[4] = gate(e4, 0x08, 0xEF);                  /* trap gate, DPL 3 */
    idt[6] = gate(e6, 0x08, 0x8E);
    idt[13] = gate(e13, 0x08, 0x8E);
    idt[14] = gate(e14, 0x08, 0x8E);
    idt[0x20] = gate(e20, 0x08, 0x8E);
    idt[0x30] = gate(e30, 0x08, 0xEE);              /* DPL 3 */
    idt[0x31] = gate(e31, 0x08, 0x8E);              /* DPL 0 */
    idt[0x32] = gate(e32, 0x28, 0xEE);              /* to a conforming segment */
    idt[0x33] = gate(e33, 0x38, 0xEE);              /* to a DPL-3 segment */
    idt[0x34] = gate(e34, 0x08, 0xEE);
    idt[0x35] = gate(e35, 0x08, 0xEE);
    for (u32 i = 0; i < 1024; i++)
        pt[i] = i << 12 | 7;
    pt[0x50] = 0;                                   /* not present */
    pt[0x60] = 0x60000 | 3;                         /* supervisor only */
    pd[0] = (u32)pt | 7;
    u32 iopl = arg(mbi, "iopl", 0) == 3 ? 3 : 0;
    if (arg(mbi, "vme", 0))
        __asm__ volatile("movl %%cr4, %%eax\n orl $3, %%eax\n movl %%eax, %%cr4" ::: "eax");
    struct { u16 limit; u32 base; } __attribute__((packed))
        g = { 8 * 8 - 1, (u32)gdt }, i = { sizeof(idt) - 1, (u32)idt };
    __asm__ volatile("lgdt %0\n ljmp $0x08, $1f\n1: movl $0x10, %%eax\n movl %%eax, %%ds\n"
                     " movl %%eax, %%es\n movl %%eax, %%ss\n lidt %1\n movw $0x18, %%ax\n ltr %%ax\n"
                     " movl %2, %%cr3\n movl %%cr0, %%eax\n orl $0x80000000, %%eax\n"
                     " movl %%eax, %%cr0"
                     :: "m"(g), "m"(i), "r"(pd) : "eax", "memory");
    /* The 8259s at 0x20/0x28; the PIT at ~12 kHz. */
    outb(0x20, 0x11); outb(0xa0, 0x11);
    outb(0x21, 0x20); outb(0xa1, 0x28);
    outb(0x21, 4); outb(0xa1, 2);
    outb(0x21, 1); outb(0xa1, 1);
    outb(0x21, 0xff); outb(0xa1, 0xff);             /* IRQ 0 opens at INT 0x35 */
    outb(0x43, 0x34);
    outb(0x40, 100); outb(0x40, 0);
    u8 *dst = (u8 *)(V86_CS << 4);
    for (char *p = v86_begin; p < v86_end; p++)
        *dst++ = *p;
    volatile u16 *ivt;                              /* linear 0 (hidden from the compiler) */
    __asm__("" : "=r"(ivt) : "0"(0));
    ivt[0x34 * 2] = v86_int34 - v86_begin;          /* the program's IVT entry for INT 0x34 */
    ivt[0x34 * 2 + 1] = V86_CS;
    for (u32 a = RESULTS; a < RESULTS + 0x100; a++)
        *(volatile u8 *)a = 0;
    *(volatile u16 *)(RESULTS + 0x80) = (u32)&pt[0x70] - 0xFFFF0;   /* reachable from v86 */
    __asm__ volatile("pushl $0\n pushl $0\n pushl $0\n pushl $0\n"
                     "pushl %0\n pushl %1\n pushl %2\n pushl %3\n pushl $0\n iret"
                     :: "i"(V86_SS), "i"(V86_SP), "r"(EFLAGS_VM | iopl << 12 | 2), "i"(V86_CS));
    return 3;
}
