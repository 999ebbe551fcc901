/* faults.c: the OS says no.
 *
 * Linked against the fault-injection flavour (build/fault), whose
 * mc_test_fail_after(n, repeat) makes the (n+1)th OS call from then on that
 * can fail (mmap, mremap, madvise purge) fail, and with repeat every later
 * one too.  For each workload below, a dry run counts the OS calls it makes;
 * then for n from 0 to that count (and a little beyond, as threads and the
 * clock make counts vary), in a child process of its own:
 *
 *   1. the workload runs once without faults (so that what is created once
 *      per process exists), everything is freed, mc_trim(0): the baseline
 *      statistics are read;
 *   2. faults are armed at n and the workload runs: every allocation either
 *      works (aligned, usable size big enough, calloc zeroed) or returns
 *      NULL with errno ENOMEM (posix_memalign: returns ENOMEM and leaves its
 *      out pointer alone); a failed realloc leaves its block as it was;
 *      every live block keeps the pattern written into it (checked before
 *      every free and realloc); nothing crashes;
 *   3. faults off: mc_heap_check() passes, everything is freed, and after
 *      mc_collect(true) and mc_trim(0) nothing is lost: the bytes allocated,
 *      committed and mapped are back at the baseline;
 *   4. the workload runs again and now every call must work; freed and
 *      trimmed, the statistics are back at the baseline again.
 *
 * Workloads:
 *   api      every allocation function over sizes from 0 to 9 MiB and
 *            alignments up to 1 GiB, realloc chains from 10 bytes to 20 MiB
 *            and back, frees and reallocations in between
 *   many     2000 random operations over 600 live blocks, 8 bytes to 1 MiB
 *            and a few huge ones, with collections in between
 *   purge    free pages purged at once (MCLONE_PURGE_DELAY_MS=0), with
 *            MADV_DONTNEED and with MADV_FREE, and calloc after the purges
 *   huge     huge blocks grown and shrunk by realloc (mremap in place and
 *            moving), and huge alignments
 *   threads  three threads trading blocks and exiting with live ones; the
 *            main thread frees what they left
 *
 * Before the sweeps, one direct case: with every mremap refused (and only
 * those: mc_test_fail_kinds), huge blocks grown and shrunk by realloc must
 * still work, by a copy, keeping their contents.
 *
 *   faults [-p points]         every sweep: one "ok"/"not ok" line each
 *                              (names: "<workload>/once", "<workload>/repeat");
 *                              at most about 80 fault points per sweep (or
 *                              -p): every n up to half of that, then n
 *                              spread evenly up to the count
 *   faults -w W -n N -r R      one child's work: workload W (0 api, 1 many,
 *                              2 purge, 3 huge, 4 threads) with faults at N,
 *                              repeating if R is 1 (to reproduce a failure)
 *
 * TEST_PREFIX goes before each name. */
#define _GNU_SOURCE
#include "check.h"
#include "mclone.h"
#include "stress/stress-util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>

/* Exported by build/fault (a no-op in other flavours); not in mclone.h. */
void mc_test_fail_after(long n, bool repeat);
void mc_test_fail_kinds(unsigned kinds); /* 1 map, 2 remap, 4 purge */

enum { MAX_BLOCKS = 4096, MAX_SAY = 40 };

/* ---- Reporting without allocating ---------------------------------------------------- */
static atomic_int said, problems, refusals;

static void say(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    if (write(1, buf, (size_t)n) < 0) return;
}

#define PROBLEM(...)                                                                               \
    do {                                                                                           \
        atomic_fetch_add(&problems, 1);                                                            \
        if (atomic_fetch_add(&said, 1) < MAX_SAY) say("# " __VA_ARGS__);                           \
    } while (0)

/* While faults are armed a refusal is allowed; otherwise it is a problem. */
static atomic_bool faults_armed;

static void refused(const char *what, size_t size, size_t align, int err) {
    atomic_fetch_add(&refusals, 1);
    if (err != ENOMEM)
        PROBLEM("%s(size %zu, alignment %zu) failed with errno %d, not ENOMEM", what, size, align,
                err);
    else if (!atomic_load(&faults_armed))
        PROBLEM("%s(size %zu, alignment %zu) failed without any fault", what, size, align);
}

/* ---- Live blocks ---------------------------------------------------------------------- */
struct block {
    unsigned char *p;
    size_t size;
};

struct table {
    struct block b[MAX_BLOCKS];
    int n;
};

/* Every block carries the pattern of its address and size (stress-util.h):
 * all of it up to 64 KiB; above, the first and last 4 KiB and one word in
 * every 4 KiB (every page), or in every 64 KiB above 1 MiB (so that huge
 * blocks do not cost their whole size in page faults).
 * Blocks under 8 bytes are not filled.  next_word gives the offset of the
 * next word written and checked. */
static size_t next_word(size_t off, size_t size) {
    const size_t stride = size > MiB ? 64 * KiB : 4 * KiB;
    off += 8;
    if (size > 64 * KiB && off >= 4 * KiB && off + 4 * KiB < size) {
        size_t next = (off + stride - 1) / stride * stride;
        size_t tail = (size - 4 * KiB) & ~(size_t)7;
        off = next < tail ? next : tail;
    }
    return off;
}

static void fill(unsigned char *p, size_t size) {
    if (size < 8) return;
    for (size_t off = 0; off < size; off = next_word(off, size)) {
        uint64_t w = pattern_word((uintptr_t)p, size, off);
        memcpy(p + off, &w, size - off < 8 ? size - off : 8);
    }
}

/* The first len bytes at p hold the pattern of a block of size bytes that
 * was at addr. */
static bool intact(const unsigned char *p, size_t size, uintptr_t addr, size_t len) {
    if (size < 8) return true;
    for (size_t off = 0; off < len; off = next_word(off, size)) {
        uint64_t want = pattern_word(addr, size, off), got = 0;
        size_t k = len - off < 8 ? len - off : 8;
        memcpy(&got, p + off, k);
        if (k < 8) want &= ((uint64_t)1 << (8 * k)) - 1;
        if (got != want) {
            PROBLEM("block %p of %zu bytes (was at %#lx) changed at offset %zu", (const void *)p,
                    size, (unsigned long)addr, off);
            return false;
        }
    }
    return true;
}

enum how {
    MALLOC,
    CALLOC,
    REALLOC_NULL,
    MEMALIGN,
    POSIX_MEMALIGN,
    ALIGNED_ALLOC,
    VALLOC,
    PVALLOC,
    REALLOCARRAY_NULL,
    HOW_COUNT
};
static const char *const how_name[] = {"mc_malloc",   "mc_calloc",         "mc_realloc(NULL)",
                                       "mc_memalign", "mc_posix_memalign", "mc_aligned_alloc",
                                       "mc_valloc",   "mc_pvalloc",        "mc_reallocarray(NULL)"};

/* One allocation, checked; the block joins the table.  Returns it or NULL. */
static unsigned char *alloc(struct table *t, enum how how, size_t size, size_t align) {
    unsigned char *p = NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (how < MEMALIGN || how > ALIGNED_ALLOC) align = 0; /* not asked for */
    errno = 0;
    switch (how) {
    case MALLOC:
        p = mc_malloc(size);
        break;
    case CALLOC:
        p = mc_calloc(1, size);
        break;
    case REALLOC_NULL:
        p = mc_realloc(NULL, size);
        break;
    case MEMALIGN:
        p = mc_memalign(align, size);
        break;
    case POSIX_MEMALIGN: {
        void *out = &out, *untouched = &out;
        int rc = mc_posix_memalign(&out, align, size);
        if (rc != 0) {
            if (out != untouched) PROBLEM("mc_posix_memalign failed and changed its out pointer");
            refused(how_name[how], size, align, rc);
            return NULL;
        }
        p = out;
        break;
    }
    case ALIGNED_ALLOC:
        p = mc_aligned_alloc(align, size);
        break;
    case VALLOC:
        align = page;
        p = mc_valloc(size);
        break;
    case PVALLOC:
        align = page;
        p = mc_pvalloc(size);
        size = (size + page - 1) / page * page;
        if (size == 0) size = page;
        break;
    case REALLOCARRAY_NULL:
        p = mc_reallocarray(NULL, size, 1);
        break;
    case HOW_COUNT:
        break;
    }
    if (!p) {
        refused(how_name[how], size, align, errno);
        return NULL;
    }
    size_t implied = size >= 16 ? 16 : 8;
    if (align < implied) align = implied;
    if ((uintptr_t)p % align != 0)
        PROBLEM("%s(%zu, alignment %zu) = %p: misaligned", how_name[how], size, align, (void *)p);
    if (mc_usable_size(p) < size)
        PROBLEM("%s(%zu) = %p: usable size %zu", how_name[how], size, (void *)p, mc_usable_size(p));
    if (how == CALLOC)
        for (size_t i = 0; i < size; i += (i < 4096 ? 1 : 509))
            if (p[i] != 0) {
                PROBLEM("mc_calloc(%zu) = %p: byte %zu is %d", size, (void *)p, i, p[i]);
                break;
            }
    fill(p, size);
    if (t->n < MAX_BLOCKS) {
        t->b[t->n++] = (struct block){p, size};
    } else {
        mc_free(p); /* the table is full: the test's own limit */
    }
    return p;
}

/* Check and free block i (the last one takes its place). */
static void release(struct table *t, int i) {
    struct block *b = &t->b[i];
    intact(b->p, b->size, (uintptr_t)b->p, b->size);
    if (b->size % 3 == 0)
        mc_free_sized(b->p, b->size);
    else
        mc_free(b->p);
    t->b[i] = t->b[--t->n];
}

/* Reallocate block i to size; on failure it must be as it was. */
static void resize(struct table *t, int i, size_t size) {
    struct block *b = &t->b[i];
    intact(b->p, b->size, (uintptr_t)b->p, b->size);
    errno = 0;
    unsigned char *q = mc_realloc(b->p, size);
    if (!q) {
        int err = errno;
        refused("mc_realloc", size, 0, err);
        intact(b->p, b->size, (uintptr_t)b->p, b->size);
        return;
    }
    size_t keep = b->size < size ? b->size : size;
    intact(q, b->size, (uintptr_t)b->p, keep);
    if (mc_usable_size(q) < size) PROBLEM("mc_realloc(%zu) = %p: usable size too small", size, q);
    if ((uintptr_t)q % 16 != 0 && size >= 16) PROBLEM("mc_realloc(%zu) = %p: misaligned", size, q);
    fill(q, size);
    b->p = q;
    b->size = size;
}

static void release_all(struct table *t) {
    while (t->n > 0) release(t, t->n - 1);
}

/* ---- Workloads ------------------------------------------------------------------------ */
static void work_api(struct table *t) {
    static const size_t sizes[] = {0,       1,           8,       16,     24,     100,
                                   512,     1024,        1025,    4000,   8192,   20000,
                                   65536,   100000,      131072,  131073, 300000, 1 * MiB,
                                   2 * MiB, 2 * MiB + 1, 3 * MiB, 9 * MiB};
    static const size_t aligns[] = {16,      64,      4096,     64 * KiB,  128 * KiB,
                                    1 * MiB, 4 * MiB, 16 * MiB, 1024 * MiB};
    static const size_t asizes[] = {1, 100, 70000, 3 * MiB};
    const size_t nsizes = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < nsizes; i++) {
        alloc(t, MALLOC, sizes[i], 0);
        alloc(t, CALLOC, sizes[i], 0);
        alloc(t, REALLOC_NULL, sizes[i], 0);
    }
    int k = 0;
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++)
        for (size_t s = 0; s < sizeof asizes / sizeof asizes[0]; s++) {
            enum how how = (enum how)(MEMALIGN + k++ % 3);
            unsigned char *p = alloc(t, how, asizes[s], aligns[a]);
            /* The 1 GiB ones reserve a lot of address space: free at once. */
            if (p && aligns[a] > 16 * MiB) release(t, t->n - 1);
        }
    alloc(t, VALLOC, 100, 0);
    alloc(t, VALLOC, 70000, 0);
    alloc(t, PVALLOC, 5000, 0);
    alloc(t, REALLOCARRAY_NULL, 3700, 0);
    /* A chain: one block from 10 bytes up to 20 MiB and back down. */
    if (alloc(t, MALLOC, 10, 0)) {
        int i = t->n - 1;
        for (size_t s = 0; s < nsizes; s++) resize(t, i, sizes[s] + 7);
        resize(t, i, 20 * MiB);
        for (size_t s = nsizes; s-- > 1;) resize(t, i, sizes[s] + 3);
    }
    /* Free every other block; reallocate the rest. */
    for (int i = t->n - 1; i >= 0; i -= 2) release(t, i);
    for (int i = 0; i < t->n; i++)
        resize(t, i, t->b[i].size % 2 ? t->b[i].size * 3 + 5 : t->b[i].size / 2 + 1);
    mc_collect(false);
    for (int i = 0; i < 300; i++) alloc(t, (enum how)(i % 3), (size_t)(i * 97 % 5000) + 1, 0);
    mc_trim(0);
    for (int i = 0; i < 100; i++) alloc(t, MALLOC, (size_t)(i * 7919 % 200000) + 1, 0);
}

static void work_many(struct table *t) {
    struct rng r = {42};
    for (int op = 0; op < 2000; op++) {
        uint64_t x = rng_next(&r) % 1000;
        size_t size = x < 3     ? rng_range(&r, 2 * MiB, 5 * MiB)
                      : x < 40  ? rng_range(&r, 128 * KiB, 1 * MiB)
                      : x < 200 ? rng_range(&r, 1 * KiB, 128 * KiB)
                                : rng_range(&r, 8, 1 * KiB);
        uint64_t what = rng_next(&r) % 10;
        if (t->n < 600 && (what < 5 || t->n == 0)) {
            alloc(t, (enum how)(rng_next(&r) % HOW_COUNT), size, (size_t)1 << rng_range(&r, 3, 14));
        } else if (what < 8) {
            release(t, (int)(rng_next(&r) % (uint64_t)t->n));
        } else {
            resize(t, (int)(rng_next(&r) % (uint64_t)t->n), size);
        }
        if (op % 500 == 499) mc_collect(op % 1000 == 999);
    }
}

static void work_purge(struct table *t) {
    long delay = mc_option_get(MC_OPTION_PURGE_DELAY_MS);
    long madv = mc_option_get(MC_OPTION_PURGE_MADV_FREE);
    mc_option_set(MC_OPTION_PURGE_DELAY_MS, 0);
    for (int round = 0; round < 2; round++) {
        mc_option_set(MC_OPTION_PURGE_MADV_FREE, round);
        for (int i = 0; i < 12; i++) alloc(t, MALLOC, 200 * KiB + (size_t)i * 70 * KiB, 0);
        for (int i = 0; i < 100; i++) alloc(t, MALLOC, 20000, 0);
        release_all(t); /* every span purged as it is freed */
        for (int i = 0; i < 12; i++) alloc(t, CALLOC, 300 * KiB + (size_t)i * 50 * KiB, 0);
        for (int i = 0; i < 60; i++) alloc(t, CALLOC, 30000, 0);
        for (int i = t->n - 1; i >= 0; i -= 2) release(t, i);
        mc_collect(true);
        for (int i = 0; i < 6; i++) alloc(t, CALLOC, 500 * KiB, 0);
    }
    mc_option_set(MC_OPTION_PURGE_DELAY_MS, delay);
    mc_option_set(MC_OPTION_PURGE_MADV_FREE, madv);
}

static void work_huge(struct table *t) {
    for (int i = 0; i < 3; i++) {
        if (!alloc(t, i == 1 ? CALLOC : MALLOC, 3 * MiB + (size_t)i * MiB, 0)) continue;
        int k = t->n - 1;
        resize(t, k, 8 * MiB);  /* mremap in place or moving */
        resize(t, k, 30 * MiB); /* again */
        resize(t, k, 5 * MiB);  /* shrink in place */
        resize(t, k, 1 * MiB);  /* to a large span */
        resize(t, k, 12 * MiB); /* back to huge */
    }
    /* Neighbours in the way of an in-place grow. */
    for (int i = 0; i < 4; i++) alloc(t, MALLOC, 4 * MiB + 4096, 0);
    for (int i = 0; i < t->n; i++) resize(t, i, t->b[i].size + 6 * MiB);
    alloc(t, MEMALIGN, 3 * MiB, 8 * MiB);
    alloc(t, POSIX_MEMALIGN, 5 * MiB, 32 * MiB);
    alloc(t, ALIGNED_ALLOC, 100, 2 * MiB);
    alloc(t, ALIGNED_ALLOC, 2 * MiB + 1, 4 * MiB);
}

/* ---- threads: blocks traded between threads that exit with live ones ------------------ */
enum { TRADE = 64 };
static _Atomic(unsigned char *) trade_cell[TRADE];

struct trader {
    struct table t;
    uint64_t seed;
};

static void *trader_main(void *arg) {
    struct trader *w = arg;
    struct rng r = {w->seed};
    for (int op = 0; op < 1500; op++) {
        uint64_t what = rng_next(&r) % 10;
        size_t size =
            rng_next(&r) % 50 == 0 ? rng_range(&r, 64 * KiB, 600 * KiB) : rng_range(&r, 8, 3000);
        if (w->t.n < 200 && (what < 5 || w->t.n == 0)) {
            alloc(&w->t, (enum how)(rng_next(&r) % 3), size, 0);
        } else if (what < 7) {
            release(&w->t, (int)(rng_next(&r) % (uint64_t)w->t.n));
        } else if (what < 8) {
            resize(&w->t, (int)(rng_next(&r) % (uint64_t)w->t.n), size);
        } else {
            /* Put one in the trade table; take what was there. */
            int i = (int)(rng_next(&r) % (uint64_t)w->t.n);
            struct block b = w->t.b[i];
            w->t.b[i] = w->t.b[--w->t.n];
            unsigned char *got = atomic_exchange(&trade_cell[rng_next(&r) % TRADE], b.p);
            if (got) {
                size_t gsize = pattern_size(got);
                if (gsize < 8 || gsize > 64 * MiB || mc_usable_size(got) < gsize)
                    PROBLEM("a traded block %p has a broken header", (void *)got);
                else if (intact(got, gsize, (uintptr_t)got, gsize))
                    mc_free(got);
            }
        }
    }
    /* Exit with about half of the blocks live; the main thread frees them. */
    for (int i = w->t.n - 1; i >= 0; i -= 2) release(&w->t, i);
    return NULL;
}

static void work_threads(struct table *t) {
    static struct trader w[3];
    static unsigned generation;
    pthread_t th[3];
    bool started[3];
    generation++;
    for (int i = 0; i < 3; i++) {
        w[i].t.n = 0;
        w[i].seed = generation * 31u + (unsigned)i;
        started[i] = pthread_create(&th[i], NULL, trader_main, &w[i]) == 0;
        if (!started[i] && !atomic_load(&faults_armed)) PROBLEM("pthread_create failed");
    }
    for (int i = 0; i < 3; i++) {
        if (!started[i]) continue;
        pthread_join(th[i], NULL);
        /* What the thread left becomes the main thread's (it frees it). */
        for (int k = 0; k < w[i].t.n && t->n < MAX_BLOCKS; k++) t->b[t->n++] = w[i].t.b[k];
        w[i].t.n = 0;
    }
    for (int i = 0; i < TRADE; i++) {
        unsigned char *p = atomic_exchange(&trade_cell[i], NULL);
        if (p && t->n < MAX_BLOCKS) t->b[t->n++] = (struct block){p, pattern_size(p)};
    }
    for (int i = 0; i < t->n; i += 3) resize(t, i, t->b[i].size + 100);
}

static const struct {
    const char *name;
    void (*run)(struct table *);
} workloads[] = {
    {"api", work_api},   {"many", work_many},       {"purge", work_purge},
    {"huge", work_huge}, {"threads", work_threads},
};
enum { WORKLOADS = sizeof workloads / sizeof workloads[0] };

/* ---- One child: baseline, faults, recovery -------------------------------------------- */
static size_t os_calls(void) {
    mc_stats_t st;
    mc_stats_get(&st);
    return st.mmap_calls + st.mremap_calls + st.purge_calls;
}

/* Give back what can be given back.  Segments that exited threads abandoned
 * are looked after by mc_trim and by the maintenance of threads that
 * allocate: trim, and allocate, until none is left (all their blocks are
 * free by now). */
static void settle(void) {
    for (int i = 0;; i++) {
        if (i % 16 == 0) {
            mc_collect(true);
            mc_trim(0);
            mc_stats_t st;
            mc_stats_get(&st);
            if (st.segments_abandoned == 0) break;
            if (i >= 4000) {
                PROBLEM("%zu segments abandoned by exited threads are never reclaimed",
                        st.segments_abandoned);
                break;
            }
        }
        mc_free(mc_malloc(200 * KiB));
    }
}

/* Nothing lost since base: the statistics after freeing everything. */
static void compare_stats(const mc_stats_t *base, const char *when) {
    mc_stats_t now;
    mc_stats_get(&now);
    if (now.allocated > base->allocated || now.committed > base->committed ||
        now.mapped > base->mapped || now.huge_blocks > base->huge_blocks ||
        now.segments > base->segments)
        PROBLEM("%s: memory lost: allocated %zu (was %zu), committed %zu (was %zu), mapped %zu "
                "(was %zu), segments %zu (was %zu), huge blocks %zu (was %zu)",
                when, now.allocated, base->allocated, now.committed, base->committed, now.mapped,
                base->mapped, now.segments, base->segments, now.huge_blocks, base->huge_blocks);
}

static struct table table;
static long max_points = 80;

/* Returns the number of problems. */
static int child(int w, long n, bool repeat) {
    struct rng unused = {0};
    (void)unused;
    /* Once without faults: what a process creates once now exists. */
    workloads[w].run(&table);
    release_all(&table);
    settle();
    mc_stats_t base;
    mc_stats_get(&base);
    if (mc_heap_check() != 0) PROBLEM("the heap check fails before any fault");

    atomic_store(&faults_armed, true);
    mc_test_fail_after(n, repeat);
    workloads[w].run(&table);
    mc_test_fail_after(-1, false);
    atomic_store(&faults_armed, false);
    /* Everything failing from the first call on must show. */
    if (n == 0 && repeat && atomic_load(&refusals) == 0)
        PROBLEM("no call was refused with every OS call failing: is this build/fault?");

    if (mc_heap_check() != 0) PROBLEM("the heap check fails after the faults");
    release_all(&table);
    settle();
    if (mc_heap_check() != 0) PROBLEM("the heap check fails after freeing everything");
    compare_stats(&base, "after the faults");

    /* Everything works again. */
    workloads[w].run(&table);
    release_all(&table);
    settle();
    compare_stats(&base, "after a run without faults");
    return atomic_load(&problems);
}

/* Runs child() in a process; returns 0 when it passed, else prints why. */
static int run_child(int w, long n, bool repeat) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(60);
        _exit(child(w, n, repeat) ? 1 : 0);
    }
    if (pid < 0) return -1;
    int status;
    if (waitpid(pid, &status, 0) != pid) return -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFSIGNALED(status))
        printf("# %s: fault at %ld (%s): killed by signal %d\n", workloads[w].name, n,
               repeat ? "repeat" : "once", WTERMSIG(status));
    else
        printf("# %s: fault at %ld (%s): exit status %d\n", workloads[w].name, n,
               repeat ? "repeat" : "once", WEXITSTATUS(status));
    printf("#   reproduce: build/tests/faults -w %d -n %ld -r %d\n", w, n, repeat ? 1 : 0);
    return 1;
}

/* The OS calls of one run of workload w, in a child (counted twice: the
 * largest). */
static long count_calls(int w) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        workloads[w].run(&table);
        release_all(&table);
        settle();
        long most = 0;
        for (int i = 0; i < 2; i++) {
            size_t before = os_calls();
            workloads[w].run(&table);
            release_all(&table);
            settle();
            long c = (long)(os_calls() - before);
            if (c > most) most = c;
        }
        ssize_t k = write(fd[1], &most, sizeof most);
        _exit(k == sizeof most ? 0 : 1);
    }
    close(fd[1]);
    long calls = -1;
    if (pid < 0 || read(fd[0], &calls, sizeof calls) != sizeof calls) calls = -1;
    close(fd[0]);
    int status;
    if (pid > 0) waitpid(pid, &status, 0);
    return calls;
}

static void sweep(int w, bool repeat) {
    long calls = count_calls(w);
    CHECKF(calls > 0, "%s: counting the OS calls failed", workloads[w].name);
    if (calls <= 0) return;
    long last = calls + calls / 8 + 2, failed = 0;
    /* Every n up to max_points / 2; above, evenly spread ones: the time a
     * sweep takes stays bounded however many calls a workload makes. */
    long dense = max_points / 2;
    long step = last > max_points ? (last - dense) / (max_points - dense) + 1 : 1;
    double start = now_seconds();
    long runs = 0;
    for (long n = 0; n <= last; n += (n < dense ? 1 : step)) {
        runs++;
        if (run_child(w, n, repeat) != 0 && ++failed >= 10) {
            printf("# %s: stopping after 10 failures\n", workloads[w].name);
            break;
        }
    }
    printf("# %s (%s): %ld OS calls per run, %ld fault points tried, %ld failed, %.1f s\n",
           workloads[w].name, repeat ? "repeat" : "once", calls, runs, failed,
           now_seconds() - start);
    CHECKF(failed == 0, "%ld fault points failed", failed);
}

/* realloc of huge blocks when the kernel refuses every mremap but maps
 * memory: growing must still work, by a copy, with the contents kept (a
 * mapping that can neither grow nor move is not an out-of-memory). */
static void remap_refused(void) {
    check_test_failed = 0;
    const size_t mib = (size_t)1 << 20;
    size_t sizes[] = {6 * mib, 9 * mib, 40 * mib, 41 * mib, 12 * mib, 3 * mib, 64 * mib};
    size_t n = 5 * mib;
    unsigned char *p = mc_malloc(n);
    CHECKF(p != NULL, "mc_malloc(%zu) failed", n);
    if (p == NULL) return;
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 7 + 1);
    mc_stats_t before, after;
    mc_stats_get(&before);
    mc_test_fail_kinds(2);
    mc_test_fail_after(0, true);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned char *q = mc_realloc(p, sizes[k]);
        CHECKF(q != NULL, "mc_realloc(%zu -> %zu) failed with mremap refused", n, sizes[k]);
        if (q == NULL) break;
        size_t keep = n < sizes[k] ? n : sizes[k], bad = keep;
        for (size_t i = 0; i < keep && bad == keep; i++)
            if (q[i] != (unsigned char)(i * 7 + 1)) bad = i;
        CHECKF(bad == keep, "mc_realloc(%zu -> %zu): byte %zu lost", n, sizes[k], bad);
        for (size_t i = keep; i < sizes[k]; i++) q[i] = (unsigned char)(i * 7 + 1);
        p = q;
        n = sizes[k];
    }
    mc_stats_get(&after);
    mc_test_fail_after(-1, false);
    mc_test_fail_kinds(7);
    CHECKF(after.mremap_calls == before.mremap_calls, "%zu mremap calls went through while refused",
           after.mremap_calls - before.mremap_calls);
    CHECK(mc_heap_check() == 0);
    mc_free(p);
    printf("%s %shuge realloc with mremap refused\n", check_test_failed ? "not ok" : "ok",
           check_prefix);
    check_any_failed |= check_test_failed;
}

int main(int argc, char **argv) {
    long values[] = {-1, -1, 0, max_points};
    if (parse_options(argc, argv, "wnrp", values) != 0) return 2;
    max_points = values[3] < 4 ? 4 : values[3];
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# fault-injection sweeps\n");
    if (values[0] >= 0) {
        if (values[0] >= WORKLOADS || values[1] < 0) return 2;
        int bad = child((int)values[0], values[1], values[2] != 0);
        printf("%s %s%s fault at %ld%s\n", bad ? "not ok" : "ok", check_prefix,
               workloads[values[0]].name, values[1], values[2] ? " (repeat)" : "");
        return bad ? 1 : 0;
    }
    remap_refused();
    for (int w = 0; w < WORKLOADS; w++)
        for (int repeat = 0; repeat < 2; repeat++) {
            check_test_failed = 0;
            sweep(w, repeat);
            printf("%s %s%s/%s\n", check_test_failed ? "not ok" : "ok", check_prefix,
                   workloads[w].name, repeat ? "repeat" : "once");
            check_any_failed |= check_test_failed;
        }
    return check_exit_status();
}
