/* Entry point. The native kernel is entered by a multiboot loader in
 * 32-bit protected mode, ring 0, paging off, EAX = 0x2badb002,
 * EBX = multiboot info. The PV kernel is entered by the ringvisor PV monitor
 * in ring 1, EAX = PV_BOOT_MAGIC, ESI = start_info (docs/pv-abi.md). */
#include "layout.h"
#include "pv_abi.h"

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003   /* bit 0: page-align modules, bit 1: memory info */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

#ifdef PV
	/* ELF note telling a ringvisor PV monitor which ABI this kernel speaks. */
	.section .note.ringvisor, "a", @note
	.align 4
	.long 2f - 1f         /* namesz */
	.long 4f - 3f         /* descsz */
	.long PV_NOTE_TYPE_ABI
1:	.asciz "ringvisor"
2:	.align 4
3:	.long PV_ABI_VERSION
	.long _start
4:	.align 4
#endif

	.section .text.boot, "ax"
	.globl _start
_start:
#ifdef PV
	cmpl $PV_BOOT_MAGIC, %eax
	je 1f
	/* Booted on bare hardware by mistake: nothing to talk to; exit 5. */
	movb $5, %al
	outb %al, $0xf4
0:	jmp 0b
1:	movl %esi, %ebx           /* start_info, passed to kmain as `info` */
#else
	cli
#endif
	cld
	movl %eax, %edx           /* boot magic */

	/* Zero .bss ourselves: the kernel must not depend on the loader. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl

	movl $boot_stack_top, %esp
	pushl $0
	popfl                     /* known EFLAGS: IF=0 (PV: events are masked) */
	pushl %ebx                /* info */
	pushl %edx                /* magic */
	call kmain
0:	jmp 0b

	.section .bss
	.align 16
	.globl boot_stack
boot_stack:
	.space 8192               /* kmain's stack, later the idle task's */
	.globl boot_stack_top
boot_stack_top:
