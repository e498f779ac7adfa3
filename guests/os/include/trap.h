/* The trap frame: what entry.S saves on the kernel stack for every
 * exception, interrupt, system call (and, in the PV build, event upcall).
 * The layout matches the pushes in entry.S; the last five words are what
 * the CPU (or the PV monitor, identically) pushed. */
#ifndef RINGOS_TRAP_H
#define RINGOS_TRAP_H
#include "types.h"

struct trapframe {
	uint32_t edi, esi, ebp, esp_unused, ebx, edx, ecx, eax; /* pushal */
	uint32_t es, ds;
	uint32_t vector, err;
	uint32_t eip, cs, eflags;
	uint32_t user_esp, user_ss;  /* only present when coming from ring 3 */
};

static inline bool tf_from_user(const struct trapframe *tf)
{
	return (tf->cs & 3) == 3;
}

/* Exception fixups (like Linux's __ex_table): if kernel code faults at
 * `fault`, execution resumes at `fixup` instead of panicking. */
struct ex_entry {
	uint32_t fault, fixup;
};

void trap_dispatch(struct trapframe *tf);
void trap_return(void);           /* entry.S: pops a trapframe and irets */
extern const uint32_t trap_stubs[]; /* entry.S: one stub per vector 0..47 */
extern char syscall_stub[], event_stub[];
extern char apic_timer_stub[], resched_stub[], tlb_stub[], spurious_stub[];
const char *trap_name(unsigned vector);
#endif
