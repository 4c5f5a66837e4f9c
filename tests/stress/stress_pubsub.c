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

/* ==== topics (asyncpat/topic.h) ====
 *
 * Scenario "topic mix": publishers send 8-word messages on subjects drawn
 * from a small set; subscriptions with NATS patterns and every policy:
 *   ">"      OVERWRITE, stalls now and then (drops expected, exactly counted)
 *   "s.*"    OVERWRITE, receives with parking futures
 *   "s.>"    BLOCK, receives with parking futures (publishers wait for it)
 *   "t.*"    BLOCK, try_recv + backoff
 *   "s.1"    DISCONNECT, slow: may be closed when it falls behind
 *   "s.*.x"  OVERWRITE
 * plus a churn thread that subscribes and unsubscribes "s.*" while the
 * publishers run (unsubscribe during a concurrent publish).
 * Checked per subscription: each message is intact, its subject (returned)
 * is the one its words name and matches the pattern (a naive matcher);
 * each publisher's sequence numbers strictly increase (publish order);
 * BLOCK subscribers lose nothing; received + lost == the messages
 * published on matching subjects (OVERWRITE, BLOCK; DISCONNECT: <= and
 * lost == 1 if it was closed); after close, AP_CLOSED.
 */
#include "asyncpat/topic.h"

#define TP_SUBJECTS 6
static const char *const tp_subject[TP_SUBJECTS] = {"s.0", "s.1", "s.2.x", "t.0", "t.1", "u"};
#define TP_SUBS 6
static const char *const tp_pattern[TP_SUBS] = {">", "s.*", "s.>", "t.*", "s.1", "s.*.x"};
static const ap_topic_policy tp_policy[TP_SUBS] = {
    AP_TOPIC_POLICY_OVERWRITE, AP_TOPIC_POLICY_OVERWRITE, AP_TOPIC_POLICY_BLOCK,
    AP_TOPIC_POLICY_BLOCK,     AP_TOPIC_POLICY_DISCONNECT, AP_TOPIC_POLICY_OVERWRITE};
#define TP_PUBS 3
#define TP_DEPTH 8

static bool tp_match(const char *pat, const char *subj)
{
    for (;;) {
        const char *pe = strchr(pat, '.'), *se = strchr(subj, '.');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t sl = se ? (size_t)(se - subj) : strlen(subj);
        if (pl == 1 && pat[0] == '>')
            return true;
        if (!(pl == 1 && pat[0] == '*') && (pl != sl || memcmp(pat, subj, pl) != 0))
            return false;
        if (!pe || !se)
            return !pe && !se;
        pat = pe + 1;
        subj = se + 1;
    }
}

typedef struct tp_run {
    ap_topic bus;
    size_t per_pub;
    pthread_barrier_t start;
    _Atomic uint64_t published[TP_SUBJECTS];
    _Atomic unsigned pubs_done;
} tp_run;

typedef struct tp_worker {
    tp_run *r;
    unsigned id;
    pthread_t thread;
    ap_topic_sub sub;
    uint64_t ring[AP_TOPIC_SUB_BYTES(TP_DEPTH) / 8];
    uint64_t got, lost, churn_rounds;
} tp_worker;

static void *tp_pub_main(void *arg)
{
    tp_worker *w = (tp_worker *)arg;
    tp_run *r = w->r;
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(w->id), w->id);
    pthread_barrier_wait(&r->start);
    for (size_t seq = 0; seq < r->per_pub; seq++) {
        unsigned k = stress_below(&rng, TP_SUBJECTS);
        ps_msg m = ps_make(w->id, seq);
        m.w[PS_WORDS - 1] = k; /* the subject's index rides along */
        ap_status st = ap_topic_publish_wait(&r->bus, tp_subject[k], &m, AP_DEADLINE_NONE);
        CHECK(st == AP_OK, "publisher %u: %s", w->id, ap_status_str(st));
        STRESS_ADD(&r->published[k], 1);
        stress_jitter(&rng);
    }
    STRESS_ADD(&r->pubs_done, 1u);
    return NULL;
}

static void tp_check_msg(const char *pat, const ps_msg *m, const char *subj, uint64_t *last)
{
    uint64_t k = m->w[PS_WORDS - 1];
    CHECK(k < TP_SUBJECTS, "%s: subject index %" PRIu64, pat, k);
    CHECK(strcmp(subj, tp_subject[k]) == 0, "%s: subject %s, words say %s", pat, subj,
          tp_subject[k]);
    CHECK(tp_match(pat, subj), "%s received %s", pat, subj);
    uint64_t h = stress_check_word(m->w[0]);
    for (unsigned i = 1; i < PS_WORDS - 1; i++)
        CHECK(m->w[i] == h + i, "%s: torn message word %u", pat, i);
    unsigned p = (unsigned)STRESS_ITEM_PRODUCER(m->w[0]);
    uint64_t seq = m->w[0] & ((UINT64_C(1) << STRESS_SEQ_BITS) - 1);
    CHECK(p < TP_PUBS, "%s: producer %u", pat, p);
    CHECK(last[p] == UINT64_MAX || seq > last[p], "%s: producer %u seq %" PRIu64 " after %" PRIu64,
          pat, p, seq, last[p]);
    last[p] = seq;
}

static void *tp_sub_main(void *arg)
{
    tp_worker *w = (tp_worker *)arg;
    tp_run *r = w->r;
    const char *pat = tp_pattern[w->id];
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(100 + w->id), w->id);
    uint64_t last[TP_PUBS];
    for (unsigned i = 0; i < TP_PUBS; i++)
        last[i] = UINT64_MAX;
    pthread_barrier_wait(&r->start);
    unsigned fails = 0;
    for (;;) {
        ps_msg m;
        char subj[AP_TOPIC_SUBJECT_MAX + 1];
        uint64_t n = 0;
        ap_status st;
        if (w->id == 1 || w->id == 2)
            st = ap_topic_sub_recv_wait(&w->sub, &m, subj, AP_DEADLINE_NONE);
        else
            st = ap_topic_sub_try_recv(&w->sub, &m, subj, &n);
        if (st == AP_OK) {
            tp_check_msg(pat, &m, subj, last);
            fails = 0;
            if (w->id == 0 && stress_below(&rng, 64) == 0)
                stress_sleep_us(200 + stress_below(&rng, 800)); /* stalls */
            else if (w->id == 4 && stress_below(&rng, 16) == 0)
                stress_sleep_us(50 + stress_below(&rng, 200)); /* slow */
            else
                stress_jitter(&rng);
        } else if (st == AP_DROPPED) {
            CHECK(tp_policy[w->id] == AP_TOPIC_POLICY_OVERWRITE, "%s dropped", pat);
            CHECK(ap_topic_sub_last_dropped(&w->sub) > 0, "%s: a drop of 0", pat);
            CHECK(n == 0 || n == ap_topic_sub_last_dropped(&w->sub), "%s: drop counts", pat);
        } else if (st == AP_EMPTY) {
            stress_backoff(&fails, &rng);
        } else {
            CHECK(st == AP_CLOSED, "%s: %s", pat, ap_status_str(st));
            break;
        }
    }
    w->got = ap_topic_sub_received(&w->sub);
    w->lost = ap_topic_sub_lost(&w->sub);
    return NULL;
}

static void *tp_churn_main(void *arg)
{
    tp_worker *w = (tp_worker *)arg;
    tp_run *r = w->r;
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(200), 7);
    pthread_barrier_wait(&r->start);
    while (STRESS_LOAD(&r->pubs_done) < TP_PUBS) {
        memset(&w->sub, 0, sizeof w->sub);
        ap_status st = ap_topic_subscribe(&r->bus, &w->sub, "s.*", AP_TOPIC_POLICY_OVERWRITE,
                                          w->ring, sizeof w->ring, TP_DEPTH);
        CHECK(st == AP_OK, "churn subscribe: %s", ap_status_str(st));
        uint64_t last[TP_PUBS];
        for (unsigned i = 0; i < TP_PUBS; i++)
            last[i] = UINT64_MAX;
        for (unsigned i = stress_below(&rng, 20); i > 0; i--) {
            ps_msg m;
            char subj[AP_TOPIC_SUBJECT_MAX + 1];
            st = ap_topic_sub_try_recv(&w->sub, &m, subj, NULL);
            if (st == AP_OK)
                tp_check_msg("s.*", &m, subj, last); /* the churn thread */
            else if (st == AP_CLOSED)
                break;
            stress_jitter(&rng);
        }
        ap_topic_unsubscribe(&r->bus, &w->sub); /* publishers are running */
        w->churn_rounds++;
    }
    return NULL;
}

static void run_topic_mix(size_t per_pub)
{
    if (!stress_begin("topic mix %u pubs x %u subs + churn, %zu each", TP_PUBS, TP_SUBS,
                      per_pub))
        return;
    static tp_run r;
    static tp_worker pubs[TP_PUBS], subs[TP_SUBS], churn;
    static uint64_t mem[AP_TOPIC_BYTES(64, sizeof(ps_msg), 32) / 8];
    memset(&r, 0, sizeof r);
    r.per_pub = per_pub;
    CHECK(ap_topic_init(&r.bus, mem, sizeof mem, 64, sizeof(ps_msg), 32) == AP_OK, "init");
    pthread_barrier_init(&r.start, NULL, TP_PUBS + TP_SUBS + 1 + 1);
    for (unsigned i = 0; i < TP_SUBS; i++) {
        memset(&subs[i], 0, sizeof subs[i]);
        subs[i].r = &r;
        subs[i].id = i;
        ap_status st = ap_topic_subscribe(&r.bus, &subs[i].sub, tp_pattern[i], tp_policy[i],
                                          subs[i].ring, sizeof subs[i].ring, TP_DEPTH);
        CHECK(st == AP_OK, "subscribe %s: %s", tp_pattern[i], ap_status_str(st));
        stress_spawn(&subs[i].thread, tp_sub_main, &subs[i]);
    }
    memset(&churn, 0, sizeof churn);
    churn.r = &r;
    stress_spawn(&churn.thread, tp_churn_main, &churn);
    for (unsigned i = 0; i < TP_PUBS; i++) {
        memset(&pubs[i], 0, sizeof pubs[i]);
        pubs[i].r = &r;
        pubs[i].id = i;
        stress_spawn(&pubs[i].thread, tp_pub_main, &pubs[i]);
    }
    pthread_barrier_wait(&r.start);
    for (unsigned i = 0; i < TP_PUBS; i++)
        stress_join(pubs[i].thread);
    stress_join(churn.thread);
    ap_topic_close(&r.bus);
    uint64_t total = 0, drops = 0;
    bool disconnected = false;
    for (unsigned i = 0; i < TP_SUBS; i++) {
        stress_join(subs[i].thread);
        uint64_t want = 0;
        for (unsigned k = 0; k < TP_SUBJECTS; k++)
            if (tp_match(tp_pattern[i], tp_subject[k]))
                want += STRESS_LOAD(&r.published[k]);
        const char *pat = tp_pattern[i];
        if (tp_policy[i] == AP_TOPIC_POLICY_DISCONNECT && ap_topic_sub_is_disconnected(&subs[i].sub)) {
            disconnected = true;
            CHECK(subs[i].lost == 1, "%s: disconnected with lost %" PRIu64, pat, subs[i].lost);
            CHECK(subs[i].got + subs[i].lost <= want, "%s: %" PRIu64 " + %" PRIu64 " > %" PRIu64,
                  pat, subs[i].got, subs[i].lost, want);
        } else {
            CHECK(subs[i].got + subs[i].lost == want,
                  "%s: received %" PRIu64 " + lost %" PRIu64 " != published %" PRIu64, pat,
                  subs[i].got, subs[i].lost, want);
        }
        if (tp_policy[i] == AP_TOPIC_POLICY_BLOCK)
            CHECK(subs[i].lost == 0, "%s (BLOCK) lost %" PRIu64, pat, subs[i].lost);
        total += subs[i].got;
        drops += subs[i].lost;
        ap_topic_unsubscribe(&r.bus, &subs[i].sub);
    }
    CHECK(r.bus.pinned == 0, "pins left: %zu", r.bus.pinned);
    CHECK(r.bus.nodes_free == 32, "trie nodes left: %u free of 32", r.bus.nodes_free);
    ap_topic_fini(&r.bus);
    pthread_barrier_destroy(&r.start);
    stress_end("received=%" PRIu64 " lost=%" PRIu64 " disconnect=%d churn=%" PRIu64, total,
               drops, disconnected, churn.churn_rounds);
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
    run_topic_mix(stress_iters(4000, 200));
    run_topic_mix(stress_iters(300, 100)); /* short: the churn starts and ends mid-run */
    return stress_finish();
}
