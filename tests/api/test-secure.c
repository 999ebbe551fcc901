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
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "mclone.h"

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
/* Freed, its mark (and link) wiped by a stray write, freed again: the end
 * of a freed block says so too (the fill, or a keyed word past it). */
static void double_free_wiped(size_t n) {
    char *p = malloc(n);
    free(p);
    memset(p + zero, 0, 16);
    free(p);
}
static void double_free_wiped_small(void) {
    double_free_wiped(200);
}
static void double_free_wiped_medium(void) {
    double_free_wiped(3000);
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
/* One not even 8-byte aligned, in the thread's own page: the release build's
 * fast path sends it to the full check (no block starts there). */
static void invalid_interior_misaligned(void) {
    char *p = malloc(100);
    free(p + 3);
}
/* The same in a block of another thread, which free reaches by a shorter
 * path than its own blocks: both builds catch it.  The thread stays alive,
 * so that its pages have an owner. */
static void *hold_blocks(void *arg) {
    void **blocks = arg;
    blocks[1] = malloc(100);
    for (int i = 0; i < 8; i++) {
        void *q = malloc(20000); /* a page of several slices */
        if (blocks[2] == NULL || (uintptr_t)q > (uintptr_t)blocks[2]) blocks[2] = q;
    }
    __atomic_store_n(&blocks[0], (void *)1, __ATOMIC_RELEASE);
    for (;;) pause();
    return NULL;
}
static char *block_of_live_thread(int which) {
    static void *blocks[3];
    pthread_t t;
    if (pthread_create(&t, NULL, hold_blocks, blocks) != 0) _exit(3);
    while (__atomic_load_n(&blocks[0], __ATOMIC_ACQUIRE) == NULL) sched_yield();
    return blocks[which];
}
static void invalid_interior_remote(void) {
    free(block_of_live_thread(1) + 16);
}
static void invalid_interior_remote_medium(void) {
    free(block_of_live_thread(2) + 16); /* past the page's first slice */
}
/* An address in the first 64 KiB of a block's 4 MiB segment: its metadata,
 * where no block is (a wild pointer near our blocks). */
static char *metadata_of(const void *p) {
    return (char *)((uintptr_t)p & ~(uintptr_t)((4 << 20) - 1)) + 4096 + 16;
}
static void invalid_metadata(void) {
    free(metadata_of(malloc(100)));
}
/* An address in the second-to-last 64 KiB slice of a block's 4 MiB
 * segment: no page has ever been there (the child holds a few small pages,
 * taken from the segment's low slices), so its descriptor is as the
 * segment was set up. */
static void invalid_unused_slice(void) {
    free((char *)((uintptr_t)malloc(100) & ~(uintptr_t)((4 << 20) - 1)) + (62 << 16) + 64);
}
static void invalid_metadata_remote(void) {
    free(metadata_of(block_of_live_thread(1)));
}
static void invalid_metadata_usable(void) {
    sink = (void *)(uintptr_t)malloc_usable_size(metadata_of(malloc(100)));
}
static void invalid_realloc(void) {
    char *p = malloc(100);
    sink = realloc(p + 32, 200);
}

/* The byte written differs from the one there (a keyed trailer's byte may
 * happen to equal any constant, and a write that changes nothing cannot be
 * seen). */
static void overflow(size_t size, size_t at) {
    unsigned char *p = malloc(size);
    sink = p;
    p[at + zero] ^= 0x55;
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

/* Write into a freed block, then allocate and free until the block leaves
 * the quarantine (or, without one, comes back from malloc). */
static void use_after_free(size_t size, size_t at, uint64_t value) {
    unsigned char *p = malloc(size);
    free(p);
    memcpy(p + at + zero, &value, sizeof value);
    for (int i = 0; i < 1000000; i++) {
        sink = malloc(size);
        free((void *)sink);
    }
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
/* The link made to point at a live block of the same page: an encoded link
 * decodes to an address that is not one, caught at p; a plain one would
 * pass that check and be caught one malloc later, at q (its missing mark:
 * "written after it was freed"), so the message tells the two apart. */
static void uaf_link_planted(void) {
    void **p = malloc(64), *q = malloc(64);
    sink = q;
    free(p);
    p[zero] = q;
    for (int i = 0; i < 1000000; i++) {
        sink = malloc(64);
        free((void *)sink);
    }
}

/* Freed, its size allocated again, then freed a second time: only a
 * quarantine keeps the first malloc from handing the block straight back. */
static void double_free_after_malloc(void) {
    char *p = malloc(40);
    free(p);
    sink = malloc(40);
    free(p);
}

/* A long linear overflow off a huge block faults, silently (at its guard
 * page, or where the address space after it is not mapped: guard_pages
 * checks that the guard is there). */
static void overflow_huge_far(void) {
    size_t n = (size_t)8 << 20;
    unsigned char *p = malloc(n);
    sink = p;
    memset(p, 0x55, n + 16384 + zero);
    free(p);
}

static void wrong_size(void) {
    char *p = malloc(24);
    if (free_sized) free_sized(p, 32);
}

/* ---- Running one in a child ----------------------------------------------------------- */
typedef struct {
    const char *name;
    void (*make)(void);
    const char *expect; /* words of the message; NULL: dies of SIGSEGV, silently */
    int release;        /* the release build catches it too */
    int quarantine;     /* caught only with a quarantine */
} error_case_t;

static const error_case_t cases[] = {
    {"double_free_small", double_free_small, "free(): double free of 0x", 1, 0},
    {"double_free_later_small", double_free_later_small, "free(): double free of 0x", 0, 0},
    {"double_free_later_medium", double_free_later_medium, "free(): double free of 0x", 0, 0},
    {"double_free_large", double_free_large, "double free", 1, 0},
    {"double_free_huge", double_free_huge, "free(): double free of 0x", 1, 0},
    {"double_free_wiped_small", double_free_wiped_small, "free(): double free of 0x", 0, 0},
    {"double_free_wiped_medium", double_free_wiped_medium, "free(): double free of 0x", 0, 0},
    {"invalid_stack", invalid_stack, "not allocated by malloc-clone", 1, 0},
    {"invalid_interior", invalid_interior, "not the start of an allocated block", 0, 0},
    {"invalid_interior_misaligned", invalid_interior_misaligned,
     "not the start of an allocated block", 1, 0},
    {"invalid_interior_remote", invalid_interior_remote, "not the start of an allocated block", 1,
     0},
    {"invalid_interior_remote_medium", invalid_interior_remote_medium,
     "not the start of an allocated block", 1, 0},
    {"invalid_metadata", invalid_metadata, "free(): invalid pointer 0x", 1, 0},
    {"invalid_metadata_remote", invalid_metadata_remote, "free(): invalid pointer 0x", 1, 0},
    {"invalid_unused_slice", invalid_unused_slice, "free(): invalid pointer 0x", 1, 0},
    {"invalid_metadata_usable", invalid_metadata_usable, "malloc_usable_size(): invalid pointer", 1,
     0},
    {"invalid_realloc", invalid_realloc, "realloc(): invalid pointer", 1, 0},
    /* No slack after 24 bytes: the overflow hits the trailer. */
    {"overflow_one_small", overflow_one_small, "free(): heap overflow: ", 0, 0},
    {"overflow_one_tiny", overflow_one_tiny, "free(): heap overflow: block 0x", 0, 0},
    {"overflow_one_medium", overflow_one_medium, "free(): heap overflow: block 0x", 0, 0},
    {"overflow_one_large", overflow_one_large, "free(): heap overflow: block 0x", 0, 0},
    {"overflow_one_huge", overflow_one_huge, "free(): heap overflow: block 0x", 0, 0},
    {"overflow_trailer", overflow_trailer, "free(): heap overflow: the end of block", 0, 0},
    {"overflow_realloc", overflow_realloc, "realloc(): heap overflow", 0, 0},
    {"overflow_calloc", overflow_calloc, "free(): heap overflow", 0, 0},
    {"overflow_aligned", overflow_aligned, "free(): heap overflow", 0, 0},
    {"uaf_fill", uaf_fill, "was written after it was freed (at +40)", 0, 0},
    {"uaf_mark", uaf_mark, "written after it was freed (at +8)", 0, 0},
    {"uaf_link", uaf_link, "is corrupt (a write after free?)", 0, 0},
    {"uaf_link_planted", uaf_link_planted, "is corrupt (a write after free?)", 0, 0},
    {"uaf_medium", uaf_medium, "written after it was freed (at +512)", 0, 0},
    {"double_free_after_malloc", double_free_after_malloc, "free(): double free of 0x", 0, 1},
    /* No message: the write faults where it lands. */
    {"overflow_huge_far", overflow_huge_far, NULL, 0, 0},
    {"wrong_size", wrong_size, "free_sized(): block 0x", 0, 0},
};

static int secure, quarantine;

/* Under user-mode emulation (the aarch64 suite runs this under qemu) the
 * emulator reports the signal that ended the program on the same stderr,
 * "qemu: uncaught target signal 6 (Aborted) - core dumped": not ours, so
 * it is left out of what is checked. */
static void drop_emulator_lines(char *buf) {
    static const char mark[] = "qemu: uncaught target signal ";
    char *line = buf;
    while (*line != '\0') {
        char *nl = strchr(line, '\n');
        char *next = nl ? nl + 1 : line + strlen(line);
        if (strncmp(line, mark, sizeof mark - 1) == 0)
            memmove(line, next, strlen(next) + 1);
        else
            line = next;
    }
}

static void run_case(const error_case_t *c) {
    if (!secure && !c->release) {
        printf("# %s%s: skipped, caught by the secure build only\n", check_prefix, c->name);
        return;
    }
    if (!quarantine && c->quarantine) {
        printf("# %s%s: skipped, caught with a quarantine only\n", check_prefix, c->name);
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
    drop_emulator_lines(buf);
    got = strlen(buf);
    int status = 0;
    waitpid(pid, &status, 0);
    check_test_failed = 0;
    if (c->expect == NULL) {
        CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV && got == 0,
               "%s: status %#x, stderr: %s", c->name, status, buf);
        printf("%s %s%s\n", check_test_failed ? "not ok" : "ok", check_prefix, c->name);
        check_any_failed |= check_test_failed;
        return;
    }
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

/* A freed block comes back from malloc only after others have pushed it
 * out of the quarantine, and then it does come back: the quarantine is
 * bounded. */
TEST(quarantine_is_bounded) {
    void *first = malloc(1000);
    free(first);
    int n = 0;
    for (; n < 100000; n++) {
        void *p = malloc(1000);
        free(p);
        if (p == first) break;
    }
    CHECKF(n < 100000, "a block freed once never came back");
    CHECKF(!quarantine || n > 100, "came back after %d frees of its size", n);
}

/* Whether malloc(1000), with no free in between, hands out first again
 * within COME_BACK calls (the blocks it took are freed after). */
#define COME_BACK 20000
static bool comes_back(const void *first) {
    static void *got[COME_BACK];
    int n = 0;
    while (n < COME_BACK && (got[n] = malloc(1000)) != first) n++;
    for (int i = 0; i <= n && i < COME_BACK; i++) free(got[i]);
    return n < COME_BACK;
}

/* Setting MCLONE_QUARANTINE_KB to 0 at run time empties the quarantine
 * at the next free: the blocks queued before come back from malloc. */
TEST(quarantine_emptied_when_turned_off) {
    if (!quarantine) return;
    int (*set)(mc_option_t, long) =
        (int (*)(mc_option_t, long))dlsym(RTLD_DEFAULT, "mc_option_set");
    long (*get)(mc_option_t) = (long (*)(mc_option_t))dlsym(RTLD_DEFAULT, "mc_option_get");
    CHECK(set != NULL && get != NULL);
    if (set == NULL || get == NULL) return;
    long was = get(MC_OPTION_QUARANTINE_KB);
    void *first = malloc(1000);
    free(first);
    CHECK(set(MC_OPTION_QUARANTINE_KB, 0) == 0);
    free(malloc(1000));
    CHECKF(comes_back(first),
           "a block queued before the quarantine was turned off did not come back");
    set(MC_OPTION_QUARANTINE_KB, was);
}

/* malloc_trim in one thread empties the quarantines of the others too, at
 * their next slow path that does maintenance: a block freed by another
 * thread comes back to it with no free in between. */
static pthread_barrier_t trim_barrier;
static void *free_then_refill(void *arg) {
    void *first = malloc(1000);
    free(first);
    pthread_barrier_wait(&trim_barrier); /* freed */
    pthread_barrier_wait(&trim_barrier); /* trimmed */
    *(bool *)arg = comes_back(first);
    return NULL;
}
TEST(quarantine_emptied_by_trim_elsewhere) {
    if (!quarantine) return;
    bool back = false;
    pthread_t t;
    pthread_barrier_init(&trim_barrier, NULL, 2);
    CHECK(pthread_create(&t, NULL, free_then_refill, &back) == 0);
    pthread_barrier_wait(&trim_barrier);
    malloc_trim(0);
    pthread_barrier_wait(&trim_barrier);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&trim_barrier);
    CHECKF(back, "a block the other thread freed before malloc_trim did not come back to it");
}

#define HELD 200
static void *held[HELD];
static void *alloc_free_all(void *arg) {
    (void)arg;
    for (int i = 0; i < HELD; i++) held[i] = malloc(1000);
    for (int i = 0; i < HELD; i++) free(held[i]);
    return NULL;
}

/* A thread that exits empties its quarantine: the segment where it freed
 * all its blocks is not left behind with blocks held in use. */
TEST(quarantine_emptied_at_thread_exit) {
    void (*stats_get)(mc_stats_t *) = (void (*)(mc_stats_t *))dlsym(RTLD_DEFAULT, "mc_stats_get");
    if (stats_get == NULL) return; /* not libmclone */
    mc_stats_t before, after;
    stats_get(&before);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, alloc_free_all, NULL) == 0);
    pthread_join(t, NULL);
    stats_get(&after);
    CHECKF(after.allocated < before.allocated + HELD * 1000 / 2,
           "%zu bytes more allocated after a thread that freed all it allocated",
           after.allocated - before.allocated);
    CHECKF(after.segments_abandoned <= before.segments_abandoned,
           "segments abandoned: %zu before a thread, %zu after", before.segments_abandoned,
           after.segments_abandoned);
}

/* malloc_trim empties the caller's quarantine: a block freed before it
 * comes back from malloc with no free in between. */
TEST(quarantine_emptied_by_trim) {
    if (!quarantine) return; /* (without, where a freed block comes back is up to malloc) */
    void *first = malloc(1000);
    free(first);
    malloc_trim(0);
    CHECKF(comes_back(first), "the block freed before malloc_trim did not come back");
}

/* The mapping of this process that holds addr: its end, and whether no
 * access may touch it (1), or it is ordinary memory (0); -1 if none. */
static int mapping_at(uintptr_t addr, uintptr_t *end) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL) return -1;
    char line[512], perms[8];
    unsigned long lo, hi;
    int found = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && addr >= lo && addr < hi) {
            found = strcmp(perms, "---p") == 0;
            if (end != NULL) *end = hi;
            break;
        }
    fclose(f);
    return found;
}
static int is_guard(uintptr_t addr) {
    return mapping_at(addr, NULL);
}

/* A huge block's mapping ends in a guard page. */
static void check_huge_guard(const void *p, size_t n) {
    uintptr_t end = 0;
    CHECKF(mapping_at((uintptr_t)p + n - 1, &end) == 0 && is_guard(end) == 1,
           "huge block %p of %zu bytes: no guard after its mapping (ends at %#lx)", p, n,
           (unsigned long)end);
}

/* How many of the OS pages of [p, p+n) are in RAM (mincore: it needs no
 * access to them). */
static size_t resident(uintptr_t p, size_t n) {
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), count = 0;
    static unsigned char vec[(4 << 20) / 4096];
    if (n / ps > sizeof vec || mincore((void *)p, n, vec) != 0) return SIZE_MAX;
    for (size_t i = 0; i < n / ps; i++) count += vec[i] & 1;
    return count;
}

/* A guard made of memory that held a block holds no RAM: when a cached huge
 * mapping shrinks for a smaller block, or becomes a segment. */
TEST(guards_hold_no_memory) {
    if (!secure) return;
    size_t mib = (size_t)1 << 20, seg_size = 4 * mib, slice = 64 << 10;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    char *p = malloc(8 * mib);
    CHECK(p != NULL);
    if (p == NULL) return;
    memset(p, 1, 8 * mib);
    free(p);
    char *q = malloc(5 * mib); /* the cached mapping, shrunk */
    uintptr_t end = 0;
    CHECK(q != NULL && mapping_at((uintptr_t)q + 5 * mib - 1, &end) == 0 && is_guard(end) == 1);
    CHECKF(resident(end, ps) == 0, "the guard page after a shrunk huge block is in RAM");
    memset(q, 1, 5 * mib);
    free(q);
    /* Large blocks until one lands in the segment made of that mapping. */
    uintptr_t base = (uintptr_t)q & ~(uintptr_t)(seg_size - 1);
    static void *got[200];
    int n = 0, found = 0;
    while (n < 200 && !found) {
        got[n] = malloc(200 << 10);
        found = got[n] != NULL && ((uintptr_t)got[n] & ~(uintptr_t)(seg_size - 1)) == base;
        n++;
    }
    CHECKF(found, "no segment was made of the huge mapping at %#lx", (unsigned long)base);
    if (found) {
        CHECKF(resident(base + seg_size - slice, slice) == 0,
               "segment %#lx made of a huge mapping: its guard slice is in RAM",
               (unsigned long)base);
        CHECKF(ps > slice / 4 || resident(base + slice / 2, slice / 2) == 0,
               "segment %#lx made of a huge mapping: slice 0's guard is in RAM",
               (unsigned long)base);
    }
    for (int i = 0; i < n; i++) free(got[i]);
}

/* The guard pages of the secure build: after a huge block's mapping (also
 * once a cached mapping has shrunk or grown for another block), at the end
 * of each segment (its last slice), and in slice 0 after the header and
 * page descriptors. */
TEST(guard_pages) {
    if (!secure) return;
    size_t mib = (size_t)1 << 20, seg_size = 4 * mib, slice = 64 << 10;
    void *p = malloc(8 * mib);
    check_huge_guard(p, 8 * mib);
    free(p);
    p = malloc(5 * mib); /* the cached mapping, shrunk */
    check_huge_guard(p, 5 * mib);
    free(p);
    p = malloc(20 * mib); /* grown */
    check_huge_guard(p, 20 * mib);
    free(p);
    uintptr_t q = (uintptr_t)malloc(100), seg = q & ~(uintptr_t)(seg_size - 1);
    CHECKF(is_guard(seg + seg_size - slice) == 1 && is_guard(seg + seg_size - 1) == 1,
           "segment %#lx: its last slice is not a guard", (unsigned long)seg);
    /* (With OS pages of 64 KiB, the header and descriptors fill slice 0.) */
    if (sysconf(_SC_PAGESIZE) <= (long)slice / 4)
        CHECKF(is_guard(seg + slice - 1) == 1 && is_guard(seg + slice) == 0 && is_guard(seg) == 0,
               "segment %#lx: slice 0 has no guard after its header", (unsigned long)seg);
    free((void *)q);
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
    const char *q = getenv("MCLONE_QUARANTINE_KB");
    quarantine = secure && !(q != NULL && strcmp(q, "0") == 0);
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
    RUN(guard_pages);
    /* qemu-user may let MADV_DONTNEED pass or not, depending on how a
     * mapping was made (not after mremap): residency is the host's. */
    if (getenv("TEST_EMULATED") == NULL)
        RUN(guards_hold_no_memory);
    else
        printf("# guards_hold_no_memory: not run under emulation\n");
    RUN(quarantine_is_bounded);
    RUN(quarantine_emptied_at_thread_exit);
    RUN(quarantine_emptied_by_trim);
    RUN(quarantine_emptied_when_turned_off);
    RUN(quarantine_emptied_by_trim_elsewhere);
    return check_exit_status();
}
