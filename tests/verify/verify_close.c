/*
 * verify_close.c -- the SPSC close handshake and the "HEAVY only on a fresh
 * link" path of waitlist.h, beyond verify_queue's scenarios (found missing
 * in review; "is_closed, then an empty pop" failed on the first version of
 * the handshake, where is_closed was already true while CLOSING).
 *
 * Theorems: once ap_spsc_is_closed says true, an empty pop means drained;
 * a push_n batch racing two closers (one of them the consumer) is either
 * refused whole or drained whole, in order; the producer may close itself;
 * a future re-polled while its node is still linked (spurious re-polls)
 * is still woken (spsc pop, semaphore acquire).
 */
#include "vf.h"
#include "asyncpat/spsc.h"
#include "asyncpat/semaphore.h"

/* ---- is_closed, then an empty pop: drained ---- */
/* "is_closed, then an empty pop" as the drained test (works for ap_mpmc:
 * the CLOSED bit is set by an RMW on tail, so no claim can follow it). */
typedef struct { ap_spsc q; unsigned char buf[64]; int ngot; ap_status pushed; } ic_st_t;
static void *ic_setup(void)
{
    ic_st_t *s = calloc(1, sizeof *s);
    VF_CHECK(ap_spsc_init(&s->q, s->buf, sizeof s->buf, 2, sizeof(int)) == AP_OK);
    return s;
}
static void ic_thread(void *p, int id)
{
    ic_st_t *s = p;
    if (id == 0) {
        int v = 7;
        s->pushed = ap_spsc_try_push(&s->q, &v);
    } else if (id == 1) {
        for (;;) {
            bool closed = ap_spsc_is_closed(&s->q);
            int v;
            ap_status st = ap_spsc_try_pop(&s->q, &v);
            if (st == AP_OK) { s->ngot++; continue; }
            if (st == AP_CLOSED || closed) break; /* closed, then empty: done? */
            vf_yield();
        }
    } else {
        ap_spsc_close(&s->q);
    }
}
static void ic_check(void *p)
{
    ic_st_t *s = p;
    VF_CHECK(s->pushed != AP_OK || s->ngot == 1, "push AP_OK, consumer saw is_closed then AP_EMPTY and stopped; item left: len %zu", ap_spsc_len(&s->q));
}

/* ---- push_n racing two closers; the producer closing itself ---- */
/* spsc close: a push_n batch racing two closers (one of them the consumer),
 * and the producer closing itself after a batch. */
typedef struct { ap_spsc q; unsigned char buf[64]; int got[8]; int ngot; size_t done; ap_status st; bool closed_ret[3]; } cl_st_t;
static void *cl_setup(void)
{
    cl_st_t *s = calloc(1, sizeof *s);
    VF_CHECK(ap_spsc_init(&s->q, s->buf, sizeof s->buf, 4, sizeof(int)) == AP_OK);
    return s;
}
static void cl_drain(cl_st_t *s)
{
    for (;;) {
        int v; ap_status st = ap_spsc_try_pop(&s->q, &v);
        if (st == AP_CLOSED) return;
        VF_CHECK(st == AP_OK, "pop after close returned: %s", ap_status_str(st));
        s->got[s->ngot++] = v;
    }
}
static void cl_thread(void *p, int id)
{
    cl_st_t *s = p;
    if (id == 0) {
        int v[3] = {1, 2, 3};
        s->st = ap_spsc_try_push_n(&s->q, v, 3, &s->done);
    } else if (id == 1) {
        ap_spsc_close(&s->q);   /* consumer closes, then drains */
        VF_CHECK(ap_spsc_is_closed(&s->q));
        cl_drain(s);
    } else {
        ap_spsc_close(&s->q);   /* a concurrent second close */
        s->closed_ret[2] = true;
    }
}
static void cl_check(void *p)
{
    cl_st_t *s = p;
    if (s->st == AP_OK) {
        VF_CHECK((size_t)s->ngot == s->done, "pushed %zu, drained %d", s->done, s->ngot);
        for (int i = 0; i < s->ngot; i++) VF_CHECK(s->got[i] == i + 1);
    } else {
        VF_CHECK(s->st == AP_CLOSED && s->done == 0 && s->ngot == 0);
    }
    VF_CHECK(ap_spsc_len(&s->q) == 0);
}
static void cl_pthread_(void *p, int id)
{
    cl_st_t *s = p;
    if (id == 0) {
        int v[2] = {1, 2};
        s->st = ap_spsc_try_push_n(&s->q, v, 2, &s->done);
        ap_spsc_close(&s->q);            /* the producer closes itself */
        int x = 9;
        VF_CHECK(ap_spsc_try_push(&s->q, &x) == AP_CLOSED);
    } else {
        for (;;) {
            int v; ap_status st = ap_spsc_try_pop(&s->q, &v);
            if (st == AP_CLOSED) break;
            if (st == AP_EMPTY) { vf_yield(); continue; }
            s->got[s->ngot++] = v;
        }
    }
}
static void cl_pcheck(void *p) { cl_st_t *s = p; VF_CHECK(s->st == AP_OK && s->done == 2 && s->ngot == 2); }

/* ---- re-polls while LINKED (no second HEAVY) ---- */
/* The "HEAVY only on a fresh link" path: a pop future re-polled while its
 * node is still LINKED (spurious re-polls: timer, executor), in TSO. */
typedef struct { ap_spsc q; unsigned char buf[64]; int got[2]; ap_sem s; ap_status a; } lk_st_t;
static void *lk_setup(void)
{
    lk_st_t *s = calloc(1, sizeof *s);
    VF_CHECK(ap_spsc_init(&s->q, s->buf, sizeof s->buf, 2, sizeof(int)) == AP_OK);
    VF_CHECK(ap_sem_init_max(&s->s, 0, 4) == AP_OK);
    return s;
}
static void lk_thread(void *p, int id)
{
    lk_st_t *s = p;
    if (id == 0) {
        for (int i = 0; i < 2; i++) { int v = 7 + i; VF_CHECK(ap_spsc_try_push(&s->q, &v) == AP_OK); }
    } else {
        for (int i = 0; i < 2; i++) {
            int v = -1;
            ap_spsc_pop_fut f; ap_spsc_pop_fut_init(&f, &s->q, &v);
            if (vf_poll(&f.op.base) != AP_READY && vf_poll(&f.op.base) != AP_READY)
                vf_wait(&f.op.base);
            VF_CHECK(ap_spsc_pop_status(&f) == AP_OK);
            s->got[i] = v;
        }
    }
}
static void lk_check(void *p) { lk_st_t *s = p; VF_CHECK(s->got[0] == 7 && s->got[1] == 8); }

static void lk_sthread(void *p, int id)
{
    lk_st_t *s = p;
    if (id == 0) {
        VF_CHECK(ap_sem_release(&s->s, 1) == AP_OK);
    } else {
        ap_sem_acquire_fut f; ap_sem_acquire_fut_init(&f, &s->s, 1);
        if (vf_poll(&f.base) != AP_READY && vf_poll(&f.base) != AP_READY)
            vf_wait(&f.base);
        s->a = ap_sem_acquire_status(&f);
    }
}
static void lk_scheck(void *p) { lk_st_t *s = p; VF_CHECK(s->a == AP_OK); }

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario a = {.name = tso ? "spsc_is_closed_then_empty_tso" : "spsc_is_closed_then_empty",
                         .nthreads = 3, .tso = tso, .bound = 2, .setup = ic_setup,
                         .thread = ic_thread, .check = ic_check, .teardown = free};
        total += vf_explore(&a);
        vf_scenario b = {.name = tso ? "spsc_close_pushn_two_closers_tso" : "spsc_close_pushn_two_closers",
                         .nthreads = 3, .tso = tso, .bound = 2, .setup = cl_setup,
                         .thread = cl_thread, .check = cl_check, .teardown = free};
        total += vf_explore(&b);
        vf_scenario c = {.name = tso ? "spsc_producer_closes_tso" : "spsc_producer_closes",
                         .nthreads = 2, .tso = tso, .bound = 2, .setup = cl_setup,
                         .thread = cl_pthread_, .check = cl_pcheck, .teardown = free};
        total += vf_explore(&c);
        vf_scenario d = {.name = tso ? "spsc_linked_repoll_tso" : "spsc_linked_repoll",
                         .nthreads = 2, .tso = tso, .bound = 3, .setup = lk_setup,
                         .thread = lk_thread, .check = lk_check, .teardown = free};
        total += vf_explore(&d);
        vf_scenario e = {.name = tso ? "sem_linked_repoll_tso" : "sem_linked_repoll",
                         .nthreads = 2, .tso = tso, .bound = 3, .setup = lk_setup,
                         .thread = lk_sthread, .check = lk_scheck, .teardown = free};
        total += vf_explore(&e);
    }
    printf("verify_close: %lu executions\n", total);
    return 0;
}
