/* The guest of bench/mips.py: rounds= rounds of a sieve + CRC-32 loop
 * (mips_run.S, which counts its own instructions exactly), run in ring 0 or,
 * with ring=3, in ring 3 with IOPL 3; then
 *     mips rounds=N cpl=C primes=P
 *     mips checksum=0xHEX instructions=N
 * on COM1 and the debug-exit port. No paging (PVM refuses 32-bit paging).
 * Ring 3 is entered with SYSEXIT (ring3_enter, lib.h). */
#include "lib.h"

#define SIEVE_N 4096

struct mips_state { u32 crc, primes, instructions_lo, instructions_hi; };
void mips_run(struct mips_state *st, u8 *buf, u32 rounds);

static u8 buf[SIEVE_N + 1024] __attribute__((aligned(4096)));
static u32 rounds;

/* Decimal of a 64-bit value in 16-bit limbs: no libgcc division needed. */
static void put_u64(u32 hi, u32 lo)
{
    u32 limb[4] = { hi >> 16, hi & 0xFFFF, lo >> 16, lo & 0xFFFF };
    char digits[21];
    int n = 0;
    do {
        u32 rem = 0, nonzero = 0;
        for (int i = 0; i < 4; i++) {
            u32 cur = rem << 16 | limb[i];
            limb[i] = cur / 10;
            rem = cur % 10;
            nonzero |= limb[i];
        }
        digits[n++] = '0' + rem;
        if (!nonzero)
            break;
    } while (1);
    while (n)
        putc(digits[--n]);
}

static void __attribute__((noreturn, used)) measure(void)
{
    struct mips_state st = { 0, 0, 0, 0 };
    u16 cs;
    mips_run(&st, buf, rounds);
    __asm__ volatile("movw %%cs, %0" : "=r"(cs));
    puts("mips rounds=");
    put_dec(rounds);
    puts(" cpl=");
    put_dec(cs & 3);
    puts(" primes=");
    put_dec(st.primes);
    puts("\nmips checksum=");
    put_hex(st.crc);
    puts(" instructions=");
    put_u64(st.instructions_hi, st.instructions_lo);
    putc('\n');
    exit(0);      /* IOPL 3 lets ring 3 reach the debug-exit port too */
}

int kmain(u32 magic, struct multiboot_info *mbi)
{
    static u32 user_stack[1024];
    u32 ring = arg(mbi, "ring", 0);
    rounds = arg(mbi, "rounds", 1);
    if (ring != 0 && ring != 3) {
        puts("mips: ring= must be 0 or 3\n");
        return 2;
    }
    if (ring == 0)
        measure();
    ring3_enter(measure, user_stack + 1024);
}
