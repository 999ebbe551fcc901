/* stress.c: many threads allocating, handing blocks over, and dying.
 *
 * Worker threads each keep a table of slots and run random operations on
 * it: allocate (malloc, calloc, realloc(NULL), the memalign family) with
 * sizes mostly 8 B to 2 KiB, some up to 256 KiB and a rare 4 MiB; check and
 * free; realloc; or trade a block through a shared exchange, so that the
 * block another thread put there is checked and freed (or kept and
 * reallocated) by this one.  Every block carries a pattern made of its
 * address and size and is checked before it is freed or moved.
 *
 * Under libmclone, each worker also runs the allocator's own check of its
 * heap (mc_heap_check, found with dlsym) every 5000 operations and at the end
 * of its life; with the check flavour (MCLONE_DEBUG=3) every call validates
 * the heap as well.
 *
 * A worker lives for a number of operations, then leaves half of its blocks
 * in a shared "orphans" table and exits; the main thread starts a new one in
 * its place.  Orphans of dead threads are freed or reallocated by later
 * workers (and what is left, by the main thread at the end), so heaps of
 * exited threads keep getting blocks back.
 *
 *   stress [-t threads] [-n operations per life] [-l lives per thread]
 *          [-s seed]
 *
 * Prints "ok stress" or "not ok stress" (TEST_PREFIX goes before the name),
 * with the first broken blocks as comments. */
#define _GNU_SOURCE
#include "check.h"
#include "stress-util.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

enum { SLOTS = 1000, EXCHANGE = 512, ORPHANS = 4096, MAX_THREADS = 64 };

static long nthreads = 4, ops_per_life = 30000, lives = 6, seed = 1;

static _Atomic(void *) exchange[EXCHANGE];
static _Atomic(void *) orphans[ORPHANS];
static atomic_long errors;
static atomic_long cross_frees, orphan_frees, adopted, heap_checks;

/* libmclone's mc_heap_check when it is the allocator (NULL otherwise). */
static int (*heap_check_fn)(void);

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (atomic_fetch_add(&errors, 1) < 20) {                                                   \
            printf("# " __VA_ARGS__);                                                              \
            printf("\n");                                                                          \
            fflush(stdout);                                                                        \
        }                                                                                          \
    } while (0)

/* A block this thread holds, with the size it should have. */
struct slot {
    unsigned char *p;
    size_t size;
};

static size_t random_size(struct rng *r) {
    uint64_t x = rng_next(r) % 10000;
    if (x < 5) return rng_range(r, 2 * MiB, 4 * MiB); /* rare: huge */
    if (x < 400) return rng_range(r, 2 * KiB, 256 * KiB);
    if (x < 5000) return rng_range(r, 8, 128);
    return rng_range(r, 8, 2 * KiB);
}

static int check_block(const unsigned char *p, size_t size, const char *where) {
    size_t got = pattern_size(p);
    if (got != size) {
        FAIL("%s: block %p of %zu bytes says it has %zu", where, (const void *)p, size, got);
        return 0;
    }
    size_t bad = pattern_check(p, size, (uintptr_t)p, size);
    if (bad != size) {
        FAIL("%s: block %p of %zu bytes broken at offset %zu", where, (const void *)p, size, bad);
        return 0;
    }
    return 1;
}

/* A block handed over by another thread: its size is in its header. */
static size_t foreign_size(const unsigned char *p, const char *where) {
    size_t size = pattern_size(p);
    if (size < 8 || size > 8 * MiB || malloc_usable_size((void *)p) < size) {
        FAIL("%s: block %p has a broken header (size %zu, usable %zu)", where, (const void *)p,
             size, malloc_usable_size((void *)p));
        return 0;
    }
    return size;
}

static void check_and_free_foreign(unsigned char *p, const char *where) {
    size_t size = foreign_size(p, where);
    if (size) check_block(p, size, where);
    free(p);
}

static unsigned char *allocate(struct rng *r, size_t size) {
    unsigned char *p = NULL;
    size_t alignment = 1; /* asked for; 16 (8 below 16 bytes) is implied */
    uint64_t how = rng_next(r) % 100;
    errno = 0;
    if (how < 70) {
        p = malloc(size);
    } else if (how < 80) {
        p = calloc(1, size);
        for (size_t i = 0; p && i < size; i++)
            if (p[i]) {
                FAIL("calloc(%zu): byte %zu is %d", size, i, p[i]);
                break;
            }
    } else if (how < 85) {
        p = realloc(NULL, size);
    } else {
        alignment = (size_t)1 << rng_range(r, 3, rng_next(r) % 50 == 0 ? 21 : 12);
        if (how < 90) {
            void *out = NULL;
            int rc = posix_memalign(&out, alignment, size);
            if (rc != 0) FAIL("posix_memalign(%zu, %zu) = %d", alignment, size, rc);
            p = out;
        } else if (how < 95) {
            p = aligned_alloc(alignment, size);
        } else {
            p = memalign(alignment, size);
        }
    }
    if (!p) {
        FAIL("allocation of %zu bytes (way %d) failed, errno %d", size, (int)how, errno);
        return NULL;
    }
    size_t implied = size >= 16 ? 16 : 8;
    if (alignment < implied) alignment = implied;
    if ((uintptr_t)p % alignment != 0)
        FAIL("block %p of %zu bytes is not %zu-aligned", (void *)p, size, alignment);
    if (malloc_usable_size(p) < size)
        FAIL("block %p of %zu bytes: usable size %zu", (void *)p, size, malloc_usable_size(p));
    pattern_fill(p, size);
    return p;
}

/* Reallocates a block, checks what it kept, refills it; *to is its new size. */
static unsigned char *resize(struct rng *r, unsigned char *p, size_t size, size_t *new_size) {
    size_t to = random_size(r);
    if (rng_next(r) % 4 == 0) to = size + rng_range(r, 0, 64); /* often in place */
    *new_size = to;
    uintptr_t old = (uintptr_t)p;
    unsigned char *q = realloc(p, to);
    if (!q) {
        FAIL("realloc(%zu -> %zu) failed, errno %d", size, to, errno);
        return NULL;
    }
    size_t keep = size < to ? size : to;
    size_t bad = pattern_check(q, keep, old, size);
    if (bad != keep)
        FAIL("realloc %p (%zu) -> %p (%zu) lost byte %zu", (void *)old, size, (void *)q, to, bad);
    if ((uintptr_t)q % 16 != 0 && to >= 16) FAIL("realloc result %p is not aligned", (void *)q);
    pattern_fill(q, to);
    return q;
}

struct worker {
    pthread_t thread;
    uint64_t seed;
};

static void heap_check(const char *when) {
    if (!heap_check_fn) return;
    atomic_fetch_add(&heap_checks, 1);
    if (heap_check_fn() != 0) FAIL("mc_heap_check failed %s", when);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct rng r = {w->seed};
    struct slot *slots = calloc(SLOTS, sizeof *slots);
    if (!slots) {
        FAIL("no memory for the slot table");
        return NULL;
    }
    /* Start by taking some orphans of dead threads. */
    for (int i = 0; i < 200; i++) {
        unsigned char *o = atomic_exchange(&orphans[rng_next(&r) % ORPHANS], NULL);
        if (!o) continue;
        size_t size = foreign_size(o, "orphan");
        if (!size) continue;
        if (!check_block(o, size, "orphan")) continue;
        struct slot *s = &slots[rng_next(&r) % SLOTS];
        if (!s->p && rng_next(&r) % 2) {
            s->size = size;
            s->p = rng_next(&r) % 2 ? resize(&r, o, size, &s->size) : o;
        } else {
            free(o);
        }
        atomic_fetch_add(&orphan_frees, 1);
    }
    for (long op = 0; op < ops_per_life; op++) {
        if (op % 5000 == 4999) heap_check("during a worker's life");
        struct slot *s = &slots[rng_next(&r) % SLOTS];
        if (!s->p) {
            s->size = random_size(&r);
            s->p = allocate(&r, s->size);
            continue;
        }
        if (!check_block(s->p, s->size, "own")) {
            s->p = NULL; /* leave a broken block alone */
            continue;
        }
        uint64_t what = rng_next(&r) % 100;
        if (what < 55) {
            free(s->p);
            s->p = NULL;
        } else if (what < 75) {
            s->p = resize(&r, s->p, s->size, &s->size);
        } else {
            /* Trade through the exchange: take whatever is there. */
            unsigned char *got = atomic_exchange(&exchange[rng_next(&r) % EXCHANGE], s->p);
            s->p = NULL;
            if (!got) continue;
            size_t size = foreign_size(got, "exchange");
            if (!size || !check_block(got, size, "exchange")) continue;
            if (rng_next(&r) % 3 == 0) {
                s->p = got; /* keep it: it may be reallocated or traded again */
                s->size = size;
                atomic_fetch_add(&adopted, 1);
            } else {
                free(got);
                atomic_fetch_add(&cross_frees, 1);
            }
        }
    }
    heap_check("at the end of a worker's life");
    /* Die leaving about half of the blocks to others. */
    for (int i = 0; i < SLOTS; i++) {
        struct slot *s = &slots[i];
        if (!s->p) continue;
        if (!check_block(s->p, s->size, "at exit")) continue;
        if (rng_next(&r) % 2) {
            unsigned char *old = atomic_exchange(&orphans[rng_next(&r) % ORPHANS], s->p);
            if (old) check_and_free_foreign(old, "displaced orphan");
        } else {
            free(s->p);
        }
    }
    free(slots);
    return NULL;
}

TEST(stress) {
    static struct worker workers[MAX_THREADS];
    double start = now_seconds();
    uint64_t next_seed = (uint64_t)seed * 1000003;
    for (long i = 0; i < nthreads; i++) {
        workers[i].seed = next_seed++;
        CHECK(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) == 0);
    }
    /* Replace the workers one at a time as they finish their lives. */
    for (long life = 1; life < lives; life++) {
        for (long i = 0; i < nthreads; i++) {
            pthread_join(workers[i].thread, NULL);
            workers[i].seed = next_seed++;
            CHECK(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) == 0);
        }
    }
    for (long i = 0; i < nthreads; i++) pthread_join(workers[i].thread, NULL);
    /* What the dead left behind, freed by the main thread. */
    long left = 0;
    for (int i = 0; i < EXCHANGE; i++) {
        unsigned char *p = atomic_exchange(&exchange[i], NULL);
        if (p) check_and_free_foreign(p, "exchange at the end"), left++;
    }
    for (int i = 0; i < ORPHANS; i++) {
        unsigned char *p = atomic_exchange(&orphans[i], NULL);
        if (p) check_and_free_foreign(p, "orphan at the end"), left++;
    }
    heap_check("in the main thread at the end");
    printf("# %ld threads x %ld lives x %ld operations: %.2f s, %ld cross-thread frees, %ld "
           "orphans freed, %ld blocks adopted, %ld left at the end, %ld heap checks\n",
           nthreads, lives, ops_per_life, now_seconds() - start, atomic_load(&cross_frees),
           atomic_load(&orphan_frees), atomic_load(&adopted), left, atomic_load(&heap_checks));
    CHECKF(atomic_load(&errors) == 0, "%ld errors", atomic_load(&errors));
}

int main(int argc, char **argv) {
    long values[] = {nthreads, ops_per_life, lives, seed};
    if (parse_options(argc, argv, "tnls", values) != 0) return 2;
    nthreads = values[0] < 1 ? 1 : values[0] > MAX_THREADS ? MAX_THREADS : values[0];
    ops_per_life = values[1];
    lives = values[2] < 1 ? 1 : values[2];
    seed = values[3];
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    if (check_allocator() != 0) {
        printf("not ok %sallocator_under_test\n", check_prefix);
        return 1;
    }
    heap_check_fn = (int (*)(void))dlsym(RTLD_DEFAULT, "mc_heap_check");
    RUN(stress);
    return check_exit_status();
}
