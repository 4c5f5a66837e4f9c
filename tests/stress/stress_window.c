/*
 * tests/stress/stress_window.c -- ThreadSanitizer stress of ap_window_par
 * (asyncpat/window.h, issue #14): one tumbling or hopping window fed by
 * several worker threads at once.
 *
 * Each scenario makes a stream of events with bounded disorder (every event
 * is at most the lateness behind the newest before it, so one ap_window fed
 * the stream in order accepts them all), gives each event to a random
 * worker (each worker's list keeps the stream order), and runs the workers
 * as threads; a worker that meets AP_FULL (it ran its slots ahead of the
 * slowest worker) yields and retries; each flushes its worker at its end.
 * Checked: every event is accepted (none late, none lost), and the merged
 * output -- the windows the emit callback saw, on whichever thread closed
 * them -- equals, window by window (start, end, count, exact sum, min,
 * max, order), the single-threaded window's output on the same stream.
 * TSan checks that the partials reach the closer through the workers'
 * locks alone.
 *
 * Scenarios: workers in {2, 4, 8} x {tumbling 100, hopping 100/25,
 * hopping 90/40} x lateness in {0, 50}, slots = ap_window_slots or 4 more.
 */
#include "stress.h"

#define SW_MAXW 8
#define SW_SLOTS_MAX 64

typedef struct sw_ev { uint64_t ts; int64_t v; } sw_ev;

typedef struct sw_out {
    ap_window_result *r;
    size_t n, cap;
} sw_out;

typedef struct sw_run {
    ap_window_par par;
    unsigned char *buf;
    size_t workers, nev;
    sw_ev *ev;
    size_t *q[SW_MAXW], qn[SW_MAXW];
    sw_out merged; /* written only by emit, under the closing lock */
    _Atomic uint64_t fulls;
    pthread_barrier_t start;
} sw_run;

typedef struct sw_thread {
    sw_run *r;
    unsigned id;
    pthread_t thread;
} sw_thread;

static void sw_emit(void *ctx, const ap_window_result *res)
{
    sw_out *o = (sw_out *)ctx;
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 1024;
        o->r = (ap_window_result *)realloc(o->r, o->cap * sizeof *o->r);
        CHECK(o->r != NULL, "out of memory");
    }
    o->r[o->n++] = *res;
}

static void *sw_worker_main(void *arg)
{
    sw_thread *t = (sw_thread *)arg;
    sw_run *r = t->r;
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; i < r->qn[t->id]; i++) {
        const sw_ev *e = &r->ev[r->q[t->id][i]];
        ap_status st;
        while ((st = ap_window_par_add(&r->par, t->id, e->ts, e->v, sw_emit, &r->merged)) ==
               AP_FULL) {
            STRESS_ADD(&r->fulls, 1u);
            sched_yield(); /* ahead of the slowest worker: let it run */
        }
        CHECK(st == AP_OK, "worker %u, event %zu (ts %" PRIu64 "): %s", t->id, r->q[t->id][i],
              e->ts, ap_status_str(st));
    }
    ap_window_par_advance(&r->par, t->id, AP_WINDOW_FLUSH, sw_emit, &r->merged);
    return NULL;
}

static void run_window(size_t workers, const ap_window_desc *d, const char *kind, int extra,
                       size_t nev)
{
    if (!stress_begin("window-par %zuw %s %" PRIu64 "/%" PRIu64 " late=%" PRIu64 " slots+%d",
                      workers, kind, d->size_ns, d->slide_ns ? d->slide_ns : d->size_ns,
                      d->lateness_ns, extra))
        return;
    sw_run *r = (sw_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(999), workers * 131 + (size_t)extra);
    r->workers = workers;
    r->nev = nev;
    r->ev = (sw_ev *)calloc(nev, sizeof *r->ev);
    CHECK(r->ev != NULL, "out of memory");
    uint64_t t = 1000;
    for (size_t i = 0; i < nev; i++) { /* disorder <= lateness: none late */
        t += stress_below(&rng, 7);
        r->ev[i].ts = t - stress_below(&rng, (uint32_t)d->lateness_ns + 1);
        r->ev[i].v = (int64_t)stress_below(&rng, 2001) - 1000;
    }
    for (size_t w = 0; w < workers; w++) {
        r->q[w] = (size_t *)calloc(nev, sizeof(size_t));
        CHECK(r->q[w] != NULL, "out of memory");
    }
    for (size_t i = 0; i < nev; i++) { /* random assignment, stream order kept */
        size_t w = stress_below(&rng, (uint32_t)workers);
        r->q[w][r->qn[w]++] = i;
    }
    /* the reference: one ap_window, the stream in order */
    static uint64_t wb[4096];
    ap_window one;
    sw_out ref = {NULL, 0, 0};
    CHECK(ap_window_init(&one, wb, sizeof wb, d) == AP_OK, "ap_window_init");
    for (size_t i = 0; i < nev; i++)
        CHECK(ap_window_add(&one, r->ev[i].ts, r->ev[i].v, sw_emit, &ref) == AP_OK,
              "the reference refused event %zu", i);
    ap_window_advance(&one, AP_WINDOW_FLUSH, sw_emit, &ref);
    ap_window_fini(&one);
    size_t slots = (size_t)ap_window_slots(d) + (size_t)extra;
    size_t bytes = AP_WINDOW_PAR_BYTES(workers, slots);
    r->buf = (unsigned char *)aligned_alloc(AP_WINDOW_PAR_ALIGN,
                                            (bytes + AP_WINDOW_PAR_ALIGN - 1) /
                                                AP_WINDOW_PAR_ALIGN * AP_WINDOW_PAR_ALIGN);
    CHECK(r->buf != NULL, "out of memory");
    ap_status st = ap_window_par_init(&r->par, r->buf, bytes, d, workers, slots);
    CHECK(st == AP_OK, "ap_window_par_init: %s", ap_status_str(st));
    sw_thread *th = (sw_thread *)calloc(workers, sizeof *th);
    CHECK(th != NULL, "out of memory");
    pthread_barrier_init(&r->start, NULL, (unsigned)workers + 1);
    for (size_t w = 0; w < workers; w++) {
        th[w].r = r;
        th[w].id = (unsigned)w;
        stress_spawn(&th[w].thread, sw_worker_main, &th[w]);
    }
    pthread_barrier_wait(&r->start);
    for (size_t w = 0; w < workers; w++)
        stress_join(th[w].thread);
    CHECK(ap_window_par_accepted(&r->par) == nev && ap_window_par_late(&r->par) == 0,
          "accepted %" PRIu64 " late %" PRIu64 " of %zu", ap_window_par_accepted(&r->par),
          ap_window_par_late(&r->par), nev);
    CHECK(r->merged.n == ref.n, "%zu windows merged, %zu single-threaded", r->merged.n, ref.n);
    for (size_t i = 0; i < ref.n; i++) {
        const ap_window_result *a = &r->merged.r[i], *b = &ref.r[i];
        CHECK(a->start == b->start && a->end == b->end && a->agg.count == b->agg.count &&
                  a->agg.sum_lo == b->agg.sum_lo && a->agg.sum_hi == b->agg.sum_hi &&
                  a->agg.min == b->agg.min && a->agg.max == b->agg.max,
              "window %zu: merged [%" PRId64 ",%" PRId64 ") count %" PRIu64
              ", single-threaded [%" PRId64 ",%" PRId64 ") count %" PRIu64,
              i, a->start, a->end, a->agg.count, b->start, b->end, b->agg.count);
    }
    CHECK(ap_window_par_emitted(&r->par) == ref.n, "emitted counter");
    pthread_barrier_destroy(&r->start);
    stress_end("events=%zu windows=%zu full-retries=%" PRIu64, nev, ref.n,
               STRESS_LOAD(&r->fulls));
    ap_window_par_fini(&r->par);
    for (size_t w = 0; w < workers; w++)
        free(r->q[w]);
    free(th);
    free(r->buf);
    free(r->ev);
    free(r->merged.r);
    free(ref.r);
    free(r);
}

int main(int argc, char **argv)
{
    static const size_t workers[] = {2, 4, 8};
    static const uint64_t late[] = {0, 50};
    stress_init(argc, argv, "stress_window");
    for (size_t w = 0; w < sizeof workers / sizeof workers[0]; w++)
        for (size_t l = 0; l < sizeof late / sizeof late[0]; l++)
            for (int extra = 0; extra <= 4; extra += 4) {
                ap_window_desc tum = {.kind = AP_WINDOW_KIND_TUMBLING, .size_ns = 100,
                                      .lateness_ns = late[l]};
                ap_window_desc hop = {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 100,
                                      .slide_ns = 25, .lateness_ns = late[l]};
                ap_window_desc odd = {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 90,
                                      .slide_ns = 40, .lateness_ns = late[l]};
                size_t n = stress_iters(20000, 200);
                run_window(workers[w], &tum, "tumbling", extra, n);
                run_window(workers[w], &hop, "hopping", extra, n);
                run_window(workers[w], &odd, "hopping", extra, n);
            }
    return stress_finish();
}
