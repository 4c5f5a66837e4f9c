/*
 * verify_sync.c -- the waiter list, the semaphore with waiters and the
 * Chase-Lev deque under every interleaving within the preemption bound.
 *
 *   waitlist   the ladder (publish, then look for waiters / register, then
 *              re-check) never loses a wake; a woken waiter that cancels
 *              passes its wake on (cancel_pass)
 *   semaphore  never more than n holders; permits conserved (all back at
 *              the end, also when a granted waiter cancels); every waiter
 *              is granted (no lost wakeup)
 *   work steal every task taken exactly once by the owner or a thief; in
 *              x86-TSO mode the owner's fence between lowering bottom and
 *              reading top is what makes this true
 */
#include "vf.h"
#include "asyncpat/semaphore.h"
#include "asyncpat/waitlist.h"
#include "asyncpat/work_steal.h"

/* ---- waitlist: tokens published with the ladder ---- */

typedef struct wst {
    ap_waitlist wl;
    _Atomic unsigned tokens; /* published */
    unsigned taken;          /* by waiters (plain: one OS thread) */
    int done[3];
} wst;

static ap_status take_token(void *obj, void *arg)
{
    wst *s = obj;
    (void)arg;
    /* seq_cst: the waiting side's re-check of the ladder */
    unsigned t = AP_ATOMIC_LOAD(&s->tokens, memory_order_seq_cst);
    if (t == s->taken)
        return AP_EMPTY;
    s->taken++;
    return AP_OK;
}

static ap_status never(void *obj, void *arg)
{
    (void)obj, (void)arg;
    return AP_EMPTY;
}

static void publish(wst *s)
{
    AP_ATOMIC_FETCH_ADD(&s->tokens, 1u, memory_order_seq_cst);
    if (ap_waitlist_has_waiters(&s->wl))
        (void)ap_waitlist_wake(&s->wl, 1);
}

static void *wl_setup(void) { return calloc(1, sizeof(wst)); }
static void st_free(void *p) { free(p); }

/* two waiters, one token each, a publisher of two tokens */
static void wl_two_waiters(void *p, int id)
{
    wst *s = p;
    if (id == 1) {
        publish(s);
        publish(s);
        return;
    }
    ap_waitop op;
    ap_waitop_init(&op, &s->wl, take_token, s, NULL);
    vf_wait(&op.base);
    VF_CHECK(ap_waitop_status(&op) == AP_OK);
    s->done[id] = 1;
}

static void wl_two_waiters_check(void *p)
{
    wst *s = p;
    VF_CHECK(s->done[0] && s->done[2] && s->taken == 2);
    VF_CHECK(!ap_waitlist_has_waiters(&s->wl), "a finished waiter left linked");
}

/* T0 waits for a token; T2 waits on the same list for something that
 * never comes and cancels after its first poll; T1 publishes one token.
 * If T2 took the wake (it was the head), its cancel must pass it to T0. */
static void wl_cancel_pass(void *p, int id)
{
    wst *s = p;
    if (id == 1) {
        publish(s);
        return;
    }
    ap_waitop op;
    ap_waitop_init(&op, &s->wl, id == 0 ? take_token : never, s, NULL);
    if (id == 0) {
        vf_wait(&op.base);
        VF_CHECK(ap_waitop_status(&op) == AP_OK);
        s->done[0] = 1;
    } else {
        VF_CHECK(vf_poll(&op.base) == AP_PENDING);
        ap_waitop_cancel(&op);
        VF_CHECK(ap_waitop_status(&op) == AP_CANCELED);
    }
}

static void wl_cancel_pass_check(void *p)
{
    wst *s = p;
    VF_CHECK(s->done[0] && s->taken == 1);
    VF_CHECK(!ap_waitlist_has_waiters(&s->wl));
}

/* ---- semaphore ---- */

typedef struct sst {
    ap_sem sem;
    int active, max_active, n;
    int done;
} sst;

static int sem_permits;

static void *sem_setup(void)
{
    sst *s = calloc(1, sizeof *s);
    VF_CHECK(ap_sem_init(&s->sem, (size_t)sem_permits) == AP_OK);
    s->n = sem_permits;
    return s;
}

static void hold(sst *s)
{
    s->active++;
    if (s->active > s->max_active)
        s->max_active = s->active;
    VF_CHECK(s->active <= s->n, "%d holders of %d permits", s->active, s->n);
    vf_yield(); /* others run while we hold */
    s->active--;
    VF_CHECK(ap_sem_release(&s->sem, 1) == AP_OK);
}

/* each thread: one try_acquire (falling back to a future), hold, release */
static void sem_thread(void *p, int id)
{
    sst *s = p;
    if (id == 0 && ap_sem_try_acquire(&s->sem, 1) == AP_OK) {
        hold(s);
        s->done++;
        return;
    }
    ap_sem_acquire_fut f;
    ap_sem_acquire_fut_init(&f, &s->sem, 1);
    vf_wait(&f.base);
    VF_CHECK(ap_sem_acquire_status(&f) == AP_OK);
    hold(s);
    s->done++;
}

/* T2 polls once and cancels: if it was granted in between, the permit must
 * go back and on to the others */
static void sem_cancel_thread(void *p, int id)
{
    sst *s = p;
    if (id != 2) {
        sem_thread(p, id);
        return;
    }
    ap_sem_acquire_fut f;
    ap_sem_acquire_fut_init(&f, &s->sem, 1);
    if (vf_poll(&f.base) == AP_READY) {
        VF_CHECK(ap_sem_acquire_status(&f) == AP_OK);
        hold(s);
    } else {
        ap_sem_acquire_cancel(&f);
        ap_status st = ap_sem_acquire_status(&f);
        VF_CHECK(st == AP_CANCELED, "status after cancel: %d", st);
    }
    s->done++;
}

static void sem_check(void *p)
{
    sst *s = p;
    VF_CHECK(s->active == 0);
    VF_CHECK(ap_sem_available(&s->sem) == (size_t)s->n, "permits not conserved: %zu of %d",
             ap_sem_available(&s->sem), s->n);
    VF_CHECK(!ap_waitlist_has_waiters(&s->sem.wl));
}

static int sem_threads;
static void sem_check_all(void *p)
{
    sem_check(p);
    VF_CHECK(((sst *)p)->done == sem_threads);
}

/* ---- work stealing ---- */

typedef struct dst {
    ap_ws d;
    _Alignas(8) unsigned char buf[AP_WS_BYTES(4)];
    int taken[4]; /* per task, by anyone */
    int ntasks;
} dst;

static int ws_tasks;

static void *ws_setup(void)
{
    dst *s = calloc(1, sizeof *s);
    VF_CHECK(ap_ws_init(&s->d, s->buf, sizeof s->buf, 4) == AP_OK);
    return s;
}

static int task_id(dst *s, void *t) { return (int)((char *)t - (char *)s->taken); }

static void take(dst *s, void *t)
{
    int i = task_id(s, t);
    VF_CHECK(i >= 0 && i < ws_tasks, "bogus task");
    VF_CHECK(++s->taken[i] == 1, "task %d taken twice", i);
}

static void ws_thread(void *p, int id)
{
    dst *s = p;
    void *t;
    if (id == 0) { /* owner: push the tasks, then pop until empty */
        for (int i = 0; i < ws_tasks; i++)
            VF_CHECK(ap_ws_try_push(&s->d, (char *)s->taken + i) == AP_OK);
        while (ap_ws_try_pop(&s->d, &t) == AP_OK)
            take(s, t);
    } else { /* thief: steal until empty (AGAIN: lost a race, retry) */
        for (int tries = 0; tries < 4; tries++) {
            ap_status st = ap_ws_try_steal(&s->d, &t);
            if (st == AP_OK)
                take(s, t);
            else if (st == AP_EMPTY && tries > 0)
                break;
        }
    }
}

static void ws_check(void *p)
{
    dst *s = p;
    void *t;
    while (ap_ws_try_pop(&s->d, &t) == AP_OK) /* leftovers: a thief gave up */
        take(s, t);
    for (int i = 0; i < ws_tasks; i++)
        VF_CHECK(s->taken[i] == 1, "task %d taken %d times", i, s->taken[i]);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario w = {.nthreads = 3, .tso = tso, .bound = 2, .setup = wl_setup,
                         .teardown = st_free};
        w.name = tso ? "waitlist_two_waiters_tso" : "waitlist_two_waiters";
        w.thread = wl_two_waiters, w.check = wl_two_waiters_check;
        total += vf_explore(&w);
        w.name = tso ? "waitlist_cancel_pass_tso" : "waitlist_cancel_pass";
        w.thread = wl_cancel_pass, w.check = wl_cancel_pass_check;
        total += vf_explore(&w);

        vf_scenario sm = {.tso = tso, .setup = sem_setup, .thread = sem_thread,
                          .check = sem_check_all, .teardown = st_free};
        sem_permits = 1, sem_threads = 2;
        sm.nthreads = 2, sm.bound = 3;
        sm.name = tso ? "sem_1permit_2threads_tso" : "sem_1permit_2threads";
        total += vf_explore(&sm);
        sem_permits = 1, sem_threads = 3;
        sm.nthreads = 3, sm.bound = 2;
        sm.name = tso ? "sem_1permit_3threads_tso" : "sem_1permit_3threads";
        total += vf_explore(&sm);
        sm.thread = sem_cancel_thread;
        sm.name = tso ? "sem_1permit_cancel_tso" : "sem_1permit_cancel";
        total += vf_explore(&sm);
        sem_permits = 2;
        sm.thread = sem_thread;
        sm.name = tso ? "sem_2permits_3threads_tso" : "sem_2permits_3threads";
        total += vf_explore(&sm);

        vf_scenario ws = {.tso = tso, .setup = ws_setup, .thread = ws_thread,
                          .check = ws_check, .teardown = st_free};
        ws_tasks = 1, ws.nthreads = 2, ws.bound = 3;
        ws.name = tso ? "ws_1task_owner_thief_tso" : "ws_1task_owner_thief";
        total += vf_explore(&ws);
        ws_tasks = 2;
        ws.name = tso ? "ws_2tasks_owner_thief_tso" : "ws_2tasks_owner_thief";
        total += vf_explore(&ws);
        ws_tasks = 2, ws.nthreads = 3, ws.bound = 2;
        ws.name = tso ? "ws_2tasks_owner_2thieves_tso" : "ws_2tasks_owner_2thieves";
        total += vf_explore(&ws);
    }
    printf("verify_sync: %lu executions\n", total);
    return 0;
}
