/*
 * circuit_breaker.pml -- asyncpat/circuit_breaker.h: the state machine
 * CLOSED -> OPEN -> HALF_OPEN -> CLOSED / OPEN / HALF_OPEN, half-open probe
 * leasing with K probes per period, generations (stale permits), and
 * transitions computed on access under a fair clock.
 *
 * MODELLED (circuit_breaker.h)
 *   cb_set       ap__breaker_set (:628): a transition; the generation grows
 *                (every permit handed out before is stale from now on);
 *                OPEN arms the open time; HALF_OPEN clears inflight, succ,
 *                admitted and the probe table
 *   cb_advance   ap__breaker_advance (:672): OPEN whose time is over ->
 *                HALF_OPEN; HALF_OPEN with an expired probe lease -> OPEN
 *   client()     ap_breaker_allow (:760): lock-free CLOSED admit and OPEN
 *                rejection (open time not over), else ap__breaker_allow_slow
 *                (:705) under the lock: advance, then admit (CLOSED) or
 *                lease a probe slot if admitted < K (HALF_OPEN);
 *                ap_breaker_record (:1131): stale check on the generation;
 *                CLOSED: a failure may trip (window abstracted) through
 *                ap__breaker_trip (:800), which re-checks (CLOSED, g) under the
 *                lock; HALF_OPEN: ap__breaker_record_slow (:1059): advance,
 *                stale check, free the slot, then FAILURE -> OPEN,
 *                K-th SUCCESS -> CLOSED, all K reported without a failure
 *                (some IGNORED) -> new HALF_OPEN period. O_IGNORED also
 *                stands for CANCELED (the code treats the two alike; only
 *                their stats counters differ). A record also consumes the
 *                permit (gen = 0), so a second record of it is AP_INVAL
 *                before any of this: each client reports its permit once.
 *                A client may also never report a permit (it crashed):
 *                only the probe lease frees that slot.
 *   clock()      time: the open time and each probe's lease expire at
 *                some later point (a flag per deadline); the clock is a
 *                process, weakly fair in the liveness runs (pan -f).
 *   MUTANT_CB_EARLY_PROBE_RELEASE  tests/mutants/CB_EARLY_PROBE_RELEASE.patch
 *                block (:1093): a reported probe also gives back its
 *                admission (admitted--)
 *
 * ABSTRACTED
 *   - the sliding windows (COUNT/TIME, rates, slow calls, consecutive
 *     failures): a CLOSED failure trips or not, nondeterministically; a
 *     slow SUCCESS in HALF_OPEN acts as a FAILURE, so it is not separate.
 *   - the generation number: the model keeps, per client, whether its
 *     permit's generation is still the current one (cb_set clears them
 *     all), which is exactly the header's (s >> 3) != permit->gen test
 *     without an unbounded counter.
 *   - time: numbers (now_ns, open_until, admit + lease) become "has this
 *     deadline passed" flags set by the clock; every call uses the current
 *     time (a caller's older now_ns can only delay transitions).
 *   - FORCED_OPEN, DISABLED, reset, stats counters, callbacks, the
 *     open-duration growth: not modelled.
 *   - memory model: SC; the state word is written under the lock, read
 *     lock-free in one step.
 *   - the lock: each critical section (allow_slow, record_slow, trip) is
 *     one atomic step (d_step). Sound here: every write of the state word
 *     and of the probe table is made under the lock and each critical
 *     section writes the state word at most once, so lock-free readers
 *     (allow's fast paths, record's stale check, the clock) can observe
 *     nothing in between. The lock-free stale check of ap_breaker_record is
 *     folded into the locked one: generations only grow, so a permit stale
 *     at the load is stale under the lock as well.
 *   - sizes: NC = 3 clients looping for ever, K = 2 probes.
 *
 * PROPERTIES (theorem each one checks)
 *   - assert(cbst != OPEN) at every admission: no call is admitted while
 *     OPEN (a permit's generation is a CLOSED or HALF_OPEN generation).
 *   - assert(padm <= K) at every probe admission: at most K probes
 *     admitted per half-open period (generation), IGNORED ones included;
 *     padm is a ghost reset only by a new period.
 *   - assert(pout <= K): at most K probes in flight (pout = ghost count of
 *     clients holding a current-generation probe permit, not yet reported).
 *   - assert in the HALF_OPEN record: the probe's slot is still leased to
 *     it (the header's AP_ASSERT at :1089): a slot is freed only by its own
 *     record or by the end of the period.
 *   - ltl open_left: [] (OPEN -> <> !OPEN) under weak fairness (a fair
 *     clock and clients that keep calling): the breaker always leaves OPEN.
 *   - ltl half_left: every half-open period ends (-> OPEN, CLOSED or a new
 *     period): never stuck half-open, thanks to the leases, even when
 *     every probe's client vanishes.
 */

#ifndef NC
#define NC 3          /* clients (3 or 2); the liveness runs use 2 */
#endif
#define K  2          /* half_open_probes (cb_advance and clock() name slot[0], slot[1]) */

#define CLOSED 0
#define OPEN   1
#define HALF   2

#define S_FREE    0   /* probe slot: admit[i] == AP__BREAKER_FREE */
#define S_BUSY    1   /*             leased, lease not over */
#define S_EXPIRED 2   /*             leased, now >= admit + probe_lease_ns */

#define O_SUCCESS 0
#define O_FAILURE 1
#define O_IGNORED 2

byte cbst = CLOSED;   /* state word: state (the generation: see pvalid) */
bool open_over;       /* now >= open_until */
byte inflight, succ, admitted;   /* HALF_OPEN bookkeeping (under the lock) */
byte slot[K];         /* the probe table */

bool pvalid[NC];      /* client's permit is of the current generation */
byte padm;            /* ghost: probes admitted in this half-open period */
byte pout;            /* ghost: current-generation probe permits not yet reported */
bool isprobe[NC];     /* ghost: the client's permit is a probe */
bit  hper;            /* ghost: flips at every new half-open period */

/* ap__breaker_set (:628), under the lock */
inline cb_set(to) {
    d_step {
        /* generation + 1: every outstanding permit is stale */
        i = 0;
        do
        :: i < NC -> pvalid[i] = false; i++
        :: else -> break
        od;
        pout = 0;
        if
        :: to == OPEN -> open_over = false      /* open_until = now + cur_open */
        :: to == HALF ->
           inflight = 0; succ = 0; admitted = 0; padm = 0; hper = 1 - hper;
           i = 0;
           do
           :: i < K -> slot[i] = S_FREE; i++
           :: else -> break
           od
        :: else -> skip                         /* CLOSED: window cleared */
        fi;
        i = 0;
        cbst = to                               /* release store of the word */
    }
}

/* ap__breaker_advance (:672), under the lock */
inline cb_advance() {
    if
    :: cbst == OPEN && open_over -> cb_set(HALF)
    :: cbst == HALF && (slot[0] == S_EXPIRED || slot[1] == S_EXPIRED) ->
       cb_set(OPEN)                             /* lease_expired */
    :: else -> skip
    fi
}

proctype client(byte me)
{
    byte i, o, pslot;
    bool got, slow;

end_loop:
    do
    :: /* ---------------- ap_breaker_allow ---------------- */
       atomic {
           if
           :: cbst == CLOSED ->                 /* lock-free admit */
              pvalid[me] = true; isprobe[me] = false; got = true
           :: cbst == OPEN && !open_over -> skip    /* lock-free rejection */
           :: else -> slow = true               /* ap__breaker_allow_slow */
           fi
       };
       if
       :: slow ->
          d_step {                              /* the critical section */
              slow = false;
              cb_advance();
              if
              :: cbst == CLOSED ->
                 pvalid[me] = true; isprobe[me] = false; got = true
              :: cbst == HALF && admitted < K ->
                 pslot = 0;
                 do
                 :: slot[pslot] != S_FREE -> pslot++
                 :: else -> break
                 od;
                 slot[pslot] = S_BUSY;
                 inflight++; admitted++;
                 padm++; pout++;
                 pvalid[me] = true; isprobe[me] = true; got = true;
                 assert(padm <= K);             /* <= K admitted per period */
                 assert(pout <= K)              /* <= K probes in flight */
              :: else -> skip                   /* OPEN, or K admitted: reject */
              fi;
              assert(!got || cbst != OPEN)      /* never admitted while OPEN */
          }
       :: else -> skip
       fi;
       if
       :: got ->
          /* ---- the call; then ap_breaker_record, or never a report ---- */
          if
          :: o = O_SUCCESS
          :: o = O_FAILURE
          :: o = O_IGNORED
          :: isprobe[me] ->                     /* vanish: only the lease frees it */
             d_step {
                 if :: pvalid[me] -> pout-- :: else -> skip fi;
                 pvalid[me] = false; isprobe[me] = false; got = false; pslot = 0
             };
             goto next
          fi;
          if
          :: !isprobe[me] ->
             /* CLOSED permit: lock-free stale check and window record; a
              * failure may trip: ap__breaker_trip re-checks (CLOSED, g) under
              * the lock (stale permits change nothing) */
             if
             :: o == O_FAILURE ->
                d_step {
                    if
                    :: pvalid[me] && cbst == CLOSED -> cb_set(OPEN)
                    :: else -> skip
                    fi
                }
             :: true -> skip
             fi
          :: else ->
             /* probe: the lock-free stale check, then ap__breaker_record_slow
              * under the lock (its own stale check after advance) */
             d_step {
                 cb_advance();                  /* a probe at/after its lease is stale */
                 if
                 :: !pvalid[me] -> skip
                 :: else ->
                    assert(cbst == HALF && slot[pslot] != S_FREE);
                    slot[pslot] = S_FREE;
                    inflight--;
                    pout--;
                    pvalid[me] = false;
#ifdef MUTANT_CB_EARLY_PROBE_RELEASE
                    admitted--;                 /* the admission goes back too */
#endif
                    if
                    :: o == O_FAILURE -> cb_set(OPEN)
                    :: o == O_SUCCESS && succ + 1 >= K -> succ++; cb_set(CLOSED)
                    :: else ->
                       if
                       :: o == O_SUCCESS -> succ++
                       :: else -> skip
                       fi;
                       if
                       :: inflight == 0 && admitted == K -> cb_set(HALF)  /* inconclusive */
                       :: else -> skip
                       fi
                    fi
                 fi
             }
          fi;
          d_step { pvalid[me] = false; isprobe[me] = false; got = false; o = 0; pslot = 0 }
       :: else -> skip
       fi;
next:  skip
    od
}

/* time passes: each pending deadline passes at some point */
proctype clock()
{
end_clock:
    do
    :: atomic { cbst == OPEN && !open_over -> open_over = true }
    :: atomic { slot[0] == S_BUSY -> slot[0] = S_EXPIRED }
    :: atomic { slot[1] == S_BUSY -> slot[1] = S_EXPIRED }
    od
}

init {
    atomic {
        run clock();
        run client(0);
        run client(1);
#if NC > 2
        run client(2)
#endif
    }
}

ltl open_left { [] (cbst == OPEN -> <> (cbst != OPEN)) }
ltl half_left { [] ((cbst == HALF && hper == 0) -> <> (cbst != HALF || hper == 1)) &&
                [] ((cbst == HALF && hper == 1) -> <> (cbst != HALF || hper == 0)) }
