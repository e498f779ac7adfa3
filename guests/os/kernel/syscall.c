/* System calls: int $0x80, number in EAX, arguments in EBX, ECX, EDX
 * (include/syscall.h). Every user pointer is checked against the task's
 * page tables before the kernel touches it. */
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "sched.h"
#include "smp.h"
#include "syscall.h"
#include "trap.h"

static int32_t sys_write(uint32_t fd, uint32_t buf, uint32_t len)
{
	if (fd != 1 && fd != 2)
		return -EINVAL;
	if (len > 65536)
		len = 65536;
	if (!user_range_ok(current->pgdir, buf, len, false))
		return -EFAULT;
	console_write((const char *)buf, len);
	return (int32_t)len;
}

static int32_t sys_spawn(uint32_t fn, uint32_t arg)
{
	const struct user_header *h = user_image();
	if (fn < USER_BASE || fn >= h->text_end)
		return -EFAULT;     /* must be code of the user program */
	return task_spawn(fn, arg, 0);
}

static int32_t sys_wait(uint32_t status_ptr)
{
	int status;
	if (status_ptr && !user_range_ok(current->pgdir, status_ptr, 4, true))
		return -EFAULT;
	int pid = task_wait(&status);
	if (pid > 0 && status_ptr)
		*(int *)status_ptr = status;
	return pid;
}

static int32_t sys_stat(uint32_t which)
{
	switch (which) {
	case STAT_PREEMPTIONS: return (int32_t)preemptions;
	case STAT_PAGEFAULTS:  return (int32_t)pagefaults_resolved;
	case STAT_TICKS:       return (int32_t)ticks;
	case STAT_HZ:          return TIMER_HZ;
	case STAT_CPU:         return (int32_t)this_cpu()->index;
	case STAT_NCPUS:       return (int32_t)ncpus;
	case STAT_CPUS_USED: {
		uint32_t mask = 0;
		for (unsigned i = 0; i < ncpus; i++)
			if (cpus[i].user_dispatches)
				mask |= 1u << i;
		return (int32_t)mask;
	}
	}
	return -EINVAL;
}

void syscall_dispatch(struct trapframe *tf)
{
	uint32_t a = tf->ebx, b = tf->ecx, c = tf->edx;
	int32_t r;

	switch (tf->eax) {
	case SYS_EXIT:
		task_exit((int)a);
	case SYS_WRITE:
		r = sys_write(a, b, c);
		break;
	case SYS_GETPID:
		r = current->pid;
		break;
	case SYS_YIELD:
		schedule();
		r = 0;
		break;
	case SYS_SLEEP:
		if (a > 10000000)
			a = 10000000;
		task_sleep((a * TIMER_HZ + 999) / 1000);
		r = 0;
		break;
	case SYS_SPAWN:
		r = sys_spawn(a, b);
		break;
	case SYS_WAIT:
		r = sys_wait(a);
		break;
	case SYS_TIME:
		r = (int32_t)ticks;
		break;
	case SYS_STAT:
		r = sys_stat(a);
		break;
	case SYS_SHARED:
		r = shared_page(a);
		break;
	default:
		r = -ENOSYS;
	}
	tf->eax = (uint32_t)r;
}
