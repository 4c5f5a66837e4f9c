#!/bin/sh
# tests/servers.sh -- contrib/ and connpool's server-facing parts against
# real servers this script's programs start themselves (redis-server on a
# temporary Unix socket); a server that cannot start is a FAILURE.
#   connpool_lifetime_leak  jittered lifetime + leak detection (fake clock),
#                           built with and without AP_DEBUG
#   redis_fleet             contrib/redis_rate_limit.h: exactness against
#                           ap_tb_try_acquire, 4 procs x 2 threads bound,
#                           fail closed / open under SIGSTOP and a restart
# The examples that need servers (examples/redis_pool, examples/pg_pool) are
# built by `make examples` and run by their .test files in the examples stage.
# Last line: "servers: N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 2
B=${BUILD:-build}/servers
mkdir -p "$B"
PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); }
STRICT="-std=c11 -Wall -Wextra -Wpedantic -Werror"
limit=; command -v timeout >/dev/null 2>&1 && limit="timeout 120"

for dbg in "" "-DAP_DEBUG"; do
    name=connpool_lifetime_leak${dbg:+_debug}
    if gcc $STRICT -O1 $dbg -I. tests/contrib/connpool_lifetime_leak.c -o "$B/$name" -pthread &&
        $limit "$B/$name"; then ok; else echo "FAIL: $name"; bad; fi
done

if ! pkg-config --exists hiredis 2>/dev/null; then
    echo "FAIL: redis_fleet: hiredis not installed (scripts/deps.sh test: libhiredis-dev redis-server)"; bad
elif ! command -v redis-server >/dev/null 2>&1; then
    echo "FAIL: redis_fleet: redis-server not installed (scripts/deps.sh test)"; bad
else
    for cc in gcc clang; do # the header builds strictly with both; run the gcc one
        if ! $cc $STRICT -O2 -I. $(pkg-config --cflags hiredis) tests/contrib/redis_fleet.c \
                -o "$B/redis_fleet_$cc" -pthread $(pkg-config --libs hiredis); then
            echo "FAIL: build redis_fleet with $cc"; bad
        fi
    done
    if [ -x "$B/redis_fleet_gcc" ] && $limit "$B/redis_fleet_gcc"; then ok; else echo "FAIL: redis_fleet"; bad; fi
fi
echo "servers: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
