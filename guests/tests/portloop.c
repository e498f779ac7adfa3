/* n= writes of one byte to port= (default 0xE9), from ring 0, or from ring 3
 * with IOPL 3. The exit-cost benchmark times this payload on every VMM.
 * Ring 3 is entered with SYSEXIT (ring3_enter, lib.h). */
#include "lib.h"

static u32 loop_port, loop_count;

static void __attribute__((noreturn, used)) port_loop(void)
{
    u32 n = loop_count;
    u16 port = loop_port;
    __asm__ volatile("1: outb %%al, %%dx\n\tdec %%ecx\n\tjnz 1b"
                     : "+c"(n) : "a"('x'), "d"(port) : "memory");
    exit(0);      /* IOPL 3 lets ring 3 reach the debug-exit port too */
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
    ring3_enter(port_loop, user_stack + 1024);
}
