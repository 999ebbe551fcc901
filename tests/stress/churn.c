/* churn.c: thousands of short threads, each leaving blocks behind.
 *
 * Threads run in small batches.  Each allocates blocks of assorted sizes,
 * frees some of them at once, and puts the rest into a shared table, taking
 * out (and checking and freeing, or reallocating and putting back) what an
 * earlier thread left there.  So nearly every block is freed by a thread
 * other than the one that allocated it, usually after that one has exited.
 *
 * The live set is bounded by the table, so memory must stay bounded too.
 * Between batches, after half and after all of the threads have run, the
 * test reads the resident size of the process (/proc/self/statm) and the
 * bytes the allocator counts as in use (mallinfo2: uordblks + hblkhd), and
 * adds up the usable sizes of the blocks really live in the table.  From
 * the middle to the end:
 *   - the resident size must stay under twice the middle plus 16 MiB, and
 *     grow by less than 20 MiB;
 *   - "in use" minus "live" (memory freed but never given back to the
 *     allocator) must grow by less than 4 MiB.
 *
 *   churn [-T threads] [-c threads at a time] [-b blocks per thread]
 *
 * Prints "ok churn" or "not ok churn" (TEST_PREFIX goes before the name). */
#define _GNU_SOURCE
#include "check.h"
#include "stress-util.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

enum { TABLE = 2048, MAX_BATCH = 64 };

static long total_threads = 10000, batch = 8, per_thread = 16;
static _Atomic(void *) table[TABLE];
static atomic_long errors;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (atomic_fetch_add(&errors, 1) < 20) {                                                   \
            printf("# " __VA_ARGS__);                                                              \
            printf("\n");                                                                          \
            fflush(stdout);                                                                        \
        }                                                                                          \
    } while (0)

static size_t random_size(struct rng *r) {
    uint64_t x = rng_next(r) % 100;
    if (x < 2) return rng_range(r, 64 * KiB, 300 * KiB);
    if (x < 20) return rng_range(r, 1 * KiB, 16 * KiB);
    return rng_range(r, 8, 512);
}

static int check_block(const unsigned char *p, const char *where) {
    size_t size = pattern_size(p);
    if (size < 8 || size > MiB || malloc_usable_size((void *)p) < size) {
        FAIL("%s: block %p has a broken header (size %zu)", where, (const void *)p, size);
        return 0;
    }
    size_t bad = pattern_check(p, size, (uintptr_t)p, size);
    if (bad != size) {
        FAIL("%s: block %p of %zu bytes broken at %zu", where, (const void *)p, size, bad);
        return 0;
    }
    return 1;
}

static void *churn_thread(void *arg) {
    struct rng r = {(uint64_t)(uintptr_t)arg * 0x1234567 + 1};
    unsigned char *mine[256];
    long n = per_thread < 256 ? per_thread : 256;
    for (long i = 0; i < n; i++) {
        size_t size = random_size(&r);
        mine[i] = malloc(size);
        if (!mine[i]) {
            FAIL("malloc(%zu) failed", size);
            continue;
        }
        pattern_fill(mine[i], size);
    }
    for (long i = 0; i < n; i++) {
        if (!mine[i] || !check_block(mine[i], "own")) continue;
        if (i % 4 == 0) {
            free(mine[i]);
            continue;
        }
        /* Leave it in the table; deal with what was there. */
        unsigned char *old = atomic_exchange(&table[rng_next(&r) % TABLE], mine[i]);
        if (!old || !check_block(old, "left by another thread")) continue;
        if (rng_next(&r) % 8 == 0) {
            size_t size = pattern_size(old), to = random_size(&r);
            unsigned char *q = realloc(old, to);
            if (!q) {
                FAIL("realloc(%zu) failed", to);
                continue;
            }
            size_t keep = size < to ? size : to;
            if (pattern_check(q, keep, (uintptr_t)old, size) != keep)
                FAIL("realloc of a block left behind lost its contents");
            pattern_fill(q, to);
            old = atomic_exchange(&table[rng_next(&r) % TABLE], q);
            if (!old || !check_block(old, "left by another thread")) continue;
        }
        free(old);
    }
    return NULL;
}

/* Runs threads [from, to) in batches. */
static void run_threads(long from, long to) {
    pthread_t t[MAX_BATCH];
    for (long i = from; i < to; i += batch) {
        long k = to - i < batch ? to - i : batch;
        for (long j = 0; j < k; j++)
            if (pthread_create(&t[j], NULL, churn_thread, (void *)(uintptr_t)(i + j)) != 0) {
                FAIL("pthread_create failed");
                k = j;
                break;
            }
        for (long j = 0; j < k; j++) pthread_join(t[j], NULL);
    }
}

struct sample {
    size_t rss, in_use, live;
};

/* Taken between batches, when only the main thread runs. */
static struct sample take_sample(void) {
    struct sample s = {rss_bytes(), 0, 0};
    struct mallinfo2 mi = mallinfo2();
    s.in_use = mi.uordblks + mi.hblkhd;
    for (int i = 0; i < TABLE; i++) {
        void *p = atomic_load(&table[i]);
        if (p) s.live += malloc_usable_size(p);
    }
    return s;
}

static void print_sample(const char *when, struct sample s) {
    printf("# %s: resident %zu KiB, in use %zu KiB, live %zu KiB\n", when, s.rss >> 10,
           s.in_use >> 10, s.live >> 10);
}

TEST(churn) {
    double start = now_seconds();
    print_sample("start", take_sample());
    run_threads(0, total_threads / 4);
    print_sample("1/4", take_sample());
    run_threads(total_threads / 4, total_threads / 2);
    struct sample mid = take_sample();
    print_sample("1/2", mid);
    run_threads(total_threads / 2, total_threads);
    struct sample end = take_sample();
    print_sample("end", end);
    printf("# %ld threads (%ld at a time, %ld blocks each): %.2f s\n", total_threads, batch,
           per_thread, now_seconds() - start);
    CHECKF(end.rss <= 2 * mid.rss + 16 * MiB, "resident %zu KiB at the end, %zu KiB midway",
           end.rss >> 10, mid.rss >> 10);
    CHECKF(end.rss <= mid.rss + 20 * MiB, "resident grew by %zu KiB in the second half",
           (end.rss - mid.rss) >> 10);
    size_t lost_mid = mid.in_use > mid.live ? mid.in_use - mid.live : 0;
    size_t lost_end = end.in_use > end.live ? end.in_use - end.live : 0;
    CHECKF(lost_end <= lost_mid + 4 * MiB,
           "in use but not live: %zu KiB midway, %zu KiB at the end (freed blocks not reused)",
           lost_mid >> 10, lost_end >> 10);
    long left = 0;
    for (int i = 0; i < TABLE; i++) {
        unsigned char *p = atomic_exchange(&table[i], NULL);
        if (p && check_block(p, "at the end")) free(p), left++;
    }
    printf("# %ld blocks were left in the table\n", left);
    CHECKF(atomic_load(&errors) == 0, "%ld errors", atomic_load(&errors));
}

int main(int argc, char **argv) {
    long values[] = {total_threads, batch, per_thread};
    if (parse_options(argc, argv, "Tcb", values) != 0) return 2;
    total_threads = values[0] < 4 ? 4 : values[0];
    batch = values[1] < 1 ? 1 : values[1] > MAX_BATCH ? MAX_BATCH : values[1];
    per_thread = values[2] < 1 ? 1 : values[2];
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    if (check_allocator() != 0) {
        printf("not ok %sallocator_under_test\n", check_prefix);
        return 1;
    }
    RUN(churn);
    return check_exit_status();
}
