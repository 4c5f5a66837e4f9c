/*
 * tests/fuzz/fuzz_wlmodel.h -- for harnesses of headers that wait on an
 * ap_waitlist: a counting waker that logs the order of its wakes, and an
 * exact sequential model of one waiter list, so a harness can require the
 * library's wakes to match the model's (order and count).
 * Define NF (how many futures the harness drives) before including it.
 */
#ifndef ASYNCPAT_FUZZ_WLMODEL_H
#define ASYNCPAT_FUZZ_WLMODEL_H

#ifndef NF
#error "define NF before including fuzz_wlmodel.h"
#endif

/* a counting waker that logs the order of wakes */
static int wlog[4096], wlen;
static int wakes[NF];
static void fz_wake(void *ctx)
{
    int i = (int)(intptr_t)ctx;
    wakes[i]++;
    if (wlen < 4096) wlog[wlen++] = i;
}

/* a model of one ap_waitlist (waitlist.h): a FIFO of linked waiters, each
 * IDLE, LINKED or NOTIFIED; wakes take from the head and are logged */
enum { MW_IDLE, MW_LINKED, MW_NOTIFIED };
typedef struct mwl { int q[NF]; int len; } mwl;
static int mw_state[NF];
static int explog[4096], explen;
static int expwakes[NF];
static void mw_unlink(mwl *l, int i)
{
    int k = 0;
    for (int j = 0; j < l->len; j++)
        if (l->q[j] != i) l->q[k++] = l->q[j];
    FZ_CHECK(k == l->len - 1);
    l->len = k;
}
static void mw_register(mwl *l, int i)
{
    if (mw_state[i] == MW_NOTIFIED) mw_state[i] = MW_IDLE; /* settle */
    if (mw_state[i] == MW_IDLE) {
        l->q[l->len++] = i;
        mw_state[i] = MW_LINKED;
    }
}
static void mw_wake(mwl *l, int n)
{
    while (n-- > 0 && l->len) {
        int i = l->q[0];
        mw_unlink(l, i);
        mw_state[i] = MW_NOTIFIED;
        expwakes[i]++;
        if (explen < 4096) explog[explen++] = i;
    }
}
/* ap_waitlist_cancel: true if it had been woken */
static int mw_cancel(mwl *l, int i)
{
    if (mw_state[i] == MW_IDLE) return 0;
    if (mw_state[i] == MW_LINKED) {
        mw_unlink(l, i);
        mw_state[i] = MW_IDLE;
        return 0;
    }
    mw_state[i] = MW_IDLE;
    return 1;
}
static void mw_cancel_pass(mwl *l, int i)
{
    if (mw_cancel(l, i)) mw_wake(l, 1);
}
static void mw_settle(int i)
{
    if (mw_state[i] == MW_NOTIFIED) mw_state[i] = MW_IDLE;
}

#endif /* ASYNCPAT_FUZZ_WLMODEL_H */
