/* Self-modifying kernel code, for the binary-translation monitor (whose
 * translations of a code page must die when the page is written):
 *   patch_other  a function is called, its `mov $imm, %eax` patched, called
 *                again: the new value must come back
 *   patch_ahead  a store patches the very next instruction of the same basic
 *                block (x86 executes the new bytes)
 *   loop         ROUNDS patches of a called function in a loop, summed
 *   data         a counter that lives in .text, between functions, written
 *                ROUNDS times (data on a code page: no code changes)
 * Prints one line per check and exits with the number of failures. */
#include "lib.h"

#define ROUNDS 50

extern char other_imm[], ahead_imm[];
extern volatile u32 text_counter;
u32 other(void);
u32 ahead(void);
__asm__(".text\n"
        "other: movl $1, %eax\n"
        "other_imm = other + 1\n"
        " ret\n"
        "ahead: movb $3, ahead_imm\n"
        " movl $1, %eax\n"
        "ahead_imm = . - 4\n"
        " ret\n"
        ".align 4\n"
        "text_counter: .long 0\n");

static u32 failures;

static void check(const char *name, u32 got, u32 want)
{
    puts("smc "); puts(name); puts(" got="); put_dec(got); puts(" want="); put_dec(want);
    puts(got == want ? " ok\n" : " WRONG\n");
    if (got != want)
        failures++;
}

static void set_other(u32 v)
{
    *(volatile u32 *)other_imm = v;
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    u32 first = other();
    set_other(2);
    check("patch_other", first * 10 + other(), 12);
    check("patch_ahead", ahead(), 3);
    u32 sum = 0, want = 0;
    for (u32 i = 0; i < ROUNDS; i++) {
        set_other(i);
        sum += other();
        want += i;
    }
    check("loop", sum, want);
    for (u32 i = 0; i < ROUNDS; i++)
        text_counter += other();
    check("data", text_counter, ROUNDS * (ROUNDS - 1));
    return failures;
}
