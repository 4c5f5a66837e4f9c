/*
 * tests/test_pc_latency.c -- the producer-consumer latency theorem
 * (THEOREMS.md: "producer-consumer | latency <= buffer / throughput + one
 * service time"; issue #6 section 5), checked by a discrete-event
 * simulation on a fake clock with the REAL ap_spsc and ap_mpmc as the
 * buffer.
 *
 * THE MODEL
 *   Time is an integer count of fake nanoseconds; there are no threads and
 *   no real clock, so every run is exact and repeatable.
 *   - One producer. Item i arrives at a[i] (non-decreasing). Under
 *     backpressure, when try_push answers AP_FULL the item waits outside
 *     the buffer (and so do all later ones: the producer is sequential) and
 *     is admitted at the first instant a push succeeds, i.e. the instant a
 *     pop frees a slot. push[i] = the instant of the successful push.
 *   - A buffer of capacity B: the queue under test.
 *   - One consumer, work-conserving: whenever it is free and the buffer is
 *     not empty it pops at once and serves the item for s[i] <= S_max.
 *     start[i] = the instant of the pop, end[i] = start[i] + s[i].
 *   Within one instant the simulation runs pops and pushes to a fixpoint,
 *   so a slot freed by a pop at time t is refilled at t, and an item
 *   pushed into an empty buffer while the consumer is free is popped at t.
 *
 * THE THEOREM (what is asserted for every item)
 *   throughput = 1 / S_max (items per ns of a busy consumer), so
 *   buffer / throughput = B * S_max, and
 *       queueing delay   start[i] - push[i]  <=  B * S_max.
 *   Why B * S_max and not more: right after item i is pushed at push[i],
 *   the buffer holds at most B items, i itself included, so at most B - 1
 *   items are ahead of it (FIFO); besides these, at most one item is in
 *   service, with at most S_max of service left. The consumer is never
 *   idle while i waits, so it has served the one in service and the B - 1
 *   ahead -- each taking <= S_max -- by push[i] + (1 + (B - 1)) * S_max,
 *   and pops i at that instant at the latest:
 *       delay <= S_max + (B - 1) * S_max = B * S_max.
 *   The wording "<= buffer/throughput plus one service time" is the
 *   looser end-to-end form, also asserted for every item:
 *       end[i] - push[i]  <=  B * S_max + S_max.
 *   The delay is measured from admission (the successful push), as the
 *   theorem is about the buffer; time spent waiting outside a full buffer
 *   is the producer's backpressure, not buffer latency.
 *
 *   The bound is TIGHT: with constant service S and arrivals that outpace
 *   it, the producer is blocked, each pop at time t lets it push at t with
 *   B - 1 items ahead and one just started, so that item's delay is exactly
 *   B * S. The tests assert that some item reaches exactly B * S, so a
 *   queue that held fewer than B items fails (the bound is never reached),
 *   and one that held more than B, or reordered, fails the bound itself.
 *
 * WHAT ELSE IS CHECKED on every run: FIFO (the k-th pop is item k), every
 * item pushed and popped exactly once (count, id sum, a seen-map), the
 * element's payload (its push time) comes out intact, the queue's len is
 * exactly our count and never exceeds B, AP_FULL only when B items are in
 * (exact capacity), and every item's push and start time equal the
 * closed-form recurrence of a FIFO buffer of B with blocking:
 *       push[i]  = max(a[i], push[i-1], start[i-B])
 *       start[i] = max(push[i], end[i-1])
 *   computed without any queue.
 *
 * CAPACITY: ap_spsc rounds its STORAGE up to a power of two
 * (AP_SPSC_BYTES), but holds exactly the capacity asked for; ap_mpmc holds
 * exactly its capacity. The runs use B = 1, 2, 3, 4, 5, 7, 8, 16, 33, so
 * non-powers of two are covered, assert ap_*_capacity() == B, and the
 * "AP_FULL only when B are in" and "len <= B" checks catch a ring that
 * used its rounded-up storage as capacity.
 *
 * NEGATIVE CONTROLS: the same simulation and checker run against
 * deliberately wrong "queues" (LIFO, admits B + 1, admits B - 1, loses an
 * item) and the tests assert that the checker flags each one.
 *
 * Set PC_LATENCY_TRACE=1 to print one line per run (max delay vs bound).
 */
#include "asyncpat/mpmc.h"
#include "asyncpat/spsc.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

TestSuite(pc_latency, .timeout = TEST_TIMEOUT_S);

/* ---- the element and the queues under test ---- */

typedef struct pc_item {
    uint64_t id;      /* arrival index */
    uint64_t push_ns; /* payload: fake time of the successful push */
} pc_item;

AP_SPSC_DEFINE(pc_spsc, pc_item)
AP_MPMC_DEFINE(pc_mpmc, pc_item)

#define PC_MAX_B 64
#define PC_N 500           /* items per run */
#define PC_S 1000          /* constant service time, and S_max of every run */
#define PC_NONE UINT64_MAX /* "not happened" */

static const size_t pc_caps[] = {1, 2, 3, 4, 5, 7, 8, 16, 33};
#define PC_NCAPS (sizeof pc_caps / sizeof pc_caps[0])

/* The simulation sees a queue only through these four calls. */
typedef struct pc_queue {
    const char *name;
    void *self;
    ap_status (*push)(void *self, const pc_item *it);
    ap_status (*pop)(void *self, pc_item *out);
    size_t (*len)(void *self);
    size_t (*cap)(void *self);
} pc_queue;

static _Alignas(AP_CACHELINE) unsigned char spsc_buf[AP_SPSC_BYTES(PC_MAX_B, sizeof(pc_item))];
static _Alignas(AP_CACHELINE) unsigned char mpmc_buf[AP_MPMC_BYTES(PC_MAX_B, sizeof(pc_item))];

static ap_status spsc_push(void *s, const pc_item *it) { return pc_spsc_try_push(s, it); }
static ap_status spsc_pop(void *s, pc_item *out) { return pc_spsc_try_pop(s, out); }
static size_t spsc_len(void *s) { return pc_spsc_len(s); }
static size_t spsc_cap(void *s) { return pc_spsc_capacity(s); }
static ap_status mpmc_push(void *s, const pc_item *it) { return pc_mpmc_try_push(s, it); }
static ap_status mpmc_pop(void *s, pc_item *out) { return pc_mpmc_try_pop(s, out); }
static size_t mpmc_len(void *s) { return pc_mpmc_len(s); }
static size_t mpmc_cap(void *s) { return pc_mpmc_capacity(s); }

/* ---- reference and deliberately wrong "queues" (an array model) ---- */

enum model_kind {
    M_FIFO,      /* correct: a FIFO of exactly B (the reference) */
    M_LIFO,      /* wrong: pops the newest element */
    M_OVERSIZE,  /* wrong: admits B + 1 while claiming capacity B */
    M_UNDERSIZE, /* wrong: answers FULL at B - 1 */
    M_LOSSY,     /* wrong: every 7th push answers OK but is dropped */
};

typedef struct model {
    enum model_kind kind;
    pc_item buf[PC_MAX_B + 1];
    size_t head, n, cap;
    uint64_t pushes;
} model;

static size_t model_limit(const model *m)
{
    return m->kind == M_OVERSIZE ? m->cap + 1 : m->kind == M_UNDERSIZE ? m->cap - 1 : m->cap;
}

static ap_status model_push(void *s, const pc_item *it)
{
    model *m = s;
    if (m->n >= model_limit(m))
        return AP_FULL;
    if (m->kind == M_LOSSY && ++m->pushes % 7 == 0)
        return AP_OK; /* dropped on the floor */
    m->buf[(m->head + m->n) % (PC_MAX_B + 1)] = *it;
    m->n++;
    return AP_OK;
}

static ap_status model_pop(void *s, pc_item *out)
{
    model *m = s;
    if (m->n == 0)
        return AP_EMPTY;
    if (m->kind == M_LIFO) {
        *out = m->buf[(m->head + m->n - 1) % (PC_MAX_B + 1)];
    } else {
        *out = m->buf[m->head];
        m->head = (m->head + 1) % (PC_MAX_B + 1);
    }
    m->n--;
    return AP_OK;
}

static size_t model_len(void *s) { return ((model *)s)->n; }
static size_t model_cap(void *s) { return ((model *)s)->cap; } /* the claimed B */

static const char *const model_names[] = {"model-fifo", "model-lifo", "model-B+1",
                                          "model-B-1", "model-lossy"};

static pc_queue model_queue(model *m, enum model_kind kind, size_t B)
{
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->cap = B;
    return (pc_queue){model_names[kind], m, model_push, model_pop, model_len, model_cap};
}

/* ---- scenarios: arrival processes and service-time processes ---- */

enum arrival_kind {
    A_CONST_BELOW,   /* one every 1.5 S: slower than service */
    A_CONST_AT,      /* one every S: exactly the service rate */
    A_CONST_ABOVE,   /* one every 0.4 S: outpaces service (saturation) */
    A_BURSTS,        /* 12 at one instant, every 18 S (1.5 S per item on average) */
    A_ALL_AT_ZERO,   /* everything at t = 0 */
    A_RANDOM_GAP,    /* xorshift gaps in [0, 2 S]: mean at the service rate */
    A_RANDOM_BURSTS, /* xorshift bursts of 1..24 items, then a gap of [0, 2 * size * S] */
    A_RANDOM_HEAVY,  /* xorshift gaps in [0, 0.8 S]: above the service rate */
    A_COUNT
};

static const char *const arrival_names[] = {"const-below", "const-at", "const-above",
                                            "bursts-12",   "all-at-0", "rand-gap",
                                            "rand-bursts", "rand-heavy"};

enum service_kind {
    V_CONST,       /* every item S */
    V_RANDOM,      /* xorshift uniform in [1, S] */
    V_ALTERNATING, /* S, 1, S, 1, ... */
    V_MOSTLY_MAX,  /* S three times in four, else uniform in [1, S] */
    V_COUNT
};

static const char *const service_names[] = {"const", "rand", "alternate", "mostly-max"};

typedef struct scenario {
    char name[96];
    size_t n;
    uint64_t s_max;
    uint64_t arr[PC_N];
    uint64_t svc[PC_N]; /* service time of item i (by arrival index) */
} scenario;

static void make_scenario(scenario *sc, enum arrival_kind ak, enum service_kind vk)
{
    uint64_t rng = 0x9e3779b97f4a7c15u ^ ((uint64_t)ak << 8) ^ vk; /* fixed seed */
    sc->n = PC_N;
    sc->s_max = PC_S;
    snprintf(sc->name, sizeof sc->name, "%s/%s", arrival_names[ak], service_names[vk]);
    uint64_t t = 0;
    size_t burst_left = 0;
    for (size_t i = 0; i < sc->n; i++) {
        switch (ak) {
        case A_CONST_BELOW: t = i * (PC_S * 3 / 2); break;
        case A_CONST_AT: t = i * PC_S; break;
        case A_CONST_ABOVE: t = i * (PC_S * 2 / 5); break;
        case A_BURSTS: t = (i / 12) * (18 * PC_S); break;
        case A_ALL_AT_ZERO: t = 0; break;
        case A_RANDOM_GAP:
            if (i > 0)
                t += rng_next(&rng) % (2 * PC_S + 1);
            break;
        case A_RANDOM_BURSTS:
            if (burst_left == 0) {
                burst_left = 1 + rng_next(&rng) % 24;
                if (i > 0)
                    t += rng_next(&rng) % (2 * burst_left * PC_S + 1);
            }
            burst_left--;
            break;
        case A_RANDOM_HEAVY:
            if (i > 0)
                t += rng_next(&rng) % (PC_S * 4 / 5 + 1);
            break;
        default: break;
        }
        sc->arr[i] = t;
        switch (vk) {
        case V_CONST: sc->svc[i] = PC_S; break;
        case V_RANDOM: sc->svc[i] = 1 + rng_next(&rng) % PC_S; break;
        case V_ALTERNATING: sc->svc[i] = (i % 2) ? 1 : PC_S; break;
        case V_MOSTLY_MAX:
            sc->svc[i] = rng_next(&rng) % 4 ? PC_S : 1 + rng_next(&rng) % PC_S;
            break;
        default: break;
        }
    }
}

/* ---- the simulation and its checker ---- */

typedef struct pc_stats {
    size_t B;
    uint64_t bound;       /* B * S_max */
    uint64_t loose_bound; /* B * S_max + S_max */
    uint64_t max_delay, max_e2e;
    size_t n_at_bound;  /* items whose delay is exactly B * S_max */
    size_t max_len;     /* largest buffer occupancy seen (queue len or our count) */
    size_t pushed, popped;
    size_t fulls;       /* AP_FULL answers (the producer was blocked) */
    uint64_t id_sum_pushed, id_sum_popped;
    /* violations: all zero for a correct FIFO buffer of B */
    size_t over_bound;     /* delay > B * S_max */
    size_t over_loose;     /* push -> end > B * S_max + S_max */
    size_t order_breaks;   /* k-th pop was not item k */
    size_t dups;           /* popped twice, or an id never pushed */
    size_t lost;           /* pushed but never popped */
    size_t bad_payload;    /* push time carried by the element differs */
    size_t over_len;       /* occupancy > B at some instant */
    size_t len_mismatch;   /* queue len != pushes - pops */
    size_t early_full;     /* AP_FULL while fewer than B were in */
    size_t bad_status;     /* a status other than OK/FULL/EMPTY */
    size_t stuck;          /* no event possible though work remains */
    size_t recurrence_mismatch; /* push/start differ from the closed form */
    /* per item, by arrival index */
    uint64_t push_t[PC_N], start_t[PC_N], end_t[PC_N];
} pc_stats;

static size_t pc_violations(const pc_stats *st)
{
    return st->over_bound + st->over_loose + st->order_breaks + st->dups + st->lost +
           st->bad_payload + st->over_len + st->len_mismatch + st->early_full +
           st->bad_status + st->stuck + st->recurrence_mismatch;
}

static void note_len(const pc_queue *q, size_t inflight, pc_stats *st)
{
    size_t len = q->len(q->self);
    if (len != inflight)
        st->len_mismatch++;
    size_t m = len > inflight ? len : inflight;
    if (m > st->max_len)
        st->max_len = m;
    if (m > st->B)
        st->over_len++;
}

/* Run scenario @sc through queue @q, a buffer meant to hold exactly @B. */
static void pc_sim(const pc_queue *q, const scenario *sc, size_t B, pc_stats *st)
{
    memset(st, 0, sizeof *st);
    st->B = B;
    st->bound = (uint64_t)B * sc->s_max;
    st->loose_bound = st->bound + sc->s_max;
    for (size_t i = 0; i < sc->n; i++)
        st->push_t[i] = st->start_t[i] = st->end_t[i] = PC_NONE;

    uint64_t t = 0, free_at = 0; /* the consumer is free from free_at on */
    size_t p = 0;                /* next item to admit */
    size_t inflight = 0;         /* successful pushes - pops */
    size_t steps = 0;
    for (;;) {
        /* one instant: pops and pushes until nothing changes */
        bool changed;
        do {
            changed = false;
            if (free_at <= t) {
                pc_item it;
                ap_status s = q->pop(q->self, &it);
                if (s == AP_OK) {
                    changed = true;
                    inflight--;
                    size_t k = st->popped++;
                    if (it.id >= sc->n || st->start_t[it.id] != PC_NONE ||
                        st->push_t[it.id] == PC_NONE) {
                        st->dups++;
                        free_at = t + 1;
                    } else {
                        uint64_t id = it.id;
                        st->id_sum_popped += id;
                        if (id != k)
                            st->order_breaks++;
                        if (it.push_ns != st->push_t[id])
                            st->bad_payload++;
                        st->start_t[id] = t;
                        st->end_t[id] = t + sc->svc[id];
                        free_at = st->end_t[id];
                        uint64_t delay = t - st->push_t[id];
                        uint64_t e2e = st->end_t[id] - st->push_t[id];
                        if (delay > st->max_delay)
                            st->max_delay = delay;
                        if (e2e > st->max_e2e)
                            st->max_e2e = e2e;
                        if (delay > st->bound)
                            st->over_bound++;
                        if (delay == st->bound)
                            st->n_at_bound++;
                        if (e2e > st->loose_bound)
                            st->over_loose++;
                    }
                    note_len(q, inflight, st);
                } else if (s != AP_EMPTY) {
                    st->bad_status++;
                }
            }
            while (p < sc->n && sc->arr[p] <= t) {
                pc_item it = {p, t};
                ap_status s = q->push(q->self, &it);
                if (s != AP_OK) {
                    if (s != AP_FULL)
                        st->bad_status++;
                    else if (st->fulls++, inflight < B)
                        st->early_full++;
                    break; /* blocked: waits outside until a pop */
                }
                changed = true;
                st->push_t[p] = t;
                st->pushed++;
                st->id_sum_pushed += p;
                p++;
                inflight++;
                note_len(q, inflight, st);
            }
        } while (changed);

        if (p == sc->n && free_at <= t)
            break; /* all admitted, consumer idle, buffer empty (it said EMPTY) */
        /* the next event: an arrival, or the consumer becoming free */
        uint64_t next = PC_NONE;
        if (p < sc->n && sc->arr[p] > t)
            next = sc->arr[p];
        if (free_at > t && free_at < next)
            next = free_at;
        if (next == PC_NONE || ++steps > 8 * sc->n + 64) {
            st->stuck++; /* blocked on FULL with an idle consumer and EMPTY */
            break;
        }
        t = next;
    }

    for (size_t i = 0; i < sc->n; i++)
        if (st->push_t[i] != PC_NONE && st->start_t[i] == PC_NONE)
            st->lost++;
    st->lost += sc->n - st->pushed; /* never admitted (stuck) */

    /* the closed form of a FIFO buffer of B with a blocked producer */
    uint64_t rpush[PC_N], rstart[PC_N], rend[PC_N];
    for (size_t i = 0; i < sc->n; i++) {
        uint64_t ps = sc->arr[i];
        if (i > 0 && rpush[i - 1] > ps)
            ps = rpush[i - 1];
        if (i >= B && rstart[i - B] > ps)
            ps = rstart[i - B];
        uint64_t s0 = ps;
        if (i > 0 && rend[i - 1] > s0)
            s0 = rend[i - 1];
        rpush[i] = ps;
        rstart[i] = s0;
        rend[i] = s0 + sc->svc[i];
        if (st->push_t[i] != rpush[i] || st->start_t[i] != rstart[i])
            st->recurrence_mismatch++;
    }

    if (getenv("PC_LATENCY_TRACE"))
        fprintf(stderr,
                "%-11s B=%-2zu %-22s max_delay=%6llu bound(B*Smax)=%6llu at_bound=%3zu "
                "max_e2e=%6llu loose=%6llu max_len=%2zu violations=%zu\n",
                q->name, B, sc->name, (unsigned long long)st->max_delay,
                (unsigned long long)st->bound, st->n_at_bound,
                (unsigned long long)st->max_e2e, (unsigned long long)st->loose_bound,
                st->max_len, pc_violations(st));
}

/* Every assertion the theorem and the buffer's contract make. */
#define expect_clean(st, sc, qn)                                                          \
    do {                                                                                  \
        const char *ctx_ = (sc)->name;                                                    \
        EXPECT_EQ((st)->pushed, (sc)->n, "%s %s B=%zu", qn, ctx_, (st)->B);               \
        EXPECT_EQ((st)->popped, (sc)->n, "%s %s B=%zu", qn, ctx_, (st)->B);               \
        EXPECT_EQ((st)->id_sum_pushed, (uint64_t)(sc)->n * ((sc)->n - 1) / 2, "%s %s", qn, ctx_); \
        EXPECT_EQ((st)->id_sum_popped, (st)->id_sum_pushed, "%s %s B=%zu", qn, ctx_, (st)->B); \
        EXPECT_LE((st)->max_delay, (st)->bound, "%s %s B=%zu", qn, ctx_, (st)->B);        \
        EXPECT_LE((st)->max_e2e, (st)->loose_bound, "%s %s B=%zu", qn, ctx_, (st)->B);    \
        EXPECT_LE((st)->max_len, (st)->B, "%s %s", qn, ctx_);                             \
        EXPECT_EQ((st)->over_bound, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                 \
        EXPECT_EQ((st)->over_loose, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                 \
        EXPECT_EQ((st)->order_breaks, 0, "%s %s B=%zu", qn, ctx_, (st)->B);               \
        EXPECT_EQ((st)->dups, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                       \
        EXPECT_EQ((st)->lost, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                       \
        EXPECT_EQ((st)->bad_payload, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                \
        EXPECT_EQ((st)->over_len, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                   \
        EXPECT_EQ((st)->len_mismatch, 0, "%s %s B=%zu", qn, ctx_, (st)->B);               \
        EXPECT_EQ((st)->early_full, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                 \
        EXPECT_EQ((st)->bad_status, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                 \
        EXPECT_EQ((st)->stuck, 0, "%s %s B=%zu", qn, ctx_, (st)->B);                      \
        EXPECT_EQ((st)->recurrence_mismatch, 0, "%s %s B=%zu", qn, ctx_, (st)->B);        \
    } while (0)

/* Run @sc through a fresh real queue of capacity B (which = 0: spsc, 1: mpmc). */
static void run_real(int which, const scenario *sc, size_t B, pc_stats *st)
{
    if (which == 0) {
        pc_spsc q;
        EXPECT_EQ(pc_spsc_init(&q, spsc_buf, sizeof spsc_buf, B), AP_OK);
        EXPECT_EQ(pc_spsc_capacity(&q), B, "spsc honours the capacity asked, not its pow2 storage");
        pc_queue pq = {"ap_spsc", &q, spsc_push, spsc_pop, spsc_len, spsc_cap};
        EXPECT_EQ(pq.cap(pq.self), B);
        pc_sim(&pq, sc, B, st);
        EXPECT_EQ(pc_spsc_len(&q), 0, "drained");
        pc_spsc_fini(&q);
    } else {
        pc_mpmc q;
        EXPECT_EQ(pc_mpmc_init(&q, mpmc_buf, sizeof mpmc_buf, B), AP_OK);
        EXPECT_EQ(pc_mpmc_capacity(&q), B);
        pc_queue pq = {"ap_mpmc", &q, mpmc_push, mpmc_pop, mpmc_len, mpmc_cap};
        EXPECT_EQ(pq.cap(pq.self), B);
        pc_sim(&pq, sc, B, st);
        EXPECT_EQ(pc_mpmc_len(&q), 0, "drained");
        pc_mpmc_fini(&q);
    }
}

static const char *const real_names[] = {"ap_spsc", "ap_mpmc"};

/* ---- the theorem on the real queues: every scenario, every B ---- */

static void sweep_real(int which)
{
    static scenario sc;
    static pc_stats st;
    size_t runs = 0;
    for (int ak = 0; ak < A_COUNT; ak++)
        for (int vk = 0; vk < V_COUNT; vk++) {
            make_scenario(&sc, (enum arrival_kind)ak, (enum service_kind)vk);
            for (size_t i = 0; i < sc.n; i++) {
                EXPECT_LE(sc.svc[i], sc.s_max, "service times are bounded by S_max");
                EXPECT_GE(sc.svc[i], 1);
                if (i > 0)
                    EXPECT_GE(sc.arr[i], sc.arr[i - 1], "arrivals are sorted");
            }
            for (size_t b = 0; b < PC_NCAPS; b++) {
                run_real(which, &sc, pc_caps[b], &st);
                expect_clean(&st, &sc, real_names[which]);
                runs++;
            }
        }
    EXPECT_EQ(runs, (size_t)A_COUNT * V_COUNT * PC_NCAPS);
}

Test(pc_latency, spsc_every_item_within_buffer_over_throughput)
{
    sweep_real(0);
}

Test(pc_latency, mpmc_every_item_within_buffer_over_throughput)
{
    sweep_real(1);
}

/* ---- the bound is reached exactly, and only where it should be ---- */

Test(pc_latency, bound_is_tight_under_saturation_and_zero_below_rate)
{
    static scenario sc;
    static pc_stats st;
    for (int which = 0; which < 2; which++)
        for (size_t b = 0; b < PC_NCAPS; b++) {
            size_t B = pc_caps[b];
            const char *qn = real_names[which];
            /* arrivals outpace constant service: some item waits exactly B*S,
             * its end-to-end latency is exactly B*S + S, the buffer fills */
            static const enum arrival_kind sat[] = {A_CONST_ABOVE, A_ALL_AT_ZERO, A_BURSTS};
            for (size_t k = 0; k < sizeof sat / sizeof sat[0]; k++) {
                if (sat[k] == A_BURSTS && B + 1 > 12)
                    continue; /* a burst of 12 saturates only a buffer of <= 11 */
                make_scenario(&sc, sat[k], V_CONST);
                run_real(which, &sc, B, &st);
                expect_clean(&st, &sc, qn);
                EXPECT_EQ(st.max_delay, (uint64_t)B * PC_S, "%s %s B=%zu: tight", qn, sc.name, B);
                EXPECT_GT(st.n_at_bound, 0, "%s %s B=%zu", qn, sc.name, B);
                EXPECT_EQ(st.max_e2e, (uint64_t)B * PC_S + PC_S, "%s %s B=%zu", qn, sc.name, B);
                EXPECT_EQ(st.max_len, B, "%s %s: the buffer fills to exactly B", qn, sc.name);
            }
            /* constant arrivals at or below the service rate never wait */
            static const enum arrival_kind calm[] = {A_CONST_BELOW, A_CONST_AT};
            for (size_t k = 0; k < sizeof calm / sizeof calm[0]; k++) {
                make_scenario(&sc, calm[k], V_CONST);
                run_real(which, &sc, B, &st);
                expect_clean(&st, &sc, qn);
                EXPECT_EQ(st.max_delay, 0, "%s %s B=%zu", qn, sc.name, B);
                EXPECT_EQ(st.max_e2e, PC_S, "%s %s B=%zu", qn, sc.name, B);
                EXPECT_LE(st.max_len, 1, "%s %s B=%zu", qn, sc.name, B);
            }
        }
}

/* The two real queues and the reference FIFO model give the same per-item
 * push and start times on every scenario (they are all "a FIFO of B"). */
Test(pc_latency, real_queues_match_reference_model_item_by_item)
{
    static scenario sc;
    static pc_stats ref, got;
    static model m;
    for (int ak = 0; ak < A_COUNT; ak++)
        for (int vk = 0; vk < V_COUNT; vk++) {
            make_scenario(&sc, (enum arrival_kind)ak, (enum service_kind)vk);
            for (size_t b = 0; b < PC_NCAPS; b++) {
                size_t B = pc_caps[b];
                pc_queue mq = model_queue(&m, M_FIFO, B);
                pc_sim(&mq, &sc, B, &ref);
                expect_clean(&ref, &sc, mq.name);
                for (int which = 0; which < 2; which++) {
                    run_real(which, &sc, B, &got);
                    for (size_t i = 0; i < sc.n; i++) {
                        EXPECT_EQ(got.push_t[i], ref.push_t[i], "%s %s B=%zu item %zu",
                                  real_names[which], sc.name, B, i);
                        EXPECT_EQ(got.start_t[i], ref.start_t[i], "%s %s B=%zu item %zu",
                                  real_names[which], sc.name, B, i);
                    }
                }
            }
        }
}

/* ---- negative controls: the checker has teeth ---- */

static void run_model(enum model_kind kind, const scenario *sc, size_t B, pc_stats *st)
{
    static model m;
    pc_queue q = model_queue(&m, kind, B);
    pc_sim(&q, sc, B, st);
}

Test(pc_latency, negative_control_lifo_breaks_order_and_bound)
{
    static scenario sc;
    static pc_stats st;
    make_scenario(&sc, A_CONST_ABOVE, V_CONST);
    run_model(M_LIFO, &sc, 4, &st);
    EXPECT_GT(pc_violations(&st), 0);
    EXPECT_GT(st.order_breaks, 0, "LIFO reorders");
    EXPECT_GT(st.over_bound, 0, "LIFO starves the oldest items past B*S");
    EXPECT_GT(st.max_delay, st.bound);
    EXPECT_GT(st.over_loose, 0, "and past B*S + S");
    EXPECT_GT(st.recurrence_mismatch, 0);
    EXPECT_EQ(st.lost + st.dups + st.over_len, 0, "it only reorders");
}

Test(pc_latency, negative_control_buffer_of_b_plus_1_breaks_bound)
{
    static scenario sc;
    static pc_stats st;
    make_scenario(&sc, A_CONST_ABOVE, V_CONST);
    for (size_t b = 0; b < PC_NCAPS; b++) {
        size_t B = pc_caps[b];
        run_model(M_OVERSIZE, &sc, B, &st);
        EXPECT_GT(st.over_bound, 0, "B=%zu", B);
        EXPECT_EQ(st.max_delay, (uint64_t)(B + 1) * PC_S, "B=%zu: one slot more, one S more", B);
        EXPECT_GT(st.over_loose, 0, "B=%zu", B);
        EXPECT_GT(st.over_len, 0, "B=%zu", B);
        EXPECT_EQ(st.max_len, B + 1, "B=%zu", B);
        EXPECT_EQ(st.order_breaks + st.lost + st.dups, 0, "B=%zu: FIFO and complete", B);
    }
}

Test(pc_latency, negative_control_buffer_of_b_minus_1_fails_tightness)
{
    static scenario sc;
    static pc_stats st;
    make_scenario(&sc, A_CONST_ABOVE, V_CONST);
    for (size_t b = 0; b < PC_NCAPS; b++) {
        size_t B = pc_caps[b];
        if (B < 2)
            continue;
        run_model(M_UNDERSIZE, &sc, B, &st);
        /* the bound holds, but the tightness assertion would fail */
        EXPECT_EQ(st.over_bound, 0, "B=%zu", B);
        EXPECT_NE(st.max_delay, st.bound, "B=%zu", B);
        EXPECT_EQ(st.max_delay, (uint64_t)(B - 1) * PC_S, "B=%zu", B);
        EXPECT_EQ(st.n_at_bound, 0, "B=%zu", B);
        EXPECT_GT(st.early_full, 0, "B=%zu: FULL before B are in", B);
        EXPECT_GT(pc_violations(&st), 0, "B=%zu", B);
    }
}

Test(pc_latency, negative_control_lossy_buffer_is_caught_by_accounting)
{
    static scenario sc;
    static pc_stats st;
    make_scenario(&sc, A_RANDOM_GAP, V_RANDOM);
    run_model(M_LOSSY, &sc, 4, &st);
    EXPECT_GT(st.lost, 0);
    EXPECT_LT(st.popped, st.pushed);
    EXPECT_NE(st.id_sum_popped, st.id_sum_pushed);
    EXPECT_GT(st.len_mismatch, 0);
    EXPECT_GT(st.order_breaks, 0);
    EXPECT_GT(pc_violations(&st), 0);
}

/* Over the whole sweep, each wrong model is flagged exactly where its
 * defect can show, judged from the reference FIFO's run of the same
 * scenario: LIFO once two items are ever in the buffer together (the next
 * pop takes the newer), B+1 once the producer was ever blocked (it would
 * have been admitted earlier), B-1 once the buffer ever filled to B (it
 * answers FULL with B-1 in), lossy always (7th push of every run); the
 * correct model nowhere. */
Test(pc_latency, negative_controls_over_the_sweep)
{
    static scenario sc;
    static pc_stats ref, st;
    size_t flagged[5] = {0}, runs = 0;
    for (int ak = 0; ak < A_COUNT; ak++)
        for (int vk = 0; vk < V_COUNT; vk++) {
            make_scenario(&sc, (enum arrival_kind)ak, (enum service_kind)vk);
            for (size_t b = 0; b < PC_NCAPS; b++) {
                size_t B = pc_caps[b];
                runs++;
                run_model(M_FIFO, &sc, B, &ref);
                EXPECT_EQ(pc_violations(&ref), 0, "%s B=%zu", sc.name, B);
                for (int k = M_LIFO; k <= M_LOSSY; k++) {
                    if (k == M_UNDERSIZE && B < 2)
                        continue; /* a buffer of 0 is no buffer */
                    run_model((enum model_kind)k, &sc, B, &st);
                    bool caught = pc_violations(&st) > 0;
                    bool can_show = k == M_LIFO       ? ref.max_len >= 2
                                  : k == M_OVERSIZE   ? ref.fulls > 0
                                  : k == M_UNDERSIZE  ? ref.max_len == B
                                                      : true;
                    EXPECT_EQ(caught, can_show, "%s %s B=%zu", model_names[k], sc.name, B);
                    flagged[k] += caught;
                }
            }
        }
    EXPECT_GT(flagged[M_LIFO], 0);
    EXPECT_GT(flagged[M_OVERSIZE], 0);
    EXPECT_GT(flagged[M_UNDERSIZE], 0);
    EXPECT_EQ(flagged[M_LOSSY], runs, "a lost item is always caught");
    if (getenv("PC_LATENCY_TRACE"))
        fprintf(stderr, "sweep runs=%zu flagged: lifo=%zu B+1=%zu B-1=%zu lossy=%zu\n", runs,
                flagged[M_LIFO], flagged[M_OVERSIZE], flagged[M_UNDERSIZE], flagged[M_LOSSY]);
}
