/* Calls and returns under a fast timer, for the binary-translation monitor
 * (whose inline RET is several instructions in the translation cache: an
 * interrupt between them must leave the guest exactly as after the RET).
 * A recursive fib(n) with interrupts on and the PIT at about 12 kHz; the
 * handler counts ticks and scrambles ECX and the flags before its IRET
 * restores them. Prints the result and the ticks; exits 0 when fib is right
 * and ticks arrived. spin=1: the timer on, interrupts off, and a loop that
 * never ends (a monitor's watchdog reports it). */
#include "lib.h"

volatile u32 ticks;
static u64 gdt[GDT_PAGE_QWORDS] GDT_PAGE, idt[256];

extern char irq0_entry[];
__asm__(".text\n"
        "irq0_entry: pushl %eax\n pushl %ecx\n incl ticks\n movl $0x5a5a5a5a, %ecx\n"
        " movb $0x20, %al\n outb %al, $0x20\n addl %ecx, %ecx\n popl %ecx\n popl %eax\n iret\n");


static void setup(void)
{
    gdt[1] = 0x00cf9b000000ffffull;
    gdt[2] = 0x00cf93000000ffffull;
    struct dtr g = { 3 * 8 - 1, (u32)gdt }, i = { sizeof(idt) - 1, (u32)idt };
    idt[0x20] = int_gate(irq0_entry);
    load_flat_tables(&g, &i);
    outb(0x20, 0x11); outb(0xa0, 0x11);
    outb(0x21, 0x20); outb(0xa1, 0x28);
    outb(0x21, 4); outb(0xa1, 2);
    outb(0x21, 1); outb(0xa1, 1);
    outb(0x21, 0xfe); outb(0xa1, 0xff);
    outb(0x43, 0x34);                       /* rate generator, count 100: ~12 kHz */
    outb(0x40, 100); outb(0x40, 0);
}

__attribute__((noinline)) static u32 fib(u32 n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    u32 n = arg(mbi, "n", 20), want = 0, a = 0, b = 1;
    for (u32 i = 0; i < n; i++) {
        u32 t = a + b;
        a = b;
        b = t;
    }
    want = a;
    setup();
    if (arg(mbi, "spin", 0)) {
        puts("spinning with interrupts off\n");
        for (;;)
            __asm__ volatile("");
    }
    __asm__ volatile("sti");
    u32 got = fib(n);
    __asm__ volatile("cli");
    puts("irqcalls fib="); put_dec(got); puts(got == want ? " ok" : " WRONG");
    puts(ticks ? " ticks>0\n" : " no ticks\n");
    return got == want && ticks ? 0 : 1;
}
