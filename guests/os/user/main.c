/* init (task 1): runs the ring-3 part of the chosen workload. */
#include "ulib.h"

int printf(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return write(1, buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

int main(int workload, uint32_t iters)
{
	switch (workload) {
	case WL_TASKS:
		return tasks_main((int)iters);
	case WL_NANOBENCH:
		return nanobench_main(iters);
	case WL_COMPUTE:
		return compute_main(iters);
	}
	printf("init: unknown workload %d\n", workload);
	return 1;
}
