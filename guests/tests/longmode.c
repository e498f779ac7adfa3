/* A guest that leaves 32-bit protected mode for IA-32e mode (SDM vol. 3
 * 10.8.5: PAE, 4-level tables mapping the first GiB with 2 MiB pages,
 * EFER.LME, paging on, a far jump to a 64-bit code segment), loads
 * 64-bit values that do not fit in 32 bits and then runs UD2 with an empty
 * IDT: a triple fault. ringvisor's crash report must show the 64-bit state
 *     long mode (IA-32e), 64-bit mode, CPL 0
 *     rax=1122334455667788 ... r15=8877665544332211
 * and disassemble the code at RIP as 64-bit (`ud2`). Runs on the kvm
 * engine (PVM runs long-mode guests; the soft CPU has no long mode). */
#include "lib.h"
typedef unsigned long long u64;
static u64 pml4[512] __attribute__((aligned(4096))), pdpt[512] __attribute__((aligned(4096))),
           pd[512] __attribute__((aligned(4096)));
static u64 gdt[4] __attribute__((aligned(8))) = {
    0, 0x00af9a000000ffffull /* 0x08 64-bit code */, 0x00cf92000000ffffull /* 0x10 data */, 0 };
struct { u16 limit; u32 base; } __attribute__((packed)) gdtr = { 3 * 8 - 1, (u32)gdt };
struct { u16 limit; u32 base; } __attribute__((packed)) idtr = { 0, 0 };

int kmain(u32 magic, struct multiboot_info *mbi)
{
    puts("longmode: entering IA-32e mode, then ud2 with no IDT\n");
    for (int i = 0; i < 512; i++)
        pd[i] = (u64)i << 21 | 0x83;                 /* 2 MiB pages: the first GiB */
    pdpt[0] = (u32)pd | 3;
    pml4[0] = (u32)pdpt | 3;
    __asm__ volatile(
        "lgdt gdtr\n\t"
        "lidt idtr\n\t"
        "movl %%cr4, %%eax\n\t orl $0x20, %%eax\n\t movl %%eax, %%cr4\n\t"   /* PAE */
        "movl %0, %%cr3\n\t"
        "movl $0xC0000080, %%ecx\n\t rdmsr\n\t orl $0x100, %%eax\n\t wrmsr\n\t"  /* LME */
        "movl %%cr0, %%eax\n\t orl $0x80000000, %%eax\n\t movl %%eax, %%cr0\n\t"
        "ljmp $0x08, $1f\n"
        ".code64\n"
        "1:\n\t"
        "movabsq $0x1122334455667788, %%rax\n\t"
        "movabsq $0x8877665544332211, %%r15\n\t"
        "movq %%rax, %%rcx\n\t"
        "ud2\n"
        ".code32\n"
        :: "r"((u32)pml4) : "eax", "ecx", "edx", "memory");
    return 1;
}
