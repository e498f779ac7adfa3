/* Virtual and physical memory layout of ringos.
 *
 *   0x00000000  page 0, unmapped (catches NULL)            \
 *   0x00100000  kernel image (linked and loaded at 1 MiB)   | kernel: identity
 *   ...         rest of RAM, identity-mapped, supervisor    | map of RAM
 *   0x3fc00000  kernel scratch window (4 MiB, nanobench)   /
 *   0x40000000  user image: text (read-only, shared), data (private copy),
 *               bss and more up to USER_IMAGE_END (demand-zero)
 *   0x50000000  user heap, demand-zero, up to USER_HEAP_END
 *   0x60000000  the shared page (SYS_SHARED), one page table for all tasks
 *   0x7ff00000  user stack, demand-zero, grows down from USER_STACK_TOP
 *   0xf0000000  never used: reserved for ringvisor's monitors (the hole)
 */
#ifndef RINGOS_LAYOUT_H
#define RINGOS_LAYOUT_H

#define KERNEL_BASE       0x00100000u
#define DIRECT_MAP_END    0x3fc00000u  /* RAM above this is not used  */
#define SCRATCH_BASE      0x3fc00000u
#define USER_BASE         0x40000000u
#define USER_IMAGE_END    0x40400000u
#define USER_HEAP_BASE    0x50000000u
#define USER_HEAP_END     0x60000000u
#define SHARED_VA         0x60000000u  /* the shared page (SYS_SHARED) */
#define USER_STACK_BOTTOM 0x7ff00000u
#define USER_STACK_TOP    0x80000000u
#define USER_END          0x80000000u
#define MONITOR_HOLE      0xf0000000u

#define KSTACK_SIZE       4096u        /* one page of kernel stack per task */

/* GDT selectors. The PV monitor's GDT uses the same user selectors and
 * adds ring-1 kernel selectors (see docs/pv-abi.md). */
#define SEL_KCODE0 0x08
#define SEL_KDATA0 0x10
#define SEL_UCODE  0x1b
#define SEL_UDATA  0x23
#define SEL_TSS    0x28
#define SEL_KCODE1 0x31
#define SEL_KDATA1 0x39

#ifdef PV
#define SEL_KCODE SEL_KCODE1
#define SEL_KDATA SEL_KDATA1
#else
#define SEL_KCODE SEL_KCODE0
#define SEL_KDATA SEL_KDATA0
#endif

/* Interrupt vectors */
#define IRQ_BASE     0x20   /* PIC remapped to 0x20-0x2f */
#define VEC_EVENT    0x30   /* PV event upcall (internal to the kernel) */
#endif
