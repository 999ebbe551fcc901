/* mt-mc.c: threads using the allocator through its mc_ names only.
 *
 * Built twice (mk/reliability.mk): against libmclone.so like test-mc-api,
 * and statically against the ThreadSanitizer build's mc_ names
 * (build/tsan/libmclone-mc.o), so that the sanitizer sees every atomic
 * operation and every plain access of the allocator while the program's own
 * bookkeeping stays on the system malloc.  A data race inside the allocator
 * (or a missing release/acquire pair that lets one thread see a block's old
 * contents) is then a ThreadSanitizer report and a failed run.
 *
 * Cases, each a test line:
 *   trim_after_exit  a thread allocates 20000 blocks and exits, the main
 *                thread frees them and calls mc_trim(0): the statistics
 *                must show nothing allocated and the memory given back
 *   trade        worker threads allocate with every mc_ function, fill each
 *                block with a pattern of its address and size, check it
 *                before every free and realloc, trade blocks through a
 *                shared table (so most frees are cross-thread), read the
 *                usable size of blocks other threads allocated, and exit
 *                with live blocks left in an orphans table, which later
 *                threads (new ones take their place) check and free or
 *                reallocate
 *   stats_while_running  the same, with a thread reading mc_stats_get all
 *                the while (the statistics read other threads' pages)
 *   pipeline     a producer allocates, consumers check and free, then the
 *                producer exits while its blocks are still in the queue
 *   exit_live    threads exit holding blocks (large and huge too) that the
 *                main thread frees after they are gone
 *   huge_free_vs_trim  two threads allocate, grow and free huge blocks for
 *                two seconds while a third calls mc_trim(0) without pause
 *   heap_checks  every thread's heap passes mc_heap_check after its work,
 *                and the main thread's after everything is freed
 *
 *   mt-mc [-t threads] [-n operations per life] [-l lives] [-s seed] [case...]
 *
 * Cases run in the order above; name some to run only those.  TEST_PREFIX
 * goes before each test name; with TEST_EXPECT_LIB set, malloc must come from
 * a library whose path contains it. */
#define _GNU_SOURCE
#include "check.h"
#include "mclone.h"
#include "stress/stress-util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

enum { SLOTS = 256, TABLE = 256, ORPHANS = 1024, MAX_THREADS = 32, QUEUE = 64 };

static long nthreads = 4, ops_per_life = 20000, lives = 3, seed = 1;

static _Atomic(unsigned char *) table[TABLE];
static _Atomic(unsigned char *) orphans[ORPHANS];
static atomic_long errors, heap_check_failures;
static atomic_int stats_stop;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (atomic_fetch_add(&errors, 1) < 20) {                                                   \
            printf("# " __VA_ARGS__);                                                              \
            printf("\n");                                                                          \
            fflush(stdout);                                                                        \
        }                                                                                          \
    } while (0)

static size_t random_size(struct rng *r) {
    uint64_t x = rng_next(r) % 1000;
    if (x < 2) return rng_range(r, 2 * MiB + 1, 5 * MiB);    /* huge */
    if (x < 20) return rng_range(r, 128 * KiB + 1, 2 * MiB); /* large */
    if (x < 100) return rng_range(r, 1 * KiB, 128 * KiB);    /* medium */
    return rng_range(r, 8, 1 * KiB);
}

/* A filled block says its size in its first word; check all of it. */
static size_t block_check(const unsigned char *p, const char *where) {
    size_t size = pattern_size(p);
    if (size < 8 || size > 8 * MiB || mc_usable_size(p) < size) {
        FAIL("%s: block %p has a broken header (size %zu, usable %zu)", where, (const void *)p,
             size, mc_usable_size(p));
        return 0;
    }
    size_t bad = pattern_check(p, size, (uintptr_t)p, size);
    if (bad != size) {
        FAIL("%s: block %p of %zu bytes broken at offset %zu", where, (const void *)p, size, bad);
        return 0;
    }
    return size;
}

static unsigned char *block_new(struct rng *r, size_t size) {
    unsigned char *p = NULL;
    size_t align = size >= 16 ? 16 : 8; /* what any block gets */
    errno = 0;
    switch (rng_next(r) % 10) {
    case 0:
        p = mc_calloc(1, size);
        /* every byte up to 64 KiB, then every 61st */
        for (size_t i = 0; p && i < size; i += i < 64 * KiB ? 1 : 61)
            if (p[i] != 0) {
                FAIL("mc_calloc(%zu) = %p: byte %zu is %d", size, (void *)p, i, p[i]);
                break;
            }
        break;
    case 1:
        p = mc_realloc(NULL, size);
        break;
    case 2:
        align = (size_t)1 << rng_range(r, 4, 13);
        p = mc_memalign(align, size);
        break;
    case 3: {
        void *out = NULL;
        align = (size_t)1 << rng_range(r, 4, 17);
        int rc = mc_posix_memalign(&out, align, size);
        if (rc != 0) FAIL("mc_posix_memalign(%zu, %zu) = %d", align, size, rc);
        p = out;
        break;
    }
    case 4:
        align = (size_t)1 << rng_range(r, 4, 12);
        p = mc_aligned_alloc(align, size);
        break;
    case 5:
        if (size < 64 * KiB) {
            align = 4096;
            p = mc_valloc(size);
            break;
        }
        /* fall through */
    default:
        p = mc_malloc(size);
        break;
    }
    if (!p) {
        FAIL("allocation of %zu bytes failed, errno %d", size, errno);
        return NULL;
    }
    if ((uintptr_t)p % align != 0)
        FAIL("block %p of %zu is not %zu-aligned", (void *)p, size, align);
    pattern_fill(p, size);
    return p;
}

static void block_free(struct rng *r, unsigned char *p, const char *where) {
    size_t size = block_check(p, where);
    if (size && rng_next(r) % 4 == 0)
        mc_free_sized(p, size);
    else
        mc_free(p);
}

static unsigned char *block_resize(struct rng *r, unsigned char *p) {
    size_t size = block_check(p, "before realloc");
    if (!size) return NULL;
    size_t to = rng_next(r) % 3 == 0 ? size + rng_range(r, 0, 100) : random_size(r);
    uintptr_t old = (uintptr_t)p;
    unsigned char *q = mc_realloc(p, to);
    if (!q) {
        FAIL("mc_realloc(%zu -> %zu) failed, errno %d", size, to, errno);
        return NULL;
    }
    size_t keep = size < to ? size : to;
    size_t bad = pattern_check(q, keep, old, size);
    if (bad != keep) FAIL("mc_realloc(%zu -> %zu) lost byte %zu", size, to, bad);
    pattern_fill(q, to);
    return q;
}

static void heap_check(const char *who) {
    if (mc_heap_check() != 0) {
        atomic_fetch_add(&heap_check_failures, 1);
        FAIL("%s: mc_heap_check failed", who);
    }
}

/* ---- trade ------------------------------------------------------------------------ */
struct worker {
    pthread_t thread;
    uint64_t seed;
};

static void *trade_main(void *arg) {
    struct worker *w = arg;
    struct rng r = {w->seed};
    unsigned char *slots[SLOTS] = {0};
    /* Orphans of dead threads first. */
    for (int i = 0; i < 64; i++) {
        unsigned char *o = atomic_exchange(&orphans[rng_next(&r) % ORPHANS], NULL);
        if (!o) continue;
        unsigned char **s = &slots[rng_next(&r) % SLOTS];
        if (!*s && rng_next(&r) % 2)
            *s = block_resize(&r, o);
        else
            block_free(&r, o, "orphan");
    }
    for (long op = 0; op < ops_per_life; op++) {
        unsigned char **s = &slots[rng_next(&r) % SLOTS];
        if (!*s) {
            *s = block_new(&r, random_size(&r));
            continue;
        }
        uint64_t what = rng_next(&r) % 100;
        if (what < 40) {
            block_free(&r, *s, "own");
            *s = NULL;
        } else if (what < 55) {
            *s = block_resize(&r, *s);
        } else if (what < 60) {
            if (!block_check(*s, "own")) *s = NULL;
        } else if (what < 98) {
            unsigned char *got = atomic_exchange(&table[rng_next(&r) % TABLE], *s);
            *s = NULL;
            if (!got) continue;
            if (rng_next(&r) % 3 == 0)
                *s = block_check(got, "traded") ? got : NULL;
            else
                block_free(&r, got, "traded");
        } else if (what < 99) {
            mc_collect(false);
        } else {
            mc_trim(0);
        }
    }
    heap_check("trade worker");
    /* Exit with half of the blocks still live, for others to free. */
    for (int i = 0; i < SLOTS; i++) {
        if (!slots[i]) continue;
        if (rng_next(&r) % 2) {
            unsigned char *old = atomic_exchange(&orphans[rng_next(&r) % ORPHANS], slots[i]);
            if (old) block_free(&r, old, "displaced orphan");
        } else {
            block_free(&r, slots[i], "own at exit");
        }
    }
    return NULL;
}

/* Reads what every thread's pages say, all the time. */
static void *stats_main(void *arg) {
    (void)arg;
    long rounds = 0;
    while (!atomic_load(&stats_stop)) {
        mc_stats_t st;
        mc_stats_get(&st);
        if (st.mapped < st.segments) FAIL("statistics: %zu bytes mapped", st.mapped);
        if (++rounds % 64 == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* Worker threads through lives; with the statistics reader or without. */
static void run_workers(int with_stats) {
    static struct worker workers[MAX_THREADS];
    static uint64_t next = 1;
    next += (uint64_t)seed * 7919;
    pthread_t stats;
    atomic_store(&stats_stop, 0);
    if (with_stats) CHECK(pthread_create(&stats, NULL, stats_main, NULL) == 0);
    for (long i = 0; i < nthreads; i++) {
        workers[i].seed = next++;
        CHECK(pthread_create(&workers[i].thread, NULL, trade_main, &workers[i]) == 0);
    }
    for (long life = 1; life < lives; life++)
        for (long i = 0; i < nthreads; i++) {
            pthread_join(workers[i].thread, NULL);
            workers[i].seed = next++;
            CHECK(pthread_create(&workers[i].thread, NULL, trade_main, &workers[i]) == 0);
        }
    for (long i = 0; i < nthreads; i++) pthread_join(workers[i].thread, NULL);
    atomic_store(&stats_stop, 1);
    if (with_stats) pthread_join(stats, NULL);
    struct rng r = {5};
    for (int i = 0; i < TABLE; i++) {
        unsigned char *p = atomic_exchange(&table[i], NULL);
        if (p) block_free(&r, p, "table at the end");
    }
    for (int i = 0; i < ORPHANS; i++) {
        unsigned char *p = atomic_exchange(&orphans[i], NULL);
        if (p) block_free(&r, p, "orphan at the end");
    }
}

TEST(trade) {
    long before = atomic_load(&errors);
    run_workers(0);
    CHECKF(atomic_load(&errors) == before, "%ld errors", atomic_load(&errors) - before);
}

/* The same with a thread reading mc_stats_get all the while. */
TEST(stats_while_running) {
    long before = atomic_load(&errors);
    run_workers(1);
    CHECKF(atomic_load(&errors) == before, "%ld errors", atomic_load(&errors) - before);
}

/* ---- pipeline ---------------------------------------------------------------------- */
struct queue {
    _Atomic(unsigned char *) cell[QUEUE];
    atomic_int producer_done;
};

static void *producer_main(void *arg) {
    struct queue *q = arg;
    struct rng r = {77};
    long n = ops_per_life;
    for (long i = 0; i < n; i++) {
        size_t size =
            rng_next(&r) % 50 == 0 ? rng_range(&r, KiB, 300 * KiB) : rng_range(&r, 8, 600);
        unsigned char *p = block_new(&r, size);
        if (!p) continue;
        /* Spin for a free cell; the consumers empty them. */
        for (unsigned k = (unsigned)i;; k++) {
            unsigned char *expected = NULL;
            if (atomic_compare_exchange_strong(&q->cell[k % QUEUE], &expected, p)) break;
            if (k % QUEUE == QUEUE - 1) sched_yield();
        }
    }
    /* Exit with the last blocks still in the queue. */
    atomic_store(&q->producer_done, 1);
    return NULL;
}

static void *consumer_main(void *arg) {
    struct queue *q = arg;
    struct rng r = {(uint64_t)(uintptr_t)&r};
    for (unsigned k = 0;; k++) {
        int done = atomic_load(&q->producer_done);
        unsigned char *p = atomic_exchange(&q->cell[k % QUEUE], NULL);
        if (p) {
            if (rng_next(&r) % 8 == 0) p = block_resize(&r, p);
            if (p) block_free(&r, p, "consumer");
        } else if (done) {
            int empty = 1;
            for (int i = 0; i < QUEUE; i++) empty &= atomic_load(&q->cell[i]) == NULL;
            if (empty) break;
        } else if (k % QUEUE == QUEUE - 1) {
            sched_yield();
        }
    }
    heap_check("consumer");
    return NULL;
}

TEST(pipeline) {
    static struct queue q;
    pthread_t prod, cons[2];
    long before = atomic_load(&errors);
    CHECK(pthread_create(&prod, NULL, producer_main, &q) == 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&cons[i], NULL, consumer_main, &q) == 0);
    pthread_join(prod, NULL);
    for (int i = 0; i < 2; i++) pthread_join(cons[i], NULL);
    CHECKF(atomic_load(&errors) == before, "%ld errors", atomic_load(&errors) - before);
}

/* ---- exit_live ---------------------------------------------------------------------- */
struct leaver {
    pthread_t thread;
    uint64_t seed;
    unsigned char *blocks[48];
};

static void *leaver_main(void *arg) {
    struct leaver *l = arg;
    struct rng r = {l->seed};
    for (int i = 0; i < 48; i++) {
        size_t size = i < 2    ? rng_range(&r, 3 * MiB, 5 * MiB)
                      : i < 6  ? rng_range(&r, 200 * KiB, 1 * MiB)
                      : i < 16 ? rng_range(&r, 2 * KiB, 64 * KiB)
                               : rng_range(&r, 8, 512);
        l->blocks[i] = block_new(&r, size);
    }
    /* Free a few of them, and leave with the rest. */
    for (int i = 0; i < 48; i += 5) {
        if (l->blocks[i]) block_free(&r, l->blocks[i], "leaver");
        l->blocks[i] = NULL;
    }
    heap_check("leaver");
    return NULL;
}

TEST(exit_live) {
    static struct leaver ls[8];
    long before = atomic_load(&errors);
    for (int round = 0; round < 4; round++) {
        int n = (int)(nthreads * 2 < 8 ? nthreads * 2 : 8);
        for (int i = 0; i < n; i++) {
            ls[i].seed = (uint64_t)(round * 100 + i + 1);
            CHECK(pthread_create(&ls[i].thread, NULL, leaver_main, &ls[i]) == 0);
        }
        for (int i = 0; i < n; i++) pthread_join(ls[i].thread, NULL);
        /* Every owner is gone: the main thread frees, reallocates, frees. */
        struct rng r = {(uint64_t)round + 9};
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 48; k++) {
                unsigned char *p = ls[i].blocks[k];
                if (!p) continue;
                if (k % 7 == 3) p = block_resize(&r, p);
                if (p) block_free(&r, p, "left by an exited thread");
                ls[i].blocks[k] = NULL;
            }
    }
    CHECKF(atomic_load(&errors) == before, "%ld errors", atomic_load(&errors) - before);
}

/* ---- adopt_aligned -------------------------------------------------------------------
 * A block aligned inside a large span (alignment above a slice) outlives its
 * thread; a second thread asks its usable size (which reads the page's
 * flags) while a third adopts the abandoned segment for a size class it has
 * no page for.  Adopting once rewrote the flags of every page, this one
 * included: a data race for ThreadSanitizer to find. */
static void *_Atomic adopt_block;
static atomic_int adopt_read;

static void *adopt_owner(void *arg) {
    (void)arg;
    void *p = NULL;
    if (mc_posix_memalign(&p, 128 * KiB, 1000) == 0) atomic_store(&adopt_block, p);
    return mc_malloc(100); /* a second block: the segment stays non-empty */
}

static void *adopt_reader(void *arg) {
    (void)arg;
    unsigned char *p = atomic_load(&adopt_block);
    size_t usable = mc_usable_size(p);
    atomic_store_explicit(&adopt_read, 1, memory_order_relaxed); /* no ordering, on purpose */
    return (void *)(uintptr_t)(usable >= 1000);
}

static void *adopt_adopter(void *arg) {
    (void)arg;
    while (!atomic_load_explicit(&adopt_read, memory_order_relaxed)) sched_yield();
    mc_free(mc_malloc(3000)); /* an empty size class: adopts the abandoned segment */
    return NULL;
}

TEST(adopt_aligned) {
    for (int round = 0; round < 20; round++) {
        pthread_t owner, reader, adopter;
        void *other = NULL, *ok = NULL;
        atomic_store(&adopt_block, NULL);
        atomic_store(&adopt_read, 0);
        CHECK(pthread_create(&owner, NULL, adopt_owner, NULL) == 0);
        pthread_join(owner, &other);
        CHECK(atomic_load(&adopt_block) != NULL && other != NULL);
        if (atomic_load(&adopt_block) == NULL) return;
        CHECK(pthread_create(&adopter, NULL, adopt_adopter, NULL) == 0);
        CHECK(pthread_create(&reader, NULL, adopt_reader, NULL) == 0);
        pthread_join(reader, &ok);
        pthread_join(adopter, NULL);
        CHECK(ok != NULL);
        mc_free(atomic_load(&adopt_block));
        mc_free(other);
    }
}

/* ---- trim_after_exit --------------------------------------------------------------
 * A thread allocates and exits; the main thread frees every block and trims.
 * Nothing is live any more: the statistics must say so (allocated is "bytes
 * in live blocks"), and mc_trim ("return free memory to the OS now") must
 * have given the memory back: committed and mapped are back where they were
 * before the thread. */
enum { EXIT_BLOCKS = 20000 };
static void *exit_blocks[EXIT_BLOCKS];

static void *allocate_and_exit(void *arg) {
    size_t n = (size_t)(uintptr_t)arg;
    for (size_t i = 0; i < n; i++) exit_blocks[i] = mc_malloc(16 + (i % 64) * 16);
    return NULL;
}

TEST(trim_after_exit) {
    pthread_t t;
    /* A first thread, so that what the first thread creates exists. */
    CHECK(pthread_create(&t, NULL, allocate_and_exit, (void *)(uintptr_t)1) == 0);
    pthread_join(t, NULL);
    mc_free(exit_blocks[0]);
    mc_collect(true);
    mc_trim(0);
    mc_stats_t before, after;
    mc_stats_get(&before);
    CHECK(pthread_create(&t, NULL, allocate_and_exit, (void *)(uintptr_t)EXIT_BLOCKS) == 0);
    pthread_join(t, NULL);
    for (size_t i = 0; i < EXIT_BLOCKS; i++) mc_free(exit_blocks[i]);
    mc_collect(true);
    mc_trim(0);
    mc_stats_get(&after);
    printf("# before the thread: allocated %zu, committed %zu, mapped %zu; after freeing and "
           "trimming: allocated %zu, committed %zu, mapped %zu, %zu segments abandoned\n",
           before.allocated, before.committed, before.mapped, after.allocated, after.committed,
           after.mapped, after.segments_abandoned);
    CHECKF(after.allocated <= before.allocated + 64 * KiB, "%zu bytes still counted as allocated",
           after.allocated - before.allocated);
    CHECKF(after.committed <= before.committed + 256 * KiB, "%zu bytes still committed",
           after.committed - before.committed);
    CHECKF(after.mapped <= before.mapped + 256 * KiB, "%zu bytes still mapped",
           after.mapped - before.mapped);
}

/* ---- huge_free_vs_trim ----------------------------------------------------------------
 * Threads free huge blocks (which may go to a cache of huge mappings) while
 * another thread trims (which empties that cache) without pause, for about
 * two seconds. */
static atomic_int trim_stop;

static void *trimmer_main(void *arg) {
    (void)arg;
    while (!atomic_load(&trim_stop)) mc_trim(0);
    return NULL;
}

static void *huge_churn_main(void *arg) {
    struct rng r = {(uint64_t)(uintptr_t)arg};
    double end = now_seconds() + 2;
    for (long i = 0; now_seconds() < end; i++) {
        size_t size = rng_range(&r, 2 * MiB + 1, 6 * MiB);
        unsigned char *p = mc_malloc(size);
        if (!p) {
            FAIL("mc_malloc(%zu) failed", size);
            break;
        }
        p[0] = p[size - 1] = (unsigned char)i;
        if (i % 8 == 0) {
            unsigned char *q = mc_realloc(p, size + MiB);
            if (q) p = q;
        }
        mc_free(p);
    }
    return NULL;
}

TEST(huge_free_vs_trim) {
    long before = atomic_load(&errors);
    pthread_t trimmer, churn[2];
    atomic_store(&trim_stop, 0);
    CHECK(pthread_create(&trimmer, NULL, trimmer_main, NULL) == 0);
    for (uintptr_t i = 0; i < 2; i++)
        CHECK(pthread_create(&churn[i], NULL, huge_churn_main, (void *)(i + 1)) == 0);
    for (int i = 0; i < 2; i++) pthread_join(churn[i], NULL);
    atomic_store(&trim_stop, 1);
    pthread_join(trimmer, NULL);
    CHECKF(atomic_load(&errors) == before, "%ld errors", atomic_load(&errors) - before);
}

TEST(heap_checks) {
    heap_check("main");
    mc_collect(true);
    mc_trim(0);
    heap_check("main after trim");
    CHECKF(atomic_load(&heap_check_failures) == 0, "%ld heap checks failed",
           atomic_load(&heap_check_failures));
}

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    /* first: it compares with the statistics before it, which the
       threads of the other cases would leave behind */
    {"trim_after_exit", test_trim_after_exit},
    {"trade", test_trade},
    {"stats_while_running", test_stats_while_running},
    {"pipeline", test_pipeline},
    {"exit_live", test_exit_live},
    {"huge_free_vs_trim", test_huge_free_vs_trim},
    {"adopt_aligned", test_adopt_aligned},
    {"heap_checks", test_heap_checks},
};

int main(int argc, char **argv) {
    /* Options first, then the names of the cases to run (default: all). */
    int nopts = 1;
    while (nopts < argc && argv[nopts][0] == '-') nopts += 2;
    if (nopts > argc) nopts = argc;
    long values[] = {nthreads, ops_per_life, lives, seed};
    if (parse_options(nopts, argv, "tnls", values) != 0) return 2;
    nthreads = values[0] < 1 ? 1 : values[0] > MAX_THREADS ? MAX_THREADS : values[0];
    ops_per_life = values[1] < 1 ? 1 : values[1];
    lives = values[2] < 1 ? 1 : values[2];
    seed = values[3];
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    if (check_allocator() != 0) { /* TEST_EXPECT_LIB, as in the stress programs */
        printf("not ok %sallocator_under_test\n", check_prefix);
        return 1;
    }
    size_t ncases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < ncases; i++) {
        int wanted = nopts == argc;
        for (int k = nopts; k < argc; k++) wanted |= strcmp(argv[k], cases[i].name) == 0;
        if (!wanted) continue;
        check_test_failed = 0;
        cases[i].fn();
        printf("%s %s%s\n", check_test_failed ? "not ok" : "ok", check_prefix, cases[i].name);
        fflush(stdout);
        check_any_failed |= check_test_failed;
    }
    for (int k = nopts; k < argc; k++) {
        size_t i = 0;
        while (i < ncases && strcmp(argv[k], cases[i].name) != 0) i++;
        if (i == ncases) {
            fprintf(stderr, "%s: no case %s\n", argv[0], argv[k]);
            return 2;
        }
    }
    return check_exit_status();
}
