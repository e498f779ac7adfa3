/* Local APICs and the application processors (native kernel, several
 * CPUs). The CPUs are found in the firmware's tables: the ACPI MADT, else
 * the MP specification's configuration table. With one CPU, no APIC
 * (CPUID.1:EDX bit 9) or no tables, the kernel keeps the 8259/8254 path.
 *
 * Each CPU's local APIC timer, calibrated against the PIT, drives its
 * scheduler tick; IPIs wake idle CPUs and shoot down TLB entries; APs are
 * started with INIT-SIPI-SIPI (Intel MP spec B.4) into a real-mode
 * trampoline in a low page (trampoline.S). The I/O APIC the tables name
 * carries COM1's interrupt to the BSP (the 8259s are masked). */
#include "devices.h"
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "sched.h"
#include "smp.h"
#include "x86.h"

#define APIC_ID    0x020
#define APIC_TPR   0x080
#define APIC_EOI   0x0b0
#define APIC_SVR   0x0f0
#define APIC_ICRLO 0x300
#define APIC_ICRHI 0x310
#define APIC_LVT_TIMER 0x320
#define APIC_LVT_LINT0 0x350
#define APIC_TICR  0x380
#define APIC_TCCR  0x390
#define APIC_TDCR  0x3e0

#define ICR_FIXED     0x00000
#define ICR_INIT      0x00500
#define ICR_STARTUP   0x00600
#define ICR_ASSERT    0x04000
#define ICR_PENDING   0x01000
#define LVT_MASKED    0x10000
#define LVT_PERIODIC  0x20000

/* The APIC pages are mapped into the kernel's scratch window (shared by
 * every address space), uncached: its last two pages. */
#define LAPIC_VIRT  (SCRATCH_BASE + 0x3ff000u)
#define IOAPIC_VIRT (SCRATCH_BASE + 0x3fe000u)

static uint32_t lapic_phys, ioapic_phys, com1_gsi = COM1_IRQ;
static const char *table_name = "";
static uint32_t apic_ticks_per_tick;     /* APIC timer counts (divide by 16) per scheduler tick */
static volatile uint32_t *lapic;         /* physical before paging, then LAPIC_VIRT */

static uint32_t rd(uint32_t reg) { return lapic[reg / 4]; }
static void wr(uint32_t reg, uint32_t v) { lapic[reg / 4] = v; }

/* -- finding the CPUs ---------------------------------------------------------- */

static bool sum_ok(const uint8_t *p, uint32_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s == 0;
}

static const uint8_t *scan(uint32_t start, uint32_t len, const char *sig, uint32_t size)
{
	for (uint32_t a = ALIGN_UP(start, 16); a + size <= start + len; a += 16) {
		const uint8_t *p = (const uint8_t *)a;
		if (!memcmp(p, sig, strlen(sig)) && sum_ok(p, size))
			return p;
	}
	return NULL;
}

static unsigned found;

/* A word of the BIOS data area (page 0, which C may not dereference). */
static uint32_t bda16(uint32_t addr)
{
	const volatile uint16_t *p;
	__asm__("" : "=r"(p) : "0"(addr));
	return *p;
}

static void add_cpu(uint32_t apic_id, uint32_t bsp_id)
{
	if (apic_id == bsp_id)
		return;                       /* cpus[0], already there */
	if (found < MAX_CPUS)
		cpus[found++].apic_id = apic_id;
}

static bool from_madt(uint32_t bsp_id)
{
	const uint8_t *rsdp = NULL;
	uint32_t ebda = bda16(0x40e) << 4;

	if (ebda >= 0x80000 && ebda < 0xa0000)
		rsdp = scan(ebda, 1024, "RSD PTR ", 20);
	if (!rsdp)
		rsdp = scan(0xe0000, 0x20000, "RSD PTR ", 20);
	if (!rsdp)
		return false;
	const uint8_t *rsdt = (const uint8_t *)*(const uint32_t *)(rsdp + 16);
	uint32_t len = *(const uint32_t *)(rsdt + 4);
	if (memcmp(rsdt, "RSDT", 4) || len < 36 || len > 4096 || !sum_ok(rsdt, len))
		return false;
	for (uint32_t i = 0; i < (len - 36) / 4; i++) {
		const uint8_t *t = (const uint8_t *)((const uint32_t *)(rsdt + 36))[i];
		uint32_t tlen = *(const uint32_t *)(t + 4);
		if (memcmp(t, "APIC", 4) || tlen < 44 || tlen > 65536 || !sum_ok(t, tlen))
			continue;
		lapic_phys = *(const uint32_t *)(t + 36);
		for (const uint8_t *e = t + 44; e + 2 <= t + tlen && e[1] >= 2; e += e[1]) {
			if (e[0] == 0 && e[1] >= 8 && (*(const uint32_t *)(e + 4) & 1))
				add_cpu(e[3], bsp_id);          /* processor local APIC, enabled */
			else if (e[0] == 1 && e[1] >= 12 && !*(const uint32_t *)(e + 8) && !ioapic_phys)
				ioapic_phys = *(const uint32_t *)(e + 4);   /* I/O APIC from GSI 0 */
			else if (e[0] == 2 && e[1] >= 10 && e[2] == 0 && e[3] == COM1_IRQ)
				com1_gsi = *(const uint32_t *)(e + 4);      /* ISA override */
		}
		table_name = "MADT";
		return true;
	}
	return false;
}

static bool from_mp_table(uint32_t bsp_id)
{
	const uint8_t *mpf = NULL;
	uint32_t ebda = bda16(0x40e) << 4;
	uint32_t base_kib = bda16(0x413);

	if (ebda >= 0x80000 && ebda < 0xa0000)
		mpf = scan(ebda, 1024, "_MP_", 16);
	if (!mpf && base_kib >= 512 && base_kib <= 640)
		mpf = scan(base_kib * 1024 - 1024, 1024, "_MP_", 16);
	if (!mpf)
		mpf = scan(0x9fc00, 1024, "_MP_", 16);
	if (!mpf)
		mpf = scan(0xf0000, 0x10000, "_MP_", 16);
	if (!mpf || !*(const uint32_t *)(mpf + 4))
		return false;
	const uint8_t *cfg = (const uint8_t *)*(const uint32_t *)(mpf + 4);
	uint16_t len = *(const uint16_t *)(cfg + 4), count = *(const uint16_t *)(cfg + 34);
	if (memcmp(cfg, "PCMP", 4) || len < 44 || !sum_ok(cfg, len))
		return false;
	lapic_phys = *(const uint32_t *)(cfg + 36);
	const uint8_t *e = cfg + 44;
	uint32_t isa_buses = 0;                         /* bit n: bus n is ISA */
	for (unsigned i = 0; i < count && e < cfg + len; i++) {
		if (e[0] == 0) {                        /* processor, 20 bytes */
			if (e[3] & 1)
				add_cpu(e[1], bsp_id);
			e += 20;
			continue;
		}
		if (e[0] == 1 && e[1] < 32 && !memcmp(e + 2, "ISA", 3))
			isa_buses |= 1u << e[1];        /* bus */
		else if (e[0] == 2 && (e[3] & 1) && !ioapic_phys)
			ioapic_phys = *(const uint32_t *)(e + 4);   /* I/O APIC, enabled */
		else if (e[0] == 3 && e[1] == 0 && e[4] < 32 && (isa_buses >> e[4] & 1) &&
			 e[5] == COM1_IRQ)
			com1_gsi = e[7];                /* I/O interrupt: COM1's pin */
		e += 8;
	}
	table_name = "MP table";
	return true;
}

/* Before paging: does this machine give us several CPUs? */
void apic_detect(void)
{
	uint32_t a, b, c, d;

	found = 1;
	cpuid(0, &a, &b, &c, &d);
	if (a < 1)
		return;
	cpuid(1, &a, &b, &c, &d);
	if (!(d & (1u << 9)))
		return;                         /* no local APIC: uniprocessor */
	cpus[0].apic_id = b >> 24;
	if (!(smp_no_acpi ? false : from_madt(cpus[0].apic_id)) && !from_mp_table(cpus[0].apic_id))
		found = 1;
	if (found < 2 || !lapic_phys)
		found = 1;
}

unsigned arch_smp_detect(void)
{
	return found;
}

bool apic_smp(void)
{
	return found > 1;
}

/* -- this CPU's APIC ---------------------------------------------------------------- */

void arch_eoi(void)
{
	wr(APIC_EOI, 0);
}

static void apic_enable(void)
{
	wr(APIC_TPR, 0);
	wr(APIC_SVR, 0x100 | VEC_SPURIOUS);              /* software-enabled */
}

static void timer_start(void)
{
	wr(APIC_TDCR, 0x3);                              /* divide by 16 */
	wr(APIC_LVT_TIMER, LVT_PERIODIC | VEC_APIC_TIMER);
	wr(APIC_TICR, apic_ticks_per_tick);
}

/* Count the APIC timer across one PIT period (IRQ0 through the 8259s, which
 * the firmware wires to LINT0 as a virtual wire). */
static void timer_calibrate(unsigned hz)
{
	pic_init();
	pit_init(hz);
	pic_unmask(0);
	wr(APIC_TDCR, 0x3);
	wr(APIC_LVT_TIMER, LVT_MASKED | VEC_APIC_TIMER); /* one-shot, masked */
	uint32_t t = ticks;
	while (ticks == t)
		arch_idle(), arch_irq_disable();
	wr(APIC_TICR, 0xffffffff);
	t = ticks;
	while (ticks == t)
		arch_idle(), arch_irq_disable();
	apic_ticks_per_tick = 0xffffffff - rd(APIC_TCCR);
	wr(APIC_TICR, 0);
	outb(0x21, 0xff);                                /* every 8259 line masked */
	outb(0xa1, 0xff);
	outb(0x43, 0x30);                                /* PIT: one-shot, then quiet */
	outb(0x40, 0);
	outb(0x40, 0);
}

/* arch_devices_init's SMP half, on the BSP with paging on. */
void apic_devices_init(unsigned hz)
{
	/* Map the APIC page uncached (PCD|PWT) into the scratch window. */
	uint32_t *pte = pte_get(kernel_pgdir, LAPIC_VIRT, false);
	arch_set_pte(pte, (lapic_phys & ~0xfffu) | PTE_P | PTE_W | 0x18);
	lapic = (volatile uint32_t *)(LAPIC_VIRT + (lapic_phys & 0xfff));
	timer_calibrate(hz);
	apic_enable();
	wr(APIC_LVT_LINT0, LVT_MASKED);                  /* no virtual wire: the 8259s are done */
	cpus[0].apic_id = rd(APIC_ID) >> 24;
	timer_start();
	kprintf("ringos: smp: %u CPUs in the %s; local APIC timer %u Hz, %u counts a tick "
		"(divide by 16, calibrated against the PIT)\n", found, table_name, hz,
		apic_ticks_per_tick);
	if (ioapic_phys && com1_gsi < 24) {
		/* COM1 through the I/O APIC to the BSP: fixed, physical, edge,
		 * active high (ISA), unmasked; the console is interrupt-driven. */
		pte = pte_get(kernel_pgdir, IOAPIC_VIRT, false);
		arch_set_pte(pte, (ioapic_phys & ~0xfffu) | PTE_P | PTE_W | 0x18);
		volatile uint32_t *io = (volatile uint32_t *)(IOAPIC_VIRT + (ioapic_phys & 0xfff));
		io[0] = 0x11 + 2 * com1_gsi;
		io[4] = cpus[0].apic_id << 24;
		io[0] = 0x10 + 2 * com1_gsi;
		io[4] = IRQ_BASE + COM1_IRQ;
		uart_enable_irq();
	}
}

/* Interrupts are off (the kernel's rule): nothing else uses the ICR
 * between the two writes. */
static void icr(uint32_t apic_id, uint32_t low)
{
	while (rd(APIC_ICRLO) & ICR_PENDING)
		cpu_relax();
	wr(APIC_ICRHI, apic_id << 24);
	wr(APIC_ICRLO, low);
}

void arch_send_ipi(unsigned index, unsigned vector)
{
	uint32_t flags = arch_irq_save();
	icr(cpus[index].apic_id, ICR_ASSERT | ICR_FIXED | vector);
	arch_irq_restore(flags);
}

/* -- starting an AP ------------------------------------------------------------------ */

extern char ap_tramp_start[], ap_tramp_end[], ap_tramp_gdtr[];
volatile uint32_t ap_boot_esp, ap_boot_index, ap_boot_cr3;

static void wait_ticks(uint32_t n)
{
	uint32_t t = ticks;
	while (ticks - t < n)
		arch_idle(), arch_irq_disable();   /* the BSP's APIC timer wakes it */
}

bool arch_start_ap(unsigned index)
{
	static uint8_t *tramp;
	struct cpu *c = &cpus[index];

	if (!tramp) {
		/* The SIPI vector names a 4 KiB page below 1 MiB: take the first
		 * free frame, which the allocator hands out from low memory. */
		tramp = frame_alloc();
		if (!tramp || (uint32_t)tramp >= 0x100000)
			return false;
		memcpy(tramp, ap_tramp_start, (size_t)(ap_tramp_end - ap_tramp_start));
	}
	uint64_t *gdt_page = frame_alloc();
	uint8_t *stack = frame_alloc();
	if (!gdt_page || !stack)
		return false;
	gdt_prepare(gdt_page, index);
	struct dtr *gdtr = (struct dtr *)(tramp + (ap_tramp_gdtr - ap_tramp_start));
	gdtr->limit = GDT_ENTRIES * sizeof(uint64_t) - 1;
	gdtr->base = (uint32_t)gdt_page;
	c->index = index;
	c->cur_pd = (uint32_t)kernel_pgdir;              /* what the trampoline loads */
	ap_boot_esp = (uint32_t)stack + PAGE_SIZE;
	ap_boot_index = index;
	ap_boot_cr3 = (uint32_t)kernel_pgdir;

	icr(c->apic_id, ICR_INIT | ICR_ASSERT);           /* INIT */
	wait_ticks(2);                                    /* 10 ms at least */
	for (int i = 0; i < 2; i++) {                     /* a running AP ignores the second */
		icr(c->apic_id, ICR_STARTUP | ICR_ASSERT | (uint32_t)tramp >> 12);
		wait_ticks(1);                            /* 200 µs at least */
	}
	for (int i = 0; i < 10 && !c->online; i++)
		wait_ticks(1);
	return c->online;
}

/* On the AP, paging on, on its idle stack. */
void arch_ap_init(unsigned index)
{
	gdt_load_ap(index);
	idt_load();
	apic_enable();
	timer_start();
}

const char *apic_table_name(void)
{
	return table_name;
}

uint32_t apic_timer_count(void)
{
	return apic_ticks_per_tick;
}
