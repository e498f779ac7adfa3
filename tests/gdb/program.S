# The fake target's program (tests/gdb): a loop that stores a counter, a read
# of `limit`, a call, and hlt (the fake CPU's exit, status = eax = 42).
# Only instructions fake_target.py decodes may appear here.
        .text
        .globl _start
_start:
        mov     $0, %eax
        mov     $5, %ecx
loop:
        inc     %eax
        mov     %eax, counter
        dec     %ecx
        jnz     loop
        mov     limit, %eax
        call    bump
        hlt
bump:
        inc     %edx
        ret
spin:
        jmp     spin

        .data
        .globl counter, limit
counter:
        .long   0
limit:
        .long   42
