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
 *   Compare-exchange-weak never fails spuriously here. Behaviours weaker
 *   than TSO (ARM, POWER) are not modelled: the headers argue them.
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

enum { VF_LOAD, VF_STORE, VF_RMW, VF_FENCE, VF_YIELD };

static void vf__point(int op, const void *addr, const char *file, int line);
static bool vf__tso_read(const void *addr, void *out, size_t size);
static bool vf__tso_store(void *addr, const void *val, size_t size, memory_order mo);
static void vf__tso_fence(memory_order mo);
static void vf_yield(void);
static void vf_fail(const char *fmt, ...);

#define VF__AT(op, p) vf__point((op), (p), __FILE__, __LINE__)
/* The value type of an atomic object: an rvalue drops _Atomic. */
#define VF__T(p) __typeof__((void)0, *(p))

#define AP_ATOMIC_INIT(p, v) atomic_init((p), (v))
#define AP_ATOMIC_LOAD(p, mo)                                                   \
    __extension__({                                                             \
        __auto_type vf_p_ = (p);                                                \
        VF__T(vf_p_) vf_v_;                                                     \
        (void)(mo);                                                             \
        VF__AT(VF_LOAD, vf_p_);                                                 \
        if (!vf__tso_read(vf_p_, &vf_v_, sizeof vf_v_))                         \
            vf_v_ = atomic_load_explicit(vf_p_, memory_order_relaxed);          \
        vf_v_;                                                                  \
    })
#define AP_ATOMIC_STORE(p, v, mo)                                               \
    __extension__({                                                             \
        __auto_type vf_p_ = (p);                                                \
        VF__T(vf_p_) vf_v_ = (v);                                               \
        VF__AT(VF_STORE, vf_p_);                                                \
        if (!vf__tso_store(vf_p_, &vf_v_, sizeof vf_v_, (mo)))                  \
            atomic_store_explicit(vf_p_, vf_v_, memory_order_relaxed);          \
        (void)0;                                                                \
    })
/* An RMW: a scheduling point, then (TSO) drain this thread's buffer, then
 * the operation itself, all in one step. */
#define VF__RMW(p, expr)                                                        \
    __extension__({                                                             \
        __auto_type vf_p_ = (p);                                                \
        VF__AT(VF_RMW, vf_p_);                                                  \
        vf__tso_fence(memory_order_seq_cst);                                    \
        expr;                                                                   \
    })
#define AP_ATOMIC_EXCHANGE(p, v, mo) \
    VF__RMW(p, atomic_exchange_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_CAS_WEAK(p, expp, v, mo_ok, mo_fail)                              \
    VF__RMW(p, atomic_compare_exchange_strong_explicit(vf_p_, (expp), (v),          \
                                                       memory_order_relaxed,        \
                                                       memory_order_relaxed))
#define AP_ATOMIC_CAS_STRONG(p, expp, v, mo_ok, mo_fail) \
    AP_ATOMIC_CAS_WEAK(p, expp, v, mo_ok, mo_fail)
#define AP_ATOMIC_FETCH_ADD(p, v, mo) \
    VF__RMW(p, atomic_fetch_add_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_FETCH_SUB(p, v, mo) \
    VF__RMW(p, atomic_fetch_sub_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_FETCH_OR(p, v, mo) \
    VF__RMW(p, atomic_fetch_or_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_FETCH_AND(p, v, mo) \
    VF__RMW(p, atomic_fetch_and_explicit(vf_p_, (v), memory_order_relaxed))
#define AP_ATOMIC_FENCE(mo) (VF__AT(VF_FENCE, NULL), vf__tso_fence(mo))

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

#include "asyncpat/future.h"

/* ---- the scenario interface ---- */

#define VF_MAX_THREADS 4

typedef struct vf_scenario {
    const char *name;
    int nthreads;
    bool tso;                       /* x86-TSO store buffers */
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

typedef struct vf_choice {
    uint16_t choice, nopts;
    uint8_t pre;       /* preemptions spent before this choice */
    bool cur_runnable; /* whether "go on" was option 0 (the others cost 1) */
} vf_choice;

typedef struct vf_step {
    int8_t tid;  /* thread that acted */
    int8_t op;   /* VF_* or -1 for a flush */
    const char *file;
    int line;
    const void *addr;
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
} vf;

/* Fake clock for scenarios that need one: constant unless a test moves it. */
static inline uint64_t vf_now(void) { return vf.now; }
static inline void vf_set_now(uint64_t t) { vf.now = t; }
static inline int vf_self(void) { return vf.cur; }

static const char *vf__opname(int op)
{
    static const char *n[] = {"load", "store", "rmw", "fence", "yield"};
    return op < 0 ? "flush" : n[op];
}

static void vf__print_schedule(FILE *f)
{
    /* sparse: the choices that were not the default, as index=option */
    int first = 1;
    fprintf(f, "VF_REPLAY='%s:", vf.sc->name);
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
        fprintf(f, "  %5d  T%d %-5s %-24s %s:%d\n", i, s->tid, vf__opname(s->op),
                "", file ? file + 1 : (s->file ? s->file : "-"), s->line);
    }
}

static void vf_fail(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    if (vf.replay)
        fprintf(stderr, "FAIL %s [%s, replay]: ", vf.sc->name, vf.tso ? "TSO" : "SC");
    else
        fprintf(stderr, "FAIL %s [%s, bound %d]: ", vf.sc->name, vf.tso ? "TSO" : "SC", vf.bound);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  thread T%d, after %d steps, %d preemptions; schedule:\n  ", vf.cur,
            vf.nsteps, vf.preempt);
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
    memcpy(s->addr, s->bytes, s->size); /* one OS thread: plain memory */
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
            memcpy(out, s->bytes, size);
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

static __attribute__((unused)) void vf__heavy(void)
{
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
    memcpy(s->bytes, val, size);
    th->buf_len++;
    return true;
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
            (vf_step){(int8_t)t, -1, NULL, 0, vf.th[t].buf[vf.th[t].buf_head].addr};
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
    vf.steps[vf.nsteps++] = (vf_step){(int8_t)vf.cur, (int8_t)op, file, line, addr};
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
            vf.steps[vf.nsteps++] = (vf_step){(int8_t)vf.cur, (int8_t)VF_YIELD, __FILE__, __LINE__, NULL};
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
        if (c->choice + 1 < c->nopts && c->pre + cost <= vf.bound) {
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
    vf.tso = sc->tso;
    vf.bound = sc->bound ? sc->bound : 2;
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
    printf("ok   %-40s [%s, %d threads, bound %d] %lu executions, <= %d steps\n", sc->name,
           vf.tso ? "TSO" : "SC", sc->nthreads, vf.bound, execs, maxsteps);
    fflush(stdout);
    return execs;
}

#endif /* ASYNCPAT_VF_H */
