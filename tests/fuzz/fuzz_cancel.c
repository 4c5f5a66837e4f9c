/* tests/fuzz/fuzz_cancel.c -- libFuzzer harness for asyncpat/cancel.h trees
 *
 * Input: a single-threaded sequence over 12 token slots: init a root, init
 * a child of a live slot, cancel, fini, register a callback (one per slot),
 * take it off, poll a cancelled future (one per slot, counting waker),
 * cancel that future. Checked after every step against a sequential model
 * of the tree (parent links only; children are what points at a slot):
 *   - ap_cancel_is_cancelled of every live slot equals the model; a cancel
 *     marks the slot and every model descendant, detaches the descendants
 *     (the slot keeps its own parent), and leaves ancestors and siblings
 *   - a child made under a cancelled slot is born cancelled and unlinked
 *   - fini moves the slot's children to its parent (roots if it had none);
 *     the real parent link of every live slot equals the model's
 *   - every callback runs exactly once, at the cancel that cancelled its
 *     token (at once if registered on a cancelled one), never after an off
 *     that said AP_OK; off says AP_CANCELED exactly when it ran
 *   - a pending future is woken exactly once by that cancel, never after
 *     its own cancel; a poll completes (AP_OK) exactly when the token is
 *     cancelled; its cancel says AP_CANCELED while pending and is idempotent
 *   - ap_waitlist_has_waiters of each token equals "a callback or future is
 *     registered and not yet woken"
 */
#include "asyncpat/cancel.h"
#include "fuzz_common.h"

#define NT 12

static ap_cancel tok[NT];
static ap_cancel_cb cb[NT];
static ap_cancel_fut fut[NT];
static int fired[NT], wakes[NT];
static void fz_fire(void *ctx) { fired[(int)(intptr_t)ctx]++; }
static void fz_wake(void *ctx) { wakes[(int)(intptr_t)ctx]++; }

/* the model */
static struct {
    int live, parent, cancelled;
    int cb;      /* 0 none, 1 registered, 2 ran (not yet off) */
    int expfire; /* fires expected so far for the current registration */
    int fut;     /* 0 none, 1 linked, 2 woken (not re-polled), 3 done */
    int expwake;
} m[NT];

static void model_cancel(int i, int top)
{
    if (!m[i].cancelled) {
        m[i].cancelled = 1;
        if (m[i].cb == 1) {
            m[i].cb = 2;
            m[i].expfire++;
        }
        if (m[i].fut == 1) {
            m[i].fut = 2;
            m[i].expwake++;
        }
    }
    for (int j = 0; j < NT; j++)
        if (m[j].live && m[j].parent == i) {
            model_cancel(j, 0);
            m[j].parent = -1; /* detached by the walk */
        }
    (void)top;
}

static void check_all(void)
{
    for (int i = 0; i < NT; i++) {
        if (!m[i].live)
            continue;
        FZ_CHECK(ap_cancel_is_cancelled(&tok[i]) == (m[i].cancelled != 0));
        ap_cancel *p = m[i].parent < 0 ? NULL : &tok[m[i].parent];
        FZ_CHECK(tok[i].parent == p);
        FZ_CHECK(fired[i] == m[i].expfire);
        FZ_CHECK(wakes[i] == m[i].expwake);
        FZ_CHECK(ap_waitlist_has_waiters(&tok[i].wl) == (m[i].cb == 1 || m[i].fut == 1));
        if (m[i].cancelled)
            FZ_CHECK(tok[i].child == NULL); /* a cancelled token has no children */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    memset(m, 0, sizeof m);
    memset(fired, 0, sizeof fired);
    memset(wakes, 0, sizeof wakes);
    fz_fill(tok, sizeof tok);
    for (int i = 0; i < NT; i++)
        m[i].parent = -1;
    int steps = 0;
    while (fz_more(&f) && steps++ < 400) {
        uint8_t op = fz_u8(&f);
        int i = fz_u8(&f) % NT, j = fz_u8(&f) % NT;
        switch (op % 8) {
        case 0: /* root */
            if (m[i].live)
                break;
            ap_cancel_init(&tok[i]);
            m[i].live = 1, m[i].parent = -1, m[i].cancelled = 0;
            m[i].cb = m[i].fut = m[i].expfire = m[i].expwake = 0;
            fired[i] = wakes[i] = 0;
            break;
        case 1: /* child of j */
            if (m[i].live || !m[j].live || i == j)
                break;
            ap_cancel_init_child(&tok[i], &tok[j]);
            m[i].live = 1;
            m[i].cb = m[i].fut = m[i].expfire = m[i].expwake = 0;
            fired[i] = wakes[i] = 0;
            m[i].cancelled = m[j].cancelled;
            m[i].parent = m[j].cancelled ? -1 : j;
            break;
        case 2: /* cancel */
            if (!m[i].live)
                break;
            ap_cancel_cancel(&tok[i]);
            model_cancel(i, 1);
            break;
        case 3: /* fini: its callback and future taken off first */
            if (!m[i].live)
                break;
            if (m[i].cb) {
                ap_status st = ap_cancel_off(&tok[i], &cb[i]);
                FZ_CHECK(st == (m[i].cb == 2 ? AP_CANCELED : AP_OK));
                m[i].cb = 0;
            }
            if (m[i].fut == 1 || m[i].fut == 2)
                ap_cancel_fut_cancel(&fut[i]);
            ap_cancel_fini(&tok[i]);
            for (int c = 0; c < NT; c++)
                if (m[c].live && m[c].parent == i)
                    m[c].parent = m[i].parent;
            m[i].live = 0;
            m[i].parent = -1;
            break;
        case 4: /* on */
            if (!m[i].live || m[i].cb)
                break;
            ap_cancel_on(&tok[i], &cb[i], fz_fire, (void *)(intptr_t)i);
            if (m[i].cancelled) {
                m[i].cb = 2;
                m[i].expfire++;
            } else {
                m[i].cb = 1;
            }
            break;
        case 5: /* off */
            if (!m[i].live || !m[i].cb)
                break;
            FZ_CHECK(ap_cancel_off(&tok[i], &cb[i]) == (m[i].cb == 2 ? AP_CANCELED : AP_OK));
            FZ_CHECK(ap_cancel_off(&tok[i], &cb[i]) == (m[i].cb == 2 ? AP_CANCELED : AP_OK));
            m[i].cb = 0;
            m[i].expfire = fired[i] = 0; /* a new registration counts afresh */
            break;
        case 6: { /* poll the future */
            if (!m[i].live || m[i].fut == 3)
                break;
            if (m[i].fut == 0)
                ap_cancel_fut_init(&fut[i], &tok[i]);
            ap_cx cx = {{fz_wake, (void *)(intptr_t)i}, 0, AP_DEADLINE_NONE};
            ap_poll p = ap_cancel_poll(&fut[i], &cx);
            if (m[i].cancelled) {
                FZ_CHECK(p == AP_READY && ap_cancel_fut_status(&fut[i]) == AP_OK);
                m[i].fut = 3;
            } else {
                FZ_CHECK(p == AP_PENDING && ap_cancel_fut_status(&fut[i]) == AP_NOT_READY);
                m[i].fut = 1;
            }
            break;
        }
        case 7: /* cancel the future */
            if (!m[i].live || m[i].fut == 0)
                break;
            ap_cancel_fut_cancel(&fut[i]);
            ap_cancel_fut_cancel(&fut[i]);
            FZ_CHECK(ap_cancel_fut_status(&fut[i]) == (m[i].fut == 3 ? AP_OK : AP_CANCELED));
            m[i].fut = 0;
            m[i].expwake = wakes[i] = 0; /* a new future counts afresh */
            break;
        }
        check_all();
    }
    /* tear down: children first is not required (fini moves them up) */
    for (int i = 0; i < NT; i++) {
        if (!m[i].live)
            continue;
        if (m[i].cb)
            FZ_CHECK(ap_cancel_off(&tok[i], &cb[i]) == (m[i].cb == 2 ? AP_CANCELED : AP_OK));
        if (m[i].fut == 1 || m[i].fut == 2)
            ap_cancel_fut_cancel(&fut[i]);
        ap_cancel_fini(&tok[i]);
        for (int c = 0; c < NT; c++)
            if (m[c].live && m[c].parent == i)
                m[c].parent = m[i].parent;
        m[i].live = 0;
        check_all();
    }
    return 0;
}
