/* OpenBLAS's kernel choice (moe_blas_core and moe_blas_core_init, declared in moe_threads.h).
 * A DYNAMIC_ARCH OpenBLAS picks its kernels from the CPU model when it loads; a release that
 * predates the CPU does not know the model and falls back to "Prescott", plain SSE3. Debian
 * 12's OpenBLAS 0.3.21 does this on Intel Xeons of 2023 on (Sapphire and Emerald Rapids):
 * sgemm ran at 33–56 GFLOP/s on 2 threads where its SkylakeX kernels give 165–184
 * (Benchmarks/gemm/run.sh bf16 with OPENBLAS_CORETYPE unset and =SkylakeX). Before the first
 * GEMM, when the user has not chosen with OPENBLAS_CORETYPE and OpenBLAS reports one of its
 * generic fallbacks, this picks the kernels the CPU's features support (AVX-512 F/BW/VL/DQ/CD:
 * SkylakeX; AVX2 + FMA: Haswell) through OpenBLAS's own re-initialisation, which reads
 * OPENBLAS_CORETYPE exactly as at load time. */
#define _GNU_SOURCE
#include "internal.h"
#include "moe_threads.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS (DYNAMIC_ARCH builds export these; weak, so another BLAS simply has none). */
extern char *openblas_get_corename(void) __attribute__((weak));
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_core[64] = "unknown";
static int g_changed = 0;

static const char *better_core(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

static void choose(void) {
    if (!openblas_get_corename) return;
    const char *name = openblas_get_corename();
    static const char *generic[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Katmai", "Coppermine",
                                    "Northwood", "Banias", NULL};
    int is_generic = 0;
    for (int i = 0; generic[i]; i++) is_generic |= name && strcmp(name, generic[i]) == 0;
    const char *core = better_core();
    if (is_generic && core && !getenv("OPENBLAS_CORETYPE") && gotoblas_dynamic_init && gotoblas_dynamic_quit) {
        setenv("OPENBLAS_CORETYPE", core, 0);
        gotoblas_dynamic_quit();
        gotoblas_dynamic_init();
        g_changed = 1;
        name = openblas_get_corename();
    }
    strncpy(g_core, name ? name : "unknown", sizeof g_core - 1);
}

void moe_blas_core_init(void) { pthread_once(&g_once, choose); }

const char *moe_blas_core(int *changed) {
    moe_blas_core_init();
    if (changed) *changed = g_changed;
    return g_core;
}
