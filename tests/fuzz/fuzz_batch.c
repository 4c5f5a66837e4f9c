/* tests/fuzz/fuzz_batch.c -- libFuzzer harness for asyncpat/batch.h
 *
 * Input: descs for the AP_INVAL paths (any elem_size, max_size and
 * max_delay, or no desc at all), then a batcher of 1..16 items of 1..16
 * bytes (max_delay 0 = the default, small, or huge enough to saturate) and
 * a single-threaded sequence of add, take, flush, close, deadline / is_due
 * / len / stats queries and take futures (up to 4, polled and cancelled by
 * hand with a counting waker), on a fake clock the input drives: mostly
 * forward, sometimes a small step back (the contract allows clocks slightly
 * apart: oldest is the minimum of the adds' times), sometimes to the top.
 * Checked against a sequential model after every step:
 *   - init: AP_INVAL exactly for no desc, elem_size or max_size 0,
 *     max_size * elem_size overflowing, a NULL buffer or a size below
 *     AP_BATCH_BYTES (sometimes one byte short), leaving *b and the buffer
 *     untouched; a valid init
 *     resolves max_delay 0 to the default and starts empty
 *   - items come out in add order, each exactly once, byte for byte;
 *     batches hold 1..max_size items; an add to a full batch is AP_FULL,
 *     to a closed one AP_CLOSED (*due untouched)
 *   - due exactly when len == max_size, closed, or now >= oldest +
 *     max_delay (saturated), oldest the minimum add time; never earlier:
 *     take answers AP_EMPTY before, add's *due, is_due and deadline agree
 *   - take / flush: out-params untouched unless AP_OK; AP_CLOSED only
 *     closed and empty; stats (added, batches, by_size / by_time /
 *     by_close / by_flush, len) equal the model's
 *   - take futures: the waker log is the model waitlist's (FIFO; an add
 *     that brings a new deadline -- the batch was empty, or its clock is
 *     behind the oldest -- wakes every parked future, one that makes the
 *     batch full wakes one, close wakes all, a finished future passes on a
 *     wake it did not use); a pending poll lowers cx->deadline to exactly
 *     the batch's deadline
 *   - (issue #14) the weigher: with max_bytes, an item weighs its first
 *     byte % 24; due also when the batch weighs >= max_bytes or is sealed
 *     (an add that did not fit: AP_FULL, which seals and wakes one); a
 *     batch of two or more never weighs more than max_bytes; by_bytes
 *   - (issue #14) completion records: adds may carry one (a callback);
 *     takes are tracked (take_tracked, flush_tracked, take futures: the id
 *     is the model's batch count) or not (resolved AP_OK at once); a
 *     complete of a random taken id with a random status resolves exactly
 *     the model's records of that batch, once; bad ids, AP_NOT_READY and a
 *     still-pending record are AP_INVAL and change nothing; a record
 *     cancelled leaves with AP_CANCELED and no callback; every record's
 *     status and callback count equal the model's after every step
 */
#include "asyncpat/batch.h"
#include "fuzz_common.h"

#define NF 4
#define MAXN 16
#define MAXE 16
#define MARGIN 32

#include "fuzz_wlmodel.h"

/* the model */
static size_t m_es, m_max;
static uint64_t m_delay;
static uint32_t m_items[MAXN]; /* ids in the current batch */
static size_t m_len;
static uint64_t m_oldest;
static int m_closed;
static uint64_t m_added, m_batches, m_size, m_time, m_close, m_flush;
static uint32_t next_id, next_out; /* ids are added and taken in order */
static mwl m_wl;
/* issue #14: the weigher and completion records, by item id */
#define MAXID 2304
static size_t m_maxbytes, m_bytes;
static int es_weight; /* no weigher given: an item weighs elem_size */
static int m_sealed;
static uint64_t m_bybytes, m_completed;
static ap_batch_done recs[MAXID];
static uint8_t has_rec[MAXID];       /* the item was added with a record */
static uint64_t rec_batch[MAXID];    /* 0: in the current batch */
static ap_status rec_want[MAXID];    /* AP_NOT_READY while pending */
static int rec_calls[MAXID], rec_got_calls[MAXID];
static ap_status rec_got[MAXID];
static uint64_t pend[MAXID];         /* taken, not completed batch ids */
static size_t npend;

static void rec_cb(void *ctx, ap_batch_done *d, ap_status st)
{
    size_t id = (size_t)(uintptr_t)ctx;
    FZ_CHECK(id < MAXID && d == &recs[id]);
    rec_got_calls[id]++;
    rec_got[id] = st;
}

/* the model's complete: every pending record of batch @id */
static void m_complete(uint64_t id, ap_status st)
{
    for (uint32_t k = 0; k < next_id; k++)
        if (has_rec[k] && rec_batch[k] == id && rec_want[k] == AP_NOT_READY) {
            rec_want[k] = st;
            rec_calls[k]++;
            m_completed++;
        }
    for (size_t k = 0; k < npend; k++)
        if (pend[k] == id) {
            pend[k] = pend[--npend];
            break;
        }
}

static void item_bytes(uint32_t id, unsigned char *p)
{
    for (size_t j = 0; j < m_es; j++) p[j] = (unsigned char)(id * 131u + j * 7u + (id >> 8));
}

static size_t weigh(const void *e, void *ctx)
{
    (void)ctx;
    return (size_t)(*(const unsigned char *)e % 24u);
}

static uint64_t m_deadline(void)
{
    if (m_len == 0) return AP_DEADLINE_NONE;
    if (m_len == m_max || m_closed || m_sealed || (m_maxbytes && m_bytes >= m_maxbytes)) return 0;
    return m_oldest > UINT64_MAX - m_delay ? AP_DEADLINE_NONE : m_oldest + m_delay;
}

/* the model's take: the status; on AP_OK checks *out and counts; an
 * untracked take completes its batch with AP_OK at once */
static ap_status m_take(uint64_t now, int force, const unsigned char *out, size_t n,
                        int tracked)
{
    uint64_t d = m_deadline();
    if (m_len == 0 || (!force && now < d)) return m_len == 0 && m_closed ? AP_CLOSED : AP_EMPTY;
    /* never early: independent of the deadline value */
    if (!force)
        FZ_CHECK(m_len == m_max || m_closed || m_sealed || (m_maxbytes && m_bytes >= m_maxbytes) || (unsigned __int128)now >= (unsigned __int128)m_oldest + m_delay ||
                 now == UINT64_MAX);
    if (out) {
        unsigned char exp[MAXE];
        FZ_CHECK(n == m_len && n >= 1 && n <= m_max);
        size_t w = 0;
        for (size_t k = 0; k < n; k++) w += es_weight ? m_es : weigh(out + k * m_es, NULL);
        FZ_CHECK(!m_maxbytes || n == 1 || w <= m_maxbytes);
        for (size_t k = 0; k < n; k++) {
            FZ_CHECK(m_items[k] == next_out);
            item_bytes(next_out++, exp);
            FZ_CHECK(memcmp(out + k * m_es, exp, m_es) == 0);
        }
    }
    m_batches++;
    for (size_t k = 0; k < m_len; k++)
        if (has_rec[m_items[k]]) rec_batch[m_items[k]] = m_batches;
    if (m_len == m_max) m_size++;
    else if (m_sealed || (m_maxbytes && m_bytes >= m_maxbytes)) m_bybytes++;
    else if (m_closed) m_close++;
    else if (now >= d) m_time++;
    else m_flush++;
    m_len = 0;
    m_bytes = 0;
    m_sealed = 0;
    pend[npend++] = m_batches;
    if (!tracked) m_complete(m_batches, AP_OK);
    return AP_OK;
}

/* the status a take at now would answer, changing nothing */
static ap_status m_status(uint64_t now)
{
    if (m_len == 0) return m_closed ? AP_CLOSED : AP_EMPTY;
    return now < m_deadline() ? AP_EMPTY : AP_OK;
}

static void check_inval(fz *f)
{
    ap_batch_desc d;
    uint8_t k = fz_u8(f);
    d.elem_size = (k & 1) ? fz_size(f) : (size_t)(k >> 1) % 3;
    d.max_size = (k & 2) ? fz_size(f) : (size_t)(k >> 3) % 3;
    d.max_delay_ns = fz_val(f);
    int nodesc = (k & 0xe0) == 0xe0;
    ap_batch b;
    fz_fill(&b, sizeof b);
    unsigned __int128 need = (unsigned __int128)d.elem_size * d.max_size;
    /* the size: a huge claim (init never writes the buffer, and nothing is
     * added here), exactly the need, one byte short of it, or anything */
    uint8_t how = fz_u8(f);
    size_t bytes = SIZE_MAX;
    switch (how & 3) {
    case 1: bytes = need > SIZE_MAX ? SIZE_MAX : (size_t)need; break;
    case 2: bytes = need > SIZE_MAX ? SIZE_MAX : need == 0 ? 0 : (size_t)need - 1; break;
    case 3: bytes = fz_size(f); break;
    }
    static unsigned char one[1];
    unsigned char *buf = (how & 0x0c) == 0x0c ? NULL : one;
    int bad = nodesc || d.elem_size == 0 || d.max_size == 0 || need > SIZE_MAX ||
              buf == NULL || bytes < need;
    fz_fill(one, sizeof one);
    ap_status st = ap_batch_init(&b, buf, bytes, nodesc ? NULL : &d);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&b, sizeof b));
        FZ_CHECK(fz_untouched(one, sizeof one));
        return;
    }
    FZ_CHECK(st == AP_OK);
    ap_batch_desc r = ap_batch_desc_resolved(&d);
    FZ_CHECK(r.elem_size == d.elem_size && r.max_size == d.max_size);
    FZ_CHECK(r.max_delay_ns == (d.max_delay_ns ? d.max_delay_ns : AP_BATCH_DEFAULT_DELAY_NS));
    FZ_CHECK(b.desc.max_delay_ns == r.max_delay_ns && b.max_delay == r.max_delay_ns);
    FZ_CHECK(b.elem_size == d.elem_size && b.max_size == d.max_size);
    FZ_CHECK(ap_batch_len(&b) == 0 && ap_batch_deadline(&b) == AP_DEADLINE_NONE);
    FZ_CHECK(!ap_batch_is_due(&b, UINT64_MAX));
    ap_batch_stats s;
    ap_batch_stats_get(&b, &s);
    FZ_CHECK(s.added == 0 && s.batches == 0 && s.len == 0);
    ap_batch_fini(&b);
}

static unsigned char bbuf[MARGIN + MAXN * MAXE + MARGIN];
static unsigned char obuf[NF + 1][MAXN * MAXE];

static void check_state(ap_batch *b, ap_batch_take_fut *fut, int *live)
{
    FZ_CHECK(ap_batch_len(b) == m_len);
    FZ_CHECK(ap_batch_deadline(b) == m_deadline());
    ap_batch_stats s;
    ap_batch_stats_get(b, &s);
    FZ_CHECK(s.added == m_added && s.batches == m_batches && s.by_size == m_size &&
             s.by_time == m_time && s.by_close == m_close && s.by_flush == m_flush && s.len == m_len);
    FZ_CHECK(s.by_bytes == m_bybytes && s.completed == m_completed);
    FZ_CHECK(s.bytes == (m_len ? m_bytes : 0));
    FZ_CHECK(s.batches == s.by_size + s.by_bytes + s.by_time + s.by_close + s.by_flush);
    for (uint32_t k = 0; k < next_id; k++) {
        if (!has_rec[k]) continue;
        FZ_CHECK(ap_batch_done_status(&recs[k]) == rec_want[k]);
        FZ_CHECK(rec_got_calls[k] == rec_calls[k]);
        if (rec_calls[k]) FZ_CHECK(rec_got[k] == rec_want[k]);
    }
    FZ_CHECK(m_added == next_id && next_out + m_len == next_id);
    FZ_CHECK(fz_untouched(bbuf, MARGIN) && fz_untouched(bbuf + MARGIN + m_max * m_es, MARGIN));
    FZ_CHECK(ap_waitlist_has_waiters(&b->ready) == (m_wl.len > 0));
    FZ_CHECK(wlen == explen);
    FZ_CHECK(memcmp(wlog, explog, (size_t)wlen * sizeof wlog[0]) == 0);
    for (int i = 0; i < NF; i++) {
        FZ_CHECK(wakes[i] == expwakes[i]);
        if (live[i]) FZ_CHECK(ap_batch_take_status(&fut[i]) == AP_NOT_READY);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);
    check_inval(&f);

    uint8_t c = fz_u8(&f);
    m_max = 1 + (size_t)(c & 15);
    m_es = 1 + (size_t)(c >> 4);
    uint8_t dsel = fz_u8(&f);
    switch (dsel & 3) {
    case 0: m_delay = 0; break;
    case 1: m_delay = 1 + (dsel >> 2); break;
    case 2: m_delay = fz_val(&f); break;
    default: m_delay = UINT64_MAX - (dsel >> 2); break;
    }
    uint64_t now = (dsel & 0x80) ? fz_val(&f) : fz_u8(&f);
    uint8_t wsel = fz_u8(&f);
    m_maxbytes = (wsel & 3) ? 1 + (size_t)(wsel >> 2) % 64 : 0;
    fz_fill(bbuf, sizeof bbuf);
    ap_batch b;
    ap_batch_desc d = {.elem_size = m_es, .max_size = m_max, .max_delay_ns = m_delay,
                       .max_bytes = m_maxbytes, .weigh = (wsel & 3) == 3 ? NULL : weigh};
    /* no weigher: an item weighs elem_size (the model's weigh, then) */
    es_weight = m_maxbytes && (wsel & 3) == 3;
    if (dsel & 0x40) { /* one byte short: AP_INVAL, nothing written */
        fz_fill(&b, sizeof b);
        FZ_CHECK(ap_batch_init(&b, bbuf + MARGIN, AP_BATCH_BYTES(m_max, m_es) - 1, &d) ==
                 AP_INVAL);
        FZ_CHECK(fz_untouched(&b, sizeof b) && fz_untouched(bbuf, sizeof bbuf));
    }
    FZ_CHECK(ap_batch_init(&b, bbuf + MARGIN, AP_BATCH_BYTES(m_max, m_es), &d) == AP_OK);
    if (m_delay == 0) m_delay = AP_BATCH_DEFAULT_DELAY_NS;
    m_len = 0; m_oldest = 0; m_closed = 0;
    m_added = m_batches = m_size = m_time = m_close = m_flush = 0;
    next_id = next_out = 0;
    m_bytes = 0; m_sealed = 0; m_bybytes = m_completed = 0; npend = 0;
    memset(has_rec, 0, sizeof has_rec);
    memset(rec_calls, 0, sizeof rec_calls);
    memset(rec_got_calls, 0, sizeof rec_got_calls);
    memset(&m_wl, 0, sizeof m_wl);
    memset(mw_state, 0, sizeof mw_state);
    memset(expwakes, 0, sizeof expwakes);
    memset(wakes, 0, sizeof wakes);
    wlen = explen = 0;
    ap_batch_take_fut fut[NF];
    int live[NF] = {0};
    ap_cx cx[NF];
    for (int i = 0; i < NF; i++) cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};

    for (int steps = 0; fz_more(&f) && steps < 2048; steps++) {
        uint8_t op = fz_u8(&f);
        int i = (op >> 4) & (NF - 1);
        switch (op % 8) {
        case 0: case 1: { /* add */
            unsigned char e[MAXE];
            item_bytes(next_id, e);
            size_t w = es_weight ? m_es : weigh(e, NULL);
            bool due = (op & 0x40) != 0, before = due;
            int with = (op & 0x20) && next_id < MAXID;
            if (with && (op & 0x08) && next_id > 0) { /* a pending record again: AP_INVAL */
                uint32_t k = (uint32_t)(fz_val(&f) % next_id);
                if (has_rec[k] && rec_want[k] == AP_NOT_READY) {
                    FZ_CHECK(ap_batch_add_done(&b, e, now, &due, &recs[k]) == AP_INVAL);
                    FZ_CHECK(due == before);
                    break;
                }
            }
            if (with)
                ap_batch_done_init(&recs[next_id], rec_cb, (void *)(uintptr_t)next_id);
            ap_status st = with ? ap_batch_add_done(&b, e, now, (op & 0x80) ? NULL : &due,
                                                    &recs[next_id])
                                : ap_batch_add(&b, e, now, (op & 0x80) ? NULL : &due);
            if (with && st != AP_OK)
                FZ_CHECK(ap_batch_done_status(&recs[next_id]) == AP_NOT_READY);
            if (m_closed) {
                FZ_CHECK(st == AP_CLOSED && due == before);
            } else if (m_len == m_max) {
                FZ_CHECK(st == AP_FULL && due == before);
            } else if (m_maxbytes && m_len > 0 &&
                       (m_bytes >= m_maxbytes || w > m_maxbytes - m_bytes)) {
                FZ_CHECK(st == AP_FULL && due == before);
                if (!m_sealed) { /* it seals the batch: due now, one taker woken */
                    m_sealed = 1;
                    mw_wake(&m_wl, 1);
                }
            } else {
                FZ_CHECK(st == AP_OK);
                int newdl = m_len == 0 || now < m_oldest;
                if (newdl) m_oldest = now;
                m_bytes = m_len == 0 ? w : m_bytes + w;
                if (with) {
                    has_rec[next_id] = 1;
                    rec_batch[next_id] = 0;
                    rec_want[next_id] = AP_NOT_READY;
                }
                m_items[m_len++] = next_id++;
                m_added++;
                /* a new (earlier) deadline wakes every parked future, a
                 * full batch (by count or weight) one */
                if (newdl) mw_wake(&m_wl, NF);
                else if (m_len == m_max || (m_maxbytes && m_bytes >= m_maxbytes))
                    mw_wake(&m_wl, 1);
                if (!(op & 0x80)) FZ_CHECK(due == (now >= m_deadline()));
            }
            break;
        }
        case 2: { /* take (or flush) */
            size_t n = 12345;
            uint64_t id = 4242;
            fz_fill(obuf[NF], sizeof obuf[NF]);
            int force = (op & 0x80) && (op & 0x40);
            int tracked = (op & 0x20) != 0;
            ap_status st = tracked ? (force ? ap_batch_flush_tracked(&b, obuf[NF], &n, &id)
                                            : ap_batch_take_tracked(&b, obuf[NF], now, &n, &id))
                                   : (force ? ap_batch_flush(&b, obuf[NF], &n)
                                            : ap_batch_take(&b, obuf[NF], now, &n));
            if (st == AP_OK) {
                FZ_CHECK(m_take(force ? 0 : now, force, obuf[NF], n, tracked) == AP_OK);
                if (tracked) FZ_CHECK(id == m_batches);
            } else {
                FZ_CHECK(id == 4242);
                FZ_CHECK(st == m_take(force ? 0 : now, force, NULL, 0, 0));
                FZ_CHECK(n == 12345 && fz_untouched(obuf[NF], sizeof obuf[NF]));
            }
            break;
        }
        case 3: /* clock */
            switch (op >> 5) {
            case 0: case 1: case 2: now += (op >> 3) & 3; break;
            case 3: now += fz_u8(&f); break;
            case 4: now += m_delay - 1 + ((op >> 3) & 3); break; /* may wrap: a jump back */
            case 5: now -= now < 4 ? now : 1 + ((op >> 3) & 3); break; /* a small step back */
            case 6: now = fz_val(&f); break;
            default: now = UINT64_MAX - ((op >> 3) & 3); break;
            }
            break;
        case 4: { /* queries at some time */
            uint64_t t = (op & 0x80) ? fz_val(&f) : now;
            bool due = ap_batch_is_due(&b, t);
            FZ_CHECK(due == (m_len > 0 && t >= m_deadline()));
            if (op & 0x40) {
                /* take with the due answer: agrees */
                size_t n = 777;
                ap_status st = ap_batch_take(&b, obuf[NF], t, &n);
                FZ_CHECK((st == AP_OK) == due);
                if (st == AP_OK) FZ_CHECK(m_take(t, 0, obuf[NF], n, 0) == AP_OK);
                else FZ_CHECK(st == m_take(t, 0, NULL, 0, 0) && n == 777);
            }
            break;
        }
        case 5: { /* future: init (if free) + poll */
            if (!live[i]) {
                fz_fill(obuf[i], sizeof obuf[i]);
                ap_batch_take_fut_init(&fut[i], &b, obuf[i]);
                live[i] = 1;
                mw_state[i] = MW_IDLE;
                FZ_CHECK(ap_batch_take_status(&fut[i]) == AP_NOT_READY && ap_batch_take_count(&fut[i]) == 0);
            }
            cx[i].now = now;
            uint64_t dl0 = (op & 0x80) ? fz_val(&f) : UINT64_MAX;
            cx[i].deadline = dl0;
            ap_poll r = ap_batch_take_poll(&fut[i], &cx[i]);
            ap_status st = ap_batch_take_status(&fut[i]);
            ap_status e = m_status(now);
            if (e == AP_EMPTY) {
                mw_register(&m_wl, i);
                e = m_status(now); /* the re-check: the same */
            }
            if (e == AP_EMPTY) {
                FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY);
                uint64_t dd = m_deadline();
                uint64_t want = dd < dl0 ? dd : dl0;
                /* or, sooner, the waitlist's confirm re-poll of a fresh or
                 * still unconfirmed link (ap_waitlist_register_cx) */
                uint64_t confirm = ap_deadline_after(now, AP_WAIT_CONFIRM_NS);
                FZ_CHECK(cx[i].deadline == want ||
                         cx[i].deadline == (confirm < want ? confirm : want));
                FZ_CHECK(ap_batch_take_count(&fut[i]) == 0);
            } else {
                FZ_CHECK(r == AP_READY && st == e);
                if (e == AP_OK) {
                    FZ_CHECK(m_take(now, 0, obuf[i], ap_batch_take_count(&fut[i]), 1) == AP_OK);
                    FZ_CHECK(ap_batch_take_id(&fut[i]) == m_batches);
                }
                else FZ_CHECK(ap_batch_take_count(&fut[i]) == 0 && fz_untouched(obuf[i], sizeof obuf[i]));
                FZ_CHECK(cx[i].deadline == dl0);
                mw_cancel_pass(&m_wl, i);
                live[i] = 0;
            }
            break;
        }
        case 6: /* cancel */
            if (!live[i] && (op & 0x80) && next_id > 0) { /* a completion record */
                uint32_t k = (uint32_t)(fz_val(&f) % next_id);
                if (has_rec[k]) {
                    ap_batch_done_cancel(&recs[k]);
                    if (rec_want[k] == AP_NOT_READY) {
                        rec_want[k] = AP_CANCELED;
                        m_completed++;
                    }
                }
            }
            if (live[i]) {
                ap_batch_take_cancel(&fut[i]);
                mw_cancel_pass(&m_wl, i);
                live[i] = 0;
                FZ_CHECK(ap_batch_take_status(&fut[i]) == AP_CANCELED && ap_batch_take_count(&fut[i]) == 0);
                ap_batch_take_cancel(&fut[i]); /* idempotent */
                FZ_CHECK(ap_batch_take_status(&fut[i]) == AP_CANCELED);
                FZ_CHECK(ap_batch_take_poll(&fut[i], &cx[i]) == AP_READY);
                FZ_CHECK(fz_untouched(obuf[i], sizeof obuf[i]));
            }
            break;
        default: /* close (rarely), or complete a taken batch */
            if ((op & 0x80) && (op & 0x08)) {
                ap_batch_close(&b);
                m_closed = 1;
                mw_wake(&m_wl, NF);
            } else if (op & 0x20) {
                static const ap_status sts[4] = {AP_OK, AP_REJECTED, AP_CLOSED, AP_TIMEDOUT};
                uint8_t sel = fz_u8(&f);
                if ((sel & 0x80) || m_batches == 0) { /* never taken: AP_INVAL */
                    uint64_t id = (sel & 1) ? 0 : m_batches + 1 + ((sel >> 1) & 3);
                    FZ_CHECK(ap_batch_complete(&b, id, AP_OK) == AP_INVAL);
                } else {
                    uint64_t id = npend && !(sel & 0x40) ? pend[(sel & 0x3f) % npend]
                                                         : 1 + (sel & 0x3f) % m_batches;
                    if ((sel & 0x0c) == 0x0c) {
                        FZ_CHECK(ap_batch_complete(&b, id, AP_NOT_READY) == AP_INVAL);
                    } else {
                        ap_status cs = sts[(sel >> 4) & 3];
                        FZ_CHECK(ap_batch_complete(&b, id, cs) == AP_OK);
                        m_complete(id, cs); /* an id completed before: nothing */
                    }
                }
            }
            break;
        }
        check_state(&b, fut, live);
    }
    for (int i = 0; i < NF; i++) {
        if (!live[i]) continue;
        ap_batch_take_cancel(&fut[i]);
        mw_cancel_pass(&m_wl, i);
        live[i] = 0;
        check_state(&b, fut, live);
    }
    FZ_CHECK(!ap_waitlist_has_waiters(&b.ready));
    /* close and drain: nothing is lost */
    ap_batch_close(&b);
    m_closed = 1;
    size_t n = 0;
    ap_status st = ap_batch_take(&b, obuf[NF], 0, &n);
    if (st == AP_OK) FZ_CHECK(m_take(0, 0, obuf[NF], n, 0) == AP_OK);
    FZ_CHECK(ap_batch_take(&b, obuf[NF], 0, &n) == AP_CLOSED);
    FZ_CHECK(ap_batch_flush(&b, obuf[NF], &n) == AP_CLOSED);
    FZ_CHECK(next_out == next_id);
    while (npend > 0) { /* complete what is still taken: fini needs no record pending */
        uint64_t id = pend[0];
        FZ_CHECK(ap_batch_complete(&b, id, AP_OK) == AP_OK);
        m_complete(id, AP_OK);
    }
    check_state(&b, fut, live);
    ap_batch_fini(&b);
    return 0;
}
