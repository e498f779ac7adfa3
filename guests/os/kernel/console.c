/* Kernel console: formatted output, panic and the end of a run. With
 * several CPUs a lock keeps each write whole (the big kernel lock already
 * orders them; this one also covers a panic's output). */
#include "kernel.h"
#include "smp.h"

static struct spinlock console_lock;

void console_write(const char *s, size_t n)
{
	bool took = smp_on && !spin_held(&console_lock);  /* a panic inside may re-enter */
	if (took)
		spin_lock(&console_lock);
	arch_console_write(s, n);
	if (took)
		spin_unlock(&console_lock);
}

static void vkprintf(const char *fmt, va_list ap)
{
	char buf[256];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	console_write(buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

void kprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vkprintf(fmt, ap);
	va_end(ap);
}

void panic(const char *fmt, ...)
{
	va_list ap;

	arch_irq_disable();
	arch_console_sync();        /* from here on, polled output */
	kprintf("PANIC: ");
	va_start(ap, fmt);
	vkprintf(fmt, ap);
	va_end(ap);
	kprintf("\n");
	kernel_exit(3);
}

void kernel_exit(int status)
{
	kprintf("ringos: exit status %d\n", status);
	arch_console_sync();        /* every byte out before the VM ends */
	arch_exit(status);
}
