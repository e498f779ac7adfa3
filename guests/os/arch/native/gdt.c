/* GDT and TSS. Flat 4 GiB segments for rings 0 and 3, and one TSS per CPU
 * whose only job is to give the CPU the kernel stack (SS0:ESP0) to switch
 * to when an interrupt or system call arrives from ring 3.
 *
 * Every CPU has a GDT page of its own with the same selectors: CPU 0's is
 * `gdt`, an AP's a frame holding its TSS too. The page's last quadword,
 * past the limit, holds the CPU's index: SGDT finds this CPU's data. */
#include "devices.h"
#include "kernel.h"
#include "layout.h"
#include "smp.h"
#include "x86.h"

struct tss {
	uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
	uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi;
	uint32_t es, cs, ss, ds, fs, gs, ldt;
	uint16_t trap, iomap_base;
} __attribute__((packed));

#define GDT_INDEX_SLOT 511            /* the CPU's index, past the limit */
#define GDT_TSS_OFFSET 2048           /* an AP's TSS, in its GDT page */

static struct tss tss;
static struct tss *tss_of[MAX_CPUS] = { &tss };
static uint64_t *gdt_of[MAX_CPUS] = { gdt };
/* The GDT has its page to itself: a monitor that traces the GDT (ringvisor's
 * trap and bt do, for descriptors written after LGDT) then takes no trap for
 * the kernel's other data, such as the TSS's ESP0 or the console buffer. */
uint64_t gdt[4096 / sizeof(uint64_t)] __attribute__((aligned(4096)));

static uint64_t seg(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
	return (limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 |
	       (uint64_t)access << 40 | (uint64_t)((limit >> 16) & 0xf) << 48 |
	       (uint64_t)(flags & 0xf) << 52 | (uint64_t)(base >> 24) << 56;
}

static void fill(uint64_t *g, struct tss *t)
{
	/* Access bytes have the "accessed" bit preset so the CPU never needs
	 * to write to the GDT when a selector is loaded. Flags 0xc: 4 KiB
	 * granularity, 32-bit. */
	g[SEL_KCODE0 >> 3] = seg(0, 0xfffff, 0x9b, 0xc); /* ring 0 code */
	g[SEL_KDATA0 >> 3] = seg(0, 0xfffff, 0x93, 0xc); /* ring 0 data */
	g[SEL_UCODE >> 3] = seg(0, 0xfffff, 0xfb, 0xc);  /* ring 3 code */
	g[SEL_UDATA >> 3] = seg(0, 0xfffff, 0xf3, 0xc);  /* ring 3 data */

	t->ss0 = SEL_KDATA0;
	/* I/O bitmap offset past the TSS limit: no bitmap, so ring 3 port
	 * I/O always faults (IOPL is 0). */
	t->iomap_base = sizeof(*t);
	g[SEL_TSS >> 3] = seg((uint32_t)t, sizeof(*t) - 1, 0x89, 0);
}

static void load(uint64_t *g)
{
	struct dtr d = { GDT_ENTRIES * sizeof(uint64_t) - 1, (uint32_t)g };
	__asm__ volatile("lgdt %0\n\t"
			 "ljmp %1, $1f\n"
			 "1:\tmovl %2, %%eax\n\t"
			 "movl %%eax, %%ds\n\t"
			 "movl %%eax, %%es\n\t"
			 "movl %%eax, %%ss\n\t"
			 "xorl %%eax, %%eax\n\t"
			 "movl %%eax, %%fs\n\t"
			 "movl %%eax, %%gs\n\t"
			 "ltr %w3"
			 : : "m"(d), "i"(SEL_KCODE0), "i"(SEL_KDATA0), "r"(SEL_TSS)
			 : "eax", "memory");
}

void gdt_init(void)
{
	fill(gdt, &tss);
	load(gdt);
}

/* An AP's GDT page (zeroed frame), before it starts: the trampoline loads it. */
void gdt_prepare(uint64_t *page, unsigned index)
{
	struct tss *t = (struct tss *)((uint8_t *)page + GDT_TSS_OFFSET);
	fill(page, t);
	page[GDT_INDEX_SLOT] = index;
	gdt_of[index] = page;
	tss_of[index] = t;
}

void gdt_load_ap(unsigned index)
{
	load(gdt_of[index]);
}

unsigned arch_cpu_index(void)
{
	struct dtr d;
	__asm__ volatile("sgdt %0" : "=m"(d));
	return (unsigned)((const uint64_t *)d.base)[GDT_INDEX_SLOT];
}

void tss_set_esp0(uint32_t esp0)
{
	tss_of[this_cpu()->index]->esp0 = esp0;
}
