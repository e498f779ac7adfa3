/* Virtual-8086 mode as a DOS-era monitor uses it (SDM vol. 3A ch. 20).
 *
 * The kernel copies a small 8086 program to 0x2000:0000, enters it by IRET
 * with EFLAGS.VM=1 and IOPL 0 (or, with entry=task on the command line, by
 * a far JMP to a TSS whose EFLAGS has VM=1: a task switch into a
 * virtual-8086 task), and becomes its virtual-8086 monitor: the
 * program's CLI and STI and its INT 0x21 / INT 0x20 (IOPL-sensitive at
 * IOPL 0) trap with #GP(0) to the ring-0 handler, which decodes the
 * instruction at CS:IP and emulates it (a virtual IF; INT 0x21 AH=2 prints
 * DL; INT 0x20 ends the program), then IRETs back to virtual-8086 mode.
 * The program also takes an INT3 straight through a DPL-3 trap gate (not
 * IOPL-sensitive), writes through a 16-bit address that wraps at 64 KiB,
 * reads it back through another segment:offset naming the same byte, and
 * uses a 0x66-prefixed 32-bit immediate, and writes port 0x80: the TSS
 * has no I/O permission bitmap, so that OUT traps with #GP(0) whatever
 * IOPL is, and the monitor emulates it.
 *
 * With iopl=3 on the command line the program runs at IOPL 3: CLI and STI
 * then run without trapping (the real IF changes), INT 0x21 and INT 0x20
 * go straight through DPL-3 gates to the monitor, and only the OUT traps.
 *
 * At INT 0x20 the monitor checks what it saw and prints (one line)
 *     v86 iopl=0 gp=38 cli=1 sti=1 int21=34 int3=1 out80=1 result=0x0000d123
 *         wrap=0x0000beef ds=0x00003000 es=0x00002fff null_ds=1 vm_frames=1
 *         if=1 verdict=ok
 * after the program's "v86: hello from virtual-8086 mode", and exits 0 (1
 * on any mismatch, 2 on an unexpected trap). */
#include "lib.h"

typedef unsigned long long u64;

#define V86_CS 0x2000
#define V86_SS 0x1000
#define V86_SP 0xFFF0
#define EFLAGS_VM 0x20000

static u64 gdt[GDT_PAGE_QWORDS] GDT_PAGE;
static u64 idt[256] __attribute__((aligned(8)));
static u32 tss[26] __attribute__((aligned(16)));      /* 104 bytes: no I/O bitmap */
static u32 v86_tss[26] __attribute__((aligned(16)));  /* the virtual-8086 task (entry=task) */
static u32 kstack[1024] __attribute__((aligned(16)));

/* The trap frame: PUSHAL, then the stub's vector, the error code (0 for
 * INT3), and what the CPU pushed coming from virtual-8086 mode. */
struct frame {
    u32 edi, esi, ebp, kesp, ebx, edx, ecx, eax;
    u32 vector, err;
    u32 eip, cs, eflags, esp, ss, es, ds, fs, gs;
};

static u32 iopl, gp, cli, sti, int21, int3, out80, vif = 1, null_ds = 1, vm_frames = 1;
u32 handler_ds;                 /* DS as the CPU left it at the handler's entry */

extern char v86_begin[], v86_end[], gp_entry[], bp_entry[], int20_entry[], int21_entry[];

/* The 8086 program; position-independent (copied to V86_CS:0). */
__asm__(".text\n"
        ".code16\n"
        "v86_begin:\n\t"
        "cli\n\t"
        "movw $0x3000, %ax\n\t"
        "movw %ax, %ds\n\t"
        "movw $0xFFFF, %bx\n\t"
        "movw $2, %si\n\t"
        "movw $0xBEEF, (%bx,%si)\n\t"           /* 0xFFFF + 2 wraps to DS:0001 */
        "movw $0x2FFF, %ax\n\t"
        "movw %ax, %es\n\t"
        "movw %es:0x11, %dx\n\t"                /* 0x2FFF:0011 is the same byte */
        "movl $0x12345678, %eax\n\t"            /* 0x66 prefix */
        "shrl $16, %eax\n\t"
        "addw %dx, %ax\n\t"
        "movw %ax, %di\n\t"
        "int3\n\t"
        "sti\n\t"
        "xorw %si, %si\n"
        "1:\n\t"
        "movb %cs:(v86_msg - v86_begin)(%si), %dl\n\t"
        "testb %dl, %dl\n\t"
        "jz 2f\n\t"
        "movb $2, %ah\n\t"
        "int $0x21\n\t"
        "incw %si\n\t"
        "jmp 1b\n"
        "2:\n\t"
        "movb $0x42, %al\n\t"
        "outb %al, $0x80\n\t"                   /* no I/O bitmap: #GP(0) */
        "movw %di, %ax\n\t"
        "int $0x20\n"
        "v86_msg: .asciz \"v86: hello from virtual-8086 mode\\n\"\n"
        "v86_end:\n"
        ".code32\n"
        /* Handlers: DS/ES are null on entry from virtual-8086 mode. */
        "gp_entry:\n\t"
        "pushl $13\n\t"
        "jmp trap_common\n"
        "int20_entry:\n\t"
        "pushl $0\n\t"
        "pushl $0x20\n\t"
        "jmp trap_common\n"
        "int21_entry:\n\t"
        "pushl $0\n\t"
        "pushl $0x21\n\t"
        "jmp trap_common\n"
        "bp_entry:\n\t"
        "pushl $0\n\t"
        "pushl $3\n"
        "trap_common:\n\t"
        "pushal\n\t"
        "movl %ds, %eax\n\t"
        "movl %eax, %ss:handler_ds\n\t"
        "movl $0x10, %eax\n\t"
        "movl %eax, %ds\n\t"
        "movl %eax, %es\n\t"
        "pushl %esp\n\t"
        "call monitor\n\t"
        "addl $4, %esp\n\t"
        "popal\n\t"
        "addl $8, %esp\n\t"
        "iret\n");

static u64 tss_descriptor(u32 *t)
{
    u32 base = (u32)t;
    return (26 * 4 - 1) | (u64)(base & 0xFFFFFF) << 16 | (u64)0x89 << 40
           | (u64)(base >> 24) << 56;
}

static u64 gate(void *handler, u32 type_dpl)
{
    u32 h = (u32)handler;
    return (h & 0xffff) | (u64)0x08 << 16 | (u64)type_dpl << 40 | (u64)(h >> 16) << 48;
}

static void unexpected(struct frame *f, const char *what);

static void finish(struct frame *f)
{
    u32 result = f->eax & 0xFFFF;
    u32 wrap = *(volatile u16 *)0x30001;
    /* The program's IF after its STI: the monitor's virtual IF at IOPL 0,
     * the real one in the frame at IOPL 3. */
    u32 if_ = iopl == 3 ? f->eflags >> 9 & 1 : vif;
    u32 traps = iopl == 3 ? 1 : 1 + 1 + 34 + 1 + 1;   /* (cli, sti, int 0x21 x34,) out, (int 0x20) */
    u32 sensitive = iopl == 3 ? 0 : 1;
    int ok = result == 0xD123 && wrap == 0xBEEF && f->ds == 0x3000 && f->es == 0x2FFF
             && gp == traps && cli == sensitive && sti == sensitive && int3 == 1 && int21 == 34
             && out80 == 1 && null_ds && vm_frames && if_ == 1 && f->ss == V86_SS
             && f->esp == V86_SP && (f->eflags >> 12 & 3) == iopl;
    puts("v86 iopl=");
    put_dec(iopl);
    puts(" gp=");
    put_dec(gp);
    puts(" cli=");
    put_dec(cli);
    puts(" sti=");
    put_dec(sti);
    puts(" int21=");
    put_dec(int21);
    puts(" int3=");
    put_dec(int3);
    puts(" out80=");
    put_dec(out80);
    puts(" result=");
    put_hex(result);
    puts(" wrap=");
    put_hex(wrap);
    puts(" ds=");
    put_hex(f->ds);
    puts(" es=");
    put_hex(f->es);
    puts(" null_ds=");
    put_dec(null_ds);
    puts(" vm_frames=");
    put_dec(vm_frames);
    puts(" if=");
    put_dec(if_);
    puts(ok ? " verdict=ok\n" : " verdict=WRONG\n");
    exit(ok ? 0 : 1);
}

/* INT 0x21 (AH=2: print DL) and INT 0x20 (the end), reached through their
 * DPL-3 gates at IOPL 3 or emulated from the #GP at IOPL 0. */
static void dos_call(struct frame *f, u32 n)
{
    if (n == 0x20)
        finish(f);
    if (n == 0x21 && (f->eax >> 8 & 0xFF) == 2) {
        putc(f->edx & 0xFF);
        int21++;
        return;
    }
    unexpected(f, "INT n");
}

static void unexpected(struct frame *f, const char *what)
{
    puts("v86: unexpected ");
    puts(what);
    puts(" vector=");
    put_dec(f->vector);
    puts(" cs:eip=");
    put_hex(f->cs);
    putc(':');
    put_hex(f->eip);
    puts(" eflags=");
    put_hex(f->eflags);
    putc('\n');
    exit(2);
}

void __attribute__((used)) monitor(struct frame *f)
{
    if (handler_ds & 0xFFFC)
        null_ds = 0;
    if (!(f->eflags & EFLAGS_VM))
        unexpected(f, "trap outside virtual-8086 mode");
    if (f->cs != V86_CS || f->ss != V86_SS)
        vm_frames = 0;
    if (f->vector == 3) {
        int3++;
        return;
    }
    if (f->vector == 0x20 || f->vector == 0x21) {
        dos_call(f, f->vector);
        return;
    }
    gp++;
    if (f->err != 0)
        unexpected(f, "#GP error code");
    u8 *ip = (u8 *)((f->cs << 4) + (f->eip & 0xFFFF));
    switch (ip[0]) {
    case 0xFA:                                  /* CLI */
        vif = 0;
        cli++;
        f->eip += 1;
        return;
    case 0xFB:                                  /* STI */
        vif = 1;
        sti++;
        f->eip += 1;
        return;
    case 0xCD:                                  /* INT n */
        f->eip += 2;
        dos_call(f, ip[1]);
        return;
    case 0xE6:                                  /* OUT imm8, AL */
        if (ip[1] == 0x80)
            out80++;
        f->eip += 2;
        return;
    }
    unexpected(f, "#GP");
}

/* "entry=task" on the command line (arg() reads numbers only). */
static int entry_is_task(const struct multiboot_info *mbi)
{
    if (!(mbi->flags & 4))
        return 0;
    const char *want = "entry=task";
    for (const char *p = (const char *)mbi->cmdline; *p; p++) {
        const char *w = want, *q = p;
        while (*w && *q == *w) { w++; q++; }
        if (!*w)
            return 1;
    }
    return 0;
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    gdt[1] = 0x00cf9b000000ffffull;                 /* 0x08: ring-0 code, flat */
    gdt[2] = 0x00cf93000000ffffull;                 /* 0x10: ring-0 data, flat */
    gdt[3] = tss_descriptor(tss);                   /* 0x18: the kernel's TSS */
    gdt[4] = tss_descriptor(v86_tss);               /* 0x20: the virtual-8086 task */
    tss[1] = v86_tss[1] = (u32)(kstack + 1024);     /* ESP0 */
    tss[2] = v86_tss[2] = 0x10;                     /* SS0 */
    tss[25] = v86_tss[25] = sizeof(tss) << 16;      /* I/O map base past the limit */
    idt[3] = gate(bp_entry, 0xEF);                  /* trap gate, DPL 3 */
    idt[13] = gate(gp_entry, 0x8E);                 /* interrupt gate, DPL 0 */
    idt[0x20] = gate(int20_entry, 0xEE);            /* interrupt gates, DPL 3 */
    idt[0x21] = gate(int21_entry, 0xEE);
    iopl = arg(mbi, "iopl", 0) == 3 ? 3 : 0;
    /* The program sets IF (for real at IOPL 3): no device interrupts, which
     * this kernel has no handlers for (a BIOS, as under QEMU, leaves the
     * PIT running on IRQ 0). */
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    struct { u16 limit; u32 base; } __attribute__((packed))
        g = { 5 * 8 - 1, (u32)gdt }, i = { sizeof(idt) - 1, (u32)idt };
    __asm__ volatile("lgdt %0\n ljmp $0x08, $1f\n1: movl $0x10, %%eax\n movl %%eax, %%ds\n"
                     " movl %%eax, %%es\n movl %%eax, %%ss\n lidt %1\n movw $0x18, %%ax\n ltr %%ax"
                     :: "m"(g), "m"(i) : "eax", "memory");
    u8 *dst = (u8 *)(V86_CS << 4);
    for (char *p = v86_begin; p < v86_end; p++)
        *dst++ = *p;
    if (entry_is_task(mbi)) {
        v86_tss[8] = 0;                             /* EIP */
        v86_tss[9] = EFLAGS_VM | iopl << 12 | 2;    /* EFLAGS: VM, IOPL, IF clear */
        v86_tss[14] = V86_SP;                       /* ESP */
        v86_tss[19] = V86_CS;                       /* ES CS SS DS FS GS at 0x48 */
        v86_tss[20] = V86_SS;
        __asm__ volatile("ljmp $0x20, $0");
        return 3;
    }
    /* IRET to V86_CS:0 with VM=1, IOPL 0 or 3, IF clear. */
    __asm__ volatile("pushl $0\n pushl $0\n pushl $0\n pushl $0\n"
                     "pushl %0\n pushl %1\n pushl %2\n pushl %3\n pushl $0\n iret"
                     :: "i"(V86_SS), "i"(V86_SP), "r"(EFLAGS_VM | iopl << 12 | 2), "i"(V86_CS));
    return 3;
}
