/* test-api.c: the allocation API through its standard names.
 *
 * Runs under any allocator: linked normally it tests glibc, under LD_PRELOAD
 * the preloaded library.  TEST_EXPECT_LIB=<substring> first makes sure that
 * malloc and free resolve into a library whose path contains it, so a broken
 * preload cannot silently test glibc.  Built with -DTEST_API_STATIC against
 * libmclone.a, it checks instead that malloc is the one in the executable.
 * Every check is glibc's documented behaviour; the one glibc only has from
 * 2.38 on (aligned_alloc rejecting a bad alignment) is skipped under an
 * older glibc.  Names that an allocator may leave out (free_sized, cfree, the
 * __libc_ aliases) are tested only when the allocator under test has them.
 *
 * TEST_PREFIX=<text> is put before each test name. */
#define _GNU_SOURCE
#include "check.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define KiB          ((size_t)1 << 10)
#define MiB          ((size_t)1 << 20)
#define GiB          ((size_t)1 << 30)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Hides a value from the compiler so that it neither folds a call nor warns
 * about an impossible size. */
static size_t opaque(size_t n) {
    volatile size_t v = n;
    return v;
}

/* The same for a pointer handed to realloc: the compiler cannot then take a
 * realloc that fails on purpose for the end of the old block. */
static void *launder(void *p) {
    void *volatile v = p;
    return v;
}

static int is_aligned(const void *p, size_t alignment) {
    return ((uintptr_t)p & (alignment - 1)) == 0;
}

static unsigned char pattern_byte(size_t i, unsigned seed) {
    return (unsigned char)(seed + i * 7 + (i >> 8) * 3 + (i >> 16));
}

static void fill(void *p, size_t n, unsigned seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = pattern_byte(i, seed);
}

/* The first offset below n that does not hold the pattern, or n. */
static size_t verify(const void *p, size_t n, unsigned seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(i, seed)) return i;
    return n;
}

static int all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i < n && (uintptr_t)(b + i) % sizeof(size_t) != 0; i++)
        if (b[i]) return 0;
    size_t acc = 0;
    for (; i + sizeof(size_t) <= n; i += sizeof(size_t)) acc |= *(const size_t *)(b + i);
    for (; i < n; i++) acc |= b[i];
    return acc == 0;
}

static size_t round_up(size_t n, size_t to) {
    return (n + to - 1) / to * to;
}

/* The alignment C asks of a block of n bytes: enough for any object that fits. */
static size_t min_alignment(size_t n) {
    if (n >= 16) return 16;
    size_t a = 1;
    while (a * 2 <= n) a *= 2;
    return a;
}

static size_t rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

/* ---- Which allocator is under test -------------------------------------- */

static const char *object_of(const void *addr) {
    Dl_info info;
    if (!addr || !dladdr(addr, &info) || !info.dli_fname) return "?";
    return info.dli_fname;
}

static const void *base_of(const void *addr) {
    Dl_info info;
    if (!addr || !dladdr(addr, &info)) return NULL;
    return info.dli_fbase;
}

/* A name the allocator under test may or may not define: its address when it
 * comes from the same object as malloc, else NULL (calling another allocator's
 * function on our blocks would be a bug of the test, not of the allocator). */
static void *same_object_symbol(const char *name) {
    void *sym = dlsym(RTLD_DEFAULT, name);
    if (!sym) {
        printf("# %s: not defined, skipped\n", name);
        return NULL;
    }
    if (base_of(sym) != base_of(dlsym(RTLD_DEFAULT, "malloc"))) {
        printf("# %s: comes from %s, not from malloc's %s, skipped\n", name, object_of(sym),
               object_of(dlsym(RTLD_DEFAULT, "malloc")));
        return NULL;
    }
    return sym;
}

/* glibc before 2.38 is the allocator: its aligned_alloc is memalign. */
static int old_glibc_under_test(void) {
    if (!strstr(object_of(dlsym(RTLD_DEFAULT, "aligned_alloc")), "libc.so")) return 0;
    int major = 0, minor = 0;
    if (sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor) != 2) return 0;
    return major < 2 || (major == 2 && minor < 38);
}

static const char *const core_names[] = {
    "malloc",  "free",     "calloc",        "realloc",        "reallocarray",       "valloc",
    "pvalloc", "memalign", "aligned_alloc", "posix_memalign", "malloc_usable_size",
};

TEST(allocator_under_test) {
    for (size_t i = 0; i < ARRAY_LEN(core_names); i++)
        printf("# %s from %s\n", core_names[i], object_of(dlsym(RTLD_DEFAULT, core_names[i])));
#ifdef TEST_API_STATIC
    /* libmclone.a is linked in: every core name must be defined by the
     * executable itself, and the dynamic linker must see that definition
     * (so that libc's own calls reach it as well). */
    const void *exe = base_of((const void *)&opaque);
    CHECK(exe != NULL);
    for (size_t i = 0; i < ARRAY_LEN(core_names); i++) {
        void *sym = dlsym(RTLD_DEFAULT, core_names[i]);
        CHECKF(sym && base_of(sym) == exe, "%s comes from %s, not from the executable",
               core_names[i], object_of(sym));
    }
    CHECK(dlsym(RTLD_DEFAULT, "malloc") == (void *)&malloc);
    CHECK(dlsym(RTLD_DEFAULT, "free") == (void *)&free);
    CHECK(base_of((const void *)&malloc) == exe);
#endif
    const char *expect = getenv("TEST_EXPECT_LIB");
    if (expect && *expect) {
        const char *names[] = {"malloc", "free"};
        for (size_t i = 0; i < ARRAY_LEN(names); i++) {
            const char *obj = object_of(dlsym(RTLD_DEFAULT, names[i]));
            CHECKF(strstr(obj, expect) != NULL, "%s comes from %s, expected %s", names[i], obj,
                   expect);
        }
        CHECKF(strstr(object_of((const void *)&malloc), expect) != NULL, "malloc called is in %s",
               object_of((const void *)&malloc));
        CHECKF(strstr(object_of((const void *)&free), expect) != NULL, "free called is in %s",
               object_of((const void *)&free));
    }
}

/* ---- malloc ------------------------------------------------------------- */

TEST(malloc_zero_unique) {
    enum { N = 100 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque(0));
        CHECK(p[i] != NULL);
        for (int j = 0; j < i; j++) CHECK(p[i] != p[j] || !p[i]);
    }
    for (int i = 0; i < N; i++) free(p[i]);
    void *q = realloc(NULL, opaque(0));
    CHECK(q != NULL);
    free(q);
    void *c[3] = {calloc(0, 0), calloc(0, 16), calloc(opaque(16), 0)};
    for (int i = 0; i < 3; i++) {
        CHECK(c[i] != NULL);
        for (int j = 0; j < i; j++) CHECK(c[i] != c[j]);
    }
    for (int i = 0; i < 3; i++) free(c[i]);
}

TEST(alignment) {
    enum { N = 4096 };
    static void *p[N + 1];
    for (size_t n = 1; n <= N; n++) {
        p[n] = malloc(opaque(n));
        CHECKF(p[n] && is_aligned(p[n], min_alignment(n)), "malloc(%zu) = %p", n, p[n]);
    }
    for (size_t n = 1; n <= N; n++) free(p[n]);
    for (size_t n = 16; n <= 64 * MiB; n *= 2) {
        size_t sizes[] = {n - 1, n, n + 1, n + n / 2};
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            void *a = malloc(opaque(sizes[i]));
            void *c = calloc(1, opaque(sizes[i]));
            void *r = realloc(NULL, opaque(sizes[i]));
            CHECKF(a && is_aligned(a, min_alignment(sizes[i])), "malloc(%zu) = %p", sizes[i], a);
            CHECKF(c && is_aligned(c, min_alignment(sizes[i])), "calloc(%zu) = %p", sizes[i], c);
            CHECKF(r && is_aligned(r, min_alignment(sizes[i])), "realloc(%zu) = %p", sizes[i], r);
            free(a);
            free(c);
            free(r);
        }
    }
}

/* Requests that cannot succeed: above PTRDIFF_MAX, an overflowing product, or
 * more address space than the machine has (the OS refuses). */
static const size_t too_big[] = {
    (size_t)PTRDIFF_MAX,
    (size_t)PTRDIFF_MAX + 1,
    (size_t)PTRDIFF_MAX + 4097,
    SIZE_MAX - 4096 * 1024,
    SIZE_MAX - 4096,
    SIZE_MAX - 16,
    SIZE_MAX - 1,
    SIZE_MAX,
    (size_t)1 << 47,
    ((size_t)1 << 47) + 1,
};

TEST(too_big_is_enomem) {
    for (size_t i = 0; i < ARRAY_LEN(too_big); i++) {
        size_t n = opaque(too_big[i]);
        void *p;
        errno = 0;
        p = malloc(n);
        CHECKF(!p && errno == ENOMEM, "malloc(%#zx) = %p, errno %d", n, p, errno);
        errno = 0;
        p = calloc(1, n);
        CHECKF(!p && errno == ENOMEM, "calloc(1, %#zx) = %p, errno %d", n, p, errno);
        errno = 0;
        p = calloc(n, 1);
        CHECKF(!p && errno == ENOMEM, "calloc(%#zx, 1) = %p, errno %d", n, p, errno);
        errno = 0;
        p = realloc(NULL, n);
        CHECKF(!p && errno == ENOMEM, "realloc(NULL, %#zx) = %p, errno %d", n, p, errno);
        errno = 0;
        p = reallocarray(NULL, 1, n);
        CHECKF(!p && errno == ENOMEM, "reallocarray(NULL, 1, %#zx) = %p, errno %d", n, p, errno);
        errno = 0;
        p = memalign(64, n);
        CHECKF(!p && errno == ENOMEM, "memalign(64, %#zx) = %p, errno %d", n, p, errno);
        errno = 0;
        p = memalign(MiB, n);
        CHECKF(!p && errno == ENOMEM, "memalign(1 MiB, %#zx) = %p, errno %d", n, p, errno);
        errno = 0;
        p = aligned_alloc(4096, n);
        CHECKF(!p && errno == ENOMEM, "aligned_alloc(4096, %#zx) = %p, errno %d", n, p, errno);
        errno = 0;
        p = valloc(n);
        CHECKF(!p && errno == ENOMEM, "valloc(%#zx) = %p, errno %d", n, p, errno);
        errno = 0;
        p = pvalloc(n);
        CHECKF(!p && errno == ENOMEM, "pvalloc(%#zx) = %p, errno %d", n, p, errno);
        void *out = (void *)&out;
        int rc = posix_memalign(&out, 32, n);
        CHECKF(rc == ENOMEM && out == (void *)&out, "posix_memalign(32, %#zx) = %d, %p", n, rc,
               out);
    }
}

TEST(calloc_overflow_is_enomem) {
    const size_t pairs[][2] = {
        {SIZE_MAX, SIZE_MAX},
        {SIZE_MAX / 2 + 1, 2},
        {2, SIZE_MAX / 2 + 1},
        {(size_t)1 << 32, (size_t)1 << 32},
        {((size_t)1 << 32) + 1, ((size_t)1 << 32) - 1},
        {SIZE_MAX / 3 + 1, 3},
        {(size_t)1 << 24, (size_t)1 << 23}, /* no overflow, 128 TiB: the OS refuses */
        {(size_t)PTRDIFF_MAX / 2 + 1, 2},   /* exactly PTRDIFF_MAX + 1 */
    };
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        size_t a = opaque(pairs[i][0]), b = opaque(pairs[i][1]);
        errno = 0;
        void *p = calloc(a, b);
        CHECKF(!p && errno == ENOMEM, "calloc(%#zx, %#zx) = %p, errno %d", a, b, p, errno);
        errno = 0;
        p = reallocarray(NULL, a, b);
        CHECKF(!p && errno == ENOMEM, "reallocarray(NULL, %#zx, %#zx) = %p, errno %d", a, b, p,
               errno);
        void *q = malloc(100);
        fill(q, 100, 9);
        errno = 0;
        p = reallocarray(launder(q), a, b);
        CHECKF(!p && errno == ENOMEM, "reallocarray(q, %#zx, %#zx) = %p, errno %d", a, b, p, errno);
        CHECK(verify(q, 100, 9) == 100);
        free(q);
    }
    /* A product that fits is fine. */
    unsigned char *r = reallocarray(NULL, opaque(10), 10);
    CHECK(r != NULL);
    if (r) {
        fill(r, 100, 3);
        unsigned char *s = reallocarray(r, opaque(1000), 10);
        CHECK(s != NULL && verify(s, 100, 3) == 100);
        if (s) r = s;
        free(r);
    }
}

/* ---- realloc ------------------------------------------------------------ */

TEST(realloc_null_is_malloc) {
    const size_t sizes[] = {1, 16, 1000, 100 * KiB, MiB, 3 * MiB, 64 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        unsigned char *p = realloc(NULL, opaque(sizes[i]));
        CHECKF(p && is_aligned(p, 16), "realloc(NULL, %zu) = %p", sizes[i], (void *)p);
        if (!p) continue;
        CHECK(malloc_usable_size(p) >= sizes[i]);
        fill(p, sizes[i], (unsigned)i);
        CHECK(verify(p, sizes[i], (unsigned)i) == sizes[i]);
        free(p);
    }
}

/* realloc(p, 0) frees p and returns NULL, like glibc.  A leak would show in
 * the resident size: every block is touched before it is given back. */
TEST(realloc_zero_frees) {
    void *p = malloc(16);
    CHECK(realloc(p, opaque(0)) == NULL);
    p = memalign(4096, 5000);
    CHECK(realloc(p, opaque(0)) == NULL);
    p = malloc(64 * MiB);
    CHECK(realloc(p, opaque(0)) == NULL);

    size_t before = rss_bytes();
    for (int i = 0; i < 400; i++) {
        p = malloc(opaque(MiB));
        CHECK(p != NULL);
        if (!p) break;
        memset(p, 0x5a, MiB);
        CHECK(realloc(p, opaque(0)) == NULL);
    }
    for (int i = 0; i < 100000; i++) {
        p = malloc(opaque(1000));
        if (!p) break;
        memset(p, 0x5a, 1000);
        CHECK(realloc(p, opaque(0)) == NULL);
    }
    size_t after = rss_bytes();
    CHECKF(after < before + 64 * MiB, "resident size grew from %zu to %zu", before, after);
}

/* Grows a block through every size range and shrinks it back, with other
 * blocks allocated in between so that it has to move now and then. */
TEST(realloc_keeps_contents) {
    const size_t sizes[] = {
        8,
        16,
        24,
        40,
        64,
        100,
        128,
        250,
        512,
        1000,
        1023,
        1024,
        1025,
        1500,
        4096,
        10000,
        65536,
        128 * KiB - 1,
        128 * KiB,
        128 * KiB + 1,
        200000,
        MiB,
        2 * MiB - 1,
        2 * MiB,
        2 * MiB + 1,
        3 * MiB,
        4 * MiB,
        8 * MiB,
        16 * MiB + 7,
        64 * MiB,
    };
    const size_t count = ARRAY_LEN(sizes);
    void *spacers[ARRAY_LEN(sizes) * 2];
    size_t nspacers = 0;
    unsigned char *p = malloc(sizes[0]);
    CHECK(p != NULL);
    if (!p) return;
    fill(p, sizes[0], 1);
    for (size_t i = 1; i < count; i++) {
        unsigned char *q = realloc(p, opaque(sizes[i]));
        CHECKF(q != NULL, "realloc to %zu", sizes[i]);
        if (!q) break;
        p = q;
        size_t bad = verify(p, sizes[i - 1], 1);
        CHECKF(bad == sizes[i - 1], "growing %zu -> %zu: byte %zu differs", sizes[i - 1], sizes[i],
               bad);
        CHECK(is_aligned(p, 16));
        fill(p, sizes[i], 1);
        spacers[nspacers++] = malloc(sizes[i] / 2 + 1);
    }
    for (size_t i = count - 1; i-- > 0;) {
        unsigned char *q = realloc(p, opaque(sizes[i]));
        CHECKF(q != NULL, "realloc to %zu", sizes[i]);
        if (!q) break;
        p = q;
        size_t bad = verify(p, sizes[i], 1);
        CHECKF(bad == sizes[i], "shrinking %zu -> %zu: byte %zu differs", sizes[i + 1], sizes[i],
               bad);
        spacers[nspacers++] = malloc(sizes[i] / 3 + 1);
    }
    free(p);
    for (size_t i = 0; i < nspacers; i++) free(spacers[i]);

    /* Straight jumps between the size ranges, both ways. */
    const size_t jumps[] = {8, 1000, 1100, 100 * KiB, 140 * KiB, 1536 * KiB, 2560 * KiB, 40 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(jumps); i++) {
        for (size_t j = 0; j < ARRAY_LEN(jumps); j++) {
            size_t from = jumps[i], to = jumps[j];
            unsigned seed = (unsigned)(i * 8 + j);
            unsigned char *a = malloc(from);
            CHECK(a != NULL);
            if (!a) continue;
            fill(a, from, seed);
            unsigned char *b = realloc(a, opaque(to));
            CHECKF(b != NULL, "realloc %zu -> %zu", from, to);
            if (!b) {
                free(a);
                continue;
            }
            size_t keep = from < to ? from : to;
            size_t bad = verify(b, keep, seed);
            CHECKF(bad == keep, "realloc %zu -> %zu: byte %zu differs", from, to, bad);
            CHECK(malloc_usable_size(b) >= to);
            memset(b, 0xee, to);
            free(b);
        }
    }
}

/* A failed realloc leaves the old block as it was. */
TEST(realloc_failure_keeps_block) {
    const size_t sizes[] = {100, 50 * KiB, MiB, 8 * MiB, 64 * MiB};
    const size_t impossible[] = {(size_t)PTRDIFF_MAX + 1, (size_t)1 << 47, SIZE_MAX,
                                 SIZE_MAX - 4096};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        unsigned char *p = malloc(sizes[i]);
        CHECK(p != NULL);
        if (!p) continue;
        fill(p, sizes[i], (unsigned)i + 40);
        for (size_t j = 0; j < ARRAY_LEN(impossible); j++) {
            errno = 0;
            void *q = realloc(launder(p), opaque(impossible[j]));
            CHECKF(!q && errno == ENOMEM, "realloc(%zu-byte block, %#zx) = %p, errno %d", sizes[i],
                   impossible[j], q, errno);
            errno = 0;
            q = reallocarray(launder(p), opaque(impossible[j]), 1);
            CHECKF(!q && errno == ENOMEM, "reallocarray(%zu-byte block, %#zx, 1) = %p, errno %d",
                   sizes[i], impossible[j], q, errno);
        }
        CHECK(verify(p, sizes[i], (unsigned)i + 40) == sizes[i]);
        unsigned char *q = realloc(p, sizes[i] * 2);
        CHECK(q != NULL);
        if (q) p = q;
        CHECK(verify(p, sizes[i], (unsigned)i + 40) == sizes[i]);
        free(p);
    }
}

/* ---- calloc ------------------------------------------------------------- */

TEST(calloc_zeroes) {
    const size_t sizes[] = {1,      8,      16,  100,     1000,    1024,    4000,    50000,
                            131072, 200000, MiB, 2 * MiB, 3 * MiB, 8 * MiB, 64 * MiB};
    enum { MAX_BLOCKS = 17 };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        size_t count = 32 * MiB / n + 1;
        if (count > MAX_BLOCKS) count = MAX_BLOCKS;
        void *blocks[MAX_BLOCKS];
        /* Dirty memory of this size, give it back, then ask for zeroes. */
        for (size_t k = 0; k < count; k++) {
            blocks[k] = malloc(n);
            if (blocks[k]) memset(blocks[k], 0xa5, malloc_usable_size(blocks[k]));
        }
        for (size_t k = 0; k < count; k++) free(blocks[k]);
        for (size_t k = 0; k < count; k++) {
            blocks[k] = (k & 1) ? calloc(n, 1) : calloc(1, n);
            CHECKF(blocks[k] && all_zero(blocks[k], n), "calloc of %zu bytes, block %zu", n, k);
            if (blocks[k]) memset(blocks[k], 0x3c, n);
        }
        for (size_t k = 0; k < count; k++) free(blocks[k]);
        /* Element counts other than 1. */
        if (n % 8 == 0) {
            void *p = calloc(n / 8, 8);
            CHECKF(p && all_zero(p, n), "calloc(%zu, 8)", n / 8);
            free(p);
        }
    }
    size_t big = 100 * MiB;
    void *p = calloc(big / 4096, 4096);
    CHECK(p && all_zero(p, big));
    if (p) memset(p, 1, big);
    free(p);
    p = calloc(1, big);
    CHECK(p && all_zero(p, big));
    free(p);
}

/* ---- malloc_usable_size -------------------------------------------------- */

/* Blocks of one size are allocated side by side; each is written over its
 * whole usable size with its own pattern, then all are verified: a usable
 * size that reaches into a neighbour shows as a broken pattern.  The blocks
 * are written first to last, then last to first, so that an overrun is
 * caught whichever way the addresses go. */
static void check_usable_neighbours(void *(*alloc)(size_t size, size_t arg), size_t arg,
                                    size_t size, const char *what) {
    enum { K = 8 };
    unsigned char *p[K];
    size_t usable[K];
    for (int k = 0; k < K; k++) {
        p[k] = alloc(size, arg);
        usable[k] = p[k] ? malloc_usable_size(p[k]) : 0;
        CHECKF(p[k] && usable[k] >= size, "%s(%zu): %p, usable %zu", what, size, (void *)p[k],
               usable[k]);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < K; i++) {
            int k = pass == 0 ? i : K - 1 - i;
            if (p[k]) fill(p[k], usable[k], (unsigned)(k * 37 + pass * 101 + size));
        }
        for (int k = 0; k < K; k++) {
            if (!p[k]) continue;
            size_t bad = verify(p[k], usable[k], (unsigned)(k * 37 + pass * 101 + size));
            CHECKF(bad == usable[k], "%s(%zu): block %d (usable %zu) overwritten at %zu", what,
                   size, k, usable[k], bad);
        }
    }
    for (int k = 0; k < K; k++) free(p[k]);
}

static void *alloc_malloc(size_t size, size_t arg) {
    (void)arg;
    return malloc(size);
}
static void *alloc_calloc(size_t size, size_t arg) {
    (void)arg;
    return calloc(1, size);
}
static void *alloc_memalign(size_t size, size_t alignment) {
    return memalign(alignment, size);
}
/* A block grown from a small one, or shrunk from a bigger one (realloc to 0
 * would free it: size 0 is a plain malloc). */
static void *alloc_realloc_grow(size_t size, size_t arg) {
    (void)arg;
    if (size == 0) return malloc(0);
    void *p = malloc(size / 2 + 1);
    void *q = p ? realloc(p, size) : NULL;
    if (!q) free(p);
    return q;
}
static void *alloc_realloc_shrink(size_t size, size_t arg) {
    (void)arg;
    if (size == 0) return malloc(0);
    void *p = malloc(size + size / 2 + 100);
    void *q = p ? realloc(p, size) : NULL;
    if (!q) free(p);
    return q;
}

TEST(usable_size) {
    CHECK(malloc_usable_size(NULL) == 0);
    const size_t sizes[] = {
        0,           1,       7,           8,       9,          15,     16,     17,     24,
        31,          32,      33,          48,      63,         64,     65,     96,     100,
        127,         128,     129,         200,     255,        256,    257,    500,    512,
        1000,        1023,    1024,        1025,    2000,       4096,   5000,   8192,   10000,
        32768,       65536,   100000,      131071,  131072,     131073, 262144, 500000, MiB,
        2 * MiB - 1, 2 * MiB, 2 * MiB + 1, 3 * MiB, 5 * MiB + 3};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        check_usable_neighbours(alloc_malloc, 0, sizes[i], "malloc");
        check_usable_neighbours(alloc_calloc, 0, sizes[i], "calloc");
        check_usable_neighbours(alloc_realloc_grow, 0, sizes[i], "realloc up");
        check_usable_neighbours(alloc_realloc_shrink, 0, sizes[i], "realloc down");
        check_usable_neighbours(alloc_memalign, 64, sizes[i], "memalign 64");
        check_usable_neighbours(alloc_memalign, 4096, sizes[i], "memalign 4096");
    }
}

/* ---- free --------------------------------------------------------------- */

static void *free_in_thread(void *arg) {
    errno = 4321;
    free(arg);
    return (void *)(intptr_t)(errno == 4321);
}

TEST(free_preserves_errno) {
    const size_t sizes[] = {8, 100, 1024, 5000, 100 * KiB, MiB, 3 * MiB, 64 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = malloc(sizes[i]);
        CHECK(p != NULL);
        if (p) memset(p, 1, sizes[i]);
        errno = 1234;
        free(p);
        CHECKF(errno == 1234, "free of a %zu-byte block set errno to %d", sizes[i], errno);
        void *a = memalign(sizes[i] >= MiB ? MiB : 4096, sizes[i]);
        errno = 1234;
        free(a);
        CHECKF(errno == 1234, "free of an aligned %zu-byte block set errno to %d", sizes[i], errno);
        void *c = calloc(1, sizes[i]);
        errno = 1234;
        free(c);
        CHECKF(errno == 1234, "free of a calloc'd %zu-byte block set errno to %d", sizes[i], errno);
        /* Freed by a thread that did not allocate it. */
        pthread_t t;
        void *ok = NULL;
        void *x = malloc(sizes[i]);
        if (pthread_create(&t, NULL, free_in_thread, x) == 0) {
            pthread_join(t, &ok);
            CHECKF(ok != NULL, "free of a %zu-byte block in another thread changed errno",
                   sizes[i]);
        } else {
            free(x);
        }
    }
    errno = 1234;
    free(NULL);
    CHECK(errno == 1234);
    /* Many small frees in a row, so that whatever a free does only now and
     * then (returning memory, collecting) has happened. */
    enum { N = 20000 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) blocks[i] = malloc(16 + (size_t)(i % 50) * 24);
    int changed = 0;
    for (int i = 0; i < N; i++) {
        errno = 1234;
        free(blocks[i]);
        changed += errno != 1234;
    }
    CHECKF(changed == 0, "%d of %d frees changed errno", changed, N);
}

/* ---- The memalign family ------------------------------------------------ */

TEST(posix_memalign_errors) {
    const size_t bad[] = {0,           1,  2,   4,    3,       12,       24,
                          48,          72, 100, 4097, 3 * MiB, SIZE_MAX, SIZE_MAX / 2 + 2,
                          SIZE_MAX - 7};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        void *out = (void *)&out;
        int rc = posix_memalign(&out, opaque(bad[i]), 100);
        CHECKF(rc == EINVAL && out == (void *)&out, "posix_memalign(align %#zx) = %d, out %p",
               bad[i], rc, out);
    }
    const size_t nomem[][2] = {
        {64, SIZE_MAX},         {SIZE_MAX / 2 + 1, 1},     {4096, (size_t)PTRDIFF_MAX + 1},
        {GiB, (size_t)1 << 47}, {16, (size_t)PTRDIFF_MAX},
    };
    for (size_t i = 0; i < ARRAY_LEN(nomem); i++) {
        void *out = (void *)&out;
        int rc = posix_memalign(&out, opaque(nomem[i][0]), opaque(nomem[i][1]));
        CHECKF(rc == ENOMEM && out == (void *)&out, "posix_memalign(%#zx, %#zx) = %d, out %p",
               nomem[i][0], nomem[i][1], rc, out);
    }
    void *p = NULL;
    CHECK(posix_memalign(&p, sizeof(void *), 10) == 0 && p && is_aligned(p, sizeof(void *)));
    free(p);
}

enum { VIA_POSIX, VIA_ALIGNED_ALLOC, VIA_MEMALIGN };
static const char *const via_name[] = {"posix_memalign", "aligned_alloc", "memalign"};

static void *aligned_via(int via, size_t alignment, size_t size) {
    void *p = NULL;
    switch (via) {
    case VIA_POSIX:
        if (posix_memalign(&p, alignment, size) != 0) p = NULL;
        return p;
    case VIA_ALIGNED_ALLOC:
        return aligned_alloc(alignment, size);
    default:
        return memalign(alignment, size);
    }
}

/* Alignments from the smallest to 1 GiB, for sizes from 0 to 40 MiB; the
 * blocks of one alignment stay live together and are verified at the end. */
TEST(aligned_up_to_1gib) {
    const size_t sizes[] = {0, 1, 100, 4096, 3 * MiB, 40 * MiB};
    enum { NSIZES = sizeof(sizes) / sizeof(sizes[0]) };
    for (int via = VIA_POSIX; via <= VIA_MEMALIGN; via++) {
        size_t first = via == VIA_POSIX ? sizeof(void *) : 1;
        for (size_t alignment = first; alignment <= GiB; alignment *= 2) {
            /* The big sizes at a sample of the alignments, to save time. */
            int big = alignment == 16 || alignment == 4096 || alignment == 64 * KiB ||
                      alignment == 2 * MiB || alignment == 4 * MiB || alignment == 64 * MiB ||
                      alignment == GiB;
            unsigned char *p[NSIZES] = {0};
            size_t len[NSIZES] = {0};
            for (int s = 0; s < NSIZES; s++) {
                if (sizes[s] > 4096 && !big) continue;
                p[s] = aligned_via(via, opaque(alignment), sizes[s]);
                CHECKF(p[s] && is_aligned(p[s], alignment), "%s(%zu, %zu) = %p", via_name[via],
                       alignment, sizes[s], (void *)p[s]);
                if (!p[s]) continue;
                size_t usable = malloc_usable_size(p[s]);
                CHECKF(usable >= sizes[s], "%s(%zu, %zu): usable %zu", via_name[via], alignment,
                       sizes[s], usable);
                /* Write all of a small block, both ends of a big one. */
                len[s] = usable < 64 * KiB ? usable : 64 * KiB;
                fill(p[s], len[s], (unsigned)s);
                if (usable > len[s]) fill(p[s] + usable - len[s], len[s], (unsigned)s + 100);
            }
            for (int s = 0; s < NSIZES; s++) {
                if (!p[s]) continue;
                size_t usable = malloc_usable_size(p[s]);
                CHECKF(verify(p[s], len[s], (unsigned)s) == len[s], "%s(%zu, %zu) overwritten",
                       via_name[via], alignment, sizes[s]);
                if (usable > len[s])
                    CHECKF(verify(p[s] + usable - len[s], len[s], (unsigned)s + 100) == len[s],
                           "%s(%zu, %zu) tail overwritten", via_name[via], alignment, sizes[s]);
                free(p[s]);
            }
        }
    }
}

/* Every alignment from 32 bytes to 64 KiB for every size from 1 KiB to
 * 140 KiB (by 8 bytes, 24 past 16 KiB): where blocks come from pages of one
 * size, some sizes are only 16-byte aligned and must be stepped over. */
TEST(aligned_medium_sizes) {
    size_t bad = 0;
    for (size_t alignment = 32; alignment <= 64 * KiB; alignment *= 2) {
        for (size_t n = KiB; n <= 140 * KiB; n += n < 16 * KiB ? 8 : 24) {
            void *p = aligned_via((int)(n / 8 % 3), opaque(alignment), n);
            if (!p || !is_aligned(p, alignment) || malloc_usable_size(p) < n) {
                if (bad++ < 5)
                    printf("# alignment %zu, %zu bytes: %p, usable %zu\n", alignment, n, p,
                           p ? malloc_usable_size(p) : 0);
            }
            free(p);
        }
    }
    CHECKF(bad == 0, "%zu aligned medium blocks wrong", bad);
}

/* Many aligned blocks of assorted sizes live at once: distinct and intact. */
TEST(aligned_many) {
    enum { N = 3000 };
    static unsigned char *p[N];
    static size_t size[N];
    for (int i = 0; i < N; i++) {
        size_t alignment = (size_t)1 << (rng() % 16);
        size[i] = rng() % (i % 10 == 0 ? 300 * KiB : 3000);
        p[i] = aligned_via(i % 3, alignment < 8 ? 8 : alignment, size[i]);
        CHECKF(p[i] && is_aligned(p[i], alignment), "%zu-aligned block of %zu", alignment, size[i]);
        if (p[i]) fill(p[i], size[i], (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        if (!p[i]) continue;
        CHECKF(verify(p[i], size[i], (unsigned)i) == size[i], "aligned block %d overwritten", i);
        free(p[i]);
    }
}

/* Alignments above the small sizes, for small blocks, one at a time with a
 * growing number of other blocks live: each must be a block the allocator
 * knows (malloc_usable_size, free) wherever it lands. */
TEST(big_alignment_small_blocks) {
    const size_t sizes[] = {0, 1, 100, 5000, 70000};
    for (int n = 0; n < 24; n++) {
        void *keep[24];
        for (int i = 0; i < n; i++) keep[i] = malloc((size_t)16 << (i % 10));
        for (size_t alignment = 64 * KiB; alignment <= 4 * MiB; alignment *= 2) {
            for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
                for (int via = VIA_POSIX; via <= VIA_MEMALIGN; via++) {
                    unsigned char *p = aligned_via(via, alignment, sizes[s]);
                    CHECKF(p && is_aligned(p, alignment), "%s(%zu, %zu) = %p", via_name[via],
                           alignment, sizes[s], (void *)p);
                    if (!p) continue;
                    size_t usable = malloc_usable_size(p);
                    CHECK(usable >= sizes[s]);
                    memset(p, 0x77, usable);
                    free(p);
                }
            }
        }
        for (int i = 0; i < n; i++) free(keep[i]);
    }
}

/* memalign rounds an alignment that is not a power of two up, like glibc. */
TEST(memalign_rounds_alignment) {
    const size_t cases[][2] = {{24, 32},     {48, 64},           {100, 128}, {1000, 1024},
                               {4097, 8192}, {3 * MiB, 4 * MiB}, {3, 4},     {6, 8}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        unsigned char *p = memalign(opaque(cases[i][0]), 100);
        CHECKF(p && is_aligned(p, cases[i][1]), "memalign(%zu, 100) = %p", cases[i][0], (void *)p);
        if (p) memset(p, 3, 100);
        free(p);
    }
    void *p = memalign(opaque(0), 100);
    CHECK(p != NULL);
    free(p);
    errno = 0;
    p = memalign(opaque(SIZE_MAX / 2 + 2), 16);
    CHECKF(!p && (errno == EINVAL || errno == ENOMEM), "memalign(2^63 + 1) = %p, errno %d", p,
           errno);
}

TEST(aligned_alloc_rejects_bad_alignment) {
    if (old_glibc_under_test()) {
        printf("# glibc %s: aligned_alloc is memalign before 2.38, skipped\n",
               gnu_get_libc_version());
        return;
    }
    const size_t bad[] = {3, 24, 48, 100, 1000, 3 * MiB, SIZE_MAX, SIZE_MAX / 2 + 2};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        errno = 0;
        void *p = aligned_alloc(opaque(bad[i]), 96);
        CHECKF(!p && errno == EINVAL, "aligned_alloc(%#zx, 96) = %p, errno %d", bad[i], p, errno);
    }
    void *p = aligned_alloc(opaque(64), 100);
    CHECK(p && is_aligned(p, 64));
    free(p);
}

TEST(valloc_pvalloc) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t sizes[] = {0, 1, 100, page - 1, page, page + 1, 100000, 3 * MiB + 5};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned char *v = valloc(opaque(n));
        CHECKF(v && is_aligned(v, page), "valloc(%zu) = %p", n, (void *)v);
        if (v) {
            CHECK(malloc_usable_size(v) >= n);
            fill(v, malloc_usable_size(v), 5);
        }
        unsigned char *pv = pvalloc(opaque(n));
        size_t want = round_up(n, page);
        CHECKF(pv && is_aligned(pv, page), "pvalloc(%zu) = %p", n, (void *)pv);
        if (pv) {
            CHECKF(malloc_usable_size(pv) >= want, "pvalloc(%zu): usable %zu < %zu", n,
                   malloc_usable_size(pv), want);
            fill(pv, want, 6);
        }
        if (v) CHECK(verify(v, malloc_usable_size(v), 5) == malloc_usable_size(v));
        if (pv) CHECK(verify(pv, want, 6) == want);
        free(v);
        free(pv);
    }
    errno = 0;
    void *p = pvalloc(opaque(SIZE_MAX - page + 2));
    CHECKF(!p && errno == ENOMEM, "pvalloc rounding overflow: %p, errno %d", p, errno);
}

/* ---- Every size, every size class --------------------------------------- */

TEST(sizes_up_to_100mib) {
    size_t sizes[256];
    size_t n = 0;
    for (size_t s = 0; s <= 64; s++) sizes[n++] = s;
    for (size_t s = 128; s <= 64 * MiB; s *= 2) {
        sizes[n++] = s - 16;
        sizes[n++] = s - 1;
        sizes[n++] = s;
        sizes[n++] = s + 1;
        sizes[n++] = s + 16;
    }
    sizes[n++] = 100 * MiB - 1;
    sizes[n++] = 100 * MiB;
    for (size_t i = 0; i < n; i++) {
        size_t s = sizes[i];
        unsigned char *p = malloc(opaque(s));
        CHECKF(p && is_aligned(p, min_alignment(s)), "malloc(%zu) = %p", s, (void *)p);
        if (!p) continue;
        CHECK(malloc_usable_size(p) >= s);
        size_t head = s < MiB ? s : 64 * KiB;
        fill(p, head, (unsigned)i);
        if (s > head) fill(p + s - head, head, (unsigned)i + 1);
        CHECK(verify(p, head, (unsigned)i) == head);
        if (s > head) CHECK(verify(p + s - head, head, (unsigned)i + 1) == head);
        free(p);
    }
    unsigned char *p = malloc(opaque(100 * MiB));
    CHECK(p != NULL);
    if (p) {
        fill(p, 100 * MiB, 77);
        CHECK(verify(p, 100 * MiB, 77) == 100 * MiB);
        free(p);
    }
}

struct block {
    unsigned char *p;
    size_t usable;
};

static int by_address(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const struct block *)a)->p;
    uintptr_t y = (uintptr_t)((const struct block *)b)->p;
    return x < y ? -1 : x > y;
}

/* Many blocks of every size class at once: no two overlap (usable sizes
 * included), and each keeps the tags written at both of its ends. */
TEST(distinct_blocks) {
    size_t sizes[1024];
    size_t nsizes = 0;
    for (size_t s = 1; s < 32; s++) sizes[nsizes++] = s;
    for (size_t s = 32; s <= KiB; s += 8) sizes[nsizes++] = s;
    for (size_t s = KiB + 1; s <= 128 * KiB; s += s / 8) sizes[nsizes++] = s;
    for (size_t s = 128 * KiB + 1; s <= 2 * MiB; s += s / 4) sizes[nsizes++] = s;
    sizes[nsizes++] = 2 * MiB;
    sizes[nsizes++] = 2 * MiB + 1;
    sizes[nsizes++] = 5 * MiB;
    size_t total = 0;
    const size_t budget = 4 * MiB, max_count = 256;
    for (size_t i = 0; i < nsizes; i++) {
        size_t c = budget / sizes[i];
        total += c < 4 ? 4 : c > max_count ? max_count : c;
    }
    struct block *blocks = calloc(total, sizeof *blocks);
    CHECK(blocks != NULL);
    if (!blocks) return;
    size_t nblocks = 0;
    for (size_t i = 0; i < nsizes; i++) {
        size_t c = budget / sizes[i];
        c = c < 4 ? 4 : c > max_count ? max_count : c;
        for (size_t k = 0; k < c; k++) {
            unsigned char *p = malloc(sizes[i]);
            CHECKF(p != NULL, "malloc(%zu)", sizes[i]);
            if (!p) continue;
            size_t usable = malloc_usable_size(p);
            CHECK(usable >= sizes[i]);
            blocks[nblocks].p = p;
            blocks[nblocks].usable = usable;
            p[usable - 1] = (unsigned char)(nblocks * 7);
            p[0] = (unsigned char)nblocks; /* (the same byte when usable is 1) */
            nblocks++;
        }
    }
    for (size_t i = 0; i < nblocks; i++) {
        CHECKF(blocks[i].p[0] == (unsigned char)i &&
                   (blocks[i].usable == 1 ||
                    blocks[i].p[blocks[i].usable - 1] == (unsigned char)(i * 7)),
               "block %zu (%p, usable %zu) overwritten", i, (void *)blocks[i].p, blocks[i].usable);
    }
    qsort(blocks, nblocks, sizeof *blocks, by_address);
    size_t overlaps = 0;
    for (size_t i = 1; i < nblocks; i++) {
        if (blocks[i - 1].p + blocks[i - 1].usable > blocks[i].p) {
            if (overlaps++ < 5)
                printf("# %p (usable %zu) overlaps %p\n", (void *)blocks[i - 1].p,
                       blocks[i - 1].usable, (void *)blocks[i].p);
        }
    }
    CHECKF(overlaps == 0, "%zu overlapping pairs among %zu blocks", overlaps, nblocks);
    for (size_t i = 0; i < nblocks; i++) free(blocks[i].p);
    free(blocks);
}

/* ---- Names an allocator may leave out ----------------------------------- */

TEST(free_sized_and_cfree) {
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))same_object_symbol("free_sized");
    void (*fas)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))same_object_symbol("free_aligned_sized");
    void (*cf)(void *) = (void (*)(void *))same_object_symbol("cfree");
    const size_t sizes[] = {0, 1, 16, 1000, 50 * KiB, MiB, 3 * MiB, 64 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        if (fs) {
            void *p = malloc(sizes[i]);
            CHECK(p != NULL);
            errno = 1234;
            fs(p, sizes[i]);
            CHECK(errno == 1234);
            void *c = calloc(sizes[i], 1);
            fs(c, sizes[i]);
        }
        if (fas) {
            const size_t alignments[] = {16, 64, 4096, MiB};
            for (size_t a = 0; a < ARRAY_LEN(alignments); a++) {
                void *p = aligned_alloc(alignments[a], sizes[i]);
                CHECK(p != NULL);
                errno = 1234;
                fas(p, alignments[a], sizes[i]);
                CHECK(errno == 1234);
            }
        }
        if (cf) cf(malloc(sizes[i]));
    }
    if (fs) fs(NULL, 0);
    if (fas) fas(NULL, 64, 0);
    if (cf) cf(NULL);
}

TEST(libc_aliases) {
    void *(*lm)(size_t) = (void *(*)(size_t))same_object_symbol("__libc_malloc");
    void *(*lc)(size_t, size_t) = (void *(*)(size_t, size_t))same_object_symbol("__libc_calloc");
    void *(*lr)(void *, size_t) = (void *(*)(void *, size_t))same_object_symbol("__libc_realloc");
    void (*lf)(void *) = (void (*)(void *))same_object_symbol("__libc_free");
    void *(*lma)(size_t, size_t) = (void *(*)(size_t, size_t))same_object_symbol("__libc_memalign");
    void *(*lv)(size_t) = (void *(*)(size_t))same_object_symbol("__libc_valloc");
    void *(*lpv)(size_t) = (void *(*)(size_t))same_object_symbol("__libc_pvalloc");
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t sizes[] = {1, 100, 5000, 200 * KiB, 3 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        if (lm) {
            unsigned char *p = lm(n);
            CHECK(p && is_aligned(p, min_alignment(n)));
            if (p) fill(p, n, 1);
            if (lr) {
                unsigned char *q = lr(p, n * 2);
                CHECK(q && verify(q, n, 1) == n);
                if (q) p = q;
            }
            free(p);
        }
        if (lc) {
            void *p = lc(n, 1);
            CHECK(p && all_zero(p, n));
            if (lf)
                lf(p);
            else
                free(p);
        }
        if (lf) {
            void *p = malloc(n);
            lf(p);
        }
        if (lma) {
            void *p = lma(256, n);
            CHECK(p && is_aligned(p, 256));
            free(p);
        }
        if (lv) {
            void *p = lv(n);
            CHECK(p && is_aligned(p, page));
            free(p);
        }
        if (lpv) {
            void *p = lpv(n);
            CHECK(p && is_aligned(p, page) && malloc_usable_size(p) >= round_up(n, page));
            free(p);
        }
    }
    if (lf) lf(NULL);
}

/* The glibc administrative calls exist and return something sane. */
TEST(malloc_admin_calls) {
    void *p = malloc(10 * MiB);
    int rc = malloc_trim(0);
    CHECK(rc == 0 || rc == 1);
    free(p);
    rc = malloc_trim(opaque(64 * KiB));
    CHECK(rc == 0 || rc == 1);
    struct mallinfo2 mi = mallinfo2();
    (void)mi;
    /* malloc_stats writes to stderr; keep it out of the test output. */
    fflush(stderr);
    int saved = dup(2);
    int null = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0) {
        dup2(null, 2);
        malloc_stats();
        fflush(stderr);
        dup2(saved, 2);
    }
    if (null >= 0) close(null);
    if (saved >= 0) close(saved);
}

/* ---- Threads ------------------------------------------------------------ */

enum { THREADS = 4, PER_THREAD = 5000 };
struct handoff {
    unsigned char *p[PER_THREAD];
    size_t size[PER_THREAD];
    int index;
};

static void *make_blocks(void *arg) {
    struct handoff *h = arg;
    uint64_t x = (uint64_t)h->index * 0x9e3779b97f4a7c15u + 1;
    for (int i = 0; i < PER_THREAD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = (i % 100 == 0) ? x % (300 * KiB) : x % 600;
        h->size[i] = n;
        h->p[i] = malloc(n);
        if (h->p[i]) fill(h->p[i], n, (unsigned)(h->index * PER_THREAD + i));
    }
    return NULL;
}

/* Blocks made by threads that have exited, freed by the main thread. */
TEST(threads_free_elsewhere) {
    static struct handoff h[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        h[i].index = i;
        CHECK(pthread_create(&t[i], NULL, make_blocks, &h[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        for (int k = 0; k < PER_THREAD; k++) {
            CHECK(h[i].p[k] != NULL);
            if (!h[i].p[k]) continue;
            size_t bad = verify(h[i].p[k], h[i].size[k], (unsigned)(i * PER_THREAD + k));
            CHECKF(bad == h[i].size[k], "thread %d block %d overwritten", i, k);
            if (k % 3 == 0) {
                unsigned char *q = realloc(h[i].p[k], h[i].size[k] + 100);
                CHECK(q != NULL);
                if (q) h[i].p[k] = q;
            }
            free(h[i].p[k]);
        }
    }
}

int main(void) {
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    RUN(allocator_under_test);
    if (check_any_failed) {
        printf("# not the allocator expected: nothing else is tested\n");
        return 1;
    }
    RUN(malloc_zero_unique);
    RUN(alignment);
    RUN(usable_size);
    RUN(too_big_is_enomem);
    RUN(calloc_overflow_is_enomem);
    RUN(realloc_null_is_malloc);
    RUN(realloc_zero_frees);
    RUN(realloc_keeps_contents);
    RUN(realloc_failure_keeps_block);
    RUN(calloc_zeroes);
    RUN(free_preserves_errno);
    RUN(posix_memalign_errors);
    RUN(aligned_up_to_1gib);
    RUN(aligned_medium_sizes);
    RUN(aligned_many);
    RUN(big_alignment_small_blocks);
    RUN(memalign_rounds_alignment);
    RUN(aligned_alloc_rejects_bad_alignment);
    RUN(valloc_pvalloc);
    RUN(sizes_up_to_100mib);
    RUN(distinct_blocks);
    RUN(free_sized_and_cfree);
    RUN(libc_aliases);
    RUN(malloc_admin_calls);
    RUN(threads_free_elsewhere);
    return check_exit_status();
}
