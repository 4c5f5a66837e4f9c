#!/bin/sh
# Make sure what a stage needs is here. On Debian/Ubuntu as root, install the
# missing packages with apt-get; otherwise print the exact command and fail.
#   scripts/deps.sh test    gcc, clang, pkg-config, Criterion, spin, hiredis +
#                           redis-server, libpq + postgresql, cmake, meson,
#                           ninja-build, g++, git (required)
#   scripts/deps.sh bench   Concurrency Kit and liburcu (optional peers)
#   scripts/deps.sh cross   the cross toolchains of tests/cross.sh (optional):
#                           qemu-user, aarch64 by clang + the Debian arm64
#                           cross sysroot, i386 by gcc -m32 (gcc-multilib);
#                           gcc-multilib conflicts with gcc-aarch64-linux-gnu,
#                           so with that one installed i386 is gcc-i686-linux-gnu
#   scripts/deps.sh cross-missing   print the cross packages missing, nothing else
# The test stage also wants libuv1-dev and liburing-dev (optional: the
# examples examples/uv_*.c and examples/uring_*.c need them and are skipped,
# saying so, without them): installed as root with apt-get, else named.
set -u
stage=${1:-test}

missing_test() {
    m=""
    command -v pkg-config >/dev/null 2>&1 || m="$m pkg-config"
    command -v clang >/dev/null 2>&1 || m="$m clang"
    command -v spin >/dev/null 2>&1 || m="$m spin" # the protocol models
    # the build stage (tests/build.sh): CMake, meson and C++ consumers
    command -v cmake >/dev/null 2>&1 || m="$m cmake"
    command -v meson >/dev/null 2>&1 || m="$m meson"
    command -v ninja >/dev/null 2>&1 || m="$m ninja-build"
    command -v g++ >/dev/null 2>&1 || m="$m g++"
    command -v git >/dev/null 2>&1 || m="$m git"
    # clang's sanitizer runtimes (TSan/ASan for clang builds)
    if command -v clang >/dev/null 2>&1; then
        echo 'int main(void){return 0;}' > /tmp/ap_deps_probe.$$.c
        { clang -fsanitize=thread /tmp/ap_deps_probe.$$.c -o /tmp/ap_deps_probe.$$ >/dev/null 2>&1 &&
          printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}\n' \
              > /tmp/ap_deps_probe.$$.c &&
          clang -fsanitize=fuzzer /tmp/ap_deps_probe.$$.c -o /tmp/ap_deps_probe.$$ >/dev/null 2>&1; } \
            || m="$m libclang-rt-dev"
        rm -f /tmp/ap_deps_probe.$$ /tmp/ap_deps_probe.$$.c
    fi
    if ! pkg-config --exists criterion 2>/dev/null && [ ! -f /usr/include/criterion/criterion.h ]; then
        m="$m libcriterion-dev"
    fi
    # real servers for contrib/ and examples/{redis,pg}_pool (tests/servers.sh)
    pkg-config --exists hiredis 2>/dev/null || m="$m libhiredis-dev"
    command -v redis-server >/dev/null 2>&1 || m="$m redis-server"
    pkg-config --exists libpq 2>/dev/null || m="$m libpq-dev"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 ||
        m="$m postgresql"
    echo "$m"
}

missing_bench() {
    m=""
    cc=${CC:-cc}
    printf '#include <ck_ring.h>\nint main(void){return 0;}\n' | $cc -x c - -o /dev/null >/dev/null 2>&1 || m="$m libck-dev"
    printf '#include <urcu/wfcqueue.h>\nint main(void){return 0;}\n' | $cc -x c - -o /dev/null -lurcu-common >/dev/null 2>&1 || m="$m liburcu-dev"
    echo "$m"
}

missing_examples() {
    m=""
    pkg-config --exists libuv 2>/dev/null || m="$m libuv1-dev"
    pkg-config --exists liburing 2>/dev/null || m="$m liburing-dev"
    echo "$m"
}

# The cross toolchains (tests/cross.sh): what is missing, as apt packages.
missing_cross() {
    m=""
    command -v qemu-aarch64 >/dev/null 2>&1 || m="$m qemu-user"
    if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
        # clang --target=aarch64-linux-gnu: a linker, a libc and a libgcc for arm64
        command -v clang >/dev/null 2>&1 || m="$m clang"
        command -v aarch64-linux-gnu-ld >/dev/null 2>&1 || m="$m binutils-aarch64-linux-gnu"
        [ -f /usr/aarch64-linux-gnu/include/stdio.h ] || m="$m libc6-dev-arm64-cross"
        ls /usr/lib/gcc-cross/aarch64-linux-gnu/*/libgcc.a >/dev/null 2>&1 ||
            m="$m libgcc-$(gcc -dumpversion 2>/dev/null | cut -d. -f1)-dev-arm64-cross"
    fi
    if ! command -v i686-linux-gnu-gcc >/dev/null 2>&1 &&
       ! printf 'int main(void){return 0;}\n' | gcc -m32 -x c - -o /dev/null >/dev/null 2>&1; then
        if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
            m="$m gcc-i686-linux-gnu" # gcc-multilib would remove gcc-aarch64-linux-gnu
        else
            m="$m gcc-multilib"
        fi
    fi
    echo "$m"
}

opt=
case "$stage" in
cross-missing) missing_cross; exit 0 ;;
cross)
    m=$(missing_cross)
    [ -z "$m" ] && exit 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "deps: installing$m (optional: tests/cross.sh)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $m >/tmp/ap_deps_apt_cross.log 2>&1 ||
            echo "deps: apt-get install$m failed; tests/cross.sh skips what it cannot build"
    else
        echo "deps: optional$m not installed: tests/cross.sh skips those targets; to run them:"
        echo "    sudo apt-get install$m"
    fi
    exit 0 ;;
test)  need=$(missing_test); opt=$(missing_examples) ;;
bench) need=$(missing_bench) ;;
*) echo "deps.sh: unknown stage $stage" >&2; exit 2 ;;
esac
if [ -n "$opt" ]; then # optional: never fails the stage
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "deps: installing$opt (optional)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $opt >/tmp/ap_deps_apt_opt.log 2>&1 ||
            echo "deps: apt-get install$opt failed; the examples that need them are skipped"
    else
        echo "deps: optional$opt not installed: examples/uv_*.c and uring_*.c are skipped; to run them:"
        echo "    sudo apt-get install$opt"
    fi
fi
[ -z "$need" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing$need"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q $need >/tmp/ap_deps_apt.log 2>&1; then
        apt-get update -q >/dev/null 2>&1
        apt-get install -y -q $need >/tmp/ap_deps_apt.log 2>&1 || {
            tail -n 5 /tmp/ap_deps_apt.log
            echo "deps: apt-get install$need failed" >&2
            [ "$stage" = bench ] && exit 0 || exit 1
        }
    fi
    exit 0
fi

if [ "$stage" = bench ]; then
    echo "deps: peers not installed (benches run without them); to compare, run:"
    echo "    sudo apt-get install$need"
    exit 0
fi
echo "deps: missing$need. Install with:" >&2
echo "    sudo apt-get install$need" >&2
exit 1
