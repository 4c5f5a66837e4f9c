/*
 * verify_queue.c -- SPSC ring and Vyukov MPMC under every interleaving
 * within the preemption bound, in SC and x86-TSO modes.
 *
 * Theorems: every pushed item is popped exactly once (nothing lost, nothing
 * duplicated), in FIFO order per producer; a waiting push or pop is always
 * woken (the lost-wakeup detector fails the run otherwise).
 */
#include "vf.h"
#include "asyncpat/spsc.h"
#include "asyncpat/mpmc.h"

#define MAXI 8

typedef struct qst {
    union {
        ap_spsc s;
        ap_mpmc m;
    } q;
    unsigned char buf[256];
    int got[MAXI];    /* popped values, in pop order, per consumer */
    int ngot[2];
    int gotby[2][MAXI];
    int per_producer; /* items each producer pushes */
    int nprod, ncons;
    int pops_per_consumer;
} qst;

/* ---- SPSC: one producer, one consumer, capacity 1 or 2 ---- */

static int spsc_cap, spsc_items;

static void *spsc_setup(void)
{
    qst *s = calloc(1, sizeof *s);
    VF_CHECK(ap_spsc_init(&s->q.s, s->buf, sizeof s->buf, (size_t)spsc_cap, sizeof(int)) == AP_OK);
    return s;
}

static void spsc_thread(void *p, int id)
{
    qst *s = p;
    for (int i = 0; i < spsc_items; i++) {
        if (id == 0) {
            int v = 100 + i;
            ap_spsc_push_fut f;
            ap_spsc_push_fut_init(&f, &s->q.s, &v);
            vf_wait(&f.op.base);
            VF_CHECK(ap_spsc_push_status(&f) == AP_OK);
        } else {
            int v = -1;
            ap_spsc_pop_fut f;
            ap_spsc_pop_fut_init(&f, &s->q.s, &v);
            vf_wait(&f.op.base);
            VF_CHECK(ap_spsc_pop_status(&f) == AP_OK);
            s->gotby[0][s->ngot[0]++] = v;
        }
    }
}

static void spsc_check(void *p)
{
    qst *s = p;
    VF_CHECK(s->ngot[0] == spsc_items);
    for (int i = 0; i < spsc_items; i++)
        VF_CHECK(s->gotby[0][i] == 100 + i, "item %d is %d: lost, duplicated or reordered", i,
                 s->gotby[0][i]);
    VF_CHECK(ap_spsc_len(&s->q.s) == 0);
}

static void spsc_invariant(void *p)
{
    qst *s = p;
    /* len is a snapshot; the buffer never holds more than its capacity */
    VF_CHECK(ap_spsc_len(&s->q.s) <= (size_t)spsc_cap);
}

static void q_teardown(void *p) { free(p); }

/* ---- SPSC close: a producer, a consumer draining to AP_CLOSED, a closer ----
 * Theorems (the CLOSE paragraph of spsc.h): every push that returned AP_OK
 * is popped, in order, before the consumer sees AP_CLOSED; a push that
 * starts after close returned gets AP_CLOSED; nobody sleeps forever. */

typedef struct closest {
    qst q;
    bool close_returned;
    ap_status pushed[MAXI];
    bool started_after_close[MAXI];
} closest;

static void *spsc_close_setup(void)
{
    closest *s = calloc(1, sizeof *s);
    VF_CHECK(ap_spsc_init(&s->q.q.s, s->q.buf, sizeof s->q.buf, 2, sizeof(int)) == AP_OK);
    return s;
}

static void spsc_close_thread(void *p, int id)
{
    closest *s = p;
    if (id == 0) {
        for (int i = 0; i < 3; i++) {
            int v = 100 + i;
            s->started_after_close[i] = s->close_returned;
            ap_spsc_push_fut f;
            ap_spsc_push_fut_init(&f, &s->q.q.s, &v);
            vf_wait(&f.op.base);
            s->pushed[i] = ap_spsc_push_status(&f);
            VF_CHECK(s->pushed[i] == AP_OK || s->pushed[i] == AP_CLOSED);
        }
    } else if (id == 1) {
        for (;;) {
            int v = -1;
            ap_spsc_pop_fut f;
            ap_spsc_pop_fut_init(&f, &s->q.q.s, &v);
            vf_wait(&f.op.base);
            if (ap_spsc_pop_status(&f) == AP_CLOSED)
                break;
            VF_CHECK(ap_spsc_pop_status(&f) == AP_OK && s->q.ngot[0] < MAXI);
            s->q.gotby[0][s->q.ngot[0]++] = v;
        }
    } else {
        ap_spsc_close(&s->q.q.s);
        s->close_returned = true;
    }
}

static void spsc_close_check(void *p)
{
    closest *s = p;
    int ok = 0;
    for (int i = 0; i < 3; i++) {
        if (s->started_after_close[i])
            VF_CHECK(s->pushed[i] == AP_CLOSED, "push %d started after close returned: %s", i,
                     ap_status_str(s->pushed[i]));
        if (s->pushed[i] == AP_OK) {
            VF_CHECK(ok < s->q.ngot[0] && s->q.gotby[0][ok] == 100 + i,
                     "push %d returned AP_OK but was not popped in order", i);
            ok++;
        }
    }
    VF_CHECK(ok == s->q.ngot[0], "%d popped, %d pushed", s->q.ngot[0], ok);
}

/* ---- MPMC: producers push tagged items, consumers pop ---- */

static int mp_nprod, mp_ncons, mp_items, mp_cap, mp_pops;

static void *mpmc_setup(void)
{
    qst *s = calloc(1, sizeof *s);
    VF_CHECK(ap_mpmc_init(&s->q.m, s->buf, sizeof s->buf, (size_t)mp_cap, sizeof(int)) == AP_OK);
    return s;
}

static void mpmc_thread(void *p, int id)
{
    qst *s = p;
    if (id < mp_nprod) {
        for (int i = 0; i < mp_items; i++) {
            int v = id * 10 + i;
            if (i == 0 && id == 0) { /* one try_push, the rest futures */
                ap_status st = ap_mpmc_try_push(&s->q.m, &v);
                if (st == AP_OK)
                    continue;
                VF_CHECK(st == AP_FULL || st == AP_AGAIN, "try_push: %d", st);
            }
            ap_mpmc_push_fut f;
            ap_mpmc_push_fut_init(&f, &s->q.m, &v);
            vf_wait(&f.op.base);
            VF_CHECK(ap_mpmc_push_status(&f) == AP_OK);
        }
    } else {
        int c = id - mp_nprod;
        for (int i = 0; i < mp_pops; i++) {
            int v = -1;
            ap_mpmc_pop_fut f;
            ap_mpmc_pop_fut_init(&f, &s->q.m, &v);
            vf_wait(&f.op.base);
            VF_CHECK(ap_mpmc_pop_status(&f) == AP_OK);
            s->gotby[c][s->ngot[c]++] = v;
        }
    }
}

static void mpmc_check(void *p)
{
    qst *s = p;
    int seen[4][MAXI] = {{0}};
    for (int c = 0; c < mp_ncons; c++) {
        int last[4] = {-1, -1, -1, -1};
        VF_CHECK(s->ngot[c] == mp_pops);
        for (int i = 0; i < s->ngot[c]; i++) {
            int v = s->gotby[c][i], pr = v / 10, k = v % 10;
            VF_CHECK(pr >= 0 && pr < mp_nprod && k < mp_items, "bogus item %d", v);
            VF_CHECK(++seen[pr][k] == 1, "item %d popped twice", v);
            /* per producer, one consumer sees items in push order */
            VF_CHECK(k > last[pr], "consumer %d saw %d after %d0+%d", c, v, pr, last[pr]);
            last[pr] = k;
        }
    }
    for (int pr = 0; pr < mp_nprod; pr++)
        for (int k = 0; k < mp_items; k++)
            VF_CHECK(seen[pr][k] == 1, "item %d lost", pr * 10 + k);
    VF_CHECK(ap_mpmc_len(&s->q.m) == 0);
}

static void mpmc_invariant(void *p)
{
    qst *s = p;
    VF_CHECK(ap_mpmc_len(&s->q.m) <= (size_t)mp_cap);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sp = {.nthreads = 2, .tso = tso, .bound = 3, .setup = spsc_setup,
                          .thread = spsc_thread, .invariant = spsc_invariant,
                          .check = spsc_check, .teardown = q_teardown};
        spsc_cap = 1, spsc_items = 3;
        sp.name = tso ? "spsc_cap1_3items_tso" : "spsc_cap1_3items";
        total += vf_explore(&sp);
        spsc_cap = 2, spsc_items = 3;
        sp.name = tso ? "spsc_cap2_3items_tso" : "spsc_cap2_3items";
        total += vf_explore(&sp);

        vf_scenario sc = {.nthreads = 3, .tso = tso, .bound = 2, .setup = spsc_close_setup,
                          .thread = spsc_close_thread, .check = spsc_close_check,
                          .teardown = q_teardown};
        sc.name = tso ? "spsc_close_drain_tso" : "spsc_close_drain";
        total += vf_explore(&sc);

        vf_scenario mp = {.tso = tso, .setup = mpmc_setup, .thread = mpmc_thread,
                          .invariant = mpmc_invariant, .check = mpmc_check,
                          .teardown = q_teardown};
        /* 2 producers x 2 items into capacity 1, one consumer: FIFO per producer */
        mp_nprod = 2, mp_ncons = 1, mp_items = 2, mp_cap = 1, mp_pops = 4;
        mp.nthreads = 3, mp.bound = 2;
        mp.name = tso ? "mpmc_2p1c_cap1_tso" : "mpmc_2p1c_cap1";
        total += vf_explore(&mp);
        /* 1 producer x 2 items, two consumers x 1 pop, capacity 2 */
        mp_nprod = 1, mp_ncons = 2, mp_items = 2, mp_cap = 2, mp_pops = 1;
        mp.name = tso ? "mpmc_1p2c_cap2_tso" : "mpmc_1p2c_cap2";
        total += vf_explore(&mp);
        /* two threads, bound 3: 1 producer x 3 into capacity 1 */
        mp_nprod = 1, mp_ncons = 1, mp_items = 3, mp_cap = 1, mp_pops = 3;
        mp.nthreads = 2, mp.bound = 3;
        mp.name = tso ? "mpmc_1p1c_cap1_tso" : "mpmc_1p1c_cap1";
        total += vf_explore(&mp);
    }
    printf("verify_queue: %lu executions\n", total);
    return 0;
}
