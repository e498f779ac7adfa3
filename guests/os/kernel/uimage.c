/* The user program. It is linked separately at USER_BASE and embedded in
 * the kernel image (kernel/userblob.S), page-aligned, so its text pages can
 * be mapped read-only into every task without copying; only the data pages
 * are copied, and bss is demand-zero. */
#include "kernel.h"
#include "layout.h"
#include "paging.h"

extern char __user_image[];

const struct user_header *user_image(void)
{
	return (const struct user_header *)__user_image;
}

bool user_image_map(uint32_t *pd)
{
	const struct user_header *h = user_image();

	for (uint32_t va = USER_BASE; va < h->text_end; va += PAGE_SIZE) {
		uint32_t *pte = pte_get(pd, va, true);
		if (!pte)
			return false;
		arch_set_pte(pte, (uint32_t)(__user_image + (va - USER_BASE)) | PTE_P | PTE_U);
	}
	for (uint32_t va = h->text_end; va < h->data_end; va += PAGE_SIZE) {
		uint8_t *frame = frame_alloc();
		uint32_t *pte = frame ? pte_get(pd, va, true) : NULL;
		if (!pte) {
			if (frame)
				frame_free(frame);
			return false;   /* the caller destroys pd */
		}
		uint32_t n = h->data_end - va < PAGE_SIZE ? h->data_end - va : PAGE_SIZE;
		memcpy(frame, __user_image + (va - USER_BASE), n);
		arch_set_pte(pte, (uint32_t)frame | PTE_P | PTE_W | PTE_U | PTE_PRIVATE);
	}
	return true;
}
