/* Kernel command line: "workload=NAME iters=N ring=0|3 enlighten=0|1
 * shootdown=0|1 acpi=off". */
#include "kernel.h"
#include "smp.h"
#include "syscall.h"

static const char *const workloads[] = {
	[WL_TASKS] = "tasks",
	[WL_NANOBENCH] = "nanobench",
	[WL_PROBE] = "probe",
	[WL_COMPUTE] = "compute",
};

static bool parse_uint(const char *s, uint32_t *out)
{
	uint32_t v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > 429496728)
			return false;
		v = v * 10 + (uint32_t)(*s - '0');
	}
	*out = v;
	return true;
}

static void option(char *tok, struct options *opt, bool report)
{
	char *val = tok;
	uint32_t n;

	while (*val && *val != '=')
		val++;
	if (*val)
		*val++ = '\0';

	if (!strcmp(tok, "workload")) {
		for (unsigned i = 0; i < ARRAY_SIZE(workloads); i++)
			if (!strcmp(val, workloads[i])) {
				opt->workload = (int)i;
				opt->workload_name = workloads[i];
				return;
			}
		if (report) {
			kprintf("ringos: unknown workload '%s'\n", val);
			kernel_exit(2);
		}
	} else if (!strcmp(tok, "iters") && parse_uint(val, &n) && n > 0) {
		opt->iters = n;
	} else if (!strcmp(tok, "ring") && (!strcmp(val, "0") || !strcmp(val, "3"))) {
		opt->ring = val[0] - '0';
	} else if (!strcmp(tok, "enlighten") && (!strcmp(val, "0") || !strcmp(val, "1"))) {
		opt->enlighten = val[0] - '0';
	} else if (!strcmp(tok, "shootdown") && (!strcmp(val, "0") || !strcmp(val, "1"))) {
		/* shootdown=0: unmapping skips the TLB-shootdown IPI, so that a
		 * test can show the stale translation it otherwise removes. */
		smp_shootdown = val[0] == '1';
	} else if (!strcmp(tok, "acpi") && !strcmp(val, "off")) {
		smp_no_acpi = true;         /* find the CPUs in the MP table */
	} else if (report) {
		/* The console line has room for a name, not for a whole
		 * runaway token: cut it where it shows. */
		char shown[64];
		snprintf(shown, sizeof(shown), "%s%s%s", tok, *val ? "=" : "", val);
		kprintf("ringos: warning: ignoring unknown option '%s%s'\n", shown,
			strlen(shown) == sizeof(shown) - 1 ? "..." : "");
	}
}

/* Called twice: quietly, to name the workload in the banner, then with
 * report set, to warn about what it does not understand. */
static bool has_equals(const char *word)
{
	for (; *word && *word != ' '; word++)
		if (*word == '=')
			return true;
	return false;
}

void parse_cmdline(const char *cmdline, struct options *opt, bool report)
{
	char buf[256], *p = buf;

	opt->workload = WL_TASKS;
	opt->workload_name = workloads[WL_TASKS];
	opt->iters = 0;
	opt->ring = 3;
	opt->enlighten = 0;
	snprintf(buf, sizeof(buf), "%s", cmdline);

	/* Multiboot loaders (GRUB, QEMU) put the kernel's path first. */
	if (*p && *p != ' ' && !has_equals(p)) {
		while (*p && *p != ' ')
			p++;
	}

	while (*p) {
		while (*p == ' ')
			p++;
		char *tok = p;
		while (*p && *p != ' ')
			p++;
		if (*p)
			*p++ = '\0';
		if (*tok)
			option(tok, opt, report);
	}
}
