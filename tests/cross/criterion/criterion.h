/*
 * tests/cross/criterion/criterion.h -- a small stand-in for Criterion's
 * <criterion/criterion.h>, for the cross builds of tests/cross.sh (aarch64
 * under qemu-user, 32-bit x86), where no Criterion library is installed.
 *
 * It implements what tests/test_*.c and tests/test_util.h use and nothing
 * else: Test(suite, name, .timeout/.signal/.exit_code/.disabled/.init/.fini),
 * TestSuite(suite, .timeout), cr_assert*, cr_expect*, cr_log_*,
 * criterion_send_assert, criterion_abort_test. An unknown cr_ macro is a
 * compile error here, never a silently passing check.
 *
 * The runner (main, below) forks one child per test like Criterion does, so
 * a crashing test, a test that expects SIGABRT (.signal) and a hung test
 * (.timeout, scaled by CR_SHIM_TIMEOUT_SCALE for slow emulators) each fail
 * or pass alone. It prints "[PASS]"/"[FAIL] suite::name: why" per test and
 * ends with Criterion's own summary line:
 *   [====] Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N
 * and exits non-zero when any test failed. Arguments: --jobs N (children at
 * a time, default 1), --filter SUBSTRING (suite::name contains it), -v.
 * tests/cross.sh includes it with -isystem, as the real one is a system
 * header (gcc keeps quiet about what system-header macros expand to).
 */
#ifndef ASYNCPAT_TESTS_CROSS_CRITERION_H
#define ASYNCPAT_TESTS_CROSS_CRITERION_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct criterion_test_extra_data {
    double timeout;
    int signal;
    int exit_code;
    bool disabled;
    const char *description;
    void (*init)(void);
    void (*fini)(void);
};

struct cr_shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct criterion_test_extra_data data;
    struct cr_shim_test *next;
};

struct cr_shim_suite {
    const char *name;
    struct criterion_test_extra_data data;
    struct cr_shim_suite *next;
};

struct criterion_assert_stats {
    const char *message;
    bool passed;
    unsigned line;
    const char *file;
};

/* One definition per program: the shim is included by one test file. */
static struct cr_shim_test *cr_shim_tests;
static struct cr_shim_suite *cr_shim_suites;
static volatile int cr_shim_expect_failed;

#define CR_SHIM_CAT_(a, b) a##b
#define CR_SHIM_CAT(a, b) CR_SHIM_CAT_(a, b)
#define CR_SHIM_STR_(a) #a
#define CR_SHIM_STR(a) CR_SHIM_STR_(a) /* a suite name may be a macro */

#define Test(suite, name, ...)                                                            \
    static void CR_SHIM_CAT(suite, CR_SHIM_CAT(_cr_fn_, name))(void);                    \
    static struct cr_shim_test CR_SHIM_CAT(suite, CR_SHIM_CAT(_cr_t_, name)) = {          \
        CR_SHIM_STR(suite), #name, CR_SHIM_CAT(suite, CR_SHIM_CAT(_cr_fn_, name)),                    \
        {0, 0, 0, false, NULL, NULL, NULL}, NULL};                                        \
    __attribute__((constructor)) static void CR_SHIM_CAT(suite, CR_SHIM_CAT(_cr_reg_, name))(void) \
    {                                                                                     \
        struct criterion_test_extra_data e_ = {__VA_ARGS__};                              \
        CR_SHIM_CAT(suite, CR_SHIM_CAT(_cr_t_, name)).data = e_;                          \
        CR_SHIM_CAT(suite, CR_SHIM_CAT(_cr_t_, name)).next = cr_shim_tests;               \
        cr_shim_tests = &CR_SHIM_CAT(suite, CR_SHIM_CAT(_cr_t_, name));                   \
    }                                                                                     \
    static void CR_SHIM_CAT(suite, CR_SHIM_CAT(_cr_fn_, name))(void)

#define TestSuite(suite, ...)                                                             \
    static struct cr_shim_suite CR_SHIM_CAT(suite, _cr_suite);                            \
    __attribute__((constructor)) static void CR_SHIM_CAT(suite, _cr_suite_reg)(void)      \
    {                                                                                     \
        struct criterion_test_extra_data e_ = {__VA_ARGS__};                              \
        CR_SHIM_CAT(suite, _cr_suite).name = CR_SHIM_STR(suite);                                      \
        CR_SHIM_CAT(suite, _cr_suite).data = e_;                                          \
        CR_SHIM_CAT(suite, _cr_suite).next = cr_shim_suites;                              \
        cr_shim_suites = &CR_SHIM_CAT(suite, _cr_suite);                                  \
    }                                                                                     \
    struct cr_shim_dummy_

/* ---- checks ---- */

/* The optional message makes the format "" when absent. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

__attribute__((unused, format(printf, 4, 0))) static void
cr_shim_report(const char *file, int line, const char *expr, const char *fmt, va_list ap)
{
    char note[512];
    vsnprintf(note, sizeof note, fmt, ap);
    fprintf(stderr, "[----] %s:%d: %s%s%s\n", file, line, expr, *note ? " -- " : "", note);
    fflush(stderr);
}

/* a failed cr_assert: the test ends here (from any thread) */
__attribute__((unused, noreturn, format(printf, 4, 5))) static void
cr_shim_fatal(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cr_shim_report(file, line, expr, fmt, ap);
    va_end(ap);
    _exit(1);
}

/* a failed cr_expect: the test goes on and fails at its end */
__attribute__((unused, format(printf, 4, 5))) static void
cr_shim_expected(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cr_shim_report(file, line, expr, fmt, ap);
    va_end(ap);
    cr_shim_expect_failed = 1;
}

/* cond is evaluated once; the message (optional) is a format string literal
 * and its arguments, as with Criterion. */
#define CR_SHIM_CHECK(how, cond, text, ...)                                               \
    do {                                                                                  \
        if (!(cond))                                                                      \
            how(__FILE__, __LINE__, text, "" __VA_ARGS__);                                \
    } while (0)

#define cr_assert(cond, ...) CR_SHIM_CHECK(cr_shim_fatal, (cond), #cond, __VA_ARGS__)
#define cr_assert_not(cond, ...) CR_SHIM_CHECK(cr_shim_fatal, !(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) CR_SHIM_CHECK(cr_shim_fatal, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) CR_SHIM_CHECK(cr_shim_fatal, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) CR_SHIM_CHECK(cr_shim_fatal, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) CR_SHIM_CHECK(cr_shim_fatal, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) CR_SHIM_CHECK(cr_shim_fatal, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) CR_SHIM_CHECK(cr_shim_fatal, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) CR_SHIM_CHECK(cr_shim_fatal, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) CR_SHIM_CHECK(cr_shim_fatal, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) CR_SHIM_CHECK(cr_shim_fatal, strcmp((a), (b)) == 0, #a " equals " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) CR_SHIM_CHECK(cr_shim_fatal, strcmp((a), (b)) != 0, #a " differs from " #b, __VA_ARGS__)
#define cr_assert_fail(...) cr_shim_fatal(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_expect(cond, ...) CR_SHIM_CHECK(cr_shim_expected, (cond), #cond, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) CR_SHIM_CHECK(cr_shim_expected, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) CR_SHIM_CHECK(cr_shim_expected, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) CR_SHIM_CHECK(cr_shim_expected, (a) > (b), #a " > " #b, __VA_ARGS__)

#define cr_log_info(...) (fprintf(stderr, "[----] " __VA_ARGS__), fputc('\n', stderr))
#define cr_log_warn(...) (fprintf(stderr, "[WARN] " __VA_ARGS__), fputc('\n', stderr))
#define cr_log_error(...) (fprintf(stderr, "[ERR ] " __VA_ARGS__), fputc('\n', stderr))

__attribute__((unused)) static void criterion_send_assert(struct criterion_assert_stats *st)
{
    if (!st->passed) {
        fprintf(stderr, "[----] %s:%u: %s\n", st->file, st->line, st->message);
        fflush(stderr);
        cr_shim_expect_failed = 1;
    }
}

__attribute__((unused, noreturn)) static void criterion_abort_test(void)
{
    _exit(1);
}

/* ---- runner ---- */

struct cr_shim_run {
    pid_t pid;
    struct cr_shim_test *t;
    struct timespec start;
};

static double cr_shim_timeout_of(const struct cr_shim_test *t)
{
    double to = t->data.timeout;
    if (to <= 0)
        for (const struct cr_shim_suite *s = cr_shim_suites; s; s = s->next)
            if (strcmp(s->name, t->suite) == 0)
                to = s->data.timeout;
    return to;
}

static void cr_shim_child(struct cr_shim_test *t, double scale)
{
    double to = cr_shim_timeout_of(t);
    if (to > 0)
        alarm((unsigned)(to * scale + 0.999));
    if (t->data.init)
        t->data.init();
    t->fn();
    if (t->data.fini)
        t->data.fini();
    fflush(stdout);
    fflush(stderr);
    _exit(cr_shim_expect_failed ? 1 : t->data.exit_code);
}

/* 1 when the child's end is what the test expects */
static int cr_shim_judge(struct cr_shim_test *t, int status, char *why, size_t n)
{
    if (t->data.signal) {
        if (WIFSIGNALED(status) && WTERMSIG(status) == t->data.signal)
            return 1;
        if (WIFSIGNALED(status))
            snprintf(why, n, "killed by signal %d, expected signal %d", WTERMSIG(status),
                     t->data.signal);
        else
            snprintf(why, n, "exited %d, expected signal %d", WEXITSTATUS(status), t->data.signal);
        return 0;
    }
    if (WIFSIGNALED(status)) {
        snprintf(why, n, WTERMSIG(status) == SIGALRM ? "timed out (signal %d)" : "crashed (signal %d)",
                 WTERMSIG(status));
        return 0;
    }
    if (WEXITSTATUS(status) != t->data.exit_code) {
        snprintf(why, n, "exited %d", WEXITSTATUS(status));
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    int jobs = 1, verbose = 0;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
            jobs = atoi(argv[++i]);
        else if (strncmp(argv[i], "--jobs=", 7) == 0)
            jobs = atoi(argv[i] + 7);
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0)
            verbose = 1;
    }
    if (jobs < 1)
        jobs = 1;
    if (jobs > 64)
        jobs = 64;
    double scale = 1;
    const char *e = getenv("CR_SHIM_TIMEOUT_SCALE");
    if (e && atof(e) > 0)
        scale = atof(e);

    /* registration order is reversed by the constructors; put it back */
    struct cr_shim_test *rev = NULL;
    while (cr_shim_tests) {
        struct cr_shim_test *t = cr_shim_tests;
        cr_shim_tests = t->next;
        t->next = rev;
        rev = t;
    }

    struct cr_shim_run run[64];
    int running = 0, tested = 0, passing = 0, failing = 0, crashing = 0;
    struct cr_shim_test *next = rev;
    fflush(stdout);
    fflush(stderr);
    while (next || running) {
        while (next && running < jobs) {
            struct cr_shim_test *t = next;
            next = t->next;
            char full[256];
            snprintf(full, sizeof full, "%s::%s", t->suite, t->name);
            if (t->data.disabled || (filter && !strstr(full, filter)))
                continue;
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                return 2;
            }
            if (pid == 0)
                cr_shim_child(t, scale);
            run[running].pid = pid;
            run[running].t = t;
            clock_gettime(CLOCK_MONOTONIC, &run[running].start);
            running++;
        }
        if (running == 0)
            break; /* the rest was filtered out */
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            perror("waitpid");
            return 2;
        }
        int k = 0;
        while (k < running && run[k].pid != pid)
            k++;
        if (k == running)
            continue;
        struct cr_shim_test *t = run[k].t;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double secs = (double)(now.tv_sec - run[k].start.tv_sec) +
                      (double)(now.tv_nsec - run[k].start.tv_nsec) / 1e9;
        run[k] = run[--running];
        char why[160] = "";
        tested++;
        if (cr_shim_judge(t, status, why, sizeof why)) {
            passing++;
            if (verbose)
                printf("[PASS] %s::%s (%.2fs)\n", t->suite, t->name, secs);
        } else {
            failing++;
            if (WIFSIGNALED(status) && !t->data.signal)
                crashing++;
            printf("[FAIL] %s::%s: %s (%.2fs)\n", t->suite, t->name, why, secs);
        }
        fflush(stdout);
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d\n", tested,
           passing, failing, crashing);
    return failing ? 1 : 0;
}

#endif
