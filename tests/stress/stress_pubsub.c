/*
 * tests/stress/stress_pubsub.c -- ThreadSanitizer stress of the broadcast
 * channel (asyncpat/pubsub.h, policy AP_PUBSUB_POLICY_OVERWRITE)
 *
 * Scenarios
 *   matrix   publishers x subscribers in {1x1, 1x3, 2x2, 4x2, 2x5},
 *            capacity in {1, 3, 64}, subscribers receiving with
 *            ap_sub_recv_wait (parking futures) or ap_sub_try_recv (spin,
 *            yield, sleep); every other subscriber is slow (sleeps now
 *            and then), so small rings overwrite messages it has not read;
 *            one subscriber resubscribes every few dozen messages. The
 *            messages are 8 words wide, so a torn copy is caught.
 *   parked   subscribers parked on an empty channel, then close: each one
 *            must wake with AP_CLOSED.
 * Checked, per subscriber (its ledger):
 *   - the message bytes are intact (every word derives from the item);
 *   - the cursor moves by exactly one per AP_OK and by exactly the
 *     reported count per AP_DROPPED (gaps == drops), never backwards;
 *   - every subscriber that received global sequence number g received the
 *     same message for it (one shared table, filled by whoever is first):
 *     all subscribers see one total order;
 *   - each publisher's sequence numbers strictly increase;
 *   - received + dropped == published since subscribing, at close;
 *   - a subscriber that never dropped received every message of its
 *     subscription period; one subscribed for the whole run with no drop
 *     got all P*N messages;
 *   - after drain, receive answers AP_CLOSED.
 * TSan checks that every message copy is ordered by the channel's own
 * release/acquire pairs (the seqlock's fences become release/acquire word
 * accesses under TSan).
 */
#include "stress.h"

#define PS_WORDS 8

typedef struct ps_msg {
    uint64_t w[PS_WORDS]; /* w[0] = item, w[k] = mix(item) + k */
} ps_msg;

static ps_msg ps_make(unsigned producer, uint64_t seq)
{
    ps_msg m;
    m.w[0] = STRESS_ITEM(producer, seq);
    uint64_t h = stress_check_word(m.w[0]);
    for (unsigned k = 1; k < PS_WORDS; k++)
        m.w[k] = h + k;
    return m;
}

typedef struct ps_run {
    ap_pubsub ps;
    void *buf;
    unsigned pubs, subs;
    size_t capacity, per_pub;
    bool wait_mode;
    bool paced; /* publishers pause now and then, so subscribers keep up */
    _Atomic uint64_t *table; /* item + 1 per global sequence; 0 = unseen */
    size_t table_len;
    pthread_barrier_t start;
    _Atomic unsigned subs_done;
    _Atomic uint64_t again, drops_reported, msgs_dropped, received;
} ps_run;

typedef struct ps_worker {
    ps_run *r;
    unsigned id;
    uint64_t seed;
    pthread_t thread;
    ap_sub sub;
    bool full_run;       /* subscribed for the whole run */
    uint64_t got_all;    /* received over the whole run (full_run only) */
    uint64_t lost_all;
} ps_worker;

static void *pub_main(void *arg)
{
    ps_worker *w = (ps_worker *)arg;
    ps_run *r = w->r;
    stress_rng rng;
    unsigned fails = 0;
    uint64_t again = 0;
    stress_rng_init(&rng, w->seed, w->id);
    pthread_barrier_wait(&r->start);
    for (size_t seq = 0; seq < r->per_pub; seq++) {
        ps_msg m = ps_make(w->id, seq);
        for (;;) {
            ap_status st = ap_pubsub_try_publish(&r->ps, &m);
            if (st == AP_OK)
                break;
            CHECK(st == AP_AGAIN, "publisher %u: try_publish returned %s", w->id,
                  ap_status_str(st));
            again++;
            stress_backoff(&fails, &rng);
        }
        fails = 0;
        if (r->paced && (seq & 31) == 31)
            stress_sleep_us(10 + stress_below(&rng, 40));
        else
            stress_jitter(&rng);
    }
    STRESS_ADD(&r->again, again);
    return NULL;
}

/* One subscription period's ledger. */
typedef struct ps_ledger {
    uint64_t base, expect; /* first and next expected global sequence */
    uint64_t got, lost;
    uint64_t *last;        /* per publisher: last seq seen, or STRESS_NONE */
} ps_ledger;

static void ledger_start(ps_ledger *l, ps_worker *w, unsigned pubs)
{
    ap_pubsub_subscribe(&w->r->ps, &w->sub);
    l->base = l->expect = w->sub.next;
    l->got = l->lost = 0;
    for (unsigned p = 0; p < pubs; p++)
        l->last[p] = STRESS_NONE;
}

static void ledger_ok(ps_ledger *l, ps_worker *w, const ps_msg *m)
{
    ps_run *r = w->r;
    uint64_t item = m->w[0], h = stress_check_word(item);
    for (unsigned k = 1; k < PS_WORDS; k++)
        CHECK(m->w[k] == h + k, "subscriber %u: TORN message item=%#" PRIx64 " word %u = %#" PRIx64,
              w->id, item, k, m->w[k]);
    uint64_t p = STRESS_ITEM_PRODUCER(item), seq = STRESS_ITEM_SEQ(item);
    CHECK(p < r->pubs && seq < r->per_pub, "subscriber %u: invented item %#" PRIx64, w->id, item);
    uint64_t g = w->sub.next - 1;
    CHECK(g == l->expect, "subscriber %u: received global seq %" PRIu64 ", expected %" PRIu64
          " (a gap not reported as a drop, or a repeat)", w->id, g, l->expect);
    CHECK(g < r->table_len, "global seq %" PRIu64 " beyond the run", g);
    uint64_t want = 0;
    if (!atomic_compare_exchange_strong_explicit(&r->table[g], &want, item + 1,
                                                 memory_order_relaxed, memory_order_relaxed))
        CHECK(want == item + 1, "subscriber %u: global seq %" PRIu64 " is item %#" PRIx64
              " here but %#" PRIx64 " for another subscriber", w->id, g, item, want - 1);
    CHECK(l->last[p] == STRESS_NONE || seq > l->last[p],
          "subscriber %u: publisher %" PRIu64 " seq %" PRIu64 " after %" PRIu64, w->id, p, seq,
          l->last[p]);
    l->last[p] = seq;
    l->expect++;
    l->got++;
}

static void ledger_dropped(ps_ledger *l, ps_worker *w, uint64_t n)
{
    CHECK(n >= 1, "subscriber %u: AP_DROPPED with count 0", w->id);
    CHECK(n == ap_sub_last_dropped(&w->sub), "dropped out-param %" PRIu64 " vs last_dropped %" PRIu64,
          n, ap_sub_last_dropped(&w->sub));
    l->expect += n;
    l->lost += n;
    CHECK(w->sub.next == l->expect, "subscriber %u: cursor %" PRIu64 " after a drop of %" PRIu64
          ", expected %" PRIu64, w->id, w->sub.next, n, l->expect);
    STRESS_ADD(&w->r->drops_reported, 1);
    STRESS_ADD(&w->r->msgs_dropped, n);
}

/* End of a subscription period (the channel is closed and drained, or we
 * resubscribe): received + dropped == what was published meanwhile, as far
 * as this subscriber got. */
static void ledger_end(ps_ledger *l, ps_worker *w, bool closed)
{
    CHECK(ap_sub_received(&w->sub) == l->got && ap_sub_lost(&w->sub) == l->lost,
          "subscriber %u: counters %" PRIu64 "+%" PRIu64 ", ledger %" PRIu64 "+%" PRIu64, w->id,
          ap_sub_received(&w->sub), ap_sub_lost(&w->sub), l->got, l->lost);
    CHECK(l->got + l->lost == l->expect - l->base, "conservation");
    if (closed) {
        uint64_t published = ap_pubsub_published(&w->r->ps);
        CHECK(l->expect == published, "subscriber %u: drained at %" PRIu64 " of %" PRIu64,
              w->id, l->expect, published);
    }
    STRESS_ADD(&w->r->received, l->got);
    ap_pubsub_unsubscribe(&w->r->ps, &w->sub);
}

static void *sub_main(void *arg)
{
    ps_worker *w = (ps_worker *)arg;
    ps_run *r = w->r;
    stress_rng rng;
    ps_ledger l;
    unsigned fails = 0;
    bool slow = (w->id & 1) != 0, churn = w->id == 2;
    stress_rng_init(&rng, w->seed, 1000 + w->id);
    l.last = (uint64_t *)malloc(sizeof *l.last * r->pubs);
    CHECK(l.last != NULL, "out of memory");
    ledger_start(&l, w, r->pubs); /* before the start line: sees everything */
    w->full_run = !churn;
    pthread_barrier_wait(&r->start);
    for (;;) {
        ps_msg m;
        memset(&m, 0, sizeof m);
        uint64_t n = 0;
        ap_status st;
        if (r->wait_mode) {
            st = ap_sub_recv_wait(&w->sub, &m, AP_DEADLINE_NONE);
            n = st == AP_DROPPED ? ap_sub_last_dropped(&w->sub) : 0;
        } else {
            st = ap_sub_try_recv(&w->sub, &m, &n);
        }
        if (st == AP_OK) {
            ledger_ok(&l, w, &m);
            fails = 0;
            if (slow && stress_below(&rng, 64) == 0)
                stress_sleep_us(20 + stress_below(&rng, 100));
            else
                stress_jitter(&rng);
            if (churn && l.got == 40 + stress_below(&rng, 20)) {
                ledger_end(&l, w, false);
                ledger_start(&l, w, r->pubs);
            }
            continue;
        }
        CHECK(m.w[0] == 0, "subscriber %u: %s but the output was written", w->id,
              ap_status_str(st));
        if (st == AP_DROPPED) {
            ledger_dropped(&l, w, n);
            continue;
        }
        if (st == AP_CLOSED)
            break;
        CHECK(!r->wait_mode && (st == AP_EMPTY || st == AP_AGAIN),
              "subscriber %u: receive returned %s", w->id, ap_status_str(st));
        if (st == AP_AGAIN)
            STRESS_ADD(&r->again, 1);
        stress_backoff(&fails, &rng);
    }
    /* closed and drained: stays closed */
    ps_msg m;
    CHECK(ap_sub_try_recv(&w->sub, &m, NULL) == AP_CLOSED, "receive after AP_CLOSED");
    if (w->full_run) {
        w->got_all = l.got;
        w->lost_all = l.lost;
    }
    ledger_end(&l, w, true);
    free(l.last);
    STRESS_ADD(&r->subs_done, 1);
    return NULL;
}

static void ps_diag(void *arg)
{
    ps_run *r = (ps_run *)arg;
    fprintf(stderr,
            "    %ux%u capacity %zu %s: published %" PRIu64 " of %zu, closed %d, "
            "subscribers done %u, parked %zu\n",
            r->pubs, r->subs, r->capacity, r->wait_mode ? "wait" : "try",
            ap_pubsub_published(&r->ps), (size_t)r->pubs * r->per_pub,
            (int)ap_pubsub_is_closed(&r->ps), STRESS_LOAD(&r->subs_done),
            (size_t)atomic_load(&r->ps.wl.count));
}

static void run_matrix(unsigned pubs, unsigned subs, size_t capacity, bool wait_mode,
                       bool paced, size_t total)
{
    if (!stress_begin("pubsub matrix %ux%u cap=%zu %s%s", pubs, subs, capacity,
                      wait_mode ? "wait" : "try", paced ? " paced" : ""))
        return;
    ps_run *r = (ps_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    r->pubs = pubs;
    r->subs = subs;
    r->capacity = capacity;
    r->wait_mode = wait_mode;
    r->paced = paced;
    r->per_pub = (total + pubs - 1) / pubs;
    r->table_len = (size_t)pubs * r->per_pub;
    r->table = (_Atomic uint64_t *)calloc(r->table_len, sizeof *r->table);
    CHECK(r->table != NULL, "out of memory");
    r->buf = aligned_alloc(64, ap__align_up(AP_PUBSUB_BYTES(capacity, sizeof(ps_msg)), 64));
    CHECK(r->buf != NULL, "out of memory");
    ap_status st = ap_pubsub_init(&r->ps, r->buf, AP_PUBSUB_BYTES(capacity, sizeof(ps_msg)),
                                  capacity, sizeof(ps_msg), AP_PUBSUB_POLICY_OVERWRITE);
    CHECK(st == AP_OK, "init: %s", ap_status_str(st));
    unsigned n = pubs + subs;
    ps_worker *w = (ps_worker *)calloc(n, sizeof *w);
    CHECK(w != NULL, "out of memory");
    pthread_barrier_init(&r->start, NULL, n + 1);
    stress_diag(ps_diag, r);
    for (unsigned i = 0; i < n; i++) {
        w[i].r = r;
        w[i].id = i < pubs ? i : i - pubs;
        w[i].seed = stress_thread_seed(i);
        stress_spawn(&w[i].thread, i < pubs ? pub_main : sub_main, &w[i]);
    }
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < pubs; i++)
        stress_join(w[i].thread);
    ap_pubsub_close(&r->ps);
    for (unsigned i = pubs; i < n; i++)
        stress_join(w[i].thread);
    stress_diag(NULL, NULL);
    ps_msg x = ps_make(0, 0);
    CHECK(ap_pubsub_try_publish(&r->ps, &x) == AP_CLOSED, "publish after close");
    CHECK(ap_pubsub_published(&r->ps) == r->table_len, "published %" PRIu64 " of %zu",
          ap_pubsub_published(&r->ps), r->table_len);
    for (unsigned i = pubs; i < n; i++)
        if (w[i].full_run) {
            CHECK(w[i].got_all + w[i].lost_all == r->table_len,
                  "subscriber %u: %" PRIu64 " received + %" PRIu64 " dropped != %zu published",
                  w[i].id, w[i].got_all, w[i].lost_all, r->table_len);
            if (w[i].lost_all == 0) /* then every table entry is filled */
                for (size_t g = 0; g < r->table_len; g++)
                    CHECK(atomic_load(&r->table[g]) != 0, "global seq %zu never seen", g);
        }
    if (capacity >= r->table_len)
        CHECK(STRESS_LOAD(&r->msgs_dropped) == 0, "drops from a ring that never wrapped");
    CHECK(STRESS_LOAD(&r->ps.wl.count) == 0, "waiters left linked");
    pthread_barrier_destroy(&r->start);
    stress_end("msgs=%zu received=%" PRIu64 " drops=%" PRIu64 " (%" PRIu64 " msgs) again=%" PRIu64,
               r->table_len, STRESS_LOAD(&r->received), STRESS_LOAD(&r->drops_reported),
               STRESS_LOAD(&r->msgs_dropped), STRESS_LOAD(&r->again));
    ap_pubsub_fini(&r->ps);
    free(r->buf);
    free((void *)r->table);
    free(w);
    free(r);
}

/* Subscribers parked on an empty channel; close must wake each one. */
static ap_pubsub parked_ps;
static _Atomic unsigned parked_closed;

static void *parked_main(void *arg)
{
    ap_sub *s = (ap_sub *)arg;
    ps_msg m;
    ap_status st = ap_sub_recv_wait(s, &m, AP_DEADLINE_NONE);
    CHECK(st == AP_CLOSED, "parked subscriber woke with %s", ap_status_str(st));
    STRESS_ADD(&parked_closed, 1);
    return NULL;
}

static void run_parked(unsigned subs)
{
    if (!stress_begin("pubsub parked %u then close", subs))
        return;
    static uint64_t buf[AP_PUBSUB_BYTES(2, sizeof(ps_msg)) / 8];
    ap_status st = ap_pubsub_init(&parked_ps, buf, sizeof buf, 2, sizeof(ps_msg),
                                  AP_PUBSUB_POLICY_OVERWRITE);
    CHECK(st == AP_OK, "init");
    atomic_store(&parked_closed, 0);
    ap_sub s[16];
    pthread_t th[16];
    memset(s, 0, sizeof s);
    for (unsigned i = 0; i < subs; i++) {
        ap_pubsub_subscribe(&parked_ps, &s[i]);
        stress_spawn(&th[i], parked_main, &s[i]);
    }
    while (atomic_load(&parked_ps.wl.count) < subs)
        stress_sleep_us(100);
    ap_pubsub_close(&parked_ps);
    for (unsigned i = 0; i < subs; i++)
        stress_join(th[i]);
    CHECK(STRESS_LOAD(&parked_closed) == subs, "%u of %u woke", STRESS_LOAD(&parked_closed),
          subs);
    stress_end("woken=%u", subs);
}

int main(int argc, char **argv)
{
    static const unsigned shapes[][2] = {{1, 1}, {1, 3}, {2, 2}, {4, 2}, {2, 5}};
    static const size_t caps[] = {1, 3, 64};
    stress_init(argc, argv, "stress_pubsub");
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int wait = 0; wait < 2; wait++)
                for (int paced = caps[c] < 2; paced < 2; paced++)
                    run_matrix(shapes[s][0], shapes[s][1], caps[c], wait, paced,
                               stress_iters(caps[c] < 8 ? 3000 : 6000, 50));
    /* a ring that never wraps: nobody may report a drop, and every
     * full-run subscriber receives everything */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        run_matrix(shapes[s][0], shapes[s][1], 8192, s & 1, false, stress_iters(6000, 50) < 8192 ? stress_iters(6000, 50) : 8192);
    run_parked(1);
    run_parked(6);
    return stress_finish();
}
