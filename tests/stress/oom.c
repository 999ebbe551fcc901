/* oom.c: running out of address space.
 *
 * Each case runs in a child process that limits its address space
 * (RLIMIT_AS) to its current size plus a headroom (256 MiB unless -m says
 * otherwise), then allocates blocks of one kind until the allocator says no.
 * Every refusal must be NULL with errno ENOMEM (posix_memalign: ENOMEM
 * returned, out pointer untouched), never a crash or an abort.  At the limit
 * a few more requests of every kind must either work or fail the same way, a
 * failed realloc must leave its block intact, and once everything is freed
 * allocating must work again.  One case has two threads run out at once;
 * another four threads of different block sizes, which free each other's
 * blocks at the limit, run out again, and exit with live blocks, while one
 * more thread starts at the limit.
 *
 * A child reports with write(2) only: at the limit, stdio may not get the
 * memory it wants.
 *
 *   oom [-m headroom in MiB]
 *
 * Prints one "ok <case>" / "not ok <case>" line per case (TEST_PREFIX goes
 * before the names). */
#define _GNU_SOURCE
#include "check.h"
#include "stress-util.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/wait.h>

static size_t headroom = 256 * MiB;

/* printf for a child at its memory limit: formats on the stack, writes. */
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

static size_t vm_size(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    const char *at = strstr(buf, "VmSize:");
    return at ? (size_t)strtoul(at + 7, NULL, 10) * KiB : 0;
}

static int limit_address_space(void) {
    size_t now = vm_size();
    struct rlimit rl = {now + headroom, now + headroom};
    if (now == 0 || setrlimit(RLIMIT_AS, &rl) != 0) {
        say("# cannot limit the address space (VmSize %zu)", now);
        return -1;
    }
    return 0;
}

enum kind { MALLOC, CALLOC, MEMALIGN, POSIX_MEMALIGN, ALIGNED_ALLOC, REALLOC_NULL };
static const char *const kind_name[] = {"malloc",         "calloc",        "memalign",
                                        "posix_memalign", "aligned_alloc", "realloc(NULL)"};

struct fill {
    enum kind kind;
    size_t size, alignment;
};

/* Blocks are chained through their first word; the rest is one tag byte. */
struct chain {
    void *head;
    size_t count;
};

static void *sentinel(void *out) {
    return (char *)out + 1;
}

/* One allocation of the kind; a refusal is checked here.  Returns the block
 * or NULL; *errors counts broken rules. */
static void *allocate(const struct fill *f, size_t size, int *errors) {
    void *p = NULL, *out = sentinel(&out);
    int rc = 0;
    errno = 0;
    switch (f->kind) {
    case MALLOC:
        p = malloc(size);
        break;
    case CALLOC:
        p = calloc(1, size);
        break;
    case MEMALIGN:
        p = memalign(f->alignment, size);
        break;
    case ALIGNED_ALLOC:
        p = aligned_alloc(f->alignment, size);
        break;
    case REALLOC_NULL:
        p = realloc(NULL, size);
        break;
    case POSIX_MEMALIGN:
        rc = posix_memalign(&out, f->alignment, size);
        if (rc == 0) return out;
        if (rc != ENOMEM || out != sentinel(&out)) {
            say("# posix_memalign(%zu, %zu) = %d (want ENOMEM), out %s", f->alignment, size, rc,
                out == sentinel(&out) ? "untouched" : "changed");
            ++*errors;
        }
        return NULL;
    }
    if (!p && errno != ENOMEM) {
        say("# %s(%zu) = NULL with errno %d, not ENOMEM", kind_name[f->kind], size, errno);
        ++*errors;
    }
    if (p && f->alignment && (uintptr_t)p % f->alignment != 0) {
        say("# %s(%zu) = %p: not %zu-aligned", kind_name[f->kind], size, p, f->alignment);
        ++*errors;
    }
    if (p && f->kind == CALLOC) {
        const unsigned char *b = p;
        for (size_t i = 0; i < size; i++)
            if (b[i]) {
                say("# calloc(%zu) = %p: byte %zu is %d", size, p, i, b[i]);
                ++*errors;
                break;
            }
    }
    return p;
}

static unsigned char tag_of(size_t index) {
    return (unsigned char)(index * 29 + 7);
}

static void chain_push(struct chain *c, void *p, size_t size) {
    memset(p, tag_of(c->count), size);
    memcpy(p, &c->head, sizeof c->head);
    c->head = p;
    c->count++;
}

/* Frees the first n blocks of the chain (the newest), checking each
 * block's last byte. */
static void chain_free_some(struct chain *c, size_t size, size_t n, int *errors) {
    while (c->head && n-- > 0) {
        unsigned char *p = c->head;
        size_t index = --c->count;
        if (p[size - 1] != tag_of(index)) {
            if (*errors < 100) say("# block %zu at %p of %zu bytes overwritten", index, p, size);
            ++*errors;
        }
        memcpy(&c->head, p, sizeof c->head);
        free(p);
    }
}

/* Frees the chain, checking each block's last byte. */
static void chain_free(struct chain *c, size_t size, int *errors) {
    chain_free_some(c, size, c->count, errors);
    c->count = 0;
}

/* Allocates until the first refusal.  Returns 0 if it came. */
static int fill_until_refused(const struct fill *f, struct chain *c, int *errors) {
    size_t cap = (2 * headroom + 64 * MiB) / f->size + 16;
    while (c->count < cap) {
        void *p = allocate(f, f->size, errors);
        if (!p) return 0;
        chain_push(c, p, f->size);
    }
    say("# %s(%zu): %zu blocks and no refusal: is the limit in force?", kind_name[f->kind], f->size,
        c->count);
    ++*errors;
    return -1;
}

/* Requests of every kind at the limit: each works or is refused properly. */
static void probe_at_limit(int *errors) {
    static const struct fill probes[] = {
        {MALLOC, 16, 0},
        {MALLOC, 1000, 0},
        {MALLOC, 20000, 0},
        {MALLOC, 500000, 0},
        {MALLOC, 3 * MiB, 0},
        {MALLOC, 64 * MiB, 0},
        {CALLOC, 100000, 0},
        {MEMALIGN, 5000, 4096},
        {POSIX_MEMALIGN, 100000, 64},
        {ALIGNED_ALLOC, 3 * MiB, 2 * MiB},
        {REALLOC_NULL, 300, 0},
    };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        void *p = allocate(&probes[i], probes[i].size, errors);
        if (p) memset(p, 1, probes[i].size);
        free(p);
    }
}

/* Grows a block at the limit: either it works and keeps its contents, or
 * it fails with ENOMEM and the block is as it was. */
static unsigned char *grow_at_limit(unsigned char *p, size_t *size, size_t to, int *errors) {
    pattern_fill(p, *size);
    errno = 0;
    unsigned char *q = realloc(p, to);
    if (!q) {
        if (errno != ENOMEM) {
            say("# realloc(%zu -> %zu) = NULL with errno %d", *size, to, errno);
            ++*errors;
        }
        if (pattern_check(p, *size, (uintptr_t)p, *size) != *size) {
            say("# failed realloc(%zu -> %zu) changed the block", *size, to);
            ++*errors;
        }
        return p;
    }
    if (pattern_check(q, *size, (uintptr_t)p, *size) != *size) {
        say("# realloc(%zu -> %zu) at the limit lost the contents", *size, to);
        ++*errors;
    }
    *size = to;
    return q;
}

static int exhaust(const struct fill *f) {
    int errors = 0;
    unsigned char *keep = malloc(100);
    size_t keep_size = 100;
    if (!keep || limit_address_space() != 0) return 1;
    struct chain c = {NULL, 0};
    fill_until_refused(f, &c, &errors);
    size_t first_count = c.count;
    /* More of the same, refused again (or, after all, given). */
    for (int i = 0; i < 3; i++) {
        void *p = allocate(f, f->size, &errors);
        if (p) chain_push(&c, p, f->size);
    }
    probe_at_limit(&errors);
    const size_t targets[] = {64 * KiB, MiB, 8 * MiB, 64 * MiB, 512 * MiB};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        keep = grow_at_limit(keep, &keep_size, targets[i], &errors);
    free(keep);
    chain_free(&c, f->size, &errors);
    /* Everything is back: half as many blocks again must be no problem. */
    size_t again = first_count / 2;
    for (size_t i = 0; i < again; i++) {
        void *p = allocate(f, f->size, &errors);
        if (!p) {
            say("# after freeing everything, %s(%zu) refused at block %zu of %zu",
                kind_name[f->kind], f->size, i, again);
            errors++;
            break;
        }
        chain_push(&c, p, f->size);
    }
    chain_free(&c, f->size, &errors);
    say("# %s(%zu): refused after %zu blocks (%zu MiB); %d problems", kind_name[f->kind], f->size,
        first_count, first_count * f->size >> 20, errors);
    return errors;
}

/* The realloc case grows one block a few hundred times: its pattern depends
 * on the offset alone, so that only the new part is written each time. */
static unsigned char byte_at(size_t i) {
    return (unsigned char)(i * 131 + (i >> 12));
}

static void fill_range(unsigned char *p, size_t from, size_t to) {
    for (size_t i = from; i < to; i++) p[i] = byte_at(i);
}

static int range_ok(const unsigned char *p, size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        if (p[i] != byte_at(i)) return 0;
    return 1;
}

/* All of a block that moved, both ends of one grown in place. */
static int kept(const unsigned char *old, const unsigned char *now, size_t size) {
    if (old != now || size <= 128 * KiB) return range_ok(now, 0, size);
    return range_ok(now, 0, 64 * KiB) && range_ok(now, size - 64 * KiB, size);
}

/* A huge block doubled, then grown step by step, until realloc says no. */
static int realloc_until_refused(void) {
    int errors = 0;
    size_t size = MiB;
    unsigned char *p = malloc(size);
    if (!p || limit_address_space() != 0) return 1;
    fill_range(p, 0, size);
    size_t steps[] = {0, 8 * MiB, MiB, 64 * KiB};
    int grown = 0;
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        for (int guard = 0; guard < 100000; guard++) {
            size_t to = steps[s] ? size + steps[s] : size * 2;
            errno = 0;
            unsigned char *q = realloc(p, to);
            if (!q) {
                if (errno != ENOMEM) {
                    say("# realloc(%zu -> %zu) = NULL with errno %d", size, to, errno);
                    errors++;
                }
                if (!range_ok(p, 0, size)) {
                    say("# failed realloc(%zu -> %zu) changed the block", size, to);
                    errors++;
                }
                break;
            }
            if (!kept(p, q, size)) {
                say("# realloc(%zu -> %zu) lost the contents", size, to);
                errors++;
            }
            p = q;
            fill_range(p, size, to);
            size = to;
            grown++;
        }
    }
    say("# realloc grew a block to %zu MiB in %d steps", size >> 20, grown);
    /* Shrinking: works, or is refused like any other realloc. */
    errno = 0;
    unsigned char *q = realloc(p, MiB);
    if (q && !range_ok(q, 0, MiB)) {
        say("# shrinking the block at the limit lost the contents");
        errors++;
    }
    if (!q && (errno != ENOMEM || !range_ok(p, 0, size))) {
        say("# shrinking the block at the limit failed with errno %d", errno);
        errors++;
    }
    free(q ? q : p);
    void *again = malloc(headroom / 2);
    if (!again) {
        say("# after freeing the block, malloc(%zu MiB) refused", headroom / 2 >> 20);
        errors++;
    }
    free(again);
    return errors;
}

/* ---- Two threads at once ------------------------------------------------- */

struct racer {
    struct fill f;
    struct chain c;
    pthread_barrier_t *start;
    int errors;
};

static void *racer_main(void *arg) {
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    fill_until_refused(&r->f, &r->c, &r->errors);
    probe_at_limit(&r->errors);
    return NULL;
}

static int two_threads(void) {
    int errors = 0;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 3);
    struct racer r[2] = {
        {{MALLOC, 128, 0}, {NULL, 0}, &start, 0},
        {{MALLOC, 512 * KiB, 0}, {NULL, 0}, &start, 0},
    };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, racer_main, &r[i]) != 0) return 1;
    if (limit_address_space() != 0) return 1;
    pthread_barrier_wait(&start);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    size_t counts[2] = {r[0].c.count, r[1].c.count};
    /* The main thread frees both chains: frees from another thread. */
    for (int i = 0; i < 2; i++) {
        chain_free(&r[i].c, r[i].f.size, &errors);
        errors += r[i].errors;
    }
    for (int i = 0; i < 2; i++) {
        struct chain c = {NULL, 0};
        for (size_t k = 0; k < counts[i] / 2; k++) {
            void *p = allocate(&r[i].f, r[i].f.size, &errors);
            if (!p) {
                say("# after freeing everything, malloc(%zu) refused", r[i].f.size);
                errors++;
                break;
            }
            chain_push(&c, p, r[i].f.size);
        }
        chain_free(&c, r[i].f.size, &errors);
    }
    say("# two threads: refused after %zu blocks of 128 B and %zu of 512 KiB; %d problems",
        counts[0], counts[1], errors);
    return errors;
}

/* ---- Four threads, mixed sizes, frees across threads ------------------------
 * Four threads (64 B, 4 KiB, 300 KiB and 3 MiB blocks) run out together.
 * At the limit, each frees half of its neighbour's blocks (frees from
 * another thread) and tries again; the main thread starts one more thread
 * (which may be refused: its stack needs address space too) that runs out
 * as well; every thread exits with its remaining blocks live, and the main
 * thread frees them.  Afterwards, half as many blocks of each kind again
 * must be no problem. */
struct mixer {
    struct fill f;
    struct chain c;
    pthread_barrier_t *full, *freed;
    struct mixer *neighbour;
    size_t first_count, second_count;
    int errors;
};

static void *mixer_main(void *arg) {
    struct mixer *m = arg;
    fill_until_refused(&m->f, &m->c, &m->errors);
    m->first_count = m->c.count;
    probe_at_limit(&m->errors);
    pthread_barrier_wait(m->full);
    /* The neighbour no longer touches its chain until the next barrier. */
    struct chain *theirs = &m->neighbour->c;
    chain_free_some(theirs, m->neighbour->f.size, theirs->count / 2, &m->errors);
    pthread_barrier_wait(m->freed);
    size_t before = m->c.count;
    fill_until_refused(&m->f, &m->c, &m->errors);
    m->second_count = m->c.count - before;
    probe_at_limit(&m->errors);
    return NULL; /* exits with its blocks live */
}

static void *late_main(void *arg) {
    struct racer *r = arg;
    fill_until_refused(&r->f, &r->c, &r->errors);
    probe_at_limit(&r->errors);
    return NULL;
}

static int mixed_threads(void) {
    enum { N = 4 };
    int errors = 0;
    pthread_barrier_t full, freed;
    pthread_barrier_init(&full, NULL, N);
    pthread_barrier_init(&freed, NULL, N);
    static struct mixer m[N];
    static const size_t sizes[N] = {64, 4 * KiB, 300 * KiB, 3 * MiB};
    for (int i = 0; i < N; i++) {
        m[i] = (struct mixer){{MALLOC, sizes[i], 0}, {NULL, 0}, &full, &freed,
                              &m[(i + 1) % N],       0,         0,     0};
    }
    if (limit_address_space() != 0) return 1;
    pthread_t t[N];
    int started = 0;
    for (; started < N; started++)
        if (pthread_create(&t[started], NULL, mixer_main, &m[started]) != 0) break;
    if (started < N) {
        /* Thread stacks did not fit: the barriers would wait for ever. */
        say("# only %d of %d threads could start under the limit", started, N);
        _exit(1);
    }
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    /* One more thread, started at the limit. */
    struct racer late = {{CALLOC, 2000, 0}, {NULL, 0}, NULL, 0};
    pthread_t lt;
    int late_started = pthread_create(&lt, NULL, late_main, &late) == 0;
    if (late_started) pthread_join(lt, NULL);
    say("# mixed threads: refused after %zu + %zu blocks of 64 B, %zu + %zu of 4 KiB, %zu + %zu "
        "of 300 KiB, %zu + %zu of 3 MiB; late thread %s (%zu blocks)",
        m[0].first_count, m[0].second_count, m[1].first_count, m[1].second_count, m[2].first_count,
        m[2].second_count, m[3].first_count, m[3].second_count,
        late_started ? "ran" : "could not start", late.c.count);
    /* The main thread frees everything the exited threads left. */
    for (int i = 0; i < N; i++) {
        chain_free(&m[i].c, m[i].f.size, &errors);
        errors += m[i].errors;
    }
    chain_free(&late.c, late.f.size, &errors);
    errors += late.errors;
    for (int i = 0; i < N; i++) {
        struct chain c = {NULL, 0};
        for (size_t k = 0; k < m[i].first_count / 2; k++) {
            void *p = allocate(&m[i].f, m[i].f.size, &errors);
            if (!p) {
                say("# after freeing everything, malloc(%zu) refused at block %zu of %zu",
                    m[i].f.size, k, m[i].first_count / 2);
                errors++;
                break;
            }
            chain_push(&c, p, m[i].f.size);
        }
        chain_free(&c, m[i].f.size, &errors);
    }
    say("# mixed threads: %d problems", errors);
    return errors;
}

/* ---- Running a case in a child -------------------------------------------- */

static int run_case(int (*fn)(const void *), const void *arg) {
    fflush(stdout);
    double start = now_seconds();
    pid_t pid = fork();
    if (pid == 0) {
        alarm(100);
        _exit(fn(arg) ? 1 : 0);
    }
    if (pid < 0) return -1;
    int status;
    if (waitpid(pid, &status, 0) != pid) return -1;
    printf("# %.2f s\n", now_seconds() - start);
    if (WIFSIGNALED(status)) printf("# the child died of signal %d\n", WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int exhaust_case(const void *arg) {
    return exhaust(arg);
}
static int realloc_case(const void *arg) {
    (void)arg;
    return realloc_until_refused();
}
static int threads_case(const void *arg) {
    (void)arg;
    return two_threads();
}
static int mixed_case(const void *arg) {
    (void)arg;
    return mixed_threads();
}

#define EXHAUST_TEST(name, kind, size, alignment)                                                  \
    TEST(name) {                                                                                   \
        static const struct fill f = {kind, size, alignment};                                      \
        CHECK(run_case(exhaust_case, &f) == 0);                                                    \
    }

EXHAUST_TEST(oom_malloc_small, MALLOC, 64, 0)
EXHAUST_TEST(oom_malloc_medium, MALLOC, 16 * KiB, 0)
EXHAUST_TEST(oom_malloc_large, MALLOC, 1 * MiB, 0)
EXHAUST_TEST(oom_malloc_huge, MALLOC, 8 * MiB, 0)
EXHAUST_TEST(oom_malloc_huge_3mib, MALLOC, 3 * MiB, 0)
EXHAUST_TEST(oom_calloc, CALLOC, 64 * KiB, 0)
EXHAUST_TEST(oom_realloc_null, REALLOC_NULL, 700, 0)
EXHAUST_TEST(oom_memalign, MEMALIGN, 3000, 256)
EXHAUST_TEST(oom_posix_memalign, POSIX_MEMALIGN, 20000, 4096)
EXHAUST_TEST(oom_aligned_alloc_huge, ALIGNED_ALLOC, 3 * MiB, 2 * MiB)

TEST(oom_realloc) {
    CHECK(run_case(realloc_case, NULL) == 0);
}
TEST(oom_two_threads) {
    CHECK(run_case(threads_case, NULL) == 0);
}
TEST(oom_mixed_threads) {
    CHECK(run_case(mixed_case, NULL) == 0);
}

int main(int argc, char **argv) {
    long values[] = {(long)(headroom / MiB)};
    if (parse_options(argc, argv, "m", values) != 0) return 2;
    if (values[0] > 0) headroom = (size_t)values[0] * MiB;
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    if (check_allocator() != 0) {
        printf("not ok %sallocator_under_test\n", check_prefix);
        return 1;
    }
    RUN(oom_malloc_small);
    RUN(oom_malloc_medium);
    RUN(oom_malloc_large);
    RUN(oom_malloc_huge);
    RUN(oom_malloc_huge_3mib);
    RUN(oom_calloc);
    RUN(oom_realloc_null);
    RUN(oom_memalign);
    RUN(oom_posix_memalign);
    RUN(oom_aligned_alloc_huge);
    RUN(oom_realloc);
    RUN(oom_two_threads);
    RUN(oom_mixed_threads);
    return check_exit_status();
}
