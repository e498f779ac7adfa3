/* Two-level 32-bit paging: one page directory per task; the kernel's
 * page tables are shared by all of them. */
#ifndef RINGOS_PAGING_H
#define RINGOS_PAGING_H
#include "types.h"
#include "arch.h"

#define PTE_P       0x001
#define PTE_W       0x002
#define PTE_U       0x004
#define PTE_PRIVATE 0x200   /* software bit: frame belongs to this space */
#define PTE_FRAME(e) ((e) & ~0xfffu)

#define PF_PRESENT 0x1      /* #PF error code bits */
#define PF_WRITE   0x2
#define PF_USER    0x4

extern uint32_t *kernel_pgdir;
extern uint32_t pagefaults_resolved;
extern bool (*volatile kernel_pf_hook)(uint32_t addr);

void paging_init(const struct boot_info *bi);
uint32_t *pte_get(uint32_t *pd, uint32_t va, bool create);
uint32_t *pgdir_create(void);
void pgdir_destroy(uint32_t *pd);
bool paging_fault(uint32_t *pd, uint32_t addr, uint32_t err);
bool user_range_ok(uint32_t *pd, uint32_t va, uint32_t len, bool write);
int shared_page(uint32_t op);      /* SYS_SHARED */

/* uimage.c: the user program built into the kernel image */
struct user_header {
	uint32_t magic;            /* USER_MAGIC */
	uint32_t text_end;         /* text+rodata: read-only, shared */
	uint32_t data_end;         /* data: copied per task */
	uint32_t bss_end;          /* bss and beyond: demand-zero */
	uint32_t task_entry;       /* crt0: calls EAX(EBX, ECX), then exit */
	uint32_t main;
};
#define USER_MAGIC 0x52555352      /* "RSUR" */
const struct user_header *user_image(void);
bool user_image_map(uint32_t *pd);
#endif
