/*
 * examples/producer_consumer.c -- count lines and words (wc -lw) of FILE...
 *
 * One producer thread per file pushes lines into a bounded ap_mpmc; NCONS
 * consumers block in ap_mpmc_pop_wait and count them. Each record owns a
 * getline() buffer, handed over by a successful push and freed by its popper.
 * main joins the producers, then closes the queue; consumers drain it and stop
 * at AP_CLOSED. An unreadable file: reported, exit status 1, the rest counted.
 *
 * The output shows each consumer's share and how often it found the queue
 * empty and had to wait. The shares are uneven, and differ run to run: a
 * consumer that finds a line pops it at once, while waking a parked one
 * (a futex wake, then the scheduler) takes longer than counting a line, so
 * the consumers already running take most of the lines. That is the queue
 * working as intended (no line waits for a particular consumer); the totals
 * are what must match wc.
 */
#define _POSIX_C_SOURCE 200809L /* getline() is POSIX; under -std=c11 the program asks for it (asyncpat itself needs no feature macro) */
/* First: under -std=c11 it defines _DEFAULT_SOURCE, which declares getline(). */
#include "asyncpat.h"
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NCONS = 4, QCAP = 64 }; /* a small queue, so producers wait for room */
struct line { char *text; size_t len; }; /* the record the queue copies */
struct producer { pthread_t th; const char *path; int err; };
struct consumer { pthread_t th; unsigned long lines, words, waits; };
static ap_mpmc *q;

static void *produce(void *arg)
{
    struct producer *p = arg;
    FILE *f = fopen(p->path, "r");
    if (f == NULL) { p->err = errno; return NULL; }
    struct line l = {NULL, 0};
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&l.text, &cap, f)) >= 0) {
        l.len = (size_t)n;
        /* AP_CLOSED would leave the line with us; main closes after joining us */
        if (ap_mpmc_push_wait(q, &l, AP_DEADLINE_NONE) != AP_OK) { p->err = ECANCELED; break; }
        l.text = NULL, cap = 0; /* the queue owns that line now */
    }
    if (ferror(f)) p->err = errno ? errno : EIO; /* getline sets errno */
    free(l.text); /* getline's buffer at EOF, or a line the queue refused */
    fclose(f);
    return NULL;
}

static void *consume(void *arg)
{
    struct consumer *c = arg;
    struct line l;
    for (;;) {
        ap_status st = ap_mpmc_try_pop(q, &l); /* never blocks */
        if (st == AP_EMPTY || st == AP_AGAIN) { /* nothing to take now: park */
            c->waits++;
            st = ap_mpmc_pop_wait(q, &l, AP_DEADLINE_NONE);
        }
        if (st != AP_OK) break; /* AP_CLOSED: closed and drained */
        bool in_word = false;
        for (size_t i = 0; i < l.len; i++) {
            bool space = isspace((unsigned char)l.text[i]) != 0;
            c->words += !space && !in_word;
            in_word = !space;
        }
        c->lines++; /* a last line without '\n' counts too (not for wc -l) */
        free(l.text);
    }
    return NULL;
}

static void start(pthread_t *th, void *(*fn)(void *), void *arg)
{
    if (pthread_create(th, NULL, fn, arg) != 0) { perror("pthread_create"); exit(1); }
}

int main(int argc, char **argv)
{
    int np = argc - 1, status = 0;
    if (np < 1) { fprintf(stderr, "usage: %s FILE...\n", argv[0]); return 2; }
    struct consumer cons[NCONS] = {{0}};
    struct producer *prod = calloc((size_t)np, sizeof *prod);
    if (prod == NULL || ap_mpmc_create(&q, QCAP, sizeof(struct line), NULL) != AP_OK) {
        fputs("out of memory\n", stderr); return 1;
    }
    for (int i = 0; i < NCONS; i++) start(&cons[i].th, consume, &cons[i]);
    for (int i = 0; i < np; i++) {
        prod[i].path = argv[i + 1];
        start(&prod[i].th, produce, &prod[i]);
    }
    unsigned long lines = 0, words = 0;
    for (int i = 0; i < np; i++) {
        pthread_join(prod[i].th, NULL);
        if (prod[i].err) {
            fprintf(stderr, "%s: %s: %s\n", argv[0], prod[i].path, strerror(prod[i].err));
            status = 1;
        }
    }
    ap_mpmc_close(q); /* no more lines: wakes the consumers parked on an empty queue */
    for (int i = 0; i < NCONS; i++) {
        pthread_join(cons[i].th, NULL);
        printf("consumer %d: %lu lines, %lu words, waited %lu times on an empty queue\n", i,
               cons[i].lines, cons[i].words, cons[i].waits);
        lines += cons[i].lines, words += cons[i].words;
    }
    ap_mpmc_destroy(q); /* empty: the consumers drained it */
    free(prod);
    printf("total: %lu lines, %lu words\n", lines, words);
    printf("(lines go to whichever consumer is awake: uneven shares are expected)\n");
    return status;
}
