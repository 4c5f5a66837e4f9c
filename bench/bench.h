/*
 * bench/bench.h -- a small, generic benchmark harness for asyncpat's benches
 *
 * WHAT IT DOES
 *   A scenario (e.g. "spsc_1p1c") has several implementations (asyncpat and
 *   its peers). Each implementation is a function
 *
 *       uint64_t fn(void *ctx, uint64_t budget_ns, uint64_t *iters);
 *
 *   that runs for about budget_ns (checking the clock every few thousand
 *   iterations, or with a timer thread that raises a stop flag), stores the
 *   iterations it completed in *iters, checks its own results, and returns
 *   the nanoseconds it measured with bench_now_ns()
 *   (clock_gettime(CLOCK_MONOTONIC)) over the part that matters. Fixed-time
 *   runs keep the suite's length bounded even when an implementation
 *   collapses (a spinning peer preempted on an oversubscribed machine). On
 *   a failed self-check it calls bench_fail(), which exits with status 2: a
 *   broken harness never prints numbers.
 *
 *   bench_run_scenario():
 *     1. warms each implementation up with one short run (budget / 4);
 *     2. runs cfg->reps rounds; each round runs every implementation once,
 *        in turn, so slow drifts of a noisy machine hit all of them alike;
 *     3. keeps one sample per run (a rate or a time per op) and reports
 *        the median, the minimum and the maximum, on stdout and as TSV
 *        lines `scenario.impl<TAB>metric<TAB>value<TAB>unit`.
 *   bench_ratio() compares two implementations of one scenario (ratio of
 *   medians, measured in the same run) against an optional target: TSV
 *   lines `scenario.subject_vs_peer<TAB>speedup<TAB>r<TAB>x` and, with a
 *   target, `scenario.subject_vs_peer<TAB>target<TAB>t<TAB>x` (what
 *   bench/report.sh turns into the README's met/missed column).
 *
 * READING THE NUMBERS
 *   BENCH_RATE scenarios report Mops/s (higher is better); BENCH_TIME ones
 *   ns per op (lower is better). A ratio is always "how many times faster
 *   the subject is than the peer": > 1 means the subject wins, whatever the
 *   unit. min/max are over the runs (with fewer than 100 runs the p99 of
 *   the runs is the worst run, so it is not printed separately).
 *
 * KNOBS (environment)
 *   BENCH_REPS  runs per implementation (default 15, at most BENCH_MAX_REPS)
 *   BENCH_MS    target milliseconds per run (default per scenario)
 *   BENCH_ONLY  run only scenarios whose name contains this string
 *   BENCH_PIN   "split": pin thread k to CPU k % ncpu; "same": all on one
 *               CPU; unset: no pinning (the default)
 *
 * Header-only; needs POSIX (clock_gettime, sched_yield). No allocation
 * besides what the caller does.
 */
#ifndef ASYNCPAT_BENCH_H
#define ASYNCPAT_BENCH_H

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_REPS 64
#define BENCH_MAX_IMPLS 12

/* ---- time, failure, spinning ---- */

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A self-check failed: say what, exit 2. Never returns. */
static inline void bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: SELF-CHECK FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stdout);
    exit(2);
}

static inline void bench_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#ifndef BENCH_SPIN
#define BENCH_SPIN 64
#endif

/*
 * The one retry policy every spinning implementation uses after a failed
 * try (full, empty, "again"): BENCH_SPIN pause instructions, then
 * sched_yield() on every further failure, so that more threads than cores
 * still make progress. Reset *fails to 0 after a success.
 */
static inline void bench_backoff(unsigned *fails)
{
    if (++*fails < BENCH_SPIN)
        bench_relax();
    else
        sched_yield();
}

/* Sleep for ns nanoseconds (a timer thread's wait; uses no CPU). */
static inline void bench_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * Optional CPU pinning, from BENCH_PIN: unset or "0" = let the scheduler
 * place threads (the default), "split" = thread k on CPU k % ncpu (in the
 * order the bench numbers its threads), "same" = every thread on the first
 * allowed CPU. Linux only; elsewhere a no-op.
 */
#if defined(__linux__) && defined(_GNU_SOURCE)
#include <pthread.h>
static int bench__pin_mode; /* 0 none, 1 split, 2 same */
static cpu_set_t bench__pin_allowed;

/* Call once from main before starting threads. */
static inline void bench_pin_init(void)
{
    const char *e = getenv("BENCH_PIN");
    bench__pin_mode = e == NULL || !*e || strcmp(e, "0") == 0 ? 0
                      : strcmp(e, "same") == 0                ? 2
                                                              : 1;
    CPU_ZERO(&bench__pin_allowed);
    if (sched_getaffinity(0, sizeof bench__pin_allowed, &bench__pin_allowed) != 0)
        bench__pin_mode = 0;
}

/* Pin the calling thread as BENCH_PIN says; k numbers the threads. */
static inline void bench_pin(int k)
{
    if (bench__pin_mode == 0)
        return;
    int n = CPU_COUNT(&bench__pin_allowed), seen = 0;
    int want = bench__pin_mode == 2 ? 0 : k % (n > 0 ? n : 1);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &bench__pin_allowed) && seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            (void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
}
#else
static inline void bench_pin_init(void)
{
}
static inline void bench_pin(int k)
{
    (void)k;
}
#endif

/* A start line: threads bench_gate_arrive(), then spin (yielding) until the
 * timer thread calls bench_gate_open() once all have arrived. */
typedef struct bench_gate {
    _Atomic int arrived;
    _Atomic int open;
} bench_gate;

static inline void bench_gate_init(bench_gate *g)
{
    atomic_init(&g->arrived, 0);
    atomic_init(&g->open, 0);
}

static inline void bench_gate_wait(bench_gate *g)
{
    atomic_fetch_add_explicit(&g->arrived, 1, memory_order_acq_rel);
    while (!atomic_load_explicit(&g->open, memory_order_acquire))
        sched_yield();
}

/* Wait until n threads are at the gate, then open it; returns the start time. */
static inline uint64_t bench_gate_open(bench_gate *g, int n)
{
    while (atomic_load_explicit(&g->arrived, memory_order_acquire) < n)
        sched_yield();
    uint64_t t0 = bench_now_ns();
    atomic_store_explicit(&g->open, 1, memory_order_release);
    return t0;
}

/* ---- statistics ---- */

typedef struct bench_stats {
    double median, min, max;
    size_t n;
} bench_stats;

static int bench__cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts samples in place. */
static inline bench_stats bench_stats_of(double *samples, size_t n)
{
    bench_stats s = {0, 0, 0, n};
    if (n == 0)
        return s;
    qsort(samples, n, sizeof *samples, bench__cmp_double);
    s.min = samples[0];
    s.max = samples[n - 1];
    s.median = (n & 1) ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
    return s;
}

/* ---- scenarios ---- */

typedef uint64_t (*bench_fn)(void *ctx, uint64_t budget_ns, uint64_t *iters);

typedef enum { BENCH_RATE, BENCH_TIME } bench_kind;

typedef struct bench_impl {
    const char *name; /* the "impl" in scenario.impl */
    const char *note; /* one short phrase for the table, or NULL */
    bench_fn fn;
    void *ctx;
    /* filled in by bench_run_scenario */
    uint64_t iters; /* total over the measured runs */
    double samples[BENCH_MAX_REPS];
    size_t nsamples;
    bench_stats st;
} bench_impl;

typedef struct bench_scenario {
    const char *name;   /* e.g. "spsc_1p1c" */
    const char *what;   /* one line: threads, capacity, item type */
    bench_kind kind;
    const char *metric; /* TSV metric, e.g. "throughput", "ns_per_pair" */
    const char *unit;   /* "Mops/s" or "ns" */
    double ops_per_iter; /* ops counted per iteration (e.g. 2 hand-offs per round trip) */
    uint64_t target_ms;  /* default run length */
    bench_impl impls[BENCH_MAX_IMPLS];
    size_t nimpls;
    int ran;
} bench_scenario;

typedef struct bench_config {
    unsigned reps;       /* runs per implementation */
    uint64_t ms;         /* 0: each scenario's own target_ms */
    const char *only;    /* NULL: all scenarios */
    FILE *tsv;           /* NULL: no TSV */
} bench_config;

static inline bench_config bench_config_from_env(void)
{
    bench_config c = {15, 0, NULL, NULL};
    const char *s;
    if ((s = getenv("BENCH_REPS")) && atoi(s) > 0)
        c.reps = (unsigned)atoi(s);
    if (c.reps > BENCH_MAX_REPS)
        c.reps = BENCH_MAX_REPS;
    if ((s = getenv("BENCH_MS")) && atoi(s) > 0)
        c.ms = (uint64_t)atoi(s);
    if ((s = getenv("BENCH_ONLY")) && *s)
        c.only = s;
    return c;
}

/* Every bench binary's start: knobs from the environment, pinning, and
 * the TSV file named by argv[1] (appended to; exits 1 if it cannot be
 * opened), headed by a comment line naming the binary and the config. */
static inline bench_config bench_start(int argc, char **argv, const char *name)
{
    bench_config cfg = bench_config_from_env();
    bench_pin_init();
    if (argc > 1) {
        cfg.tsv = fopen(argv[1], "a");
        if (cfg.tsv == NULL) {
            perror(argv[1]);
            exit(1);
        }
    }
#if defined(AP_CACHELINE) && defined(AP_VERSION_MAJOR)
    if (cfg.tsv)
        fprintf(cfg.tsv, "# %s: AP_CACHELINE %d, asyncpat %d.%d.%d\n", name, AP_CACHELINE,
                AP_VERSION_MAJOR, AP_VERSION_MINOR, AP_VERSION_PATCH);
#else
    if (cfg.tsv)
        fprintf(cfg.tsv, "# %s\n", name);
#endif
    return cfg;
}

static inline void bench_add(bench_scenario *sc, const char *name, const char *note,
                             bench_fn fn, void *ctx)
{
    if (sc->nimpls >= BENCH_MAX_IMPLS)
        bench_fail("too many implementations in %s", sc->name);
    bench_impl *im = &sc->impls[sc->nimpls++];
    memset(im, 0, sizeof *im);
    im->name = name;
    im->note = note;
    im->fn = fn;
    im->ctx = ctx;
}

/* One run's sample in the scenario's unit. */
static inline double bench__sample(const bench_scenario *sc, uint64_t iters, uint64_t ns)
{
    double ops = (double)iters * sc->ops_per_iter;
    if (ns == 0)
        ns = 1;
    return sc->kind == BENCH_RATE ? ops * 1e3 / (double)ns /* Mops/s */
                                  : (double)ns / ops;       /* ns/op */
}

static inline int bench_selected(const bench_config *cfg, const char *name)
{
    return cfg->only == NULL || strstr(name, cfg->only) != NULL;
}

static inline void bench_run_scenario(const bench_config *cfg, bench_scenario *sc)
{
    if (!bench_selected(cfg, sc->name) || sc->nimpls == 0)
        return;
    uint64_t target_ns = (cfg->ms ? cfg->ms : sc->target_ms) * 1000000u;
    printf("\n%s  -- %s\n", sc->name, sc->what);
    printf("   %s, %s (%s is better), %u runs of ~%llu ms each\n", sc->metric, sc->unit,
           sc->kind == BENCH_RATE ? "higher" : "lower", cfg->reps,
           (unsigned long long)(target_ns / 1000000u));
    fflush(stdout);
    for (size_t i = 0; i < sc->nimpls; i++) { /* warm-up */
        uint64_t it = 0;
        (void)sc->impls[i].fn(sc->impls[i].ctx, target_ns / 4, &it);
    }
    for (unsigned r = 0; r < cfg->reps; r++)
        for (size_t i = 0; i < sc->nimpls; i++) {
            bench_impl *im = &sc->impls[i];
            uint64_t it = 0, ns = im->fn(im->ctx, target_ns, &it);
            if (it == 0)
                bench_fail("%s.%s: a run completed no iteration", sc->name, im->name);
            im->iters += it;
            im->samples[im->nsamples++] = bench__sample(sc, it, ns);
        }
    if (cfg->tsv) {
        fprintf(cfg->tsv, "# %s: %s\n", sc->name, sc->what);
        for (size_t i = 0; i < sc->nimpls; i++)
            fprintf(cfg->tsv, "# %s.%s: %u runs, %llu iterations in all%s%s\n", sc->name,
                    sc->impls[i].name, cfg->reps, (unsigned long long)sc->impls[i].iters,
                    sc->impls[i].note ? "; " : "", sc->impls[i].note ? sc->impls[i].note : "");
    }
    printf("   %-22s %11s %11s %11s  %s\n", "impl", "median", "min", "max", "");
    for (size_t i = 0; i < sc->nimpls; i++) {
        bench_impl *im = &sc->impls[i];
        double copy[BENCH_MAX_REPS];
        memcpy(copy, im->samples, im->nsamples * sizeof(double));
        im->st = bench_stats_of(copy, im->nsamples);
        printf("   %-22s %11.2f %11.2f %11.2f  %s\n", im->name, im->st.median,
               im->st.min, im->st.max, im->note ? im->note : "");
        if (cfg->tsv) {
            fprintf(cfg->tsv, "%s.%s\t%s\t%.3f\t%s\n", sc->name, im->name, sc->metric,
                    im->st.median, sc->unit);
            fprintf(cfg->tsv, "%s.%s\t%s_min\t%.3f\t%s\n", sc->name, im->name,
                    sc->metric, im->st.min, sc->unit);
            fprintf(cfg->tsv, "%s.%s\t%s_max\t%.3f\t%s\n", sc->name, im->name,
                    sc->metric, im->st.max, sc->unit);
        }
    }
    sc->ran = 1;
    fflush(stdout);
}

static inline const bench_impl *bench_find(const bench_scenario *sc, const char *impl)
{
    for (size_t i = 0; i < sc->nimpls; i++)
        if (strcmp(sc->impls[i].name, impl) == 0)
            return &sc->impls[i];
    return NULL;
}

/* Ratios are collected so that a summary can be printed at the end. */
typedef struct bench_ratio_rec {
    const char *scenario, *subject, *peer;
    double ratio, target; /* target 0: informational */
} bench_ratio_rec;

#define BENCH_MAX_RATIOS 64
static bench_ratio_rec bench__ratios[BENCH_MAX_RATIOS];
static size_t bench__nratios;

/*
 * bench_ratio - how many times faster @subject is than @peer in @sc
 * (ratio of medians from the same run); > 1 means @subject wins. With a
 * target > 0 the line says whether the target is met. Silently skipped
 * when either implementation is absent (a peer not installed).
 */
static inline void bench_ratio(const bench_config *cfg, const bench_scenario *sc,
                               const char *subject, const char *peer, double target)
{
    const bench_impl *a = bench_find(sc, subject), *b = bench_find(sc, peer);
    if (!sc->ran || a == NULL || b == NULL || a->st.n == 0 || b->st.n == 0)
        return;
    double r = sc->kind == BENCH_RATE ? a->st.median / b->st.median
                                      : b->st.median / a->st.median;
    printf("   ratio %-14s vs %-22s %7.2fx", subject, peer, r);
    if (target > 0)
        printf("   target >= %.1fx: %s", target, r >= target ? "met" : "MISSED");
    putchar('\n');
    if (cfg->tsv)
        fprintf(cfg->tsv, "%s.%s_vs_%s\tspeedup\t%.3f\tx\n", sc->name, subject, peer, r);
    if (cfg->tsv && target > 0) /* the target: met when speedup >= target */
        fprintf(cfg->tsv, "%s.%s_vs_%s\ttarget\t%.3f\tx\n", sc->name, subject, peer, target);
    if (bench__nratios < BENCH_MAX_RATIOS)
        bench__ratios[bench__nratios++] =
            (bench_ratio_rec){sc->name, subject, peer, r, target};
}

/* Print every ratio that had a target; returns how many were missed. */
static inline int bench_summary(void)
{
    int missed = 0, any = 0;
    for (size_t i = 0; i < bench__nratios; i++) {
        const bench_ratio_rec *r = &bench__ratios[i];
        if (r->target <= 0)
            continue;
        if (!any++)
            printf("\ntargets (ratio of medians, same run; > 1 = asyncpat faster)\n");
        int ok = r->ratio >= r->target;
        missed += !ok;
        printf("   %-14s %-10s vs %-22s %7.2fx  (target >= %.1fx)  %s\n", r->scenario,
               r->subject, r->peer, r->ratio, r->target, ok ? "met" : "MISSED");
    }
    return missed;
}

#endif /* ASYNCPAT_BENCH_H */
