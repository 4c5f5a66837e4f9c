/*
 * waker.pml -- the waiter list (register / wake / cancel) and the
 * check-register-recheck pattern of ap_waitop (asyncpat/waitlist.h).
 *
 * MODELLED
 *   - waitlist.inc: the ap_waitlist functions line by line (node states
 *     IDLE / LINKED / NOTIFYING / NOTIFIED, register's settle-lock-recheck
 *     loop, cancel waiting out a wake in progress, wake(n) taking nodes
 *     under the lock and calling the wakers after it).
 *   - consumer(): ap_waitop_poll (waitlist.h:410) for a pop of a queue:
 *       try; if EMPTY { register; re-try }   (waitlist.h:414-420)
 *       settle first (a wake before this poll is for this attempt);
 *       EMPTY -> PENDING; OK -> ap_waitlist_cancel_pass, READY
 *     driven like ap_block_on (poll, park until woken, poll again), and
 *     ap_waitop_cancel = ap_waitlist_cancel_pass (waitlist.h:379, 455):
 *     a consumer may give up at any PENDING point; a wake it had received
 *     is then passed to the next waiter.
 *   - producer(): the waking side of a queue push, as in spsc.h and
 *     mpmc.h with the asymmetric barrier (waitlist.h, THE LADDER): publish
 *     with a release store, LIGHT (compiler only), then
 *     if (ap_waitlist_parked) ap_waitlist_wake(wl, 1). The publication goes
 *     into the producer's store buffer `sb` and becomes visible (`items`)
 *     at any later point (the drainer process), so the count load may
 *     pass it, as on real hardware; the waiting side's HEAVY barrier
 *     (membarrier) drains it (WL_HEAVY_BARRIER, after count++ in
 *     wl_register).
 *   - MUTANT_NO_HEAVY: the waiting side without HEAVY: must fail (the
 *     count load passes the buffered publication, the re-check misses it,
 *     and the consumer parks for ever).
 *   - MUTANT_WAITOP_NO_RECHECK: tests/mutants/WAITOP_NO_RECHECK.patch of
 *     waitlist.h:418 (check-then-register without the re-try).
 *   - OLD_WAITOP_DROPS_WAKE: the done path as it was before the fix
 *     (ap_waitlist_cancel, wake dropped): a regression control that must
 *     fail, with this trail (found by this model and, independently, by
 *     the scheduler's mpmc_2p1c_cap1 scenario):
 *     consumers A, B; producer P.  A: try EMPTY, register (A linked,
 *     head).  P: push 1 publishes, has_waiters reads 0 (before A's
 *     count++): no wake.  A: count++, re-check takes item 1 -> done,
 *     about to cancel.  B: try EMPTY, register (behind A), re-check EMPTY
 *     -> PENDING, parks.  P: push 2, has_waiters 2 -> wake(1) takes the
 *     head, A.  A's cancel returns true and the old done path dropped it:
 *     B slept for ever with item 2 in the queue.
 *
 * ABSTRACTED
 *   - the queue is a counter of published items (try_op = take one if
 *     any): slots, indices and the AP_AGAIN (peer mid-publish) answer of
 *     ap_waitop_poll (waitlist.h:426) are left out; close (wake_all) is
 *     left out (wake_all is wake(NW), covered in barrier.pml).
 *   - memory model, lock, list and waker: see waitlist.inc.
 *   - sizes: NW = 2 consumers, one producer pushing NITEMS = 2 items (one
 *     item per consumer, so at the end every consumer that did not give up
 *     has an item to take).
 *
 * PROPERTIES (theorem each one checks)
 *   - invalid end states (pan's default check, "safety" run): no lost
 *     wakeup. Every consumer ends (READY or cancelled); a consumer that is
 *     parked for ever while an item it could take is published is a
 *     process blocked at `park` -- pan reports it as an invalid end state.
 *   - assert in consumer(): a READY pop really took an item (items never
 *     go negative, so no item is taken twice).
 *   - assert in the final check: items conserved (taken + left == pushed)
 *     and the list is empty and every node idle once everybody finished
 *     (cancel is complete: no node left linked or mid-wake).
 *   - ltl all_finish: <> (finished == NW) under weak fairness: every
 *     consumer eventually finishes; in particular nobody waits for ever
 *     for a wake (THE LADDER, waitlist.h:19-35).
 */

#define NW 2
#define NITEMS 2

byte items;          /* published and visible, not yet taken */
byte sb;             /* published by the producer, still in its store buffer */
#ifndef MUTANT_NO_HEAVY
#define WL_HEAVY_BARRIER d_step { items = items + sb; sb = 0 }
#endif
#define WL_WAKE_DRAIN d_step { items = items + sb; sb = 0 }

#include "waitlist.inc"

byte taken;          /* ghost: items taken by consumers */
byte finished;       /* ghost: consumers that completed or cancelled */
bool pushed_all;     /* ghost */

#define EMPTY 0
#define OK    1

proctype consumer(byte me)
{
    byte wl_s, wl_i; bool wl_r; byte wl_chain[NW]; byte wl_clen;
    byte st;
    bool cancelled = false;
    bool gives_up;

    /* Decided up front: a consumer that may give up (a timeout) cannot use
     * its cancel as an escape from a lost wakeup in the runs where it
     * waits for good, and pan explores both choices. */
    if
    :: gives_up = true
    :: gives_up = false
    fi;

    do
    :: /* ---- ap_waitop_poll ---- */
       /* a wake that came before this poll is for this attempt */
       wl_settle(me, wl_r);
       atomic { if :: items > 0 -> items--; taken++; st = OK :: else -> st = EMPTY fi };
       if
       :: st == EMPTY ->
          wl_register(me);
#ifndef MUTANT_WAITOP_NO_RECHECK
          /* the re-check of THE LADDER (waitlist.h:419) */
          atomic { if :: items > 0 -> items--; taken++; st = OK :: else -> st = EMPTY fi }
#endif
       :: else -> skip
       fi;
       if
       :: st == OK ->
          /* done: ap_waitlist_cancel_pass -- a wake that came during
           * this poll may be for progress we did not use: pass it on */
          wl_cancel(me, wl_r);
#ifndef OLD_WAITOP_DROPS_WAKE
          if
          :: wl_r -> wl_wake(1)
          :: else -> skip
          fi;
#endif
          break
       :: else -> skip          /* AP_PENDING */
       fi;
       /* ---- the driver: park until woken, or give up ---- */
       if
       :: atomic { woken[me] -> woken[me] = false }   /* park */
       :: gives_up && !cancelled ->
          /* ap_waitop_cancel: ap_waitlist_cancel_pass */
          cancelled = true;
          wl_cancel(me, wl_r);
          if
          :: wl_r -> wl_wake(1)
          :: else -> skip
          fi;
          break
       fi
    od;
    assert(st == OK || cancelled);
    finished++
}

proctype producer()
{
    byte wl_s, wl_i; bool wl_r; byte wl_chain[NW]; byte wl_clen;
    byte k = 0;
    do
    :: k < NITEMS ->
       sb++;                        /* publish: a release store, buffered */
       k++;
       /* LIGHT: a compiler barrier; the count load may pass the store */
       if
       :: wl_count != 0 ->              /* ap_waitlist_parked, wake one */
          wl_wake(1)   /* re-reads the count; its lock RMW drains the buffer */
       :: else -> skip
       fi
    :: else -> break
    od;
    pushed_all = true
}

/* The store buffer drains at any point, oldest first (one counter). */
proctype drainer()
{
    do
    :: sb > 0 -> d_step { items = items + sb; sb = 0 }
    :: pushed_all && sb == 0 -> break
    od
}

init {
    atomic {
        run drainer();
        run producer();
        run consumer(0);
        run consumer(1)
    };
    (finished == NW && pushed_all && sb == 0);
    /* quiescent: items conserved, list empty, every node idle */
    assert(items + taken == NITEMS);
    assert(wl_len == 0 && wl_count == 0);
    assert(wst[0] == W_IDLE && wst[1] == W_IDLE)
}

ltl all_finish { <> (finished == NW) }
