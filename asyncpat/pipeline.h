/*
 * asyncpat/pipeline.h -- stages connected by bounded queues
 *
 * PATTERN
 *   A pipeline of k stages. Stage i applies a user function
 *
 *       ap_status fn(void *ctx, const void *in, void *out, int *app_error)
 *
 *   to each element of its input queue and pushes the result to its output
 *   queue, which is the input of stage i + 1. The input of stage 0 is the
 *   pipeline's input (ap_pipeline_try_push / push futures); the output of
 *   stage k - 1 is its output (ap_pipeline_try_pop / pop futures). A stage
 *   is 1 -> 0..1: fn returns AP_OK to emit *out, AP_FILTERED to filter the
 *   element out (counted, not an error), anything else to report a failure
 *   (the element is then consumed and counted, see COUNTERS).
 *
 * USAGE
 *   static ap_status parse(void *ctx, const void *in, void *out, int *app_error) {
 *       (void)ctx;
 *       int e = parse_req(in, out);          // your own code: 0 or an error
 *       if (e) { *app_error = e; return AP_INVAL; }   // fails the element
 *       return AP_OK;                                 // emits *out
 *   }
 *   static AP_ALIGNAS(64) unsigned char qin[AP_MPMC_BYTES(64, sizeof(req))],
 *                      q0[AP_MPMC_BYTES(64, sizeof(parsed))],
 *                      q1[AP_MPMC_BYTES(64, sizeof(resp))];
 *   ap_pipeline_stage_desc sd[2] = {
 *       {.fn = parse, .out_size = sizeof(parsed), .capacity = 64, .buf = q0, .bytes = sizeof q0},
 *       {.fn = handle, .out_size = sizeof(resp), .capacity = 64, .buf = q1, .bytes = sizeof q1}};
 *   ap_pipeline p; ap_pipeline_stage st[2];
 *   if (ap_pipeline_init(&p, st, sizeof st, &(ap_pipeline_desc){
 *           .in_size = sizeof(req), .in_capacity = 64, .in_buf = qin,
 *           .in_bytes = sizeof qin, .stages = sd, .nstages = 2}))
 *       abort();
 *   // one thread per stage:  ap_pipeline_worker w; req in; parsed out;
 *   //   ap_pipeline_worker_init(&w, &in, sizeof in, &out, sizeof out, &p, 0);
 *   //   ap_pipeline_run_fut f; ap_pipeline_run_fut_init(&f, &w, 0);
 *   //   ap_block_on(&f.base);        // returns after close + drain
 *   if (ap_pipeline_push_wait(&p, &r, AP_DEADLINE_NONE) != AP_OK) abort();  // producers
 *   ap_pipeline_close(&p);                             // no more input
 *   while (ap_pipeline_pop_wait(&p, &resp, AP_DEADLINE_NONE) == AP_OK) send(&resp);
 *   ap_pipeline_stats s;                 // failures: s.failed, and the last
 *   if (ap_pipeline_stats_get(&p, 0, &s) == AP_OK && s.failed)   // one's
 *       log_error(ap_status_str(s.last_error), s.last_app_error);       // pair
 *
 * GUARANTEES (invariants the tests check)
 *   - nothing is lost or duplicated: every element pushed with AP_OK is
 *     popped from the output exactly once, or counted exactly once as
 *     filtered or failed by exactly one stage (identities above)
 *   - FIFO end to end when every stage has one worker (and the input one
 *     producer, the output one consumer): a stage pops in order, applies
 *     in order and pushes in order, and each queue is FIFO per producer.
 *     With several workers in a stage, order across them is not kept.
 *   - throughput: with per-item service times S_i, one worker per stage
 *     and every buffer >= 1, the steady-state rate is exactly
 *     1 / max_i S_i (the slowest stage's rate); with deterministic times,
 *     a saturated input and a free output, item n leaves at exactly
 *     sum_i S_i + n * max_i S_i (tests/test_pipeline.c, a fake-clock
 *     discrete-event simulation over these data structures)
 *   - close drains: see CLOSE AND DRAIN
 *
 * STAGE FAILURES AND APPLICATION ERRORS
 *   Your own error code never has to be squeezed into an ap_status: fn may
 *   write it to *app_error (0 on entry; an HTTP status, an errno, a parse
 *   error of yours), and it travels beside the status. A failed element is
 *   one attempt of your code that failed, so it is reported as the status
 *   table's AP_EXHAUSTED ("every allowed attempt failed; the error beside
 *   it": a stage is never retried, one attempt is all it is allowed), never
 *   as AP_DROPPED (an overflow policy) nor as what fn returned, which could
 *   read as one of try_take's own answers (AP_EMPTY, AP_CLOSED, ...). Beside
 *   it, an ap_pipeline_fail holds fn's status (`error`, any value but AP_OK
 *   and AP_FILTERED, as fn returned it) and `app_error`:
 *     - ap_pipeline_try_take(w, &fail) returns AP_EXHAUSTED and fills fail
 *       for that element;
 *     - every failure is counted in its stage's `failed`, and the stage's
 *       stats keep the last one's pair (last_error, last_app_error: written
 *       together, one relaxed 64-bit store, so never torn), which is what
 *       run futures and stage_run, which go on past failures, leave you.
 *   *app_error is read only when fn fails (an emit or a filter ignores it).
 *
 *   It is built from the library's parts: every queue is an ap_mpmc in
 *   caller memory (mpmc.h), every wait is an mpmc push or pop future
 *   (waitlist.h's ap_waitop). ap_mpmc rather than ap_spsc because the
 *   input and output may be shared by many threads and a stage may have
 *   several workers; with one producer and one consumer it is FIFO.
 *
 *   The library owns no threads. The caller drives each stage with one or
 *   more workers (ap_pipeline_worker, caller memory, two scratch elements
 *   each), declared in the stage's desc (`workers`), in one of two ways:
 *     - a future per worker (ap_pipeline_run_fut): pops, applies, pushes,
 *       and waits on an empty input or a full output through the queues'
 *       futures; it completes when the stage's input is closed and drained.
 *       Poll it from any loop, or ap_block_on it on a thread of your own;
 *     - step calls: ap_pipeline_stage_run(w, max_items), or the two halves
 *       ap_pipeline_try_take (pop + fn) and ap_pipeline_try_emit (push the
 *       held output), e.g. for a simulation or a hand-written scheduler.
 *   A worker whose output queue is full keeps the finished element
 *   ("holding") and pushes it first on its next step: nothing is dropped
 *   under backpressure.
 *
 * CLOSE AND DRAIN
 *   ap_pipeline_close closes the input queue. A worker that finds its
 *   stage's input closed and drained, holding nothing, is finished; the
 *   last of the stage's `workers` to finish closes the stage's output
 *   queue. So close propagates stage by stage behind the last element, and
 *   ap_pipeline_try_pop answers AP_CLOSED only once every element that
 *   entered has come out or been counted as filtered or failed.
 *
 * COUNTERS (ap_pipeline_stats_get, ap_pipeline_entered / _left)
 *   per stage: taken (popped from its input), emitted, filtered, failed
 *   (and the last failure: fn's status and app_error). At quiescence, for
 *   each stage:
 *       taken == emitted + filtered + failed + (1 per holding worker)
 *   and end to end:
 *       entered == left + sum(filtered + failed) + elements in queues
 *                  + holding workers
 *   After close and drain the last two terms are 0.
 *
 * CONCURRENCY
 *   operation                      who may call it
 *   try_push, push futures         any thread, any number at once
 *   try_pop, pop futures           any thread, any number at once
 *   close, stage_stats, entered    any thread, at any time after init
 *   try_take, try_emit, stage_run, one thread at a time PER WORKER (its
 *     a run future's poll/cancel     steps, or its one run future: the
 *                                    waker contract's "one poller at a
 *                                    time"); different workers, of the same
 *                                    stage or others, run concurrently
 *   worker_init                    any thread, before that worker runs
 *   init, fini                     nothing else may run
 *   Progress: what ap_mpmc gives (try_* never block; AP_AGAIN while a peer
 *   is between claiming and publishing a slot); fn runs with no lock held.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   O(1) per element per stage plus fn; memory = the queues
 *              (AP_MPMC_BYTES each) + k stage records + 2 scratch elements
 *              per worker.
 * MEMORY       all caller memory, each piece with its size in bytes: the
 *              input queue's buffer (in_buf, in_bytes) and one per stage
 *              (buf, bytes), at least AP_MPMC_BYTES(capacity, elem) each,
 *              aligned to AP_MPMC_ALIGN; the stage records (init's @stages,
 *              AP_PIPELINE_STAGES_BYTES(nstages), aligned to
 *              AP_PIPELINE_STAGES_ALIGN); the workers and their two scratch
 *              elements (worker_init's @in/@in_bytes, @out/@out_bytes: at
 *              least the stage's element sizes; the library needs no
 *              alignment: elements are copied with memcpy). NULL, short or
 *              misaligned memory is AP_INVAL with nothing changed.
 *              Nothing allocates.
 * ERRORS       AP_INVAL (bad desc or argument; nothing changed), AP_FULL,
 *              AP_EMPTY, AP_AGAIN (a peer is mid-slot in a queue: retry at
 *              once), AP_CLOSED, AP_FILTERED (try_take: fn filtered the
 *              element; counted in filtered), AP_EXHAUSTED (try_take: fn
 *              failed the element, its one attempt: consumed, counted in
 *              failed; fn's status and app_error beside it in the
 *              ap_pipeline_fail and the stage's last_error/last_app_error;
 *              see STAGE FAILURES); AP_NOT_READY as a pending run
 *              future's status. The pipeline never returns AP_DROPPED.
 * WAKE ORDER   what the queues do: FIFO among waiting futures.
 * CONFIG       AP_CACHELINE, AP_SPIN_LIMIT, AP_ASSERT
 * SEE ALSO     mpmc.h, tests/test_pipeline.c, tests/stress/stress_pipeline.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_PIPELINE_H
#define ASYNCPAT_PIPELINE_H

#include "core.h"
#include "future.h"
#include "waitlist.h"
#include "mpmc.h"

/**
 * ap_pipeline_fn - a stage function
 * @app_error: 0 on entry; fn may set it to its own error code when it
 *             fails the element (read only then)
 *
 * Returns AP_OK (emit *out), AP_FILTERED (filter the element out), or any
 * other status: the element failed (try_take's AP_EXHAUSTED, with this
 * status and *app_error beside it; see STAGE FAILURES).
 */
typedef ap_status (*ap_pipeline_fn)(void *ctx, const void *in, void *out, int *app_error);

/** ap_pipeline_fail - a failed element's report, beside AP_EXHAUSTED */
typedef struct ap_pipeline_fail {
    ap_status error; /* what fn returned (neither AP_OK nor AP_FILTERED) */
    int app_error;   /* what fn wrote to *app_error (0: nothing) */
} ap_pipeline_fail;

typedef struct ap_pipeline_stage_desc {
    ap_pipeline_fn fn; /* required */
    void *ctx;         /* passed to fn (default: NULL) */
    size_t out_size;   /* bytes of one output element (required) */
    size_t capacity;   /* items the output queue holds (required, >= 1) */
    void *buf;         /* the output queue's buffer, aligned to
                          AP_MPMC_ALIGN (required) */
    size_t bytes;      /* its size: >= AP_MPMC_BYTES(capacity, out_size)
                          (required) */
    unsigned workers;  /* workers that will drive this stage (default: 1) */
} ap_pipeline_stage_desc;

typedef struct ap_pipeline_desc {
    size_t in_size;     /* bytes of one input element (required) */
    size_t in_capacity; /* items the input queue holds (required, >= 1) */
    void *in_buf;       /* the input queue's buffer, aligned to AP_MPMC_ALIGN
                           (required) */
    size_t in_bytes;    /* its size: >= AP_MPMC_BYTES(in_capacity, in_size)
                           (required) */
    const ap_pipeline_stage_desc *stages; /* nstages descs (required) */
    size_t nstages;     /* >= 1 (required) */
} ap_pipeline_desc;

/** ap_pipeline_stage - one stage's record (caller memory; set up by init) */
typedef struct ap_pipeline_stage {
    ap_mpmc out; /* this stage's output = the next stage's input */
    ap_pipeline_fn fn;
    void *ctx;
    size_t in_size, out_size;
    unsigned workers;
    AP_ATOMIC_T(unsigned) attached; /* workers initialised so far */
    AP_ATOMIC_T(unsigned) finished; /* workers that saw the input drained */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) taken;
    AP_ATOMIC_T(uint64_t) emitted, filtered, failed;
    /* the last failure: fn's status in the high 32 bits, its app_error in
     * the low 32 (one store, so the pair is never torn); 0 if none */
    AP_ATOMIC_T(uint64_t) last_failure;
} ap_pipeline_stage;

typedef struct ap_pipeline {
    ap_mpmc in;
    ap_pipeline_stage *stages;
    size_t nstages;
    ap_mpmc *out; /* &stages[nstages - 1].out */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) entered;
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) left;
} ap_pipeline;

/** snapshot of one stage's counters (relaxed reads; exact at quiescence) */
typedef struct ap_pipeline_stats {
    uint64_t taken, emitted, filtered, failed;
    ap_status last_error; /* fn's status in its last failure; AP_OK if fn
                             never failed */
    size_t queued;        /* elements in the stage's output queue */
    unsigned workers, finished;
    int last_app_error;   /* the app_error fn set in that same failure (0:
                             none, or no failure) */
} ap_pipeline_stats;

/** ap_pipeline_worker - one driver of one stage (caller memory) */
typedef struct ap_pipeline_worker {
    ap_pipeline_stage *st;
    ap_mpmc *inq;
    void *in, *out; /* caller scratch: one input and one output element */
    uint32_t state; /* AP__PIPELINE_W_* */
} ap_pipeline_worker;

/** ap_pipeline_run_fut - a future that runs a worker until its stage drains */
typedef struct ap_pipeline_run_fut {
    ap_future base; /* first: (ap_future *)f is the future */
    ap_pipeline_worker *w;
    size_t budget;  /* items per poll before yielding to the caller's loop */
    uint32_t sub;   /* which queue future is active: AP__PIPELINE_SUB_* */
    ap_status status;
    ap_mpmc_pop_fut pop;
    ap_mpmc_push_fut push;
} ap_pipeline_run_fut;

typedef struct ap_pipeline_push_fut { ap_future base; ap_waitop op; } ap_pipeline_push_fut;
typedef struct ap_pipeline_pop_fut { ap_future base; ap_waitop op; } ap_pipeline_pop_fut;

/** AP_PIPELINE_STAGES_BYTES - least bytes of the stage records for
 *  @nstages stages (constant expression; an array ap_pipeline_stage
 *  st[nstages] has them) */
#define AP_PIPELINE_STAGES_BYTES(nstages) ((size_t)(nstages) * sizeof(ap_pipeline_stage))
/** AP_PIPELINE_STAGES_ALIGN - the alignment ap_pipeline_init needs of the
 *  stage records */
#define AP_PIPELINE_STAGES_ALIGN ((size_t)AP_ALIGNOF(ap_pipeline_stage))

/**
 * ap_pipeline_init - set up a pipeline in caller memory
 * @p:            the pipeline
 * @stages:       d->nstages records, caller memory (they hold the queues),
 *                aligned to AP_PIPELINE_STAGES_ALIGN
 * @stages_bytes: the size of @stages: at least
 *                AP_PIPELINE_STAGES_BYTES(d->nstages) (sizeof an array)
 * @d:            the input queue and one desc per stage, each queue buffer
 *                with its size
 *
 * Returns AP_OK, or AP_INVAL (d or stages NULL, no stages; @stages
 * misaligned or @stages_bytes too small; a size, capacity, buffer or fn
 * missing; a queue buffer smaller than AP_MPMC_BYTES or not aligned to
 * AP_MPMC_ALIGN; sizes that overflow). On AP_INVAL nothing is written: not
 * *p, the records or any buffer. Stage i's input element is stage i-1's
 * out_size bytes (stage 0's: in_size).
 */
AP_API AP_NODISCARD ap_status ap_pipeline_init(ap_pipeline *p, ap_pipeline_stage *stages,
                                               size_t stages_bytes, const ap_pipeline_desc *d);
/** ap_pipeline_fini - end of life; frees nothing */
AP_API void ap_pipeline_fini(ap_pipeline *p);

/**
 * ap_pipeline_worker_init - attach a worker to stage @stage
 * @w:         the worker
 * @in:        scratch for one input element of the stage
 * @in_bytes:  the size of @in: at least the stage's input element size
 *             (in_size for stage 0, else the previous stage's out_size)
 * @out:       scratch for one output element
 * @out_bytes: the size of @out: at least the stage's out_size
 * @p:         the pipeline
 * @stage:     which stage (< nstages)
 *
 * The scratch needs no alignment of the library (elements are copied with
 * memcpy); fn sees them at @in and @out, so align them for fn's types.
 * Returns AP_OK, or AP_INVAL (stage out of range, scratch NULL or smaller
 * than the element, or the stage already has its `workers` workers); on
 * AP_INVAL nothing changes.
 * Concurrency: any thread; the worker is then driven by one thread at a time.
 */
AP_API AP_NODISCARD ap_status ap_pipeline_worker_init(ap_pipeline_worker *w, void *in,
                                                      size_t in_bytes, void *out,
                                                      size_t out_bytes, ap_pipeline *p,
                                                      size_t stage);
/** ap_pipeline_worker_holding - whether @w holds an output not yet pushed */
AP_API bool ap_pipeline_worker_holding(const ap_pipeline_worker *w);
/** ap_pipeline_worker_finished - whether @w saw its input closed and drained */
AP_API bool ap_pipeline_worker_finished(const ap_pipeline_worker *w);

/**
 * ap_pipeline_try_take - pop one input element and apply fn to it
 * @fail: NULL, or receives fn's status and app_error when fn failed the
 *        element (AP_EXHAUSTED); untouched otherwise
 *
 * Returns AP_OK (fn emitted: the output is held, push it with
 * ap_pipeline_try_emit), AP_FILTERED (fn filtered the element: consumed
 * and counted in filtered), AP_EXHAUSTED (fn failed the element: consumed,
 * counted in failed, *@fail says how), AP_FULL (an output is still held:
 * emit first; nothing popped), AP_EMPTY, AP_AGAIN (see ap_mpmc_try_pop),
 * or AP_CLOSED (the input is closed and drained: the worker is finished,
 * and the last of its stage to finish has closed the stage's output).
 * Whatever fn returns, these keep their meaning: a failure is always
 * AP_EXHAUSTED, never fn's status in place of try_take's own.
 */
AP_API AP_NODISCARD ap_status ap_pipeline_try_take(ap_pipeline_worker *w,
                                                   ap_pipeline_fail *fail);
/**
 * ap_pipeline_try_emit - push the held output to the stage's output queue
 *
 * Returns AP_OK, AP_FULL or AP_AGAIN (still held), or AP_EMPTY (nothing held).
 */
AP_API AP_NODISCARD ap_status ap_pipeline_try_emit(ap_pipeline_worker *w);
/**
 * ap_pipeline_stage_run - emit what is held, then take and emit up to
 *                         @max_items elements (0: only emit what is held)
 * @done: if not NULL, receives the number of input elements taken
 *
 * Returns AP_OK (max_items taken, nothing held), or the status that stopped
 * it: AP_FULL (output full; an output may be held), AP_EMPTY, AP_AGAIN,
 * AP_CLOSED (finished, as in try_take). Filtered and failed elements count
 * as taken and do not stop it (failures: the stage's stats). Never blocks.
 */
AP_API AP_NODISCARD ap_status ap_pipeline_stage_run(ap_pipeline_worker *w, size_t max_items,
                                                    size_t *done);

/**
 * ap_pipeline_run_fut_init / _poll / _cancel / _status - a future that
 * drives @w: take, apply, emit, waiting on an empty input or a full output
 * through the queues' futures, until the input is closed and drained.
 * @budget: elements per poll before it yields (wakes itself and returns
 *          AP_PENDING, so one busy stage does not starve a loop); 0 = 64
 * Result: AP_OK (finished), or AP_CANCELED; failed elements do not stop it
 * (see the stage's stats: failed, last_error, last_app_error). A cancel
 * loses nothing: a held output stays in @w, and a new run future (or step
 * calls) continues.
 */
AP_API void ap_pipeline_run_fut_init(ap_pipeline_run_fut *f, ap_pipeline_worker *w,
                                     size_t budget);
AP_API ap_poll ap_pipeline_run_poll(ap_pipeline_run_fut *f, ap_cx *cx);
AP_API void ap_pipeline_run_cancel(ap_pipeline_run_fut *f);
/** result of a run future: AP_NOT_READY while pending, then AP_OK or AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_pipeline_run_status(const ap_pipeline_run_fut *f);

/**
 * ap_pipeline_try_push - offer one element to the pipeline's input
 * Returns AP_OK (counted in entered), AP_FULL, AP_AGAIN or AP_CLOSED (the
 * element stays with the caller). Concurrency: any thread.
 */
AP_API AP_NODISCARD ap_status ap_pipeline_try_push(ap_pipeline *p, const void *elem);
/**
 * ap_pipeline_try_pop - take one element from the pipeline's output
 * Returns AP_OK (counted in left), AP_EMPTY, AP_AGAIN, or AP_CLOSED once
 * closed and every stage drained. @out is untouched unless AP_OK.
 */
AP_API AP_NODISCARD ap_status ap_pipeline_try_pop(ap_pipeline *p, void *out);
/** ap_pipeline_close - no more input; propagates stage by stage; idempotent */
AP_API void ap_pipeline_close(ap_pipeline *p);

/**
 * ap_pipeline_push_fut_init / _poll / _cancel / _status / ap_pipeline_push_wait:
 * push futures on the input, ap_pipeline_pop_*: pop futures on the output,
 * with the semantics of the ap_mpmc futures (mpmc.h); successes are counted.
 * The pipeline takes no `now` anywhere, so the _wait deadlines are on
 * ap_now_ns()'s clock (time.h, CLOCKS; ap_block_on_until_clock for another).
 */
AP_API void ap_pipeline_push_fut_init(ap_pipeline_push_fut *f, ap_pipeline *p, const void *elem);
AP_API ap_poll ap_pipeline_push_poll(ap_pipeline_push_fut *f, ap_cx *cx);
AP_API void ap_pipeline_push_cancel(ap_pipeline_push_fut *f);
AP_API AP_NODISCARD ap_status ap_pipeline_push_status(const ap_pipeline_push_fut *f);
AP_API AP_NODISCARD ap_status ap_pipeline_push_wait(ap_pipeline *p, const void *elem,
                                                    ap_deadline deadline_ns);
AP_API void ap_pipeline_pop_fut_init(ap_pipeline_pop_fut *f, ap_pipeline *p, void *out);
AP_API ap_poll ap_pipeline_pop_poll(ap_pipeline_pop_fut *f, ap_cx *cx);
AP_API void ap_pipeline_pop_cancel(ap_pipeline_pop_fut *f);
AP_API AP_NODISCARD ap_status ap_pipeline_pop_status(const ap_pipeline_pop_fut *f);
AP_API AP_NODISCARD ap_status ap_pipeline_pop_wait(ap_pipeline *p, void *out,
                                                   ap_deadline deadline_ns);

/**
 * ap_pipeline_stats_get - snapshot of stage @stage's counters
 * Returns AP_OK, or AP_INVAL (stage out of range; *out untouched).
 */
AP_API AP_NODISCARD ap_status ap_pipeline_stats_get(ap_pipeline *p, size_t stage,
                                                      ap_pipeline_stats *out);
/** ap_pipeline_entered / ap_pipeline_left - elements pushed in / popped out */
AP_API uint64_t ap_pipeline_entered(ap_pipeline *p);
AP_API uint64_t ap_pipeline_left(ap_pipeline *p);
/** ap_pipeline_nstages - the number of stages */
AP_API size_t ap_pipeline_nstages(const ap_pipeline *p);

/* ---- implementation ---- */

/*
 * ORDERING
 *   The queue's push -> pop release/acquire pairs (mpmc.h) order each
 *   element: the writes of stage i's fn into *out happen-before stage
 *   i + 1's fn reads it, and the last stage's writes happen-before the
 *   pop that returns it. A worker's pushes happen-before its finishing
 *   increment (release), and the last finisher's increment (acq_rel)
 *   happens-before it closes the output, so a close never overtakes an
 *   element. Counters are relaxed statistics (exact at quiescence).
 */

enum {
    AP__PIPELINE_W_IDLE = 0, /* nothing held */
    AP__PIPELINE_W_HOLDING,  /* *out holds an element to push */
    AP__PIPELINE_W_DONE      /* input closed and drained; counted in finished */
};

enum { AP__PIPELINE_SUB_NONE = 0, AP__PIPELINE_SUB_POP, AP__PIPELINE_SUB_PUSH };

#define AP__PIPELINE_BUDGET 64

/* The limits ap_mpmc_init enforces (mpmc.h), checked up front so that a
 * bad stage late in the desc leaves every queue untouched. */
AP_API bool ap__pipeline_queue_ok(size_t capacity, size_t elem_size, const void *buf,
                                  size_t bytes)
{
    size_t need;
    return capacity != 0 && elem_size != 0 && buf != NULL &&
           (uintptr_t)buf % AP_MPMC_ALIGN == 0 &&
           capacity <= AP__MPMC_CAP_LIMIT && elem_size <= SIZE_MAX / 2 &&
           ap__size_muladd(capacity, AP_MPMC_STRIDE(elem_size), 0, &need) && bytes >= need;
}

AP_API ap_status ap_pipeline_init(ap_pipeline *p, ap_pipeline_stage *stages,
                                  size_t stages_bytes, const ap_pipeline_desc *d)
{
    size_t need;
    AP_ASSERT(p != NULL);
    /* every check before the first write (issue #11): AP_INVAL touches
     * nothing, and a short buffer is never written past */
    if (d == NULL || stages == NULL || d->stages == NULL || d->nstages == 0 ||
        (uintptr_t)stages % AP_PIPELINE_STAGES_ALIGN != 0 ||
        !ap__size_muladd(d->nstages, sizeof(ap_pipeline_stage), 0, &need) ||
        stages_bytes < need ||
        !ap__pipeline_queue_ok(d->in_capacity, d->in_size, d->in_buf, d->in_bytes))
        return AP_INVAL;
    for (size_t i = 0; i < d->nstages; i++) {
        const ap_pipeline_stage_desc *sd = &d->stages[i];
        if (sd->fn == NULL ||
            !ap__pipeline_queue_ok(sd->capacity, sd->out_size, sd->buf, sd->bytes))
            return AP_INVAL;
    }
    ap_status st = ap_mpmc_init(&p->in, d->in_buf, d->in_bytes, d->in_capacity, d->in_size);
    AP_ASSERT(st == AP_OK); /* validated above */
    for (size_t i = 0; i < d->nstages; i++) {
        const ap_pipeline_stage_desc *sd = &d->stages[i];
        ap_pipeline_stage *s = &stages[i];
        st = ap_mpmc_init(&s->out, sd->buf, sd->bytes, sd->capacity, sd->out_size);
        AP_ASSERT(st == AP_OK);
        s->fn = sd->fn;
        s->ctx = sd->ctx;
        s->in_size = i == 0 ? d->in_size : d->stages[i - 1].out_size;
        s->out_size = sd->out_size;
        s->workers = sd->workers ? sd->workers : 1u;
        AP_ATOMIC_INIT(&s->attached, 0u);
        AP_ATOMIC_INIT(&s->finished, 0u);
        AP_ATOMIC_INIT(&s->taken, 0u);
        AP_ATOMIC_INIT(&s->emitted, 0u);
        AP_ATOMIC_INIT(&s->filtered, 0u);
        AP_ATOMIC_INIT(&s->failed, 0u);
        AP_ATOMIC_INIT(&s->last_failure, (uint64_t)0);
    }
    (void)st;
    p->stages = stages;
    p->nstages = d->nstages;
    p->out = &stages[d->nstages - 1].out;
    AP_ATOMIC_INIT(&p->entered, 0u);
    AP_ATOMIC_INIT(&p->left, 0u);
    return AP_OK;
}

AP_API void ap_pipeline_fini(ap_pipeline *p)
{
    AP_ASSERT(p != NULL && p->stages != NULL);
    for (size_t i = 0; i < p->nstages; i++)
        ap_mpmc_fini(&p->stages[i].out);
    ap_mpmc_fini(&p->in);
    p->stages = NULL;
}

AP_API ap_status ap_pipeline_worker_init(ap_pipeline_worker *w, void *in, size_t in_bytes,
                                         void *out, size_t out_bytes, ap_pipeline *p,
                                         size_t stage)
{
    AP_ASSERT(w != NULL && p != NULL && p->stages != NULL);
    if (stage >= p->nstages || in == NULL || out == NULL)
        return AP_INVAL;
    ap_pipeline_stage *s = &p->stages[stage];
    if (in_bytes < s->in_size || out_bytes < s->out_size)
        return AP_INVAL;
    unsigned n = AP_ATOMIC_LOAD(&s->attached, memory_order_relaxed);
    do {
        if (n >= s->workers)
            return AP_INVAL;
        /* relaxed: a count; the worker touches nothing shared until it
         * runs, and the queues order everything it does then. */
    } while (!AP_ATOMIC_CAS_WEAK(&s->attached, &n, n + 1, memory_order_relaxed,
                                 memory_order_relaxed));
    w->st = s;
    w->inq = stage == 0 ? &p->in : &p->stages[stage - 1].out;
    w->in = in;
    w->out = out;
    w->state = AP__PIPELINE_W_IDLE;
    return AP_OK;
}

AP_API bool ap_pipeline_worker_holding(const ap_pipeline_worker *w)
{
    return w->state == AP__PIPELINE_W_HOLDING;
}

AP_API bool ap_pipeline_worker_finished(const ap_pipeline_worker *w)
{
    return w->state == AP__PIPELINE_W_DONE;
}

/* An element was popped into w->in: apply fn, count the outcome; a failure
 * is AP_EXHAUSTED with fn's status and app_error in *fail (if not NULL). */
AP_API ap_status ap__pipeline_apply(ap_pipeline_worker *w, ap_pipeline_fail *fail)
{
    ap_pipeline_stage *s = w->st;
    int app_error = 0;
    /* relaxed: statistics; the element itself is ordered by the queues. */
    AP_ATOMIC_FETCH_ADD(&s->taken, 1u, memory_order_relaxed);
    ap_status r = s->fn(s->ctx, w->in, w->out, &app_error);
    if (r == AP_OK) {
        w->state = AP__PIPELINE_W_HOLDING;
        return AP_OK;
    }
    if (r == AP_FILTERED) {
        AP_ATOMIC_FETCH_ADD(&s->filtered, 1u, memory_order_relaxed);
        return AP_FILTERED;
    }
    /* relaxed: statistics; the pair in one store, so a reader never sees
     * one failure's status with another's app_error. */
    AP_ATOMIC_STORE(&s->last_failure,
                    (uint64_t)(uint32_t)r << 32 | (uint64_t)(uint32_t)app_error,
                    memory_order_relaxed);
    AP_ATOMIC_FETCH_ADD(&s->failed, 1u, memory_order_relaxed);
    if (fail) {
        fail->error = r;
        fail->app_error = app_error;
    }
    return AP_EXHAUSTED;
}

/* The input is closed and drained and nothing is held: this worker is done;
 * the stage's last one closes the output behind every element. */
AP_API void ap__pipeline_finish(ap_pipeline_worker *w)
{
    ap_pipeline_stage *s = w->st;
    w->state = AP__PIPELINE_W_DONE;
    /* acq_rel: the release publishes this worker's pushes; the last
     * finisher's acquire sees every other worker's, so its close below is
     * ordered after all of them (pairs with the same RMW in each worker). */
    if (AP_ATOMIC_FETCH_ADD(&s->finished, 1u, memory_order_acq_rel) + 1u == s->workers)
        ap_mpmc_close(&s->out);
}

AP_API void ap__pipeline_emitted(ap_pipeline_worker *w)
{
    w->state = AP__PIPELINE_W_IDLE;
    AP_ATOMIC_FETCH_ADD(&w->st->emitted, 1u, memory_order_relaxed);
}

AP_API ap_status ap_pipeline_try_take(ap_pipeline_worker *w, ap_pipeline_fail *fail)
{
    AP_ASSERT(w != NULL && w->st != NULL);
    if (w->state == AP__PIPELINE_W_DONE)
        return AP_CLOSED;
    if (w->state == AP__PIPELINE_W_HOLDING)
        return AP_FULL;
    ap_status st = ap_mpmc_try_pop(w->inq, w->in);
    if (st == AP_OK)
        return ap__pipeline_apply(w, fail);
    if (st == AP_CLOSED)
        ap__pipeline_finish(w);
    return st;
}

AP_API ap_status ap_pipeline_try_emit(ap_pipeline_worker *w)
{
    AP_ASSERT(w != NULL && w->st != NULL);
    if (w->state != AP__PIPELINE_W_HOLDING)
        return AP_EMPTY;
    ap_status st = ap_mpmc_try_push(&w->st->out, w->out);
    /* Only this stage closes its output, after all its workers finished
     * holding nothing, so a held element never meets a closed queue. */
    AP_ASSERT(st != AP_CLOSED);
    if (st == AP_OK)
        ap__pipeline_emitted(w);
    return st;
}

AP_API ap_status ap_pipeline_stage_run(ap_pipeline_worker *w, size_t max_items, size_t *done)
{
    size_t n = 0;
    ap_status st = AP_OK;
    for (;;) {
        if (w->state == AP__PIPELINE_W_HOLDING && (st = ap_pipeline_try_emit(w)) != AP_OK)
            break;
        if (n == max_items) {
            st = AP_OK;
            break;
        }
        st = ap_pipeline_try_take(w, NULL);
        if (st != AP_OK && st != AP_FILTERED && st != AP_EXHAUSTED)
            break;
        n++;
    }
    if (done)
        *done = n;
    return st;
}

AP__FUTURE_VTABLE(ap__pipeline_run, ap_pipeline_run_fut, ap_pipeline_run_poll,
                  ap_pipeline_run_cancel)

AP_API void ap_pipeline_run_fut_init(ap_pipeline_run_fut *f, ap_pipeline_worker *w,
                                     size_t budget)
{
    AP_ASSERT(f != NULL && w != NULL && w->st != NULL);
    f->base.poll = ap__pipeline_run_poll_v;
    f->base.cancel = ap__pipeline_run_cancel_v;
    f->w = w;
    f->budget = budget ? budget : AP__PIPELINE_BUDGET;
    f->sub = AP__PIPELINE_SUB_NONE;
    f->status = AP_NOT_READY;
}

AP_API ap_poll ap_pipeline_run_poll(ap_pipeline_run_fut *f, ap_cx *cx)
{
    if (f->status != AP_NOT_READY)
        return AP_READY; /* finished or cancelled earlier */
    ap_pipeline_worker *w = f->w;
    size_t n = 0;
    for (;;) {
        if (w->state == AP__PIPELINE_W_DONE) {
            f->status = AP_OK;
            return AP_READY;
        }
        if (w->state == AP__PIPELINE_W_HOLDING) {
            if (f->sub == AP__PIPELINE_SUB_NONE) {
                ap_mpmc_push_fut_init(&f->push, &w->st->out, w->out);
                f->sub = AP__PIPELINE_SUB_PUSH;
            }
            if (ap_mpmc_push_poll(&f->push, cx) == AP_PENDING)
                return AP_PENDING; /* woken by a pop downstream */
            f->sub = AP__PIPELINE_SUB_NONE;
            ap_status st = ap_mpmc_push_status(&f->push);
            AP_ASSERT(st == AP_OK); /* see ap_pipeline_try_emit */
            (void)st;
            ap__pipeline_emitted(w);
            continue;
        }
        if (n >= f->budget) {
            /* Yield to the caller's loop, and ask to run again at once. */
            ap_waker_wake(cx->waker);
            return AP_PENDING;
        }
        if (f->sub == AP__PIPELINE_SUB_NONE) {
            ap_mpmc_pop_fut_init(&f->pop, w->inq, w->in);
            f->sub = AP__PIPELINE_SUB_POP;
        }
        if (ap_mpmc_pop_poll(&f->pop, cx) == AP_PENDING)
            return AP_PENDING; /* woken by a push upstream or by close */
        f->sub = AP__PIPELINE_SUB_NONE;
        ap_status st = ap_mpmc_pop_status(&f->pop);
        if (st == AP_CLOSED) {
            ap__pipeline_finish(w);
            continue;
        }
        AP_ASSERT(st == AP_OK);
        (void)ap__pipeline_apply(w, NULL);
        n++;
    }
}

AP_API void ap_pipeline_run_cancel(ap_pipeline_run_fut *f)
{
    /* The queue futures' cancels are idempotent and pass on a wake they
     * received; a cancelled pop took nothing, a cancelled push left the
     * element in w->out (still held). */
    if (f->sub == AP__PIPELINE_SUB_POP)
        ap_mpmc_pop_cancel(&f->pop);
    else if (f->sub == AP__PIPELINE_SUB_PUSH)
        ap_mpmc_push_cancel(&f->push);
    f->sub = AP__PIPELINE_SUB_NONE;
    if (f->status == AP_NOT_READY)
        f->status = AP_CANCELED;
}

AP_API ap_status ap_pipeline_run_status(const ap_pipeline_run_fut *f)
{
    return f->status;
}

AP_API ap_status ap_pipeline_try_push(ap_pipeline *p, const void *elem)
{
    AP_ASSERT(p != NULL && p->stages != NULL);
    ap_status st = ap_mpmc_try_push(&p->in, elem);
    if (st == AP_OK) /* relaxed: statistics */
        AP_ATOMIC_FETCH_ADD(&p->entered, 1u, memory_order_relaxed);
    return st;
}

AP_API ap_status ap_pipeline_try_pop(ap_pipeline *p, void *out)
{
    AP_ASSERT(p != NULL && p->stages != NULL);
    ap_status st = ap_mpmc_try_pop(p->out, out);
    if (st == AP_OK) /* relaxed: statistics */
        AP_ATOMIC_FETCH_ADD(&p->left, 1u, memory_order_relaxed);
    return st;
}

AP_API void ap_pipeline_close(ap_pipeline *p)
{
    AP_ASSERT(p != NULL && p->stages != NULL);
    ap_mpmc_close(&p->in);
}

AP_API ap_status ap__pipeline_try_push_v(void *p, void *elem)
{
    return ap_pipeline_try_push((ap_pipeline *)p, elem);
}

AP_API ap_status ap__pipeline_try_pop_v(void *p, void *out)
{
    return ap_pipeline_try_pop((ap_pipeline *)p, out);
}

AP__WAITOP_FUTURE(ap_pipeline_push, ap_pipeline_push_fut, ap_pipeline, in.not_full,
                  ap__pipeline_try_push_v, const void *)
AP__WAITOP_FUTURE(ap_pipeline_pop, ap_pipeline_pop_fut, ap_pipeline, out->not_empty,
                  ap__pipeline_try_pop_v, void *)

AP_API ap_status ap_pipeline_stats_get(ap_pipeline *p, size_t stage, ap_pipeline_stats *out)
{
    AP_ASSERT(p != NULL && p->stages != NULL && out != NULL);
    if (stage >= p->nstages)
        return AP_INVAL;
    ap_pipeline_stage *s = &p->stages[stage];
    out->taken = AP_ATOMIC_LOAD(&s->taken, memory_order_relaxed);
    out->emitted = AP_ATOMIC_LOAD(&s->emitted, memory_order_relaxed);
    out->filtered = AP_ATOMIC_LOAD(&s->filtered, memory_order_relaxed);
    out->failed = AP_ATOMIC_LOAD(&s->failed, memory_order_relaxed);
    uint64_t lf = AP_ATOMIC_LOAD(&s->last_failure, memory_order_relaxed);
    out->last_error = (ap_status)(uint32_t)(lf >> 32);
    out->last_app_error = (int)(uint32_t)lf;
    out->queued = ap_mpmc_len(&s->out);
    out->workers = s->workers;
    out->finished = AP_ATOMIC_LOAD(&s->finished, memory_order_relaxed);
    return AP_OK;
}

AP_API uint64_t ap_pipeline_entered(ap_pipeline *p)
{
    return AP_ATOMIC_LOAD(&p->entered, memory_order_relaxed);
}

AP_API uint64_t ap_pipeline_left(ap_pipeline *p)
{
    return AP_ATOMIC_LOAD(&p->left, memory_order_relaxed);
}

AP_API size_t ap_pipeline_nstages(const ap_pipeline *p)
{
    return p->nstages;
}

#endif /* ASYNCPAT_PIPELINE_H */
