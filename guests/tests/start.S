/* Multiboot 1 entry shared by the test kernels: a stack, then
 * kmain(magic, info); its return value is the exit status. */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x3                  /* page-aligned modules, memory info */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    push %ebx
    push %eax
    call kmain
    push %eax
    call exit
1:  cli
    hlt
    jmp 1b

    .bss
    .align 16
stack:
    .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
