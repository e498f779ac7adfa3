/* Trap entry and exit, and the kernel context switch.
 *
 * Every vector has a stub that makes the stack look the same (error code,
 * vector number), then trap_common saves the registers into a struct
 * trapframe (include/trap.h) and calls trap_dispatch(tf). The PV monitor
 * bounces exceptions to the same stubs with a hardware-identical frame. */
#include "layout.h"
#include "pv_abi.h"

	.altmacro
.macro STUB vec
stub_\vec:
	/* The CPU pushes an error code only for these vectors. */
	.if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushl $0
	.endif
	pushl $\vec
	jmp trap_common
.endm

.macro STUBADDR vec
	.long stub_\vec
.endm

	.text
	.set i, 0
	.rept 48                  /* 0-31 exceptions, 32-47 PIC interrupts */
	STUB %i
	.set i, i + 1
	.endr

	.globl syscall_stub
syscall_stub:
	pushl $0
	pushl $0x80
	jmp trap_common

	.globl event_stub
event_stub:                       /* PV: the monitor's event upcall */
	pushl $0
	pushl $VEC_EVENT
	jmp trap_common

	/* The local APIC's vectors (native, several CPUs: smp.h). */
	.globl apic_timer_stub, resched_stub, tlb_stub, spurious_stub
apic_timer_stub:
	pushl $0
	pushl $0x40
	jmp trap_common
resched_stub:
	pushl $0
	pushl $0x41
	jmp trap_common
tlb_stub:
	pushl $0
	pushl $0x42
	jmp trap_common
spurious_stub:
	pushl $0
	pushl $0xff
	jmp trap_common

trap_common:
	cld                       /* C code assumes DF=0, whatever ring 3 set */
	pushl %ds
	pushl %es
	pushal
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	pushl %esp                /* struct trapframe * */
	call trap_dispatch
	addl $4, %esp

	/* A new task's first switch lands here: leave the kernel as if
	 * returning from a trap (after dropping the big kernel lock). */
	.globl task_start
task_start:
	call task_first_entry

	.globl trap_return
trap_return:
	popal
	popl %es
	popl %ds
	addl $8, %esp             /* vector, error code */
#ifdef PV
	/* IRET in ring 1 cannot restore the virtual IF (the event mask), so
	 * let the monitor do it: push EAX, HC_IRET pops it and the frame. */
	pushl %eax
	movl $HC_IRET, %eax
	int $PV_HYPERCALL_VECTOR
#else
	iret
#endif

	.section .rodata
	.globl trap_stubs
trap_stubs:
	.set i, 0
	.rept 48
	STUBADDR %i
	.set i, i + 1
	.endr

	.text
/* void swtch(uint32_t *save_esp, uint32_t new_esp)
 * Save the callee-saved registers on this kernel stack, switch stacks,
 * restore the other task's. A new task's stack is prepared so that the
 * `ret` lands in trap_return. */
	.globl swtch
swtch:
	movl 4(%esp), %eax
	movl 8(%esp), %edx
	pushl %ebp
	pushl %ebx
	pushl %esi
	pushl %edi
	movl %esp, (%eax)
	movl %edx, %esp
	popl %edi
	popl %esi
	popl %ebx
	popl %ebp
	ret
