#!/bin/sh
# tests/build.sh -- asyncpat from every C and C++ build (issue #12).
#
# Each check builds a consumer and runs it; a consumer is tests/consumers/
# consumer.c (as main.c: <stdio.h> BEFORE asyncpat.h under strict -std=c11
# with warnings as errors, then an ap_mpmc between two threads, every value
# arriving exactly once; prints "consumer ok <version>") or consumer.cpp
# (the same from C++17). Everything happens in build/buildtest/ on copies:
# third_party/asyncpat (and subprojects/asyncpat) is a copy of the files git
# would ship (tracked plus untracked-but-not-ignored), so a file missing from
# the repository fails here. The checks:
#   readme      README.md's "Using it from your build": every marked cmake and
#               meson block is, line for line, in its tests/consumers/<name>/ file
#               (sh blocks are run below as they stand, /usr/local replaced by
#               a scratch prefix)
#   copy        the README's copy command
#   single      the README's `make single` command and the README's compile
#               line; the header alone under gcc and clang (-std=c11 strict)
#               and g++/clang++ (-std=c++17 strict); tests/consumers/single_smoke.c
#               (one smoke test per family) under gcc and clang; the file's
#               first lines give the version and the commit; it preprocesses
#               to exactly what asyncpat.h gives, and with each AP_NO_<NAME>
#               of asyncpat.h to the same lines and the same macros
#   pkgconfig   the README's `make install` + `pkg-config --cflags --libs`
#               lines; asyncpat.pc has Libs: -pthread
#   cmake_subdir  add_subdirectory (C, strict C11)
#   cmake_install the README's `cmake --install` line; then both installs
#               hold the same files, byte for byte but for the prefix path
#               (asyncpatTargets.cmake: CMake writes its own, so compared by
#               the target's properties instead), and so does `meson install`
#   cmake_find  find_package after `cmake --install`, and after `make install`
#               (the two imported targets' properties must be equal)
#   version     which find_package(asyncpat <v>) requests are satisfied
#   cmake_fetch FetchContent from a local git repository (no network)
#   cmake_cxx   a C++ CMake project (LANGUAGES CXX, C only in a subdirectory):
#               find_package and add_subdirectory
#   meson_sub   meson subproject (C strict C11 and C++17)
#   examples    ASYNCPAT_BUILD_EXAMPLES=ON and meson -Dexamples=true build
#   uninstall   make uninstall leaves no file behind
# Everything (README.md, tests/consumers/, the build files) is read from the
# copy, so a negative control can break the copy and leave the checkout alone:
#   BUILD_MUTATE='sed -i /Threads::Threads/d CMakeLists.txt' sh tests/build.sh
# runs that command in the copy first (see the report of issue #12 for the
# controls tried). Ends with "build: N passed, N failed"; exits non-zero on
# any failure.
# Needs cmake, meson, ninja, pkg-config, gcc, g++, clang, clang++, git
# (scripts/deps.sh test installs them).
set -u
cd "$(dirname "$0")/.." || exit 2
root=$PWD
B=$root/build/buildtest
rm -rf "$B" && mkdir -p "$B" || exit 2
pass=0; fail=0
ok() { pass=$((pass + 1)); printf 'ok    %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %s\n' "$*"; }
# step NAME CMD...: run CMD with its output in $B/NAME.log; on failure show its tail
step() {
    n=$1; shift
    if "$@" >"$B/$n.log" 2>&1; then return 0; fi
    echo "      ($n failed; the end of $B/$n.log:)"
    tail -n 15 "$B/$n.log" | sed 's/^/      | /'
    return 1
}
STRICT="-Wall -Wextra -Wpedantic -Werror"
v() { sed -n "s/^#define AP_VERSION_$1 *\([0-9][0-9]*\).*/\1/p" asyncpat/version.h; }
MAJ=$(v MAJOR); MIN=$(v MINOR); PAT=$(v PATCH)
version="$MAJ.$MIN.$PAT"
want_out="consumer ok $version"
export CMAKE_BUILD_PARALLEL_LEVEL=2 MAKEFLAGS=

missing=""
for t in cmake meson ninja pkg-config gcc g++ clang clang++ git make; do
    command -v $t >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
    bad "tools missing:$missing (sh scripts/deps.sh test installs them)"
    echo "build: $pass passed, $fail failed"
    exit 1
fi

# ---- the copy consumers get: what git would ship ----
src=$B/src
mkdir -p "$src"
if git rev-parse --git-dir >/dev/null 2>&1; then
    git ls-files -co --exclude-standard | while IFS= read -r f; do
        [ -f "$f" ] && printf '%s\n' "$f"
    done >"$B/files"
else
    find . -path ./build -prune -o -type f -print | sed 's|^\./||' >"$B/files"
fi
# tests/consumers/ is not ignored, but copy it even if git does not list it yet
tar -cf - -T "$B/files" tests/consumers | tar -xf - -C "$src" || { bad "copying the tree"; exit 1; }
if [ -n "${BUILD_MUTATE:-}" ]; then
    echo "note  BUILD_MUTATE (in the copy): $BUILD_MUTATE"
    (cd "$src" && sh -c "$BUILD_MUTATE") || { bad "BUILD_MUTATE failed"; exit 1; }
fi
T=$src/tests/consumers
# a git repository of the copy: for FetchContent and the single file's commit
G=$B/git
cp -R "$src" "$G"
rev=""
step git sh -c "cd '$G' && git init -q && git add -A &&
    git -c user.name=t -c user.email=t@t -c commit.gpgsign=false commit -q -m snapshot" &&
    rev=$(cd "$G" && git rev-parse HEAD)

# consumer NAME [cpp]: $B/NAME with tests/consumers/NAME/*, main.c (main.cpp),
# and third_party/asyncpat
consumer() {
    d=$B/$1
    mkdir -p "$d/third_party"
    [ -d "$T/$1" ] && cp -R "$T/$1"/. "$d/"
    cp "$T/consumer.c" "$d/main.c"
    cp "$T/consumer.cpp" "$d/main.cpp"
    cp -R "$src" "$d/third_party/asyncpat"
}
# runs BIN [what]: BIN prints exactly "consumer ok <version>"
runs() {
    out=$("$1" 2>&1); [ "$out" = "$want_out" ] && return 0
    echo "      $1 said: $out"; return 1
}

# ---- readme: the marked blocks of "Using it from your build" ----
norm() { sed -e 's/[[:space:]][[:space:]]*/ /g' -e 's/^ //' -e 's/ $//' | sed '/^$/d'; }
# block NAME: the fenced block after "<!-- build.sh: NAME -->"
block() {
    awk -v name="$1" '
        $0 == "<!-- build.sh: " name " -->" { want = 1; next }
        want && /^```/ { if (inb) exit; inb = 1; next }
        inb { print }
    ' "$src/README.md"
}
for name in cmake_subdir:CMakeLists.txt cmake_find:CMakeLists.txt \
            cmake_fetch:CMakeLists.txt meson_sub:meson.build; do
    n=${name%%:*}; f=tests/consumers/$n/${name#*:}; F=$src/$f
    block "$n" | norm >"$B/readme.$n"
    if [ ! -s "$B/readme.$n" ]; then bad "readme: no block marked <!-- build.sh: $n -->"; continue; fi
    norm <"$F" | sort -u >"$B/have.$n"
    miss=$(awk 'NR == FNR { h[$0] = 1; next } !($0 in h)' "$B/have.$n" "$B/readme.$n")
    if [ -z "$miss" ]; then ok "readme: block $n is what $f builds"
    else bad "readme: block $n has lines $f does not: $miss"; fi
done
for n in copy single pkgconfig cmake_install; do
    block "$n" >"$B/readme.$n"
    [ -s "$B/readme.$n" ] || bad "readme: no block marked <!-- build.sh: $n -->"
done
# sh NAME PREFIX: run README block NAME in $B/NAME, /usr/local -> PREFIX
readme_sh() {
    sed "s|/usr/local|$2|g" "$B/readme.$1" >"$B/$1/readme.sh"
    (cd "$B/$1" && sh -ex ./readme.sh)
}

# ---- copy ----
consumer copy
if step copy readme_sh copy /usr/local && step copy.run runs "$B/copy/app" &&
   step copy.strict sh -c "cd '$B/copy' && cc -std=c11 $STRICT -Ithird_party/asyncpat main.c -pthread -o app"; then
    ok "copy: cc -std=c11 -Ithird_party/asyncpat main.c -pthread (<stdio.h> first)"
else bad "copy"; fi

# ---- single file ----
consumer single
sed -i 's|#include "asyncpat.h"|#include "asyncpat_single.h"|' "$B/single/main.c" "$B/single/main.cpp"
S=$B/single/third_party/asyncpat_single.h
if step single readme_sh single /usr/local && step single.run runs "$B/single/app" &&
   step single.strict sh -c "cd '$B/single' && cc -std=c11 $STRICT -Ithird_party main.c -pthread -o app"; then
    ok "single: make single OUT=...; strict C11 consumer runs"
else bad "single: make single / consumer"; fi
if [ -f "$S" ]; then
    mkdir -p "$B/single/only" && cp "$S" "$B/single/only/"
    for c in gcc clang; do
        if step single.smoke.$c $c -std=c11 $STRICT -I"$B/single/only" "$T/single_smoke.c" \
                -o "$B/single/smoke_$c" -pthread &&
           step single.smoke.$c.run "$B/single/smoke_$c" &&
           [ "$(grep -c ' ok$' "$B/single.smoke.$c.run.log")" = 7 ]; then
            ok "single: $c -std=c11 strict, 7 families: $(tr '\n' ' ' <"$B/single.smoke.$c.run.log")"
        else bad "single: smoke under $c"; fi
    done
    printf '#include "asyncpat_single.h"\n' >"$B/single/tu.c"
    for c in g++ clang++; do
        if step single.cxx.$c $c -std=c++17 $STRICT -fsyntax-only -x c++ -I"$B/single/only" "$B/single/tu.c" &&
           step single.cxx.$c.build $c -std=c++17 $STRICT -I"$B/single/only" "$B/single/main.cpp" \
               -o "$B/single/app_$c" -pthread &&
           step single.cxx.$c.run runs "$B/single/app_$c"; then
            ok "single: $c -std=c++17 strict, C++ consumer runs"
        else bad "single: C++ under $c"; fi
    done
    # generated in a git checkout, the first lines name the version and the
    # commit; in a copy inside another repository (third_party/), "unknown"
    if [ -n "$rev" ] && step single.git make -C "$G" single OUT="$B/single/git_single.h" &&
       head -n 4 "$B/single/git_single.h" >"$B/single.head" &&
       grep -q "asyncpat $version" "$B/single.head" && grep -q "^ \*   $rev\$" "$B/single.head" &&
       head -n 4 "$S" | grep -q "unknown (not a git checkout)"; then
        ok "single: first lines name version $version and commit ${rev%"${rev#????????????}"} (a vendored copy: unknown)"
    else bad "single: first lines lack version $version or commit $rev"; fi
    # the same code as asyncpat.h: __FILE__ and __LINE__ pinned, blank lines dropped
    pin='-Wno-builtin-macro-redefined -D__FILE__="f" -D__LINE__=0'
    printf '#include "asyncpat.h"\n' >"$B/single/a.c"
    pp() { # pp TAG DEFS...: preprocess asyncpat.h and the single file
        t=$1; shift
        gcc -std=c11 "$@" $pin -E -P -I"$src" "$B/single/a.c" 2>/dev/null | grep -v '^[[:space:]]*$' >"$B/pp.a.$t" &&
        gcc -std=c11 "$@" $pin -E -P -I"$B/single/only" "$B/single/tu.c" 2>/dev/null | grep -v '^[[:space:]]*$' >"$B/pp.s.$t" &&
        gcc -std=c11 "$@" -dM -E -I"$src" "$B/single/a.c" | sort >"$B/dm.a.$t" &&
        gcc -std=c11 "$@" -dM -E -I"$B/single/only" "$B/single/tu.c" | sort >"$B/dm.s.$t"
    }
    if pp all && [ -s "$B/pp.a.all" ] && cmp -s "$B/pp.a.all" "$B/pp.s.all" && cmp -s "$B/dm.a.all" "$B/dm.s.all"; then
        ok "single: preprocesses to exactly asyncpat.h's $(wc -l <"$B/pp.a.all") lines and macros"
    else bad "single: preprocessed output differs from asyncpat.h's (diff $B/pp.a.all $B/pp.s.all)"; fi
    nos=$(sed -n 's/^#ifndef \(AP_NO_[A-Z0-9_]*\).*/\1/p' asyncpat.h)
    badno=""; nno=0
    for m in $nos; do
        nno=$((nno + 1))
        if pp "$m" -D"$m" && sort "$B/pp.a.$m" >"$B/x" && sort "$B/pp.s.$m" | cmp -s - "$B/x" &&
           cmp -s "$B/dm.a.$m" "$B/dm.s.$m"; then :; else badno="$badno $m"; fi
    done
    if [ "$nno" -gt 0 ] && [ -z "$badno" ]; then
        ok "single: with each of $nno AP_NO_* the same lines and macros as asyncpat.h"
    else bad "single: AP_NO_* differs from asyncpat.h for:$badno"; fi
fi

# ---- pkg-config after make install ----
consumer pkgconfig
PM=$B/prefix-make
PKG_CONFIG_PATH=$PM/lib/pkgconfig; export PKG_CONFIG_PATH
if step pkgconfig readme_sh pkgconfig "$PM" &&
   step pkgconfig.run runs "$B/pkgconfig/app"; then
    ok "pkgconfig: make install; cc \$(pkg-config --cflags --libs asyncpat), strict C11"
else bad "pkgconfig"; fi
if grep -qx 'Libs: -pthread' "$PM/lib/pkgconfig/asyncpat.pc" 2>/dev/null &&
   [ "$(pkg-config --modversion asyncpat)" = "$version" ]; then
    ok "pkgconfig: Libs: -pthread, version $version"
else bad "pkgconfig: asyncpat.pc lacks Libs: -pthread or version $version"; fi

# ---- CMake: add_subdirectory ----
consumer cmake_subdir
if step cmake_subdir cmake -S "$B/cmake_subdir" -B "$B/cmake_subdir/b" &&
   step cmake_subdir.build cmake --build "$B/cmake_subdir/b" &&
   step cmake_subdir.run runs "$B/cmake_subdir/b/app"; then
    ok "cmake_subdir: add_subdirectory, C_STANDARD 11, C_EXTENSIONS OFF, <stdio.h> first"
else bad "cmake_subdir"; fi

# ---- CMake install; the three installs compare ----
consumer cmake_install
PC=$B/prefix-cmake
if step cmake_install readme_sh cmake_install "$PC"; then
    ok "cmake_install: cmake -S ... && cmake --install ... --prefix"
else bad "cmake_install"; fi
PS=$B/prefix-meson
step meson_install sh -c "meson setup '$B/meson-install' '$src' --prefix='$PS' --libdir=lib &&
                         meson install -C '$B/meson-install' --quiet" || bad "meson install"
# files relative to a prefix, with the prefix's own path replaced
tree() { (cd "$1" && find . -type f | sort) 2>/dev/null; }
same_files() { # same_files A B: same list; same bytes but the prefix path
    [ -n "$(tree "$1")" ] && [ "$(tree "$1")" = "$(tree "$2")" ] || return 1
    for f in $(tree "$1"); do
        case $f in */asyncpatTargets.cmake) [ "$2" = "$PC" ] && continue ;; esac
        sed "s|$1|PREFIX|g" "$1/$f" >"$B/x1"; sed "s|$2|PREFIX|g" "$2/$f" >"$B/x2"
        cmp -s "$B/x1" "$B/x2" || { echo "      $f differs"; return 1; }
    done
}
if same_files "$PM" "$PC"; then
    ok "cmake_install: cmake --install and make install write the same $(tree "$PM" | wc -l) files"
else bad "cmake_install: cmake --install and make install differ ($PM, $PC)"; fi
if same_files "$PM" "$PS"; then
    ok "meson install and make install write the same $(tree "$PM" | wc -l) files, byte for byte"
else bad "meson install and make install differ ($PM, $PS)"; fi

# ---- CMake find_package, from each install ----
for p in cmake:"$PC" make:"$PM" meson:"$PS"; do
    k=${p%%:*}; pfx=${p#*:}
    consumer cmake_find_$k
    cp "$T/cmake_find"/* "$B/cmake_find_$k/"
    if step cmake_find_$k cmake -S "$B/cmake_find_$k" -B "$B/cmake_find_$k/b" -DCMAKE_PREFIX_PATH="$pfx" &&
       step cmake_find_$k.build cmake --build "$B/cmake_find_$k/b" &&
       step cmake_find_$k.run runs "$B/cmake_find_$k/b/app"; then
        ok "cmake_find: find_package(asyncpat CONFIG REQUIRED) after $k install"
    else bad "cmake_find: after $k install"; fi
    sed -n "s|^-- asyncpat-target: ||p" "$B/cmake_find_$k.log" | sed "s|$pfx|PREFIX|g" >"$B/target.$k"
done
if [ -s "$B/target.cmake" ] && cmp -s "$B/target.cmake" "$B/target.make" && cmp -s "$B/target.cmake" "$B/target.meson"; then
    ok "cmake_find: the three imported targets are equal: $(grep -c = "$B/target.cmake") properties, version $version"
else
    bad "cmake_find: imported targets differ between installs"
    diff "$B/target.cmake" "$B/target.make" | sed 's/^/      /'
fi

# ---- find_package(asyncpat <version>): SemVer, 0.y minors incompatible ----
mkdir -p "$B/version"
if [ "$MAJ" = 0 ]; then
    cases="0.$MIN:1 $version:1 0.$MIN.$((PAT + 1)):0 0.$((MIN + 1)):0 1.0:0 0.$MIN...0.$((MIN + 1)):1 0.$((MIN + 1))...0.$((MIN + 2)):0"
    [ "$MIN" -gt 0 ] && cases="$cases 0.$((MIN - 1)):0"
else
    cases="$MAJ:1 $version:1 $MAJ.0:1 $MAJ.$((MIN + 1)):0 $((MAJ + 1)).0:0 $((MAJ - 1)).0:0"
fi
vbad=""
for c in $cases; do
    w=${c%:*}; e=${c##*:}
    cmake -S "$T/cmake_version" -B "$B/version/b" -DWANT="$w" -DCMAKE_PREFIX_PATH="$PM" >"$B/version.log" 2>&1
    got=$(sed -n "s|^-- asyncpat-found: $w -> ||p" "$B/version.log")
    [ "$got" = "$e" ] || vbad="$vbad $w(got '${got}', want $e)"
done
if [ -z "$vbad" ]; then ok "version: $version satisfies exactly: $(echo "$cases" | tr ' ' '\n' | sed -n 's/:1$//p' | tr '\n' ' ')"
else bad "version: wrong answers:$vbad"; fi

# ---- CMake FetchContent from a local git repository ----
consumer cmake_fetch
if [ -n "$rev" ]; then
    sed -i -e "s|GIT_REPOSITORY .*|GIT_REPOSITORY file://$G|" -e "s|GIT_TAG .*|GIT_TAG $rev)|" \
        "$B/cmake_fetch/CMakeLists.txt"
    if step cmake_fetch cmake -S "$B/cmake_fetch" -B "$B/cmake_fetch/b" &&
       step cmake_fetch.build cmake --build "$B/cmake_fetch/b" &&
       step cmake_fetch.run runs "$B/cmake_fetch/b/app"; then
        ok "cmake_fetch: FetchContent_Declare(GIT_REPOSITORY file://...) + MakeAvailable"
    else bad "cmake_fetch"; fi
else bad "cmake_fetch: no local git repository"; fi

# ---- CMake, a C++-only project ----
consumer cmake_cxx
if step cmake_cxx cmake -S "$B/cmake_cxx" -B "$B/cmake_cxx/b" -DCMAKE_PREFIX_PATH="$PM" &&
   step cmake_cxx.build cmake --build "$B/cmake_cxx/b" &&
   step cmake_cxx.run runs "$B/cmake_cxx/b/app"; then
    ok "cmake_cxx: LANGUAGES CXX (C in a subdirectory), C++17, find_package"
else bad "cmake_cxx: find_package"; fi
if step cmake_cxx_sub cmake -S "$B/cmake_cxx" -B "$B/cmake_cxx/bs" -DUSE_SUBDIR=ON &&
   step cmake_cxx_sub.build cmake --build "$B/cmake_cxx/bs" &&
   step cmake_cxx_sub.run runs "$B/cmake_cxx/bs/app"; then
    ok "cmake_cxx: LANGUAGES CXX (C in a subdirectory), C++17, add_subdirectory"
else bad "cmake_cxx: add_subdirectory"; fi

# ---- meson subproject ----
consumer meson_sub
mkdir -p "$B/meson_sub/subprojects" && cp -R "$src" "$B/meson_sub/subprojects/asyncpat"
if step meson_sub meson setup "$B/meson_sub/b" "$B/meson_sub" --force-fallback-for=asyncpat &&
   step meson_sub.build meson compile -C "$B/meson_sub/b" &&
   step meson_sub.run runs "$B/meson_sub/b/app" && step meson_sub.runcpp runs "$B/meson_sub/b/app_cpp"; then
    ok "meson_sub: subproject asyncpat_dep, c_std=c11 werror, and C++17"
else bad "meson_sub"; fi
# threads come with asyncpat_dep (glibc links without, other libcs do not)
if grep -q -- '-pthread' "$B/meson_sub/b/build.ninja" 2>/dev/null; then
    ok "meson_sub: asyncpat_dep brings -pthread"
else bad "meson_sub: no -pthread from asyncpat_dep"; fi

# ---- the examples through CMake and meson ----
if step examples.cmake cmake -S "$src" -B "$B/ex-cmake" -DASYNCPAT_BUILD_EXAMPLES=ON &&
   step examples.cmake.build cmake --build "$B/ex-cmake" &&
   n=$(ls "$src"/examples/*.c | wc -l) && [ "$(cd "$B/ex-cmake" && ctest -N | sed -n 's/^Total Tests: //p')" -ge 1 ]; then
    ok "examples: CMake builds the $n examples (ctest lists their tests)"
else bad "examples: CMake (an example needing a new library? map its prefix in CMakeLists.txt's _ap_example_deps)"; fi
if step examples.meson meson setup "$B/ex-meson" "$src" -Dexamples=true &&
   step examples.meson.build meson compile -C "$B/ex-meson"; then
    ok "examples: meson builds the examples"
else bad "examples: meson (an example needing a new library? map its prefix in meson.build's _ap_example_deps)"; fi

# ---- uninstall ----
if step uninstall make -C "$src" uninstall PREFIX="$PM" && [ -z "$(tree "$PM")" ]; then
    ok "uninstall: make uninstall removes every installed file"
else bad "uninstall: files left in $PM: $(tree "$PM" | tr '\n' ' ')"; fi

echo "build: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
