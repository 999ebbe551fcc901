/* fork.c: fork while other threads allocate and free.
 *
 * Three busy threads allocate, reallocate, free and trade blocks through a
 * shared table without pause while the main thread forks again and again.
 * Each child allocates blocks of every size range (and realloc, memalign,
 * calloc), checks and frees them, frees blocks that the parent's busy
 * threads had put in the shared table, starts a thread that allocates too,
 * and calls _exit(0).  (First, fork_first_threads does the same in fresh
 * processes whose threads have just started.)  A lock held by a busy
 * thread at the moment of fork and not handled in the child shows as a
 * child that never exits: the parent waits for each child with a deadline
 * (and the child has an alarm), so a deadlock is a failure, not a hang.
 *
 *   fork [-f forks] [-t busy threads] [-d deadline per child in seconds]
 *
 * Prints "ok fork" or "not ok fork" (TEST_PREFIX goes before the name). */
#define _GNU_SOURCE
#include "check.h"
#include "stress-util.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

enum { TABLE = 256, SLOTS = 256, MAX_BUSY = 16 };

static long forks = 200, busy_threads = 3, deadline = 10;
static _Atomic(void *) table[TABLE];
static atomic_int stop;
static atomic_long errors;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (atomic_fetch_add(&errors, 1) < 20) {                                                   \
            printf("# " __VA_ARGS__);                                                              \
            printf("\n");                                                                          \
            fflush(stdout);                                                                        \
        }                                                                                          \
    } while (0)

/* Mostly small: every size range is met, but the threads spend their time
 * in the allocator rather than in filling blocks. */
static size_t random_size(struct rng *r) {
    uint64_t x = rng_next(r) % 10000;
    if (x < 5) return rng_range(r, 2 * MiB + 1, 3 * MiB);
    if (x < 50) return rng_range(r, 128 * KiB, 1 * MiB);
    if (x < 400) return rng_range(r, 2 * KiB, 128 * KiB);
    return rng_range(r, 8, 2 * KiB);
}

static int block_ok(const unsigned char *p) {
    size_t size = pattern_size(p);
    return size >= 8 && size <= 8 * MiB && malloc_usable_size((void *)p) >= size &&
           pattern_check(p, size, (uintptr_t)p, size) == size;
}

/* What is wrong with a block that is not ok, for the log. */
static void describe(const char *who, const unsigned char *p) {
    size_t size = pattern_size(p);
    if (size < 8 || size > 8 * MiB || malloc_usable_size((void *)p) < size)
        FAIL("%s: block %p has a broken header (size %zu, usable %zu)", who, (const void *)p, size,
             malloc_usable_size((void *)p));
    else
        FAIL("%s: block %p of %zu bytes broken at offset %zu", who, (const void *)p, size,
             pattern_check(p, size, (uintptr_t)p, size));
}

static void *busy_main(void *arg) {
    struct rng r = {(uint64_t)(uintptr_t)arg * 7777 + 3};
    unsigned char *slots[SLOTS] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        unsigned char **s = &slots[rng_next(&r) % SLOTS];
        if (!*s) {
            size_t size = random_size(&r);
            *s = rng_next(&r) % 8 == 0 ? memalign(64, size) : malloc(size);
            if (!*s) {
                FAIL("busy thread: allocation of %zu failed", size);
                continue;
            }
            pattern_fill(*s, size);
            continue;
        }
        if (!block_ok(*s)) {
            describe("busy thread", *s);
            *s = NULL;
            continue;
        }
        uint64_t what = rng_next(&r) % 10;
        if (what < 5) {
            free(*s);
            *s = NULL;
        } else if (what < 7) {
            size_t size = pattern_size(*s), to = random_size(&r);
            unsigned char *q = realloc(*s, to);
            if (!q) {
                FAIL("busy thread: realloc to %zu failed", to);
                continue;
            }
            size_t keep = size < to ? size : to;
            if (pattern_check(q, keep, (uintptr_t)*s, size) != keep)
                FAIL("busy thread: realloc lost the contents");
            pattern_fill(q, to);
            *s = q;
        } else {
            unsigned char *old = atomic_exchange(&table[rng_next(&r) % TABLE], *s);
            *s = old;
        }
    }
    for (int i = 0; i < SLOTS; i++) free(slots[i]);
    return NULL;
}

/* ---- In the child --------------------------------------------------------- */

static void *child_thread(void *arg) {
    (void)arg;
    void *p[64];
    for (int i = 0; i < 64; i++) p[i] = malloc((size_t)i * 100 + 8);
    for (int i = 0; i < 64; i++) free(p[i]);
    return (void *)1;
}

/* Returns the number of problems seen; the child exits with it. */
static int child_work(unsigned seed) {
    struct rng r = {seed};
    int bad = 0;
    unsigned char *p[40];
    for (int i = 0; i < 40; i++) {
        size_t size = i < 1 ? rng_range(&r, 2 * MiB + 1, 3 * MiB) : random_size(&r);
        switch (i % 4) {
        case 0:
            p[i] = malloc(size);
            break;
        case 1:
            p[i] = calloc(1, size);
            break;
        case 2:
            p[i] = memalign(4096, size);
            break;
        default:
            p[i] = realloc(malloc(16), size);
            break;
        }
        if (!p[i]) {
            bad++;
            continue;
        }
        pattern_fill(p[i], size);
    }
    for (int i = 0; i < 40; i++) {
        if (!p[i]) continue;
        if (!block_ok(p[i])) bad++;
        free(p[i]);
    }
    /* The parent's threads do not exist here; free some of their blocks. */
    for (int i = 0; i < 32; i++) {
        unsigned char *b = atomic_exchange(&table[rng_next(&r) % TABLE], NULL);
        if (!b) continue;
        if (!block_ok(b)) bad++;
        free(b);
    }
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, &ret) != 0 || !ret)
        bad++;
    return bad;
}

/* ---- In the parent -------------------------------------------------------- */

/* Waits for pid until the deadline; kills it when the deadline passes.
 * Returns its wait status, or -1 after killing it. */
static int wait_with_deadline(pid_t pid, double seconds) {
    double end = now_seconds() + seconds;
    int status;
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) return status;
        if (got < 0 && errno != EINTR) return -2;
        if (now_seconds() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

/* Forks child i, which runs child_work, and waits for it (the parent
 * allocates meanwhile).  Counts a child that hung or failed, and logs the
 * first few. */
static void fork_one(long i, struct rng *r, int *hung, int *failed) {
    void *mine = malloc(rng_range(r, 8, 100000));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm((unsigned)deadline + 5);
        _exit(child_work((unsigned)i + 1) ? 1 : 0);
    }
    free(mine);
    if (pid < 0) {
        FAIL("fork failed: errno %d", errno);
        return;
    }
    int status = wait_with_deadline(pid, (double)deadline);
    if (status == -1) {
        if ((*hung)++ < 5) printf("# child %ld did not exit within %ld s\n", i, deadline);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if ((*failed)++ < 5)
            printf("# child %ld: %s %d\n", i, WIFSIGNALED(status) ? "signal" : "exit status",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
}

/* ---- The first threads -------------------------------------------------------
 * The fork handlers are registered by the first lock taken once the process
 * has a second thread (src/os.c, "fork"), so this runs first, while the
 * test's process has one thread: each round is a fresh child of it, which
 * starts two busy threads and forks at once, ten times, while they take
 * their first locks.  Its children must not hang either. */
static int first_threads_round(long round) {
    enum { BUSY = 2, FORKS = 10 };
    pthread_t busy[BUSY];
    for (int i = 0; i < BUSY; i++)
        if (pthread_create(&busy[i], NULL, busy_main, (void *)(uintptr_t)(round * BUSY + i)) != 0)
            return 1;
    struct rng r = {(uint64_t)round};
    int hung = 0, failed = 0;
    for (long i = 0; i < FORKS; i++) fork_one(round * FORKS + i, &r, &hung, &failed);
    atomic_store(&stop, 1);
    for (int i = 0; i < BUSY; i++) pthread_join(busy[i], NULL);
    return hung + failed + (atomic_load(&errors) != 0);
}

TEST(fork_first_threads) {
    long rounds = forks / 10 < 1 ? 1 : forks / 10;
    int bad = 0;
    for (long i = 0; i < rounds; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm((unsigned)(6 * deadline + 5));
            _exit(first_threads_round(i + 1) ? 1 : 0);
        }
        CHECKF(pid > 0, "fork failed: errno %d", errno);
        if (pid < 0) break;
        int status = wait_with_deadline(pid, 6.0 * (double)deadline);
        if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
        if (bad++ < 5)
            printf("# round %ld: %s\n", i, status == -1 ? "did not exit in time" : "failed");
    }
    CHECKF(bad == 0, "%d of %ld rounds failed", bad, rounds);
}

TEST(fork) {
    pthread_t busy[MAX_BUSY];
    for (long i = 0; i < busy_threads; i++)
        CHECK(pthread_create(&busy[i], NULL, busy_main, (void *)(uintptr_t)i) == 0);
    double start = now_seconds();
    int hung = 0, failed = 0;
    struct rng r = {99};
    for (long i = 0; i < forks; i++) fork_one(i, &r, &hung, &failed);
    atomic_store(&stop, 1);
    for (long i = 0; i < busy_threads; i++) pthread_join(busy[i], NULL);
    for (int i = 0; i < TABLE; i++) {
        unsigned char *b = atomic_exchange(&table[i], NULL);
        if (b && !block_ok(b)) describe("table at the end", b);
        free(b);
    }
    printf("# %ld forks with %ld busy threads: %.2f s\n", forks, busy_threads,
           now_seconds() - start);
    CHECKF(hung == 0, "%d of %ld children deadlocked (killed after %ld s)", hung, forks, deadline);
    CHECKF(failed == 0, "%d of %ld children failed", failed, forks);
    CHECKF(atomic_load(&errors) == 0, "%ld errors in the parent", atomic_load(&errors));
}

int main(int argc, char **argv) {
    long values[] = {forks, busy_threads, deadline};
    if (parse_options(argc, argv, "ftd", values) != 0) return 2;
    forks = values[0];
    busy_threads = values[1] < 0 ? 0 : values[1] > MAX_BUSY ? MAX_BUSY : values[1];
    deadline = values[2] < 1 ? 1 : values[2];
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    if (check_allocator() != 0) {
        printf("not ok %sallocator_under_test\n", check_prefix);
        return 1;
    }
    RUN(fork_first_threads);
    RUN(fork);
    return check_exit_status();
}
