/* ctrbench: what sharing the kernel costs and what a contained process can see.
 *
 *   ctrbench nanobench ITERS   four Linux-process nanobenchmarks, each a loop of ITERS
 *                              (after a warm-up), timed with RDTSC and CLOCK_MONOTONIC:
 *                                getpid    a system call round trip
 *                                pgfault   first touch of a fresh anonymous page
 *                                divzero   #DE -> SIGFPE -> handler -> back (RIP skips idiv)
 *                                mprotect  one page toggled read-only / read-write
 *                              prints "nanobench NAME iters=N cycles_per_iter=C ns_per_iter=T"
 *   ctrbench probe             what this process can observe about its confinement,
 *                              one "probe NAME value=... ok|VISIBLE" line each, then
 *                              "container visible: yes|no"
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void report(const char *name, long iters, uint64_t cycles, double ns) {
    printf("nanobench %s iters=%ld cycles_per_iter=%llu ns_per_iter=%.1f\n", name, iters,
           (unsigned long long)(cycles / iters), ns / iters);
}

static void bench_getpid(long iters) {
    for (long i = 0; i < 1000; i++) syscall(SYS_getpid);
    double t0 = now_ns();
    uint64_t c0 = rdtsc();
    for (long i = 0; i < iters; i++) syscall(SYS_getpid);
    uint64_t c1 = rdtsc();
    report("getpid", iters, c1 - c0, now_ns() - t0);
}

static void bench_pgfault(long iters) {
    /* fresh mappings in batches, so a long run does not need gigabytes; only the touches
       are timed */
    enum { BATCH = 4096 };
    long page = sysconf(_SC_PAGESIZE);
    uint64_t cycles = 0;
    double ns = 0;
    for (long done = 0; done < iters; done += BATCH) {
        long n = iters - done < BATCH ? iters - done : BATCH;
        char *mem = mmap(NULL, page * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) { perror("mmap"); exit(1); }
        double t0 = now_ns();
        uint64_t c0 = rdtsc();
        for (long i = 0; i < n; i++) ((volatile char *)mem)[i * page] = 1;
        cycles += rdtsc() - c0;
        ns += now_ns() - t0;
        munmap(mem, page * n);
    }
    report("pgfault", iters, cycles, ns);
}

static void on_sigfpe(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)info;
    ((ucontext_t *)context)->uc_mcontext.gregs[REG_RIP] += 2;   /* idiv %ecx: f7 f9 */
}

static void divide_by_zero(void) {
    __asm__ volatile("xor %%ecx, %%ecx\n\tmov $1, %%eax\n\tcltd\n\t.byte 0xf7, 0xf9"
                     ::: "eax", "ecx", "edx");
}

static void bench_divzero(long iters) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigfpe;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGFPE, &sa, NULL);
    for (long i = 0; i < 100; i++) divide_by_zero();
    double t0 = now_ns();
    uint64_t c0 = rdtsc();
    for (long i = 0; i < iters; i++) divide_by_zero();
    uint64_t c1 = rdtsc();
    report("divzero", iters, c1 - c0, now_ns() - t0);
}

static void bench_mprotect(long iters) {
    long page = sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); exit(1); }
    mem[0] = 1;
    double t0 = now_ns();
    uint64_t c0 = rdtsc();
    for (long i = 0; i < iters; i++)
        mprotect(mem, page, (i & 1) ? PROT_READ | PROT_WRITE : PROT_READ);
    uint64_t c1 = rdtsc();
    report("mprotect", iters, c1 - c0, now_ns() - t0);
    munmap(mem, page);
}

/* ---- probe ---- */

static int visible;

static void probe(const char *name, const char *value, int is_visible) {
    printf("probe %s value=%s %s\n", name, value[0] ? value : "-", is_visible ? "VISIBLE" : "ok");
    visible |= is_visible;
}

/* The first line of a file (or its line starting with prefix), spaces made '_'. */
static void read_line(const char *path, const char *prefix, char *out, size_t size) {
    char line[512];
    FILE *f = fopen(path, "r");
    out[0] = 0;
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (prefix && strncmp(line, prefix, strlen(prefix)) != 0) continue;
        line[strcspn(line, "\n")] = 0;
        snprintf(out, size, "%s", prefix ? line + strlen(prefix) : line);
        break;
    }
    fclose(f);
    for (char *p = out; *p; p++) if (*p == ' ' || *p == '\t') *p = '_';
}

static void run_probe(void) {
    char value[512], extra[256];
    long pid = getpid(), ppid = getppid();
    snprintf(value, sizeof value, "pid=%ld,ppid=%ld", pid, ppid);
    probe("pid_namespace", value, pid == 1 || ppid == 0);          /* PID 1 without a kernel parent */

    read_line("/proc/1/sched", NULL, value, sizeof value);          /* "init_(HOSTPID,_#threads..." */
    probe("proc_1_sched", value, 0);

    read_line("/proc/self/cgroup", "0::", value, sizeof value);
    if (!value[0]) read_line("/proc/self/cgroup", NULL, value, sizeof value);
    probe("cgroup_path", value, 0);

    gethostname(extra, sizeof extra);
    probe("hostname", extra, 0);

    /* the root mount: a bind of a subdirectory (root field not "/") or an overlay */
    FILE *f = fopen("/proc/self/mountinfo", "r");
    int root_bound = 0, masks = 0;
    char line[1024];
    value[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        char root[256], point[256];
        if (sscanf(line, "%*s %*s %*s %255s %255s", root, point) != 2) continue;
        if (strcmp(point, "/") == 0) {
            root_bound = strcmp(root, "/") != 0 || strstr(line, " - overlay ") != NULL;
            snprintf(value, sizeof value, "root=%s", root);
        }
        if (strncmp(point, "/proc/", 6) == 0) masks++;              /* masked / read-only /proc */
    }
    if (f) fclose(f);
    probe("mountinfo_root", value, root_bound);
    snprintf(value, sizeof value, "%d", masks);
    probe("mounts_over_proc", value, masks > 0);

    read_line("/proc/self/status", "CapBnd:", value, sizeof value);
    char *cap = value;
    while (*cap == '_') cap++;
    unsigned long long bounding = strtoull(cap, NULL, 16);
    read_line("/proc/sys/kernel/cap_last_cap", NULL, extra, sizeof extra);
    int last = atoi(extra);
    unsigned long long full = last >= 63 ? ~0ULL : (1ULL << (last + 1)) - 1;
    probe("capability_bounding_set", cap, last > 0 && bounding != full);

    /* identity map "0 0 4294967295" outside a user namespace */
    unsigned long long inside = 0, outside = 0, count = 0;
    f = fopen("/proc/self/uid_map", "r");
    if (f && fscanf(f, "%llu %llu %llu", &inside, &outside, &count) == 3) {
        snprintf(value, sizeof value, "%llu:%llu:%llu", inside, outside, count);
        probe("uid_map", value, !(inside == 0 && outside == 0 && count == 4294967295ULL));
    }
    if (f) fclose(f);

    long long secs = 0, nanos = 0;
    f = fopen("/proc/self/timens_offsets", "r");
    if (f && fscanf(f, "%*s %lld %lld", &secs, &nanos) == 2) {
        snprintf(value, sizeof value, "monotonic:%lld.%09lld", secs, nanos);
        probe("time_offsets", value, secs != 0 || nanos != 0);
    }
    if (f) fclose(f);

    read_line("/proc/self/status", "Seccomp:", value, sizeof value);
    char *s = value;
    while (*s == '_') s++;
    probe("seccomp_mode", s, atoi(s) != 0);

    read_line("/proc/self/status", "NoNewPrivs:", value, sizeof value);
    char *n = value;
    while (*n == '_') n++;
    probe("no_new_privs", n, atoi(n) != 0);

    int engine_file = access("/run/.containerenv", F_OK) == 0 || access("/.dockerenv", F_OK) == 0;
    probe("engine_marker_file", engine_file ? "present" : "absent", engine_file);

    printf("container visible: %s\n", visible ? "yes" : "no");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "nanobench") == 0) {
        long iters = atol(argv[2]);
        if (iters < 10) { fprintf(stderr, "ctrbench: ITERS must be at least 10\n"); return 2; }
        bench_getpid(iters);
        bench_pgfault(iters);
        bench_divzero(iters);
        bench_mprotect(iters);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "probe") == 0) {
        run_probe();
        return 0;
    }
    fprintf(stderr, "usage: ctrbench nanobench ITERS | ctrbench probe\n");
    return 2;
}
