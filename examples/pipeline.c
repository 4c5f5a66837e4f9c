/*
 * examples/pipeline.c -- a three-stage pipeline behind a service lifecycle
 *
 *   usage: pipeline N    (N >= 0 numbers 1..N)
 *
 * Stage 0 squares each number, stage 1 drops the odd squares (a filter),
 * stage 2 adds 1. Each stage has its own thread driving a run future with
 * ap_block_on; the library runs no thread of its own. Producers enter the
 * lifecycle's gate for every push; main stops the lifecycle, waits for the
 * drain (nobody inside any more), then closes the pipeline, which drains
 * stage by stage. Prints "items K sum S filtered F" where, for n = 1..N,
 * K counts the even n, S = sum over even n of (n*n + 1), F the odd n.
 * A stage reports its own error code beside the status: square fails a
 * number whose square would not fit (app_error ERANGE); the pipeline counts
 * it and keeps the last failure's status and app_error in the stage's
 * stats, which main reports (on stderr, exit status 1).
 */
#include "asyncpat.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

enum { NPROD = 2, CAP = 16 };
typedef unsigned long long u64;

static ap_status square(void *ctx, const void *in, void *out, int *app_error)
{
    (void)ctx;
    u64 v = *(const u64 *)in;
    if (v > 0xffffffffu) {   /* v * v would wrap: fail the element, */
        *app_error = ERANGE; /* with our own code beside the status */
        return AP_INVAL;
    }
    *(u64 *)out = v * v;
    return AP_OK;
}
static ap_status keep_even(void *ctx, const void *in, void *out, int *app_error)
{
    (void)app_error;
    (void)ctx;
    u64 v = *(const u64 *)in;
    if (v & 1)
        return AP_FILTERED; /* filtered: counted by the pipeline, not lost */
    *(u64 *)out = v;
    return AP_OK;
}
static ap_status plus_one(void *ctx, const void *in, void *out, int *app_error)
{
    (void)app_error;
    (void)ctx;
    *(u64 *)out = *(const u64 *)in + 1;
    return AP_OK;
}

static _Alignas(64) unsigned char qin[AP_MPMC_BYTES(CAP, sizeof(u64))];
static _Alignas(64) unsigned char qs[3][AP_MPMC_BYTES(CAP, sizeof(u64))];
static ap_pipeline pipe_;
static ap_pipeline_stage stages[3];
static ap_life life = AP_LIFE_INITIALIZER;
static u64 n_max;

struct worker { pthread_t th; size_t stage; ap_status st; };
static void *run_stage(void *arg)
{
    struct worker *w = arg;
    u64 in, out;
    ap_pipeline_worker pw;
    if (ap_pipeline_worker_init(&pw, &in, sizeof in, &out, sizeof out, &pipe_, w->stage) != AP_OK) {
        w->st = AP_INVAL;
        return NULL;
    }
    ap_pipeline_run_fut f;
    ap_pipeline_run_fut_init(&f, &pw, 64);
    ap_block_on(&f.base); /* returns once its input is closed and drained */
    w->st = ap_pipeline_run_status(&f);
    return NULL;
}

struct producer { pthread_t th; u64 first; int err; };
static void *produce(void *arg)
{
    struct producer *p = arg;
    for (u64 v = p->first; v <= n_max; v += NPROD) {
        if (ap_life_enter(&life) != AP_OK) { p->err = 1; return NULL; } /* stopped early */
        ap_status st = ap_pipeline_push_wait(&pipe_, &v, AP_DEADLINE_NONE);
        ap_life_leave(&life);
        if (st != AP_OK) { p->err = 1; return NULL; }
    }
    return NULL;
}

struct consumer { pthread_t th; u64 items, sum; ap_status st; };
static void *consume(void *arg)
{
    struct consumer *c = arg;
    u64 v;
    while ((c->st = ap_pipeline_pop_wait(&pipe_, &v, AP_DEADLINE_NONE)) == AP_OK)
        c->items++, c->sum += v;
    return NULL; /* AP_CLOSED: everything that entered came out or was counted */
}

int main(int argc, char **argv)
{
    char *end;
    if (argc != 2 || argv[1][0] == '-' || (n_max = strtoull(argv[1], &end, 10), *end != '\0')) {
        fprintf(stderr, "usage: %s N\n", argv[0]);
        return 2;
    }
    ap_pipeline_fn fns[3] = {square, keep_even, plus_one};
    ap_pipeline_stage_desc sd[3];
    for (int i = 0; i < 3; i++)
        sd[i] = (ap_pipeline_stage_desc){.fn = fns[i], .out_size = sizeof(u64),
                                         .capacity = CAP, .buf = qs[i], .bytes = sizeof qs[i]};
    ap_pipeline_desc d = {.in_size = sizeof(u64), .in_capacity = CAP, .in_buf = qin,
                          .in_bytes = sizeof qin, .stages = sd, .nstages = 3};
    if (ap_pipeline_init(&pipe_, stages, sizeof stages, &d) != AP_OK) /* each memory with its size */
        return 1;
    if (ap_life_start(&life) != AP_OK || ap_life_started(&life, true) != AP_OK)
        return 1;
    struct worker w[3];
    for (size_t i = 0; i < 3; i++) {
        w[i] = (struct worker){.stage = i};
        pthread_create(&w[i].th, NULL, run_stage, &w[i]);
    }
    struct consumer c = {0};
    pthread_create(&c.th, NULL, consume, &c);
    struct producer p[NPROD];
    for (int i = 0; i < NPROD; i++) {
        p[i] = (struct producer){.first = (u64)i + 1};
        pthread_create(&p[i].th, NULL, produce, &p[i]);
    }
    int err = 0;
    for (int i = 0; i < NPROD; i++) {
        pthread_join(p[i].th, NULL);
        err |= p[i].err;
    }
    /* shutdown: no new pushes, wait until nobody is inside, then close the
     * pipeline (it drains stage by stage) and collect everybody */
    if (ap_life_stop(&life) != AP_OK ||
        ap_life_wait(&life, AP_LIFE_EVENT_DRAINED, AP_DEADLINE_NONE) != AP_OK)
        return 1;
    ap_pipeline_close(&pipe_);
    pthread_join(c.th, NULL);
    for (int i = 0; i < 3; i++) {
        pthread_join(w[i].th, NULL);
        err |= w[i].st != AP_OK;
    }
    if (ap_life_terminated(&life) != AP_OK || c.st != AP_CLOSED)
        return 1;
    ap_pipeline_stats st1;
    u64 filtered = 0;
    if (ap_pipeline_stats_get(&pipe_, 1, &st1) == AP_OK)
        filtered = st1.filtered;
    printf("items %llu sum %llu filtered %llu\n", c.items, c.sum, filtered);
    for (size_t i = 0; i < 3; i++) { /* failures: counted, the last one's pair kept */
        ap_pipeline_stats s;
        if (ap_pipeline_stats_get(&pipe_, i, &s) == AP_OK && s.failed != 0) {
            fprintf(stderr, "stage %zu: %llu failed, last %s (app_error %d)\n", i,
                    (u64)s.failed, ap_status_str(s.last_error), s.last_app_error);
            err = 1;
        }
    }
    ap_pipeline_fini(&pipe_);
    return err;
}
