/*
 * tests/stress/stress_split.c -- ThreadSanitizer stress of the splitter
 *
 * Scenarios: producers x outputs in {2x3, 4x4} with small queues, modes
 * HASH, ROUND_ROBIN and BROADCAST. Producers push (producer << 32 | seq)
 * items with try_push / try_broadcast, retrying AP_FULL / AP_AGAIN (and
 * every 7th item through ap_split_push_wait); one consumer per output pops
 * until the output is closed and drained. Checked: every item arrives
 * exactly once (broadcast: exactly once in every output), HASH items only
 * in ap_split_route(key), counts conserved, per output each producer's
 * sequence strictly increases. TSan checks the copies are ordered by the
 * queues' own release/acquire pairs. The stats (ap_split_stats_init on)
 * equal what the threads saw: per output, routed == the consumer's pops;
 * refused == the producers' AP_FULL/AP_AGAIN answers (each one counted on
 * exactly one output; HASH: on the item's own output); closed == 0 and no
 * waiter left.
 */
#include "stress.h"


#define MAXK 4
#define MAXP 4

typedef struct split_run {
    ap_split s;
    ap_mpmc q[MAXK];
    ap_mpmc *outs[MAXK];
    size_t k, producers, per;
    ap_split_mode mode;
    _Atomic uint32_t *seen; /* per item: bit i = seen in output i */
    _Atomic uint64_t popped;
    _Atomic uint64_t out_popped[MAXK], refused, hash_refused[MAXK];
    _Alignas(AP_SPLIT_STATS_ALIGN) unsigned char ctr[AP_SPLIT_STATS_BYTES(MAXK)];
} split_run;

typedef struct split_worker { split_run *r; size_t id; pthread_t t; } split_worker;

static void *split_producer(void *arg)
{
    split_worker *w = arg;
    split_run *r = w->r;
    stress_rng rng;
    unsigned fails = 0;
    stress_rng_init(&rng, stress_thread_seed((unsigned)w->id), w->id);
    for (uint64_t seq = 0; seq < r->per; seq++) {
        uint64_t item = (uint64_t)w->id << 32 | seq;
        if (seq % 7 == 0) {
            ap_status st = ap_split_push_wait(&r->s, item, &item, AP_DEADLINE_NONE);
            CHECK(st == AP_OK, "push_wait: %s", ap_status_str(st));
            continue;
        }
        size_t next = 0;
        for (;;) {
            ap_status st = r->mode == AP_SPLIT_MODE_BROADCAST
                               ? ap_split_try_broadcast(&r->s, &item, &next)
                               : ap_split_try_push(&r->s, item, &item);
            if (st == AP_OK)
                break;
            CHECK(st == AP_FULL || st == AP_AGAIN, "push: %s", ap_status_str(st));
            STRESS_ADD(&r->refused, 1);
            if (r->mode == AP_SPLIT_MODE_HASH)
                STRESS_ADD(&r->hash_refused[ap_split_route(&r->s, item)], 1);
            stress_backoff(&fails, &rng);
        }
        stress_jitter(&rng);
    }
    return NULL;
}

typedef struct split_consumer { split_run *r; size_t out; pthread_t t; } split_consumer;

static void *split_consumer_main(void *arg)
{
    split_consumer *c = arg;
    split_run *r = c->r;
    uint64_t last[MAXP];
    for (size_t p = 0; p < MAXP; p++)
        last[p] = UINT64_MAX;
    uint64_t item;
    while (ap_mpmc_pop_wait(&r->q[c->out], &item, AP_DEADLINE_NONE) == AP_OK) {
        size_t p = (size_t)(item >> 32);
        uint64_t seq = item & 0xffffffffu;
        CHECK(p < r->producers && seq < r->per, "invented item %" PRIx64, item);
        CHECK(last[p] == UINT64_MAX || seq > last[p], "producer order broken");
        last[p] = seq;
        if (r->mode == AP_SPLIT_MODE_HASH)
            CHECK(ap_split_route(&r->s, item) == c->out, "key in the wrong output");
        uint32_t bit = 1u << c->out;
        uint32_t old = STRESS_ADD(&r->seen[p * r->per + seq], bit);
        CHECK((old & bit) == 0, "item %" PRIx64 " twice in output %zu", item, c->out);
        STRESS_ADD(&r->popped, 1);
        STRESS_ADD(&r->out_popped[c->out], 1);
    }
    return NULL;
}

static void run(ap_split_mode mode, size_t producers, size_t k, size_t cap)
{
    static const char *names[] = {"hash", "round-robin", "broadcast"};
    if (!stress_begin("split %s p=%zu k=%zu cap=%zu", names[mode], producers, k, cap))
        return;
    /* aligned: ctr is over-aligned (a cache line per output, 128 bytes on
     * aarch64), which calloc's alignment does not honour */
    size_t rsz = (sizeof(split_run) + _Alignof(split_run) - 1) / _Alignof(split_run) * _Alignof(split_run);
    split_run *r = aligned_alloc(_Alignof(split_run), rsz);
    CHECK(r != NULL, "aligned_alloc");
    memset(r, 0, sizeof *r);
    r->k = k, r->producers = producers, r->mode = mode;
    r->per = stress_iters(20000, 500);
    r->seen = calloc(producers * r->per, sizeof *r->seen);
    void *bufs[MAXK];
    for (size_t i = 0; i < k; i++) {
        bufs[i] = malloc(AP_MPMC_BYTES(cap, sizeof(uint64_t)));
        CHECK(bufs[i] && ap_mpmc_init(&r->q[i], bufs[i], AP_MPMC_BYTES(cap, sizeof(uint64_t)), cap, sizeof(uint64_t)) == AP_OK, "q");
        r->outs[i] = &r->q[i];
    }
    CHECK(ap_split_init(&r->s, r->outs, AP_SPLIT_BYTES(k), mode) == AP_OK, "init");
    CHECK(ap_split_stats_init(&r->s, r->ctr, sizeof r->ctr) == AP_OK, "stats_init");
    split_worker pw[MAXP];
    split_consumer cw[MAXK];
    for (size_t i = 0; i < k; i++) {
        cw[i] = (split_consumer){r, i, 0};
        stress_spawn(&cw[i].t, split_consumer_main, &cw[i]);
    }
    for (size_t p = 0; p < producers; p++) {
        pw[p] = (split_worker){r, p, 0};
        stress_spawn(&pw[p].t, split_producer, &pw[p]);
    }
    for (size_t p = 0; p < producers; p++)
        stress_join(pw[p].t);
    for (size_t i = 0; i < k; i++)
        ap_mpmc_close(&r->q[i]);
    for (size_t i = 0; i < k; i++)
        stress_join(cw[i].t);
    uint64_t total = producers * r->per, copies = mode == AP_SPLIT_MODE_BROADCAST ? k : 1;
    CHECK(STRESS_LOAD(&r->popped) == total * copies, "conservation: %" PRIu64 " of %" PRIu64,
          (uint64_t)STRESS_LOAD(&r->popped), total * copies);
    for (uint64_t i = 0; i < total; i++) {
        uint32_t m = STRESS_LOAD(&r->seen[i]);
        if (mode == AP_SPLIT_MODE_BROADCAST)
            CHECK(m == (1u << k) - 1, "item %" PRIu64 " reached outputs %x", i, m);
        else
            CHECK(m != 0 && (m & (m - 1)) == 0, "item %" PRIu64 " in outputs %x", i, m);
    }
    uint64_t refused = 0;
    for (size_t i = 0; i < k; i++) {
        ap_split_out_stats o;
        CHECK(ap_split_out_stats_get(&r->s, i, &o) == AP_OK, "out_stats_get");
        CHECK(o.routed == STRESS_LOAD(&r->out_popped[i]) && o.closed == 0,
              "stats: output %zu routed %" PRIu64 " closed %" PRIu64 ", its consumer popped %" PRIu64,
              i, o.routed, o.closed, (uint64_t)STRESS_LOAD(&r->out_popped[i]));
        CHECK(mode != AP_SPLIT_MODE_HASH || o.refused == STRESS_LOAD(&r->hash_refused[i]),
              "stats: output %zu refused %" PRIu64 ", the producers saw %" PRIu64, i, o.refused,
              (uint64_t)STRESS_LOAD(&r->hash_refused[i]));
        refused += o.refused;
    }
    ap_split_stats ss;
    ap_split_stats_get(&r->s, &ss);
    CHECK(refused == STRESS_LOAD(&r->refused) && ss.refused == refused &&
              ss.routed == total * copies && ss.waiters == 0,
          "stats: refused %" PRIu64 " (the producers saw %" PRIu64 "), routed %" PRIu64
          ", waiters %" PRIu64, ss.refused, (uint64_t)STRESS_LOAD(&r->refused), ss.routed,
          ss.waiters);
    for (size_t i = 0; i < k; i++)
        free(bufs[i]);
    free(r->seen);
    free(r);
    stress_end("ok");
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "split");
    for (int m = 0; m < 3; m++) {
        run((ap_split_mode)m, 2, 3, 2);
        run((ap_split_mode)m, 4, 4, 16);
    }
    return stress_finish();
}
