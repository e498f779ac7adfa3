/* Entry of the PV test kernels (docs/pv-abi.md): a multiboot header (so the
 * machine's loader accepts the image), the "ringvisor" ABI note, and the PV
 * entry: EAX = PV_BOOT_MAGIC, ESI = start_info; pvmain(start_info). */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x3
    .set PV_BOOT_MAGIC, 0x52565056

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .section .note.ringvisor, "a", @note
    .align 4
    .long 2f - 1f, 4f - 3f, 1        /* namesz, descsz, type 1: ABI */
1:  .asciz "ringvisor"
2:  .align 4
3:  .long 0x00010000, _start        /* ABI 1.0, entry */
4:  .align 4

    .text
    .globl _start
_start:
    cmpl $PV_BOOT_MAGIC, %eax
    je 1f
    movb $5, %al                     /* not under a PV monitor */
    outb %al, $0xf4
0:  jmp 0b
1:  movl $stack_top, %esp
    pushl %esi
    call pvmain
0:  jmp 0b

    .bss
    .align 16
stack:
    .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
