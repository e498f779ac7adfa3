/* The paravirtual arch layer: the kernel runs in ring 1 under a ringvisor
 * PV monitor and asks it, by hypercall, for everything privileged
 * (docs/pv-abi.md). No port I/O, no control registers, no descriptor
 * tables of its own; the virtual interrupt flag is a byte in shared memory. */
#include "arch.h"
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "pv_abi.h"
#include "smp.h"
#include "sched.h"
#include "syscall.h"
#include "trap.h"

const char arch_name[] = "paravirtual";
const int arch_kernel_ring = 1;
const char arch_bench_in_name[] = "in-hypercall";
const char arch_bench_cr_name[] = "cr-hypercall";
const char arch_bench_ptemod_name[] = "ptemod-hypercall";

static const struct pv_start_info *si;
static volatile struct pv_shared_info *shared;
static uint32_t cur_pd;
static uint64_t tick_ns, next_deadline;

/* int $0x82: EAX = number, EBX, ECX, EDX, ESI, EDI = arguments. */
static int32_t hypercall(uint32_t nr, uint32_t a, uint32_t b, uint32_t c)
{
	int32_t r;
	__asm__ volatile("int %1"
			 : "=a"(r)
			 : "i"(PV_HYPERCALL_VECTOR), "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory");
	return r;
}

static void must(int32_t r, const char *what)
{
	if (r < 0)
		panic("hypercall %s failed: %d", what, r);
}

void arch_early_init(uint32_t magic, uint32_t info, struct boot_info *bi)
{
	si = (const struct pv_start_info *)info;
	if (memcmp(si->magic, PV_START_MAGIC, sizeof(PV_START_MAGIC) - 1))
		hypercall(HC_SHUTDOWN, 4, 0, 0);   /* cannot even print */
	shared = (volatile struct pv_shared_info *)si->shared_info;

	size_t n = strlen(si->cmd_line);
	if (n >= sizeof(bi->cmdline)) {
		n = sizeof(bi->cmdline) - 1;
		bi->cmdline_truncated = true;
	}
	memcpy(bi->cmdline, si->cmd_line, n);

	/* Everything below first_free_pfn is the image, start_info,
	 * shared_info, the boot page tables and stack: not ours to reuse. */
	uint64_t end = (uint64_t)si->nr_pages * PAGE_SIZE;
	if (end > DIRECT_MAP_END)
		end = DIRECT_MAP_END;
	bi->ram[0].start = si->first_free_pfn * PAGE_SIZE;
	bi->ram[0].end = (uint32_t)end;
	bi->nram = bi->ram[0].start < bi->ram[0].end;
	bi->boot_pgdir = (uint32_t *)si->pt_base;
	cur_pd = si->pt_base;
	(void)magic;
}

void arch_cpu_init(void)
{
	static struct pv_trap_info table[32 + 2];
	int n = 0;

	/* Like the native IDT: every handler masks events on entry; only
	 * int $0x80 may be used from ring 3. */
	for (unsigned v = 0; v < 32; v++)
		table[n++] = (struct pv_trap_info){ v, TI_MASK_EVENTS, SEL_KCODE1, trap_stubs[v] };
	table[n++] = (struct pv_trap_info){ SYSCALL_VECTOR, TI_MASK_EVENTS | 3,
					    SEL_KCODE1, (uint32_t)syscall_stub };
	table[n] = (struct pv_trap_info){ 0, 0, 0, 0 };
	must(hypercall(HC_SET_TRAP_TABLE, (uint32_t)table, 0, 0), "set_trap_table");
	must(hypercall(HC_SET_CALLBACK, SEL_KCODE1, (uint32_t)event_stub, 0), "set_callback");
}

static void arm_timer(void)
{
	must(hypercall(HC_SET_TIMER, (uint32_t)next_deadline,
		       (uint32_t)(next_deadline >> 32), 0), "set_timer");
}

void arch_devices_init(unsigned hz)
{
	/* The monitor offers a one-shot timer; re-arming it on every tick,
	 * a period after the previous deadline, makes a periodic one. */
	tick_ns = 1000000000u / hz;
	next_deadline = shared->system_time_ns + tick_ns;
	arm_timer();
}

void arch_irq(struct trapframe *tf)
{
	uint32_t pending = 0;

	(void)tf;
	/* Take all pending bits at once; the monitor sets them with locked
	 * ORs, so nothing set meanwhile is lost. */
	__asm__ volatile("xchgl %0, %1" : "+r"(pending), "+m"(shared->evt_pending) : : "memory");
	if (pending & (1u << EVT_TIMER)) {
		next_deadline += tick_ns;
		arm_timer();
		sched_tick();
	}
	/* EVT_CONSOLE (input) is not used by ringos. */
}

void arch_irq_disable(void)
{
	shared->evt_mask = 1;
	__asm__ volatile("" ::: "memory");
}

void arch_irq_enable(void)
{
	__asm__ volatile("" ::: "memory");
	shared->evt_mask = 0;
	__asm__ volatile("" ::: "memory");
	/* An event that arrived while masked is only delivered on the way
	 * out of the monitor: any hypercall will do. */
	if (shared->evt_pending)
		hypercall(HC_VERSION, 0, 0, 0);
}

uint32_t arch_irq_save(void)
{
	uint32_t was_enabled = !shared->evt_mask;
	arch_irq_disable();
	return was_enabled;
}

void arch_irq_restore(uint32_t state)
{
	if (state)
		arch_irq_enable();
}

void arch_idle(void)
{
	hypercall(HC_BLOCK, 0, 0, 0);   /* unmasks events, sleeps until one */
}

void arch_console_write(const char *s, size_t n)
{
	while (n) {
		int32_t r = hypercall(HC_CONSOLE_WRITE, (uint32_t)s, n, 0);
		if (r <= 0)
			return;
		s += r;
		n -= (size_t)r;
	}
}

void arch_console_sync(void)
{
	/* HC_CONSOLE_WRITE is synchronous: nothing is buffered here. */
}

void arch_exit(int status)
{
	for (;;)
		hypercall(HC_SHUTDOWN, (uint32_t)status, 0, 0);
}

void arch_paging_enable(uint32_t pd)
{
	/* Paging has been on since entry; just switch directories. */
	cur_pd = 0;
	arch_load_pgdir(pd);
}

void arch_load_pgdir(uint32_t pd)
{
	if (pd == cur_pd)
		return;
	cur_pd = pd;
	must(hypercall(HC_NEW_BASEPTR, pd, 0, 0), "new_baseptr");
}

void arch_set_pte(uint32_t *pte, uint32_t val)
{
	/* Page tables are read-only to the guest: the monitor validates and
	 * writes. The direct map makes the PTE's virtual address its
	 * guest-physical one. */
	struct pv_mmu_update req = { (uint32_t)pte, val };
	must(hypercall(HC_MMU_UPDATE, (uint32_t)&req, 1, 0), "mmu_update");
}

void arch_set_pte_flush(uint32_t *pte, uint32_t va, uint32_t val)
{
	(void)pte;  /* the entry that maps va in the current address space */
	must(hypercall(HC_UPDATE_VA_MAPPING, va, val, UVM_INVLPG), "update_va_mapping");
}

void arch_invlpg(uint32_t va)
{
	hypercall(HC_INVLPG, va, 0, 0);
}

/* A frame becomes a page table: drop our writable mapping of it, then ask
 * the monitor to validate and pin it. */
void arch_pt_activate(void *frame, int level)
{
	uint32_t va = (uint32_t)frame;
	must(hypercall(HC_UPDATE_VA_MAPPING, va, va | PTE_P, UVM_INVLPG), "update_va_mapping");
	must(hypercall(HC_PIN_TABLE, va, (uint32_t)level, 0), "pin_table");
}

void arch_pt_release(void *frame, int level)
{
	uint32_t va = (uint32_t)frame;
	(void)level;
	must(hypercall(HC_UNPIN_TABLE, va, 0, 0), "unpin_table");
	must(hypercall(HC_UPDATE_VA_MAPPING, va, va | PTE_P | PTE_W, UVM_INVLPG), "update_va_mapping");
}

uint32_t arch_fault_addr(void)
{
	return shared->cr2;   /* the monitor saved it before the bounce */
}

void arch_set_kernel_stack(uint32_t esp0)
{
	hypercall(HC_STACK_SWITCH, SEL_KDATA1, esp0, 0);
}

uint32_t arch_cr0(void)
{
	return PV_GUEST_CR0;
}

static uint64_t seg(uint32_t limit, uint8_t access)
{
	limit >>= 12;   /* 4 KiB granularity, 32-bit, base 0 */
	return (limit & 0xffff) | (uint64_t)access << 40 |
	       (uint64_t)((limit >> 16) & 0xf) << 48 | (uint64_t)0xc << 52;
}

uint64_t arch_gdt_entry(unsigned sel)
{
	switch (sel & ~3u) {
	case SEL_KCODE1 & ~3u: return seg(PV_KSEG_LIMIT, 0xbb);  /* DPL 1 */
	case SEL_KDATA1 & ~3u: return seg(PV_KSEG_LIMIT, 0xb3);
	case SEL_UCODE & ~3u:  return seg(0xffffffff, 0xfb);
	case SEL_UDATA & ~3u:  return seg(0xffffffff, 0xf3);
	}
	return 0;
}

void arch_tables(uint32_t *gdt_base, uint16_t *gdt_limit, uint32_t *idt_base,
		 uint16_t *idt_limit)
{
	/* The monitor owns the GDT and IDT; the guest has no address for them. */
	*gdt_base = *idt_base = 0;
	*gdt_limit = *idt_limit = 0;
}

void arch_enlighten(void)
{
	kprintf("ringos: enlighten=1: the PV build uses its hypercalls always\n");
}

uint32_t arch_bench_in(void)
{
	return (uint32_t)hypercall(HC_VERSION, 0, 0, 0);  /* a null hypercall */
}

void arch_bench_cr(void)
{
	hypercall(HC_NEW_BASEPTR, cur_pd, 0, 0);
}

/* One virtual CPU: the PV ABI has no second one (smp.h stays off). */
unsigned arch_smp_detect(void) { return 1; }
unsigned arch_cpu_index(void) { return 0; }
bool arch_start_ap(unsigned index) { (void)index; return false; }
void arch_ap_init(unsigned index) { (void)index; }
void arch_send_ipi(unsigned index, unsigned vector) { (void)index, (void)vector; }
void arch_eoi(void) { }
