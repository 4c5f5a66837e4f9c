/*
 * semaphore.pml -- asyncpat/semaphore.h: lock-free try_acquire / release
 * on the permit word, FIFO grant pass under the list lock, acquire futures
 * that queue, and cancel of a granted future passing its permits on.
 *
 * MODELLED (semaphore.h)
 *   sem_try_acquire  ap_sem_try_acquire (:267): load; has_waiters -> AGAIN;
 *                    too few -> AGAIN; CAS loop
 *   sem_grant        ap__sem_grant (:303), run under the list lock for the
 *                    head: already granted -> true (re-registered race);
 *                    CAS its whole request off the count or stop (FIFO)
 *   sem_wake_if      ap_waitlist_wake_if (waitlist.h:347) with that grant
 *   sem_dispatch     ap__sem_dispatch (:336): has_waiters, count > 0, pass
 *   sem_add          ap__sem_add (:346): max check unless forced, CAS
 *                    (seq_cst), then dispatch; ap_sem_release (:372)
 *   sem_fut_done     ap__sem_fut_done (:451), granted branch
 *   worker()         ap_sem_acquire_poll (:472) driven like ap_block_on
 *                    (poll, park until woken, re-poll), with
 *                    ap_sem_acquire_cancel (:504) at any PENDING point when
 *                    the worker gives up; then it holds and releases.
 *   MUTANT_SEM_LOAD_STORE     tests/mutants/SEM_LOAD_STORE.patch (:284, :356):
 *                             try_acquire and add store the value read
 *                             earlier instead of a CAS
 *   MUTANT_SEM_POLL_NO_RECHECK tests/mutants/SEM_POLL_NO_RECHECK.patch (:494):
 *                             no grant pass after registering
 *
 * ABSTRACTED
 *   - close / forget / init_max with max > initial are left out (max ==
 *     initial == NP); the CLOSED bit is therefore never set.
 *   - the word is permits (not permits << 1 | CLOSED).
 *   - memory model, lock, list and wakers: see waitlist.inc.
 *   - sizes: NP = 2 permits; worker 0 asks for 1 and worker 1 for 2 (a
 *     large request that can sit at the head), each once with a future
 *     (whose first poll is try_acquire), then releases what it got; with
 *     NW = 3 a third thread (tryer) makes one lock-free try_acquire of 1
 *     and releases it if it got it, racing the queue from outside.
 *
 * PROPERTIES (theorem each one checks)
 *   - assert(held <= NP) when a worker starts to hold: active(t) <= n
 *     (semaphore.h GUARANTEES, "at most n permits are held").
 *   - assert in sem_add: a balanced release never exceeds max (a release
 *     can only fail with AP_INVAL if permits were minted).
 *   - assert(sem + out == NP) in every step that writes the word, where out
 *     is a ghost updated in that same atomic step by the permits it took
 *     or gave back (so the invariant [] sem + out == NP is checked at
 *     every change): no permit is lost or minted by any interleaving of
 *     acquire, release, grant and cancel ("nothing is lost or minted, also
 *     when futures are cancelled after they were granted").
 *   - final asserts: at quiescence available() == NP again, no node
 *     linked, every node idle (permits conserved, also on cancel).
 *   - invalid end states ("safety" run): no lost wakeup -- a worker that
 *     waits (does not give up) is eventually granted; one parked for ever
 *     while its permits are free is a blocked process (THE LADDER of
 *     semaphore.h:66-78: either the releaser sees the waiter or the
 *     waiter's own grant pass sees the permits).
 *   - ltl all_finish: <> (finished == NW) under weak fairness (also rules
 *     out livelock cycles, which the end-state check cannot see); checked
 *     with NW = 2 (spin -DNW=2) to stay within the time budget.
 */

#ifndef NW
#define NW 3      /* workers (2 or 3); the liveness run uses 2 */
#endif
#define NP 2

#include "waitlist.inc"

byte sem = NP;        /* ap_sem.state (permits) */
byte out;             /* ghost: permits taken from sem and not yet given back */
byte held;            /* ghost: permits held by workers (after READY) */
byte finished;        /* ghost */
bool granted[NW];     /* ap_sem_acquire_fut.granted */
byte need[NW];        /* ap_sem_acquire_fut.n */

#define AGAIN 0
#define OK    1

/* ap_sem_try_acquire (semaphore.h:267); res = OK or AGAIN */
inline sem_try_acquire(n, res) {
    st = sem;
    do
    :: wl_count != 0 -> res = AGAIN; break     /* queued futures come first */
    :: else ->
       if
       :: st < n -> res = AGAIN; break
       :: else -> skip
       fi;
#ifdef MUTANT_SEM_LOAD_STORE
       atomic { out = out + n; sem = st - n; assert(sem + out == NP) };   /* a store of the count read above */
       res = OK; break
#else
       atomic {
           if
           :: sem == st -> sem = st - n; out = out + n; res = OK; assert(sem + out == NP)
           :: else -> st = sem; res = AGAIN
           fi
       };
       if
       :: res == OK -> break
       :: else -> skip
       fi
#endif
    od
}

/* ap__sem_grant (semaphore.h:303) for waiter w, under the list lock */
inline sem_grant(w, res) {
    if
    :: granted[w] -> res = true                 /* re-registered after a grant */
    :: else ->
       st = sem;
       do
       :: st < need[w] -> res = false; break    /* strict FIFO: stop here */
       :: else ->
          atomic {
              if
              :: sem == st -> sem = st - need[w]; out = out + need[w]; res = true;
                    assert(sem + out == NP)
              :: else -> st = sem; res = false
              fi
          };
          if
          :: res -> granted[w] = true; break
          :: else -> skip
          fi
       od
    fi
}

/* ap_waitlist_wake_if (waitlist.h:347) with ap__sem_grant */
inline sem_wake_if() {
    lock_acquire();
    do
    :: wl_len > 0 ->
       sem_grant(wl_q[0], gr);
       if
       :: gr -> wl_take_head()
       :: else -> break
       fi
    :: else -> break
    od;
    lock_release();
    wl_wake_taken()
}

/* ap__sem_dispatch (semaphore.h:336) */
inline sem_dispatch() {
    if
    :: wl_count != 0 ->
       if
       :: sem >= 1 -> sem_wake_if()
       :: else -> skip
       fi
    :: else -> skip
    fi
}

/* ap__sem_add (semaphore.h:346) */
inline sem_add(n, force) {
    st = sem;
    do
    :: assert(force || st + n <= NP);   /* balanced use never exceeds max */
#ifdef MUTANT_SEM_LOAD_STORE
       atomic { sem = st + n; out = out - n; assert(sem + out == NP) };   /* load + store, not a CAS */
       break
#else
       atomic {
           if
           :: sem == st -> sem = st + n; out = out - n; gr = true; assert(sem + out == NP)
           :: else -> st = sem; gr = false
           fi
       };
       if
       :: gr -> break
       :: else -> skip
       fi
#endif
    od;
    sem_dispatch()
}

/* ap__sem_fut_done (semaphore.h:451), granted branch (no close) */
inline sem_fut_done(me, res) {
    if
    :: granted[me] ->
       wl_cancel(me, wl_r);                     /* waits out the wake */
       res = true
    :: else -> res = false
    fi
}

proctype worker(byte me)
{
    byte wl_s, wl_i; bool wl_r; byte wl_chain[NW]; byte wl_clen;
    byte st; bool gr; byte r;
    bool queued = false, done = false, cancelled = false, gives_up;
    byte n = need[me];

    if
    :: gives_up = true
    :: gives_up = false
    fi;

    do
    :: /* ---- ap_sem_acquire_poll ---- */
       if
       :: !queued ->
          sem_try_acquire(n, r);
          if
          :: r == OK -> break
          :: else -> queued = true
          fi
       :: else ->
          sem_fut_done(me, done);
          if
          :: done -> break
          :: else -> skip
          fi
       fi;
       wl_register(me);
#ifndef MUTANT_SEM_POLL_NO_RECHECK
       sem_dispatch();                            /* our own grant pass */
       sem_fut_done(me, done);
       if
       :: done -> break
       :: else -> skip
       fi;
#endif
       /* AP_PENDING: park until woken, or give up */
       if
       :: atomic { woken[me] -> woken[me] = false }
       :: gives_up ->
          /* ap_sem_acquire_cancel (queued is true here) */
          cancelled = true;
          wl_cancel(me, wl_r);
          if
          :: granted[me] -> sem_add(n, true)     /* give back, pass on */
          :: else -> sem_dispatch()              /* we may have held others up */
          fi;
          break
       fi
    od;

    if
    :: !cancelled ->
       atomic { held = held + n; assert(held <= NP) };   /* active(t) <= n */
       atomic { held = held - n };
       sem_add(n, false)                                  /* ap_sem_release */
    :: else -> skip
    fi;
    finished++
}

/* a thread using only the lock-free calls: ap_sem_try_acquire, and
 * ap_sem_release of what it got (it never queues) */
proctype tryer(byte me)
{
    byte wl_s, wl_i; bool wl_r; byte wl_chain[NW]; byte wl_clen;
    byte st; bool gr; byte r;
    byte n = need[me];
    sem_try_acquire(n, r);
    if
    :: r == OK ->
       atomic { held = held + n; assert(held <= NP) };
       atomic { held = held - n };
       sem_add(n, false)
    :: else -> skip
    fi;
    finished++
}

init {
    atomic {
        need[0] = 1; need[1] = 2;
        run worker(0);
        run worker(1);
#if NW > 2
        need[2] = 1;
        run tryer(2)
#endif
    };
    (finished == NW);
    assert(sem == NP && out == 0 && held == 0);   /* conserved at quiescence */
    assert(wl_len == 0 && wl_count == 0);
    assert(wst[0] == W_IDLE && wst[1] == W_IDLE);
    assert(wst[NW - 1] == W_IDLE)
}

ltl all_finish { <> (finished == NW) }
