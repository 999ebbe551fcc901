/* falseshare: false sharing of cache lines through the allocator, in the
 * manner of cache-thrash and cache-scratch (from the Hoard benchmarks).
 *
 *   -m thrash   active false sharing: each thread allocates small blocks and
 *               writes them hard.  An allocator that gives neighbouring
 *               blocks to different threads makes the threads fight over
 *               cache lines.
 *   -m scratch  passive false sharing: the main thread allocates one small
 *               block per thread, side by side, and hands them out; each
 *               thread frees its block first, then works as above.  An
 *               allocator that reuses the freed block in the freeing thread
 *               puts it on a line shared with the other threads' blocks. */
#include "bench.h"

#include <pthread.h>

#define OBJECT 8

typedef struct job_s {
    unsigned char *first; /* scratch: the block from the main thread */
    uint64_t objects, writes;
    uint64_t sum;
} job_t;

static void *worker(void *arg) {
    job_t *j = arg;
    if (j->first != NULL) {
        if (j->first[0] != 0x5a) bench_corrupt("falseshare", j->first, OBJECT);
        free(j->first);
    }
    for (uint64_t i = 0; i < j->objects; i++) {
        volatile unsigned char *o = malloc(OBJECT);
        if (o == NULL) bench_die("out of memory");
        for (int k = 0; k < OBJECT; k++) o[k] = 0;
        for (uint64_t w = 0; w < j->writes; w++)
            for (int k = 0; k < OBJECT; k++) o[k]++;
        for (int k = 0; k < OBJECT; k++)
            if (o[k] != (unsigned char)j->writes) bench_corrupt("falseshare", (void *)o, OBJECT);
        j->sum += o[0];
        free((void *)o);
    }
    return NULL;
}

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "thrash");
    int scratch = strcmp(a.mode, "scratch") == 0;
    pthread_t tid[1024];
    job_t jobs[1024];
    if (!scratch && strcmp(a.mode, "thrash") != 0) bench_usage(argv[0]);
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < a.threads; i++) {
        jobs[i].objects = bench_scaled(150000, a.scale, 10);
        jobs[i].writes = 2000;
        if (scratch) {
            jobs[i].first = malloc(OBJECT);
            if (jobs[i].first == NULL) bench_die("out of memory");
            memset(jobs[i].first, 0x5a, OBJECT);
        }
    }
    for (int i = 0; i < a.threads; i++)
        if (pthread_create(&tid[i], NULL, worker, &jobs[i]) != 0) bench_die("pthread_create");
    uint64_t sum = 0;
    for (int i = 0; i < a.threads; i++) {
        pthread_join(tid[i], NULL);
        sum += jobs[i].sum;
    }
    printf("falseshare %s: %d threads, checksum %llu\n", a.mode, a.threads,
           (unsigned long long)sum);
    return 0;
}
