/*
 * tests/cross/membarrier_fallback.c -- which side of THE LADDER (waitlist.h)
 * a target runs, and that the registration fallback engages and works.
 *
 *   membarrier_fallback probe   prints "asym=1" when membarrier(2)
 *                               registration succeeds here (the asymmetric
 *                               barrier is used), "asym=0" when it fails (the
 *                               seq_cst ladder is used); exit 0
 *   membarrier_fallback block   makes membarrier fail with ENOSYS through a
 *                               seccomp filter (as an old kernel, an old
 *                               qemu-user or a container policy would), then
 *                               checks that a fresh waitlist says asym=0 and
 *                               that 2 producers and 2 consumers hand 200000
 *                               items through a 4-slot mpmc with blocking
 *                               waits (every wait parks and is woken on the
 *                               fallback ladder), each item exactly once.
 *                               Exit 0: pass; 1: fail (or hung: SIGALRM
 *                               after 120 s); 77: no seccomp here (qemu-user
 *                               refuses PR_SET_SECCOMP).
 * Built with -DMBF_REGISTER_FAILS, the registration is the override hook of
 * waitlist.h (AP_BARRIER_LIGHT/HEAVY/REGISTER) and always fails: the same
 * runtime fallback (the lists' asym flag 0), testable where seccomp is not
 * (qemu-user); there `block` needs no filter.
 * Built by tests/cross.sh for each target.
 */
#ifdef MBF_REGISTER_FAILS
#include <stdatomic.h>
#include <stdbool.h>
#define AP_BARRIER_LIGHT() atomic_signal_fence(memory_order_seq_cst)
#define AP_BARRIER_HEAVY() __builtin_trap() /* never with asym 0 */
#define AP_BARRIER_REGISTER() false
#endif
#include "asyncpat.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

enum { PRODUCERS = 2, CONSUMERS = 2, PER_PRODUCER = 100000, CAP = 4 };

static ap_mpmc q;
static _Alignas(AP_MPMC_ALIGN) unsigned char qbuf[AP_MPMC_BYTES(CAP, sizeof(uint32_t))];
static _Atomic unsigned char seen[PRODUCERS * PER_PRODUCER];
static _Atomic int bad;

static void *producer(void *arg)
{
    uint32_t base = (uint32_t)(uintptr_t)arg * PER_PRODUCER;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        uint32_t v = base + i;
        if (ap_mpmc_push_wait(&q, &v, AP_DEADLINE_NONE) != AP_OK)
            atomic_store(&bad, 1);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    for (;;) {
        uint32_t v;
        ap_status st = ap_mpmc_pop_wait(&q, &v, AP_DEADLINE_NONE);
        if (st == AP_CLOSED)
            return NULL;
        if (st != AP_OK || v >= PRODUCERS * PER_PRODUCER || atomic_fetch_add(&seen[v], 1) != 0)
            atomic_store(&bad, 1);
    }
}

#if defined(__linux__) && defined(SYS_membarrier) && !defined(MBF_REGISTER_FAILS)
static int block_membarrier(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -1;
    /* the filter must really stop it (under qemu-user a filter would see
     * host syscall numbers): otherwise this run cannot test the fallback */
    return syscall(SYS_membarrier, 0 /* MEMBARRIER_CMD_QUERY */, 0, 0) == -1 && errno == ENOSYS
               ? 0
               : -1;
}
#endif

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "probe";
    ap_waitlist wl;
    if (strcmp(mode, "probe") == 0) {
        ap_waitlist_init(&wl);
        printf("asym=%u\n", (unsigned)wl.asym);
        return 0;
    }
    alarm(120); /* a lost wakeup hangs: fail instead */
#if defined(MBF_REGISTER_FAILS)
    printf("registration hook fails: ");
#elif defined(__linux__) && defined(SYS_membarrier)
    if (block_membarrier() != 0) {
        printf("seccomp unavailable here: fallback not tested\n");
        return 77;
    }
#else
    printf("no membarrier on this system: the fallback is the only path\n");
#endif
    ap_waitlist_init(&wl);
    if (ap_mpmc_init(&q, qbuf, sizeof qbuf, CAP, sizeof(uint32_t)) != AP_OK) {
        printf("FAIL: mpmc init\n");
        return 1;
    }
    if (wl.asym != 0 || q.not_empty.asym != 0 || q.not_full.asym != 0) {
        printf("FAIL: membarrier refused, yet a waitlist says asym=1\n");
        return 1;
    }
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&p[i], NULL, producer, (void *)i);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_create(&c[i], NULL, consumer, NULL);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(p[i], NULL);
    ap_mpmc_close(&q);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(c[i], NULL);
    size_t missing = 0;
    for (size_t i = 0; i < PRODUCERS * PER_PRODUCER; i++)
        missing += atomic_load(&seen[i]) != 1;
    if (atomic_load(&bad) || missing) {
        printf("FAIL: fallback ladder: %zu items lost or doubled\n", missing);
        return 1;
    }
    ap_mpmc_fini(&q);
    printf("fallback: asym=0, %d items through a %d-slot mpmc with blocking waits\n",
           PRODUCERS * PER_PRODUCER, CAP);
    return 0;
}
