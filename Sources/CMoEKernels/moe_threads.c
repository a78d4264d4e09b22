#define _GNU_SOURCE
#include "moe_threads.h"
#include "internal.h"

#include <stdio.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_threads = 0; /* 0 = not yet set: use the OpenMP default */

/* Load-aware teams (moe_threads.h). g_team: the team size the machine's load allows now
 * (≤ g_threads); g_generation changes whenever the count or the team does, so that each
 * thread that starts parallel regions re-applies its OpenMP thread count (a per-thread
 * setting) once. */
static int g_adaptive = -1; /* -1 = not decided yet (SPARSEMOE_ADAPTIVE_THREADS, default on) */
static _Atomic int g_team = 0;
static _Atomic int g_team_limit = 0; /* tests: 0 = no limit */
static _Atomic int g_generation = 1;
static _Thread_local int t_generation = 0;

/* The sampler: at most every MOE_LOAD_SAMPLE_NS, one thread reads the machine's busy CPU time
 * (/proc/stat) and this process's own (CLOCK_PROCESS_CPUTIME_ID); the cores the other processes
 * kept busy over the last MOE_LOAD_WINDOW samples decide the team. */
#define MOE_LOAD_SAMPLE_NS 50000000LL
#define MOE_LOAD_WINDOW 6
#define MOE_LOAD_MIN_SPAN_NS 100000000LL
typedef struct { long long wall_ns, machine_busy_ns, own_ns; } load_sample;
static _Atomic long long g_next_sample_ns = 0;
static atomic_flag g_sampling = ATOMIC_FLAG_INIT;
static load_sample g_window[MOE_LOAD_WINDOW];
static int g_window_fill = 0, g_window_next = 0;
static _Atomic int g_others_x100 = 0;
static _Atomic int g_most_threads = 0; /* the largest count ever set: the pool's size, for park */

static void bump_generation(void) { atomic_fetch_add(&g_generation, 1); }

void moe_set_num_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
    atomic_store(&g_team, n);
    if (n > atomic_load(&g_most_threads)) atomic_store(&g_most_threads, n);
    g_window_fill = g_window_next = 0;
    atomic_store(&g_others_x100, 0);
    bump_generation();
    omp_set_num_threads(n);
    /* BLAS is always single-threaded; moe_sgemm parallelises it with OpenMP. */
    moe_blas_core_init();
    openblas_set_num_threads(1);
}

int moe_adaptive_threads(void) {
    if (g_adaptive < 0) {
        const char *env = getenv("SPARSEMOE_ADAPTIVE_THREADS");
        g_adaptive = !(env && (strcmp(env, "0") == 0 || strcmp(env, "false") == 0 || strcmp(env, "off") == 0));
    }
    return g_adaptive;
}

void moe_set_adaptive_threads(int on) {
    g_adaptive = on != 0;
    if (g_threads > 0) atomic_store(&g_team, g_threads);
    g_window_fill = g_window_next = 0;
    atomic_store(&g_others_x100, 0);
    bump_generation();
}

int moe_threads_team_for_load(int requested, int cpus, int others_x100) {
    if (requested <= 1) return 1;
    /* Count a core as taken only when the others kept it busy ≥ 90 % of the time: a neighbour
     * that runs part of the time (a load generator waiting on our output) costs a team of 2 far
     * less than halving the team does; a spinning one costs it 5×. */
    const int others = (others_x100 + 10) / 100;
    int free_cores = cpus - others;
    if (free_cores < 1) free_cores = 1;
    return requested < free_cores ? requested : free_cores;
}

/* Nanoseconds the machine's CPUs have been busy (user, nice, system, irq, softirq, steal of the
 * "cpu" line of /proc/stat), or -1. */
static long long machine_busy_ns(void) {
    char buf[512];
    int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    unsigned long long v[8] = {0};
    if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 8)
        return -1;
    static long ticks_per_second = 0;
    if (ticks_per_second <= 0) ticks_per_second = sysconf(_SC_CLK_TCK);
    if (ticks_per_second <= 0) return -1;
    const unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (long long)(busy * (1000000000ULL / (unsigned long long)ticks_per_second));
}

static long long clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sample_load(void) {
    const long long busy = machine_busy_ns();
    if (busy < 0) return; /* no /proc: keep the full team */
    const load_sample now = {clock_ns(CLOCK_MONOTONIC), busy, clock_ns(CLOCK_PROCESS_CPUTIME_ID)};
    const int oldest = g_window_fill < MOE_LOAD_WINDOW ? 0 : g_window_next;
    const load_sample then = g_window[oldest];
    const int have = g_window_fill;
    g_window[g_window_next] = now;
    g_window_next = (g_window_next + 1) % MOE_LOAD_WINDOW;
    if (g_window_fill < MOE_LOAD_WINDOW) g_window_fill++;
    if (have == 0 || now.wall_ns - then.wall_ns < MOE_LOAD_MIN_SPAN_NS) return;
    /* Cores the others used on average over the span: machine busy time minus ours, per second. */
    double others = (double)((now.machine_busy_ns - then.machine_busy_ns) - (now.own_ns - then.own_ns))
                    / (double)(now.wall_ns - then.wall_ns);
    if (others < 0) others = 0;
    const int others_x100 = (int)(others * 100 + 0.5);
    atomic_store(&g_others_x100, others_x100);
    const int team = moe_threads_team_for_load(g_threads, omp_get_num_procs(), others_x100);
    if (team != atomic_load(&g_team)) {
        atomic_store(&g_team, team);
        bump_generation();
    }
}

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC_COARSE); }

int moe_threads_current(void) {
    if (g_threads == 0) {
        /* First use: adopt the OpenMP default for both runtimes. */
        moe_set_num_threads(omp_get_max_threads());
    }
    if (g_threads > 1 && moe_adaptive_threads() && omp_get_level() == 0) {
        const long long now = now_ns();
        if (now >= atomic_load_explicit(&g_next_sample_ns, memory_order_relaxed)
            && !atomic_flag_test_and_set(&g_sampling)) {
            atomic_store(&g_next_sample_ns, now + MOE_LOAD_SAMPLE_NS);
            sample_load();
            atomic_flag_clear(&g_sampling);
        }
    }
    const int generation = atomic_load_explicit(&g_generation, memory_order_relaxed);
    if (t_generation != generation) {
        t_generation = generation;
        omp_set_num_threads(moe_team(g_threads));
    }
    return g_threads;
}

int moe_team(int n) {
    int team = moe_adaptive_threads() ? atomic_load_explicit(&g_team, memory_order_relaxed) : g_threads;
    const int limit = atomic_load_explicit(&g_team_limit, memory_order_relaxed);
    if (limit > 0 && team > limit) team = limit;
    if (team < 1) team = 1;
    return n < team ? n : team;
}

int moe_in_region(void) { return omp_get_level() > 0; }

int moe_get_num_threads(void) { return moe_threads_current(); }

void moe_threads_set_team_limit(int n) {
    atomic_store(&g_team_limit, n > 0 ? n : 0);
    bump_generation();
}

int moe_threads_team_limit(void) { return atomic_load(&g_team_limit); }

int moe_threads_others_cores_x100(void) { return atomic_load(&g_others_x100); }

int moe_threads_team_probe(void) {
    int team = 1;
    const int nt = moe_team(moe_threads_current());
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp master
        team = omp_get_num_threads();
    }
    return team;
}

int moe_available_threads(void) { return omp_get_num_procs(); }

void moe_threads_park(void) {
    if (omp_in_parallel()) return;
    /* OpenMP: one region in which every thread sets its own block time to 0, so that each
     * worker goes to sleep as soon as the region ends (the block time is a per-thread setting:
     * set on the calling thread alone it did not stop the spinning worker here, libomp 14).
     * The next region copies the caller's block time, restored here, to the workers again.
     * The region is as wide as the widest team so far: a worker of an earlier, larger team
     * spins as well. */
    const int blocktime = kmp_get_blocktime();
    int pool = moe_threads_current();
    if (atomic_load(&g_most_threads) > pool) pool = atomic_load(&g_most_threads);
#pragma omp parallel num_threads(pool)
    kmp_set_blocktime(0);
    kmp_set_blocktime(blocktime);
    /* OpenBLAS: its workers spin (sched_yield) for 2^28 cycles after each threaded call and
     * cannot be told to sleep; end them instead. */
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}
