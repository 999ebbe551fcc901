/* pareto: Pareto-distributed sizes up to 1 KiB over a working set, in the
 * manner of alloc-test (the "alloc-test1"/"alloc-testN" runs of
 * mimalloc-bench).
 *
 * Each thread owns a working set of slots and replaces a random slot at each
 * step: the old block is checked and freed, a new one allocated.  Sizes
 * follow a Pareto law (most blocks tiny, a long tail up to 1 KiB), drawn from
 * a precomputed table so that the cost of the draw stays small.  Every
 * thread does the same amount of work, so with perfect scaling the wall time
 * does not depend on the thread count (as long as there are cores). */
#include "bench.h"

#include <math.h>
#include <pthread.h>

#define WORKING_SET 20000
#define TABLE       4096 /* power of two */

typedef struct slot_s {
    void *p;
    uint32_t size;
    uint32_t tag;
} slot_t;

static uint16_t sizes[TABLE];
static uint64_t steps;

static void *worker(void *arg) {
    uint64_t id = (uint64_t)(uintptr_t)arg;
    bench_rng_t rng = bench_rng(id + 1);
    slot_t *set = calloc(WORKING_SET, sizeof *set);
    uint32_t tag = (uint32_t)(id << 24);
    uint64_t bytes = 0;
    if (set == NULL) bench_die("out of memory");
    for (uint64_t i = 0; i < steps; i++) {
        uint64_t r = bench_next(&rng);
        slot_t *s = &set[(r >> 32) % WORKING_SET];
        if (s->p != NULL) {
            bench_check("pareto", s->p, s->size, s->tag);
            free(s->p);
        }
        s->size = sizes[r & (TABLE - 1)];
        s->tag = ++tag;
        s->p = malloc(s->size);
        if (s->p == NULL) bench_die("out of memory");
        bench_tag(s->p, s->size, s->tag);
        bytes += s->size;
    }
    for (size_t i = 0; i < WORKING_SET; i++) {
        if (set[i].p == NULL) continue;
        bench_check("pareto", set[i].p, set[i].size, set[i].tag);
        free(set[i].p);
    }
    free(set);
    return (void *)(uintptr_t)bytes;
}

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "");
    pthread_t tid[1024];
    uint64_t bytes = 0;

    /* Pareto with minimum 8 bytes and shape 1.1, cut at 1 KiB: the table
     * holds evenly spaced quantiles, so a uniform index is a Pareto draw. */
    for (size_t i = 0; i < TABLE; i++) {
        double u = 1.0 - ((double)i + 0.5) / TABLE;
        double s = 8.0 * pow(u, -1.0 / 1.1);
        sizes[i] = (uint16_t)(s > 1024 ? 1024 : s);
    }
    steps = bench_scaled(25e6, a.scale, 1000);
    for (int i = 0; i < a.threads; i++)
        if (pthread_create(&tid[i], NULL, worker, (void *)(uintptr_t)i) != 0)
            bench_die("pthread_create");
    for (int i = 0; i < a.threads; i++) {
        void *r;
        pthread_join(tid[i], &r);
        bytes += (uint64_t)(uintptr_t)r;
    }
    printf("pareto: %d threads x %llu steps, %llu bytes\n", a.threads, (unsigned long long)steps,
           (unsigned long long)bytes);
    return 0;
}
