/*
 * tests/verify/vf.h -- a deterministic scheduler that explores interleavings
 *
 * Include this BEFORE any asyncpat header, in a single-file test program.
 * It takes over the AP_ATOMIC_* indirection of asyncpat/config.h, so every
 * atomic access of the library becomes a scheduling point. The test's
 * "threads" are coroutines (ucontext) on one OS thread, and a depth-first
 * search over the scheduling choices runs the scenario again and again
 * until every interleaving within a preemption bound has been seen:
 *
 *   - At each scheduling point the options are: let the current thread go
 *     on (the default), switch to another runnable thread, or (x86-TSO
 *     mode) flush the oldest entry of some thread's store buffer. Choosing
 *     anything but "go on" while the current thread could go on costs one
 *     preemption; a bounded number of preemptions (CHESS, Musuvathi &
 *     Qadeer 2007) keeps the search finite and still finds most bugs,
 *     which need few preemptions.
 *   - A spin (AP_CPU_RELAX, sched_yield) is a free switch: the spinner
 *     waits for somebody else, so the others (and pending flushes) go first.
 *   - A thread waiting on a future (vf_wait) parks until its waker is
 *     called. If nobody can run but somebody is parked, that is a lost
 *     wakeup (or a deadlock): the run fails with its schedule.
 *   - After every step the scenario's invariant runs; at the end of every
 *     execution its final check runs.
 *
 * Memory models:
 *   SC   each atomic access takes effect at its scheduling point.
 *   TSO  x86-TSO: each thread has a FIFO store buffer. Relaxed and release
 *        stores go into it; the thread's own loads see its newest buffered
 *        value for that address first; read-modify-writes, seq_cst stores
 *        and seq_cst fences drain it first (they are locked instructions or
 *        mfence on x86); flushing is a scheduler choice. A flush matters
 *        only to a thread that reads the address it writes, so the choice
 *        is offered there: before a load or RMW of X, "flush thread t in
 *        order through its oldest store to X" for each other t that has
 *        one (again, one store to X at a time, while any are left); the
 *        default is not to flush, the weakest behaviour. A spin flushes one
 *        store; when nobody can run, buffers drain in thread order. Plain
 *        (non-atomic) accesses are not buffered: the model is exact for the
 *        library's atomics and for data published through them.
 *   C11  (VF_MODE=c11; runs the TSO scenarios and those with .c11) the
 *        C11/RC11 model, after CDSChecker and loom: each atomic location
 *        keeps its modification order (its newest VF_HIST = 8 stores); a
 *        load may read any of them that coherence through happens-before
 *        allows, not only the newest; which one is a scheduler choice
 *        (default: the newest; an older one costs one "stale read").
 *        Happens-before is vector clocks: release stores (and relaxed ones
 *        after a release fence) carry the writer's clock; an acquire load
 *        (or an acquire fence after a relaxed one) joins it; an RMW reads
 *        the store right before its place in mo (the newest, unless it was
 *        placed earlier: below) and continues its release sequence (RC11:
 *        RMWs only). seq_cst is approximated soundly for the checks (fewer
 *        behaviours, never more): every seq_cst access or fence joins and
 *        publishes one global clock, so they are totally ordered by
 *        happens-before, and a seq_cst load reads the newest store. HEAVY
 *        is a full fence on every thread at its current point, paired two
 *        ways with the caller's; LIGHT is nothing. Modification order is
 *        not just execution order (after CDSChecker's mo graph and GenMC):
 *        a store or RMW may go before newer stores of its location that it
 *        is free to precede, a scheduler choice (default: after the newest;
 *        an earlier place costs one "mo insertion"): place p is allowed iff
 *        every store at p or above is one the thread has not hb-observed
 *        (none happens-before it, none was read or written by something
 *        that happens-before it: coherence), and the store now at p is not
 *        an RMW (an RMW stays right after the store it read). An RMW placed
 *        so reads the store before its place; a store placed so leaves
 *        memory holding the newest; readers keep what they read. seq_cst
 *        stores and RMWs stay newest. Plain bytes copied with
 *        memcpy (the library's payloads) and marked by VF_DATA_READ/WRITE
 *        go through a happens-before race detector: an access not ordered
 *        after a conflicting one fails the run (a data race is what a
 *        weakened publication turns into). Bounds: at most VF_C11_STALE
 *        stale reads per execution (1; VF_LONG 2), each at most
 *        VF_C11_DEPTH (2) stores back; at most VF_C11_MO mo insertions per
 *        execution (1; VF_LONG 2), each at most VF_C11_MO_DEPTH (2) places
 *        before the newest; and the preemption bound is the scenario's less
 *        VF_C11_CUT (1; VF_LONG 0), at least 1; the environment overrides
 *        each (VF_C11_STALE, VF_C11_DEPTH, VF_C11_MO, VF_C11_MO_DEPTH,
 *        VF_C11_CUT). tests/verify/verify_litmus.c holds the model to
 *        2+2W, S, S+RMW, RMW atomicity and CoRW (allowed outcomes must
 *        occur, forbidden ones must not). Not modelled: out-of-thin-air
 *        values (a load reads only stores already made, so no load-
 *        buffering cycle), consume (treated as acquire), mixed-size
 *        atomics (fail the run), spurious CAS failure, a failed CAS
 *        reading an older store other than by an mo insertion, mo places
 *        more than VF_C11_MO_DEPTH back or before the oldest store held
 *        (VF_HIST), a seq_cst store or RMW anywhere but newest, the C11 S
 *        order beyond the global clock,
 *        plain accesses other than memcpy/VF_DATA (and a thread's reads of
 *        its own stack), and atomics over 8 bytes.
 *        Fences: TSan ignores standalone fences; the C11 mode runs them.
 *        The seqlock fences (AP__SEQLOCK_FENCE_*) of cache.h and pubsub.h
 *        run in cache_update_evict_vs_get_tso and pubsub_*_tso (mutant
 *        PUBSUB_NO_ACQUIRE_FENCE); the work-steal seq_cst fence in
 *        ws_*_tso; the seq_cst fences of the ladder's fallback
 *        (VF_NO_ASYM / -DAP_NO_ASYM_BARRIER builds of verify_queue,
 *        verify_sync, verify_close) only in SC/TSO; HEAVY in every *_tso
 *        scenario that parks a waiter.
 *   Compare-exchange-weak never fails spuriously here. Hardware behaviours
 *   beyond C11 (none should matter to C11 code) are not modelled.
 *
 * Adding a pattern: write tests/verify/verify_<name>.c like verify_sync.c
 * (a vf_scenario per claim: setup, a body per thread, an invariant after
 * every step, a final check) and tests/verify/run.sh picks it up. Keep a
 * scenario small (2-3 threads, a few operations each): the number of
 * executions grows with steps^bound. A mutant's scheduler checker is a
 * "verify" row in tests/mutants.sh.
 *
 * Every failure prints the schedule as VF_REPLAY=<scenario>:<choices>;
 * running the program with that in the environment re-runs just that
 * execution and prints its full trace.
 */
#ifndef ASYNCPAT_VF_H
#define ASYNCPAT_VF_H

#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1
#endif
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

/* ---- hooks used by the macros ---- */

#define VF__UNUSED __attribute__((unused))

enum { VF_LOAD, VF_STORE, VF_RMW, VF_FENCE, VF_YIELD };

static void vf__point(int op, const void *addr, const char *file, int line);
VF__UNUSED static bool vf__read(const void *addr, void *out, size_t size, memory_order mo);
VF__UNUSED static bool vf__write(void *addr, const void *val, size_t size, memory_order mo);
VF__UNUSED static void vf__rmw_pre(const void *addr, size_t size, memory_order mo);
VF__UNUSED static void vf__rmw_post(const void *addr, size_t size, memory_order mo, bool stored);
VF__UNUSED static void vf__init_loc(const void *addr);
VF__UNUSED static void vf__fence(memory_order mo);
static void vf__tso_fence(memory_order mo);
VF__UNUSED static void *vf__memcpy(void *dst, const void *src, size_t n, const char *file, int line);
static void vf_yield(void);
static void vf_fail(const char *fmt, ...);

#define VF__AT(op, p) vf__point((op), (p), __FILE__, __LINE__)
/* C11 mode with VF_COVER=<file>: which relaxed accesses ran (relaxed.sh) */
VF__UNUSED static void vf__cover(bool relaxed, const char *file, int line);
#define VF__COVER(mo) vf__cover((mo) == memory_order_relaxed, __FILE__, __LINE__)
/* The value type of an atomic object: an rvalue drops _Atomic. */
#define VF__T(p) __typeof__((void)0, *(p))

#define AP_ATOMIC_INIT(p, v) (atomic_init((p), (v)), vf__init_loc(p))
#define AP_ATOMIC_LOAD(p, mo)                                                   \
    __extension__({                                                             \
        __auto_type vf_p_ = (p);                                                \
        VF__T(vf_p_) vf_v_;                                                     \
        VF__AT(VF_LOAD, vf_p_);                                                 \
        VF__COVER(mo);                                                          \
        if (!vf__read(vf_p_, &vf_v_, sizeof vf_v_, (mo)))                       \
            vf_v_ = atomic_load_explicit(vf_p_, memory_order_relaxed);          \
        vf_v_;                                                                  \
    })
#define AP_ATOMIC_STORE(p, v, mo)                                               \
    __extension__({                                                             \
        __auto_type vf_p_ = (p);                                                \
        VF__T(vf_p_) vf_v_ = (v);                                               \
        VF__AT(VF_STORE, vf_p_);                                                \
        VF__COVER(mo);                                                          \
        if (!vf__write(vf_p_, &vf_v_, sizeof vf_v_, (mo)))                      \
            atomic_store_explicit(vf_p_, vf_v_, memory_order_relaxed);          \
        (void)0;                                                                \
    })
/* An RMW: a scheduling point, then (TSO) drain this thread's buffer, then
 * the operation itself, all in one step; (C11) it reads the store before
 * its place in mo (the newest by default; vf__choose_mo) and puts its own
 * there (stored: false for a failed compare-exchange, which is a load of
 * that store with mo_fail). */
#define VF__RMW(p, mo, expr)                                                    \
    __extension__({                                                             \
        __auto_type vf_p_ = (p);                                                \
        VF__AT(VF_RMW, vf_p_);                                                  \
        vf__tso_fence(memory_order_seq_cst);                                    \
        VF__COVER(mo);                                                          \
        vf__rmw_pre(vf_p_, sizeof(VF__T(vf_p_)), (mo));                         \
        __auto_type vf_r_ = (expr);                                             \
        vf__rmw_post(vf_p_, sizeof(VF__T(vf_p_)), (mo), true);                  \
        vf_r_;                                                                  \
    })
#define AP_ATOMIC_EXCHANGE(p, v, mo) \
    VF__RMW(p, mo, atomic_exchange_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_CAS_WEAK(p, expp, v, mo_ok, mo_fail)                              \
    __extension__({                                                                 \
        __auto_type vf_p_ = (p);                                                    \
        VF__AT(VF_RMW, vf_p_);                                                      \
        vf__tso_fence(memory_order_seq_cst);                                        \
        vf__cover((mo_ok) == memory_order_relaxed || (mo_fail) == memory_order_relaxed, \
                  __FILE__, __LINE__);                                              \
        vf__rmw_pre(vf_p_, sizeof(VF__T(vf_p_)), (mo_ok));                          \
        bool vf_r_ = atomic_compare_exchange_strong_explicit(                       \
            vf_p_, (expp), (v), memory_order_relaxed, memory_order_relaxed);        \
        vf__rmw_post(vf_p_, sizeof(VF__T(vf_p_)), vf_r_ ? (mo_ok) : (mo_fail), vf_r_); \
        vf_r_;                                                                      \
    })
#define AP_ATOMIC_CAS_STRONG(p, expp, v, mo_ok, mo_fail) \
    AP_ATOMIC_CAS_WEAK(p, expp, v, mo_ok, mo_fail)
#define AP_ATOMIC_FETCH_ADD(p, v, mo) \
    VF__RMW(p, mo, atomic_fetch_add_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_FETCH_SUB(p, v, mo) \
    VF__RMW(p, mo, atomic_fetch_sub_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_FETCH_OR(p, v, mo) \
    VF__RMW(p, mo, atomic_fetch_or_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_FETCH_AND(p, v, mo) \
    VF__RMW(p, mo, atomic_fetch_and_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_FENCE(mo) (VF__AT(VF_FENCE, NULL), vf__fence(mo))

/* The asymmetric barrier of waitlist.h (THE LADDER). LIGHT is a compiler
 * barrier: a scheduling point that drains nothing. HEAVY (membarrier) is a
 * full barrier on every running thread: it drains every thread's store
 * buffer, in thread order. Registration succeeds unless VF_NO_ASYM is set
 * (the runtime fallback: both halves become seq_cst fences); building with
 * -DAP_NO_ASYM_BARRIER checks the compile-time fallback (seq_cst ladder). */
static void vf__heavy(void);
static __attribute__((unused)) bool vf_no_asym;
#define AP_BARRIER_LIGHT() VF__AT(VF_FENCE, NULL)
#define AP_BARRIER_HEAVY() (VF__AT(VF_FENCE, NULL), vf__heavy())
#define AP_BARRIER_REGISTER() (!vf_no_asym)

/* Spins are free switches. <sched.h> is already in, so this only renames
 * the calls in the library's spin loops. */
#define AP_CPU_RELAX() vf_yield()
static inline int vf__sched_yield(void) { vf_yield(); return 0; }
#define sched_yield() vf__sched_yield()
#define AP_ASSERT(c) ((c) ? (void)0 : vf_fail("AP_ASSERT(%s) at %s:%d", #c, __FILE__, __LINE__))

/* Plain copies are data accesses (C11 mode: the race detector sees them);
 * the library's payloads travel by memcpy. vf.h's own copies are spelled
 * (memcpy)(...), which the macro does not touch. */
#define memcpy(d, s, n) vf__memcpy((d), (s), (n), __FILE__, __LINE__)
/* A scenario's own plain accesses to shared data, for the race detector:
 * VF_DATA_READ(p, n) / VF_DATA_WRITE(p, n) (no-ops outside C11 mode). */
VF__UNUSED static void vf__data(const void *p, size_t n, bool write, const char *file, int line);
#define VF_DATA_READ(p, n) vf__data((p), (n), false, __FILE__, __LINE__)
#define VF_DATA_WRITE(p, n) vf__data((p), (n), true, __FILE__, __LINE__)

#include "asyncpat/future.h"

/* ---- the scenario interface ---- */

#define VF_MAX_THREADS 4

typedef struct vf_scenario {
    const char *name;
    int nthreads;
    bool tso;                       /* x86-TSO store buffers */
    bool c11;                       /* run in C11 mode too though not TSO */
    int bound;                      /* preemption bound; 0 means 2 */
    void *(*setup)(void);           /* fresh state for one execution */
    void (*thread)(void *st, int id); /* body of thread id (0..nthreads-1) */
    void (*invariant)(void *st);    /* optional: after every step */
    void (*check)(void *st);        /* optional: when all threads are done */
    void (*teardown)(void *st);     /* optional: free the state */
} vf_scenario;

/* Fail the current execution (prints the schedule and trace, exits 1). */
#define VF_CHECK(c, ...)                                                        \
    do {                                                                        \
        if (!(c))                                                               \
            vf__check_fail(#c, __FILE__, __LINE__, "" __VA_ARGS__);             \
    } while (0)

/* ---- implementation ---- */

#define VF_STACK (256u * 1024u)
#define VF_MAX_STEPS 20000
#define VF_BUF_MAX 64
#define VF_TRACE_SHOW 80
/* C11 mode bounds: stale reads per execution, older stores per load */
#ifndef VF_C11_STALE
#ifdef VF_LONG
#define VF_C11_STALE 2
#else
#define VF_C11_STALE 1
#endif
#endif
#ifndef VF_C11_CUT /* C11 mode: preemption bound = the scenario's - this */
#ifdef VF_LONG
#define VF_C11_CUT 0
#else
#define VF_C11_CUT 1
#endif
#endif
#ifndef VF_C11_DEPTH
#define VF_C11_DEPTH 2
#endif
/* C11 mode: stores or RMWs placed before newer stores in their location's
 * modification order, per execution, and how far back */
#ifndef VF_C11_MO
#ifdef VF_LONG
#define VF_C11_MO 2
#else
#define VF_C11_MO 1
#endif
#endif
#ifndef VF_C11_MO_DEPTH
#define VF_C11_MO_DEPTH 2
#endif

enum { VF_RUNNABLE, VF_PARKED, VF_DONE };

typedef struct vf_store {
    void *addr;
    size_t size;
    unsigned char bytes[8];
} vf_store;

typedef struct vf_thread {
    ucontext_t ctx;
    char *stack;
    int state;
    bool woken;
    vf_store buf[VF_BUF_MAX]; /* TSO store buffer, FIFO */
    int buf_head, buf_len;
} vf_thread;

/* what a choice's non-default options cost */
enum { VF_KIND_SCHED, VF_KIND_STALE, VF_KIND_MO };

typedef struct vf_choice {
    uint16_t choice, nopts;
    uint8_t pre;       /* budget of its kind spent before it */
    bool cur_runnable; /* whether "go on" was option 0 (the others cost 1) */
    uint8_t kind;      /* VF_KIND_SCHED: a preemption; C11: _STALE which
                        * store a load reads, _MO where a store or RMW goes
                        * in its location's modification order */
} vf_choice;

typedef struct vf_step {
    int8_t tid;  /* thread that acted */
    int8_t op;   /* VF_* or -1 for a flush */
    const char *file;
    int line;
    const void *addr;
    int8_t stale; /* C11: the load read the k-th newest store instead */
    int8_t mo;    /* C11: the store or RMW went k places before the newest */
} vf_step;

static struct {
    const vf_scenario *sc;
    void *st;
    vf_thread th[VF_MAX_THREADS];
    ucontext_t main;
    int cur, next, preempt, bound;
    bool tso;
    uint64_t now;
    vf_choice trail[VF_MAX_STEPS];
    int ntrail, nprefix;
    vf_step steps[VF_MAX_STEPS];
    int nsteps;
    bool replay; /* print the whole trace */
    bool c11;    /* the C11 mode (VF_MODE=c11) */
    int nstale, stale_bound, depth; /* C11: stale reads done, allowed, depth */
    int nmo, mo_bound, mo_depth;    /* C11: mo insertions done, allowed, depth */
} vf;

/* Fake clock for scenarios that need one: constant unless a test moves it. */
static inline uint64_t vf_now(void) { return vf.now; }
static inline void vf_set_now(uint64_t t) { vf.now = t; }
static inline int vf_self(void) { return vf.cur; }

static const char *vf__mode(void) { return vf.c11 ? "C11" : vf.tso ? "TSO" : "SC"; }

static const char *vf__opname(int op)
{
    static const char *n[] = {"load", "store", "rmw", "fence", "yield"};
    return op < 0 ? "flush" : n[op];
}

static void vf__print_schedule(FILE *f)
{
    /* sparse: the choices that were not the default, as index=option */
    int first = 1;
    fprintf(f, "%sVF_REPLAY='%s:", vf.c11 ? "VF_MODE=c11 " : "", vf.sc->name);
    for (int i = 0; i < vf.ntrail; i++)
        if (vf.trail[i].choice) {
            fprintf(f, "%s%d=%u", first ? "" : ",", i, vf.trail[i].choice);
            first = 0;
        }
    fprintf(f, "'\n");
}

static void vf__print_trace(FILE *f, int from)
{
    for (int i = from < 0 ? 0 : from; i < vf.nsteps; i++) {
        const vf_step *s = &vf.steps[i];
        const char *file = s->file ? strrchr(s->file, '/') : NULL;
        char note[32] = "";
        if (s->stale)
            snprintf(note, sizeof note, "(reads %d-stale)", s->stale);
        else if (s->mo)
            snprintf(note, sizeof note, "(mo %d back)", s->mo);
        fprintf(f, "  %5d  T%d %-5s %-24s %s:%d\n", i, s->tid, vf__opname(s->op), note,
                file ? file + 1 : (s->file ? s->file : "-"), s->line);
    }
}

static void vf_fail(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    if (vf.replay)
        fprintf(stderr, "FAIL %s [%s, replay]: ", vf.sc->name, vf__mode());
    else
        fprintf(stderr, "FAIL %s [%s, bound %d]: ", vf.sc->name, vf__mode(), vf.bound);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr,
            "\n  thread T%d, after %d steps, %d preemptions, %d stale reads, %d mo insertions; "
            "schedule:\n  ",
            vf.cur, vf.nsteps, vf.preempt, vf.nstale, vf.nmo);
    vf__print_schedule(stderr);
    fprintf(stderr, "  trace%s:\n", vf.replay ? "" : " (last steps; replay for all)");
    vf__print_trace(stderr, vf.replay ? 0 : vf.nsteps - VF_TRACE_SHOW);
    exit(1);
}

static void vf__check_fail(const char *what, const char *file, int line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vf_fail("check failed: %s (%s:%d)%s%s", what, file, line, *msg ? ": " : "", msg);
}

/* ---- TSO store buffers ---- */

static void vf__flush_one(int t)
{
    vf_thread *th = &vf.th[t];
    vf_store *s = &th->buf[th->buf_head];
    (memcpy)(s->addr, s->bytes, s->size); /* one OS thread: plain memory */
    th->buf_head = (th->buf_head + 1) % VF_BUF_MAX;
    th->buf_len--;
}

static bool vf__tso_read(const void *addr, void *out, size_t size)
{
    if (!vf.tso || vf.cur < 0)
        return false;
    vf_thread *th = &vf.th[vf.cur];
    for (int i = th->buf_len - 1; i >= 0; i--) {
        vf_store *s = &th->buf[(th->buf_head + i) % VF_BUF_MAX];
        if (s->addr == addr) {
            if (s->size != size)
                vf_fail("mixed-size access to %p", addr);
            (memcpy)(out, s->bytes, size);
            return true;
        }
    }
    return false;
}

static void vf__tso_fence(memory_order mo)
{
    if (!vf.tso || vf.cur < 0 || mo != memory_order_seq_cst)
        return;
    while (vf.th[vf.cur].buf_len)
        vf__flush_one(vf.cur);
}

static void vf__c11_heavy(void);
static __attribute__((unused)) void vf__heavy(void)
{
    if (vf.c11 && vf.cur >= 0) {
        vf__c11_heavy();
        return;
    }
    if (!vf.tso || vf.cur < 0)
        return;
    for (int t = 0; t < vf.sc->nthreads; t++)
        while (vf.th[t].buf_len)
            vf__flush_one(t);
}

static bool vf__tso_store(void *addr, const void *val, size_t size, memory_order mo)
{
    if (!vf.tso || vf.cur < 0)
        return false;
    if (mo == memory_order_seq_cst) { /* xchg on x86: drains, then stores */
        vf__tso_fence(mo);
        return false;
    }
    vf_thread *th = &vf.th[vf.cur];
    if (th->buf_len == VF_BUF_MAX)
        vf__flush_one(vf.cur); /* a bounded buffer drains its oldest */
    vf_store *s = &th->buf[(th->buf_head + th->buf_len) % VF_BUF_MAX];
    s->addr = addr;
    s->size = size;
    (memcpy)(s->bytes, val, size);
    th->buf_len++;
    return true;
}

/* ---- the C11 mode: store histories, vector clocks, a race detector ----
 *
 * Every atomic location (keyed by address) keeps its modification order as
 * a history of its newest VF_HIST stores; memory always holds the newest,
 * so SC-style readers (invariants, final checks) see the latest values.
 * Each store carries
 *   seen[t]  the clock of thread t when it first wrote or read the store,
 *   rel      the vector clock an acquire that reads it synchronizes with:
 *            the writer's clock for a release store, the clock of its last
 *            release fence for a relaxed one, and for an RMW also the rel of
 *            the store it read (release sequences, RC11: RMWs only).
 * A load may read store i of the history iff no newer store j > i is
 * "hb-observed" by the loading thread (seen[t] <= clk[self][t] for some t:
 * written or read by something that happens-before the load), which is
 * coherence (CoRR, CoWR) through happens-before. An RMW reads the store
 * right before its place (the newest unless vf__choose_mo placed it lower).
 * Reading store i with acquire (or an acquire fence later) joins rel into
 * the thread's clock. Fences: release snapshots the clock for later relaxed
 * stores; acquire joins the rels of the stores read so far. The history is
 * kept in modification order, not execution order: a store or RMW may be
 * inserted below newer stores it does not hb-observe (vf__choose_mo), so
 * "newer" above always means later in mo; each store's seen[] moves with
 * it, so every thread's coherence floor shifts with an insertion. */

#define VF_HIST 8      /* stores kept per location */
#define VF_LOCS 2048   /* atomic locations per execution */
#define VF_SHADOW 16384 /* plain bytes tracked per execution */

typedef uint32_t vf_vc[VF_MAX_THREADS];

typedef struct vf_c11_store {
    unsigned char bytes[8];
    vf_vc rel;
    uint32_t seen[VF_MAX_THREADS];
    bool rmw; /* an RMW: it read the store right before it (nothing goes between) */
    int8_t writer;  /* its thread, -1 for a location's first store */
    uint32_t exec;  /* the step that made it (execution order) */
} vf_c11_store;

typedef struct vf_loc {
    const void *addr;
    uint32_t gen;
    uint16_t size;
    uint8_t n, head; /* stores held; index of the oldest in the ring */
    vf_c11_store hist[VF_HIST];
} vf_loc;

typedef struct vf_shadow {
    uintptr_t addr;
    uint32_t gen;
    int8_t wtid;    /* -1: written outside the threads (set-up) */
    uint32_t wclk;
    uint32_t rclk[VF_MAX_THREADS]; /* 0: not read */
    const char *wfile, *rfile[VF_MAX_THREADS];
    int wline, rline[VF_MAX_THREADS];
} vf_shadow;

static struct {
    uint32_t gen;
    vf_loc locs[VF_LOCS];
    vf_shadow shadow[VF_SHADOW];
    vf_vc clk[VF_MAX_THREADS];  /* happens-before, per thread */
    vf_vc acq[VF_MAX_THREADS];  /* rels of the stores read relaxed (acquire fence) */
    vf_vc relf[VF_MAX_THREADS]; /* clock at the last release fence */
    vf_vc sc;                   /* the seq_cst order, as one clock */
    vf_loc *rmw;                /* the location of the RMW in progress */
    uint32_t dep[VF_MAX_THREADS]; /* newest step of another thread's store that
                                   * each thread read, or wrote after in mo */
    int rmw_pos;                /* where it goes in the history (n: newest) */
} vf__c;

static void vf__vc_join(vf_vc a, const vf_vc b)
{
    for (int t = 0; t < VF_MAX_THREADS; t++)
        if (b[t] > a[t])
            a[t] = b[t];
}

static void vf__c11_reset(void)
{
    vf__c.gen++;
    memset(vf__c.clk, 0, sizeof vf__c.clk);
    memset(vf__c.acq, 0, sizeof vf__c.acq);
    memset(vf__c.relf, 0, sizeof vf__c.relf);
    memset(vf__c.sc, 0, sizeof vf__c.sc);
    memset(vf__c.dep, 0, sizeof vf__c.dep);
    for (int t = 0; t < VF_MAX_THREADS; t++)
        vf__c.clk[t][t] = 1;
    vf.nstale = 0;
    vf.nmo = 0;
}

static inline uint32_t vf__now_of(int t) { return vf__c.clk[t][t]; }
static inline void vf__tick(void) { vf__c.clk[vf.cur][vf.cur]++; }

static vf_c11_store *vf__hist(vf_loc *l, int i) /* i = 0 oldest .. n-1 newest */
{
    return &l->hist[(l->head + i) % VF_HIST];
}

/* The location at addr; a fresh one (or one whose memory no longer holds
 * its newest store: a plain re-initialisation, memset or atomic_init) is
 * one store that happens-before everything, holding what memory holds. */
static vf_loc *vf__loc(const void *addr, size_t size)
{
    if (size > 8)
        vf_fail("C11 mode: an atomic of %zu bytes at %p (at most 8)", size, addr);
    uintptr_t h = ((uintptr_t)addr >> 2) * 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < VF_LOCS; i++) {
        vf_loc *l = &vf__c.locs[(h + i) % VF_LOCS];
        if (l->gen != vf__c.gen) {
            l->gen = vf__c.gen;
            l->addr = addr;
            l->size = (uint16_t)size;
            l->n = 0;
        } else if (l->addr != addr) {
            continue;
        }
        if (l->size != size)
            vf_fail("mixed-size access to %p (%u and %zu bytes): not modelled", addr, l->size,
                    size);
        if (l->n == 0 || (memcmp)(vf__hist(l, l->n - 1)->bytes, addr, size) != 0) {
            vf_c11_store *s = &l->hist[0];
            l->n = 1;
            l->head = 0;
            (memcpy)(s->bytes, addr, size);
            memset(s->rel, 0, sizeof s->rel);
            memset(s->seen, 0, sizeof s->seen);
            s->rmw = false;
            s->writer = -1;
            s->exec = 0;
        }
        return l;
    }
    vf_fail("C11 mode: more than %d atomic locations in one execution", VF_LOCS);
    return NULL;
}

static void vf__init_loc(const void *addr)
{
    if (!vf.c11)
        return;
    uintptr_t h = ((uintptr_t)addr >> 2) * 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < VF_LOCS; i++) {
        vf_loc *l = &vf__c.locs[(h + i) % VF_LOCS];
        if (l->gen != vf__c.gen)
            return;
        if (l->addr == addr) {
            l->n = 0; /* the next access starts it afresh */
            return;
        }
    }
}

/* Index of the oldest store a load by the current thread may read. */
static int vf__lowest(vf_loc *l)
{
    const uint32_t *c = vf__c.clk[vf.cur];
    for (int i = l->n - 1; i > 0; i--) {
        const vf_c11_store *s = vf__hist(l, i);
        for (int t = 0; t < VF_MAX_THREADS; t++)
            if (s->seen[t] <= c[t])
                return i;
    }
    return 0;
}

/* The current thread read @s or goes after it in mo: its later steps
 * depend on a store of another thread made at step s->exec. */
static void vf__dep(const vf_c11_store *s)
{
    if (s->writer >= 0 && s->writer != vf.cur && s->exec > vf__c.dep[vf.cur])
        vf__c.dep[vf.cur] = s->exec;
}

static void vf__saw(vf_c11_store *s)
{
    vf__dep(s);
    if (s->seen[vf.cur] > vf__now_of(vf.cur))
        s->seen[vf.cur] = vf__now_of(vf.cur);
}

static bool vf__is_acq(memory_order mo)
{
    return mo == memory_order_acquire || mo == memory_order_consume ||
           mo == memory_order_acq_rel || mo == memory_order_seq_cst;
}
static bool vf__is_rel(memory_order mo)
{
    return mo == memory_order_release || mo == memory_order_acq_rel ||
           mo == memory_order_seq_cst;
}

/* seq_cst, approximated: every seq_cst access or fence joins one global
 * clock and publishes into it, so all of them are totally ordered by
 * happens-before in execution order (stronger than C11's S order). */
static void vf__sc_enter(void) { vf__vc_join(vf__c.clk[vf.cur], vf__c.sc); }
static void vf__sc_leave(void) { vf__vc_join(vf__c.sc, vf__c.clk[vf.cur]); }

static void vf__acquire_from(const vf_c11_store *s, memory_order mo)
{
    vf__vc_join(vf__is_acq(mo) ? vf__c.clk[vf.cur] : vf__c.acq[vf.cur], s->rel);
}

/* A new store of the current thread at index p of the history (p = n:
 * the newest), moving the newer ones up; when the history is full the
 * oldest is forgotten first (then p is one less). Returns it. */
static vf_c11_store *vf__insert(vf_loc *l, int p, const void *val, size_t size, bool rmw)
{
    if (l->n == VF_HIST) { /* forget the oldest */
        l->head = (uint8_t)((l->head + 1) % VF_HIST);
        l->n--;
        p--;
    }
    for (int i = l->n; i > p; i--)
        *vf__hist(l, i) = *vf__hist(l, i - 1);
    l->n++;
    vf_c11_store *s = vf__hist(l, p);
    (memcpy)(s->bytes, val, size);
    for (int t = 0; t < VF_MAX_THREADS; t++)
        s->seen[t] = UINT32_MAX;
    s->seen[vf.cur] = vf__now_of(vf.cur);
    s->rmw = rmw;
    s->writer = (int8_t)vf.cur;
    s->exec = (uint32_t)vf.nsteps;
    if (p > 0) /* it follows that store in mo */
        vf__dep(vf__hist(l, p - 1));
    return s;
}

/* A choice among n options (0 = the default) of a C11 kind (stale read or
 * mo insertion): a scheduler choice whose non-default options each cost
 * one of that kind's budget. */
static int vf__choose_c11(int n, int kind)
{
    if (vf.ntrail >= VF_MAX_STEPS)
        vf_fail("more than %d choices in one execution (livelock?)", VF_MAX_STEPS);
    vf_choice *ch = &vf.trail[vf.ntrail];
    int c = 0;
    if (vf.ntrail < vf.nprefix) {
        if (vf.replay ? ch->choice >= n : ch->nopts != n)
            vf_fail("nondeterministic scenario: choice %d had %u options, now %d", vf.ntrail,
                    ch->nopts, n);
        c = ch->choice;
    } else {
        ch->choice = 0;
    }
    int *spent = kind == VF_KIND_MO ? &vf.nmo : &vf.nstale;
    ch->nopts = (uint16_t)n;
    ch->pre = (uint8_t)*spent;
    ch->cur_runnable = true;
    ch->kind = (uint8_t)kind;
    vf.ntrail++;
    if (c > 0)
        ++*spent;
    return c;
}

/* Where a store or RMW of the current thread goes in l's modification
 * order: an index p of the history, l->n (after the newest) by default.
 * It may go before newer stores that it is free to precede: p is allowed
 * iff it is above every store the thread has hb-observed (vf__lowest: the
 * newest store written or read by something that happens-before it; so no
 * store at p or above happens-before it, and an RMW's read of p - 1 is
 * coherent), and the store now at p is not an RMW (which must stay right
 * after the store it read). seq_cst operations stay newest (the global
 * clock's approximation of S). Each earlier place costs one mo insertion,
 * at most vf.mo_depth back.
 * A reduction: p is offered only if the thread depends on (read, or went
 * after in mo) a store of another thread made after the first-made of the
 * stores it would precede (vf__c.dep). Otherwise none of its steps since
 * then depends on anything made after that store, so scheduling them
 * before it is the same execution with this operation newest: an
 * interleaving the search explores itself (within its preemption bound).
 * This keeps a spinlock's exchange from being offered a place before every
 * unlock it has not seen, which would multiply the executions for nothing. */
static int vf__choose_mo(vf_loc *l, memory_order mo)
{
    int n = l->n, lo, k = 0, pos[VF_HIST + 1];
    uint32_t first = UINT32_MAX; /* the step of the first-made store above p */
    if (mo == memory_order_seq_cst || vf.nmo >= vf.mo_bound || n < 2)
        return n;
    lo = vf__lowest(l);
    pos[k++] = n;
    for (int p = n - 1; p > lo && p >= n - vf.mo_depth; p--) {
        if (vf__hist(l, p)->exec < first)
            first = vf__hist(l, p)->exec;
        if (!vf__hist(l, p)->rmw && first < vf__c.dep[vf.cur])
            pos[k++] = p;
    }
    if (k == 1)
        return n;
    int p = pos[vf__choose_c11(k, VF_KIND_MO)];
    if (p != n && vf.nsteps > 0)
        vf.steps[vf.nsteps - 1].mo = (int8_t)(n - p);
    return p;
}

static bool vf__c11_read(const void *addr, void *out, size_t size, memory_order mo)
{
    vf_loc *l = vf__loc(addr, size);
    if (mo == memory_order_seq_cst)
        vf__sc_enter();
    int lo = vf__lowest(l), newest = l->n - 1, pick = newest;
    if (lo < newest - vf.depth)
        lo = newest - vf.depth;
    if (mo != memory_order_seq_cst && lo < newest && vf.nstale < vf.stale_bound)
        pick = newest - vf__choose_c11(newest - lo + 1, VF_KIND_STALE);
    vf_c11_store *s = vf__hist(l, pick);
    vf__saw(s);
    (memcpy)(out, s->bytes, size);
    vf__acquire_from(s, mo);
    if (mo == memory_order_seq_cst)
        vf__sc_leave();
    if (pick != newest && vf.nsteps > 0)
        vf.steps[vf.nsteps - 1].stale = (int8_t)(newest - pick);
    vf__tick();
    return true;
}

static bool vf__c11_write(void *addr, const void *val, size_t size, memory_order mo)
{
    vf_loc *l = vf__loc(addr, size);
    if (mo == memory_order_seq_cst)
        vf__sc_enter();
    int p = vf__choose_mo(l, mo);
    bool newest = p == l->n;
    vf_c11_store *s = vf__insert(l, p, val, size, false);
    (memcpy)(s->rel, vf__is_rel(mo) ? vf__c.clk[vf.cur] : vf__c.relf[vf.cur], sizeof s->rel);
    if (newest) /* memory holds the newest store */
        (memcpy)(addr, val, size);
    if (mo == memory_order_seq_cst)
        vf__sc_leave();
    vf__tick();
    return true;
}

static void vf__rmw_pre(const void *addr, size_t size, memory_order mo)
{
    if (!vf.c11 || vf.cur < 0)
        return;
    vf_loc *l = vf__c.rmw = vf__loc(addr, size);
    if (mo == memory_order_seq_cst)
        vf__sc_enter();
    /* an RMW placed before newer stores reads the one before its place:
     * memory holds that for the operation, then the newest again */
    vf__c.rmw_pos = vf__choose_mo(l, mo);
    if (vf__c.rmw_pos < l->n)
        (memcpy)((void *)(uintptr_t)addr, vf__hist(l, vf__c.rmw_pos - 1)->bytes, size);
}

static void vf__rmw_post(const void *addr, size_t size, memory_order mo, bool stored)
{
    if (!vf.c11 || vf.cur < 0)
        return;
    vf_loc *l = vf__c.rmw;
    int p = vf__c.rmw_pos;
    bool newest = p == l->n;
    vf_c11_store *prev = vf__hist(l, p - 1);
    vf__saw(prev);
    vf__acquire_from(prev, mo);
    if (stored) {
        vf_vc rel;
        (memcpy)(rel, prev->rel, sizeof rel); /* the release sequence goes on */
        vf__vc_join(rel, vf__is_rel(mo) ? vf__c.clk[vf.cur] : vf__c.relf[vf.cur]);
        vf_c11_store *s = vf__insert(l, p, addr, size, true); /* memory holds the result */
        (memcpy)(s->rel, rel, sizeof rel);
    }
    if (!newest) /* memory holds the newest store again */
        (memcpy)((void *)(uintptr_t)addr, vf__hist(l, l->n - 1)->bytes, size);
    if (mo == memory_order_seq_cst)
        vf__sc_leave();
    vf__tick();
}

static void vf__c11_fence(memory_order mo)
{
    if (mo == memory_order_relaxed)
        return;
    int t = vf.cur;
    if (mo == memory_order_seq_cst)
        vf__sc_enter();
    if (vf__is_acq(mo))
        vf__vc_join(vf__c.clk[t], vf__c.acq[t]);
    if (vf__is_rel(mo))
        (memcpy)(vf__c.relf[t], vf__c.clk[t], sizeof(vf_vc));
    if (mo == memory_order_seq_cst)
        vf__sc_leave();
    vf__tick();
}

/* HEAVY (membarrier): a full fence on every thread at its current point,
 * paired with the caller's: happens-before both ways with each of them. */
static void vf__c11_heavy(void)
{
    int self = vf.cur;
    vf__c11_fence(memory_order_seq_cst);
    for (int t = 0; t < vf.sc->nthreads; t++) {
        if (t == self)
            continue;
        vf__vc_join(vf__c.clk[t], vf__c.acq[t]);
        vf__vc_join(vf__c.clk[self], vf__c.clk[t]);
    }
    for (int t = 0; t < vf.sc->nthreads; t++) {
        if (t == self)
            continue;
        vf__vc_join(vf__c.clk[t], vf__c.clk[self]);
        (memcpy)(vf__c.relf[t], vf__c.clk[t], sizeof(vf_vc));
        vf__c.clk[t][t]++;
    }
    (memcpy)(vf__c.relf[self], vf__c.clk[self], sizeof(vf_vc));
    vf__tick();
}

/* ---- the race detector (C11 mode): plain bytes, by happens-before ---- */

static vf_shadow *vf__shadow(uintptr_t a)
{
    uintptr_t h = a * 0x9E3779B97F4A7C15ull >> 7;
    for (unsigned i = 0; i < VF_SHADOW; i++) {
        vf_shadow *e = &vf__c.shadow[(h + i) % VF_SHADOW];
        if (e->gen != vf__c.gen) {
            memset(e, 0, sizeof *e);
            e->gen = vf__c.gen;
            e->addr = a;
            e->wtid = -1;
            return e;
        }
        if (e->addr == a)
            return e;
    }
    vf_fail("C11 mode: more than %d plain bytes tracked in one execution", VF_SHADOW);
    return NULL;
}

static const char *vf__base(const char *f)
{
    const char *b = f ? strrchr(f, '/') : NULL;
    return b ? b + 1 : (f ? f : "-");
}

static void vf__data(const void *p, size_t n, bool write, const char *file, int line)
{
    if (!vf.c11 || vf.cur < 0)
        return;
    int self = vf.cur;
    const uint32_t *c = vf__c.clk[self];
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)p + i;
        /* a thread's own stack is private unless a scenario says otherwise */
        if (a >= (uintptr_t)vf.th[self].stack && a < (uintptr_t)vf.th[self].stack + VF_STACK)
            continue;
        vf_shadow *e = vf__shadow(a);
        if (e->wtid >= 0 && e->wtid != self && e->wclk > c[e->wtid])
            vf_fail("data race on plain memory %p: T%d %s at %s:%d is not ordered by "
                    "happens-before after T%d's write at %s:%d",
                    (const void *)a, self, write ? "writes" : "reads", vf__base(file), line,
                    e->wtid, vf__base(e->wfile), e->wline);
        if (write) {
            for (int t = 0; t < VF_MAX_THREADS; t++)
                if (t != self && e->rclk[t] > c[t])
                    vf_fail("data race on plain memory %p: T%d writes at %s:%d, not ordered "
                            "by happens-before after T%d's read at %s:%d",
                            (const void *)a, self, vf__base(file), line, t,
                            vf__base(e->rfile[t]), e->rline[t]);
            e->wtid = (int8_t)self;
            e->wclk = c[self];
            e->wfile = file;
            e->wline = line;
        } else {
            e->rclk[self] = c[self];
            e->rfile[self] = file;
            e->rline[self] = line;
        }
    }
}

static void *vf__memcpy(void *dst, const void *src, size_t n, const char *file, int line)
{
    if (vf.c11 && vf.cur >= 0) {
        vf__data(src, n, false, file, line);
        vf__data(dst, n, true, file, line);
    }
    return (memcpy)(dst, src, n);
}

/* A scenario's own hand-off through plain memory (a flag it spins on)
 * stands for a real program's synchronisation (a mutex, a queue): in C11
 * mode vf_hb_release(key) after the write and vf_hb_acquire(key) after the
 * read make the writer's past happen-before the reader's future. They are
 * not scheduling points, so SC and TSO runs are unchanged. */
#define VF_HB_KEYS 16
static struct {
    const void *key[VF_HB_KEYS];
    uint32_t gen[VF_HB_KEYS];
    vf_vc vc[VF_HB_KEYS];
} vf__hb;

static vf_vc *vf__hb_slot(const void *key)
{
    for (int i = 0; i < VF_HB_KEYS; i++)
        if (vf__hb.gen[i] != vf__c.gen || vf__hb.key[i] == key) {
            if (vf__hb.gen[i] != vf__c.gen) {
                vf__hb.gen[i] = vf__c.gen;
                vf__hb.key[i] = key;
                memset(vf__hb.vc[i], 0, sizeof(vf_vc));
            }
            return &vf__hb.vc[i];
        }
    vf_fail("more than %d vf_hb keys", VF_HB_KEYS);
    return NULL;
}

static VF__UNUSED void vf_hb_release(const void *key)
{
    if (!vf.c11 || vf.cur < 0)
        return;
    vf__vc_join(*vf__hb_slot(key), vf__c.clk[vf.cur]);
    vf__tick();
}

static VF__UNUSED void vf_hb_acquire(const void *key)
{
    if (!vf.c11 || vf.cur < 0)
        return;
    vf__vc_join(vf__c.clk[vf.cur], *vf__hb_slot(key));
}

/* VF_COVER=<file> (C11 mode): every relaxed access that ran, once per
 * scenario, appended to <file> as "header:line scenario" (relaxed.sh). */
#define VF_COVER_MAX 1024
static struct {
    const char *file[VF_COVER_MAX];
    int line[VF_COVER_MAX];
    int n;
} vf__cov;

VF__UNUSED static void vf__cover(bool relaxed, const char *file, int line)
{
    if (!relaxed || !vf.c11 || vf.cur < 0)
        return;
    for (int i = 0; i < vf__cov.n; i++)
        if (vf__cov.line[i] == line && vf__cov.file[i] == file)
            return;
    if (vf__cov.n < VF_COVER_MAX) {
        vf__cov.file[vf__cov.n] = file;
        vf__cov.line[vf__cov.n++] = line;
    }
}

static void vf__cover_dump(const char *scenario)
{
    const char *path = getenv("VF_COVER");
    FILE *f = path && vf__cov.n ? fopen(path, "a") : NULL;
    for (int i = 0; f && i < vf__cov.n; i++)
        fprintf(f, "%s:%d %s\n", vf__base(vf__cov.file[i]), vf__cov.line[i], scenario);
    if (f)
        fclose(f);
    vf__cov.n = 0;
}

/* ---- the hooks, by mode ---- */

static bool vf__read(const void *addr, void *out, size_t size, memory_order mo)
{
    if (vf.cur < 0)
        return false;
    return vf.c11 ? vf__c11_read(addr, out, size, mo) : vf__tso_read(addr, out, size);
}

static bool vf__write(void *addr, const void *val, size_t size, memory_order mo)
{
    if (vf.cur < 0)
        return false;
    return vf.c11 ? vf__c11_write(addr, val, size, mo) : vf__tso_store(addr, val, size, mo);
}

static void vf__fence(memory_order mo)
{
    if (vf.cur < 0)
        return;
    if (vf.c11)
        vf__c11_fence(mo);
    else
        vf__tso_fence(mo);
}

/* ---- choices ---- */

typedef struct vf_opt {
    int tid;
    bool flush;
} vf_opt;

/* The invariant sees memory as a whole (no store buffer, no scheduling). */
static void vf__invariant(void)
{
    int self = vf.cur;
    if (!vf.sc->invariant)
        return;
    vf.cur = -1;
    vf.sc->invariant(vf.st);
    vf.cur = self;
}

/* Whether thread t has a buffered store to addr (its oldest one, if any). */
static bool vf__buffered(int t, const void *addr)
{
    const vf_thread *th = &vf.th[t];
    for (int i = 0; i < th->buf_len; i++)
        if (th->buf[(th->buf_head + i) % VF_BUF_MAX].addr == addr)
            return true;
    return false;
}

/*
 * The options at a choice point, default first: the current thread goes
 * on, another runnable thread runs, or (TSO, when the current thread is
 * about to read @addr) another thread's buffer is flushed up to its oldest
 * store to @addr, so the read sees it. Flushes only matter to a reader of
 * what they write, so they are offered there (again and again, one store
 * at a time, as long as some are left), not at every point.
 */
static int vf__options(vf_opt *o, bool *cur_runnable, const void *addr)
{
    int n = 0, cur = vf.cur;
    *cur_runnable = cur >= 0 && vf.th[cur].state == VF_RUNNABLE;
    if (*cur_runnable)
        o[n++] = (vf_opt){cur, false};
    for (int t = 0; t < vf.sc->nthreads; t++)
        if (t != cur && vf.th[t].state == VF_RUNNABLE)
            o[n++] = (vf_opt){t, false};
    if (addr && *cur_runnable)
        for (int t = 0; t < vf.sc->nthreads; t++)
            if (t != cur && vf__buffered(t, addr))
                o[n++] = (vf_opt){t, true};
    return n;
}

static void vf__flush_step(int t)
{
    if (vf.nsteps < VF_MAX_STEPS)
        vf.steps[vf.nsteps++] =
            (vf_step){(int8_t)t, -1, NULL, 0, vf.th[t].buf[vf.th[t].buf_head].addr, 0, 0};
    vf__flush_one(t);
    vf__invariant();
}

/* A spin: no choice, but fair progress. Flush one buffered store (what a
 * spinner may be waiting for), then pass the CPU round-robin to the next
 * runnable thread; the spinner goes on only if nobody else can. */
static int vf__pick_yield(void)
{
    int cur = vf.cur, n = vf.sc->nthreads;
    for (int i = 0; i < n; i++)
        if (vf.th[(cur + i) % n].buf_len) {
            vf__flush_step((cur + i) % n);
            break;
        }
    for (int i = 1; i <= n; i++)
        if (vf.th[(cur + i) % n].state == VF_RUNNABLE)
            return (cur + i) % n;
    return cur;
}

/* A future asked to be re-polled by a deadline (a back-off, or the
 * waitlist's confirm re-poll of ap_waitlist_register_cx). By default the
 * others go first, as for a spin; but the timer may also fire before
 * anybody else moves (the re-poll comes at once): that choice is explored
 * too and costs one preemption, so the search stays bounded. */
static int vf__pick_timer(void)
{
    int cur = vf.cur, n = vf.sc->nthreads, other = -1;
    for (int i = 1; i < n && other < 0; i++)
        if (vf.th[(cur + i) % n].state == VF_RUNNABLE)
            other = (cur + i) % n;
    if (other < 0 || vf.preempt >= vf.bound)
        return vf__pick_yield();
    int c = 0;
    if (vf.ntrail >= VF_MAX_STEPS)
        vf_fail("more than %d choices in one execution (livelock?)", VF_MAX_STEPS);
    vf_choice *ch = &vf.trail[vf.ntrail];
    if (vf.ntrail < vf.nprefix) {
        if (vf.replay ? ch->choice >= 2 : ch->nopts != 2)
            vf_fail("nondeterministic scenario: choice %d had %u options, now 2", vf.ntrail,
                    ch->nopts);
        c = ch->choice;
    } else {
        ch->choice = 0;
    }
    ch->nopts = 2;
    ch->pre = (uint8_t)vf.preempt;
    ch->cur_runnable = true;
    ch->kind = VF_KIND_SCHED;
    vf.ntrail++;
    if (c == 0)
        return vf__pick_yield();
    vf.preempt++;
    return cur;
}

/* Take one decision: returns the thread to run next, or -1 when every
 * thread is done and every buffer is flushed. Flushes are done here. */
static int vf__pick(const void *addr)
{
    for (;;) {
        vf_opt o[2 * VF_MAX_THREADS + 1];
        bool cur_runnable;
        int n = vf__options(o, &cur_runnable, addr);
        if (n == 0) {
            /* nobody can run: buffered stores still reach memory */
            for (int t = 0; t < vf.sc->nthreads; t++)
                if (vf.th[t].buf_len) {
                    vf__flush_step(t);
                    n = -1;
                    break;
                }
            if (n < 0)
                continue;
            for (int t = 0; t < vf.sc->nthreads; t++)
                if (vf.th[t].state == VF_PARKED)
                    vf_fail("lost wakeup or deadlock: nobody can run, T%d is parked "
                            "waiting for a wake that never comes", t);
            return -1;
        }
        int c = 0;
        if (n > 1) {
            if (vf.ntrail >= VF_MAX_STEPS)
                vf_fail("more than %d choices in one execution (livelock?)", VF_MAX_STEPS);
            vf_choice *ch = &vf.trail[vf.ntrail];
            if (vf.ntrail < vf.nprefix) {
                if (vf.replay ? ch->choice >= n : ch->nopts != n)
                    vf_fail("nondeterministic scenario: choice %d had %u options, now %d",
                            vf.ntrail, ch->nopts, n);
                c = ch->choice;
            } else {
                ch->choice = 0;
            }
            ch->nopts = (uint16_t)n;
            ch->pre = (uint8_t)vf.preempt;
            ch->cur_runnable = cur_runnable;
            ch->kind = VF_KIND_SCHED;
            vf.ntrail++;
            if (c > 0 && cur_runnable)
                vf.preempt++;
        }
        if (!o[c].flush)
            return o[c].tid;
        vf_thread *th = &vf.th[o[c].tid];
        bool hit;
        do { /* in order, through its oldest store to addr */
            hit = th->buf[th->buf_head].addr == addr;
            vf__flush_step(o[c].tid);
        } while (!hit);
    }
}

/* Hand the CPU to @next (which may be the caller). */
static void vf__switch(int next)
{
    int self = vf.cur;
    if (next == self)
        return;
    vf.next = next;
    swapcontext(&vf.th[self].ctx, &vf.main);
    vf.cur = self;
}

static void vf__point(int op, const void *addr, const char *file, int line)
{
    if (vf.cur < 0) /* outside the scheduler: set-up or final check */
        return;
    vf__invariant();
    vf__switch(op == VF_YIELD ? vf__pick_yield()
                               : vf__pick(vf.tso && (op == VF_LOAD || op == VF_RMW) ? addr : NULL));
    if (vf.nsteps >= VF_MAX_STEPS)
        vf_fail("more than %d steps in one execution (livelock?)", VF_MAX_STEPS);
    vf.steps[vf.nsteps++] = (vf_step){(int8_t)vf.cur, (int8_t)op, file, line, addr, 0, 0};
}

static void vf_yield(void)
{
    vf__point(VF_YIELD, NULL, __FILE__, __LINE__);
}

/* A future on the coroutine's stack is done with when vf_wait/vf_poll
 * return, and the frame is reused; real x86 would keep the library's late
 * buffered stores to it in order with the reuse, but plain stores are not
 * buffered here. So: flush in order through the last buffered store that
 * targets this thread's own stack. */
static void vf__flush_own_stack(void)
{
    vf_thread *th = &vf.th[vf.cur];
    int last = -1;
    for (int i = 0; i < th->buf_len; i++) {
        char *a = th->buf[(th->buf_head + i) % VF_BUF_MAX].addr;
        if (a >= th->stack && a < th->stack + VF_STACK)
            last = i;
    }
    for (; last >= 0; last--)
        vf__flush_step(vf.cur);
}

static void vf__wake(void *ctx)
{
    vf_thread *th = ctx;
    th->woken = true;
    if (th->state == VF_PARKED)
        th->state = VF_RUNNABLE;
}

/* Drive @f to completion on the current virtual thread: poll, and park
 * until the waker is called. A future that wakes itself is re-polled after
 * a free switch; one that asks for a re-poll by a deadline (a back-off, the
 * waitlist's confirm re-poll) after a timer choice (vf__pick_timer). */
static inline void vf_wait(ap_future *f)
{
    vf_thread *th = &vf.th[vf.cur];
    for (;;) {
        th->woken = false;
        ap_cx cx = {{vf__wake, th}, vf.now, UINT64_MAX};
        if (f->poll(f, &cx) == AP_READY) {
            vf__flush_own_stack();
            return;
        }
        if (th->woken) {
            vf_yield();
        } else if (cx.deadline != UINT64_MAX) {
            vf__invariant();
            vf__switch(vf__pick_timer());
            if (vf.nsteps >= VF_MAX_STEPS)
                vf_fail("more than %d steps in one execution (livelock?)", VF_MAX_STEPS);
            vf.steps[vf.nsteps++] =
                (vf_step){(int8_t)vf.cur, (int8_t)VF_YIELD, __FILE__, __LINE__, NULL, 0, 0};
        } else {
            th->state = VF_PARKED;
            vf__switch(vf__pick(NULL));
        }
    }
}

/* Poll @f once on the current virtual thread (for tests that cancel). */
static inline ap_poll vf_poll(ap_future *f)
{
    vf_thread *th = &vf.th[vf.cur];
    ap_cx cx = {{vf__wake, th}, vf.now, UINT64_MAX};
    ap_poll r = f->poll(f, &cx);
    vf__flush_own_stack();
    return r;
}

static void vf__entry(void)
{
    int id = vf.cur;
    vf.sc->thread(vf.st, id);
    vf.th[id].state = VF_DONE;
    /* back to vf.main through uc_link */
}

/* One execution along the current prefix. */
static void vf__execute(void)
{
    vf.ntrail = 0;
    vf.nsteps = 0;
    vf.preempt = 0;
    vf.now = 1000000;
    vf.cur = -1;
    if (vf.c11)
        vf__c11_reset();
    vf.st = vf.sc->setup ? vf.sc->setup() : NULL;
    for (int t = 0; t < vf.sc->nthreads; t++) {
        vf_thread *th = &vf.th[t];
        th->state = VF_RUNNABLE;
        th->woken = false;
        th->buf_head = th->buf_len = 0;
        getcontext(&th->ctx);
        th->ctx.uc_stack.ss_sp = th->stack;
        th->ctx.uc_stack.ss_size = VF_STACK;
        th->ctx.uc_link = &vf.main;
        makecontext(&th->ctx, vf__entry, 0);
    }
    int next = vf__pick(NULL);
    while (next >= 0) {
        vf.cur = next;
        vf.next = -1;
        swapcontext(&vf.main, &vf.th[next].ctx);
        if (vf.th[vf.cur].state == VF_DONE) /* it returned: pick for it */
            next = vf__pick(NULL);
        else
            next = vf.next;
    }
    vf.cur = -1;
    if (vf.sc->check)
        vf.sc->check(vf.st);
    if (vf.sc->teardown)
        vf.sc->teardown(vf.st);
}

/* The next prefix in depth-first order within the bound, or false. */
static bool vf__backtrack(void)
{
    for (int j = vf.ntrail - 1; j >= 0; j--) {
        vf_choice *c = &vf.trail[j];
        int cost = c->cur_runnable ? 1 : 0;
        int budget = c->kind == VF_KIND_STALE ? vf.stale_bound
                     : c->kind == VF_KIND_MO  ? vf.mo_bound
                                              : vf.bound;
        if (c->choice + 1 < c->nopts && c->pre + cost <= budget) {
            c->choice++;
            vf.nprefix = j + 1;
            return true;
        }
    }
    return false;
}

static bool vf__parse_replay(const char *name)
{
    const char *r = getenv("VF_REPLAY");
    size_t n = strlen(name);
    if (!r || strncmp(r, name, n) != 0 || r[n] != ':')
        return false;
    vf.nprefix = 0;
    for (const char *p = r + n + 1; *p;) {
        char *end;
        unsigned long i = strtoul(p, &end, 10), c;
        if (end == p || *end != '=' || i >= VF_MAX_STEPS)
            break;
        c = strtoul(end + 1, &end, 10);
        vf.trail[i].choice = (uint16_t)c;
        if ((int)i + 1 > vf.nprefix)
            vf.nprefix = (int)i + 1;
        p = *end ? end + 1 : end;
    }
    return true;
}

/*
 * vf_explore - run @sc under every schedule within its preemption bound
 * Prints one line; exits 1 (with the schedule) on the first failure.
 * Returns the number of executions. VF_REPLAY=<name>:<choices> runs only
 * that schedule of that scenario, with a full trace.
 */
static unsigned long vf_explore(const vf_scenario *sc)
{
    const char *only = getenv("VF_REPLAY");
    memset(&vf.trail, 0, sizeof vf.trail);
    vf.sc = sc;
    /* VF_MODE=c11: the scenarios that run under TSO run under the C11
     * model instead (the SC ones are skipped) */
    const char *mode = getenv("VF_MODE");
    vf.c11 = mode && strcmp(mode, "c11") == 0;
    if (vf.c11 && !sc->tso && !sc->c11)
        return 0;
    vf.tso = sc->tso && !vf.c11;
    vf.bound = sc->bound ? sc->bound : 2;
    const char *e = getenv("VF_C11_STALE");
    vf.stale_bound = e ? atoi(e) : VF_C11_STALE;
    e = getenv("VF_C11_DEPTH");
    vf.depth = e ? atoi(e) : VF_C11_DEPTH;
    e = getenv("VF_C11_MO");
    vf.mo_bound = e ? atoi(e) : VF_C11_MO;
    e = getenv("VF_C11_MO_DEPTH");
    vf.mo_depth = e ? atoi(e) : VF_C11_MO_DEPTH;
    if (vf.c11) { /* the stale reads take the place of preemptions */
        e = getenv("VF_C11_CUT");
        vf.bound -= e ? atoi(e) : VF_C11_CUT;
        if (vf.bound < 1)
            vf.bound = 1;
    }
    /* VF_NO_ASYM=1: membarrier registration "refused" (tests/verify/run.sh) */
    vf_no_asym = getenv("VF_NO_ASYM") != NULL;
    vf.replay = false;
    for (int t = 0; t < sc->nthreads; t++)
        if (!vf.th[t].stack && !(vf.th[t].stack = malloc(VF_STACK)))
            vf_fail("out of memory");
    if (only) {
        if (!vf__parse_replay(sc->name))
            return 0;
        vf.replay = true;
        vf.bound = 1 << 20;
        vf__execute();
        printf("replayed %s: %d choices, %d steps, no failure\n", sc->name, vf.ntrail,
               vf.nsteps);
        vf__print_trace(stdout, 0);
        return 1;
    }
    const char *filt = getenv("VF_ONLY");
    if (filt && !strstr(sc->name, filt))
        return 0;
    const char *lim = getenv("VF_MAX_EXECS");
    unsigned long max_execs = lim ? strtoul(lim, NULL, 10) : 0;
    vf.nprefix = 0;
    unsigned long execs = 0;
    int maxsteps = 0;
    do {
        vf__execute();
        execs++;
        if (vf.nsteps > maxsteps)
            maxsteps = vf.nsteps;
    } while ((!max_execs || execs < max_execs) && vf__backtrack());
    char stale[64] = "";
    if (vf.c11)
        vf__cover_dump(sc->name);
    if (vf.c11)
        snprintf(stale, sizeof stale, ", stale %d depth %d, mo %d depth %d", vf.stale_bound,
                 vf.depth, vf.mo_bound, vf.mo_depth);
    printf("ok   %-40s [%s, %d threads, bound %d%s] %lu executions, <= %d steps\n", sc->name,
           vf__mode(), sc->nthreads, vf.bound, stale, execs, maxsteps);
    fflush(stdout);
    return execs;
}

#endif /* ASYNCPAT_VF_H */
