/*
 * tests/stress/stress.h -- shared machinery of the ThreadSanitizer stress
 * programs in tests/stress/. Only those programs include it.
 *
 * Why standalone programs: Criterion aborts under TSan (its issue #274), so
 * each stress program has its own main(), built by tests/run.sh (stage
 * `tsan`) with gcc and clang, -fsanitize=thread -DAP_TEST_YIELD_RANDOM, and
 * run with TSAN_OPTIONS="halt_on_error=1 exitcode=66". Exit 0 means pass.
 *
 * What it gives a program:
 *   - stress_init(): reads the environment, prints the seed, starts the
 *     watchdog thread;
 *       AP_TEST_SEED     seed of every random choice the tests make
 *                        (default: time-based); printed at start and on
 *                        every failure. Thread scheduling is not
 *                        reproducible, so a seed replays the test's choices
 *                        (batch sizes, deadlines, pauses), not the run.
 *       STRESS_SCALE     multiplies iteration counts (default 1; may be
 *                        fractional, e.g. 0.2 for a smoke run, 20 for soak)
 *       STRESS_TIMEOUT   seconds one scenario may take before the watchdog
 *                        declares it hung (default 60, times the scale when
 *                        the scale is above 1)
 *       STRESS_FILTER    run only scenarios whose name contains this string
 *   - stress_begin()/stress_end(): name a scenario and arm/disarm the
 *     watchdog for it. A scenario that hangs (a lost wakeup, a consumer
 *     that never sees an item) makes the watchdog print the seed, the
 *     scenario and the scenario's own diagnostics, then exit non-zero: a
 *     hang fails, it never blocks the test run.
 *   - CHECK(cond, fmt, ...): on failure prints seed + scenario + location +
 *     details and exits non-zero, from any thread.
 *   - a per-thread seedable RNG and jitter, and the item ledger: items are
 *     (producer << 40 | seq) and every item is accounted for individually
 *     (seen exactly once, never duplicated, never invented), and per
 *     consumer each producer's sequence numbers must strictly increase.
 *
 * Test code never adds happens-before edges between queue users while a
 * scenario runs (its shared counters are relaxed atomics), so every edge
 * that TSan sees between a push and the pop of its element comes from the
 * library itself; a missing release/acquire in a queue is a TSan report.
 */
#ifndef ASYNCPAT_TESTS_STRESS_H
#define ASYNCPAT_TESTS_STRESS_H

#include "asyncpat.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define STRESS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define STRESS_NORETURN __attribute__((noreturn))
#define STRESS_UNUSED __attribute__((unused))
#else
#define STRESS_PRINTF(f, a)
#define STRESS_NORETURN
#define STRESS_UNUSED
#endif

/* ------------------------------------------------------------------ */
/* random numbers: splitmix64 to seed, xorshift64* per thread            */

typedef struct stress_rng {
    uint64_t s;
} stress_rng;

static uint64_t stress_mix64(uint64_t x)
{
    x += UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

static STRESS_UNUSED void stress_rng_init(stress_rng *r, uint64_t a, uint64_t b)
{
    r->s = stress_mix64(a ^ stress_mix64(b));
    if (r->s == 0)
        r->s = 1;
}

static STRESS_UNUSED uint64_t stress_rand(stress_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* uniform-ish in [0, n); n > 0 */
static STRESS_UNUSED uint32_t stress_below(stress_rng *r, uint32_t n)
{
    return (uint32_t)((stress_rand(r) >> 32) % n);
}

/* ------------------------------------------------------------------ */
/* global state                                                         */

static struct {
    const char *prog;
    uint64_t seed;
    double scale;
    unsigned timeout_s;
    const char *filter;
    pthread_mutex_t mu; /* guards the fields below */
    char scenario[256];
    unsigned scenario_id; /* counts every scenario begun, also filtered ones */
    unsigned passed, skipped;
    uint64_t deadline_ns; /* 0: no scenario armed */
    uint64_t started_ns;
    uint64_t started_cpu_ns;
    void (*diag)(void *arg);
    void *diag_arg;
} stress_g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t stress_now_ns(void)
{
    return ap_now_ns();
}

static uint64_t stress_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * AP_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static STRESS_UNUSED void stress_sleep_us(unsigned us)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(us / 1000000u);
    ts.tv_nsec = (long)(us % 1000000u) * 1000L;
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* End the process now with @code. exit_group directly, not _exit: under
 * TSan, _exit runs the sanitizer's exit checks, which then report the
 * still-running workers as a "thread leak" on top of the real failure. */
static STRESS_NORETURN void stress_exit_now(int code)
{
    fflush(stdout);
    fflush(stderr);
#if defined(__linux__) && defined(SYS_exit_group)
    syscall(SYS_exit_group, code);
#endif
    _exit(code);
}

/* Print the failure header: program, seed, scenario. Caller holds mu. */
static void stress_print_context_locked(const char *what)
{
    fflush(stdout);
    fprintf(stderr,
            "\n%s: %s\n  AP_TEST_SEED=%" PRIu64 " STRESS_SCALE=%g\n"
            "  scenario #%u: %s\n",
            stress_g.prog ? stress_g.prog : "stress", what, stress_g.seed,
            stress_g.scale, stress_g.scenario_id,
            stress_g.scenario[0] ? stress_g.scenario : "(none)");
}

static STRESS_NORETURN STRESS_PRINTF(4, 5) void
stress_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&stress_g.mu);
    stress_print_context_locked("CHECK FAILED");
    fprintf(stderr, "  at %s:%d: %s\n  ", file, line, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  rerun: AP_TEST_SEED=%" PRIu64 " STRESS_FILTER='%s' %s\n",
            stress_g.seed, stress_g.scenario, stress_g.prog ? stress_g.prog : "");
    stress_exit_now(1);
}

/* CHECK(cond, fmt, ...): fail the whole program, from any thread. */
#define CHECK(cond, ...)                                              \
    do {                                                              \
        if (!(cond))                                                  \
            stress_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);      \
    } while (0)

/* ------------------------------------------------------------------ */
/* watchdog                                                             */

static void *stress_watchdog_main(void *arg)
{
    (void)arg;
    for (;;) {
        stress_sleep_us(100000);
        pthread_mutex_lock(&stress_g.mu);
        if (stress_g.deadline_ns != 0 && stress_now_ns() > stress_g.deadline_ns) {
            char what[96];
            snprintf(what, sizeof what, "WATCHDOG: scenario still running after %u s (hang?)",
                     stress_g.timeout_s);
            stress_print_context_locked(what);
            if (stress_g.diag) {
                fprintf(stderr, "  state when it fired:\n");
                stress_g.diag(stress_g.diag_arg);
            }
            fprintf(stderr, "  rerun: AP_TEST_SEED=%" PRIu64 " STRESS_FILTER='%s' %s\n",
                    stress_g.seed, stress_g.scenario, stress_g.prog);
            stress_exit_now(2);
        }
        pthread_mutex_unlock(&stress_g.mu);
    }
    return NULL;
}

static STRESS_UNUSED void stress_init(int argc, char **argv, const char *name)
{
    (void)argc;
    stress_g.prog = argv && argv[0] ? argv[0] : name;
    const char *s = getenv("AP_TEST_SEED");
    if (s && *s)
        stress_g.seed = strtoull(s, NULL, 0);
    else
        stress_g.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    s = getenv("STRESS_SCALE");
    stress_g.scale = (s && *s) ? strtod(s, NULL) : 1.0;
    if (!(stress_g.scale > 0))
        stress_g.scale = 1.0;
    s = getenv("STRESS_TIMEOUT");
    stress_g.timeout_s = (s && *s) ? (unsigned)strtoul(s, NULL, 0) : 60u;
    if (stress_g.timeout_s == 0)
        stress_g.timeout_s = 60u;
    if (stress_g.scale > 1 && !(s && *s))
        stress_g.timeout_s = (unsigned)(stress_g.timeout_s * stress_g.scale);
    s = getenv("STRESS_FILTER");
    stress_g.filter = (s && *s) ? s : NULL;
    printf("%s: AP_TEST_SEED=%" PRIu64 " STRESS_SCALE=%g STRESS_TIMEOUT=%u%s%s\n", name,
           stress_g.seed, stress_g.scale, stress_g.timeout_s,
           stress_g.filter ? " STRESS_FILTER=" : "", stress_g.filter ? stress_g.filter : "");
    fflush(stdout);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, stress_watchdog_main, NULL) != 0) {
        fprintf(stderr, "%s: cannot start the watchdog thread\n", name);
        exit(1);
    }
    pthread_attr_destroy(&a);
}

/* Iterations for a scenario: base * STRESS_SCALE, at least lo. */
static STRESS_UNUSED size_t stress_iters(size_t base, size_t lo)
{
    double n = (double)base * stress_g.scale;
    return n < (double)lo ? lo : (size_t)n;
}

/* A seed for thread @who of the current scenario. */
static STRESS_UNUSED uint64_t stress_thread_seed(unsigned who)
{
    return stress_mix64(stress_g.seed) ^ ((uint64_t)stress_g.scenario_id << 20) ^ who;
}

/*
 * stress_begin - name the next scenario and arm the watchdog for it
 * Returns false when STRESS_FILTER excludes it (then do not run it, and do
 * not call stress_end).
 */
static STRESS_UNUSED STRESS_PRINTF(1, 2) bool stress_begin(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&stress_g.mu);
    stress_g.scenario_id++;
    va_start(ap, fmt);
    vsnprintf(stress_g.scenario, sizeof stress_g.scenario, fmt, ap);
    va_end(ap);
    if (stress_g.filter && !strstr(stress_g.scenario, stress_g.filter)) {
        stress_g.skipped++;
        pthread_mutex_unlock(&stress_g.mu);
        return false;
    }
    stress_g.diag = NULL;
    stress_g.diag_arg = NULL;
    stress_g.started_ns = stress_now_ns();
    stress_g.started_cpu_ns = stress_cpu_ns();
    stress_g.deadline_ns = stress_g.started_ns + (uint64_t)stress_g.timeout_s * AP_NS_PER_SEC;
    pthread_mutex_unlock(&stress_g.mu);
    return true;
}

/*
 * stress_diag - what the watchdog prints about the running scenario
 * @diag: NULL for nothing. It runs on the watchdog thread, so it may read
 *        only atomics and data written before this call (the mutex orders
 *        those writes before the watchdog's reads). Set it once the
 *        scenario's state is initialised, and reset it to NULL before that
 *        state is modified or freed.
 */
static STRESS_UNUSED void stress_diag(void (*diag)(void *), void *arg)
{
    pthread_mutex_lock(&stress_g.mu);
    stress_g.diag = diag;
    stress_g.diag_arg = arg;
    pthread_mutex_unlock(&stress_g.mu);
}

/* stress_end - the scenario passed; print a line with @fmt details. */
static STRESS_UNUSED STRESS_PRINTF(1, 2) void stress_end(const char *fmt, ...)
{
    char extra[200] = "";
    va_list ap;
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(extra, sizeof extra, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_lock(&stress_g.mu);
    uint64_t ms = (stress_now_ns() - stress_g.started_ns) / AP_NS_PER_MS;
    uint64_t cpu_ms = (stress_cpu_ns() - stress_g.started_cpu_ns) / AP_NS_PER_MS;
    stress_g.deadline_ns = 0;
    stress_g.diag = NULL;
    stress_g.diag_arg = NULL;
    stress_g.passed++;
    printf("  ok %-40s %5" PRIu64 " ms (cpu %5" PRIu64 ")  %s\n", stress_g.scenario, ms,
           cpu_ms, extra);
    fflush(stdout);
    pthread_mutex_unlock(&stress_g.mu);
}

/* The last line of a program; returns main's exit status. */
static STRESS_UNUSED int stress_finish(void)
{
    pthread_mutex_lock(&stress_g.mu);
    printf("%s: %u scenarios passed%s (AP_TEST_SEED=%" PRIu64 ")\n", stress_g.prog,
           stress_g.passed, stress_g.skipped ? ", some filtered out" : "", stress_g.seed);
    bool ran = stress_g.passed > 0 || stress_g.filter;
    pthread_mutex_unlock(&stress_g.mu);
    CHECK(ran, "no scenario ran");
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------ */
/* threads                                                              */

static STRESS_UNUSED void stress_spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(t, NULL, fn, arg);
    CHECK(rc == 0, "pthread_create failed: %d", rc);
}

static STRESS_UNUSED void stress_join(pthread_t t)
{
    int rc = pthread_join(t, NULL);
    CHECK(rc == 0, "pthread_join failed: %d", rc);
}

/* Scheduling noise in test loops: mostly nothing, sometimes a short spin,
 * now and then a yield. */
static STRESS_UNUSED void stress_jitter(stress_rng *r)
{
    uint32_t x = (uint32_t)(stress_rand(r) >> 40);
    if ((x & 63u) == 0)
        sched_yield();
    else if ((x & 7u) == 0)
        for (uint32_t i = (x >> 8) & 127u; i; i--)
            AP_CPU_RELAX();
}

/* Waiting for another thread in a retry loop (FULL, EMPTY, AGAIN): spin a
 * little, then yield, then sleep briefly, so that with many more threads
 * than cores the thread that can make progress gets the CPU. Reset *fails
 * to 0 after a success. */
static STRESS_UNUSED void stress_backoff(unsigned *fails, stress_rng *r)
{
    unsigned f = (*fails)++;
    if (f < 4) {
        for (uint32_t i = stress_below(r, 64); i; i--)
            AP_CPU_RELAX();
    } else if (f < 24) {
        sched_yield();
    } else {
        stress_sleep_us(5 + stress_below(r, 40));
    }
}

/* Relaxed helpers for the test's own counters: they create no
 * happens-before edges, so they cannot hide a missing one in the library. */
#define STRESS_LOAD(p) atomic_load_explicit((p), memory_order_relaxed)
#define STRESS_STORE(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define STRESS_ADD(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)

/* A waker that only raises a flag (relaxed: no edge the library lacks). */
typedef struct stress_flag_waker {
    _Atomic uint32_t flag;
} stress_flag_waker;

static STRESS_UNUSED void stress_flag_wake(void *ctx)
{
    STRESS_STORE(&((stress_flag_waker *)ctx)->flag, 1u);
}

/*
 * Drive @f by hand with a flag waker: poll; between polls wait a random
 * while for the wake; when woken usually poll again, otherwise cancel it
 * (twice: cancel is idempotent) and poll once more, which must answer
 * AP_READY. Returns true if it completed before any cancel, false if it was
 * cancelled; the caller checks the future's status either way.
 */
static STRESS_UNUSED bool stress_poll_or_cancel(ap_future *f, stress_rng *rng)
{
    stress_flag_waker fw;
    ap_cx cx;
    atomic_init(&fw.flag, 0u);
    cx.waker.wake = stress_flag_wake;
    cx.waker.ctx = &fw;
    for (;;) {
        STRESS_STORE(&fw.flag, 0u);
        cx.now = ap_now_ns();
        cx.deadline = AP_DEADLINE_NONE;
        if (f->poll(f, &cx) == AP_READY)
            return true;
        for (uint32_t i = stress_below(rng, 64); i && !STRESS_LOAD(&fw.flag); i--)
            stress_jitter(rng);
        if (STRESS_LOAD(&fw.flag) && stress_below(rng, 4))
            continue; /* woken: usually poll again */
        ap_future_cancel(f);
        ap_future_cancel(f);
        CHECK(f->poll(f, &cx) == AP_READY, "a cancelled future must poll READY");
        return false;
    }
}

/* ------------------------------------------------------------------ */
/* items and the ledger                                                 */

#define STRESS_SEQ_BITS 40
#define STRESS_ITEM(producer, seq) (((uint64_t)(producer) << STRESS_SEQ_BITS) | (uint64_t)(seq))
#define STRESS_ITEM_PRODUCER(item) ((uint64_t)(item) >> STRESS_SEQ_BITS)
#define STRESS_ITEM_SEQ(item) ((uint64_t)(item) & ((UINT64_C(1) << STRESS_SEQ_BITS) - 1))
#define STRESS_NONE UINT64_MAX

/* The element the queues carry: the item and a check word, so a torn or
 * stale copy is caught even where TSan would not see it. */
typedef struct stress_elem {
    uint64_t item;
    uint64_t check;
} stress_elem;

static STRESS_UNUSED uint64_t stress_check_word(uint64_t item)
{
    return stress_mix64(item ^ UINT64_C(0xA5A5A5A5DEADBEEF));
}

static STRESS_UNUSED stress_elem stress_make(unsigned producer, uint64_t seq)
{
    stress_elem e;
    e.item = STRESS_ITEM(producer, seq);
    e.check = stress_check_word(e.item);
    return e;
}

/*
 * The ledger: one counter per item. Producers mark the items they pushed
 * with AP_OK (`pushed`, written only by the item's producer), consumers
 * count every time they receive an item (`seen`). At the end each item
 * must be seen exactly as many times as it was pushed (0 or 1).
 */
typedef struct stress_ledger {
    unsigned producers;
    size_t per_producer;
    _Atomic uint8_t *seen;
    _Atomic uint8_t *pushed; /* relaxed: the watchdog may read it */
    _Atomic size_t received; /* total items received, relaxed */
} stress_ledger;

static STRESS_UNUSED void stress_ledger_init(stress_ledger *l, unsigned producers,
                                             size_t per_producer)
{
    size_t n = (size_t)producers * per_producer;
    l->producers = producers;
    l->per_producer = per_producer;
    l->seen = (_Atomic uint8_t *)calloc(n ? n : 1, sizeof *l->seen);
    l->pushed = (_Atomic uint8_t *)calloc(n ? n : 1, sizeof *l->pushed);
    CHECK(l->seen && l->pushed, "out of memory for %zu items", n);
    for (size_t i = 0; i < n; i++) {
        atomic_init(&l->seen[i], 0);
        atomic_init(&l->pushed[i], 0);
    }
    atomic_init(&l->received, 0);
}

static STRESS_UNUSED void stress_ledger_free(stress_ledger *l)
{
    free((void *)l->seen);
    free((void *)l->pushed);
    l->seen = NULL;
    l->pushed = NULL;
}

/* Producer side: @item was pushed with AP_OK. */
static STRESS_UNUSED void stress_ledger_pushed(stress_ledger *l, uint64_t item)
{
    STRESS_STORE(&l->pushed[STRESS_ITEM_PRODUCER(item) * l->per_producer +
                            STRESS_ITEM_SEQ(item)],
                 1);
}

/* Per consumer: the last seq seen from each producer. */
typedef struct stress_fifo {
    uint64_t *last;
    unsigned producers;
} stress_fifo;

static STRESS_UNUSED void stress_fifo_init(stress_fifo *f, unsigned producers)
{
    f->producers = producers;
    f->last = (uint64_t *)malloc(sizeof *f->last * (producers ? producers : 1));
    CHECK(f->last != NULL, "out of memory");
    for (unsigned i = 0; i < producers; i++)
        f->last[i] = STRESS_NONE;
}

static STRESS_UNUSED void stress_fifo_free(stress_fifo *f)
{
    free(f->last);
    f->last = NULL;
}

/*
 * Consumer side: @e was received by consumer @who. Checks the element's
 * integrity, that the item exists, that it was never received before, and
 * that this consumer sees its producer's sequence numbers strictly rising.
 */
static STRESS_UNUSED void stress_ledger_take(stress_ledger *l, stress_fifo *f,
                                             const stress_elem *e, unsigned who)
{
    uint64_t p = STRESS_ITEM_PRODUCER(e->item), seq = STRESS_ITEM_SEQ(e->item);
    CHECK(e->check == stress_check_word(e->item),
          "consumer %u: corrupt element item=%#" PRIx64 " check=%#" PRIx64
          " (expected %#" PRIx64 ")",
          who, e->item, e->check, stress_check_word(e->item));
    CHECK(p < l->producers && seq < l->per_producer,
          "consumer %u: invented item producer=%" PRIu64 " seq=%" PRIu64, who, p, seq);
    uint8_t before = atomic_fetch_add_explicit(&l->seen[p * l->per_producer + seq], 1,
                                               memory_order_relaxed);
    CHECK(before == 0,
          "consumer %u: DUPLICATE item producer=%" PRIu64 " seq=%" PRIu64
          " (received %u times)",
          who, p, seq, (unsigned)before + 1);
    if (f) {
        CHECK(f->last[p] == STRESS_NONE || seq > f->last[p],
              "consumer %u: per-producer FIFO broken: producer %" PRIu64 " seq %" PRIu64
              " after seq %" PRIu64,
              who, p, seq, f->last[p]);
        f->last[p] = seq;
    }
    STRESS_ADD(&l->received, 1);
}

/* Print up to @max items whose state is wrong (safe from the watchdog). */
static STRESS_UNUSED size_t stress_ledger_report(stress_ledger *l, bool all_pushed,
                                                 size_t max)
{
    size_t bad = 0, n = (size_t)l->producers * l->per_producer;
    for (size_t i = 0; i < n; i++) {
        unsigned seen = atomic_load_explicit(&l->seen[i], memory_order_relaxed);
        unsigned want = all_pushed ? 1u : STRESS_LOAD(&l->pushed[i]);
        if (seen != want) {
            if (bad < max)
                fprintf(stderr,
                        "    item producer=%zu seq=%zu: pushed %u, received %u time(s)\n",
                        i / l->per_producer, i % l->per_producer, want, seen);
            bad++;
        }
    }
    if (bad > max)
        fprintf(stderr, "    ... %zu items wrong in all\n", bad);
    return bad;
}

/*
 * After all threads are joined: every item must have been received exactly
 * as often as it was pushed. With all_pushed, every item counts as pushed
 * (scenarios where producers push their whole range).
 */
static STRESS_UNUSED void stress_ledger_verify(stress_ledger *l, bool all_pushed)
{
    size_t n = (size_t)l->producers * l->per_producer, want_total = 0;
    for (size_t i = 0; i < n; i++)
        want_total += all_pushed ? 1u : STRESS_LOAD(&l->pushed[i]);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned seen = atomic_load_explicit(&l->seen[i], memory_order_relaxed);
        unsigned want = all_pushed ? 1u : STRESS_LOAD(&l->pushed[i]);
        bad += seen != want;
    }
    if (bad) {
        pthread_mutex_lock(&stress_g.mu);
        stress_print_context_locked("ITEM ACCOUNTING FAILED");
        (void)stress_ledger_report(l, all_pushed, 20);
        pthread_mutex_unlock(&stress_g.mu);
    }
    CHECK(bad == 0, "%zu of %zu items lost or duplicated (pushed %zu, received %zu)", bad, n,
          want_total, STRESS_LOAD(&l->received));
    CHECK(STRESS_LOAD(&l->received) == want_total, "received %zu items, pushed %zu",
          STRESS_LOAD(&l->received), want_total);
}

/* Wait (on the main thread) until @l has received @want items; a stall is
 * caught by the watchdog, whose diagnostics show what is missing. */
static STRESS_UNUSED void stress_wait_received(stress_ledger *l, size_t want)
{
    while (STRESS_LOAD(&l->received) < want)
        stress_sleep_us(200);
}

/* Near-wrap starting position helpers. */
static STRESS_UNUSED size_t stress_mpmc_one_lap(size_t capacity)
{
    return 2 * ap__pow2_ceil(capacity + 1);
}

#endif /* ASYNCPAT_TESTS_STRESS_H */
