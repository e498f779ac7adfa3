/* The application processors' first instructions. A SIPI starts an AP in
 * real mode at CS = page << 8, IP = 0 (SDM 8.4.4.1); arch_start_ap copies
 * this code to a free page below 1 MiB and fills in the GDT pointer (the
 * AP's own GDT). It enters protected mode, turns paging on with the
 * kernel's page directory, takes its idle stack and calls ap_main. */
#include "layout.h"

	.text
	.code16
	.globl ap_tramp_start, ap_tramp_end, ap_tramp_gdtr
ap_tramp_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl ap_tramp_gdtr - ap_tramp_start
	movl %cr0, %eax
	andl $0x9fffffff, %eax        /* caches on (CD, NW clear after INIT) */
	orl $1, %eax                  /* PE */
	movl %eax, %cr0
	ljmpl $SEL_KCODE0, $ap_entry32
	.balign 4
ap_tramp_gdtr:
	.word 0
	.long 0
ap_tramp_end:

	.code32
ap_entry32:
	movl $SEL_KDATA0, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movl ap_boot_cr3, %eax
	movl %eax, %cr3
	movl %cr0, %eax
	orl $0x80010000, %eax         /* PG, WP: as the BSP (arch_paging_enable) */
	movl %eax, %cr0
	movl ap_boot_esp, %esp
	pushl $0
	popfl
	pushl ap_boot_index
	call ap_main
0:	hlt
	jmp 0b
