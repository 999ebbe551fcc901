/* server: a server simulation in the manner of larson (Larson and Krishnan's
 * server benchmark).
 *
 * Each thread holds a table of blocks of 8-1000 bytes, like the requests a
 * server thread keeps, and replaces random entries.  After every round the
 * threads pass their tables on to the next thread (thread i takes the table
 * of thread i-1), so most blocks are freed by a thread other than the one
 * that allocated them, and every thread's allocator state keeps receiving
 * blocks from elsewhere. */
#include "bench.h"

#include <pthread.h>

#define TABLE 4000
#define ROUND 20000 /* replacements per thread per round */

typedef struct slot_s {
    void *p;
    uint32_t size;
    uint32_t tag;
} slot_t;

static int nthreads;
static uint64_t rounds;
static slot_t **tables;
static pthread_barrier_t barrier;

static void replace(slot_t *s, bench_rng_t *rng, uint32_t tag) {
    if (s->p != NULL) {
        bench_check("server", s->p, s->size, s->tag);
        free(s->p);
    }
    s->size = (uint32_t)bench_range(rng, 8, 1000);
    s->tag = tag;
    s->p = malloc(s->size);
    if (s->p == NULL) bench_die("out of memory");
    bench_tag(s->p, s->size, s->tag);
}

static void *worker(void *arg) {
    int id = (int)(uintptr_t)arg;
    bench_rng_t rng = bench_rng((uint64_t)id + 7);
    uint32_t tag = (uint32_t)id << 24;
    for (uint64_t r = 0; r < rounds; r++) {
        /* the table this thread works on this round */
        slot_t *t = tables[(id + r) % (uint64_t)nthreads];
        for (int i = 0; i < ROUND; i++) replace(&t[bench_below(&rng, TABLE)], &rng, ++tag);
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "");
    pthread_t tid[1024];
    nthreads = a.threads;
    rounds = bench_scaled(800, a.scale, 2);
    tables = bench_xmalloc((size_t)nthreads * sizeof *tables);
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
        tables[i] = calloc(TABLE, sizeof(slot_t));
        if (tables[i] == NULL) bench_die("out of memory");
    }
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&tid[i], NULL, worker, (void *)(uintptr_t)i) != 0)
            bench_die("pthread_create");
    for (int i = 0; i < nthreads; i++) pthread_join(tid[i], NULL);
    for (int i = 0; i < nthreads; i++) {
        for (int j = 0; j < TABLE; j++) {
            slot_t *s = &tables[i][j];
            if (s->p == NULL) continue;
            bench_check("server", s->p, s->size, s->tag);
            free(s->p);
        }
        free(tables[i]);
    }
    free(tables);
    printf("server: %d threads x %llu rounds x %d replacements\n", nthreads,
           (unsigned long long)rounds, ROUND);
    return 0;
}
