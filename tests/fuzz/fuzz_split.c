/* tests/fuzz/fuzz_split.c -- libFuzzer harness for asyncpat/split.h
 *
 * Input: splitter configurations for the AP_INVAL paths (k 0, no array, a
 * NULL output, mixed element sizes, an unknown mode), then a splitter in
 * HASH, ROUND_ROBIN or BROADCAST mode over 1..4 ap_mpmc outputs of
 * capacity 1..4 and a single-threaded sequence of try_push (any key),
 * try_broadcast (a resumable cursor, stepping over closed outputs), pops
 * and closes of single outputs, and push futures (up to 4, polled and
 * cancelled by hand with a counting waker), checked against a sequential
 * model (one FIFO per output, the round-robin cursor, a model of each
 * output's not_full waitlist):
 *   - init: AP_INVAL exactly for the bad configurations, *s untouched
 *   - HASH: the output is ap_split_route(key), a pure function of key
 *     (recomputed independently: splitmix64's finaliser, multiply-shift),
 *     the same for the same key all run long, always < k
 *   - ROUND_ROBIN: the i-th accepted try_push goes to output i % k (the
 *     cursor moves only on AP_OK; a future takes its turn at init)
 *   - one-output modes are all-or-nothing: AP_OK puts the item in exactly
 *     one output, any other status in none (FULL / CLOSED as the model)
 *   - BROADCAST: outputs [0, *next) hold the item, [*next, k) do not; a
 *     call at *next == 0 with any output full pushes nothing (AP_FULL)
 *   - each output is FIFO (pops return the model's ids in order); counts
 *     are conserved (accepted copies == items in the outputs + popped)
 *   - futures: the chosen output, progress and result as the model; the
 *     waker log is the model waitlists' (a pop wakes one not_full waiter
 *     of its output, a close all; a finished inner push passes on a wake
 *     it did not use); a cancel reports exactly how far it got
 */
#include "asyncpat/split.h"
#include "fuzz_common.h"

#define NF 4
#define MAXK 4
#define MAXCAP 4

#include "fuzz_wlmodel.h"

/* the model */
static size_t m_k, m_cap[MAXK];
static int m_mode;
static uint64_t m_q[MAXK][MAXCAP];
static size_t m_len[MAXK];
static int m_closed[MAXK];
static mwl m_wl[MAXK]; /* each output's not_full waiters */
static uint64_t m_cursor, next_id, accepted, popped;
typedef struct mfut {
    int live;      /* status AP_NOT_READY */
    uint64_t id;
    size_t out, next;
    int inner;     /* the inner mpmc push future is live (pending) */
} mfut;
static mfut mf[NF];
static uint64_t fitem[NF];
static struct { uint64_t key; size_t out; int used; } seen[64];

static size_t m_route(uint64_t key)
{
    uint64_t x = key;
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return (size_t)(((x >> 32) * (uint64_t)m_k) >> 32);
}

static ap_status m_push(size_t o, uint64_t id)
{
    if (m_closed[o]) return AP_CLOSED;
    if (m_len[o] == m_cap[o]) return AP_FULL;
    m_q[o][m_len[o]++] = id;
    accepted++;
    return AP_OK;
}

static void check_inval(fz *f)
{
    static _Alignas(64) unsigned char b[MAXK + 1][AP_MPMC_BYTES(1, 16)];
    ap_mpmc q[MAXK + 1];
    ap_mpmc *outs[MAXK + 1];
    uint8_t c = fz_u8(f);
    size_t k = (c & 1) ? fz_size(f) : (size_t)(c >> 1) % (MAXK + 2);
    size_t n = k < MAXK + 1 ? k : MAXK + 1;
    uint8_t sizes = fz_u8(f), nulls = fz_u8(f);
    int mixed = 0, anynull = 0;
    for (size_t i = 0; i < MAXK + 1; i++) {
        size_t es = (sizes >> i) & 1 ? 16 : 8;
        FZ_CHECK(ap_mpmc_init(&q[i], b[i], sizeof b[i], 1, es) == AP_OK);
        outs[i] = ((nulls >> i) & 1) && (nulls & 0x80) ? NULL : &q[i];
        if (i < n && outs[i] == NULL) anynull = 1;
        if (i < n && es != ((sizes & 1) ? 16u : 8u)) mixed = 1;
    }
    uint32_t mode = (c & 0x40) ? fz_u32(f) : (c >> 4) % 3;
    int noarr = (c & 0xc0) == 0x80 && (nulls & 1);
    ap_split s;
    fz_fill(&s, sizeof s);
    int bad = k == 0 || noarr || mode > 2;
    if (!bad && k > MAXK + 1) return; /* would read past the array */
    bad = bad || anynull || mixed;
    ap_status st = ap_split_init(&s, noarr ? NULL : outs, AP_SPLIT_BYTES(k), (ap_split_mode)mode);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&s, sizeof s));
    } else {
        FZ_CHECK(st == AP_OK && s.k == k && s.mode == (ap_split_mode)mode && s.outs == outs);
        for (int t = 0; t < 4; t++) FZ_CHECK(ap_split_route(&s, fz_u64(f)) < k);
        ap_split_fini(&s);
    }
}

static _Alignas(64) unsigned char qbuf[MAXK][AP_MPMC_BYTES(MAXCAP, 8)];

static void check_state(ap_split *s, ap_mpmc *q, ap_split_push_fut *fut)
{
    uint64_t held = 0;
    for (size_t o = 0; o < m_k; o++) {
        FZ_CHECK(ap_mpmc_len(&q[o]) == m_len[o]);
        FZ_CHECK(ap_mpmc_is_closed(&q[o]) == (m_closed[o] != 0));
        FZ_CHECK(ap_waitlist_has_waiters(&q[o].not_full) == (m_wl[o].len > 0));
        FZ_CHECK(!ap_waitlist_has_waiters(&q[o].not_empty));
        held += m_len[o];
    }
    FZ_CHECK(accepted == held + popped);
    if (m_mode == AP_SPLIT_MODE_ROUND_ROBIN)
        FZ_CHECK(AP_ATOMIC_LOAD(&s->cursor, memory_order_relaxed) == m_cursor);
    FZ_CHECK(wlen == explen);
    FZ_CHECK(memcmp(wlog, explog, (size_t)wlen * sizeof wlog[0]) == 0);
    for (int i = 0; i < NF; i++) {
        FZ_CHECK(wakes[i] == expwakes[i]);
        if (mf[i].live) {
            FZ_CHECK(ap_split_push_status(&fut[i]) == AP_NOT_READY);
            FZ_CHECK(ap_split_push_progress(&fut[i]) == mf[i].next);
            FZ_CHECK(fut[i].inner_live == (mf[i].inner != 0));
            if (m_mode != AP_SPLIT_MODE_BROADCAST) FZ_CHECK(fut[i].out == mf[i].out);
        }
    }
}

/* the output a future's inner push is on */
static size_t f_out(int i) { return m_mode == AP_SPLIT_MODE_BROADCAST ? mf[i].next : mf[i].out; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);
    check_inval(&f);

    uint8_t c = fz_u8(&f);
    m_k = 1 + (size_t)(c & 3);
    m_mode = (c >> 2) % 3;
    uint8_t caps = fz_u8(&f);
    ap_mpmc q[MAXK];
    ap_mpmc *outs[MAXK];
    for (size_t o = 0; o < m_k; o++) {
        m_cap[o] = 1 + ((caps >> (2 * o)) & 3);
        FZ_CHECK(ap_mpmc_init(&q[o], qbuf[o], sizeof qbuf[o], m_cap[o], 8) == AP_OK);
        outs[o] = &q[o];
        m_len[o] = 0;
        m_closed[o] = 0;
    }
    ap_split s;
    FZ_CHECK(ap_split_init(&s, outs, AP_SPLIT_BYTES(m_k), (ap_split_mode)m_mode) == AP_OK);
    m_cursor = next_id = accepted = popped = 0;
    memset(mf, 0, sizeof mf);
    memset(m_wl, 0, sizeof m_wl);
    memset(mw_state, 0, sizeof mw_state);
    memset(expwakes, 0, sizeof expwakes);
    memset(wakes, 0, sizeof wakes);
    memset(seen, 0, sizeof seen);
    wlen = explen = 0;
    ap_split_push_fut fut[NF];
    ap_cx cx[NF];
    for (int i = 0; i < NF; i++) cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};
    uint64_t bc_id = 0; /* the broadcast in progress */
    size_t bc_next = 0;
    int bc_live = 0;

    for (int steps = 0; fz_more(&f) && steps < 2048; steps++) {
        uint8_t op = fz_u8(&f);
        int i = (op >> 4) & (NF - 1);
        switch (op % 8) {
        case 0: case 1: { /* try_push / try_broadcast */
            if (m_mode != AP_SPLIT_MODE_BROADCAST) {
                uint64_t key = (op & 0x80) ? fz_val(&f) : (uint64_t)(op >> 4);
                uint64_t id = next_id++;
                size_t o = m_mode == AP_SPLIT_MODE_HASH ? m_route(key) : (size_t)(m_cursor % m_k);
                size_t r = ap_split_route(&s, key);
                FZ_CHECK(r < m_k && r == m_route(key));
                if (m_mode == AP_SPLIT_MODE_HASH) {
                    size_t h = (size_t)(key % 64);
                    if (seen[h].used && seen[h].key == key) FZ_CHECK(seen[h].out == r);
                    seen[h].used = 1; seen[h].key = key; seen[h].out = r;
                }
                size_t before[MAXK];
                memcpy(before, m_len, sizeof before);
                ap_status st = ap_split_try_push(&s, key, &id);
                FZ_CHECK(st == m_push(o, id));
                if (st == AP_OK && m_mode == AP_SPLIT_MODE_ROUND_ROBIN) m_cursor++;
                /* all or nothing, and only output o */
                for (size_t t = 0; t < m_k; t++)
                    FZ_CHECK(m_len[t] == before[t] + (st == AP_OK && t == o));
            } else {
                if (!bc_live || (op & 0x80 && bc_next == 0)) {
                    bc_id = next_id++;
                    bc_next = 0;
                    bc_live = 1;
                }
                if ((op & 0x40) && bc_next < m_k && m_closed[bc_next]) bc_next++; /* step over */
                size_t nx = bc_next;
                ap_status st = ap_split_try_broadcast(&s, &bc_id, &nx);
                ap_status e = AP_OK;
                if (bc_next == 0)
                    for (size_t t = 0; t < m_k; t++)
                        if (m_len[t] == m_cap[t]) e = AP_FULL;
                if (e == AP_OK)
                    while (bc_next < m_k && (e = m_push(bc_next, bc_id)) == AP_OK) bc_next++;
                FZ_CHECK(st == e && nx == bc_next);
                if (st == AP_OK) { FZ_CHECK(nx == m_k); bc_live = 0; }
            }
            break;
        }
        case 2: case 3: { /* pop an output */
            size_t o = (size_t)(op >> 4) % m_k;
            uint64_t v = 0xdeadbeef;
            ap_status st = ap_mpmc_try_pop(&q[o], &v);
            if (m_len[o]) {
                FZ_CHECK(st == AP_OK && v == m_q[o][0]);
                memmove(m_q[o], m_q[o] + 1, (m_len[o] - 1) * sizeof m_q[o][0]);
                m_len[o]--;
                popped++;
                mw_wake(&m_wl[o], 1);
            } else {
                FZ_CHECK(st == (m_closed[o] ? AP_CLOSED : AP_EMPTY) && v == 0xdeadbeef);
            }
            break;
        }
        case 4: case 5: { /* future: init (if free) + poll */
            if (!mf[i].live) {
                uint64_t key = (op & 0x80) ? fz_val(&f) : (uint64_t)(op >> 5);
                fitem[i] = next_id;
                ap_split_push_fut_init(&fut[i], &s, key, &fitem[i]);
                mf[i] = (mfut){1, next_id++, 0, 0, 0};
                if (m_mode == AP_SPLIT_MODE_HASH) mf[i].out = m_route(key);
                else if (m_mode == AP_SPLIT_MODE_ROUND_ROBIN) mf[i].out = (size_t)(m_cursor++ % m_k);
                FZ_CHECK(ap_split_push_status(&fut[i]) == AP_NOT_READY && ap_split_push_progress(&fut[i]) == 0);
            }
            ap_poll r = ap_split_push_poll(&fut[i], &cx[i]);
            int bcast = m_mode == AP_SPLIT_MODE_BROADCAST;
            ap_status fin = AP_NOT_READY;
            for (;;) {
                size_t o = f_out(i);
                if (!mf[i].inner) { mf[i].inner = 1; mw_state[i] = MW_IDLE; }
                mw_settle(i);
                ap_status st = m_push(o, mf[i].id);
                if (st == AP_FULL) {
                    mw_register(&m_wl[o], i);
                    break; /* the re-check finds it full too */
                }
                mw_cancel_pass(&m_wl[o], i);
                mf[i].inner = 0;
                if (st != AP_OK) { fin = st; break; }
                if (!bcast) { mf[i].next = 1; fin = AP_OK; break; }
                if (++mf[i].next == m_k) { fin = AP_OK; break; }
            }
            if (fin == AP_NOT_READY) {
                FZ_CHECK(r == AP_PENDING && ap_split_push_status(&fut[i]) == AP_NOT_READY);
            } else {
                FZ_CHECK(r == AP_READY && ap_split_push_status(&fut[i]) == fin);
                FZ_CHECK(ap_split_push_progress(&fut[i]) == mf[i].next);
                mf[i].live = 0;
            }
            break;
        }
        case 6: /* cancel */
            if (mf[i].live) {
                ap_split_push_cancel(&fut[i]);
                if (mf[i].inner) {
                    mw_cancel_pass(&m_wl[f_out(i)], i);
                    mf[i].inner = 0;
                }
                mf[i].live = 0;
                FZ_CHECK(ap_split_push_status(&fut[i]) == AP_CANCELED);
                FZ_CHECK(ap_split_push_progress(&fut[i]) == mf[i].next);
                ap_split_push_cancel(&fut[i]); /* idempotent */
                FZ_CHECK(ap_split_push_status(&fut[i]) == AP_CANCELED);
                FZ_CHECK(ap_split_push_poll(&fut[i], &cx[i]) == AP_READY);
                FZ_CHECK(ap_split_push_progress(&fut[i]) == mf[i].next);
            }
            break;
        default: /* close one output (rarely) */
            if ((op & 0x80) && (op & 0x08)) {
                size_t o = (size_t)(op >> 4) % m_k;
                ap_mpmc_close(&q[o]);
                m_closed[o] = 1;
                mw_wake(&m_wl[o], NF);
            }
            break;
        }
        check_state(&s, q, fut);
    }
    for (int i = 0; i < NF; i++) {
        if (!mf[i].live) continue;
        ap_split_push_cancel(&fut[i]);
        if (mf[i].inner) {
            mw_cancel_pass(&m_wl[f_out(i)], i);
            mf[i].inner = 0;
        }
        mf[i].live = 0;
        check_state(&s, q, fut);
    }
    /* drain every output in FIFO order */
    for (size_t o = 0; o < m_k; o++) {
        uint64_t v;
        for (size_t t = 0; t < m_len[o]; t++) {
            FZ_CHECK(ap_mpmc_try_pop(&q[o], &v) == AP_OK && v == m_q[o][t]);
            popped++;
        }
        m_len[o] = 0;
        FZ_CHECK(ap_mpmc_try_pop(&q[o], &v) == (m_closed[o] ? AP_CLOSED : AP_EMPTY));
        FZ_CHECK(!ap_waitlist_has_waiters(&q[o].not_full));
    }
    FZ_CHECK(accepted == popped);
    ap_split_fini(&s);
    for (size_t o = 0; o < m_k; o++) ap_mpmc_fini(&q[o]);
    return 0;
}
