/* churn: many short-lived threads that leave blocks behind for others, in the
 * manner of mleak (mimalloc-bench's thread-leak test).
 *
 * Threads are started in waves of -t at a time.  Each allocates 256 blocks
 * of 16-512 bytes, frees half of them at once, leaves the other half in a
 * shared pool and frees up to 128 blocks taken from the pool, most of them
 * allocated by threads that have exited.  The allocator has to give a dying
 * thread's memory to someone else, or lose it: a leak shows as peak RSS. */
#include "bench.h"

#include <pthread.h>

#define PER_THREAD 256
#define POOL       16384 /* power of two */

typedef struct slot_s {
    void *p;
    uint32_t size;
    uint32_t tag;
} slot_t;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static slot_t pool[POOL];
static size_t pool_head, pool_tail; /* pool[head .. tail) modulo POOL */

static void *worker(void *arg) {
    uint64_t id = (uint64_t)(uintptr_t)arg;
    bench_rng_t rng = bench_rng(id);
    slot_t mine[PER_THREAD], taken[PER_THREAD / 2];
    size_t ntaken = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        mine[i].size = (uint32_t)bench_range(&rng, 16, 512);
        mine[i].tag = (uint32_t)(id * PER_THREAD) + (uint32_t)i;
        mine[i].p = malloc(mine[i].size);
        if (mine[i].p == NULL) bench_die("out of memory");
        bench_tag(mine[i].p, mine[i].size, mine[i].tag);
    }
    for (int i = 0; i < PER_THREAD; i += 2) {
        bench_check("churn", mine[i].p, mine[i].size, mine[i].tag);
        free(mine[i].p);
    }
    /* leave the odd ones, take the oldest from the pool */
    pthread_mutex_lock(&pool_lock);
    for (int i = 1; i < PER_THREAD; i += 2) {
        if (pool_tail - pool_head == POOL) taken[ntaken++] = pool[pool_head++ % POOL];
        pool[pool_tail++ % POOL] = mine[i];
    }
    while (ntaken < PER_THREAD / 2 && pool_tail - pool_head > POOL / 2)
        taken[ntaken++] = pool[pool_head++ % POOL];
    pthread_mutex_unlock(&pool_lock);
    for (size_t i = 0; i < ntaken; i++) {
        bench_check("churn", taken[i].p, taken[i].size, taken[i].tag);
        free(taken[i].p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "");
    uint64_t total = bench_scaled(12000, a.scale, (uint64_t)a.threads);
    pthread_t tid[1024];
    uint64_t started = 0;
    while (started < total) {
        int n = 0;
        for (; n < a.threads && started < total; n++, started++)
            if (pthread_create(&tid[n], NULL, worker, (void *)(uintptr_t)(started + 1)) != 0)
                bench_die("pthread_create");
        for (int i = 0; i < n; i++) pthread_join(tid[i], NULL);
    }
    size_t left = pool_tail - pool_head;
    while (pool_head != pool_tail) {
        slot_t *s = &pool[pool_head++ % POOL];
        bench_check("churn", s->p, s->size, s->tag);
        free(s->p);
    }
    printf("churn: %llu threads, %zu blocks left in the pool at the end\n",
           (unsigned long long)started, left);
    return 0;
}
