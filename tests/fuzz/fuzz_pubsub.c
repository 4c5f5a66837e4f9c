/* tests/fuzz/fuzz_pubsub.c -- libFuzzer harness for asyncpat/pubsub.h
 *
 * Input: init and create arguments (any capacity, elem_size and policy, for
 * the AP_INVAL paths), then a channel of 1..9 slots (powers of two and
 * not) of 1..24 bytes or of 129..140 bytes (the copy-straight-out path), and
 * a single-threaded sequence of publish, subscribe, unsubscribe, try_recv
 * (with and without a dropped out-param), receive futures (one per
 * subscriber, up to 4, polled and cancelled by hand with a counting waker)
 * and close, checked against a sequential model (the published sequence,
 * each subscriber's cursor and counters, a model of the waitlist):
 *   - init / create: AP_INVAL exactly for capacity or elem_size 0 or over
 *     the limits, a policy other than OVERWRITE, or sizes that overflow
 *     (init: or a buffer NULL, misaligned or smaller than AP_PUBSUB_BYTES,
 *     sometimes one byte short);
 *     then *ps, the buffer (*out) are untouched and nothing is allocated;
 *     create/destroy balance the allocator
 *   - a subscriber receives exactly the messages published after it
 *     subscribed, in order, byte for byte, except runs it is told about
 *     with AP_DROPPED: a drop happens exactly when it is more than capacity
 *     behind, its count is exact (the cursor jumps to tail - capacity), and
 *     received + lost + len == published since subscribing, always
 *   - out and *dropped untouched unless AP_OK / AP_DROPPED; AP_EMPTY at the
 *     tail, AP_CLOSED at the tail once closed; publish after close
 *     AP_CLOSED; published(), is_closed(), ap_sub_len, ap_sub_received,
 *     ap_sub_lost, ap_sub_last_dropped equal the model
 *   - receive futures: the waker log is the model waitlist's (each publish
 *     and close wakes every parked future, a finished one passes on a wake
 *     it did not use, a cancelled one took nothing); no lost wakeup: a
 *     parked future whose subscriber has something to receive was woken
 */
#include "asyncpat/pubsub.h"
#include "fuzz_common.h"

#define NF 4 /* subscribers, one future each */
#define MAXCAP 9
#define MAXE 140

#include "fuzz_wlmodel.h"

/* the model */
static size_t m_cap, m_es;
static uint64_t m_tail;
static int m_closed;
typedef struct msub {
    int on;          /* subscribed */
    uint64_t next, start, received, lost, last;
    int fut;         /* a receive future is live */
} msub;
static msub ms[NF];
static mwl m_wl;

static void msg_bytes(uint64_t seq, unsigned char *p)
{
    for (size_t j = 0; j < m_es; j++) p[j] = (unsigned char)(seq * 29u + j * 11u + (seq >> 8) + 1);
}

/* the model's try_recv on subscriber j: status, *n the drop count */
static ap_status m_recv(int j, uint64_t *n, int apply)
{
    msub *s = &ms[j];
    uint64_t r = s->next;
    if (r == m_tail) return m_closed ? AP_CLOSED : AP_EMPTY;
    FZ_CHECK(r < m_tail);
    if (m_tail - r > m_cap) {
        uint64_t oldest = m_tail - m_cap;
        *n = oldest - r;
        if (apply) {
            s->next = oldest;
            s->lost += *n;
            s->last = *n;
        }
        return AP_DROPPED;
    }
    if (apply) {
        s->next++;
        s->received++;
    }
    return AP_OK;
}

static void check_inval(fz *f)
{
    static _Alignas(64) uint64_t buf[64];
    uint8_t k = fz_u8(f);
    size_t cap = (k & 1) ? fz_size(f) : (size_t)(k >> 1) % 4;
    size_t es = (k & 2) ? fz_size(f) : (size_t)(k >> 3) % 4;
    ap_pubsub_policy pol = (k & 0xc0) == 0xc0 ? (ap_pubsub_policy)fz_u32(f) : AP_PUBSUB_POLICY_OVERWRITE;
    unsigned __int128 stride = 8 + ((unsigned __int128)es + 7) / 8 * 8;
    unsigned __int128 bytes = (unsigned __int128)cap * stride;
    int bad = cap == 0 || es == 0 || cap > (SIZE_MAX >> 4) || es > SIZE_MAX / 2 ||
              pol != AP_PUBSUB_POLICY_OVERWRITE || bytes > SIZE_MAX;
    {
        /* issue #11: the size comes along: NULL, misaligned, one byte short
         * or a valid config too big for this buffer is AP_INVAL with
         * nothing written */
        uint8_t how = fz_u8(f);
        unsigned char *b = (unsigned char *)buf;
        size_t bb = sizeof buf;
        if (!bad && bytes <= sizeof buf && (how & 1)) bb = (size_t)bytes - 1;
        if (how & 2) {
            size_t off = 1 + (size_t)(how >> 4) % 7;
            b += off;
            bb = bb > sizeof buf - off ? sizeof buf - off : bb;
        }
        if ((how & 0x0c) == 0x0c) b = NULL;
        int ibad = bad || b != (unsigned char *)buf || bytes > bb;
        ap_pubsub ps;
        fz_fill(&ps, sizeof ps);
        fz_fill(buf, sizeof buf);
        ap_status st = ap_pubsub_init(&ps, b, bb, cap, es, pol);
        if (ibad) {
            FZ_CHECK(st == AP_INVAL);
            FZ_CHECK(fz_untouched(&ps, sizeof ps));
            FZ_CHECK(fz_untouched(buf, sizeof buf));
        } else {
            FZ_CHECK(st == AP_OK);
            FZ_CHECK(ap_pubsub_capacity(&ps) == cap && ap_pubsub_published(&ps) == 0);
            FZ_CHECK(!ap_pubsub_is_closed(&ps));
            FZ_CHECK(fz_untouched((unsigned char *)buf + (size_t)bytes, sizeof buf - (size_t)bytes));
            ap_pubsub_fini(&ps);
        }
    }
    ap_pubsub *pp;
    fz_fill(&pp, sizeof pp);
    int before = allocs;
    unsigned __int128 hdr = ap__align_up(sizeof(ap_pubsub), AP_CACHELINE);
    int cbad = bad || bytes + hdr > SIZE_MAX;
    ap_status st = ap_pubsub_create(&pp, cap, es, pol, &fz_allocator);
    if (cbad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(allocs == before);
        FZ_CHECK(fz_untouched(&pp, sizeof pp));
    } else if (st == AP_OK) {
        FZ_CHECK(bytes + hdr <= ((size_t)1 << 20));
        FZ_CHECK(ap_pubsub_capacity(pp) == cap && ap_pubsub_published(pp) == 0);
        static unsigned char e[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        if (es <= sizeof e) {
            ap_sub s = {0};
            unsigned char o[8] = {0};
            uint64_t dr = 99;
            ap_pubsub_subscribe(pp, &s);
            FZ_CHECK(ap_pubsub_try_publish(pp, e) == AP_OK);
            FZ_CHECK(ap_sub_try_recv(&s, o, &dr) == AP_OK && memcmp(o, e, es) == 0 && dr == 99);
            FZ_CHECK(ap_sub_try_recv(&s, o, &dr) == AP_EMPTY);
            ap_pubsub_unsubscribe(pp, &s);
        }
        ap_pubsub_destroy(pp);
        FZ_CHECK(allocs == before);
    } else {
        FZ_CHECK(st == AP_NOMEM && bytes + hdr > ((size_t)1 << 20));
        FZ_CHECK(fz_untouched(&pp, sizeof pp));
        allocs = before;
    }
}

static _Alignas(64) uint64_t ring[(AP_PUBSUB_BYTES(MAXCAP, MAXE) + 64) / 8];
static unsigned char rout[NF][MAXE];

static void check_state(ap_pubsub *ps, ap_sub *sub, ap_sub_recv_fut *fut)
{
    (void)fut;
    FZ_CHECK(ap_pubsub_published(ps) == m_tail);
    FZ_CHECK(ap_pubsub_is_closed(ps) == (m_closed != 0));
    for (int j = 0; j < NF; j++) {
        if (!ms[j].on) {
            FZ_CHECK(sub[j].ps == NULL);
            continue;
        }
        FZ_CHECK(sub[j].ps == ps);
        FZ_CHECK(ap_sub_len(&sub[j]) == m_tail - ms[j].next);
        FZ_CHECK(ap_sub_received(&sub[j]) == ms[j].received);
        FZ_CHECK(ap_sub_lost(&sub[j]) == ms[j].lost);
        FZ_CHECK(ap_sub_last_dropped(&sub[j]) == ms[j].last);
        /* received + lost + pending == published since subscribing */
        FZ_CHECK(ms[j].received + ms[j].lost + (m_tail - ms[j].next) == m_tail - ms[j].start);
        if (ms[j].fut) {
            FZ_CHECK(ap_sub_recv_status(&fut[j]) == AP_NOT_READY);
            /* no lost wakeup: something to receive means it was woken */
            if ((ms[j].next < m_tail || m_closed) && mw_state[j] != MW_IDLE)
                FZ_CHECK(mw_state[j] == MW_NOTIFIED);
        }
    }
    FZ_CHECK(ap_waitlist_has_waiters(&ps->wl) == (m_wl.len > 0));
    FZ_CHECK(wlen == explen);
    FZ_CHECK(memcmp(wlog, explog, (size_t)wlen * sizeof wlog[0]) == 0);
    for (int i = 0; i < NF; i++) FZ_CHECK(wakes[i] == expwakes[i]);
}

/* check a completed receive against the model (apply it) */
static void check_recv(int j, ap_status st, ap_status e, uint64_t n, const unsigned char *out,
                       uint64_t got_n, int have_n)
{
    FZ_CHECK(st == e);
    if (e == AP_OK) {
        unsigned char exp[MAXE];
        msg_bytes(ms[j].next - 1, exp);
        FZ_CHECK(memcmp(out, exp, m_es) == 0);
    } else {
        FZ_CHECK(fz_untouched(out, m_es));
    }
    if (have_n) FZ_CHECK(got_n == (e == AP_DROPPED ? n : 0xabcdefu));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);
    check_inval(&f);

    uint8_t c = fz_u8(&f);
    m_cap = 1 + (size_t)(c % MAXCAP);
    m_es = (c & 0x80) ? 129 + (size_t)((c >> 4) & 7) + (c & 4) : 1 + (size_t)(fz_u8(&f) % 24);
    fz_fill(ring, sizeof ring);
    ap_pubsub ps;
    if (c & 0x40) { /* one byte short: AP_INVAL, nothing written */
        fz_fill(&ps, sizeof ps);
        FZ_CHECK(ap_pubsub_init(&ps, ring, AP_PUBSUB_BYTES(m_cap, m_es) - 1, m_cap, m_es,
                                AP_PUBSUB_POLICY_OVERWRITE) == AP_INVAL);
        FZ_CHECK(fz_untouched(&ps, sizeof ps));
        FZ_CHECK(fz_untouched(ring, sizeof ring));
    }
    FZ_CHECK(ap_pubsub_init(&ps, ring, AP_PUBSUB_BYTES(m_cap, m_es), m_cap, m_es,
                            AP_PUBSUB_POLICY_OVERWRITE) == AP_OK);
    m_tail = 0; m_closed = 0;
    memset(ms, 0, sizeof ms);
    memset(&m_wl, 0, sizeof m_wl);
    memset(mw_state, 0, sizeof mw_state);
    memset(expwakes, 0, sizeof expwakes);
    memset(wakes, 0, sizeof wakes);
    wlen = explen = 0;
    ap_sub sub[NF];
    memset(sub, 0, sizeof sub);
    ap_sub_recv_fut fut[NF];
    ap_cx cx[NF];
    for (int i = 0; i < NF; i++) cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};
    unsigned char tmp[MAXE];

    for (int steps = 0; fz_more(&f) && steps < 4096; steps++) {
        uint8_t op = fz_u8(&f);
        int j = (op >> 4) & (NF - 1);
        switch (op % 8) {
        case 0: case 1: case 2: { /* publish (a burst of 1..4, or cap + a bit) */
            int k = (op & 0x80) ? (int)m_cap + ((op >> 5) & 3) : 1 + ((op >> 3) & 3);
            for (int t = 0; t < k; t++) {
                msg_bytes(m_tail, tmp);
                ap_status st = ap_pubsub_try_publish(&ps, tmp);
                if (m_closed) {
                    FZ_CHECK(st == AP_CLOSED);
                    break;
                }
                FZ_CHECK(st == AP_OK);
                m_tail++;
                mw_wake(&m_wl, NF);
            }
            break;
        }
        case 3: /* subscribe / unsubscribe */
            if (!ms[j].on) {
                ap_pubsub_subscribe(&ps, &sub[j]);
                ms[j] = (msub){1, m_tail, m_tail, 0, 0, 0, 0};
                FZ_CHECK(ap_sub_len(&sub[j]) == 0);
            } else if (!ms[j].fut && (op & 0x08)) {
                ap_pubsub_unsubscribe(&ps, &sub[j]);
                ms[j].on = 0;
            }
            break;
        case 4: case 5: { /* try_recv */
            if (!ms[j].on) break;
            fz_fill(tmp, sizeof tmp);
            uint64_t dn = 0xabcdefu, n = 0;
            int have = !(op & 0x80);
            ap_status st = ap_sub_try_recv(&sub[j], tmp, have ? &dn : NULL);
            ap_status e = m_recv(j, &n, 1);
            check_recv(j, st, e, n, tmp, dn, have);
            break;
        }
        case 6: { /* future: init (if free) + poll */
            if (!ms[j].on) break;
            if (!ms[j].fut) {
                fz_fill(rout[j], sizeof rout[j]);
                ap_sub_recv_fut_init(&fut[j], &sub[j], rout[j]);
                ms[j].fut = 1;
                mw_state[j] = MW_IDLE;
                FZ_CHECK(ap_sub_recv_status(&fut[j]) == AP_NOT_READY);
            }
            ap_poll r = ap_sub_recv_poll(&fut[j], &cx[j]);
            ap_status st = ap_sub_recv_status(&fut[j]);
            uint64_t n = 0;
            mw_settle(j);
            ap_status e = m_recv(j, &n, 0);
            if (e == AP_EMPTY) {
                mw_register(&m_wl, j);
                FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY);
                FZ_CHECK(fz_untouched(rout[j], m_es));
            } else {
                FZ_CHECK(r == AP_READY);
                m_recv(j, &n, 1);
                check_recv(j, st, e, n, rout[j], 0, 0);
                mw_cancel_pass(&m_wl, j);
                ms[j].fut = 0;
            }
            break;
        }
        default:
            if ((op & 0x80) && (op & 0x08)) { /* close (rarely) */
                ap_pubsub_close(&ps);
                m_closed = 1;
                mw_wake(&m_wl, NF);
            } else if (ms[j].fut) { /* cancel */
                ap_sub_recv_cancel(&fut[j]);
                mw_cancel_pass(&m_wl, j);
                ms[j].fut = 0;
                FZ_CHECK(ap_sub_recv_status(&fut[j]) == AP_CANCELED);
                ap_sub_recv_cancel(&fut[j]);
                FZ_CHECK(ap_sub_recv_status(&fut[j]) == AP_CANCELED);
                FZ_CHECK(ap_sub_recv_poll(&fut[j], &cx[j]) == AP_READY);
                FZ_CHECK(fz_untouched(rout[j], m_es));
            }
            break;
        }
        check_state(&ps, sub, fut);
    }
    for (int j = 0; j < NF; j++) {
        if (!ms[j].fut) continue;
        ap_sub_recv_cancel(&fut[j]);
        mw_cancel_pass(&m_wl, j);
        ms[j].fut = 0;
        check_state(&ps, sub, fut);
    }
    FZ_CHECK(!ap_waitlist_has_waiters(&ps.wl));
    /* close and drain every subscriber: received + lost == published since */
    ap_pubsub_close(&ps);
    m_closed = 1;
    for (int j = 0; j < NF; j++) {
        if (!ms[j].on) continue;
        for (;;) {
            uint64_t dn = 0xabcdefu, n = 0;
            fz_fill(rout[j], sizeof rout[j]);
            ap_status st = ap_sub_try_recv(&sub[j], rout[j], &dn);
            ap_status e = m_recv(j, &n, 1);
            check_recv(j, st, e, n, rout[j], dn, 1);
            if (st == AP_CLOSED) break;
        }
        FZ_CHECK(ms[j].received + ms[j].lost == m_tail - ms[j].start);
        check_state(&ps, sub, fut);
        ap_pubsub_unsubscribe(&ps, &sub[j]);
        ms[j].on = 0;
    }
    /* the channel never wrote past its buffer */
    FZ_CHECK(fz_untouched((unsigned char *)ring + AP_PUBSUB_BYTES(m_cap, m_es),
                          sizeof ring - AP_PUBSUB_BYTES(m_cap, m_es)));
    ap_pubsub_fini(&ps);
    return 0;
}
