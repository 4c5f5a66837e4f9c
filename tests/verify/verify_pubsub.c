/*
 * verify_pubsub.c -- the broadcast channel (asyncpat/pubsub.h) under every
 * interleaving within the preemption bound, in SC and x86-TSO modes.
 *
 * Publishers publish 1-3 two-word messages {v, ~v} into a ring of capacity
 * 1 or 2 while 1-2 subscribers (subscribed before anything runs) receive
 * through parking futures (ap_sub_recv_fut) until they have accounted for
 * every message, or until AP_CLOSED in the close scenarios. Checked:
 *   - never torn: every received message is {v, ~v};
 *   - the subscriber's cursor moves by one per AP_OK and by exactly the
 *     reported count per AP_DROPPED (gaps == drops), and
 *     received + dropped == published at the end;
 *   - all subscribers agree on the message at each global sequence number
 *     (one total order), and each publisher's messages arrive in order;
 *   - a ring that holds every message (capacity >= messages) drops none;
 *   - no lost wakeup: a parked receive future is always woken (vf's
 *     detector fails the run otherwise), also by close.
 */
#include "vf.h"
#include "asyncpat/pubsub.h"

#define MAXMSG 4

typedef struct msg { uint64_t v, check; } msg;

typedef struct pst {
    ap_pubsub ps;
    _Alignas(8) unsigned char buf[AP_PUBSUB_BYTES(2, sizeof(msg))];
    ap_sub sub[2];
    uint64_t at[MAXMSG];   /* value seen at each global sequence + 1; 0 = none */
    uint64_t got[2], lost[2];
    int closed_seen[2];
} pst;

static int n_pubs, n_subs, per_pub, cap, do_close;

static void *ps_setup(void)
{
    pst *s = calloc(1, sizeof *s);
    VF_CHECK(ap_pubsub_init(&s->ps, s->buf, sizeof s->buf, (size_t)cap, sizeof(msg),
                            AP_PUBSUB_POLICY_OVERWRITE) == AP_OK);
    for (int i = 0; i < n_subs; i++)
        ap_pubsub_subscribe(&s->ps, &s->sub[i]);
    return s;
}

static void publisher(pst *s, int id)
{
    for (int i = 0; i < per_pub; i++) {
        msg m = {(uint64_t)(id * 10 + i + 1), 0};
        m.check = ~m.v;
        ap_status st;
        while ((st = ap_pubsub_try_publish(&s->ps, &m)) == AP_AGAIN)
            vf_yield(); /* the slot's previous writer is mid-copy */
        VF_CHECK(st == AP_OK, "publish: %d", st);
    }
    if (do_close && id == n_pubs - 1)
        ap_pubsub_close(&s->ps);
}

static void subscriber(pst *s, int k)
{
    ap_sub *sub = &s->sub[k];
    uint64_t total = (uint64_t)(n_pubs * per_pub), expect = 0;
    uint64_t last[2] = {0, 0};
    for (;;) {
        if (!do_close && s->got[k] + s->lost[k] == total)
            break;
        msg m = {0, 0};
        ap_sub_recv_fut f;
        ap_sub_recv_fut_init(&f, sub, &m);
        vf_wait(&f.op.base);
        ap_status st = ap_sub_recv_status(&f);
        if (st == AP_CLOSED) {
            VF_CHECK(do_close, "AP_CLOSED without close");
            s->closed_seen[k] = 1;
            break;
        }
        if (st == AP_DROPPED) {
            uint64_t n = ap_sub_last_dropped(sub);
            VF_CHECK(n >= 1 && m.v == 0, "drop of %lu, output %lu", (unsigned long)n,
                     (unsigned long)m.v);
            expect += n;
            s->lost[k] += n;
            VF_CHECK(sub->next == expect, "cursor %lu after a drop, expected %lu",
                     (unsigned long)sub->next, (unsigned long)expect);
            continue;
        }
        VF_CHECK(st == AP_OK, "receive: %d", st);
        VF_CHECK(m.check == ~m.v && m.v != 0, "TORN message {%lu, %#lx}", (unsigned long)m.v,
                 (unsigned long)m.check);
        uint64_t g = sub->next - 1;
        VF_CHECK(g == expect, "subscriber %d got global seq %lu, expected %lu (unreported gap)",
                 k, (unsigned long)g, (unsigned long)expect);
        VF_CHECK(g < MAXMSG);
        VF_CHECK(s->at[g] == 0 || s->at[g] == m.v, "subscribers disagree at seq %lu: %lu vs %lu",
                 (unsigned long)g, (unsigned long)s->at[g], (unsigned long)m.v);
        s->at[g] = m.v;
        int p = (int)((m.v - 1) / 10);
        VF_CHECK(p < n_pubs, "invented message %lu", (unsigned long)m.v);
        VF_CHECK(m.v > last[p], "publisher %d: %lu after %lu", p, (unsigned long)m.v,
                 (unsigned long)last[p]);
        last[p] = m.v;
        expect++;
        s->got[k]++;
    }
}

static void ps_thread(void *p, int id)
{
    pst *s = p;
    if (id < n_pubs)
        publisher(s, id);
    else
        subscriber(s, id - n_pubs);
}

static void ps_invariant(void *p)
{
    pst *s = p;
    VF_CHECK(ap_pubsub_published(&s->ps) <= (uint64_t)(n_pubs * per_pub));
}

static void ps_check(void *p)
{
    pst *s = p;
    uint64_t total = (uint64_t)(n_pubs * per_pub);
    VF_CHECK(ap_pubsub_published(&s->ps) == total);
    for (int k = 0; k < n_subs; k++) {
        VF_CHECK(s->got[k] + s->lost[k] == total, "subscriber %d: %lu received + %lu dropped",
                 k, (unsigned long)s->got[k], (unsigned long)s->lost[k]);
        VF_CHECK(ap_sub_received(&s->sub[k]) == s->got[k] &&
                 ap_sub_lost(&s->sub[k]) == s->lost[k]);
        if ((uint64_t)cap >= total)
            VF_CHECK(s->lost[k] == 0, "a ring of %d dropped with %lu messages", cap,
                     (unsigned long)total);
        if (do_close)
            VF_CHECK(s->closed_seen[k], "subscriber %d never saw AP_CLOSED", k);
    }
    VF_CHECK(!ap_waitlist_has_waiters(&s->ps.wl), "a finished receive left linked");
}

static void ps_teardown(void *p) { free(p); }

static unsigned long run(const char *name, int tso, int pubs, int subs, int msgs, int capacity,
                         int close, int bound)
{
    static char names[64][64];
    static int used;
    n_pubs = pubs, n_subs = subs, per_pub = msgs, cap = capacity, do_close = close;
    vf_scenario sc = {.nthreads = pubs + subs, .tso = tso, .bound = bound,
                      .setup = ps_setup, .thread = ps_thread, .invariant = ps_invariant,
                      .check = ps_check, .teardown = ps_teardown};
    char *nm = names[used++ % 64];
    snprintf(nm, 64, "%s%s", name, tso ? "_tso" : "");
    sc.name = nm;
    return vf_explore(&sc);
}

/* ==== topics (asyncpat/topic.h) ====
 * topic_block: one publisher sends 3 messages on "a.x" through publish
 *   futures to a BLOCK subscription "a.*" of depth 2 (and an OVERWRITE
 *   ">" of depth 2 that nobody reads), while the subscriber receives
 *   through receive futures. Checked: BLOCK loses nothing and gets them in
 *   order; the publish future parks only while the BLOCK ring is full and
 *   is always woken (vf's lost-wakeup detector); the OVERWRITE one's
 *   received + lost == 3 (it never held the publisher up); pins end at 0.
 * topic_unsub: a publisher sends 2 messages on "a.b" while the other
 *   thread receives at most one from "a.*" (OVERWRITE) and unsubscribes:
 *   after its unsubscribe returns, no publish touches its ring (tail
 *   frozen), every message it got is in order, its trie node is freed.
 */
#include "asyncpat/topic.h"

typedef struct tst {
    ap_topic bus;
    _Alignas(8) unsigned char buf[AP_TOPIC_BYTES(4, sizeof(msg), 4)];
    ap_topic_sub blk, ovw;
    _Alignas(8) uint64_t rb[AP_TOPIC_SUB_BYTES(2) / 8], ro[AP_TOPIC_SUB_BYTES(2) / 8];
    uint64_t got, tail_after_unsub;
    int unsubscribed;
} tst;

static int topic_mode; /* 0: block, 1: unsub */

static void *tp_setup(void)
{
    tst *s = calloc(1, sizeof *s);
    VF_CHECK(ap_topic_init(&s->bus, s->buf, sizeof s->buf, 4, sizeof(msg), 4) == AP_OK);
    if (topic_mode == 0) {
        VF_CHECK(ap_topic_subscribe(&s->bus, &s->blk, "a.*", AP_TOPIC_POLICY_BLOCK, s->rb,
                                    sizeof s->rb, 2) == AP_OK);
        VF_CHECK(ap_topic_subscribe(&s->bus, &s->ovw, ">", AP_TOPIC_POLICY_OVERWRITE, s->ro,
                                    sizeof s->ro, 2) == AP_OK);
    } else {
        VF_CHECK(ap_topic_subscribe(&s->bus, &s->ovw, "a.*", AP_TOPIC_POLICY_OVERWRITE, s->ro,
                                    sizeof s->ro, 2) == AP_OK);
    }
    return s;
}

static void tp_thread(void *p, int id)
{
    tst *s = p;
    int n = topic_mode == 0 ? 3 : 2;
    if (id == 0) {
        for (int i = 0; i < n; i++) {
            msg m = {(uint64_t)(i + 1), ~(uint64_t)(i + 1)};
            ap_topic_pub_fut f;
            ap_topic_publish_fut_init(&f, &s->bus, topic_mode == 0 ? "a.x" : "a.b", &m);
            vf_wait(&f.base);
            VF_CHECK(ap_topic_publish_status(&f) == AP_OK, "publish: %d",
                     ap_topic_publish_status(&f));
        }
        return;
    }
    if (topic_mode == 0) {
        for (uint64_t want = 1; want <= 3; want++) {
            msg m = {0, 0};
            ap_topic_recv_fut f;
            ap_topic_recv_fut_init(&f, &s->blk, &m, NULL);
            vf_wait(&f.base);
            VF_CHECK(ap_topic_recv_status(&f) == AP_OK, "BLOCK receive: %d",
                     ap_topic_recv_status(&f));
            VF_CHECK(m.v == want && m.check == ~want, "BLOCK got %lu, expected %lu",
                     (unsigned long)m.v, (unsigned long)want);
            s->got++;
        }
        return;
    }
    msg m = {0, 0};
    ap_status st = ap_topic_sub_try_recv(&s->ovw, &m, NULL, NULL);
    if (st == AP_OK) {
        VF_CHECK(m.v == 1 && m.check == ~m.v, "first message %lu", (unsigned long)m.v);
        s->got++;
    } else {
        VF_CHECK(st == AP_EMPTY, "receive: %d", st);
    }
    ap_topic_unsubscribe(&s->bus, &s->ovw);
    s->tail_after_unsub = atomic_load(&s->ovw.tail);
    s->unsubscribed = 1;
}

static void tp_invariant(void *p)
{
    tst *s = p;
    if (topic_mode == 0)
        VF_CHECK(ap_topic_sub_len(&s->blk) <= 2, "BLOCK ring over its depth");
    else if (s->unsubscribed)
        VF_CHECK(atomic_load(&s->ovw.tail) == s->tail_after_unsub,
                 "a publish pushed to an unsubscribed subscription");
}

static void tp_check(void *p)
{
    tst *s = p;
    if (topic_mode == 0) {
        VF_CHECK(s->got == 3 && ap_topic_sub_lost(&s->blk) == 0);
        msg m;
        ap_status st;
        while ((st = ap_topic_sub_try_recv(&s->ovw, &m, NULL, NULL)) == AP_OK || st == AP_DROPPED) {}
        VF_CHECK(ap_topic_sub_received(&s->ovw) + ap_topic_sub_lost(&s->ovw) == 3,
                 "OVERWRITE: %lu + %lu", (unsigned long)ap_topic_sub_received(&s->ovw),
                 (unsigned long)ap_topic_sub_lost(&s->ovw));
        ap_topic_unsubscribe(&s->bus, &s->blk);
        ap_topic_unsubscribe(&s->bus, &s->ovw);
    } else {
        VF_CHECK(s->unsubscribed && s->ovw.bus == NULL);
    }
    VF_CHECK(s->bus.pinned == 0 && s->bus.nodes_free == 4, "pins %zu, free nodes %u",
             s->bus.pinned, s->bus.nodes_free);
    VF_CHECK(!ap_waitlist_has_waiters(&s->bus.pub_wl), "a publish future left linked");
    ap_topic_fini(&s->bus);
}

static unsigned long run_topic(const char *name, int tso, int mode, int bound)
{
    static char names[8][64];
    static int used;
    topic_mode = mode;
    vf_scenario sc = {.nthreads = 2, .tso = tso, .bound = bound, .setup = tp_setup,
                      .thread = tp_thread, .invariant = tp_invariant, .check = tp_check,
                      .teardown = ps_teardown};
    char *nm = names[used++ % 8];
    snprintf(nm, 64, "%s%s", name, tso ? "_tso" : "");
    sc.name = nm;
    return vf_explore(&sc);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        /* two threads, bound 3: 1 publisher x 3 messages, 1 subscriber */
        total += run("pubsub_1p1s_3msg_cap1", tso, 1, 1, 3, 1, 0, 3);
        total += run("pubsub_1p1s_3msg_cap2", tso, 1, 1, 3, 2, 0, 3);
        total += run("pubsub_1p1s_2msg_cap2_close", tso, 1, 1, 2, 2, 1, 3);
        /* three threads, bound 2 */
        total += run("pubsub_1p2s_2msg_cap1", tso, 1, 2, 2, 1, 0, 2);
        total += run("pubsub_1p2s_2msg_cap2", tso, 1, 2, 2, 2, 0, 2);
        total += run("pubsub_2p1s_2msg_cap1", tso, 2, 1, 1, 1, 0, 2);
        total += run("pubsub_2p1s_4msg_cap2", tso, 2, 1, 2, 2, 0, 2);
        total += run("pubsub_1p2s_1msg_cap1_close", tso, 1, 2, 1, 1, 1, 2);
        total += run_topic("topic_block_1p1s_3msg_depth2", tso, 0, 2);
        total += run_topic("topic_unsub_during_publish", tso, 1, 3);
    }
    printf("verify_pubsub: %lu executions\n", total);
    return 0;
}
