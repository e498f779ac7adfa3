/* SYSENTER/SYSEXIT round trips: the kernel sets the SYSENTER MSRs and
 * enters ring 3 with SYSEXIT; ring 3 makes calls= system calls with
 * SYSENTER (EAX = the call's number), the kernel entry counts them, adds
 * EAX up, checks that it runs on the SYSENTER_ESP stack with the flat ring-0
 * selectors the MSR names, and returns with SYSEXIT. Then ring 3 prints
 *     sysenter calls=N sum=S bad_stack=0 bad_selectors=0 user_cs=0x0000001b user_ss=0x00000023
 * and exits (IOPL 3 lets it reach the ports). A monitor must emulate both
 * instructions: SYSEXIT needs CPL 0, and SYSENTER enters ring 0. */
#include "lib.h"

static u32 kernel_stack[256];
static u32 user_stack[1024];
static u32 calls_wanted;
u32 calls_made, sum, bad_stack, bad_selectors;

/* The SYSENTER target: EDX/ECX hold the user's return EIP/ESP (SYSEXIT's inputs). */
void kentry(void);
__asm__(
    ".text\n"
    "kentry:\n\t"
    "cmpl $kernel_stack + 1024, %esp\n\t"
    "je 1f\n\t"
    "incl bad_stack\n"
    "1:\n\t"
    "pushl %ebx\n\t"
    "movl %cs, %ebx\n\t"
    "andl $0xfffc, %ebx\n\t"            /* the selector the MSR names (RPL aside) */
    "cmpl $0x08, %ebx\n\t"
    "jne 2f\n\t"
    "movl %ss, %ebx\n\t"
    "andl $0xfffc, %ebx\n\t"
    "cmpl $0x10, %ebx\n\t"
    "je 3f\n"
    "2:\n\t"
    "incl bad_selectors\n"
    "3:\n\t"
    "popl %ebx\n\t"
    "incl calls_made\n\t"
    "addl %eax, sum\n\t"
    "sysexit\n");

static void __attribute__((noreturn, used)) user_main(void)
{
    u32 cs, ss;
    for (u32 i = 1; i <= calls_wanted; i++)
        __asm__ volatile(
            "movl %%esp, %%ecx\n\t"
            "movl $1f, %%edx\n\t"
            "sysenter\n"
            "1:"
            :: "a"(i) : "ecx", "edx", "memory", "cc");
    __asm__ volatile("movl %%cs, %0\n\tmovl %%ss, %1" : "=r"(cs), "=r"(ss));
    puts("sysenter calls=");
    put_dec(calls_made);
    puts(" sum=");
    put_dec(sum);
    puts(" bad_stack=");
    put_dec(bad_stack);
    puts(" bad_selectors=");
    put_dec(bad_selectors);
    puts(" user_cs=");
    put_hex(cs & 0xFFFF);
    puts(" user_ss=");
    put_hex(ss & 0xFFFF);
    putc('\n');
    exit(calls_made == calls_wanted && !bad_stack && !bad_selectors ? 0 : 1);
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    calls_wanted = arg(mbi, "calls", 100);
    wrmsr(0x175, (u32)(kernel_stack + 256));          /* IA32_SYSENTER_ESP */
    wrmsr(0x176, (u32)kentry);                        /* IA32_SYSENTER_EIP */
    ring3_enter(user_main, user_stack + 1024);        /* sets IA32_SYSENTER_CS = 0x08 */
}
