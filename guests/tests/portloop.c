/* n= writes of one byte to port= (default 0xE9), from ring 0, or from ring 3
 * with IOPL 3 (ring=3: on PVM, ring-3 code runs on silicon, so the loop
 * costs only its exits). The benchmark times this payload on every VMM.
 *
 * Ring 3 is entered with SYSEXIT, not IRET: PVM runs guest ring-0 code in
 * the host kernel's instruction emulator, which has no protected-mode IRET
 * (nor INT n, nor RETF to an outer ring), but does have SYSEXIT. */
#include "lib.h"

static u32 gdt[2 * 5] __attribute__((aligned(8))) = {
    0, 0,
    0x0000FFFF, 0x00CF9A00,   /* 0x08 ring-0 code: SYSENTER_CS */
    0x0000FFFF, 0x00CF9200,   /* 0x10 ring-0 data (SYSENTER_CS + 8) */
    0x0000FFFF, 0x00CFFA00,   /* 0x18 ring-3 code (SYSENTER_CS + 16) */
    0x0000FFFF, 0x00CFF200,   /* 0x20 ring-3 data (SYSENTER_CS + 24) */
};
static struct { u16 limit; u32 base; } __attribute__((packed)) gdtr = { sizeof(gdt) - 1, (u32)gdt };

static u32 loop_port, loop_count;

static void __attribute__((noreturn, used)) port_loop(void)
{
    u32 n = loop_count;
    u16 port = loop_port;
    __asm__ volatile("1: outb %%al, %%dx\n\tdec %%ecx\n\tjnz 1b"
                     : "+c"(n) : "a"('x'), "d"(port) : "memory");
    exit(0);      /* IOPL 3 lets ring 3 reach the debug-exit port too */
}

static inline void wrmsr(u32 msr, u32 value)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"(value), "d"(0));
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    static u32 user_stack[1024];
    loop_port = arg(mbi, "port", 0xE9);
    loop_count = arg(mbi, "n", 1000);
    if (!loop_count)
        return 0;
    if (arg(mbi, "ring", 0) != 3)
        port_loop();
    __asm__ volatile("lgdt %0" :: "m"(gdtr));
    wrmsr(0x174, 0x08);                       /* IA32_SYSENTER_CS */
    /* IOPL 3 for the user loop; SYSEXIT keeps EFLAGS as they are. */
    __asm__ volatile("pushfl\n\torl $0x3000, (%%esp)\n\tpopfl" ::: "memory", "cc");
    __asm__ volatile(
        "movl $1f, %%edx\n\t"
        "sysexit\n"
        "1: movw $0x23, %%ax\n\t"              /* ring 3: user data segments */
        "movw %%ax, %%ds\n\tmovw %%ax, %%es\n\t"
        "jmp port_loop"
        :: "c"(user_stack + 1024) : "eax", "edx", "memory");
    return 1;
}
