/* Prints its boot information and exits with status= (default 0). */
#include "lib.h"

struct mmap_entry { u32 size; u32 base_lo, base_hi, len_lo, len_hi, type; } __attribute__((packed));

int kmain(u32 magic, struct multiboot_info *mbi)
{
    puts("hello from the ringvisor test kernel\n");
    puts("magic "); put_hex(magic); puts("\n");
    puts("cmdline "); puts((const char *)mbi->cmdline); puts("\n");
    puts("mem_lower "); put_dec(mbi->mem_lower); puts(" KiB, mem_upper "); put_dec(mbi->mem_upper); puts(" KiB\n");
    for (u32 off = 0; off < mbi->mmap_length;) {
        struct mmap_entry *e = (struct mmap_entry *)(mbi->mmap_addr + off);
        puts("mmap "); put_hex(e->base_lo); puts(" "); put_hex(e->len_lo); puts(" type "); put_dec(e->type); puts("\n");
        off += e->size + 4;
    }
    if (mbi->flags & 8) {
        u32 *mods = (u32 *)mbi->mods_addr;
        for (u32 i = 0; i < mbi->mods_count; i++) {
            puts("module "); puts((const char *)mods[4 * i + 2]);
            puts(" size "); put_dec(mods[4 * i + 1] - mods[4 * i]); puts(" first ");
            putc(*(const char *)mods[4 * i]); puts("\n");
        }
    }
    return arg(mbi, "status", 0);
}
