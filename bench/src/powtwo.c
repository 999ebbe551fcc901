/* powtwo: power-of-two sizes, rare huge blocks, realloc growth and threads
 * that die and are replaced, in the manner of mstress (mimalloc's stress
 * test).
 *
 * All threads share one table of blocks and take entries with an atomic
 * exchange, so a block is often freed or grown by a thread other than its
 * allocator.  A step frees a block, grows it with realloc (its contents must
 * survive), or replaces it; new blocks are 16 B-8 KiB powers of two, and one
 * in 4000 is a huge block of 1-4 MiB.  Threads live for one round only;
 * what they leave in the table survives into the next round's threads. */
#include "bench.h"

#include <pthread.h>

#define TABLE_PER_THREAD 5000
#define STEPS            100000 /* per thread per round */
#define MAX_GROWN        (256 * 1024)

/* A block starts with its header: size and tag. */
typedef struct head_s {
    uint32_t size;
    uint32_t tag;
} head_t;

static void **table;
static size_t table_len;
static uint64_t rounds;

static void block_mark(head_t *h, uint32_t size, uint32_t tag) {
    h->size = size;
    h->tag = tag;
    ((unsigned char *)h)[size - 1] = (unsigned char)(tag ^ size);
}

static void block_check(const head_t *h) {
    if (h->size < sizeof *h || h->size > 8u << 20 ||
        ((const unsigned char *)h)[h->size - 1] != (unsigned char)(h->tag ^ h->size))
        bench_corrupt("powtwo", h, h->size);
}

static head_t *block_new(bench_rng_t *rng, uint32_t tag) {
    uint32_t size;
    if (bench_below(rng, 4000) == 0)
        size = 1u << (20 + bench_below(rng, 3));
    else
        size = 1u << (4 + bench_below(rng, 10));
    head_t *h = malloc(size);
    if (h == NULL) bench_die("out of memory");
    block_mark(h, size, tag);
    return h;
}

static void *worker(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    bench_rng_t rng = bench_rng(seed);
    uint32_t tag = (uint32_t)seed << 20;
    for (int i = 0; i < STEPS; i++) {
        size_t k = (size_t)bench_below(&rng, table_len);
        head_t *h = __atomic_exchange_n(&table[k], NULL, __ATOMIC_ACQ_REL);
        uint64_t what = bench_below(&rng, 8);
        if (h != NULL) {
            block_check(h);
            if (what < 3) { /* free */
                free(h);
                h = NULL;
            } else if (what < 5 && h->size < MAX_GROWN) { /* grow */
                uint32_t old = h->size, tag0 = h->tag;
                h = realloc(h, (size_t)old * 2);
                if (h == NULL) bench_die("out of memory");
                if (h->size != old || h->tag != tag0 ||
                    ((unsigned char *)h)[old - 1] != (unsigned char)(tag0 ^ old))
                    bench_corrupt("powtwo", h, old);
                block_mark(h, old * 2, ++tag);
            } else { /* replace */
                free(h);
                h = block_new(&rng, ++tag);
            }
        } else {
            h = block_new(&rng, ++tag);
        }
        if (h != NULL) {
            head_t *old = __atomic_exchange_n(&table[k], h, __ATOMIC_ACQ_REL);
            if (old != NULL) {
                block_check(old);
                free(old);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "");
    pthread_t tid[1024];
    table_len = (size_t)TABLE_PER_THREAD * (size_t)a.threads;
    table = calloc(table_len, sizeof *table);
    if (table == NULL) bench_die("out of memory");
    rounds = bench_scaled(30, a.scale, 1);
    for (uint64_t r = 0; r < rounds; r++) {
        for (int i = 0; i < a.threads; i++)
            if (pthread_create(&tid[i], NULL, worker,
                               (void *)(uintptr_t)(r * (uint64_t)a.threads + (uint64_t)i + 1)) != 0)
                bench_die("pthread_create");
        for (int i = 0; i < a.threads; i++) pthread_join(tid[i], NULL);
    }
    size_t live = 0, bytes = 0;
    for (size_t k = 0; k < table_len; k++) {
        head_t *h = table[k];
        if (h == NULL) continue;
        block_check(h);
        live++;
        bytes += h->size;
        free(h);
    }
    free(table);
    printf("powtwo: %d threads x %llu rounds; %zu blocks (%zu bytes) survived to the end\n",
           a.threads, (unsigned long long)rounds, live, bytes);
    return 0;
}
