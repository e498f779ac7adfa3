/* A hostile paravirtual guest (docs/pv-abi.md): it asks the PV monitor for
 * everything the ABI forbids and checks that each request fails with the
 * documented error and the monitor carries on.
 *   how=0  (default) every check; one line "check NAME got=G want=W ok|FAIL"
 *          each; the exit status (HC_SHUTDOWN) is the number of failures
 *   how=1  HC_IRET to the monitor's ring-0 code selector (a guest crash)
 *   how=2  ud2 before any trap table exists (an undeliverable exception)
 *   how=3  HC_BLOCK with no timer armed (nothing can ever wake it)
 * Guest-physical == virtual: the monitor's boot tables map all RAM. */
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

struct start_info {
    char magic[16];
    u32 nr_pages, shared_info, pt_base, nr_pt_frames, first_free_pfn, flags, tsc_khz, pad;
    char cmd_line[1024];
};
struct trap_info { u8 vector, flags; u16 cs; u32 address; };
struct mmu_req { u32 ptr, val; };

enum { SET_TRAP_TABLE, MMU_UPDATE, UPDATE_VA_MAPPING, PIN_TABLE, UNPIN_TABLE, NEW_BASEPTR,
       INVLPG, TLB_FLUSH, STACK_SWITCH, IRET, SET_CALLBACK, SET_TIMER, YIELD, BLOCK,
       CONSOLE_WRITE, SHUTDOWN, VERSION };
enum { EPERM = 1, EFAULT = 14, EBUSY = 16, EINVAL = 22, ENOSYS = 38 };
#define P 1u
#define W 2u
#define U 4u
#define PAGE 4096u
#define HOLE 0xf0000000u
#define UNMAPPED 0x0ff00000u        /* beyond this guest's RAM: no directory entry */

static int hc(u32 nr, u32 a, u32 b, u32 c)
{
    int r;
    __asm__ volatile("int $0x82" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return r;
}

static u32 len(const char *s) { u32 n = 0; while (s[n]) n++; return n; }
static void puts(const char *s) { hc(CONSOLE_WRITE, (u32)s, len(s), 0); }

static void put_int(int v)
{
    char buf[12], *p = buf + 11;
    u32 u = v < 0 ? -(u32)v : (u32)v;
    *p = 0;
    do { *--p = '0' + u % 10; u /= 10; } while (u);
    if (v < 0) *--p = '-';
    puts(p);
}

static int failures;
static void check(const char *name, int got, int want)
{
    puts("check "); puts(name); puts(" got="); put_int(got); puts(" want="); put_int(want);
    puts(got == want ? " ok\n" : " FAIL\n");
    failures += got != want;
}

/* #GP and #PF handlers: note the fault, resume at `recover` in ring 1. */
volatile u32 fault_vector, fault_code, recover, saved_esp;
extern char gp_entry[], pf_entry[];
__asm__(".text\n"
        "gp_entry: pushl $13\n jmp fault_common\n"
        "pf_entry: pushl $14\n"
        "fault_common: pushl %eax\n movl $0x39, %eax\n movl %eax, %ds\n movl %eax, %es\n"
        " movl 4(%esp), %eax\n movl %eax, fault_vector\n"
        " movl 8(%esp), %eax\n movl %eax, fault_code\n"
        " movl recover, %eax\n movl %eax, 12(%esp)\n movl $0x31, 16(%esp)\n"
        " movl (%esp), %eax\n movl %eax, 8(%esp)\n addl $8, %esp\n"
        " movl $9, %eax\n int $0x82\n");

static const struct start_info *si;
static u32 kstack[1024];

static u32 *pte_of(u32 va)
{
    u32 *pd = (u32 *)si->pt_base;
    return (u32 *)(pd[va >> 22] & ~0xfffu) + ((va >> 12) & 1023);
}

static int update(u32 ptr, u32 val)
{
    struct mmu_req r = { ptr, val };
    return hc(MMU_UPDATE, (u32)&r, 1, 0);
}

static int trap_table(u8 vector, u8 flags, u16 cs, u32 address)
{
    struct trap_info t[2] = { { vector, flags, cs, address }, { 0, 0, 0, 0 } };
    return hc(SET_TRAP_TABLE, (u32)t, 0, 0);
}

/* Touch linear 0xf0000000 with DS = sel: 13 if it faulted with #GP. */
static u32 touch_hole(u32 sel, int write)
{
    fault_vector = 0;
    if (write)
        __asm__ volatile("movl $1f, recover\n movl %0, %%ds\n movl $0xbad, 0xf0000000\n"
                         "1: movl $0x39, %%ecx\n movl %%ecx, %%ds" : : "a"(sel) : "ecx", "memory");
    else
        __asm__ volatile("movl $1f, recover\n movl %0, %%ds\n movl 0xf0000000, %%eax\n"
                         "1: movl $0x39, %%ecx\n movl %%ecx, %%ds" : "+a"(sel) : : "ecx", "memory");
    return fault_vector;
}

/* A plain store to addr: 14 if it faulted with #PF (a read-only page). */
static u32 poke(u32 addr)
{
    fault_vector = 0;
    __asm__ volatile("movl $1f, recover\n movl $1, (%0)\n1:" : : "r"(addr) : "memory");
    return fault_vector;
}

/* Run `int $0x82` in ring 3 from a user page at `page`; the #GP's code. */
static u32 int82_from_ring3(u32 page)
{
    static const u8 code[] = { 0xcd, 0x82, 0xeb, 0xfe };   /* int $0x82; jmp . */
    for (u32 i = 0; i < sizeof(code); i++)
        ((volatile u8 *)page)[i] = code[i];
    u32 *pde = (u32 *)si->pt_base + (page >> 22);
    update((u32)pde, *pde | U);
    hc(UPDATE_VA_MAPPING, page, page | P | W | U, 1);
    hc(STACK_SWITCH, 0x39, (u32)(kstack + 1024), 0);
    fault_vector = fault_code = 0;
    __asm__ volatile("movl %%esp, saved_esp\n movl $1f, recover\n"
                     "pushl $0x23\n pushl %1\n pushl $0x202\n pushl $0x1b\n pushl %0\n pushl %%eax\n"
                     "movl $9, %%eax\n int $0x82\n"
                     "1: movl saved_esp, %%esp"
                     : : "r"(page), "r"(page + PAGE) : "eax", "memory");
    return fault_vector == 13 ? fault_code : 0;
}

static void hypercall_numbers(void)
{
    check("unknown_hypercall", hc(99, 0, 0, 0), -ENOSYS);
    check("unknown_hypercall_high", hc(0xffffffffu, 0, 0, 0), -ENOSYS);
    check("version", hc(VERSION, 0, 0, 0), 0x10000);
}

static void traps(void)
{
    static struct trap_info big[258];
    check("trap_ring0_cs", trap_table(13, 4, 0x08, (u32)gp_entry), -EINVAL);
    check("trap_rpl0_cs", trap_table(13, 4, 0x30, (u32)gp_entry), -EINVAL);
    check("trap_user_cs", trap_table(13, 4, 0x1b, (u32)gp_entry), -EINVAL);
    check("trap_hypercall_vector", trap_table(0x82, 7, 0x31, (u32)gp_entry), -EINVAL);
    check("trap_handler_in_hole", trap_table(13, 4, 0x31, HOLE + 0x1000), -EINVAL);
    check("trap_undefined_flags", trap_table(13, 0x84, 0x31, (u32)gp_entry), -EINVAL);
    for (int i = 0; i < 257; i++)
        big[i] = (struct trap_info){ 13, 4, 0x31, (u32)gp_entry };
    check("trap_table_too_long", hc(SET_TRAP_TABLE, (u32)big, 0, 0), -EINVAL);
    check("trap_table_in_hole", hc(SET_TRAP_TABLE, HOLE, 0, 0), -EFAULT);
    check("trap_table_unmapped", hc(SET_TRAP_TABLE, UNMAPPED, 0, 0), -EFAULT);
    struct trap_info good[3] = { { 13, 4, 0x31, (u32)gp_entry }, { 14, 4, 0x31, (u32)pf_entry },
                                 { 0, 0, 0, 0 } };
    check("trap_table", hc(SET_TRAP_TABLE, (u32)good, 0, 0), 0);
    check("callback_ring0_cs", hc(SET_CALLBACK, 0x08, (u32)gp_entry, 0), -EINVAL);
    check("callback_in_hole", hc(SET_CALLBACK, 0x31, HOLE, 0), -EINVAL);
    check("stack_switch_ring0_ss", hc(STACK_SWITCH, 0x10, (u32)(kstack + 1024), 0), -EINVAL);
}

static void mappings(u32 f1, u32 f3)
{
    u32 monitor_frame = si->nr_pages * PAGE, pd = si->pt_base, unpinned = f1;
    u32 pte = (u32)pte_of(f1);
    check("map_monitor_frame", update(pte, monitor_frame | P), -EPERM);
    check("map_hole_frame", update(pte, HOLE | P | W), -EPERM);
    check("map_last_frame", update(pte, 0xfffff000u | P), -EPERM);
    check("map_page_directory_writable", update(pte, pd | P | W), -EPERM);
    check("map_page_table_writable", update(pte, (*(u32 *)pd & ~0xfffu) | P | W), -EPERM);
    check("map_start_info_writable", update(pte, (u32)si | P | W), -EPERM);
    check("map_global_bit", update(pte, f1 | P | W | 0x100), -EINVAL);
    check("update_misaligned", update(pte + 2, f1 | P | W), -EINVAL);
    check("update_unpinned_frame", update(unpinned, 0), -EINVAL);
    check("update_hole_pde", update(pd + 4 * 960, 0), -EPERM);
    check("update_hole_pde_1023", update(pd + 4 * 1023, f1 | P), -EPERM);
    check("pde_unpinned_table", update(pd + 4 * 100, unpinned | P | W), -EPERM);
    check("pde_large_page", update(pd + 4 * 100, (*(u32 *)pd & ~0xfffu) | P | W | 0x80), -EINVAL);
    struct mmu_req r = { pte, f1 | P | W };
    check("mmu_update_reqs_in_hole", hc(MMU_UPDATE, HOLE - 4, 1, 0), -EFAULT);
    check("mmu_update_too_many", hc(MMU_UPDATE, (u32)&r, 5000, 0), -EINVAL);
    check("mmu_update_done_read_only", hc(MMU_UPDATE, (u32)&r, 1, (u32)si), -EFAULT);
    /* A batch stops at its first bad request; `done` says how far it got. */
    u32 done = 99;
    struct mmu_req batch[2] = { { (u32)pte_of(f3), f3 | P | W }, { pte, monitor_frame | P } };
    check("mmu_update_batch", hc(MMU_UPDATE, (u32)batch, 2, (u32)&done), -EPERM);
    check("mmu_update_batch_done", done, 1);
    check("va_mapping_hole", hc(UPDATE_VA_MAPPING, HOLE, f1 | P, 1), -EINVAL);
    check("va_mapping_bad_flags", hc(UPDATE_VA_MAPPING, f1, f1 | P | W, 7), -EINVAL);
    check("va_mapping_no_pde", hc(UPDATE_VA_MAPPING, UNMAPPED, f1 | P, 1), -EINVAL);
    check("va_mapping_monitor_frame", hc(UPDATE_VA_MAPPING, f1, monitor_frame | P | W, 1), -EPERM);
}

static void tables(u32 f1, u32 f2, u32 f3, u32 f4)
{
    u32 pd = si->pt_base;
    check("pin_bad_level", hc(PIN_TABLE, f1, 3, 0), -EINVAL);
    check("pin_misaligned", hc(PIN_TABLE, f1 + 4, 1, 0), -EINVAL);
    check("pin_monitor_frame", hc(PIN_TABLE, si->nr_pages * PAGE, 1, 0), -EINVAL);
    check("pin_twice", hc(PIN_TABLE, pd, 2, 0), -EBUSY);
    check("pin_still_writable", hc(PIN_TABLE, f1, 1, 0), -EPERM);
    check("pin_shared_info", hc(PIN_TABLE, si->shared_info, 1, 0), -EPERM);
    /* A page table naming a monitor frame, made read-only first. */
    ((volatile u32 *)f2)[0] = si->nr_pages * PAGE | P;
    check("drop_writable_mapping", hc(UPDATE_VA_MAPPING, f2, f2 | P, 1), 0);
    check("pin_table_mapping_monitor", hc(PIN_TABLE, f2, 1, 0), -EPERM);
    /* A directory with entries in the hole. */
    ((volatile u32 *)f3)[961] = f1 | P;
    hc(UPDATE_VA_MAPPING, f3, f3 | P, 1);
    check("pin_directory_with_hole", hc(PIN_TABLE, f3, 2, 0), -EPERM);
    /* The legitimate path still works, and its rules hold. */
    hc(UPDATE_VA_MAPPING, f4, f4 | P, 1);
    check("pin_clean_table", hc(PIN_TABLE, f4, 1, 0), 0);
    check("store_to_pinned_table", poke(f4), 14);
    check("store_to_page_directory", poke(pd), 14);
    check("map_table_itself_writable", update(f4, f4 | P | W), -EPERM);
    check("map_read_only", update(f4, f1 | P), 0);
    check("pde_to_pinned_table", update(pd + 4 * 100, f4 | P | W), 0);
    check("unpin_referenced_table", hc(UNPIN_TABLE, f4, 0, 0), -EBUSY);
    check("pde_clear", update(pd + 4 * 100, 0), 0);
    check("unpin_table", hc(UNPIN_TABLE, f4, 0, 0), 0);
    check("unpin_current_directory", hc(UNPIN_TABLE, pd, 0, 0), -EBUSY);
    check("unpin_not_pinned", hc(UNPIN_TABLE, f1, 0, 0), -EINVAL);
    check("new_baseptr_unpinned", hc(NEW_BASEPTR, f1, 0, 0), -EINVAL);
    check("new_baseptr_page_table", hc(NEW_BASEPTR, f4, 0, 0), -EINVAL);
    check("new_baseptr_same", hc(NEW_BASEPTR, pd, 0, 0), 0);
}

static void hole(u32 user_page)
{
    check("read_hole_kernel_ds", touch_hole(0x39, 0), 13);
    check("read_hole_user_ds", touch_hole(0x23, 0), 13);
    check("write_hole_user_ds", touch_hole(0x23, 1), 13);
    check("console_write_hole", hc(CONSOLE_WRITE, HOLE - 8, 16, 0), -EFAULT);
    check("console_write_unmapped", hc(CONSOLE_WRITE, UNMAPPED, 16, 0), -EFAULT);
    check("int82_from_ring3", int82_from_ring3(user_page), (0x82 << 3) | 2);
}

static int how(void)
{
    for (const char *p = si->cmd_line; *p; p++)
        if (p[0] == 'h' && p[1] == 'o' && p[2] == 'w' && p[3] == '=')
            return p[4] - '0';
    return 0;
}

void pvmain(const struct start_info *info)
{
    si = info;
    u32 f = si->first_free_pfn * PAGE;
    switch (how()) {
    case 1:
        puts("HC_IRET to ring 0 coming\n");
        __asm__ volatile("pushl $0x202\n pushl $0x08\n pushl $0\n pushl $0\n movl $9, %eax\n int $0x82");
        break;
    case 2:
        puts("ud2 without a trap table coming\n");
        __asm__ volatile("ud2");
        break;
    case 3:
        puts("HC_BLOCK without a timer coming\n");
        hc(BLOCK, 0, 0, 0);
        break;
    }
    hypercall_numbers();
    traps();
    mappings(f, f + 2 * PAGE);
    tables(f, f + PAGE, f + 2 * PAGE, f + 3 * PAGE);
    hole(f + 4 * PAGE);
    puts(failures ? "hostile: FAILED\n" : "hostile: all refused\n");
    hc(SHUTDOWN, failures, 0, 0);
}
