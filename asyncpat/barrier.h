/*
 * asyncpat/barrier.h -- reusable (cyclic) barrier with generations, a
 * leader per generation, arrive_and_drop and a cancellation policy
 *
 * PATTERN
 *   N parties meet at the barrier again and again. Each meeting is a
 *   generation: a party arrives and waits until all N have arrived; the
 *   last one to arrive is the generation's leader. The leader runs the
 *   completion function (fn, ctx) given at init, if any, and only then
 *   releases the others and opens the next generation (the design of
 *   C++20 std::barrier and Java's CyclicBarrier). arrive_and_drop makes a
 *   party leave for good: it counts as arrived for the current generation
 *   and later generations wait for one party fewer (Java's Phaser,
 *   std::barrier::arrive_and_drop).
 *
 *   The whole state is one 64-bit atomic word:
 *     bit 63      BROKEN
 *     bits 40..62 generation number (mod 2^23)
 *     bits 20..39 parties expected in this generation
 *     bits  0..19 parties arrived in this generation
 *   An arrival is one CAS on it; the arrival that makes arrived == parties
 *   is the leader. "arrived == parties" is the COMPLETE state: the leader
 *   runs fn there, then stores (generation + 1, parties, 0), which
 *   releases everybody. Waiters spin briefly on the word, then wait on an
 *   ap_waitlist (the blocking form drives the wait future with
 *   ap_block_on_until, so it parks on its futex).
 *
 *   Cancellation policy (chosen at init; a timed wait that times out is a
 *   cancel):
 *     AP_BARRIER_POLICY_WITHDRAW  a cancelled wait takes its arrival back if its
 *                          generation has not completed, so the others are
 *                          not stuck waiting for an arrival that left; the
 *                          generation completes when that party arrives
 *                          again (or drops).
 *     AP_BARRIER_POLICY_BREAK     a cancelled wait whose generation has not
 *                          completed breaks the barrier: every current
 *                          waiter and every later wait completes at once
 *                          with AP_CANCELED, and ap_barrier_is_broken()
 *                          says why, until ap_barrier_reset.
 *   (A broken barrier answers AP_CANCELED, not a status of its own:
 *   ap_barrier_is_broken tells a broken barrier from a cancel.)
 *
 *   How a waiter learns its outcome: completions advance the generation by
 *   1, ap_barrier_reset by 2. While a party waits in generation g, at most
 *   one completion can happen (g+1 cannot complete without it: it is one of
 *   the expected parties and has not arrived there), so an odd distance
 *   from g means "my generation completed" and an even, non-zero distance
 *   (or BROKEN still at g) means "broken or reset under me". The counter
 *   has 23 bits: the rule holds as long as fewer than 2^22 resets happen
 *   during one wait (a wrapped wait ends AP_CANCELED when cancelled, and
 *   never corrupts the word). A break clears the arrivals, so a broken
 *   barrier never looks COMPLETE and arrive_and_drop on it never waits.
 *
 * USAGE
 *   static void step_done(void *ctx) { swap_buffers(ctx); }   // once per round
 *   ap_barrier b;
 *   if (ap_barrier_init(&b, nthreads, AP_BARRIER_POLICY_BREAK, step_done, &grid) != AP_OK) abort();
 *   // in each of the nthreads workers:
 *   for (;;) {
 *       compute_my_part(&grid);
 *       if (ap_barrier_wait(&b, AP_DEADLINE_NONE) != AP_OK)
 *           break;                         // broken: somebody gave up
 *   }
 *   // in an event loop: ap_barrier_wait_fut f; ap_barrier_wait_fut_init(&f, &b);
 *   // ap_barrier_wait_poll(&f, &cx) until AP_READY; ap_barrier_wait_status(&f),
 *   // f.is_leader
 *
 * GUARANTEES (invariants the tests check)
 *   - no party passes generation g before every expected party arrived at
 *     g: after any wait of round r returns AP_OK, the parties' shared
 *     arrival counter equals N * r
 *   - exactly one leader per generation (an AP_OK wait with is_leader, or
 *     the arrive_and_drop that completed it); fn runs exactly once per
 *     generation, on the leader, before any other party is released
 *   - WITHDRAW: a cancelled or timed-out wait whose generation had not
 *     completed leaves the barrier as if it had never arrived; one whose
 *     generation had completed reports AP_OK (it passed: nothing is lost)
 *   - BREAK: after a cancel or timeout that broke it, every waiter of that
 *     generation and every later arrival gets AP_CANCELED until reset;
 *     reset starts a fresh generation with the current party count, and
 *     waiters caught by a reset of an unbroken barrier get AP_CANCELED
 *   - parties == 0 or above AP_BARRIER_PARTIES_MAX at init is AP_INVAL; a
 *     wait on a barrier that every party has dropped is AP_INVAL
 *
 * CONCURRENCY       wait  future  drop  reset  is_broken  parties  fini
 *   any of them      yes    yes    yes   yes      yes        yes     no
 *   Use rules: at most `parties` parties take part per generation (a party
 *   arrives once per generation: one wait, one future, or one drop); fn
 *   must not call into the same barrier. A future is polled and cancelled
 *   by one thread at a time (future.h).
 *   Progress: an arrival is lock-free (a CAS that fails only when another
 *   party changed the word). Waiting is blocking by nature. A cancel, a
 *   reset or an arrival that finds a generation COMPLETE (its leader inside
 *   fn) waits for the leader's release with spin-then-yield back-off, so it
 *   blocks for as long as fn runs. Registering, waking and cancelling a
 *   waiter take the waitlist's short lock.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   arrival, drop, is_broken: O(1) (CAS loop); release with k
 *              registered waiters: O(k); register/cancel of a future: O(1).
 * MEMORY       an ap_barrier in caller memory (two cache lines); a future
 *              embeds its waiter node. Nothing allocates.
 * ERRORS       AP_NOT_READY (a wait future still pending), AP_INVAL (bad
 *              init; every party dropped), AP_CANCELED (broken
 *              or reset under a waiter; a cancelled future), AP_TIMEDOUT
 *              (ap_barrier_wait past its deadline: arrival withdrawn or
 *              barrier broken, per the policy). NULL or finished barriers
 *              trip AP_ASSERT.
 * CONFIG       AP_CACHELINE, AP_SPIN_LIMIT (the blocking wait spins
 *              4 * AP_SPIN_LIMIT times before it parks), AP_ASSERT,
 *              AP_TEST_YIELD
 * SEE ALSO     waitlist.h (the ladder), future.h (the waker contract),
 *              tests/test_barrier.c, bench/bench_barrier.c
 * STABILITY    experimental (0.x)
 */
#ifndef ASYNCPAT_BARRIER_H
#define ASYNCPAT_BARRIER_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

/** AP_BARRIER_PARTIES_MAX - the most parties a barrier can have */
#define AP_BARRIER_PARTIES_MAX ((uint32_t)((1u << 20) - 1u))

/** What a cancelled or timed-out wait does (see the header comment). */
typedef enum ap_barrier_policy {
    AP_BARRIER_POLICY_WITHDRAW = 0,
    AP_BARRIER_POLICY_BREAK = 1
} ap_barrier_policy;

typedef struct ap_barrier {
    /* BROKEN | gen << 40 | parties << 20 | arrived: written by every arrival */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) state;
    /* read-mostly from here */
    AP_ALIGNAS(AP_CACHELINE) void (*fn)(void *ctx); /* completion function or NULL */
    void *ctx;
    ap_barrier_policy policy;
    uint32_t live; /* 1 between init and fini */
    ap_waitlist wl;
} ap_barrier;

AP_STATIC_ASSERT(offsetof(ap_barrier, fn) - offsetof(ap_barrier, state) >= AP_CACHELINE,
               "ap_barrier: the state word must have its own cache line");

/**
 * ap_barrier_stats - counters (ap_barrier_stats_get; a snapshot, exact at
 * quiescence). Arrivals count nothing: the state word already says where
 * the generation stands; waits and wait_ns are the waiting side's.
 */
typedef struct ap_barrier_stats {
    uint64_t parties;    /* parties expected in this generation */
    uint64_t arrived;    /* parties arrived in this generation */
    uint64_t generation; /* generation number (mod 2^23) */
    uint64_t broken;     /* 1 if broken */
    uint64_t waiters;    /* wait futures queued now */
    uint64_t waits;      /* times a party queued (a future or _wait past its spin) */
    uint64_t wait_ns;    /* ns parked in ap_barrier_wait(_leader) (ap_now_ns;
                          * only parties that parked) */
} ap_barrier_stats;

/*
 * A wait future (caller memory). status is AP_NOT_READY while pending, then
 * AP_OK (the generation completed; is_leader says whether this party was
 * its leader and ran fn), AP_CANCELED (broken, reset, or cancelled before
 * its generation completed) or AP_INVAL (every party has dropped).
 */
typedef struct ap_barrier_wait_fut {
    ap_future base; /* first: (ap_future *)f is the future */
    ap_barrier *b;
    ap_waiter waiter;
    uint32_t gen;   /* the generation it arrived in (valid once arrived) */
    ap_status status;
    bool arrived;
    bool is_leader; /* valid once status is AP_OK */
    bool undid;     /* cancel withdrew our arrival or broke the barrier itself */
} ap_barrier_wait_fut;

/**
 * ap_barrier_init - a barrier of @parties parties
 * @policy: AP_BARRIER_POLICY_WITHDRAW or AP_BARRIER_POLICY_BREAK
 * @fn:     completion function, run by each generation's leader before the
 *          others are released; NULL for none. It must not call into @b.
 *
 * Returns AP_OK, or AP_INVAL (parties 0 or above AP_BARRIER_PARTIES_MAX, or
 * an unknown policy) and then *b is untouched.
 */
AP_API AP_NODISCARD ap_status ap_barrier_init(ap_barrier *b, uint32_t parties,
                                              ap_barrier_policy policy,
                                              void (*fn)(void *ctx), void *ctx);

/** ap_barrier_fini - end of life (no party may be waiting); frees nothing */
AP_API void ap_barrier_fini(ap_barrier *b);

/**
 * ap_barrier_wait - arrive and block until the generation completes
 * @deadline_ns: on ap_now_ns's clock (the barrier takes no `now` anywhere,
 *               so it has no clock of its own: time.h, CLOCKS);
 *               AP_DEADLINE_NONE to wait for ever
 *
 * Returns AP_OK (everybody arrived; fn has run), AP_CANCELED (the barrier
 * is or became broken, or was reset under us: see ap_barrier_is_broken),
 * AP_TIMEDOUT (the deadline passed first; the arrival was withdrawn or the
 * barrier broken, per the policy) or AP_INVAL (every party has dropped).
 * A wait whose generation completed while it timed out returns AP_OK.
 * Ordering: see ORDERING; spins 4 * AP_SPIN_LIMIT times, then parks.
 */
AP_API AP_NODISCARD ap_status ap_barrier_wait(ap_barrier *b, ap_deadline deadline_ns);

/** ap_barrier_wait_leader - ap_barrier_wait that also reports, on AP_OK,
 *  whether this party was the generation's leader (@is_leader may be NULL) */
AP_API AP_NODISCARD ap_status ap_barrier_wait_leader(ap_barrier *b, ap_deadline deadline_ns,
                                                     bool *is_leader);

/**
 * ap_barrier_arrive_and_drop - arrive at the current generation and leave
 *                              the barrier for good
 *
 * Later generations expect one party fewer. If this completes the current
 * generation, the caller is its leader: it runs fn and releases the others
 * (and *is_leader, if not NULL, is set). Never waits, except behind a
 * leader inside fn. Returns AP_OK, or AP_INVAL when no party is left to
 * drop. On a broken barrier the party still leaves (AP_OK), so a reset
 * later expects one fewer.
 * Ordering: acq_rel CAS; a completing drop releases like a leader.
 */
AP_API AP_NODISCARD ap_status ap_barrier_arrive_and_drop(ap_barrier *b, bool *is_leader);

/**
 * ap_barrier_reset - mend a broken barrier: start a fresh generation with
 *                    the current party count
 *
 * Waiters of the generation it replaces (broken or not) complete with
 * AP_CANCELED. Waits for a leader inside fn to finish first.
 */
AP_API void ap_barrier_reset(ap_barrier *b);

/** ap_barrier_is_broken - whether a BREAK-policy cancel broke it (until reset) */
AP_API bool ap_barrier_is_broken(ap_barrier *b);
/** ap_barrier_parties - parties the current generation expects (snapshot) */
AP_API uint32_t ap_barrier_parties(ap_barrier *b);
/** ap_barrier_arrived - parties arrived in the current generation (snapshot) */
AP_API uint32_t ap_barrier_arrived(ap_barrier *b);
/** ap_barrier_generation - completed generations + 2 * resets, mod 2^23 (snapshot) */
AP_API uint32_t ap_barrier_generation(ap_barrier *b);
/** ap_barrier_stats_get - the counters into *@out (snapshot; any thread) */
AP_API void ap_barrier_stats_get(ap_barrier *b, ap_barrier_stats *out);

/**
 * ap_barrier_wait_fut_init / _poll / _cancel / _status: an async wait. The
 * first poll arrives (and, as the last arriver, completes the generation
 * at once as its leader, running fn inside the poll); later polls wait for
 * the generation to complete. Cancel is idempotent and safe at any time:
 * before the first poll it just marks the future AP_CANCELED; after it, it
 * applies the policy (withdraw the arrival, or break the barrier) if the
 * generation has not completed, or leaves AP_OK if it has. After cancel or
 * READY the waker is never called again.
 */
AP_API void ap_barrier_wait_fut_init(ap_barrier_wait_fut *f, ap_barrier *b);
AP_API ap_poll ap_barrier_wait_poll(ap_barrier_wait_fut *f, ap_cx *cx);
AP_API void ap_barrier_wait_cancel(ap_barrier_wait_fut *f);
/** ap_barrier_wait_status - AP_NOT_READY while pending, then the result */
AP_API AP_NODISCARD ap_status ap_barrier_wait_status(const ap_barrier_wait_fut *f);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Happens-before: every arrival CAS is acq_rel and RMWs continue release
 *   sequences, so what each party did before arriving happens-before the
 *   leader's fn; the leader's release store of the next generation is
 *   seq_cst (a release), read by the waiters' acquire loads, so fn and all
 *   the pre-arrival writes of every party happen-before every party's
 *   return from the wait. (A barrier is the classic all-to-all edge.)
 *   Lost wakeups (THE LADDER of waitlist.h):
 *     waiting side (poll)                     releasing side (leader, break, reset)
 *     ap_waitlist_register: count++ seq_cst   store/CAS of the word, seq_cst
 *       then a seq_cst fence                  has_waiters: seq_cst load of count
 *     re-check: seq_cst load of the word      if waiters: wake_all
 *   In the total order S either the releaser's load sees the registration
 *   and wakes it, or it precedes it, and then the release precedes the
 *   waiter's re-check load, which sees the new generation and completes.
 */

#define AP__BAR_ARRIVED_MASK UINT64_C(0xFFFFF)
#define AP__BAR_PARTIES_SHIFT 20
#define AP__BAR_GEN_SHIFT 40
#define AP__BAR_GEN_MASK UINT32_C(0x7FFFFF) /* 23 bits */
#define AP__BAR_BROKEN (UINT64_C(1) << 63)

AP_FORCE_INLINE uint32_t ap__bar_arrived(uint64_t s)
{
    return (uint32_t)(s & AP__BAR_ARRIVED_MASK);
}
AP_FORCE_INLINE uint32_t ap__bar_parties(uint64_t s)
{
    return (uint32_t)((s >> AP__BAR_PARTIES_SHIFT) & AP__BAR_ARRIVED_MASK);
}
AP_FORCE_INLINE uint32_t ap__bar_gen(uint64_t s)
{
    return (uint32_t)(s >> AP__BAR_GEN_SHIFT) & AP__BAR_GEN_MASK;
}
AP_FORCE_INLINE uint64_t ap__bar_make(uint32_t gen, uint32_t parties, uint32_t arrived)
{
    return ((uint64_t)(gen & AP__BAR_GEN_MASK) << AP__BAR_GEN_SHIFT) |
           ((uint64_t)parties << AP__BAR_PARTIES_SHIFT) | (uint64_t)arrived;
}
/* COMPLETE: everybody arrived, the leader is (or is about to be) in fn. */
AP_FORCE_INLINE bool ap__bar_complete(uint64_t s)
{
    return ap__bar_parties(s) != 0 && ap__bar_arrived(s) == ap__bar_parties(s);
}

/* The outcome for a party that arrived in generation @gen, from word @s:
 * AP_NOT_READY (still waiting), AP_OK (completed) or AP_CANCELED (broken or
 * reset under it). See "How a waiter learns its outcome". */
AP_FORCE_INLINE ap_status ap__bar_outcome(uint64_t s, uint32_t gen)
{
    uint32_t d = (ap__bar_gen(s) - gen) & AP__BAR_GEN_MASK;
    if (d == 0)
        return (s & AP__BAR_BROKEN) ? AP_CANCELED : AP_NOT_READY;
    return (d & 1u) ? AP_OK : AP_CANCELED;
}

AP_API ap_status ap_barrier_init(ap_barrier *b, uint32_t parties, ap_barrier_policy policy,
                                 void (*fn)(void *ctx), void *ctx)
{
    AP_ASSERT(b != NULL);
    if (parties == 0 || parties > AP_BARRIER_PARTIES_MAX ||
        (policy != AP_BARRIER_POLICY_WITHDRAW && policy != AP_BARRIER_POLICY_BREAK))
        return AP_INVAL;
    AP_ATOMIC_INIT(&b->state, ap__bar_make(0, parties, 0));
    b->fn = fn;
    b->ctx = ctx;
    b->policy = policy;
    b->live = 1;
    ap_waitlist_init(&b->wl);
    return AP_OK;
}

AP_API void ap_barrier_fini(ap_barrier *b)
{
    AP_ASSERT(b != NULL && b->live);
    AP_ASSERT(!ap_waitlist_has_waiters(&b->wl)); /* every build: one load */
    b->live = 0;
}

/* The leader, holding COMPLETE word @s: run fn, then open the next
 * generation (arrived 0), which releases everybody. Nothing else writes
 * the word while it is COMPLETE (every writer backs off), so a store. */
AP_API void ap__bar_release(ap_barrier *b, uint64_t s)
{
    if (b->fn)
        b->fn(b->ctx);
    AP_TEST_YIELD(); /* fn done, others not yet released */
    /* seq_cst: a release (fn and every party's pre-arrival writes, which
     * reached us through the acq_rel arrival CASes, happen-before each
     * waiter's acquire load of the new generation), and the releasing
     * side's SC write of the ladder, before has_waiters' SC load. */
    AP_ATOMIC_STORE(&b->state, ap__bar_make(ap__bar_gen(s) + 1u, ap__bar_parties(s), 0),
                    memory_order_seq_cst);
    if (ap_waitlist_has_waiters(&b->wl))
        (void)ap_waitlist_wake_all(&b->wl);
}

/* Arrive (or, with @drop, arrive and leave). Returns AP_OK with *gen set
 * and *leader telling whether this arrival completed the generation (the
 * release is done then), AP_CANCELED when broken, AP_INVAL when no party
 * is left. */
AP_API ap_status ap__bar_arrive(ap_barrier *b, bool drop, uint32_t *gen, bool *leader)
{
    AP_ASSERT(b != NULL && b->live);
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed), n;
    unsigned spins = 0;
    for (;;) {
        uint32_t p = ap__bar_parties(s), a = ap__bar_arrived(s);
        if (AP_UNLIKELY(p == 0))
            return AP_INVAL;
        if (AP_UNLIKELY(s & AP__BAR_BROKEN) && !drop)
            return AP_CANCELED;
        if (AP_UNLIKELY(a == p)) {
            /* COMPLETE: only a party over the count can get here (or a
             * drop racing the leader's store); wait for the release. */
            ap__backoff(&spins);
            s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
            continue;
        }
        if (drop) /* p-1 expected, a arrived (broken: the party just leaves) */
            n = s - ((uint64_t)1 << AP__BAR_PARTIES_SHIFT);
        else
            n = s + 1u; /* a+1 arrived */
        AP_TEST_YIELD();
        /* acq_rel: release publishes this party's pre-arrival writes
         * (to the leader, which reads this RMW's release sequence);
         * acquire makes the leader see every earlier arrival's writes.
         * Relaxed on failure: we only re-read the word. */
        if (AP_ATOMIC_CAS_WEAK(&b->state, &s, n, memory_order_acq_rel, memory_order_relaxed))
            break;
    }
    *gen = ap__bar_gen(n);
    *leader = !(n & AP__BAR_BROKEN) && ap__bar_complete(n);
    if (*leader)
        ap__bar_release(b, n);
    return AP_OK;
}

AP_API ap_status ap_barrier_arrive_and_drop(ap_barrier *b, bool *is_leader)
{
    uint32_t gen;
    bool leader = false;
    ap_status st = ap__bar_arrive(b, true, &gen, &leader);
    if (is_leader)
        *is_leader = st == AP_OK && leader;
    return st;
}

/* Wait (bounded back-off) until a COMPLETE generation has been released;
 * returns the word after it. */
AP_API uint64_t ap__bar_wait_released(ap_barrier *b, uint64_t s)
{
    unsigned spins = 0;
    while (!(s & AP__BAR_BROKEN) && ap__bar_complete(s)) {
        ap__backoff(&spins);
        /* acquire: pairs with the leader's release store. */
        s = AP_ATOMIC_LOAD(&b->state, memory_order_acquire);
    }
    return s;
}

AP_API void ap_barrier_reset(ap_barrier *b)
{
    AP_ASSERT(b != NULL && b->live);
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
    for (;;) {
        s = ap__bar_wait_released(b, s);
        uint64_t n = ap__bar_make(ap__bar_gen(s) + 2u, ap__bar_parties(s), 0);
        /* seq_cst: the ladder's SC write before wake_all's SC load (and a
         * release for whoever sees the fresh generation). */
        if (AP_ATOMIC_CAS_WEAK(&b->state, &s, n, memory_order_seq_cst, memory_order_relaxed))
            break;
    }
    (void)ap_waitlist_wake_all(&b->wl);
}

AP_API bool ap_barrier_is_broken(ap_barrier *b)
{
    AP_ASSERT(b != NULL && b->live);
    /* acquire: what the breaker did before breaking is visible. */
    return (AP_ATOMIC_LOAD(&b->state, memory_order_acquire) & AP__BAR_BROKEN) != 0;
}

AP_API uint32_t ap_barrier_parties(ap_barrier *b)
{
    AP_ASSERT(b != NULL && b->live);
    return ap__bar_parties(AP_ATOMIC_LOAD(&b->state, memory_order_relaxed));
}

AP_API uint32_t ap_barrier_arrived(ap_barrier *b)
{
    AP_ASSERT(b != NULL && b->live);
    return ap__bar_arrived(AP_ATOMIC_LOAD(&b->state, memory_order_relaxed));
}

AP_API uint32_t ap_barrier_generation(ap_barrier *b)
{
    AP_ASSERT(b != NULL && b->live);
    return ap__bar_gen(AP_ATOMIC_LOAD(&b->state, memory_order_relaxed));
}

/* ---- the wait future ---- */

AP__FUTURE_VTABLE(ap__bar, ap_barrier_wait_fut, ap_barrier_wait_poll, ap_barrier_wait_cancel)

AP_API void ap_barrier_wait_fut_init(ap_barrier_wait_fut *f, ap_barrier *b)
{
    AP_ASSERT(f != NULL && b != NULL && b->live);
    f->base.poll = ap__bar_poll_v;
    f->base.cancel = ap__bar_cancel_v;
    f->b = b;
    ap_waiter_init(&f->waiter);
    f->gen = 0;
    f->status = AP_NOT_READY;
    f->arrived = false;
    f->undid = false;
    f->is_leader = false;
}

/* First step of a wait: arrive. Returns true when the future is done. */
AP_API bool ap__bar_fut_arrive(ap_barrier_wait_fut *f)
{
    bool leader = false;
    ap_status st = ap__bar_arrive(f->b, false, &f->gen, &leader);
    if (st != AP_OK || leader) {
        f->status = st;
        f->is_leader = leader;
        return true;
    }
    f->arrived = true;
    return false;
}

AP_API ap_poll ap_barrier_wait_poll(ap_barrier_wait_fut *f, ap_cx *cx)
{
    AP_ASSERT(f != NULL && cx != NULL);
    if (f->status != AP_NOT_READY)
        return AP_READY; /* completed or cancelled earlier */
    ap_barrier *b = f->b;
    AP_ASSERT(b->live);
    if (!f->arrived && ap__bar_fut_arrive(f))
        return AP_READY;
    /* acquire: pairs with the leader's release store (or reset's CAS). */
    ap_status st = ap__bar_outcome(AP_ATOMIC_LOAD(&b->state, memory_order_acquire), f->gen);
    if (st == AP_NOT_READY) {
        ap_waitlist_register_cx(&b->wl, &f->waiter, cx);
        AP_TEST_YIELD(); /* registered, not yet re-checked */
        /* seq_cst: the ladder's re-check, after the SC count++. */
        st = ap__bar_outcome(AP_ATOMIC_LOAD(&b->state, memory_order_seq_cst), f->gen);
        if (st == AP_NOT_READY)
            return AP_PENDING;
    }
    /* Done. Wakes are broadcasts (wake_all): nothing to pass on. */
    (void)ap_waitlist_cancel(&b->wl, &f->waiter);
    f->status = st;
    return AP_READY;
}

AP_API void ap_barrier_wait_cancel(ap_barrier_wait_fut *f)
{
    AP_ASSERT(f != NULL);
    if (f->status != AP_NOT_READY)
        return; /* completed or cancelled: nothing to undo (idempotent) */
    if (!f->arrived) {
        f->status = AP_CANCELED; /* never arrived: nothing to take back */
        return;
    }
    ap_barrier *b = f->b;
    /* After this no wake for us is in progress and none will start. */
    (void)ap_waitlist_cancel(&b->wl, &f->waiter);
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_acquire);
    for (;;) {
        /* A leader inside fn has decided our generation: wait for it. */
        s = ap__bar_wait_released(b, s);
        ap_status st = ap__bar_outcome(s, f->gen);
        if (st != AP_NOT_READY) {
            f->status = st; /* completed (we passed) or already broken */
            return;
        }
        if (ap__bar_arrived(s) == 0) {
            /* Our arrival is gone although the distance reads 0: the
             * generation counter wrapped under >= 2^22 resets during this
             * one wait (outside the documented use). Never borrow into
             * the parties field. */
            f->status = AP_CANCELED;
            return;
        }
        /* BREAK clears the arrivals: a broken word is never COMPLETE, so
         * no later arrive or drop waits for a leader that does not exist. */
        uint64_t n = b->policy == AP_BARRIER_POLICY_WITHDRAW
                         ? s - 1u /* take back our arrival */
                         : (s & ~AP__BAR_ARRIVED_MASK) | AP__BAR_BROKEN;
        AP_TEST_YIELD();
        /* seq_cst: for BREAK, the ladder's SC write before wake_all's SC
         * load of count; acquire on failure: a completion we then see
         * carries the leader's writes to us. */
        if (AP_ATOMIC_CAS_WEAK(&b->state, &s, n, memory_order_seq_cst, memory_order_acquire))
            break;
    }
    if (b->policy == AP_BARRIER_POLICY_BREAK)
        (void)ap_waitlist_wake_all(&b->wl);
    f->undid = true;
    f->status = AP_CANCELED;
}

AP_API ap_status ap_barrier_wait_status(const ap_barrier_wait_fut *f)
{
    return f->status;
}

AP_API ap_status ap_barrier_wait_leader(ap_barrier *b, ap_deadline deadline_ns,
                                        bool *is_leader)
{
    ap_barrier_wait_fut f;
    ap_barrier_wait_fut_init(&f, b);
    if (is_leader)
        *is_leader = false;
    if (ap__bar_fut_arrive(&f)) {
        if (is_leader)
            *is_leader = f.is_leader;
        return f.status;
    }
    /* Short bounded spin on the word: a generation often completes within
     * a few hundred nanoseconds, far cheaper than a park and a wake. */
    for (unsigned i = 0; i < 4u * AP_SPIN_LIMIT; i++) {
        /* acquire: pairs with the leader's release store. */
        ap_status st = ap__bar_outcome(AP_ATOMIC_LOAD(&b->state, memory_order_acquire), f.gen);
        if (st != AP_NOT_READY)
            return st;
        AP_CPU_RELAX();
    }
    uint64_t t0 = ap_now_ns(); /* the slow path: this party parks */
    ap_status bst = ap_block_on_until(&f.base, deadline_ns);
    ap__waitlist_waited(&b->wl, ap_now_ns() - t0);
    if (bst == AP_TIMEDOUT)
        /* cancelled by block_on: AP_TIMEDOUT only if that cancel withdrew
         * or broke; a completion, reset or break that came first says so */
        return f.undid ? AP_TIMEDOUT : f.status;
    return f.status;
}

AP_API ap_status ap_barrier_wait(ap_barrier *b, ap_deadline deadline_ns)
{
    return ap_barrier_wait_leader(b, deadline_ns, NULL);
}

AP_API void ap_barrier_stats_get(ap_barrier *b, ap_barrier_stats *out)
{
    ap_waitlist_stats w;
    AP_ASSERT(b != NULL && b->live && out != NULL);
    ap_waitlist_stats_get(&b->wl, &w);
    out->parties = ap_barrier_parties(b);
    out->arrived = ap_barrier_arrived(b);
    out->generation = ap_barrier_generation(b);
    out->broken = ap_barrier_is_broken(b) ? 1u : 0u;
    out->waiters = w.waiters;
    out->waits = w.waits;
    out->wait_ns = w.wait_ns;
}

#endif /* ASYNCPAT_BARRIER_H */
