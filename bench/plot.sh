#!/bin/sh
# bench/plot.sh TSV [OUT.svg] -- draw every "speedup" row of a bench TSV
# (scenario.ours_vs_peer, median over the runs, with its min..max when the
# TSV has them) as a horizontal bar on a log scale, with the 1x line and the
# row's target where it has one. POSIX sh + awk; writes SVG to OUT (default
# stdout). `make bench` runs it on build/bench/latest.tsv; `make
# bench-publish` on bench/results/latest.tsv into docs/bench-speedups.svg,
# which README.md shows; the benchtable stage of `make test` checks that the
# committed SVG is what this script makes of the committed TSV.
set -eu
[ $# -ge 1 ] || { echo "usage: bench/plot.sh TSV [OUT.svg]" >&2; exit 2; }
tsv=$1
out=${2:-/dev/stdout}
[ -f "$tsv" ] || { echo "bench/plot.sh: no $tsv" >&2; exit 1; }

awk -F '\t' '
function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
function lg(v) { return log(v) / log(10) }
function xpos(v) {
    if (v < lo) v = lo; if (v > hi) v = hi
    return left + (lg(v) - lg(lo)) / (lg(hi) - lg(lo)) * width
}
/^# date: / { date = substr($0, 9) }
/^#/ { next }
$2 == "speedup" { n++; key[n] = $1; val[n] = $3 + 0 }
$2 == "speedup_min" { mn[$1] = $3 + 0 }
$2 == "speedup_max" { mx[$1] = $3 + 0 }
$2 == "target" { tg[$1] = $3 + 0 }
END {
    lo = 0.1; hi = 300; left = 330; width = 520; row = 15; top = 40
    h = top + n * row + 40
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"monospace\" font-size=\"10\">\n", left + width + 60, h
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"4\" y=\"14\" font-size=\"12\">asyncpat vs peers, same run: speedup (median; whisker min..max; | target), log scale. %s</text>\n", esc(date)
    split("0.1 0.3 1 3 10 30 100 300", ticks, " ")
    for (t = 1; t <= 8; t++) {
        x = xpos(ticks[t])
        printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\"/>\n", x, top - 6, x, top + n * row, ticks[t] == 1 ? "black" : "#ddd"
        printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%sx</text>\n", x, top - 8, ticks[t]
    }
    for (i = 1; i <= n; i++) {
        y = top + (i - 1) * row
        v = val[i]; x0 = xpos(1); x1 = xpos(v)
        color = v >= 1 ? "#4a7" : "#c54"
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 6, y + 11, esc(key[i])
        printf "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", (x1 < x0 ? x1 : x0), y + 3, (x1 < x0 ? x0 - x1 : x1 - x0), row - 5, color
        if ((key[i]) in mn && (key[i]) in mx)
            printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\"/>\n", xpos(mn[key[i]]), y + 7, xpos(mx[key[i]]), y + 7
        if ((key[i]) in tg)
            printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#36c\" stroke-width=\"2\"/>\n", xpos(tg[key[i]]), y + 1, xpos(tg[key[i]]), y + row - 1
        printf "<text x=\"%.1f\" y=\"%d\">%.2fx</text>\n", left + width + 4, y + 11, v
    }
    printf "</svg>\n"
}' "$tsv" > "$out"
