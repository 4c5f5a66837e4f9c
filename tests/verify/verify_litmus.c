/*
 * verify_litmus.c -- the scheduler's memory models against litmus tests
 *
 * Each scenario is a classic two-thread litmus test on the scheduler's own
 * atomics (the AP_ATOMIC_* macros that vf.h takes over). Its final check
 * records whether the test's weak outcome occurred in some execution, and
 * main() then requires what the model must give: in x86-TSO mode (and so
 * SC) none of these weak outcomes; in C11 mode (VF_MODE=c11) exactly the
 * ones C11/RC11 allows within vf.h's bounds, and never a forbidden one.
 * A model that is too strong (misses an allowed outcome: the check-power of
 * the C11 mode) or too weak (gives a forbidden one: false alarms) fails:
 *
 *   2+2W       x=1; y=2  ||  y=1; x=2            final x==1, y==1
 *              allowed with relaxed and with release stores (nothing is
 *              read, so nothing synchronizes): x=2 goes before x=1 in mo,
 *              which execution order alone cannot give (an mo insertion);
 *              seq_cst forbids it, so the _sc variant must not show it.
 *   S          x=1; y=2 (rel?)  ||  r=y (acq?); x=2        r==2, final x==1
 *              allowed relaxed (x=2 goes before x=1 in mo); forbidden when
 *              y is release/acquire (x=1 happens-before x=2).
 *   S+RMW      x=1; y=1  ||  r=y; q=xchg(x,2)       r==1, q==0, final x==1
 *              an RMW placed before an earlier-executed store (it reads
 *              the initial 0 and x=1 follows it in mo); forbidden with
 *              release/acquire.
 *   RMW atom   fetch_add(x,1); y=1  ||  y; fetch_add(x,1)   final x==2
 *              always (two RMWs never read the same store).
 *   CoRW       x=1; y=1  ||  r=x; y; x=2             r==1 => final x==2
 *              (a store never goes before a store its thread read).
 * (RMW atom and CoRW read y so that thread 1 depends on thread 0's later
 * steps: vf.h offers an earlier mo place only then, see vf__choose_mo.)
 *
 * The thread bodies run no library code; the invariant is none.
 */
#include "vf.h"

typedef struct lst {
    AP_ATOMIC_T(uint64_t) x, y;
    uint64_t r, q; /* what thread 1 read (plain: no scheduling point) */
} lst;

/* per scenario: whether the weak outcome occurred, and whether any
 * execution violated an always-true property */
static bool lit_weak, lit_broken;
static int lit_rel; /* 0 relaxed, 1 release/acquire, 2 seq_cst */

static memory_order lit_st(void)
{
    return lit_rel == 2 ? memory_order_seq_cst
                        : lit_rel == 1 ? memory_order_release : memory_order_relaxed;
}
static memory_order lit_ld(void)
{
    return lit_rel == 2 ? memory_order_seq_cst
                        : lit_rel == 1 ? memory_order_acquire : memory_order_relaxed;
}

static void *lit_setup(void)
{
    lst *s = calloc(1, sizeof *s);
    VF_CHECK(s != NULL);
    AP_ATOMIC_INIT(&s->x, 0);
    AP_ATOMIC_INIT(&s->y, 0);
    return s;
}

static void lit_teardown(void *p) { free(p); }

static uint64_t fin(AP_ATOMIC_T(uint64_t) *a) { return atomic_load_explicit(a, memory_order_relaxed); }

/* 2+2W */
static void w22_thread(void *p, int id)
{
    lst *s = p;
    if (id == 0) {
        AP_ATOMIC_STORE(&s->x, 1, lit_st());
        AP_ATOMIC_STORE(&s->y, 2, lit_st());
    } else {
        AP_ATOMIC_STORE(&s->y, 1, lit_st());
        AP_ATOMIC_STORE(&s->x, 2, lit_st());
    }
}
static void w22_check(void *p)
{
    lst *s = p;
    lit_weak |= fin(&s->x) == 1 && fin(&s->y) == 1;
}

/* S */
static void s_thread(void *p, int id)
{
    lst *s = p;
    if (id == 0) {
        AP_ATOMIC_STORE(&s->x, 1, memory_order_relaxed);
        AP_ATOMIC_STORE(&s->y, 2, lit_st());
    } else {
        s->r = AP_ATOMIC_LOAD(&s->y, lit_ld());
        AP_ATOMIC_STORE(&s->x, 2, memory_order_relaxed);
    }
}
static void s_check(void *p)
{
    lst *s = p;
    lit_weak |= s->r == 2 && fin(&s->x) == 1;
}

/* S+RMW */
static void srmw_thread(void *p, int id)
{
    lst *s = p;
    if (id == 0) {
        AP_ATOMIC_STORE(&s->x, 1, memory_order_relaxed);
        AP_ATOMIC_STORE(&s->y, 1, lit_st());
    } else {
        s->r = AP_ATOMIC_LOAD(&s->y, lit_ld());
        s->q = AP_ATOMIC_EXCHANGE(&s->x, 2, memory_order_relaxed);
    }
}
static void srmw_check(void *p)
{
    lst *s = p;
    lit_weak |= s->r == 1 && s->q == 0 && fin(&s->x) == 1;
    /* the exchange read 0 or 1, and the value it did not leave is mo-last */
    lit_broken |= !(s->q == 0 || s->q == 1) || !(fin(&s->x) == 1 || fin(&s->x) == 2) ||
                  (s->q == 1 && fin(&s->x) != 2);
}

/* RMW atomicity (thread 1 reads y first, so it depends on thread 0's
 * steps and an earlier mo place would be offered if it were allowed) */
static void faa_thread(void *p, int id)
{
    lst *s = p;
    if (id == 0) {
        s->r = AP_ATOMIC_FETCH_ADD(&s->x, 1, memory_order_relaxed);
        AP_ATOMIC_STORE(&s->y, 1, memory_order_relaxed);
    } else {
        (void)AP_ATOMIC_LOAD(&s->y, memory_order_relaxed);
        s->q = AP_ATOMIC_FETCH_ADD(&s->x, 1, memory_order_relaxed);
    }
}
static void faa_check(void *p)
{
    lst *s = p;
    lit_broken |= fin(&s->x) != 2 || s->r == s->q;
}

/* CoRW (thread 1 also reads y, made after x=1, so it depends on steps
 * after x=1 and an earlier mo place would be offered if it were allowed) */
static void corw_thread(void *p, int id)
{
    lst *s = p;
    if (id == 0) {
        AP_ATOMIC_STORE(&s->x, 1, memory_order_relaxed);
        AP_ATOMIC_STORE(&s->y, 1, memory_order_relaxed);
    } else {
        s->r = AP_ATOMIC_LOAD(&s->x, memory_order_relaxed);
        (void)AP_ATOMIC_LOAD(&s->y, memory_order_relaxed);
        AP_ATOMIC_STORE(&s->x, 2, memory_order_relaxed);
    }
}
static void corw_check(void *p)
{
    lst *s = p;
    lit_broken |= s->r == 1 && fin(&s->x) != 2;
}

static int failures;

/* Run one litmus scenario; @c11_weak: whether C11 (within the bounds) must
 * show the weak outcome (TSO never may). */
static unsigned long lit(const char *name, int rel, void (*thread)(void *, int),
                         void (*check)(void *), bool c11_weak)
{
    vf_scenario sc = {.name = name, .nthreads = 2, .tso = true, .bound = 2,
                      .setup = lit_setup, .thread = thread, .check = check,
                      .teardown = lit_teardown};
    lit_rel = rel;
    lit_weak = lit_broken = false;
    unsigned long n = vf_explore(&sc);
    if (n == 0 || getenv("VF_REPLAY"))
        return n; /* filtered out, or one replayed schedule */
    const char *m = getenv("VF_MODE");
    bool c11 = m && strcmp(m, "c11") == 0, want = c11 && c11_weak;
    if (lit_broken || lit_weak != want) {
        printf("FAIL %s [%s]: %s\n", name, c11 ? "C11" : "TSO",
               lit_broken ? "an always-true property failed in some execution"
               : want     ? "the weak outcome, which C11 allows, never occurred"
                          : "the weak outcome, which this model forbids, occurred");
        failures++;
    }
    return n;
}

int main(void)
{
    unsigned long total = 0;
    total += lit("litmus_2+2w_relaxed_tso", 0, w22_thread, w22_check, true);
    total += lit("litmus_2+2w_relacq_tso", 1, w22_thread, w22_check, true);
    total += lit("litmus_2+2w_sc_tso", 2, w22_thread, w22_check, false);
    total += lit("litmus_s_relaxed_tso", 0, s_thread, s_check, true);
    total += lit("litmus_s_relacq_tso", 1, s_thread, s_check, false);
    total += lit("litmus_s_rmw_relaxed_tso", 0, srmw_thread, srmw_check, true);
    total += lit("litmus_s_rmw_relacq_tso", 1, srmw_thread, srmw_check, false);
    total += lit("litmus_rmw_atomic_tso", 0, faa_thread, faa_check, false);
    total += lit("litmus_corw_tso", 0, corw_thread, corw_check, false);
    printf("verify_litmus: %lu executions\n", total);
    return failures ? 1 : 0;
}
