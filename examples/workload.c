/* workload.c: one allocation workload, to compare allocators on time and
 * fragmentation.  docs/learn.md runs it under the first-fit example and
 * under libmclone:
 *
 *     make examples
 *     /usr/bin/time -v env LD_PRELOAD=$PWD/build/libfirstfit.so build/examples/workload
 *     /usr/bin/time -v env LD_PRELOAD=$PWD/build/libmclone.so build/examples/workload
 *
 * Each thread (--threads, default 1) runs the same three phases on objects
 * of its own, with the same pseudo-random sizes on every run:
 *   build   allocate --objects objects (default 20000): mostly small
 *           (16-512 bytes), some medium (1-16 KiB), a few large (64-256 KiB);
 *   churn   --rounds times (default 400000), free a random object and
 *           allocate a new one of a new random size in its place;
 *   shrink  free nine objects in ten, keep the rest alive;
 *   trim    call malloc_trim(0): give back all the free memory the
 *           allocator can (for an allocator that does not define
 *           malloc_trim, this reaches glibc's, which has nothing to do).
 * After each phase it prints the bytes the program asked for and still
 * holds ("live") and the resident set size of the process (RSS, from
 * /proc/self/statm).  RSS after the shrink is what the allocator keeps on
 * its own; RSS after the trim, compared with live, measures fragmentation:
 * memory that cannot be given back because a few live objects pin it.
 *
 * The last line is a checksum of the objects' contents: it must be the same
 * under every allocator. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long opt_threads = 1, opt_objects = 20000, opt_rounds = 400000;

typedef struct worker {
    int id;
    uint64_t rng;
    unsigned char **obj;
    size_t *len;
    size_t live; /* bytes asked for and not yet freed */
    uint64_t checksum;
    pthread_t thread;
} worker_t;

static pthread_barrier_t barrier;
static worker_t *workers;

/* xorshift64*: small, fast and the same everywhere. */
static uint64_t next_random(worker_t *w) {
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 2685821657736338717ull;
}

/* The size distribution: 90% small, 9% medium, 1% large. */
static size_t random_size(worker_t *w) {
    uint64_t r = next_random(w);
    unsigned kind = (unsigned)(r % 100);
    r >>= 8;
    if (kind < 90) return 16 + r % 497;
    if (kind < 99) return 1024 + r % (15 * 1024 + 1);
    return (64 << 10) + r % (192 << 10);
}

static void object_new(worker_t *w, long i) {
    size_t n = random_size(w);
    unsigned char *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "workload: malloc(%zu) failed\n", n);
        exit(1);
    }
    /* Touch every page, and mark the first and last bytes for the checksum. */
    for (size_t k = 0; k < n; k += 4096) p[k] = (unsigned char)i;
    p[0] = (unsigned char)(i * 7);
    p[n - 1] = (unsigned char)(i * 13);
    w->obj[i] = p;
    w->len[i] = n;
    w->live += n;
}

static void object_free(worker_t *w, long i) {
    unsigned char *p = w->obj[i];
    if (p == NULL) return;
    w->checksum = w->checksum * 31 + p[0] + p[w->len[i] - 1];
    w->live -= w->len[i];
    free(p);
    w->obj[i] = NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rss_mib(void) {
    long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return -1;
    if (fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = -1;
    fclose(f);
    return (double)pages_resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

static double phase_start;

/* Called by every thread at the end of a phase; thread 0 reports. */
static void phase_end(worker_t *w, const char *name) {
    pthread_barrier_wait(&barrier);
    if (w->id == 0) {
        size_t live = 0;
        for (long t = 0; t < opt_threads; t++) live += workers[t].live;
        double t = now();
        printf("%-7s %8.3f s   live %8.1f MiB   RSS %8.1f MiB\n", name, t - phase_start,
               (double)live / (1 << 20), rss_mib());
        fflush(stdout);
        phase_start = now();
    }
    pthread_barrier_wait(&barrier);
}

static pthread_mutex_t trim_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker_main(void *arg) {
    worker_t *w = arg;
    for (long i = 0; i < opt_objects; i++) object_new(w, i);
    phase_end(w, "build");

    for (long r = 0; r < opt_rounds; r++) {
        long i = (long)(next_random(w) % (uint64_t)opt_objects);
        object_free(w, i);
        object_new(w, i);
    }
    phase_end(w, "churn");

    for (long i = 0; i < opt_objects; i++)
        if (i % 10 != 0) object_free(w, i);
    phase_end(w, "shrink");

    /* In every thread (some allocators trim per thread), one at a time:
     * glibc's malloc_trim, reached first from two threads at once in a
     * program whose malloc is not glibc's (ASan's, say), races in its own
     * set-up and can crash. */
    pthread_mutex_lock(&trim_lock);
    malloc_trim(0);
    pthread_mutex_unlock(&trim_lock);
    phase_end(w, "trim");

    for (long i = 0; i < opt_objects; i++) object_free(w, i);
    return NULL;
}

static long parse_option(const char *name, const char *value) {
    char *end;
    long v = value ? strtol(value, &end, 10) : 0;
    if (value == NULL || *end != '\0' || v < 1) {
        fprintf(stderr, "workload: %s needs a positive number\n", name);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0)
            opt_threads = parse_option(argv[i], argv[i + 1]), i++;
        else if (strcmp(argv[i], "--objects") == 0)
            opt_objects = parse_option(argv[i], argv[i + 1]), i++;
        else if (strcmp(argv[i], "--rounds") == 0)
            opt_rounds = parse_option(argv[i], argv[i + 1]), i++;
        else {
            fprintf(stderr, "usage: workload [--threads N] [--objects N] [--rounds N]\n");
            return 2;
        }
    }
    printf("workload: %ld thread(s), %ld objects each, %ld churn rounds each\n", opt_threads,
           opt_objects, opt_rounds);

    workers = calloc((size_t)opt_threads, sizeof *workers);
    if (workers == NULL) return 1;
    pthread_barrier_init(&barrier, NULL, (unsigned)opt_threads);
    double start = now();
    phase_start = start;
    for (long t = 0; t < opt_threads; t++) {
        worker_t *w = &workers[t];
        w->id = (int)t;
        w->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
        w->obj = calloc((size_t)opt_objects, sizeof *w->obj);
        w->len = calloc((size_t)opt_objects, sizeof *w->len);
        if (w->obj == NULL || w->len == NULL) return 1;
    }
    for (long t = 0; t < opt_threads; t++) {
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) {
            fprintf(stderr, "workload: cannot start a thread\n");
            return 1;
        }
    }
    uint64_t checksum = 0;
    for (long t = 0; t < opt_threads; t++) {
        pthread_join(workers[t].thread, NULL);
        checksum = checksum * 1000003 + workers[t].checksum;
        free(workers[t].obj);
        free(workers[t].len);
    }
    printf("total   %8.3f s\n", now() - start);
    printf("checksum %016llx\n", (unsigned long long)checksum);
    free(workers);
    return 0;
}
