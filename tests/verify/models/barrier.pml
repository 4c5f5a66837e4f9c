/*
 * barrier.pml -- asyncpat/barrier.h: one state word (gen, parties,
 * arrived), arrival by CAS, the leader running fn before it releases the
 * next generation, arrive_and_drop, waiting through the waiter list, and a
 * cancelled wait under the WITHDRAW policy.
 *
 * MODELLED (barrier.h)
 *   bar_arrive     ap__bar_arrive (:348): load; parties 0 -> INVAL; COMPLETE
 *                  -> wait for the release; CAS to arrived + 1 (wait) or
 *                  parties - 1 (drop); the arrival that makes the word
 *                  COMPLETE is the leader and runs ap__bar_release
 *   bar_release    ap__bar_release (:329): fn, then the seq_cst store of
 *                  (gen + 1, parties, 0), then has_waiters -> wake_all
 *   bar_wait       ap_barrier_wait_leader (:565) driving ap_barrier_wait_poll
 *                  (:488): outcome check, register, seq_cst re-check,
 *                  PENDING -> park; done -> ap_waitlist_cancel
 *   bar_cancel     ap_barrier_wait_cancel (:513), WITHDRAW policy: list
 *                  cancel, ap__bar_wait_released, outcome, CAS arrived - 1
 *   ap__bar_outcome (:293): distance of the generation, 0 -> waiting,
 *                  odd -> completed
 *   MUTANT_BAR_RELEASE_BEFORE_FN  model-only negative control (no AP_MUTANT
 *                  in the header): the leader stores the next generation
 *                  before running fn
 *
 * ABSTRACTED
 *   - the word is three variables always read and written together in one
 *     atomic step (it is one 64-bit atomic in the header); generations are
 *     small integers (no mod 2^23 wrap: at most NG generations happen).
 *   - BREAK policy, reset and the BROKEN bit are left out (resets would
 *     add generations by 2; with no reset, the distance is 0 or 1).
 *   - the bounded spin of ap_barrier_wait_leader before block_on is one
 *     outcome check; ap__backoff is a blocking wait for the word to change.
 *   - fn is a ghost counter (it must not call into the barrier).
 *   - memory model, lock, list and wakers: see waitlist.inc.
 *   - sizes: 3 parties. Parties 0 and 1 wait in generations 0 and 1;
 *     party 2 arrive_and_drop's in generation 0 (as its arrival there,
 *     possibly as the leader), so generation 1 expects 2 parties. Party 0 may (nondeterministic)
 *     cancel one wait (a timeout): WITHDRAW takes its arrival back if the
 *     generation has not completed and party 0 then arrives again.
 *
 * PROPERTIES (theorem each one checks)
 *   - assert at every AP_OK of generation g: arr[g] == expect[g] and
 *     fnr[g] == 1, where arr[g] is a ghost counting arrivals of g (changed
 *     in the same atomic step as the CAS that arrives, drops or withdraws):
 *     "no party passes generation g before every expected party arrived
 *     at g" and "fn runs ... on the leader, before any other party is
 *     released" (barrier.h GUARANTEES).
 *   - assert in bar_release: fnr[g] == 1 after the leader's fn, and the
 *     word it releases is COMPLETE: exactly one leader per generation.
 *   - final asserts: every generation completed with fn run exactly once,
 *     the word reads (NG, 2, 0), the list is empty.
 *   - invalid end states ("safety" run): no lost wakeup -- a party parked
 *     for ever although its generation completed is a blocked process
 *     (THE LADDER of barrier.h:91-98).
 *   - ltl all_finish: <> (finished == 3) under weak fairness (no livelock
 *     of the withdraw / re-arrive / wait-released loops either).
 */

#define NW 3          /* parties = waiter nodes */
#define NG 2          /* generations that complete */

#include "waitlist.inc"

byte bgen;            /* the word: generation */
byte bpar = 3;        /*           parties expected */
byte barr;            /*           arrived */

byte arr[NG];         /* ghost: arrivals counted in generation g */
byte fnr[NG];         /* ghost: runs of fn for generation g */
byte expect[NG];      /* ghost: parties generation g expects */
byte finished;

#define B_AGAIN 0
#define B_OK    1
#define B_CANCELED 2

#define COMPLETE(p, a) ((p) != 0 && (a) == (p))

/* ap__bar_release (barrier.h:329), by the leader holding COMPLETE (g, p) */
inline bar_release(g, p) {
    assert(COMPLETE(bpar, barr) && bgen == g);
#ifndef MUTANT_BAR_RELEASE_BEFORE_FN
    fnr[g]++;                                  /* b->fn(b->ctx) */
    assert(fnr[g] == 1);                       /* one leader, fn once */
    atomic { bgen = g + 1; bpar = p; barr = 0 };  /* seq_cst store */
#else
    /* model-only negative control: release first, then run fn */
    atomic { bgen = g + 1; bpar = p; barr = 0 };
    fnr[g]++;
    assert(fnr[g] == 1);
#endif
    if
    :: wl_count != 0 -> wl_wake_all()
    :: else -> skip
    fi
}

/* ap__bar_arrive (barrier.h:348); sets mygen and leader */
inline bar_arrive(drop) {
    atomic { sg = bgen; sp = bpar; sa = barr };
    do
    :: COMPLETE(sp, sa) ->
       /* a drop racing the leader: wait for the release */
       atomic { !(bgen == sg && COMPLETE(bpar, barr)) -> sg = bgen; sp = bpar; sa = barr }
    :: else ->
       atomic {
           if
           :: bgen == sg && bpar == sp && barr == sa ->
              if
              :: drop -> bpar = sp - 1; sp = sp - 1
              :: else -> barr = sa + 1; sa = sa + 1
              fi;
              arr[sg]++;
              ok = true
           :: else -> sg = bgen; sp = bpar; sa = barr; ok = false
           fi
       };
       if
       :: ok -> break
       :: else -> skip
       fi
    od;
    mygen = sg;
    leader = COMPLETE(sp, sa);
    if
    :: leader -> bar_release(sg, sp)
    :: else -> skip
    fi
}

inline outcome(res) {
    if
    :: bgen == mygen -> res = B_AGAIN
    :: else -> res = B_OK; assert(bgen == mygen + 1)
    fi
}

/* ap__bar_wait_released + ap_barrier_wait_cancel (barrier.h:513), WITHDRAW */
inline bar_cancel(res) {
    wl_cancel(me, wl_r);
    /* the load, ap__bar_wait_released and the CAS of the header's loop
     * are one step here: the CAS succeeds only on the word it read */
    atomic {
           !(COMPLETE(bpar, barr)) ->            /* ap__bar_wait_released */
           if
           :: bgen != mygen -> res = B_OK        /* completed: we passed */
           :: else ->
              assert(barr != 0);                 /* our arrival is there */
              barr--;                            /* CAS: take back our arrival */
              arr[mygen]--;
              res = B_CANCELED
           fi
    }
}

/* ap_barrier_wait_leader (barrier.h:565), one wait; res = B_OK or B_CANCELED */
inline bar_wait(res) {
    bar_arrive(false);
    if
    :: leader -> res = B_OK
    :: else ->
       outcome(res);                             /* the bounded spin */
       do
       :: res != B_AGAIN -> break
       :: else ->
          /* ap_barrier_wait_poll */
          outcome(res);
          if
          :: res == B_AGAIN ->
             wl_register(me);
             outcome(res)                        /* seq_cst re-check */
          :: else -> skip
          fi;
          if
          :: res != B_AGAIN ->
             wl_cancel(me, wl_r)                 /* broadcasts: nothing to pass */
          :: else ->
             if
             :: atomic { woken[me] -> woken[me] = false }   /* park */
             :: gives_up && !cancelled ->
                cancelled = true;
                bar_cancel(res)
             fi
          fi
       od
    fi;
    if
    :: res == B_OK ->
       assert(arr[mygen] == expect[mygen]);     /* everybody arrived at g */
       assert(fnr[mygen] == 1)                  /* fn ran before release */
    :: else -> skip
    fi
}

proctype party(byte me)
{
    byte wl_s, wl_i; bool wl_r; byte wl_chain[NW]; byte wl_clen;
    byte sg, sp, sa, mygen, res, round = 0;
    bool ok, leader, gives_up = false, cancelled = false;

    if
    :: me == 0 -> if :: gives_up = true :: gives_up = false fi
    :: else -> skip
    fi;

    do
    :: me == 2 ->
       bar_arrive(true);                         /* ap_barrier_arrive_and_drop */
       break
    :: me != 2 && round == NG -> break
    :: else ->
       bar_wait(res);
       if
       :: res == B_OK -> round++
       :: else -> skip                           /* withdrawn: arrive again */
       fi
    od;
    finished++
}

init {
    atomic {
        expect[0] = 3; expect[1] = 2;
        run party(0);
        run party(1);
        run party(2)
    };
    (finished == 3);
    assert(fnr[0] == 1 && fnr[1] == 1);
    assert(bgen == NG && bpar == 2 && barr == 0);
    assert(wl_len == 0 && wl_count == 0)
}

ltl all_finish { <> (finished == 3) }
