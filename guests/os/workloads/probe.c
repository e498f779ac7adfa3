/* The red-pill probe. Runs in the kernel and executes the x86
 * instructions that are sensitive but not privileged: they read or change
 * privileged state without trapping, so a monitor that deprivileges the
 * kernel cannot intercept them (Popek & Goldberg's condition fails on x86;
 * Robin & Irvine 2000). Each result is compared with what the kernel
 * itself set up; any difference, or the CPUID hypervisor bit, makes the
 * virtualization visible. */
#include "kernel.h"
#include "layout.h"
#include "x86.h"

static int visible;

static void line(const char *name, const char *value, const char *expected, bool ok)
{
	if (!ok)
		visible++;
	kprintf("probe %s value=%s expected=%s %s\n", name, value, expected,
		ok ? "ok" : "VISIBLE");
}

static void check(const char *name, uint32_t value, uint32_t expected, int digits)
{
	char v[16], e[16];
	snprintf(v, sizeof(v), digits == 4 ? "0x%04x" : "0x%08x", value);
	snprintf(e, sizeof(e), digits == 4 ? "0x%04x" : "0x%08x", expected);
	line(name, v, e, value == expected);
}

/* POPF silently ignores IF unless CPL <= IOPL: no trap, no effect. */
static void probe_popf(void)
{
	uint32_t saved = arch_irq_save(), set, cleared;

	__asm__ volatile("pushfl; orl $0x200, (%%esp); popfl; pushfl; popl %0"
			 : "=r"(set) : : "memory", "cc");
	__asm__ volatile("pushfl; andl $~0x200, (%%esp); popfl; pushfl; popl %0"
			 : "=r"(cleared) : : "memory", "cc");
	arch_irq_restore(saved);
	check("popf", (set & EFLAGS_IF ? 2 : 0) | (cleared & EFLAGS_IF ? 1 : 0), 2, 4);
}

/* PUSHF shows the real IF and IOPL, not the ones the kernel believes. */
static void probe_pushf(void)
{
	uint32_t saved = arch_irq_save();
	uint32_t f = read_eflags();
	arch_irq_restore(saved);
	check("pushf", f & (EFLAGS_IF | EFLAGS_IOPL), 0, 4);
}

static void probe_table(const char *name, struct dtr got, uint32_t base, uint16_t limit)
{
	char v[32], e[32];
	snprintf(v, sizeof(v), "0x%08x/0x%04x", got.base, got.limit);
	if (base) {
		snprintf(e, sizeof(e), "0x%08x/0x%04x", base, limit);
		line(name, v, e, got.base == base && got.limit == limit);
	} else {
		/* PV: the monitor owns the table; at least it must not sit
		 * in the monitor's hole if the guest is to be fooled. */
		line(name, v, "below-0xf0000000", got.base < MONITOR_HOLE);
	}
}

/* Access rights as LAR defines them: the descriptor's second dword masked
 * by 00FxFF00H. Bits 19:16 (x) are undefined (silicon returns the limit's
 * top bits there, QEMU TCG zeroes them), so they are left out of both sides. */
#define LAR_DEFINED 0x00f0ff00u

/* Access rights and limit as the kernel wrote them in its GDT. */
static uint32_t desc_rights(uint64_t d)
{
	return (uint32_t)(d >> 32) & LAR_DEFINED;
}

static uint32_t desc_limit(uint64_t d)
{
	uint32_t limit = (uint32_t)(d & 0xffff) | (uint32_t)((d >> 48) & 0xf) << 16;
	return (d >> 55) & 1 ? limit << 12 | 0xfff : limit;
}

/* Run one descriptor instruction on sel. *ok: 1 = ZF set (the CPU
 * accepted the selector), 0 = ZF clear, 2 = #UD. Some instruction
 * emulators (KVM's, which runs ring-0 code on a PVM host) lack these
 * instructions; a monitor can then inject #UD, and the exception table
 * turns that into a result instead of a panic. */
#define DESC_INSN(insn, sel, val, ok)                                        \
	__asm__ volatile("movl $2, %1\n"                                    \
			 "1:\t" insn " %2, %0\n"                           \
			 "\tsetz %b1\n"                                    \
			 "\tmovzbl %b1, %1\n"                              \
			 "2:\n"                                             \
			 "\t.pushsection __ex_table, \"a\"\n"            \
			 "\t.long 1b, 2b\n"                                \
			 "\t.popsection"                                    \
			 : "=r"(val), "=&q"(ok) : "r"(sel), "0"(0u) : "cc")
#define DESC_TEST(insn, sel, ok)                                             \
	__asm__ volatile("movl $2, %0\n"                                    \
			 "1:\t" insn " %w1\n"                              \
			 "\tsetz %b0\n"                                    \
			 "\tmovzbl %b0, %0\n"                              \
			 "2:\n"                                             \
			 "\t.pushsection __ex_table, \"a\"\n"            \
			 "\t.long 1b, 2b\n"                                \
			 "\t.popsection"                                    \
			 : "=&q"(ok) : "r"(sel) : "cc")

static void desc_line(const char *insn, const char *what, uint32_t ok,
		      uint32_t value, uint32_t expected, int digits)
{
	char name[24];
	snprintf(name, sizeof(name), "%s_%s", insn, what);
	if (ok == 2)
		line(name, "#UD", "executed", false);
	else
		check(name, ok ? value : 0xffffffff, expected, digits);
}

static void probe_selector(const char *what, uint32_t sel, bool writable)
{
	uint64_t d = arch_gdt_entry(sel);
	uint32_t rights, limit, lar_ok, lsl_ok, r, w;

	DESC_INSN("larl", sel, rights, lar_ok);
	DESC_INSN("lsll", sel, limit, lsl_ok);
	DESC_TEST("verr", sel, r);
	DESC_TEST("verw", sel, w);

	desc_line("lar", what, lar_ok, rights & LAR_DEFINED, desc_rights(d), 8);
	desc_line("lsl", what, lsl_ok, limit, desc_limit(d), 8);
	desc_line("verr", what, r == 2 ? 2 : 1, r, 1, 4);
	desc_line("verw", what, w == 2 ? 2 : 1, w, writable, 4);
}

static void probe_cpuid(void)
{
	uint32_t a, b, c, d;
	char vendor[13];

	cpuid(1, &a, &b, &c, &d);
	bool hv = c >> 31;
	check("cpuid_hypervisor_bit", hv, 0, 4);
	if (!hv)
		return;
	cpuid(0x40000000, &a, &b, &c, &d);
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &c, 4);
	memcpy(vendor + 8, &d, 4);
	vendor[12] = '\0';
	for (int i = 0; i < 12; i++)
		if (vendor[i] && (vendor[i] < ' ' || vendor[i] > '~' || vendor[i] == '"'))
			vendor[i] = '?';
	kprintf("probe cpuid_hypervisor_vendor value=\"%s\" max_leaf=0x%08x\n", vendor, a);
}

void probe_run(void)
{
	struct dtr g, i;
	uint32_t gdt_base, idt_base, msw, cs, ss;
	uint16_t gdt_limit, idt_limit, ldt, tr;

	probe_popf();
	probe_pushf();

	arch_tables(&gdt_base, &gdt_limit, &idt_base, &idt_limit);
	__asm__ volatile("sgdt %0" : "=m"(g));
	__asm__ volatile("sidt %0" : "=m"(i));
	probe_table("sgdt", g, gdt_base, gdt_limit);
	probe_table("sidt", i, idt_base, idt_limit);

	__asm__ volatile("sldt %0" : "=r"(ldt));
	__asm__ volatile("str %0" : "=r"(tr));
	check("sldt", ldt, 0, 4);            /* ringos uses no LDT */
	check("str", tr, SEL_TSS, 4);

	__asm__ volatile("smsw %0" : "=r"(msw));
	check("smsw", msw & 0xffff, arch_cr0() & 0xffff, 4);

	/* A kernel runs at CPL 0: the RPL bits of CS and SS are 0. */
	__asm__ volatile("movl %%cs, %0" : "=r"(cs));
	__asm__ volatile("movl %%ss, %0" : "=r"(ss));
	check("mov_cs", cs & 0xffff, cs & 0xfffc, 4);
	check("mov_ss", ss & 0xffff, ss & 0xfffc, 4);

	probe_selector("kcode", SEL_KCODE, false);
	probe_selector("kdata", SEL_KDATA, true);

	probe_cpuid();
	kprintf("virtualization visible: %s\n", visible ? "yes" : "no");
}
