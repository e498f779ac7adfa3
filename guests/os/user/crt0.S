/* Start of the user program: the header the kernel reads, and the entry
 * every task starts at (EAX = function, EBX, ECX = its arguments). */
#include "syscall.h"

	.section .uheader, "a"
	.long 0x52555352          /* USER_MAGIC */
	.long __utext_end
	.long __udata_end
	.long __ubss_end
	.long task_entry
	.long main

	.text
	.globl task_entry
task_entry:
	pushl %ecx
	pushl %ebx
	call *%eax
	movl %eax, %ebx           /* exit(fn(arg, arg2)) */
	movl $SYS_EXIT, %eax
	int $0x80
	ud2
