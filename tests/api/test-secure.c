/* test-secure: heap errors are caught, with one line on stderr, then abort.
 *
 * Each case runs in a child process (fork) that makes one error; the parent
 * checks that the child died of SIGABRT after writing exactly one line that
 * holds the expected words, and that it did not get past the error.
 *
 * Run with TEST_SECURE=1 under libmclone-secure: every case.  Without it
 * (the release build) only the cases that build promises to catch: a
 * pointer that is not ours or not a block's start, and a double free that
 * the fast path sees (the block just freed, a huge block).  The secure-only
 * cases are skipped (a comment line, not a test).  The last tests check that the secure
 * build's bookkeeping leaves correct programs alone: exact usable sizes,
 * realloc keeping contents, calloc zeroing, alignment, other threads' frees. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static volatile unsigned char *sink; /* keeps the compiler from dropping stores */
static volatile size_t zero;         /* hides out-of-bounds indexes from the compiler */

/* C23 names, which an older C library does not declare (nor define). */
extern void free_sized(void *p, size_t size) __attribute__((weak));
extern void free_aligned_sized(void *p, size_t alignment, size_t size) __attribute__((weak));

/* ---- The errors -------------------------------------------------------------------- */
static void double_free_small(void) {
    char *p = malloc(24);
    free(p);
    free(p);
}

/* Freed, then other blocks freed after it: not the last block freed. */
static void double_free_later(size_t size) {
    char *p = malloc(size), *q = malloc(size);
    free(p);
    free(q);
    free(p);
}
static void double_free_later_small(void) {
    double_free_later(40);
}
static void double_free_later_medium(void) {
    double_free_later(5000);
}
static void double_free_large(void) {
    double_free_later(300000);
}
static void double_free_huge(void) {
    double_free_later(8 << 20);
}

static void invalid_stack(void) {
    char local[64];
    sink = (volatile unsigned char *)local;
    free(local);
}
static void invalid_interior(void) {
    char *p = malloc(100);
    free(p + 16);
}
static void invalid_realloc(void) {
    char *p = malloc(100);
    sink = realloc(p + 32, 200);
}

static void overflow(size_t size, size_t at) {
    unsigned char *p = malloc(size);
    sink = p;
    p[at + zero] = 0x55;
    free(p);
}
static void overflow_one_small(void) {
    overflow(24, 24);
}
static void overflow_one_tiny(void) {
    overflow(1, 1);
}
static void overflow_one_medium(void) {
    overflow(5000, 5000);
}
static void overflow_one_large(void) {
    overflow(300000, 300000);
}
static void overflow_one_huge(void) {
    overflow((8 << 20) + 3, (8 << 20) + 3);
}
/* Past the canary, into the trailer: a 24-byte block ends at 32. */
static void overflow_trailer(void) {
    unsigned char *p = malloc(20);
    sink = p;
    memset(p + 20 + zero, 0, 12);
    free(p);
}
static void overflow_realloc(void) {
    unsigned char *p = malloc(100);
    sink = p;
    p[100 + zero] = 1;
    sink = realloc(p, 1000);
}
static void overflow_calloc(void) {
    unsigned char *p = calloc(10, 10);
    sink = p;
    p[100 + zero] = 1;
    free(p);
}
static void overflow_aligned(void) {
    unsigned char *p = aligned_alloc(256, 300);
    sink = p;
    p[300 + zero] = 1;
    free(p);
}

/* Write into a freed block, then allocate until the block comes back. */
static void use_after_free(size_t size, size_t at, uint64_t value) {
    unsigned char *p = malloc(size);
    free(p);
    memcpy(p + at + zero, &value, sizeof value);
    for (int i = 0; i < 1000000; i++) sink = malloc(size);
}
static void uaf_fill(void) {
    use_after_free(64, 40, 0x4141414141414141ull);
}
static void uaf_mark(void) {
    use_after_free(64, 8, 0);
}
static void uaf_link(void) {
    use_after_free(64, 0, 0x1234560);
}
static void uaf_medium(void) {
    use_after_free(3000, 512, 7);
}

static void wrong_size(void) {
    char *p = malloc(24);
    if (free_sized) free_sized(p, 32);
}

/* ---- Running one in a child ----------------------------------------------------------- */
typedef struct {
    const char *name;
    void (*make)(void);
    const char *expect; /* words of the message */
    int release;        /* the release build catches it too */
} error_case_t;

static const error_case_t cases[] = {
    {"double_free_small", double_free_small, "free(): double free of 0x", 1},
    {"double_free_later_small", double_free_later_small, "free(): double free of 0x", 0},
    {"double_free_later_medium", double_free_later_medium, "free(): double free of 0x", 0},
    {"double_free_large", double_free_large, "double free", 1},
    {"double_free_huge", double_free_huge, "free(): double free of 0x", 1},
    {"invalid_stack", invalid_stack, "not allocated by malloc-clone", 1},
    {"invalid_interior", invalid_interior, "not the start of an allocated block", 0},
    {"invalid_realloc", invalid_realloc, "realloc(): invalid pointer", 1},
    /* No slack after 24 bytes: the overflow hits the trailer. */
    {"overflow_one_small", overflow_one_small, "free(): heap overflow: ", 0},
    {"overflow_one_tiny", overflow_one_tiny, "free(): heap overflow: block 0x", 0},
    {"overflow_one_medium", overflow_one_medium, "free(): heap overflow: block 0x", 0},
    {"overflow_one_large", overflow_one_large, "free(): heap overflow: block 0x", 0},
    {"overflow_one_huge", overflow_one_huge, "free(): heap overflow: block 0x", 0},
    {"overflow_trailer", overflow_trailer, "free(): heap overflow: the end of block", 0},
    {"overflow_realloc", overflow_realloc, "realloc(): heap overflow", 0},
    {"overflow_calloc", overflow_calloc, "free(): heap overflow", 0},
    {"overflow_aligned", overflow_aligned, "free(): heap overflow", 0},
    {"uaf_fill", uaf_fill, "malloc(): block 0x", 0},
    {"uaf_mark", uaf_mark, "written after it was freed (at +8)", 0},
    {"uaf_link", uaf_link, "malloc(): the free list after block 0x", 0},
    {"uaf_medium", uaf_medium, "written after it was freed (at +512)", 0},
    {"wrong_size", wrong_size, "free_sized(): block 0x", 0},
};

static int secure;

static void run_case(const error_case_t *c) {
    if (!secure && !c->release) {
        printf("# %s%s: skipped, caught by the secure build only\n", check_prefix, c->name);
        return;
    }
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        c->make();
        _exit(0); /* not caught */
    }
    close(fds[1]);
    char buf[4096];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    check_test_failed = 0;
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: status %#x, stderr: %s",
           c->name, status, buf);
    CHECKF(strstr(buf, c->expect) != NULL && strncmp(buf, "mclone: ", 8) == 0,
           "%s: expected \"%s\", got: %s", c->name, c->expect, buf);
    char *nl = strchr(buf, '\n');
    CHECKF(nl != NULL && nl[1] == '\0', "%s: not one line: %s", c->name, buf);
    if (!check_test_failed) printf("# %s", buf);
    printf("%s %s%s\n", check_test_failed ? "not ok" : "ok", check_prefix, c->name);
    check_any_failed |= check_test_failed;
}

/* ---- Correct programs are left alone ---------------------------------------------------- */
TEST(usable_size_is_the_size_asked) {
    static const size_t sizes[] = {0,   1,    7,    8,    15,    16,     24,
                                   100, 1000, 1024, 5000, 70000, 300000, 3 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = malloc(sizes[i]);
        CHECK(p != NULL);
        if (!p) continue;
        size_t u = malloc_usable_size(p);
        if (secure)
            CHECKF(u == sizes[i], "malloc(%zu): usable %zu", sizes[i], u);
        else
            CHECKF(u >= sizes[i], "malloc(%zu): usable %zu", sizes[i], u);
        memset(p, 0x77, u); /* every usable byte may be written */
        free(p);
    }
}

TEST(realloc_keeps_contents) {
    unsigned char *p = malloc(1);
    CHECK(p != NULL);
    if (!p) return;
    p[0] = 0;
    size_t n = 1;
    static const size_t steps[] = {2,     17,     30,     100,     90,      1000, 5000, 4000,
                                   70000, 300000, 200000, 3 << 20, 5 << 20, 100,  24,   1};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        size_t m = steps[s];
        unsigned char *q = realloc(p, m);
        CHECKF(q != NULL, "realloc to %zu", m);
        if (!q) break;
        p = q;
        size_t keep = n < m ? n : m;
        for (size_t i = 0; i < keep; i++)
            if (p[i] != (unsigned char)(i * 13)) {
                CHECKF(0, "byte %zu lost in realloc %zu -> %zu", i, n, m);
                break;
            }
        for (size_t i = 0; i < m; i++) p[i] = (unsigned char)(i * 13);
        n = m;
    }
    free(p);
}

/* A string builder: grown 100 bytes at a time to 4 MiB, it may move only a
 * few dozen times (each move is a copy). */
TEST(realloc_growth_moves_rarely) {
    char *b = NULL;
    size_t len = 0, moves = 0;
    while (len < (4u << 20)) {
        char *nb = realloc(b, len + 101);
        CHECK(nb != NULL);
        if (!nb) break;
        if (nb != b) moves++;
        b = nb;
        memset(b + len, 'x', 100);
        len += 100;
        b[len] = '\0';
    }
    CHECKF(moves < 100, "%zu moves", moves);
    CHECK(b != NULL && b[0] == 'x' && b[len - 1] == 'x');
    free(b);
}

TEST(calloc_and_reuse_are_clean) {
    for (int round = 0; round < 3; round++) {
        unsigned char *b[64];
        for (int i = 0; i < 64; i++) {
            b[i] = calloc(1, 40 + (size_t)i * 40);
            CHECK(b[i] != NULL);
            if (!b[i]) return;
            for (size_t k = 0; k < 40 + (size_t)i * 40; k++)
                if (b[i][k] != 0) {
                    CHECKF(0, "calloc block %d byte %zu is %#x", i, k, b[i][k]);
                    break;
                }
            memset(b[i], 0xee, 40 + (size_t)i * 40);
        }
        for (int i = 0; i < 64; i++) free(b[i]);
    }
}

TEST(aligned_blocks) {
    for (size_t a = 8; a <= (1 << 20); a <<= 1) {
        void *p = NULL;
        CHECK(posix_memalign(&p, a, 100) == 0);
        CHECKF(((uintptr_t)p & (a - 1)) == 0, "align %zu: %p", a, p);
        if (p) memset(p, 1, 100);
        if (secure && p) CHECK(malloc_usable_size(p) == 100);
        free(p);
        unsigned char *q = aligned_alloc(a, 3 * a);
        CHECK(q != NULL);
        if (q) {
            memset(q, 2, 3 * a);
            q = realloc(q, 5 * a);
            CHECK(q != NULL && q[3 * a - 1] == 2);
        }
        free(q);
    }
}

TEST(sized_frees) {
    if (!free_sized || !free_aligned_sized) return;
    for (size_t n = 1; n < 3000; n += 97) {
        void *p = malloc(n);
        CHECK(p != NULL);
        free_sized(p, n);
        void *q = aligned_alloc(64, n);
        CHECK(q != NULL);
        free_aligned_sized(q, 64, n);
    }
}

/* Blocks freed by a thread other than the one that allocated them. */
#define CROSS 20000
static void *cross[CROSS];
static void *free_all(void *arg) {
    (void)arg;
    for (int i = 0; i < CROSS; i++) free(cross[i]);
    return NULL;
}
TEST(other_threads_free) {
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < CROSS; i++) {
            size_t n = 8 + (size_t)(i * 37) % 2000;
            cross[i] = malloc(n);
            CHECK(cross[i] != NULL);
            if (cross[i]) memset(cross[i], i, n);
        }
        pthread_t t;
        CHECK(pthread_create(&t, NULL, free_all, NULL) == 0);
        pthread_join(t, NULL);
    }
}

int main(void) {
    const char *s = getenv("TEST_SECURE");
    secure = s != NULL && strcmp(s, "1") == 0;
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    RUN(usable_size_is_the_size_asked);
    RUN(realloc_keeps_contents);
    RUN(realloc_growth_moves_rarely);
    RUN(calloc_and_reuse_are_clean);
    RUN(aligned_blocks);
    RUN(sized_frees);
    RUN(other_threads_free);
    return check_exit_status();
}
