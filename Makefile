# asyncpat -- header-only; this Makefile builds tests, benches and examples
# and installs the headers. Targets:
#   all (= examples), test, test-headers, test-asan, test-tsan, test-install,
#   test-cross, deps-cross,
#   test-mutants, test-fuzz, fuzz, verify, test-verify, test-models, bench,
#   bench-publish, examples, install, uninstall, single, clean
# `make bench` writes its results under build/bench/ only (latest.tsv;
# latest-pin.tsv with BENCH_PIN=split; partial.tsv with BENCH_ONLY), so it
# leaves the checkout clean. `make bench-publish` is the one step that
# changes tracked files: it copies build/bench/latest.tsv (and latest-pin.tsv
# when there is one) to bench/results/ and regenerates README.md's table
# from them with bench/report.sh.
PREFIX ?= /usr/local
DESTDIR ?=
includedir ?= $(PREFIX)/include
libdir ?= $(PREFIX)/lib
pkgconfigdir ?= $(libdir)/pkgconfig
datarootdir ?= $(PREFIX)/share
cmakedir ?= $(datarootdir)/cmake/asyncpat

CC ?= cc
STRICT := -std=c11 -Wall -Wextra -Wpedantic -Werror
BUILD := build

HEADERS := asyncpat.h $(wildcard asyncpat/*.h)
# examples/uv_*.c need libuv, examples/uring_*.c liburing: built only when
# pkg-config finds the library, else `make examples` says it skipped them
EXAMPLES_UV := $(wildcard examples/uv_*.c)
EXAMPLES_URING := $(wildcard examples/uring_*.c)
# examples/redis_pool.c needs hiredis, examples/pg_pool.c libpq (and their
# .test files a redis-server / PostgreSQL they start themselves): built only
# when pkg-config finds the library, else `make examples` says it skipped them
EXAMPLES_SERVERS := examples/redis_pool.c examples/pg_pool.c
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(filter-out $(EXAMPLES_UV) $(EXAMPLES_URING) $(EXAMPLES_SERVERS),$(wildcard examples/*.c)))
HAVE_HIREDIS := $(shell pkg-config --exists hiredis 2>/dev/null && echo yes)
HAVE_LIBPQ := $(shell pkg-config --exists libpq 2>/dev/null && echo yes)
HAVE_LIBUV := $(shell pkg-config --exists libuv 2>/dev/null && echo yes)
HAVE_LIBURING := $(shell pkg-config --exists liburing 2>/dev/null && echo yes)

VERSION := $(shell awk '/define AP_VERSION_MAJOR/{a=$$3}/define AP_VERSION_MINOR/{b=$$3}/define AP_VERSION_PATCH/{c=$$3}END{print a"."b"."c}' asyncpat/version.h)

.PHONY: single all test test-headers test-asan test-tsan test-install test-cross deps-cross test-fuzz test-mutants fuzz verify test-verify test-models bench bench-publish examples install uninstall clean deps

all: examples

# The whole suite, stopping at the first failing stage; ends with "N passed, N failed".
test:
	@sh tests/run.sh all

test-headers:
	@sh tests/run.sh headers

test-asan:
	@sh tests/run.sh asan

test-tsan:
	@sh tests/run.sh tsan

test-install:
	@sh tests/run.sh install

# Unit tests and stress programs on aarch64 (qemu-user) and i386 (-m32);
# skipped, saying what to install, without the cross toolchains
# (`make deps-cross` installs them as root). See tests/cross.sh.
test-cross:
	@sh tests/cross.sh

deps-cross:
	@sh scripts/deps.sh cross

# The verification layer (part of `make test`): the deterministic scheduler
# (tests/verify/verify_*.c) and the spin protocol models (tests/verify/models).
verify:
	@sh tests/run.sh verify && sh tests/run.sh models

test-verify:
	@sh tests/run.sh verify

test-models:
	@sh tests/run.sh models

# Every mutant patch (tests/mutants/*.patch) must be caught by its checkers (part of `make test`).
test-mutants:
	@sh tests/run.sh mutants

# Replay the committed fuzz corpus (part of `make test`) ...
test-fuzz:
	@sh tests/run.sh fuzz

# ... or fuzz every harness for FUZZ_TIME seconds (clang + libFuzzer).
FUZZ_TIME ?= 30
fuzz:
	@FUZZ_TIME=$(FUZZ_TIME) sh tests/fuzz/run.sh fuzz

deps:
	@sh scripts/deps.sh test

# Build and run every benchmark; results in build/bench/ (see bench/run.sh).
bench:
	@sh bench/run.sh

# Copy the last full run into bench/results/ and regenerate README.md's table.
bench-publish:
	@sh bench/report.sh --publish

examples: $(EXAMPLES) examples-uv examples-uring examples-servers

$(BUILD)/examples/%: examples/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(STRICT) -O2 -I. $< -o $@ -pthread

.PHONY: examples-uv examples-uring
ifeq ($(HAVE_LIBUV),yes)
examples-uv: $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLES_UV))
$(BUILD)/examples/uv_%: examples/uv_%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(STRICT) -O2 -I. $$(pkg-config --cflags libuv) $< -o $@ -pthread $$(pkg-config --libs libuv)
else
examples-uv:
	@echo "examples: skipped: libuv not installed, not built: $(EXAMPLES_UV) (apt-get install libuv1-dev)"
endif
ifeq ($(HAVE_LIBURING),yes)
examples-uring: $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLES_URING))
$(BUILD)/examples/uring_%: examples/uring_%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(STRICT) -O2 -I. $$(pkg-config --cflags liburing) $< -o $@ -pthread $$(pkg-config --libs liburing)
else
examples-uring:
	@echo "examples: skipped: liburing not installed, not built: $(EXAMPLES_URING) (apt-get install liburing-dev)"
endif

# Installs the headers, asyncpat.pc and the CMake package (find_package(asyncpat
# CONFIG)): the same files `cmake --install` and `meson install` write, except
# that CMake generates its own asyncpatTargets.cmake (tests/build.sh compares).
install: asyncpat.pc.in cmake/asyncpatConfig.cmake cmake/asyncpatConfigVersion.cmake.in cmake/asyncpatTargets.cmake.in
	install -d $(DESTDIR)$(includedir)/asyncpat $(DESTDIR)$(pkgconfigdir) $(DESTDIR)$(cmakedir)
	install -m 644 asyncpat.h $(DESTDIR)$(includedir)/asyncpat.h
	install -m 644 asyncpat/*.h $(DESTDIR)$(includedir)/asyncpat/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@INCLUDEDIR@|$(includedir)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' asyncpat.pc.in > $(DESTDIR)$(pkgconfigdir)/asyncpat.pc
	chmod 644 $(DESTDIR)$(pkgconfigdir)/asyncpat.pc
	install -m 644 cmake/asyncpatConfig.cmake $(DESTDIR)$(cmakedir)/asyncpatConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' cmake/asyncpatConfigVersion.cmake.in \
	    > $(DESTDIR)$(cmakedir)/asyncpatConfigVersion.cmake
	@# relocatable like CMake's export: paths under PREFIX are taken relative
	@# to where asyncpatTargets.cmake lies; others stay absolute
	up=$$(echo '$(cmakedir)' | sed -n 's|^$(PREFIX)/||p' | sed -e 's|[^/][^/]*|..|g'); \
	inc=$$(echo '$(includedir)' | sed -n 's|^$(PREFIX)/|$${_ap_prefix}/|p'); \
	[ -n "$$up" ] && [ -n "$$inc" ] || { up=.; inc='$(includedir)'; }; \
	sed -e "s|@CMAKEDIR_TO_PREFIX@|$$up|g" -e "s|@INCLUDEDIR_FROM_PREFIX@|$$inc|g" \
	    cmake/asyncpatTargets.cmake.in > $(DESTDIR)$(cmakedir)/asyncpatTargets.cmake
	chmod 644 $(DESTDIR)$(cmakedir)/asyncpatConfigVersion.cmake $(DESTDIR)$(cmakedir)/asyncpatTargets.cmake

.PHONY: examples-servers test-servers
examples-servers: examples-redis examples-pg
.PHONY: examples-redis examples-pg
ifeq ($(HAVE_HIREDIS),yes)
examples-redis: $(BUILD)/examples/redis_pool
$(BUILD)/examples/redis_pool: examples/redis_pool.c examples/pool_crash.h $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(STRICT) -O2 -I. $$(pkg-config --cflags hiredis) $< -o $@ -pthread $$(pkg-config --libs hiredis)
else
examples-redis:
	@echo "examples: skipped: hiredis not installed, not built: examples/redis_pool.c (apt-get install libhiredis-dev redis-server)"
endif
ifeq ($(HAVE_LIBPQ),yes)
examples-pg: $(BUILD)/examples/pg_pool
$(BUILD)/examples/pg_pool: examples/pg_pool.c examples/pool_crash.h $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(STRICT) -O2 -I. $$(pkg-config --cflags libpq) $< -o $@ -pthread $$(pkg-config --libs libpq)
else
examples-pg:
	@echo "examples: skipped: libpq not installed, not built: examples/pg_pool.c (apt-get install libpq-dev postgresql)"
endif

# contrib/ and its tests against real servers (tests/servers.sh)
test-servers:
	@sh tests/servers.sh

uninstall:
	rm -f $(DESTDIR)$(includedir)/asyncpat.h $(DESTDIR)$(pkgconfigdir)/asyncpat.pc
	rm -rf $(DESTDIR)$(includedir)/asyncpat
	rm -f $(DESTDIR)$(cmakedir)/asyncpatConfig.cmake $(DESTDIR)$(cmakedir)/asyncpatConfigVersion.cmake \
	      $(DESTDIR)$(cmakedir)/asyncpatTargets.cmake
	rmdir $(DESTDIR)$(cmakedir) 2>/dev/null || true

# One self-contained header, stb-style, generated (never edit it by hand):
# build/asyncpat_single.h, or OUT=path. See scripts/single.sh.
OUT ?= $(BUILD)/asyncpat_single.h
single: $(HEADERS) scripts/single.sh
	@sh scripts/single.sh $(OUT)

clean:
	rm -rf $(BUILD)
