#!/bin/sh
# Negative controls: every mutant (tests/mutants/<name>.patch) must be caught
# by its checker. Each checker is built against a scratch copy of the headers
# with the patch applied and run under a time limit; it must FAIL (non-zero
# exit: a TSan report, a CHECK, the watchdog, a failed Criterion assertion, a
# scheduler failure, or a hang killed by timeout(1)).
# One line per mutant, then "mutants: N caught, N survived"; exits non-zero
# if any mutant survived or a checker did not build.
# Environment: CC (default gcc), MUTANT_SCALE (STRESS_SCALE of the stress
#   checkers, default 0.3), MUTANT_TIMEOUT (STRESS_TIMEOUT, the watchdog,
#   default 8 s), MUTANT_BASELINE=1 also runs each checker WITHOUT the mutant
#   under the same settings and requires it to pass (proves the checker does
#   not fail for other reasons), MUTANTS (space-separated ids to run; default
#   all), AP_TEST_SEED (default time-based).
set -u
cd "$(dirname "$0")/.."
: "${CC:=gcc}"
: "${MUTANT_SCALE:=0.3}"
: "${MUTANT_TIMEOUT:=8}"
: "${MUTANT_BASELINE:=0}"
: "${AP_TEST_SEED:=$(date +%s)}"; export AP_TEST_SEED
B=build/mutants
mkdir -p $B
BASE="-std=gnu11 -Wall -Wextra -Werror -g -I."
TSAN="$BASE -O1 -fsanitize=thread -DAP_TEST_YIELD_RANDOM"
PLAIN="$BASE -O2"
CRIT="$BASE -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
crit_libs() { pkg-config --cflags --libs criterion 2>/dev/null || echo "-lcriterion"; }

# id | name | kind (tsan, plain, criterion) | source | run arguments |
#   STRESS_FILTER | runs (caught if any fails; default 1) | STRESS_SCALE
# WS_TAKE_NO_FENCE needs real hardware reordering (a plain -O2 build, no
# TSan): one full run at scale 1 (~1 s) catches it about 2 times in 3, so it
# gets up to 20 runs (in tests it always fell within 2).
# A mutant may have several rows (checkers): each one must catch it. The
# spin models plant their own versions of mutants 3, 4, 5 and 6 (and two
# model-only ones) and require each to fail: tests/verify/models/run.sh,
# the `models` stage of `make test`.
# Every mutant is a patch, tests/mutants/<name>.patch (diff -ru a b over
# asyncpat.h and asyncpat/; a first line says what it plants), applied to a
# scratch copy of the headers that the checker then includes first: the
# headers a user vendors hold none of it (DESIGN.md, 0.2). Ids m1..m11 are
# the former -DAP_MUTANT numbers, p* the later patches, c* the C11 ones.
# kind verify: the deterministic scheduler (tests/verify), the filter is
# VF_ONLY (a scenario name); it is exhaustive, so one run is decisive.
# kind c11: the same, run in its C11 mode (VF_MODE=c11: store histories,
# happens-before, the race detector; it runs the *_tso scenarios); then, as
# a control that is not counted, the scenario's SC and TSO runs (the filter
# less _tso) run too and the line says whether they miss it.
# SEM_POLL_NO_RECHECK has only the scheduler: the semaphore stress (TSan,
# watchdog) catches it only sometimes (survived 1 run in 5); likewise
# CACHE_NO_SEQ_CHECK, which the cache stress caught in 2 sessions of 3
# (8 runs each): the scheduler finds the torn read every time.
TABLE='m1|MPMC_RELAXED_PUBLISH|tsan|tests/stress/stress_mpmc.c|||1|
m1|MPMC_RELAXED_PUBLISH|c11|tests/verify/verify_queue.c||mpmc_1p1c_cap1_tso|1|
m2|WS_TAKE_NO_FENCE|plain|tests/stress/stress_work_steal.c|||20|1
m2|WS_TAKE_NO_FENCE|verify|tests/verify/verify_sync.c||ws_2tasks_owner_thief_tso|1|
m3|SEM_LOAD_STORE|tsan|tests/stress/stress_semaphore.c|||1|
m3|SEM_LOAD_STORE|verify|tests/verify/verify_sync.c||sem_1permit_2threads|1|
m4|WAITOP_NO_RECHECK|tsan|tests/stress/stress_async.c||wake-lockstep|1|
m4|WAITOP_NO_RECHECK|verify|tests/verify/verify_sync.c||waitlist_two_waiters|1|
m5|SEM_POLL_NO_RECHECK|verify|tests/verify/verify_sync.c||sem_1permit_2threads|1|
m6|CB_EARLY_PROBE_RELEASE|tsan|tests/stress/stress_circuit_breaker.c|||1|
m6|CB_EARLY_PROBE_RELEASE|verify|tests/verify/verify_breaker.c||breaker_ho_k1_ign_succ_fail|1|
m7|TB_NO_BURST_CLAMP|criterion|tests/test_token_bucket.c|--filter token_bucket/bound_holds_at_every_step_of_a_random_walk||1|
m8|POOL_NO_RECHECK|verify|tests/verify/verify_pool.c||pool_1obj_2threads|1|
m9|CACHE_NO_SEQ_CHECK|verify|tests/verify/verify_cache.c||cache_update_evict_vs_get|1|
m10|LIFE_ENTER_LOAD_STORE|verify|tests/verify/verify_lifecycle.c||life_owner_1worker|1|
m11|CONNPOOL_NO_RECHECK|verify|tests/verify/verify_connpool.c||connpool_max1_2threads|1|
p70|CONNPOOL_OPEN_TIMEOUT_LEAKS_SLOT|criterion|tests/test_connpool.c|--filter connpool/async_open_times_out_exactly_at_the_deadline_and_frees_the_slot||1|
p20|RESILIENCE_CANCEL_KEEPS_PERMIT|criterion|tests/test_resilience.c|--filter resilience/random_faults_keep_the_ledger||1|
p20|RESILIENCE_CANCEL_KEEPS_PERMIT|verify|tests/verify/verify_resilience.c||resil_cancel_closed|1|
p21|RESILIENCE_CANCEL_NO_RECORD|criterion|tests/test_resilience.c|--filter resilience/random_faults_keep_the_ledger||1|
p21|RESILIENCE_CANCEL_NO_RECORD|verify|tests/verify/verify_resilience.c||resil_cancel_half_open|1|
p1|WAITLIST_NO_HEAVY|verify|tests/verify/verify_queue.c||spsc_cap1_3items_tso|1|
p2|SPSC_PARKED_BEFORE_PUBLISH|verify|tests/verify/verify_queue.c||spsc_cap1_3items|1|
p3|SPSC_CLOSE_NO_WAIT|verify|tests/verify/verify_queue.c||spsc_close_drain|1|
p4|SPSC_CLOSE_NO_HEAVY|verify|tests/verify/verify_queue.c||spsc_close_drain_tso|1|
p5|SPSC_IS_CLOSED_WHILE_CLOSING|verify|tests/verify/verify_close.c||spsc_is_closed_then_empty|1|
p6|WAITLIST_NO_CONFIRM_DEADLINE|verify|tests/verify/verify_queue.c||spsc_cap1_3items_tso|1|
p10|SEM_PARKED_BEFORE_PUBLISH|verify|tests/verify/verify_sync.c||sem_1permit_2threads|1|
p11|POOL_PARKED_BEFORE_PUBLISH|verify|tests/verify/verify_pool.c||pool_1obj_2threads|1|
c1|SPSC_POP_RELAXED_TAIL|c11|tests/verify/verify_queue.c||spsc_cap1_3items_tso|1|
c2|PUBSUB_NO_ACQUIRE_FENCE|c11|tests/verify/verify_pubsub.c||pubsub_1p1s_3msg_cap1_tso|1|
c3|LIFE_LEAVE_RELAXED|c11|tests/verify/verify_lifecycle.c||life_owner_1worker_tso|1|
c5|BREAKER_STATE_RELAXED|c11|tests/verify/verify_breaker.c||breaker_close_vs_record_tso|1|
c5|BREAKER_STATE_RELAXED|c11|tests/verify/verify_breaker_win.c||bwin_count_publish_tso|1|
c6|BREAKER_CLEAR_CNT_RELAXED|c11|tests/verify/verify_breaker_win.c||bwin_time_reset_tso|1|
c7|CACHE_NO_ACQUIRE_FENCE|c11|tests/verify/verify_cache.c||cache_update_evict_vs_get_tso|1|
m2|WS_TAKE_NO_FENCE|c11|tests/verify/verify_sync.c||ws_2tasks_owner_thief_tso|1|
p1|WAITLIST_NO_HEAVY|c11|tests/verify/verify_queue.c||spsc_cap1_3items_tso|1|
p150|BREAKER_COUNT_EVICT_LOAD_STORE|verify|tests/verify/verify_breaker_win.c||bwin_count_evict|1|
p30|LOOP_MS_ROUND_DOWN|criterion|tests/test_loop.c|--filter loop/readme_loop_does_not_busy_poll||1|
p40|CANCEL_CHILD_CHECK_UNLOCKED|verify|tests/verify/verify_cancel.c||cancel_vs_child_and_fini|1|
p41|CANCEL_EARLY_RETURN|verify|tests/verify/verify_cancel.c||cancel_two_cancels_waiter|1|
p42|CANCEL_ON_NO_RECHECK|verify|tests/verify/verify_cancel.c||cancel_callback_vs_cancel|1|
p43|TRACKER_DONE_IGNORES_CLOSED|verify|tests/verify/verify_cancel.c||tracker_2tasks_closer|1|
p44|CANCEL_RACE_NO_RECHECK|verify|tests/verify/verify_cancel.c||cancel_race_vs_cancel|1|
p141|BATCH_DONE_ANY_BATCH|criterion|tests/test_batch.c|--filter batch/theorem_every_completion_once_with_its_batch_status||1|
p141|BATCH_DONE_ANY_BATCH|tsan|tests/stress/stress_batch.c||batch-done|1|
p142|BATCH_DONE_LOST_WAKE|verify|tests/verify/verify_batch.c||batch_done|1|
p147|BATCH_DONE_FIRST_RUN_ONLY|criterion|tests/test_batch.c|--filter batch/theorem_every_completion_once_with_its_batch_status||1|
p143|WINDOW_PAR_MAX_WATERMARK|criterion|tests/test_window.c|--filter window/par_theorem_merged_equals_single_threaded||1|
p143|WINDOW_PAR_MAX_WATERMARK|verify|tests/verify/verify_window.c||window_par_tumbling|1|
p144|WINDOW_PAR_PUBLISH_LATE|verify|tests/verify/verify_window.c||window_par_tumbling|1|
p145|WINDOW_PAR_LATE_CHECK_UNLOCKED|verify|tests/verify/verify_window.c||window_par_late|1|
p146|WINDOW_PAR_SKIP_DUE|criterion|tests/test_window.c|--filter window/par_emits_each_window_as_soon_as_g_passes_its_end||1|
p148|WINDOW_PAR_EXIT_NO_FENCE|verify|tests/verify/verify_window.c||window_par_tumbling_tso|1|
q1|CACHE_NO_SINGLE_FLIGHT|verify|tests/verify/verify_cache.c||cache_single_flight|1|
q1|CACHE_NO_SINGLE_FLIGHT|tsan|tests/stress/stress_cache.c||cache loads|1|
q2|CACHE_KV_RELEASE_PINNED|verify|tests/verify/verify_cache.c||cache_kv_retire_after_unpin|1|
q2|CACHE_KV_RELEASE_PINNED|c11|tests/verify/verify_cache.c||cache_kv_retire_after_unpin_tso|1|
q3|CACHE_WHEEL_ONE_LEVEL|criterion|tests/test_cache.c|--filter cache/theorem_wheel_reclaims_exactly_the_expired||1|
q4|CACHE_EXPIRY_LATE|criterion|tests/test_cache.c|--filter cache/expire_after_write_is_exact_and_hard||1|
q1|CACHE_NO_SINGLE_FLIGHT|verify|tests/verify/verify_cache.c||cache_kv_single_flight|1|
q5|CACHE_KV_EXPIRED_RETURNED|criterion|tests/test_cache.c|--filter cache/kv_expire_after_access_and_ttl_are_exact_and_hard||1|
q5|CACHE_KV_EXPIRED_RETURNED|verify|tests/verify/verify_cache.c||cache_kv_expire_vs_pinned|1|
q6|CACHE_NEG_TTL_OFF_BY_ONE|criterion|tests/test_cache.c|--filter cache/negative_ttl_is_exact_for_both_caches||1|
q7|CACHE_REFRESH_IGNORES_NEGATIVE|criterion|tests/test_cache.c|--filter cache/failed_refresh_is_remembered_for_the_negative_ttl||1|
q8|CACHE_NEG_ONLY_AFTER_READ|criterion|tests/test_cache.c|--filter cache/negative_ttl_holds_before_the_waiters_read_the_error||1|
t1|TOPIC_GT_MATCHES_NOTHING|criterion|tests/test_pubsub.c|--filter topic/matching_follows_nats||1|
t2|TOPIC_RECV_NO_PUB_WAKE|verify|tests/verify/verify_pubsub.c||topic_block_1p1s_3msg_depth2|1|
t3|TOPIC_PEND_NOT_TAKEN|criterion|tests/test_pubsub.c|--filter topic/overwrite_reports_exact_drops_in_order||1|
t4|TOPIC_TAIL_RELAXED|tsan|tests/stress/stress_pubsub.c||topic mix|1|
t5|TOPIC_UNSUB_NO_LOCK|verify|tests/verify/verify_pubsub.c||topic_unsub_during_publish|1|
t6|TOPIC_PRUNE_KEEPS_STAR|criterion|tests/test_pubsub.c|--filter topic/pruned_wildcard_leaves_no_trace||1|
t7|TOPIC_PRUNE_KEEPS_GT|criterion|tests/test_pubsub.c|--filter topic/pruned_wildcard_leaves_no_trace||1|
t8|TOPIC_CLOSE_NO_MARK|criterion|tests/test_pubsub.c|--filter topic/close_drains_then_closes_and_wakes_everyone||1|'

t0=$(date +%s)
: >$B/.tally # the loop below runs in a subshell (a pipe): it tallies here

# build KIND SRC BIN DEFS: 0 when built
build() {
    case "$1" in
    tsan) $CC $4 $TSAN "$2" -o "$3" -pthread ;;
    plain) $CC $4 $PLAIN "$2" -o "$3" -pthread ;;
    criterion) $CC $4 $CRIT "$2" -o "$3" $(crit_libs) -pthread ;;
    verify|c11) $CC $4 $PLAIN "$2" -o "$3" ;;
    esac
}

# run BIN LOG ARGS FILTER SCALE [VF_MODE]: the checker's exit status (124 =
# killed by timeout)
run_checker() {
    lim=$((MUTANT_TIMEOUT * 4 + 30))
    VF_MODE=${6:-} TSAN_OPTIONS="halt_on_error=1 exitcode=66" STRESS_SCALE=${5:-$MUTANT_SCALE} \
        STRESS_TIMEOUT=$MUTANT_TIMEOUT STRESS_FILTER="$4" VF_ONLY="$4" \
        timeout -k 5 $lim "$1" $3 >"$2" 2>&1
}

# how LOG RC: one phrase saying how the checker failed
how() {
    case "$2" in
    66) w=$(grep -m1 'WARNING: ThreadSanitizer:' "$1" | sed 's/.*ThreadSanitizer: //; s/ (pid=.*//')
        echo "TSan report ($w)" ;;
    124|137) echo "hang (killed by timeout)" ;;
    *)  if grep -q '^FAIL .*\[\(SC\|TSO\|C11\), bound' "$1"; then
            grep -m1 '^FAIL ' "$1" | sed 's/^FAIL //; s/ (tests[^)]*)//' | cut -c1-150
            return
        fi
        w=$(grep -m1 -E ': (CHECK FAILED|WATCHDOG[^:]*)|\[FAIL\]' "$1" |
            sed 's/^[^:]*: //; s/^\[FAIL\] //')
        d=$(grep -m1 -E '^  at |^\[----\] .*(assert|step)' "$1" | sed 's/^ *//; s/^\[----\] *//')
        detail=$(grep -A5 -E 'CHECK FAILED' "$1" | sed -n '5p' | sed 's/^ *//')
        echo "rc=$2 ${w:-failed}${d:+, $d}${detail:+: $detail}" ;;
    esac
}

echo "mutants: CC=$CC AP_TEST_SEED=$AP_TEST_SEED STRESS_SCALE=$MUTANT_SCALE STRESS_TIMEOUT=$MUTANT_TIMEOUT"
echo "$TABLE" | while IFS='|' read -r id name kind src args filter runs scale; do
    [ -n "$id" ] || continue
    if [ -n "${MUTANTS:-}" ]; then
        case " $MUTANTS " in *" $id "*) ;; *) continue ;; esac
    fi
    chk="$(basename "$src" .c) ($kind${filter:+, $filter})"
    vfmode=""; [ "$kind" = c11 ] && vfmode=c11
    bin=$B/$(basename "$src" .c)-$kind-m$id
    log=$bin.log
    s=$(date +%s)
    scratch=$B/src-$name; rm -rf "$scratch"; mkdir -p "$scratch"
    cp -r asyncpat.h asyncpat "$scratch"/
    if ! (cd "$scratch" && patch -s -p1 <"$OLDPWD/tests/mutants/$name.patch"); then
        printf '  %s %-24s PATCH FAILED\n' "$id" "$name"; echo broken >>$B/.tally; continue
    fi
    defs="-I$scratch"
    if ! out=$(build $kind "$src" "$bin" "$defs" 2>&1); then
        printf '  %s %-24s BUILD FAILED\n%s\n' "$id" "$name" "$out"; echo broken >>$B/.tally; continue
    fi
    if [ "$MUTANT_BASELINE" = 1 ]; then
        if ! out=$(build $kind "$src" "$bin-base" "" 2>&1); then
            printf '  %s %-24s BASELINE BUILD FAILED\n%s\n' "$id" "$name" "$out"; echo broken >>$B/.tally; continue
        fi
        run_checker "$bin-base" "$log.base" "$args" "$filter" "$scale" "$vfmode"; rc=$?
        if [ $rc -ne 0 ]; then
            printf '  %s %-24s BASELINE FAILED (%s): the checker fails without the mutant\n' \
                "$id" "$name" "$(how "$log.base" $rc)"
            tail -n 15 "$log.base"; echo broken >>$B/.tally; continue
        fi
    fi
    n=0
    while :; do
        n=$((n + 1))
        run_checker "$bin" "$log" "$args" "$filter" "$scale" "$vfmode"; rc=$?
        [ $rc -eq 0 ] && [ $n -lt "${runs:-1}" ] || break
    done
    [ "${runs:-1}" -gt 1 ] && chk="$chk, run $n of <= $runs"
    if [ $rc -eq 0 ]; then
        printf '  %s %-24s SURVIVED %s (%ss)\n' "$id" "$name" "$chk" "$(( $(date +%s) - s ))"
        echo survived >>$B/.tally
    else
        printf '  %s %-24s caught by %s: %s (%ss)\n' "$id" "$name" "$chk" "$(how "$log" $rc)" \
            "$(( $(date +%s) - s ))"
        echo caught >>$B/.tally
        if [ "$kind" = c11 ]; then
            # control, not counted: the scenario's SC and TSO runs
            run_checker "$bin" "$log.sctso" "$args" "${filter%_tso}" "$scale" ""; rc=$?
            if [ $rc -eq 0 ]; then
                printf '     control: SC and TSO miss it (%s: %s runs pass)\n' "${filter%_tso}" \
                    "$(grep -c '^ok ' "$log.sctso")"
            else
                printf '     control: SC/TSO catch it too: %s\n' "$(how "$log.sctso" $rc)"
            fi
        fi
    fi
done
caught=$(grep -c '^caught$' $B/.tally); survived=$(grep -c '^survived$' $B/.tally)
broken=$(grep -c '^broken$' $B/.tally)
rm -f $B/.tally
extra=""; [ "$broken" -gt 0 ] && extra=", $broken checker(s) broken"
echo "mutants: $caught caught, $survived survived$extra ($(( $(date +%s) - t0 ))s)"
[ "$survived" -eq 0 ] && [ "$broken" -eq 0 ] && [ "$caught" -gt 0 ]
