// Run a command as if the CPU had AVX2 but no AVX-512, VNNI or AMX, at native speed, to measure
// int8 and fp32 prediction on the kernels such a CPU gets (docs/int8.md, "CPUs without VNNI"):
//
//   gcc -O2 -shared -fPIC -o benchmarks/cpuid_avx2.so benchmarks/cpuid_avx2.c
//   LD_PRELOAD=$PWD/benchmarks/cpuid_avx2.so python benchmarks/bench_predict.py ...
//
// The CPUID instruction is made to fault (Linux's ARCH_SET_CPUID, where the CPU or hypervisor offers
// CPUID faulting: `cpuid_fault` in /proc/cpuinfo) and is answered with the CPU's own leaves minus
// those features, so libraries that dispatch on CPUID (ONNX Runtime's MLAS, oneDNN, PyTorch) take
// their AVX2 paths; bench_predict.py's "kernels" line shows what they took. It changes code paths,
// not the chip: caches, clocks and the cores stay this machine's. /proc/cpuinfo is not masked, and
// glibc picks its string functions before the shim loads. The setting is inherited by threads and
// forks and reset by exec, where LD_PRELOAD installs it again.
#define _GNU_SOURCE
#include <signal.h>
#include <ucontext.h>
#include <asm/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cpuid.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>

static volatile long trapped = 0;

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = (ucontext_t *)ctx;
    unsigned char *ip = (unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) {
        unsigned leaf = (unsigned)uc->uc_mcontext.gregs[REG_RAX];
        unsigned sub = (unsigned)uc->uc_mcontext.gregs[REG_RCX];
        unsigned a, b, c, d;
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        __cpuid_count(leaf, sub, a, b, c, d);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        if (leaf == 7 && sub == 0) {
            b &= ~((1u<<16)|(1u<<17)|(1u<<21)|(1u<<26)|(1u<<27)|(1u<<28)|(1u<<30)|(1u<<31));
            c &= ~((1u<<1)|(1u<<6)|(1u<<11)|(1u<<12)|(1u<<14));
            d &= ~((1u<<2)|(1u<<3)|(1u<<8)|(1u<<22)|(1u<<23)|(1u<<24)|(1u<<25));
        } else if (leaf == 7 && sub == 1) {
            a &= ~((1u<<4)|(1u<<5)|(1u<<23));   // AVX-VNNI, AVX512_BF16, AVX-IFMA
            d &= ~((1u<<4)|(1u<<5)|(1u<<10));   // AVX-VNNI-INT8, AVX-NE-CONVERT, AVX-VNNI-INT16
        } else if (leaf == 0xd && sub == 0) {
            a &= ~(0xe0u | (3u<<17));         // XSAVE: no opmask/ZMM or AMX tile state
        }
        uc->uc_mcontext.gregs[REG_RAX] = a; uc->uc_mcontext.gregs[REG_RBX] = b;
        uc->uc_mcontext.gregs[REG_RCX] = c; uc->uc_mcontext.gregs[REG_RDX] = d;
        uc->uc_mcontext.gregs[REG_RIP] += 2;
        trapped++;
        return;
    }
    signal(SIGSEGV, SIG_DFL);  // a real fault: let it kill the process as it would have
}

static void report(void) { if (getenv("CPUID_SHIM_VERBOSE")) fprintf(stderr, "cpuid shim: %ld CPUID calls answered\n", trapped); }

__attribute__((constructor)) static void install(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) { perror("cpuid shim: ARCH_SET_CPUID"); exit(97); }
    atexit(report);
}
