#!/bin/sh
# The shape of the public API and of the header docs (issue #17): what a
# reader sees first is what a user needs, and one header's names read alike.
#
# For every asyncpat/*.h (each must be in one of the tables below):
#
#  names  every public name the header declares -- function, typedef,
#         struct/union/enum tag, enum value, macro (lower or upper case) --
#         is one of the header's prefixes or starts with one and "_"
#         (ap_sem, ap_sem_try_acquire, AP_SEM_BYTES, AP_SEM_INITIALIZER).
#         Private names (ap__x, AP__X), the include guard and the feature
#         macros a header may define (_DEFAULT_SOURCE ...) are exempt.
#  enums  every value of a named public enum is AP_<ENUM>_<VALUE>, <ENUM>
#         being the enum type's name without "ap_", in capitals
#         (ap_breaker_state: AP_BREAKER_STATE_OPEN). ap_status (status.h)
#         and ap_poll (future.h) are the two exceptions: their values are the
#         library's vocabulary (AP_OK, AP_READY).
#  docs   a pattern header's top comment has the sections PATTERN, USAGE and
#         GUARANTEES, in that order, PATTERN first; an ORDERING section, if
#         the top comment has one, comes after the three (the long proofs
#         live below the API, after "---- implementation ----").
#         An infrastructure header (core, config, status, version, time,
#         future, waitlist) needs less: its top comment opens with
#         "asyncpat/<name>.h -- <one-line purpose>"; if it has PATTERN,
#         USAGE or GUARANTEES, the same order applies. Every header, pattern
#         or not: each public function has a doc comment right above its
#         first declaration (or above the group of declarations, with no
#         blank line between, that it belongs to).
#  type   a pattern header declares the type it is about as a typedef --
#         the one its first prefix names (ap_breaker for circuit_breaker.h)
#         unless the table names another -- and functions on it carry the
#         prefix: at least one public function whose first parameter is
#         that type is named <prefix>_*, and none is named otherwise.
#
# Prints one line per header and check, "ok" or "FAIL" with the names or
# sections at fault, then "shape: N passed, N failed"; exits non-zero on any
# failure. POSIX sh and awk; the C compiler's preprocessor (cc, gcc or
# clang, -fpreprocessed) only strips comments. SHAPE_DIR=dir checks a copy
# of the headers (how the checks are shown able to fail).
set -u
cd "$(dirname "$0")/.."
dir=${SHAPE_DIR:-asyncpat}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/apshape.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT HUP INT TERM
pass=0; fail=0

# header, kind (pattern | infra), the type the header is about ("-": the
# one the first prefix names), the prefixes. A type not named by the prefix:
#   retry.h      ap_retry_fut (the retrying future; ap_retry_state is its
#                decision engine): no ap_retry type
#   resilience.h ap_resil_fut (the composed call is a future): no ap_resil
# A second prefix needs a reason, given here:
#   retry.h   ap_rng: the seeded generator retry's jitter draws from (the
#             library has no hidden randomness, so the caller holds one)
#   pubsub.h  ap_sub: a subscriber's own cursor, a second object per reader
#   cancel.h  ap_tracker, ap_shutdown: the task tracker and the two-phase
#             shutdown that cancellation trees are used with (tokio ships
#             CancellationToken and TaskTracker together)
#   future.h  ap_deadline: ap_deadline_to_ms_timeout converts a deadline for
#             an event loop's timer (time.h owns ap_deadline)
#   waitlist.h AP_BARRIER_LIGHT/_HEAVY/_REGISTER: the asymmetric barrier's
#             override macros (config.h documents them). NOTE: they sit in
#             barrier.h's AP_BARRIER_ namespace; listed here until renamed.
#             ap_grant: the queued-grant machinery semaphore, pool and
#             connpool share
table() {
    cat <<'EOF'
spsc            pattern -            ap_spsc
mpmc            pattern -            ap_mpmc
semaphore       pattern -            ap_sem
token_bucket    pattern -            ap_tb
backpressure    pattern -            ap_bp
retry           pattern ap_retry_fut ap_retry ap_rng
circuit_breaker pattern -            ap_breaker
timeout         pattern -            ap_timeout
pool            pattern -            ap_pool
connpool        pattern -            ap_connpool
lifecycle       pattern -            ap_life
cancel          pattern -            ap_cancel ap_tracker ap_shutdown
window          pattern -            ap_window
aggregate       pattern -            ap_agg
split           pattern -            ap_split
barrier         pattern -            ap_barrier
fanout          pattern -            ap_fanout
work_steal      pattern -            ap_ws
batch           pattern -            ap_batch
cache           pattern -            ap_cache
prefetch        pattern -            ap_prefetch
pubsub          pattern -            ap_pubsub ap_sub
topic           pattern -            ap_topic
pipeline        pattern -            ap_pipeline
resilience      pattern ap_resil_fut ap_resil
core            infra   -            ap_allocator AP_CONTAINER_OF
config          infra   -            AP
status          infra   -            ap_status AP_STATUS
version         infra   -            AP_VERSION
time            infra   -            ap_time ap_now_ns ap_clock ap_deadline AP_NS_PER AP_DEADLINE AP_CLOCK
future          infra   -            ap_future ap_poll ap_waker ap_cx ap_block_on AP_WAKER ap_deadline
waitlist        infra   -            ap_waitlist ap_waiter ap_waitop ap_grant AP_WAITLIST AP_WAITER AP_BARRIER_LIGHT AP_BARRIER_HEAVY AP_BARRIER_REGISTER
EOF
}

say() { # ok|FAIL header check text
    if [ "$1" = ok ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
    printf '%-5s %-28s %-6s %s\n' "$1" "$2" "$3" "$4"
}

strip_comments() { # file -> stdout, comments gone, lines kept where possible
    for cc in ${CC:-} cc gcc clang; do
        if "$cc" -fpreprocessed -dD -E -P -x c "$1" 2>/dev/null; then return 0; fi
    done
    echo "shape.sh: no C compiler could strip comments from $1" >&2
    return 1
}

# names: print "kind name [enum]" for every name declared at file scope:
#   macro NAME | func NAME | type NAME | tag NAME | enumval NAME ENUMNAME
names() {
    awk '
    # join continuation lines; directives are handled whole
    { line = $0
      while (line ~ /\\$/ && (getline nxt) > 0) { sub(/\\$/, "", line); line = line " " nxt }
      if (line ~ /^[ \t]*#/) {
          if (match(line, /^[ \t]*#[ \t]*define[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
              n = substr(line, RSTART, RLENGTH); sub(/.*define[ \t]+/, "", n)
              print "macro", n
          }
          next
      }
      gsub(/"([^"\\]|\\.)*"/, " \"\" ", line)    # strings: no braces inside
      gsub(/'"'"'([^'"'"'\\]|\\.)*'"'"'/, " 0 ", line)
      while (line != "") {
          if (match(line, /^[ \t]+/)) { line = substr(line, RLENGTH + 1); continue }
          if (match(line, /^[A-Za-z_][A-Za-z0-9_]*/) || match(line, /^[0-9][A-Za-z0-9_.]*/) ||
              match(line, /^""/)) { tok(substr(line, 1, RLENGTH)); line = substr(line, RLENGTH + 1); continue }
          tok(substr(line, 1, 1)); line = substr(line, 2)
      }
    }
    function isid(t) { return t ~ /^[A-Za-z_][A-Za-z0-9_]*$/ && !(t in kw_) }
    function isfname(t) { return isid(t) && !upper_only(t) && !(t in notfn) }
    BEGIN {
        split("enum struct union const volatile static inline extern typedef signed unsigned restrict _Atomic", k, " ")
        for (i in k) kw_[k[i]] = 1
        split("sizeof offsetof __attribute__ _Alignof alignof _Alignas __typeof__ typeof defined _Static_assert static_assert __declspec __extension__", k, " ")
        for (i in k) notfn[k[i]] = 1
    }
    # first parameter type of the call/declaration whose "(" is s[i]
    function param1(i,   j) {
        for (j = i + 1; j <= n && s[j] != ")" && s[j] != ","; j++)
            if (isid(s[j]) && s[j] != "void") return s[j]
        return "-"
    }
    function upper_only(t) { return t ~ /^[A-Z0-9_]+$/ }
    function reset() { n = 0; body = ""; enumname = ""; inenum = 0 }
    function finish(   i, first, name, j) {
        # a statement at file scope, tokens s[1..n]
        if (n == 0) return
        first = s[1]
        if (first == "using" || first == "namespace") { reset(); return }
        # a macro invocation (AP_STATIC_ASSERT(...);) declares nothing
        if (upper_only(first) && s[2] == "(") { reset(); return }
        if (first == "typedef") {
            name = ""
            for (i = 1; i + 2 <= n; i++)
                if (s[i] == "(" && s[i + 1] == "*" && isid(s[i + 2])) { name = s[i + 2]; break }
            if (name == "")
                for (i = n; i >= 1; i--) if (isid(s[i])) { name = s[i]; break }
            if (name != "") print "type", name
            reset(); return
        }
        # a function: the first lower-case identifier followed by "("
        for (i = 1; i < n; i++)
            if (s[i + 1] == "(" && isfname(s[i])) { print "func", s[i], param1(i + 1); reset(); return }
        # an object declaration: the identifier before "=" or the end
        if (first != "AP_STATIC_ASSERT" && first != "static_assert" && first != "_Static_assert") {
            for (i = 1; i <= n; i++) if (s[i] == "=" || s[i] == "[") break
            if (i - 1 >= 1 && isid(s[i - 1]) && !upper_only(s[i - 1])) print "var", s[i - 1]
        }
        reset()
    }
    function tok(t,   i) {
        if (depth > 0) {
            if (t == "{") depth++
            else if (t == "}") {
                depth--
                if (depth == 0) { inenum = 0; if (fnbody) { fnbody = 0; reset() } }
            } else if (inenum && depth == 1) {
                if (t == "(") pd++
                else if (t == ")") pd--
                else if (pd == 0 && (expect_val || prevtok == "{") && isid(t)) { print "enumval", t, enumname; expect_val = 0 }
                if (pd == 0 && t == ",") expect_val = 1
            }
            prevtok = t
            return
        }
        # file scope
        if (t == "(") pd++
        if (t == ")") {
            pd--
            # a macro invocation standing alone: NAME(...) with no ";"
            if (pd == 0 && n >= 1 && upper_only(s[1]) && s[2] == "(" && s[1] !~ /^AP_STATIC_ASSERT$/) {
                n++; s[n] = t
                # look ahead is not possible: end it here unless a ";" follows
                pending_macro = 1
                prevtok = t
                return
            }
        }
        if (pending_macro) {
            pending_macro = 0
            if (t == ";") { reset(); prevtok = t; return }
            reset()
        }
        if (t == ";" && pd == 0) { finish(); prevtok = t; return }
        if (t == "{" && pd == 0) {
            depth = 1; pd = 0
            # what opens the body: a function, an enum, a struct/union
            isfn = 0; kw = ""
            tagname = ""
            for (i = 1; i <= n; i++) {
                if (s[i] == "(") { isfn = 1; break }
                if (s[i] == "enum" || s[i] == "struct" || s[i] == "union") {
                    kw = s[i]; if (i < n && isid(s[i + 1])) tagname = s[i + 1]
                }
            }
            if (isfn) kw = ""   # a function returning a struct: not a tag
            else if (tagname != "") print "tag", tagname
            if (isfn && kw == "") { fnbody = 1; finish_fn(); prevtok = t; return }
            if (kw == "enum") {
                inenum = 1; expect_val = 1
                enumname = (isid(s[n]) && s[n] != "enum") ? s[n] : "?"
            }
            n++; s[n] = "{}"
            prevtok = t
            return
        }
        n++; s[n] = t
        prevtok = t
    }
    function finish_fn(   i) {
        for (i = 1; i < n; i++)
            if (s[i + 1] == "(" && isfname(s[i])) { print "func", s[i], param1(i + 1); break }
        n = 0
    }
    END { }
    ' "$1" | awk '
        # the enum name of a typedef enum comes after its body: fix it up
        $1 == "enumval" { vals[++nv] = $2; en[nv] = $3; next }
        $1 == "type" && nv > 0 { for (i = 1; i <= nv; i++) if (en[i] == "?" || en[i] == "") en[i] = $2
                                   for (i = 1; i <= nv; i++) print "enumval", vals[i], en[i]; nv = 0 }
        { print }
        END { for (i = 1; i <= nv; i++) print "enumval", vals[i], (en[i] == "" ? "?" : en[i]) }
    '
}

# the top comment's section headings, in order (" * WORD" lines)
sections() {
    awk 'NR == 1 && !/^\/\*/ { exit }
         /^ \* [A-Z][A-Z][A-Z]/ { w = $2; if (w == "THE") w = w "_" $3; print w }
         /\*\// { exit }' "$1"
}

# functions without a doc comment above their first declaration (raw text)
undocumented() {
    awk -v list="$2" '
        BEGIN { m = split(list, want, " "); for (i = 1; i <= m; i++) need[want[i]] = 1 }
        /^[ \t]*$/ { doc = 0; next }
        /\*\/[ \t]*$/ || /^[ \t]*\/\// { doc = 1; next }
        /^AP_API|^AP_FORCE_INLINE|^static|^AP__COLD/ {
            t = $0
            while (t !~ /\(/ && (getline nx) > 0) t = t " " nx
            sub(/\(.*/, "", t); gsub(/[*]/, " ", t); k = split(t, w, /[ \t]+/); f = w[k]
            if ((f in need) && !(f in seen)) { seen[f] = 1; if (!doc) printf "%s ", f }
            next   # a group of declarations keeps the doc flag
        }
        { doc = doc && /^[ \t]/ }   # a declaration continued over lines
    ' "$1"
}

table > "$tmp/table"
for h in "$dir"/*.h; do
    [ -f "$h" ] || continue
    b=$(basename "$h" .h)
    row=$(awk -v b="$b" '$1 == b' "$tmp/table")
    if [ -z "$row" ]; then
        say FAIL "$h" names "not in tests/shape.sh's table: add it (pattern or infra, its prefixes)"
        continue
    fi
    set -- $row; kind=$2; main=$3; shift 3; prefixes="$*"
    [ "$main" = - ] && main=$1
    if ! strip_comments "$h" > "$tmp/$b.c"; then say FAIL "$h" names "could not strip comments"; continue; fi
    names "$tmp/$b.c" | sort -u > "$tmp/$b.names"
    guard=ASYNCPAT_$(echo "$b" | tr 'a-z' 'A-Z')_H

    # ---- names ----
    # POSIX functions that strict ISO C hides and time.h/future.h declare
    # themselves (the glibc/musl prototypes): re-declarations, not names
    bad=$(awk -v pfx="$prefixes" -v guard="$guard" -v posix="clock_gettime nanosleep syscall pthread_condattr_setclock" '
        BEGIN { np = split(pfx, p, " "); n = split(posix, q, " "); for (i = 1; i <= n; i++) libc[q[i]] = 1 }
        $1 == "func" && ($2 in libc) { next }
        function ok(name,   i, q) {
            for (i = 1; i <= np; i++) {
                q = p[i]
                if (name ~ /^[A-Z]/ && q ~ /^ap_/) q = toupper(q)   # AP_SEM_ for ap_sem
                if (name == q || index(name, q "_") == 1) return 1
            }
            return 0
        }
        $2 ~ /^(ap__|AP__)/ || $2 == guard || $2 ~ /^_[A-Z]/ { next }
        $1 == "enumval" && ($3 == "ap_status" || $3 == "ap_poll") { next }
        !ok($2) { printf "%s(%s) ", $2, $1 }
    ' "$tmp/$b.names")
    if [ -z "$bad" ]; then say ok "$h" names "$(wc -l < "$tmp/$b.names" | tr -d ' ') names, prefix $prefixes"
    else say FAIL "$h" names "outside $prefixes: $bad"; fi

    # ---- enums ----
    bad=$(awk '
        $1 != "enumval" || $2 ~ /^AP__/ || $3 == "ap_status" || $3 == "ap_poll" { next }
        $3 == "?" { printf "%s(anonymous public enum) ", $2; next }
        { e = toupper(substr($3, 4)); if (index($2, "AP_" e "_") != 1) printf "%s(not AP_%s_*) ", $2, e }
    ' "$tmp/$b.names")
    nenum=$(awk '$1 == "enumval" && $2 !~ /^AP__/' "$tmp/$b.names" | wc -l | tr -d ' ')
    if [ -z "$bad" ]; then say ok "$h" enums "$nenum values"
    else say FAIL "$h" enums "$bad"; fi

    # ---- docs ----
    secs=$(sections "$h" | tr '\n' ' ')
    prob=$(echo "$secs" | awk -v kind="$kind" '{
        for (i = 1; i <= NF; i++) if (!($i in at)) at[$i] = i
        if (kind == "pattern") {
            if (!("PATTERN" in at) || !("USAGE" in at) || !("GUARANTEES" in at)) { print "missing one of PATTERN, USAGE, GUARANTEES"; exit }
            if (at["PATTERN"] != 1) { print "PATTERN is not the first section"; exit }
        }
        if (("USAGE" in at) && ("PATTERN" in at) && at["USAGE"] < at["PATTERN"]) { print "USAGE before PATTERN"; exit }
        if (("GUARANTEES" in at) && ("USAGE" in at) && at["GUARANTEES"] < at["USAGE"]) { print "GUARANTEES before USAGE"; exit }
        if (("GUARANTEES" in at) && ("PATTERN" in at) && at["GUARANTEES"] < at["PATTERN"]) { print "GUARANTEES before PATTERN"; exit }
        if ("ORDERING" in at)
            for (s in at) if ((s == "PATTERN" || s == "USAGE" || s == "GUARANTEES") && at[s] > at["ORDERING"]) { print "ORDERING before " s; exit }
    }')
    if [ "$kind" = infra ] && ! sed -n 2p "$h" | grep -q "^ \* asyncpat/$b\.h -- ."; then
        prob="${prob:+$prob; }top comment does not open with \"asyncpat/$b.h -- <purpose>\""
    fi
    funcs=$(awk '$1 == "func" && $2 !~ /^ap__/ { printf "%s ", $2 }' "$tmp/$b.names")
    undoc=$(undocumented "$h" "$funcs")
    [ -n "$undoc" ] && prob="${prob:+$prob; }no doc comment: $undoc"
    if [ -z "$prob" ]; then say ok "$h" docs "${secs:-(no sections)}"
    else say FAIL "$h" docs "$prob (sections: $secs)"; fi

    # ---- type ----
    if [ "$kind" = pattern ]; then
        pfx=$1
        if ! awk -v t="$main" '$1 == "type" && $2 == t { f = 1 } END { exit !f }' "$tmp/$b.names"; then
            say FAIL "$h" type "no typedef $main"
        else
            on=$(awk -v t="$main" -v p="$pfx" '$1 == "func" && $3 == t && index($2, p "_") == 1' "$tmp/$b.names" | wc -l | tr -d ' ')
            off=$(awk -v t="$main" -v p="$pfx" '$1 == "func" && $3 == t && $2 !~ /^ap__/ && index($2, p "_") != 1 { printf "%s ", $2 }' "$tmp/$b.names")
            if [ "$on" -gt 0 ] && [ -z "$off" ]; then say ok "$h" type "$main: $on functions ${pfx}_* take it first"
            elif [ -n "$off" ]; then say FAIL "$h" type "functions on $main not named ${pfx}_*: $off"
            else say FAIL "$h" type "no function ${pfx}_* takes a $main first"; fi
        fi
    fi
done

echo "shape: $pass passed, $fail failed"
[ $fail -eq 0 ]
