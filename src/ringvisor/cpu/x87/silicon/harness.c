/* Runs x87 code on the host's own FPU, for the difftest (silicon/runner.py).
 *
 * Input on stdin, per case: u32 code length, the code (x86-64 machine code that
 * ends with RET), then DATA_SIZE bytes for the data page. The code and data
 * pages live at fixed addresses so that the FPU's instruction and data pointers
 * have the same values in the soft FPU's run. Output per case: u32 status
 * (0 returned, 1 SIGFPE, 2 another fault), u32 signal number, u64 faulting RIP,
 * the data page as the code left it, and the 512-byte FXSAVE image the kernel
 * delivered with SIGFPE (zero otherwise).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define CODE_ADDR 0x20000000UL
#define DATA_ADDR 0x30000000UL
#define CODE_SIZE 65536
#define DATA_SIZE 1024

static sigjmp_buf escape;
static volatile uint64_t fault_rip;
static volatile int fault_signal;
static unsigned char fault_fx[512];

static void on_fault(int sig, siginfo_t *info, void *ctx_)
{
    ucontext_t *ctx = ctx_;
    (void)info;
    fault_signal = sig;
    fault_rip = ctx->uc_mcontext.gregs[REG_RIP];
    if (ctx->uc_mcontext.fpregs)
        memcpy(fault_fx, ctx->uc_mcontext.fpregs, sizeof fault_fx);
    siglongjmp(escape, 1);
}

static int read_all(void *buf, size_t n)
{
    return fread(buf, 1, n, stdin) == n;
}

int main(void)
{
    unsigned char *code = mmap((void *)CODE_ADDR, CODE_SIZE,
                               PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    unsigned char *data = mmap((void *)DATA_ADDR, 4096, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (code == MAP_FAILED || data == MAP_FAILED) {
        perror("x87 harness: mmap");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);

    uint32_t len;
    while (read_all(&len, 4)) {
        if (len > CODE_SIZE || !read_all(code, len) || !read_all(data, DATA_SIZE)) {
            fprintf(stderr, "x87 harness: truncated case\n");
            return 1;
        }
        uint32_t status = 0, sig = 0;
        uint64_t rip = 0;
        memset(fault_fx, 0, sizeof fault_fx);
        if (sigsetjmp(escape, 1) == 0) {
            ((void (*)(void))code)();
        } else {
            sig = fault_signal;
            rip = fault_rip;
            status = sig == SIGFPE ? 1 : 2;
        }
        fwrite(&status, 4, 1, stdout);
        fwrite(&sig, 4, 1, stdout);
        fwrite(&rip, 8, 1, stdout);
        fwrite(data, 1, DATA_SIZE, stdout);
        fwrite(fault_fx, 1, sizeof fault_fx, stdout);
    }
    fflush(stdout);
    return 0;
}
