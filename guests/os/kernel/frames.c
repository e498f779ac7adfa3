/* Physical page frames. Frames come from the free RAM ranges the boot
 * information lists (bump allocation), and freed frames go onto a free
 * list threaded through the frames themselves. */
#include "kernel.h"

static struct { uint32_t start, end; } ram[MAX_RAM_RANGES];
static int nram, cur;
static uint32_t next, top, nfree;
static void *free_list;

void frames_init(const struct boot_info *bi)
{
	nram = bi->nram;
	for (int i = 0; i < nram; i++) {
		ram[i].start = bi->ram[i].start;
		ram[i].end = bi->ram[i].end;
		nfree += (ram[i].end - ram[i].start) / PAGE_SIZE;
		if (ram[i].end > top)
			top = ram[i].end;
	}
	if (!nram)
		panic("no usable RAM in the boot memory map");
	next = ram[0].start;
}

void *frame_alloc(void)
{
	void *f;

	if (free_list) {
		f = free_list;
		free_list = *(void **)f;
	} else {
		while (cur < nram && next >= ram[cur].end)
			if (++cur < nram)
				next = ram[cur].start;
		if (cur == nram)
			return NULL;
		f = (void *)next;
		next += PAGE_SIZE;
	}
	nfree--;
	return memset(f, 0, PAGE_SIZE);
}

void frame_free(void *f)
{
	*(void **)f = free_list;
	free_list = f;
	nfree++;
}

uint32_t frames_free_count(void)
{
	return nfree;
}

uint32_t ram_top(void)
{
	return top;
}
