/* firstfit-api.c: the allocation API rules, checked through the standard
 * names, for the first-fit example allocator (examples/first-fit/).
 *
 * Run under the allocator to test:
 *
 *     LD_PRELOAD=$PWD/build/libfirstfit.so TEST_EXPECT_LIB=libfirstfit.so \
 *         build/tests/examples/firstfit-api
 *
 * TEST_EXPECT_LIB names a substring of the path of the library that must
 * provide every allocation function (so a preload that silently did not
 * happen fails).  Without it, the checks run against whatever allocator the
 * program gets, glibc's included. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Sizes kept in volatile variables, so that the compiler neither warns
 * about nor folds the deliberately impossible requests. */
static volatile size_t huge_size = (size_t)PTRDIFF_MAX + 1;
static volatile size_t max_size = SIZE_MAX;
static volatile size_t ptrdiff_max = PTRDIFF_MAX;
static volatile size_t odd_alignment = 48; /* not a power of two */

static int is_aligned(const void *p, size_t a) {
    return ((uintptr_t)p & (a - 1)) == 0;
}

TEST(functions_come_from_expected_library) {
    const char *want = getenv("TEST_EXPECT_LIB");
    if (want == NULL || want[0] == '\0') {
        printf("# TEST_EXPECT_LIB not set: testing whichever malloc is linked\n");
        return;
    }
    static const char *const names[] = {
        "malloc",   "free",   "calloc",  "realloc",       "reallocarray",       "posix_memalign",
        "memalign", "valloc", "pvalloc", "aligned_alloc", "malloc_usable_size", "malloc_trim",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        Dl_info info;
        int found = sym != NULL && dladdr(sym, &info) != 0 && info.dli_fname != NULL &&
                    strstr(info.dli_fname, want) != NULL;
        CHECKF(found, "%s comes from %s, not %s", names[i],
               sym != NULL && dladdr(sym, &info) ? info.dli_fname : "nowhere", want);
    }
}

TEST(malloc_alignment_and_usable_size) {
    static const size_t sizes[] = {0,     1,      7,      8,      15,      16,     17,   24,
                                   31,    32,     33,     100,    1000,    4095,   4096, 4097,
                                   65536, 200000, 262144, 300000, 1 << 20, 5 << 20};
    void *ptrs[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        ptrs[i] = p;
        CHECKF(p != NULL, "malloc(%zu)", sizes[i]);
        if (p == NULL) continue;
        CHECKF(is_aligned(p, 16), "malloc(%zu) = %p", sizes[i], p);
        size_t usable = malloc_usable_size(p);
        CHECKF(usable >= sizes[i], "usable %zu < %zu", usable, sizes[i]);
        memset(p, (int)i, usable); /* the whole usable size is ours */
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (ptrs[i] == NULL) continue;
        unsigned char *p = ptrs[i];
        size_t usable = malloc_usable_size(p);
        CHECKF(usable == 0 || (p[0] == (unsigned char)i && p[usable - 1] == (unsigned char)i),
               "block %zu was overwritten", i);
        free(p);
    }
    CHECK(malloc_usable_size(NULL) == 0);
}

TEST(malloc_zero_is_unique) {
    void *a = malloc(0), *b = malloc(0);
    CHECK(a != NULL && b != NULL && a != b);
    free(a);
    free(b);
}

TEST(realloc_rules) {
    errno = 0;
    char *p = realloc(NULL, 40);
    CHECK(p != NULL);
    if (p == NULL) return;
    for (int i = 0; i < 40; i++) p[i] = (char)i;
    /* Grow through every size range, then shrink: the contents stay. */
    static const size_t steps[] = {41, 100, 5000, 70000, 300000, 3 << 20, 1000, 64, 40};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        char *q = realloc(p, steps[s]);
        CHECKF(q != NULL, "realloc to %zu", steps[s]);
        if (q == NULL) break;
        p = q;
        int same = 1;
        for (int i = 0; i < 40; i++) same &= p[i] == (char)i;
        CHECKF(same, "contents lost at realloc to %zu", steps[s]);
        memset(p + 40, 0x5a, steps[s] - 40);
    }
    /* A failed realloc leaves the block alone. */
    errno = 0;
    CHECK(realloc(p, huge_size) == NULL && errno == ENOMEM);
    CHECK(p[0] == 0 && p[39] == 39);
    /* realloc(p, 0) frees p and returns NULL, as glibc does. */
    CHECK(realloc(p, 0) == NULL);
}

TEST(enomem_rules) {
    errno = 0;
    CHECK(malloc(huge_size) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(max_size) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(ptrdiff_max) == NULL && errno == ENOMEM); /* mmap fails */
    errno = 0;
    CHECK(calloc(max_size / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(2, ptrdiff_max / 2 + 1) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(NULL, max_size / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(memalign(64, huge_size) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(aligned_alloc(4096, huge_size) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(valloc(huge_size) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(pvalloc(max_size) == NULL && errno == ENOMEM);
}

TEST(posix_memalign_rules) {
    void *sentinel = (void *)0x1234;
    void *out = sentinel;
    CHECK(posix_memalign(&out, 0, 16) == EINVAL && out == sentinel);
    CHECK(posix_memalign(&out, 3, 16) == EINVAL && out == sentinel);
    CHECK(posix_memalign(&out, sizeof(void *) / 2, 16) == EINVAL && out == sentinel);
    CHECK(posix_memalign(&out, 24, 16) == EINVAL && out == sentinel);
    CHECK(posix_memalign(&out, 64, huge_size) == ENOMEM && out == sentinel);
    CHECK(posix_memalign(&out, 64, ptrdiff_max) == ENOMEM && out == sentinel);
    for (size_t a = sizeof(void *); a <= ((size_t)1 << 30); a *= 2) {
        out = sentinel;
        int rc = posix_memalign(&out, a, 100);
        CHECKF(rc == 0 && out != sentinel && is_aligned(out, a), "alignment %zu", a);
        if (rc == 0) {
            memset(out, 1, 100);
            free(out);
        }
    }
}

TEST(aligned_family) {
    for (size_t a = 1; a <= ((size_t)1 << 30); a *= 2) {
        static const size_t sizes[] = {0, 1, 100, 5000, 300000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            char *p = memalign(a, n);
            char *q = aligned_alloc(a, n);
            CHECKF(p != NULL && is_aligned(p, a), "memalign(%zu, %zu) = %p", a, n, (void *)p);
            CHECKF(q != NULL && is_aligned(q, a), "aligned_alloc(%zu, %zu) = %p", a, n, (void *)q);
            if (p && n) p[0] = p[n - 1] = 1;
            if (q && n) q[0] = q[n - 1] = 1;
            CHECK(p == NULL || malloc_usable_size(p) >= n);
            free(p);
            free(q);
        }
    }
    /* glibc's memalign rounds an alignment that is not a power of two up. */
    char *p = memalign(odd_alignment, 10);
    CHECK(p != NULL && is_aligned(p, 64));
    free(p);
    errno = 0;
    CHECK(memalign(max_size, 10) == NULL && errno == EINVAL);
    errno = 0;
    /* aligned_alloc rejects it (glibc 2.38 and later; older ones round up
     * like memalign): accept either. */
    p = aligned_alloc(odd_alignment, 96);
    CHECK((p == NULL && errno == EINVAL) || (p != NULL && is_aligned(p, 64)));
    free(p);

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    p = valloc(10);
    CHECK(p != NULL && is_aligned(p, page));
    free(p);
    p = pvalloc(10);
    CHECK(p != NULL && is_aligned(p, page) && malloc_usable_size(p) >= page);
    free(p);
    p = pvalloc(0);
    CHECK(p != NULL && is_aligned(p, page));
    free(p);
}

TEST(calloc_zeroes_reused_memory) {
    for (size_t n = 1; n <= 1 << 20; n *= 4) {
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        if (p) memset(p, 0xff, n);
        free(p);
        unsigned char *q = calloc(1, n);
        CHECK(q != NULL);
        if (q == NULL) continue;
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i++) nonzero += q[i] != 0;
        CHECKF(nonzero == 0, "calloc(1, %zu): %zu bytes not zero", n, nonzero);
        free(q);
    }
    void *z = calloc(0, 0);
    CHECK(z != NULL);
    free(z);
}

TEST(free_preserves_errno) {
    void *small = malloc(100), *big = malloc(1 << 20), *aligned = memalign(1 << 20, 10);
    errno = EBADF;
    free(small);
    free(big);
    free(aligned);
    free(NULL);
    CHECK(errno == EBADF);
}

/* Many blocks of mixed sizes, freed in another order than allocated, each
 * filled with a pattern that must survive the other allocations. */
TEST(churn_keeps_contents) {
    enum { SLOTS = 2000, ROUNDS = 100000 };
    static unsigned char *slot[SLOTS];
    static size_t len[SLOTS];
    unsigned x = 12345;
    int bad = 0;
    for (int r = 0; r < ROUNDS; r++) {
        x = x * 1103515245u + 12345u;
        int i = (int)((x >> 8) % SLOTS);
        if (slot[i]) {
            for (size_t k = 0; k < len[i]; k += 7) bad |= slot[i][k] != (unsigned char)i;
            free(slot[i]);
        }
        len[i] = (x >> 20) % 16 == 0 ? (x >> 4) % 20000 : (x >> 12) % 300;
        slot[i] = malloc(len[i]);
        if (slot[i] == NULL)
            bad = 1;
        else
            memset(slot[i], i, len[i]);
    }
    for (int i = 0; i < SLOTS; i++) free(slot[i]);
    CHECK(!bad);
}

/* Threads allocate and free, and also free each other's blocks. */
enum { THREADS = 4, THREAD_OPS = 50000, HANDOFF = 256 };
static void *handoff[HANDOFF]; /* blocks on their way to another thread */

static void *thread_main(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned x = 777u + (unsigned)id;
    void *mine[256] = {0};
    intptr_t bad = 0;
    for (int r = 0; r < THREAD_OPS; r++) {
        x = x * 1103515245u + 12345u;
        int i = (int)((x >> 8) % 256);
        if (mine[i]) {
            bad |= *(int *)mine[i] != id;
            /* Every few rounds, swap the block into the shared hand-off
             * array and free what was there, most often another thread's. */
            if ((x >> 20) % 8 == 0) {
                void **cell = &handoff[(x >> 4) % HANDOFF];
                void *other = __atomic_exchange_n(cell, mine[i], __ATOMIC_ACQ_REL);
                free(other);
            } else {
                free(mine[i]);
            }
        }
        mine[i] = malloc(16 + (x >> 12) % 2000);
        if (mine[i] == NULL) return (void *)1;
        *(int *)mine[i] = id;
    }
    for (int i = 0; i < 256; i++) free(mine[i]);
    return (void *)bad;
}

TEST(threads) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, thread_main, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++) {
        void *result = NULL;
        pthread_join(t[i], &result);
        CHECK(result == NULL);
    }
    for (int k = 0; k < HANDOFF; k++) free(handoff[k]);
}

/* malloc_trim from two threads at once, between frees and reallocations:
 * it gives back free pages (glibc's would set up a heap of its own behind
 * the allocator, and two at once could crash it), and the live blocks and
 * the free list survive. */
enum { TRIM_BLOCKS = 4000 };
static unsigned char *trim_block[2][TRIM_BLOCKS];
static int trim_released[2]; /* calls that said they gave memory back */

static void *trim_thread(void *arg) {
    int id = (int)(intptr_t)arg;
    intptr_t bad = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < TRIM_BLOCKS; i++) {
            size_t n = 16 + (size_t)((i * 37 + round) % 9000);
            trim_block[id][i] = malloc(n);
            if (trim_block[id][i] == NULL) return (void *)1;
            memset(trim_block[id][i], id + i, n < 64 ? n : 64);
        }
        for (int i = 0; i < TRIM_BLOCKS; i++)
            if (i % 8 != 0) {
                free(trim_block[id][i]);
                trim_block[id][i] = NULL;
            }
        if (malloc_trim(0) == 1) trim_released[id]++;
        for (int i = 0; i < TRIM_BLOCKS; i += 8) {
            bad |= trim_block[id][i][0] != (unsigned char)(id + i);
            free(trim_block[id][i]);
        }
    }
    return (void *)bad;
}

TEST(malloc_trim_in_threads) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, trim_thread, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 2; i++) {
        void *result = NULL;
        pthread_join(t[i], &result);
        CHECK(result == NULL);
    }
    /* Seven blocks in eight were free at each trim: there were whole free pages. */
    CHECKF(trim_released[0] > 0 && trim_released[1] > 0, "malloc_trim released %d and %d times",
           trim_released[0], trim_released[1]);
}

/* fork while another thread allocates: the child must be able to allocate
 * (the allocator's lock must not be inherited locked). */
static volatile int keep_allocating = 1;
static void *allocating_thread(void *arg) {
    (void)arg;
    while (keep_allocating) free(malloc(100));
    return NULL;
}

TEST(fork_while_allocating) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, allocating_thread, NULL) == 0);
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10); /* a deadlock ends as a failure, not a hang */
            for (int k = 0; k < 1000; k++) free(malloc((size_t)k * 10));
            _exit(0);
        }
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    }
    keep_allocating = 0;
    pthread_join(t, NULL);
}

int main(void) {
    check_prefix = "firstfit-api: ";
    RUN(functions_come_from_expected_library);
    RUN(malloc_alignment_and_usable_size);
    RUN(malloc_zero_is_unique);
    RUN(realloc_rules);
    RUN(enomem_rules);
    RUN(posix_memalign_rules);
    RUN(aligned_family);
    RUN(calloc_zeroes_reused_memory);
    RUN(free_preserves_errno);
    RUN(churn_keeps_contents);
    RUN(threads);
    RUN(malloc_trim_in_threads);
    RUN(fork_while_allocating);
    return check_exit_status();
}
