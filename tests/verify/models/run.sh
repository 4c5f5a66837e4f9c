#!/bin/sh
# tests/verify/models/run.sh -- check the Promela protocol models with spin
# (issue #6 section 2), and prove each negative control is caught
# (section 3).
#
#   sh tests/verify/models/run.sh        from anywhere; generated files go to
#                                        <repo>/build/models/<check>/ (or
#                                        $MODELS_BUILD), never the source tree
#
# Per check: spin -a, gcc -O2 pan.c, ./pan; pass/fail from pan's
# "errors: N" (and an incomplete search -- "max search depth too small" --
# fails). Safety runs are built with -DSAFETY -DNOCLAIM (assertions and
# invalid end states); LTL runs with the never claim, ./pan -a -f (weak
# fairness) -N <property>. Mutant runs must FAIL their check.
# Checks run two at a time (CI runner: 2 cores); prints one line per check,
# then "models: N passed, N failed"; exit 1 on any failure.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${MODELS_BUILD:-$root/build/models}
CC=${CC:-gcc}

if ! command -v spin >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "models: spin not found; installing it (apt-get install -y spin)"
        if ! apt-get install -y spin >/dev/null 2>&1; then
            apt-get update >/dev/null 2>&1 && apt-get install -y spin >/dev/null 2>&1
        fi
    fi
    if ! command -v spin >/dev/null 2>&1; then
        echo "models: spin not found; install it with: sudo apt-get install spin"
        exit 1
    fi
fi

mkdir -p "$build" || exit 1
t0=$(date +%s)

# run_check DIR NAME MODEL "SPIN FLAGS" MODE EXPECT
#   MODE: safety | ltl:<property>;  EXPECT: pass | fail
# writes $build/DIR/result: one line "ok ..." or "FAIL ..."
run_check() {
    d=$build/$1 id=$2 model=$3 flags=$4 mode=$5 expect=$6
    rm -rf "$d" && mkdir -p "$d" || return
    (
        IFS=' '   # the caller splits its list on newlines
        cd "$d" || exit 1
        # shellcheck disable=SC2086
        if ! spin $flags -a "$here/$model" >spin.log 2>&1; then
            echo "FAIL $id: spin -a failed (see $d/spin.log)" >result
            exit 0
        fi
        case $mode in
        safety)
            cflags="-DSAFETY -DNOCLAIM"
            args="-m1000000"
            what=safety
            ;;
        ltl:*)
            prop=${mode#ltl:}
            cflags="-DNFAIR=3"
            args="-a -f -N $prop -m1000000"
            what="ltl $prop"
            ;;
        esac
        # shellcheck disable=SC2086
        if ! $CC -O2 -w $cflags -o pan pan.c >cc.log 2>&1; then
            echo "FAIL $id: gcc pan.c failed (see $d/cc.log)" >result
            exit 0
        fi
        # shellcheck disable=SC2086
        ./pan $args >pan.out 2>&1
        errs=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' pan.out | head -n 1)
        states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' pan.out | head -n 1)
        secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\) seconds.*/\1/p' pan.out | head -n 1)
        why=$(grep -m 1 -E 'assertion violated|invalid end state|acceptance cycle|non-progress cycle' pan.out |
              sed 's/^pan:[0-9]*: *//; s/ (at depth [0-9]*)//')
        info="$what, ${states:-?} states, ${secs:-?} s"
        if [ -z "$errs" ]; then
            echo "FAIL $id ($info): no verdict from pan (see $d/pan.out)" >result
        elif grep -q 'max search depth too small' pan.out; then
            echo "FAIL $id ($info): search incomplete, max search depth too small" >result
        elif [ "$expect" = pass ]; then
            if [ "$errs" = 0 ]; then
                echo "ok   $id ($info)" >result
            else
                echo "FAIL $id ($info): $why (trail: $d)" >result
            fi
        else
            if [ "$errs" != 0 ]; then
                echo "ok   $id caught by $model $what ($why; ${states:-?} states, ${secs:-?} s)" >result
            else
                echo "FAIL $id survived $model $what (errors: 0, ${states:-?} states)" >result
            fi
        fi
    )
}

# The checks: ID MODEL "SPIN FLAGS" MODE EXPECT
checks='
circuit_breaker|circuit_breaker.pml||safety|pass
circuit_breaker.open_left|circuit_breaker.pml|-DNC=2|ltl:open_left|pass
circuit_breaker.half_left|circuit_breaker.pml|-DNC=2|ltl:half_left|pass
semaphore|semaphore.pml||safety|pass
semaphore.all_finish|semaphore.pml|-DNW=2|ltl:all_finish|pass
barrier|barrier.pml||safety|pass
barrier.all_finish|barrier.pml||ltl:all_finish|pass
waker|waker.pml||safety|pass
waker.all_finish|waker.pml||ltl:all_finish|pass
mutant SEM_LOAD_STORE|semaphore.pml|-DMUTANT_SEM_LOAD_STORE|safety|fail
mutant SEM_POLL_NO_RECHECK|semaphore.pml|-DMUTANT_SEM_POLL_NO_RECHECK|safety|fail
mutant CB_EARLY_PROBE_RELEASE|circuit_breaker.pml|-DMUTANT_CB_EARLY_PROBE_RELEASE|safety|fail
mutant WAITOP_NO_RECHECK|waker.pml|-DMUTANT_WAITOP_NO_RECHECK|safety|fail
mutant OLD_WAITOP_DROPS_WAKE|waker.pml|-DOLD_WAITOP_DROPS_WAKE|safety|fail
mutant NO_HEAVY|waker.pml|-DMUTANT_NO_HEAVY|safety|fail
mutant BAR_RELEASE_BEFORE_FN|barrier.pml|-DMUTANT_BAR_RELEASE_BEFORE_FN|safety|fail
'

dirof() { printf '%s' "$1" | tr ' +' '_-'; }

# two at a time
n=0
oldifs=$IFS
IFS='
'
for line in $checks; do
    IFS='|' read -r id model flags mode expect <<EOF
$line
EOF
    run_check "$(dirof "$id")" "$id" "$model" "$flags" "$mode" "$expect" &
    n=$((n + 1))
    if [ $((n % 2)) = 0 ]; then
        wait
    fi
done
IFS=$oldifs
wait

pass=0 fail=0
IFS='
'
for line in $checks; do
    IFS='|' read -r id model flags mode expect <<EOF
$line
EOF
    r=$build/$(dirof "$id")/result
    if [ -f "$r" ]; then
        res=$(cat "$r")
    else
        res="FAIL $id: no result"
    fi
    echo "$res"
    case $res in
    ok*) pass=$((pass + 1)) ;;
    *) fail=$((fail + 1)) ;;
    esac
done
IFS=$oldifs

echo "models: total $(($(date +%s) - t0)) s"
echo "models: $pass passed, $fail failed"
[ "$fail" = 0 ]
