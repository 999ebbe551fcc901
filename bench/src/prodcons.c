/* prodcons: producer/consumer in the manner of xmalloc-test.
 *
 * Threads come in pairs: a producer allocates blocks of 16-256 bytes in
 * batches and hands each batch (itself a malloc'ed array) to its consumer
 * through a bounded queue; the consumer checks and frees them.  Every block
 * is freed by a thread that did not allocate it, which exercises the remote
 * free path and the return of memory to its owner.  With -t 1 there is still
 * one pair. */
#include "bench.h"

#include <pthread.h>

#define BATCH 256
#define QUEUE 64

typedef struct batch_s {
    uint32_t count;
    uint32_t tag;
    void *p[BATCH];
    uint16_t size[BATCH];
} batch_t;

typedef struct queue_s {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    batch_t *items[QUEUE];
    unsigned head, tail; /* items[head .. tail) modulo QUEUE */
    uint64_t batches;    /* batches the producer will send */
    uint64_t checked;    /* blocks checked by the consumer */
    int id;
} queue_t;

static void queue_put(queue_t *q, batch_t *b) {
    pthread_mutex_lock(&q->lock);
    while (q->tail - q->head == QUEUE) pthread_cond_wait(&q->not_full, &q->lock);
    q->items[q->tail++ % QUEUE] = b;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

static batch_t *queue_get(queue_t *q) {
    pthread_mutex_lock(&q->lock);
    while (q->tail == q->head) pthread_cond_wait(&q->not_empty, &q->lock);
    batch_t *b = q->items[q->head++ % QUEUE];
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void *producer(void *arg) {
    queue_t *q = arg;
    bench_rng_t rng = bench_rng((uint64_t)q->id * 2 + 1);
    uint32_t tag = (uint32_t)q->id << 24;
    for (uint64_t n = 0; n < q->batches; n++) {
        batch_t *b = malloc(sizeof *b);
        if (b == NULL) bench_die("out of memory");
        b->count = BATCH;
        b->tag = tag;
        for (int i = 0; i < BATCH; i++) {
            b->size[i] = (uint16_t)bench_range(&rng, 16, 256);
            b->p[i] = malloc(b->size[i]);
            if (b->p[i] == NULL) bench_die("out of memory");
            bench_tag(b->p[i], b->size[i], tag + (uint32_t)i);
        }
        tag += BATCH;
        queue_put(q, b);
    }
    return NULL;
}

static void *consumer(void *arg) {
    queue_t *q = arg;
    for (uint64_t n = 0; n < q->batches; n++) {
        batch_t *b = queue_get(q);
        for (uint32_t i = 0; i < b->count; i++) {
            bench_check("prodcons", b->p[i], b->size[i], b->tag + i);
            free(b->p[i]);
        }
        q->checked += b->count;
        free(b);
    }
    return NULL;
}

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "");
    int pairs = a.threads / 2 > 0 ? a.threads / 2 : 1;
    uint64_t blocks = bench_scaled(8e6, a.scale, BATCH);
    queue_t *q = calloc((size_t)pairs, sizeof *q);
    pthread_t *tid = calloc((size_t)pairs * 2, sizeof *tid);
    uint64_t checked = 0;
    if (q == NULL || tid == NULL) bench_die("out of memory");
    for (int i = 0; i < pairs; i++) {
        pthread_mutex_init(&q[i].lock, NULL);
        pthread_cond_init(&q[i].not_empty, NULL);
        pthread_cond_init(&q[i].not_full, NULL);
        q[i].batches = blocks / BATCH / (uint64_t)pairs;
        if (q[i].batches == 0) q[i].batches = 1;
        q[i].id = i;
        if (pthread_create(&tid[2 * i], NULL, producer, &q[i]) != 0 ||
            pthread_create(&tid[2 * i + 1], NULL, consumer, &q[i]) != 0)
            bench_die("pthread_create");
    }
    for (int i = 0; i < 2 * pairs; i++) pthread_join(tid[i], NULL);
    for (int i = 0; i < pairs; i++) checked += q[i].checked;
    free(q);
    free(tid);
    printf("prodcons: %d pairs, %llu blocks\n", pairs, (unsigned long long)checked);
    return 0;
}
