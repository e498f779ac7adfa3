/* Misbehaving guests for the error paths: how=1 triple fault (an exception with
 * no IDT: #UD, #DF, then shutdown), 2 cli; hlt (halts with interrupts off),
 * 3 spins forever, 4 int3 (an instruction PVM's ring-0 emulator lacks). */
#include "lib.h"

int kmain(u32 magic, struct multiboot_info *mbi)
{
    static const struct { u16 limit; u32 base; } __attribute__((packed)) no_idt = { 0, 0 };
    switch (arg(mbi, "how", 0)) {
    case 1:
        puts("triple fault coming\n");
        __asm__ volatile("lidt %0\n\tud2" :: "m"(no_idt));
        break;
    case 2:
        puts("cli; hlt coming\n");
        __asm__ volatile("cli\n\thlt");
        break;
    case 3:
        puts("spinning\n");
        for (;;)
            __asm__ volatile("");
    case 4:
        puts("int3 coming\n");
        __asm__ volatile("lidt %0\n\tint3" :: "m"(no_idt));
        break;
    }
    return 9;
}
