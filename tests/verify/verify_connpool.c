/*
 * verify_connpool.c -- the connection pool's checkout hand-off under every
 * interleaving within the preemption bound (SC and x86-TSO).
 *
 * Theorems: opened - closed == live <= max at every step; each connection
 * has at most one holder; a broken return frees its slot for a waiter that
 * then opens a fresh one; every waiter completes (lost-wakeup detector);
 * at the end every opened connection is closed exactly once by fini.
 */
#include "vf.h"
#include "asyncpat/connpool.h"

typedef struct conn {
    int id;
    int holders;
} conn;

typedef struct cpst {
    ap_connpool p;
    _Alignas(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(2, sizeof(conn))];
    int opened, closed, next_id, broken_id;
    size_t max;
} cpst;

static ap_status cp_open(void *ctx, void *c, int *app_error)
{
    cpst *s = ctx;
    VF_CHECK(*app_error == 0, "*app_error %d on entry", *app_error);
    s->opened++;
    VF_CHECK((size_t)(s->opened - s->closed) <= s->max, "%d live of %zu", s->opened - s->closed,
             s->max);
    *(conn *)c = (conn){++s->next_id, 0};
    return AP_OK;
}

static void cp_close(void *ctx, void *c)
{
    cpst *s = ctx;
    VF_CHECK(((conn *)c)->holders == 0, "closing a held connection");
    ((conn *)c)->id = -1;
    s->closed++;
}

static size_t cp_max;
static int cp_rounds;

static void *cp_setup(void)
{
    cpst *s = calloc(1, sizeof *s);
    s->max = cp_max;
    ap_connpool_ops ops = {cp_open, cp_close, NULL, s};
    VF_CHECK(ap_connpool_init(&s->p, s->buf, sizeof s->buf,
                              &(ap_connpool_desc){.max_size = cp_max, .conn_size = sizeof(conn)},
                              &ops) == AP_OK);
    return s;
}

static void cp_thread(void *p, int id)
{
    cpst *s = p;
    for (int r = 0; r < cp_rounds; r++) {
        void *c = NULL;
        ap_connpool_checkout_fut f;
        ap_connpool_checkout_fut_init(&f, &s->p, &c);
        vf_wait(&f.base);
        VF_CHECK(ap_connpool_checkout_status(&f) == AP_OK);
        conn *k = c;
        VF_CHECK(k->id > 0 && k->id != s->broken_id, "lent a closed or broken connection");
        VF_CHECK(++k->holders == 1, "connection %d has %d holders", k->id, k->holders);
        vf_yield(); /* in use */
        k->holders--;
        if (id == 0 && r == 0)
            s->broken_id = k->id;
        /* thread 0 reports its first connection broken: its slot must
         * reach a waiter, who opens a fresh one */
        VF_CHECK(ap_connpool_return(&s->p, c, id == 0 && r == 0, vf_now()) == AP_OK);
    }
}

static void cp_invariant(void *p)
{
    cpst *s = p;
    VF_CHECK(s->opened - s->closed >= 0 && (size_t)(s->opened - s->closed) <= s->max);
}

static void cp_check(void *p)
{
    cpst *s = p;
    ap_connpool_fini(&s->p);
    VF_CHECK(s->opened == s->closed, "opened %d, closed %d", s->opened, s->closed);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.tso = tso, .setup = cp_setup, .thread = cp_thread,
                          .invariant = cp_invariant, .check = cp_check, .teardown = free};
        cp_max = 1, cp_rounds = 2;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "connpool_max1_2threads_tso" : "connpool_max1_2threads";
        total += vf_explore(&sc);
        cp_max = 1, cp_rounds = 1;
        sc.nthreads = 3, sc.bound = 2;
        sc.name = tso ? "connpool_max1_3threads_tso" : "connpool_max1_3threads";
        total += vf_explore(&sc);
        cp_max = 2, cp_rounds = 1;
        sc.name = tso ? "connpool_max2_3threads_tso" : "connpool_max2_3threads";
        total += vf_explore(&sc);
    }
    printf("verify_connpool: %lu executions\n", total);
    return 0;
}
