/* The ringvisor paravirtual ABI, version 1.0 — the guest's side.
 * docs/pv-abi.md is the complete reference; this header is its C form. */
#ifndef RINGOS_PV_ABI_H
#define RINGOS_PV_ABI_H

#define PV_ABI_VERSION      0x00010000  /* major << 16 | minor */
#define PV_BOOT_MAGIC       0x52565056  /* "VPVR": EAX at PV entry */
#define PV_NOTE_TYPE_ABI    1           /* ELF note "ringvisor", type 1 */
#define PV_HYPERCALL_VECTOR 0x82

/* Hypercall numbers: int $0x82, EAX = number, args EBX, ECX, EDX, ESI, EDI,
 * result in EAX (negative = -errno). */
#define HC_SET_TRAP_TABLE     0
#define HC_MMU_UPDATE         1
#define HC_UPDATE_VA_MAPPING  2
#define HC_PIN_TABLE          3
#define HC_UNPIN_TABLE        4
#define HC_NEW_BASEPTR        5
#define HC_INVLPG             6
#define HC_TLB_FLUSH          7
#define HC_STACK_SWITCH       8
#define HC_IRET               9
#define HC_SET_CALLBACK      10
#define HC_SET_TIMER         11
#define HC_YIELD             12
#define HC_BLOCK             13
#define HC_CONSOLE_WRITE     14
#define HC_SHUTDOWN          15
#define HC_VERSION           16
#define HC_NR                17

/* HC_UPDATE_VA_MAPPING flags */
#define UVM_NONE    0
#define UVM_INVLPG  1
#define UVM_FLUSH   2

/* trap_info.flags */
#define TI_DPL_MASK   3        /* highest ring allowed to use INT n */
#define TI_MASK_EVENTS 4       /* set evt_mask on entry (interrupt gate) */

/* What a PV kernel may assume about CR0 (it cannot read it): protected
 * mode, paging, write-protect honoured in ring 1. */
#define PV_GUEST_CR0 0x80010011

/* The monitor's GDT (the guest has none of its own). Ring-1 segments end
 * below the monitor's hole: paging cannot separate ring 1 from ring 0
 * (both are "supervisor"), segment limits can. */
#define PV_KSEG_LIMIT 0xefffffff

/* Events (bits of shared_info.evt_pending) */
#define EVT_TIMER   0
#define EVT_CONSOLE 1

#ifndef __ASSEMBLER__
#include <stdint.h>

struct pv_trap_info {          /* HC_SET_TRAP_TABLE entry; 8 bytes */
	uint8_t vector;
	uint8_t flags;
	uint16_t cs;
	uint32_t address;      /* 0 ends the table */
};

struct pv_mmu_update {         /* HC_MMU_UPDATE request; 8 bytes */
	uint32_t ptr;          /* guest-physical address of the PTE/PDE */
	uint32_t val;          /* new contents */
};

struct pv_shared_info {        /* one page, read-write for the guest */
	uint8_t evt_mask;              /* 0x00 1 = events masked (virtual CLI) */
	uint8_t pad0[3];
	uint32_t evt_pending;          /* 0x04 bitmap, set by the monitor      */
	uint32_t cr2;                  /* 0x08 address of the last bounced #PF */
	uint32_t time_version;         /* 0x0c odd while time is being updated */
	uint64_t system_time_ns;       /* 0x10 ns since boot at tsc_timestamp  */
	uint64_t tsc_timestamp;        /* 0x18 TSC when system_time was taken  */
	uint32_t tsc_khz;              /* 0x20 TSC frequency                   */
	uint32_t pad1;                 /* 0x24 */
};

#define PV_START_MAGIC "ringvisor-pv-1.0"
struct pv_start_info {         /* one page, read-only for the guest */
	char magic[16];                /* 0x00 PV_START_MAGIC, NUL-padded      */
	uint32_t nr_pages;             /* 0x10 guest RAM is frames [0, nr_pages) */
	uint32_t shared_info;          /* 0x14 guest-physical address          */
	uint32_t pt_base;              /* 0x18 boot page directory (pinned L2) */
	uint32_t nr_pt_frames;         /* 0x1c boot page-table frames, from pt_base */
	uint32_t first_free_pfn;       /* 0x20 first frame the guest may use   */
	uint32_t flags;                /* 0x24 reserved, 0                     */
	uint32_t tsc_khz;              /* 0x28 */
	uint32_t pad;                  /* 0x2c */
	char cmd_line[1024];           /* 0x30 NUL-terminated                  */
};
#endif
#endif
