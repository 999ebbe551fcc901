/* fastpath: the cost of the allocator's fast path, in the manner of the
 * glibc "simple" malloc benchmark (bench-malloc-simple).
 *
 * One thread allocates small blocks (16-64 bytes) in bursts of 1-32 and then
 * frees as many, either the oldest first (FIFO) or the newest first (LIFO),
 * on top of a small base of long-lived blocks: at most a few hundred blocks
 * are ever live, so everything stays in the allocator's thread cache. */
#include "bench.h"

#define RING 256 /* power of two, more than BASE + the largest burst */
#define BASE 32

typedef struct slot_s {
    void *p;
    uint32_t size;
    uint32_t tag;
} slot_t;

static slot_t ring[RING];

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "");
    uint64_t ops = bench_scaled(40e6, a.scale, 1000);
    bench_rng_t rng = bench_rng(1);
    size_t head = 0, tail = 0; /* live blocks are ring[head .. tail) */
    uint32_t tag = 0;
    uint64_t done = 0, sum = 0;

    while (done < ops) {
        /* a burst of allocations */
        unsigned burst = 1 + (unsigned)bench_below(&rng, 32);
        for (unsigned i = 0; i < burst; i++) {
            slot_t *s = &ring[tail++ & (RING - 1)];
            s->size = (uint32_t)bench_range(&rng, 16, 64);
            s->tag = ++tag;
            s->p = malloc(s->size);
            if (s->p == NULL) bench_die("out of memory");
            bench_tag(s->p, s->size, s->tag);
        }
        /* free as many, oldest or newest first, keeping BASE live */
        int fifo = (int)(bench_next(&rng) >> 63);
        size_t live = tail - head;
        size_t n = live > BASE ? live - BASE : 0;
        for (size_t i = 0; i < n; i++) {
            slot_t *s = fifo ? &ring[head++ & (RING - 1)] : &ring[--tail & (RING - 1)];
            bench_check("fastpath", s->p, s->size, s->tag);
            sum += s->size;
            free(s->p);
        }
        done += burst;
    }
    while (head != tail) {
        slot_t *s = &ring[head++ & (RING - 1)];
        bench_check("fastpath", s->p, s->size, s->tag);
        free(s->p);
    }
    printf("fastpath: %llu malloc/free pairs, %llu bytes\n", (unsigned long long)done,
           (unsigned long long)sum);
    return 0;
}
