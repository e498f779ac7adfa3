/* The architecture layer: everything that differs between the native
 * kernel (ring 0, real privileged instructions and devices) and the
 * paravirtual kernel (ring 1, hypercalls to the monitor). arch/native.c
 * and arch/pv.c implement it; the rest of the kernel only calls these. */
#ifndef RINGOS_ARCH_H
#define RINGOS_ARCH_H
#include "types.h"
#include "trap.h"

#define MAX_RAM_RANGES 16

struct boot_info {
	char cmdline[256];
	bool cmdline_truncated; /* the loader's was longer: said, not hidden */
	struct { uint32_t start, end; } ram[MAX_RAM_RANGES]; /* usable, free */
	int nram;
	uint32_t *boot_pgdir; /* PV: page directory built by the monitor */
};

extern const char arch_name[];     /* "native" or "paravirtual" */
extern const int arch_kernel_ring; /* 0 or 1 */

/* Boot: early console, then the CPU tables, then interrupt sources. */
void arch_early_init(uint32_t magic, uint32_t info, struct boot_info *bi);
void arch_cpu_init(void);
void arch_devices_init(unsigned hz);
void arch_irq(struct trapframe *tf);  /* a device interrupt or PV event */

/* Virtual interrupt flag: real IF natively, the event mask under PV. */
void arch_irq_disable(void);
void arch_irq_enable(void);
uint32_t arch_irq_save(void);         /* disables; returns the old state */
void arch_irq_restore(uint32_t state);
void arch_idle(void);                 /* wait for an interrupt, enabled */

/* Console and end of run. */
void arch_console_write(const char *s, size_t n);
void arch_enlighten(void);            /* enlighten=1: hypercalls if the VMM has them */
void arch_console_sync(void);         /* drain output, switch to polling */
_Noreturn void arch_exit(int status);

/* MMU: page-table writes, address-space switches, TLB. */
void arch_paging_enable(uint32_t pd_phys);      /* first switch-on */
void arch_load_pgdir(uint32_t pd_phys);
void arch_set_pte(uint32_t *pte, uint32_t val);
/* pte must be the entry that maps va in the current address space */
void arch_set_pte_flush(uint32_t *pte, uint32_t va, uint32_t val);
void arch_invlpg(uint32_t va);
void arch_pt_activate(void *frame, int level);   /* frame now a table */
void arch_pt_release(void *frame, int level);    /* table now a frame */
uint32_t arch_fault_addr(void);                  /* CR2 */
void arch_set_kernel_stack(uint32_t esp0);       /* TSS.esp0 / stack_switch */

/* For the probe and nanobench workloads. */
uint32_t arch_cr0(void);
uint64_t arch_gdt_entry(unsigned sel);           /* as the kernel set it */
void arch_tables(uint32_t *gdt_base, uint16_t *gdt_limit,
		 uint32_t *idt_base, uint16_t *idt_limit); /* 0 if not ours */
extern const char arch_bench_in_name[], arch_bench_cr_name[],
	arch_bench_ptemod_name[];
uint32_t arch_bench_in(void);    /* a port read (PV: a null hypercall) */
void arch_bench_cr(void);        /* a CR3 write (PV: new_baseptr)      */
#endif
