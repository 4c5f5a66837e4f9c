#!/bin/sh
# Docs that compile (issue #11): every example in the documentation is code
# that a test or an example builds with -Werror, so it cannot rot.
#
#  (a) every asyncpat/*.h whose header comment has a USAGE block: the block
#      (the lines after " * USAGE ..." -- a parenthesised heading may run on
#      over several lines -- up to the next section heading (" * GUARANTEES",
#      any " * " followed by three capitals) or the end of the comment, less
#      the " *" prefix) must equal, line by line, what one tests/test_*.c holds
#      between "/* USAGE begin */" and "/* USAGE end */" (tests/test_usage.c
#      holds the blocks no pattern's own test holds; lines between
#      "/* USAGE pause */" and "/* USAGE resume */" inside a region are test
#      scaffolding, not part of the copy);
#  (b) every ```c block in README.md: each of its non-empty lines must be a
#      line of examples/*.c or of tests/test_usage.c (README snippets are cut
#      from those). An elision line ("..." or "...count words...") is exempt.
#  (c) every ```c block in docs/*.md (one page per family of patterns): the
#      whole block must equal one tests/test_*.c marked region (the same
#      regions as (a): a page shows a header's USAGE block, held by a test);
#  (d) every asyncpat/*.h with a USAGE block is shown on some docs/*.md page,
#      and every docs/*.md page is linked from README.md.
#
# Compared whitespace-normalised: leading and trailing blanks dropped, runs of
# blanks made one space, blank lines ignored. Prints one line per header and
# per README block, "ok" or "FAIL" (with a diff against the nearest test copy
# or the lines not found), then "docs: N passed, N failed"; exits non-zero on
# any failure. POSIX sh, awk, sed, diff; no compiler needed.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/apdocs.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT HUP INT TERM
pass=0; fail=0

# norm: whitespace-normalise stdin, dropping blank lines
norm() {
    sed -e 's/[[:space:]][[:space:]]*/ /g' -e 's/^ //' -e 's/ $//' | sed '/^$/d'
}

# ---- (a) header USAGE blocks ----

# every marked region of every test, one file each: $tmp/regions/<test>.<k>
mkdir "$tmp/regions"
for t in tests/test_*.c; do
    [ -f "$t" ] || continue
    awk -v out="$tmp/regions/$(basename "$t" .c)" '
        /\/\* USAGE begin \*\//  { if (inr) { print "unclosed USAGE begin before line " FNR > "/dev/stderr" }
                                   inr = 1; k++; f = out "." k; printf "" > f; next }
        /\/\* USAGE end \*\//    { if (inr) close(f); inr = 0; paused = 0; next }
        /\/\* USAGE pause \*\//  { paused = 1; next }
        /\/\* USAGE resume \*\// { paused = 0; next }
        inr && !paused          { print > f }
    ' "$t"
done
for r in "$tmp"/regions/*; do
    [ -f "$r" ] || continue
    norm < "$r" > "$r.n" && mv "$r.n" "$r"
done

nheaders=0
for h in asyncpat/*.h; do
    [ -f "$h" ] || continue
    # the block: after the USAGE line (and the heading's run-on lines while
    # its parentheses are open) up to the "*/" that ends the comment
    awk '
        function depth(s,   o, c) { o = gsub(/\(/, "(", s); c = gsub(/\)/, ")", s); return o - c }
        !found && /^ \* USAGE([ (]|$)/ { found = 1; d = depth($0); inb = 1; next }
        inb && d > 0                    { d += depth($0); next }
        inb && /^ \* [A-Z][A-Z][A-Z]/  { exit }
        inb {
            last = index($0, "*/") > 0
            if (last) sub(/\*\/.*/, "")
            sub(/^[ \t]*\*/, "")
            print
            if (last) exit
        }
    ' "$h" | norm > "$tmp/block"
    grep -q . "$tmp/block" 2>/dev/null || continue
    nheaders=$((nheaders + 1))
    held=""
    for r in "$tmp"/regions/*; do
        [ -f "$r" ] || continue
        if cmp -s "$tmp/block" "$r"; then held=${r##*/}; break; fi
    done
    if [ -n "$held" ]; then
        pass=$((pass + 1))
        printf 'ok    %-28s USAGE held by tests/%s.c\n' "$h" "${held%.*}"
        continue
    fi
    fail=$((fail + 1))
    # the nearest copy: the region sharing the most lines with the block
    best=""; bestn=0
    for r in "$tmp"/regions/*; do
        [ -f "$r" ] || continue
        n=$(awk 'NR == FNR { want[$0] = 1; next } ($0 in want) { n++ } END { print n + 0 }' \
                "$tmp/block" "$r")
        if [ "$n" -gt "$bestn" ]; then best=$r; bestn=$n; fi
    done
    total=$(wc -l < "$tmp/block")
    if [ -n "$best" ] && [ $((2 * bestn)) -ge "$total" ]; then
        b=${best##*/}
        printf 'FAIL  %-28s USAGE differs from the copy in tests/%s.c (- header, + test):\n' "$h" "${b%.*}"
        diff -u "$tmp/block" "$best" | sed -e '1,2d' -e 's/^/        /'
    else
        printf 'FAIL  %-28s USAGE is held by no tests/test_*.c between USAGE begin/end markers\n' "$h"
    fi
done

# a marker region that matches no header is stale too (a header lost its
# USAGE block, or the copy drifted and the header was fixed elsewhere):
# reported above as the nearest copy, so not counted twice here.

# ---- (b) README.md's C snippets ----

# every line of the sources README snippets are cut from
cat examples/*.c tests/test_usage.c 2>/dev/null | norm | sort -u > "$tmp/source_lines"

awk -v dir="$tmp" '
    /^```c[ \t]*$/ { inb = 1; k++; f = dir "/readme." k; printf "" > f; print k, FNR + 1 > (dir "/readme.index"); next }
    inb && /^```/  { inb = 0; close(f); next }
    inb            { print > f }
' README.md
if [ -f "$tmp/readme.index" ]; then
    while read -r k line; do
        norm < "$tmp/readme.$k" | grep -v -e '^\.\.\.$' -e '^\.\.\..*\.\.\.$' > "$tmp/snip"
        missing=$(awk 'NR == FNR { have[$0] = 1; next } !($0 in have)' "$tmp/source_lines" "$tmp/snip")
        if [ -z "$missing" ]; then
            pass=$((pass + 1))
            printf 'ok    README.md:%-18s C block %s cut from examples/*.c or tests/test_usage.c\n' "$line" "$k"
        else
            fail=$((fail + 1))
            printf 'FAIL  README.md:%-18s C block %s has lines in no examples/*.c nor tests/test_usage.c:\n' "$line" "$k"
            printf '%s\n' "$missing" | sed 's/^/        /'
        fi
    done < "$tmp/readme.index"
fi

# ---- (c) docs/*.md C blocks: each one a marked test region ----

for md in docs/*.md; do
    [ -f "$md" ] || continue
    rm -f "$tmp"/page.* "$tmp/page.index"
    awk -v dir="$tmp" '
        /^```c[ \t]*$/ { inb = 1; k++; f = dir "/page." k; printf "" > f; print k, FNR + 1 > (dir "/page.index"); next }
        inb && /^```/  { inb = 0; close(f); next }
        inb            { print > f }
    ' "$md"
    [ -f "$tmp/page.index" ] || continue
    while read -r k line; do
        norm < "$tmp/page.$k" > "$tmp/snip"
        held=""
        for r in "$tmp"/regions/*; do
            [ -f "$r" ] || continue
            case $r in *.n) continue ;; esac
            if cmp -s "$tmp/snip" "$r"; then held=${r##*/}; break; fi
        done
        if [ -n "$held" ]; then
            pass=$((pass + 1))
            printf 'ok    %-28s C block %s held by tests/%s.c\n' "$md:$line" "$k" "${held%.*}"
        else
            fail=$((fail + 1))
            printf 'FAIL  %-28s C block %s is no tests/test_*.c USAGE region (copy the header'"'"'s USAGE block, which a test holds)\n' "$md:$line" "$k"
        fi
    done < "$tmp/page.index"
done

# ---- (d) every USAGE block on a docs page; every page linked from the README ----

if [ -d docs ]; then
    for h in asyncpat/*.h; do
        grep -q '^ \* USAGE' "$h" || continue
        if grep -q "(\.\./$h)" docs/*.md 2>/dev/null; then pass=$((pass + 1))
        else fail=$((fail + 1)); printf 'FAIL  %-28s has a USAGE block but no docs/*.md page shows it\n' "$h"; fi
    done
    for md in docs/*.md; do
        [ -f "$md" ] || continue
        if grep -q "($md[)#]" README.md; then pass=$((pass + 1))
        else fail=$((fail + 1)); printf 'FAIL  %-28s is not linked from README.md\n' "$md"; fi
    done
fi

[ "$nheaders" -gt 0 ] || { echo "FAIL  no USAGE block found in asyncpat/*.h"; fail=$((fail + 1)); }
echo "docs: $pass passed, $fail failed"
[ $fail -eq 0 ]
