/* Paging: the kernel's identity map of RAM, per-task page directories,
 * and the page-fault policy (demand-zero user memory). */
#include "kernel.h"
#include "layout.h"
#include "paging.h"
#include "sched.h"
#include "smp.h"
#include "syscall.h"

uint32_t *kernel_pgdir;
static uint32_t *shared_pt;       /* SYS_SHARED's page table, in every directory */
static uint32_t *shared_frame;
uint32_t pagefaults_resolved;
bool (*volatile kernel_pf_hook)(uint32_t addr);   /* set by nanobench */

#define PD_INDEX(va) ((va) >> 22)
#define PT_INDEX(va) (((va) >> 12) & 1023)

static void *must_alloc(void)
{
	void *f = frame_alloc();
	if (!f)
		panic("out of memory");
	return f;
}

void paging_init(const struct boot_info *bi)
{
	if (bi->boot_pgdir) {
		/* PV: the monitor built (and validated) page tables mapping all
		 * of the guest's RAM at va == pa; use them as the kernel's. */
		kernel_pgdir = bi->boot_pgdir;
	} else {
		/* Identity-map RAM, supervisor-only; page 0 stays unmapped so
		 * a NULL dereference faults. */
		kernel_pgdir = must_alloc();
		for (uint32_t va = 0; va < ram_top(); va += 1u << 22) {
			uint32_t *pt = must_alloc();
			for (uint32_t i = 0; i < 1024; i++) {
				uint32_t pa = va + i * PAGE_SIZE;
				if (pa && pa < ram_top())
					pt[i] = pa | PTE_P | PTE_W;
			}
			arch_pt_activate(pt, 1);
			kernel_pgdir[PD_INDEX(va)] = (uint32_t)pt | PTE_P | PTE_W;
		}
		arch_pt_activate(kernel_pgdir, 2);
	}
	/* The scratch window's page table, shared like the rest of the
	 * kernel half; nanobench maps and unmaps pages in it. */
	uint32_t *pt = must_alloc();
	arch_pt_activate(pt, 1);
	arch_set_pte(&kernel_pgdir[PD_INDEX(SCRATCH_BASE)], (uint32_t)pt | PTE_P | PTE_W);
	arch_paging_enable((uint32_t)kernel_pgdir);
}

uint32_t *pte_get(uint32_t *pd, uint32_t va, bool create)
{
	uint32_t *pde = &pd[PD_INDEX(va)];

	if (!(*pde & PTE_P)) {
		if (!create)
			return NULL;
		uint32_t *pt = frame_alloc();
		if (!pt)
			return NULL;
		arch_pt_activate(pt, 1);
		arch_set_pte(pde, (uint32_t)pt | PTE_P | PTE_W | PTE_U);
	}
	return (uint32_t *)PTE_FRAME(*pde) + PT_INDEX(va);
}

uint32_t *pgdir_create(void)
{
	uint32_t *pd = frame_alloc();
	if (!pd)
		return NULL;
	/* The kernel half is shared: same page tables in every directory. */
	memcpy(pd, kernel_pgdir, PD_INDEX(USER_BASE) * sizeof(uint32_t));
	if (shared_pt)
		pd[PD_INDEX(SHARED_VA)] = (uint32_t)shared_pt | PTE_P | PTE_W | PTE_U;
	arch_pt_activate(pd, 2);
	return pd;
}

void pgdir_destroy(uint32_t *pd)
{
	/* The directory stops being one first (PV: unpinning it drops its
	 * references to the page tables, which can then be released). */
	arch_pt_release(pd, 2);
	for (uint32_t i = PD_INDEX(USER_BASE); i < PD_INDEX(USER_END); i++) {
		if (!(pd[i] & PTE_P) || (uint32_t *)PTE_FRAME(pd[i]) == shared_pt)
			continue;
		uint32_t *pt = (uint32_t *)PTE_FRAME(pd[i]);
		for (uint32_t j = 0; j < 1024; j++)
			if ((pt[j] & PTE_P) && (pt[j] & PTE_PRIVATE))
				frame_free((void *)PTE_FRAME(pt[j]));
		arch_pt_release(pt, 1);
		frame_free(pt);
	}
	frame_free(pd);
}

static bool demand_zero(uint32_t va)
{
	return (va >= USER_BASE && va < USER_IMAGE_END) ||
	       (va >= USER_HEAP_BASE && va < USER_HEAP_END) ||
	       (va >= USER_STACK_BOTTOM && va < USER_STACK_TOP);
}

/* Resolve a fault on a user address, if the policy allows it. */
bool paging_fault(uint32_t *pd, uint32_t addr, uint32_t err)
{
	if ((err & PF_PRESENT) || !pd || !demand_zero(addr))
		return false;   /* protection violations are never fixed up */

	void *frame = frame_alloc();
	uint32_t *pte = frame ? pte_get(pd, addr, true) : NULL;
	if (!pte) {
		if (frame)
			frame_free(frame);
		return false;
	}
	/* Not-present entries are never in the TLB: no flush needed. */
	arch_set_pte(pte, (uint32_t)frame | PTE_P | PTE_W | PTE_U | PTE_PRIVATE);
	pagefaults_resolved++;
	return true;
}

/* May the kernel access [va, va+len) on behalf of the task? Faults in
 * demand-zero pages so that the access itself cannot fault. */
bool user_range_ok(uint32_t *pd, uint32_t va, uint32_t len, bool write)
{
	if (va < USER_BASE || va >= USER_END || len > USER_END - va)
		return false;
	for (uint32_t page = ALIGN_DOWN(va, PAGE_SIZE); page < va + len; page += PAGE_SIZE) {
		uint32_t *pte = pte_get(pd, page, false);
		if (pte && (*pte & PTE_P)) {
			if (!(*pte & PTE_U) || (write && !(*pte & PTE_W)))
				return false;
		} else if (!paging_fault(pd, page, write ? PF_WRITE : 0)) {
			return false;
		}
	}
	return true;
}

/* SYS_SHARED (syscall.h): a page every address space maps through the same
 * page table, the one case where another CPU's TLB can hold a translation
 * this CPU removes. */
int shared_page(uint32_t op)
{
	uint32_t idx = PD_INDEX(SHARED_VA);

	if (op == SHARED_MAP) {
		if (!shared_pt) {
			shared_pt = frame_alloc();
			if (!shared_pt)
				return -ENOMEM;
			arch_pt_activate(shared_pt, 1);
			sched_set_pde(idx, (uint32_t)shared_pt | PTE_P | PTE_W | PTE_U);
		}
		if (shared_pt[PT_INDEX(SHARED_VA)] & PTE_P)
			return -EINVAL;
		shared_frame = frame_alloc();
		if (!shared_frame)
			return -ENOMEM;
		shared_frame[0] = SHARED_MAGIC;
		/* Not present before: no TLB holds it, nothing to flush. */
		arch_set_pte(&shared_pt[PT_INDEX(SHARED_VA)],
			     (uint32_t)shared_frame | PTE_P | PTE_W | PTE_U);
		return 0;
	}
	if (op == SHARED_UNMAP) {
		if (!shared_pt || !(shared_pt[PT_INDEX(SHARED_VA)] & PTE_P))
			return -EINVAL;
		/* The caller's directory holds shared_pt: this is the entry that
		 * maps SHARED_VA here. */
		arch_set_pte_flush(&shared_pt[PT_INDEX(SHARED_VA)], SHARED_VA, 0);
		int acked = tlb_shootdown(SHARED_VA);
		/* Whoever still reads the old frame through a stale entry sees
		 * this. (The frame is kept, not reused: the poison must stay.) */
		shared_frame[0] = SHARED_POISON;
		shared_frame[2] = 1;
		return acked;
	}
	return -EINVAL;
}
