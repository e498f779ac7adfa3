/* The native arch layer: the kernel owns the machine. Privileged
 * instructions are executed directly and the devices are programmed
 * through their ports. */
#include "arch.h"
#include "devices.h"
#include "kernel.h"
#include "layout.h"
#include "multiboot.h"
#include "sched.h"
#include "smp.h"
#include "x86.h"

const char arch_name[] = "native";
const int arch_kernel_ring = 0;
const char arch_bench_in_name[] = "in";
const char arch_bench_cr_name[] = "cr";
const char arch_bench_ptemod_name[] = "ptemod";

extern char __kernel_start[], __kernel_end[];

/* Add [start, end) to the free RAM list, minus page 0 and the kernel. */
static void add_ram(struct boot_info *bi, uint64_t start, uint64_t end)
{
	uint32_t ks = (uint32_t)__kernel_start, ke = (uint32_t)__kernel_end;

	if (end > DIRECT_MAP_END)
		end = DIRECT_MAP_END;
	start = ALIGN_UP(start < PAGE_SIZE ? PAGE_SIZE : start, PAGE_SIZE);
	end = ALIGN_DOWN(end, PAGE_SIZE);
	if (start >= end)
		return;
	if (start < ke && end > ks) {          /* split around the image */
		add_ram(bi, start, ks);
		add_ram(bi, ke, end);
		return;
	}
	if (bi->nram < MAX_RAM_RANGES) {
		bi->ram[bi->nram].start = (uint32_t)start;
		bi->ram[bi->nram].end = (uint32_t)end;
		bi->nram++;
	}
}

void arch_early_init(uint32_t magic, uint32_t info, struct boot_info *bi)
{
	const struct multiboot_info *mbi = (const void *)info;

	uart_init();
	if (magic != MULTIBOOT_BOOT_MAGIC)
		panic("not booted by a multiboot loader (eax=%x)", magic);

	/* Copy what we need out of the loader's data now: its pages become
	 * free RAM as soon as the frame allocator starts. */
	if ((mbi->flags & MBI_CMDLINE) && mbi->cmdline) {
		const char *s = (const char *)mbi->cmdline;
		size_t n = strlen(s);
		if (n >= sizeof(bi->cmdline)) {
			n = sizeof(bi->cmdline) - 1;
			bi->cmdline_truncated = true;
		}
		memcpy(bi->cmdline, s, n);
	}
	if (mbi->flags & MBI_MMAP) {
		uint32_t p = mbi->mmap_addr, end = p + mbi->mmap_length;
		while (p < end) {
			const struct multiboot_mmap *m = (const void *)p;
			if (m->type == 1)
				add_ram(bi, m->addr, m->addr + m->len);
			p += m->size + 4;
		}
	} else if (mbi->flags & MBI_MEM) {
		add_ram(bi, 0, (uint64_t)mbi->mem_lower << 10);
		add_ram(bi, 0x100000, 0x100000 + ((uint64_t)mbi->mem_upper << 10));
	}
}

void arch_cpu_init(void)
{
	gdt_init();
	idt_init();
	apic_detect();
}

void arch_devices_init(unsigned hz)
{
	if (apic_smp()) {
		/* Several CPUs: each local APIC's timer ticks; COM1 comes
		 * through the I/O APIC. */
		apic_devices_init(hz);
		return;
	}
	pic_init();
	pit_init(hz);
	pic_unmask(0);
	pic_unmask(COM1_IRQ);
	uart_enable_irq();
}

void arch_irq(struct trapframe *tf)
{
	unsigned irq = tf->vector - IRQ_BASE;

	if (tf->vector == VEC_APIC_TIMER) {
		arch_eoi();
		sched_tick();
		return;
	}
	if (tf->vector == VEC_RESCHED) {        /* the idle loop looks again */
		arch_eoi();
		atomic_inc(&this_cpu()->ipis_received);
		return;
	}
	if (apic_smp() && irq == COM1_IRQ) {    /* through the I/O APIC */
		arch_eoi();
		uart_isr();
		return;
	}
	if (pic_spurious(irq))
		return;
	/* Acknowledge first: the handler may lead to a task switch, and the
	 * next task must still get timer interrupts. */
	pic_eoi(irq);
	if (irq == 0)
		sched_tick();
	else if (irq == COM1_IRQ)
		uart_isr();
}

void arch_irq_disable(void)
{
	__asm__ volatile("cli" ::: "memory");
}

void arch_irq_enable(void)
{
	__asm__ volatile("sti" ::: "memory");
}

uint32_t arch_irq_save(void)
{
	uint32_t f = read_eflags();
	arch_irq_disable();
	return f & EFLAGS_IF;
}

void arch_irq_restore(uint32_t state)
{
	if (state)
		arch_irq_enable();
}

void arch_idle(void)
{
	/* STI's one-instruction shadow makes "sti; hlt" atomic: an interrupt
	 * arriving in between still wakes the HLT. */
	__asm__ volatile("sti; hlt" ::: "memory");
}

/* Enlightenments (docs/hw-abi.md): under ringvisor's hw monitor, asked for
 * with enlighten=1, a few operations that would exit several times become
 * one VMCALL. Found by the hypervisor's CPUID leaf and a version call. */
#define HC_VERSION       0x52560000u   /* "RV" << 16 */
#define HC_CONSOLE_WRITE 0x52560001u
#define HC_SET_PTE_FLUSH 0x52560002u
#define HV_ABI_VERSION   1
#define HV_CONSOLE       1u
#define HV_MMU           2u
static uint32_t hv_features;

static inline uint32_t vmcall(uint32_t nr, uint32_t a, uint32_t b, uint32_t c, uint32_t *ebx)
{
	uint32_t r, rb;
	__asm__ volatile("vmcall" : "=a"(r), "=b"(rb) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	if (ebx)
		*ebx = rb;
	return r;
}

void arch_enlighten(void)
{
	uint32_t a, b, c, d, features;
	char vendor[13];

	cpuid(0x40000000, &a, &b, &c, &d);
	memcpy(vendor, &b, 4), memcpy(vendor + 4, &c, 4), memcpy(vendor + 8, &d, 4);
	vendor[12] = '\0';
	if (a < 0x40000000 || strcmp(vendor, "ringvisorVMM")) {
		kprintf("ringos: enlighten=1: no ringvisor hypervisor here\n");
		return;
	}
	if (vmcall(HC_VERSION, 0, 0, 0, &features) != HV_ABI_VERSION) {
		kprintf("ringos: enlighten=1: ringvisor without hypercalls (the kvm engine)\n");
		return;
	}
	uart_sync();            /* what the UART still holds goes out first */
	hv_features = features;
	kprintf("ringos: enlightened: ringvisor hypercalls:%s%s\n",
		features & HV_CONSOLE ? " console" : "", features & HV_MMU ? " mmu" : "");
}

void arch_console_write(const char *s, size_t n)
{
	if (hv_features & HV_CONSOLE)
		vmcall(HC_CONSOLE_WRITE, (uint32_t)s, n, 0, 0);
	else
		uart_write(s, n);
}

void arch_console_sync(void)
{
	if (!(hv_features & HV_CONSOLE))
		uart_sync();
}

void arch_exit(int status)
{
	arch_irq_disable();
	outb(0xf4, (uint8_t)status);   /* ringvisor's (and QEMU's) debug exit */
	for (;;)
		__asm__ volatile("hlt");
}

void arch_load_pgdir(uint32_t pd)
{
	struct cpu *c = this_cpu();
	if (pd == c->cur_pd)
		return;                /* a CR3 write flushes the TLB: skip it */
	c->cur_pd = pd;
	__asm__ volatile("movl %0, %%cr3" : : "r"(pd) : "memory");
}

void arch_paging_enable(uint32_t pd)
{
	uint32_t cr0;
	arch_load_pgdir(pd);
	__asm__ volatile("movl %%cr0, %0" : "=r"(cr0));
	/* WP: the kernel too must respect read-only pages (user text). */
	cr0 |= CR0_PG | CR0_WP;
	__asm__ volatile("movl %0, %%cr0" : : "r"(cr0) : "memory");
}

void arch_set_pte(uint32_t *pte, uint32_t val)
{
	*(volatile uint32_t *)pte = val;
}

void arch_invlpg(uint32_t va)
{
	__asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

void arch_set_pte_flush(uint32_t *pte, uint32_t va, uint32_t val)
{
	if (hv_features & HV_MMU) {      /* shadow paging: one exit, not three */
		vmcall(HC_SET_PTE_FLUSH, (uint32_t)pte, va, val, 0);
		return;
	}
	arch_set_pte(pte, val);
	arch_invlpg(va);
}

void arch_pt_activate(void *frame, int level)
{
	(void)frame, (void)level;   /* natively a page table is just memory */
}

void arch_pt_release(void *frame, int level)
{
	(void)frame, (void)level;
}

uint32_t arch_fault_addr(void)
{
	uint32_t cr2;
	__asm__ volatile("movl %%cr2, %0" : "=r"(cr2));
	return cr2;
}

void arch_set_kernel_stack(uint32_t esp0)
{
	tss_set_esp0(esp0);
}

uint32_t arch_cr0(void)
{
	uint32_t cr0;
	__asm__ volatile("movl %%cr0, %0" : "=r"(cr0));
	return cr0;
}

uint64_t arch_gdt_entry(unsigned sel)
{
	return gdt[sel >> 3];
}

void arch_tables(uint32_t *gdt_base, uint16_t *gdt_limit, uint32_t *idt_base,
		 uint16_t *idt_limit)
{
	*gdt_base = (uint32_t)gdt;
	*gdt_limit = GDT_ENTRIES * sizeof(uint64_t) - 1;
	*idt_base = (uint32_t)idt;
	*idt_limit = sizeof(idt) - 1;
}

uint32_t arch_bench_in(void)
{
	return inb(0x21);   /* the master PIC's mask register: no side effect */
}

void arch_bench_cr(void)
{
	__asm__ volatile("movl %0, %%cr3" : : "r"(this_cpu()->cur_pd) : "memory");
}
