/* test-mc-api.c: libmclone under its own names, and what only libmclone
 * promises under the standard ones.
 *
 * Linked against build/libmclone.so (another flavour comes in through
 * LD_LIBRARY_PATH).  Covers the mc_ allocation API and its errno rules,
 * blocks passing between the mc_ and the standard names, options (set at run
 * time and read from the environment), statistics, the heap map, trimming,
 * the heap check after a mixed workload, and the glibc administrative calls
 * (mallinfo2, mallinfo, malloc_stats, malloc_trim, mallopt) as libmclone
 * answers them.
 *
 * TEST_EXPECT_LIB=<substring> (default "libmclone") is the library every
 * exported name must come from; TEST_PREFIX=<text> goes before each test
 * name.  Run as "test-mc-api options" or "test-mc-api noop" it is the child
 * that some tests start with a chosen environment. */
#define _GNU_SOURCE
#include "check.h"
#include "mclone.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define KiB          ((size_t)1 << 10)
#define MiB          ((size_t)1 << 20)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

extern char **environ;

static const char *expect_lib = "libmclone";

static size_t opaque(size_t n) {
    volatile size_t v = n;
    return v;
}

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

static int intact(const void *p, size_t n, unsigned seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(i, seed)) return 0;
    return 1;
}

static int all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++) acc |= b[i];
    return acc == 0;
}

static size_t rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static uint64_t rng_state = 0x2545f4914f6cdd1du;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

/* Everything written to fd by fn(fd), read back from an in-memory file.
 * Returns a malloc'd, NUL-terminated string (its length in *len). */
static char *capture(void (*fn)(int fd), size_t *len) {
    *len = 0;
    int fd = memfd_create("test-mc-api", 0);
    if (fd < 0) return NULL;
    fn(fd);
    off_t end = lseek(fd, 0, SEEK_END);
    char *text = malloc((size_t)(end > 0 ? end : 0) + 1);
    if (text && end > 0 && pread(fd, text, (size_t)end, 0) == end) *len = (size_t)end;
    if (text) text[*len] = '\0';
    close(fd);
    return text;
}

/* The same through a pipe, for a short report (it must fit in the pipe). */
static char *capture_pipe(void (*fn)(int fd), size_t *len) {
    static char text[65536];
    int fds[2];
    *len = 0;
    if (pipe(fds) != 0) return NULL;
    fn(fds[1]);
    close(fds[1]);
    ssize_t r;
    while (*len < sizeof text - 1 && (r = read(fds[0], text + *len, sizeof text - 1 - *len)) > 0)
        *len += (size_t)r;
    close(fds[0]);
    text[*len] = '\0';
    return text;
}

static int printable_text(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\n' && c != '\t' && (c < 32 || c > 126)) return 0;
    }
    return 1;
}

/* A line of a heap map with a '#' (a metadata slice) that is not a comment
 * or legend line (those start with '#'). */
static int segment_row(const char *map) {
    while (*map) {
        size_t len = strcspn(map, "\n");
        const char *first = map + strspn(map, " \t");
        if (memchr(map, '#', len) && *first != '#') return 1;
        map += len + (map[len] == '\n');
    }
    return 0;
}

/* Runs this program again as "test-mc-api <mode>" with extra environment
 * entries; what it writes to fd (1 or 2) goes into buf.  Returns the wait
 * status, or -1. */
static int run_self(const char *mode, const char *const *extra_env, int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (environ[n]) n++;
    size_t extra = 0;
    while (extra_env[extra]) extra++;
    char **env = calloc(n + extra + 1, sizeof *env);
    if (!env) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        /* Leave out the options the caller sets, and the statistics report. */
        if (strncmp(environ[i], "MCLONE_", 7) == 0) continue;
        env[k++] = environ[i];
    }
    for (size_t i = 0; i < extra; i++) env[k++] = (char *)extra_env[i];
    env[k] = NULL;
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    int pipefd[2];
    if (sl <= 0 || pipe(pipefd) != 0) {
        free(env);
        return -1;
    }
    self[sl] = '\0';
    /* TEST_EXEC_WRAPPER, words separated by spaces, goes in front: the
     * aarch64 suite runs this program under an emulator ("qemu-aarch64 -L
     * /usr/aarch64-linux-gnu"), which must start the copy as well. */
    char wrapper[512] = "", *argv[16];
    size_t a = 0;
    const char *w = getenv("TEST_EXEC_WRAPPER");
    if (w != NULL && strlen(w) < sizeof wrapper) strcpy(wrapper, w);
    for (char *save = NULL, *word = strtok_r(wrapper, " ", &save); word != NULL && a < 13;
         word = strtok_r(NULL, " ", &save))
        argv[a++] = word;
    argv[a++] = self;
    argv[a++] = (char *)mode;
    argv[a] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], fd);
        close(pipefd[0]);
        close(pipefd[1]);
        execvpe(argv[0], argv, env);
        _exit(127);
    }
    close(pipefd[1]);
    size_t got = 0;
    ssize_t r;
    while ((r = read(pipefd[0], buf + got, cap - 1 - got)) > 0) got += (size_t)r;
    buf[got] = '\0';
    close(pipefd[0]);
    int status = -1;
    if (pid > 0) waitpid(pid, &status, 0);
    free(env);
    return status;
}

/* ---- Every name comes from libmclone ------------------------------------ */

static const char *const exported[] = {
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "free_sized",
    "free_aligned_sized",
    "cfree",
    "malloc_trim",
    "mallinfo2",
    "mallinfo",
    "malloc_stats",
    "mallopt",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_free",
    "__libc_memalign",
    "__libc_valloc",
    "__libc_pvalloc",
    "mc_malloc",
    "mc_calloc",
    "mc_realloc",
    "mc_reallocarray",
    "mc_free",
    "mc_free_sized",
    "mc_free_aligned_sized",
    "mc_posix_memalign",
    "mc_aligned_alloc",
    "mc_memalign",
    "mc_valloc",
    "mc_pvalloc",
    "mc_usable_size",
    "mc_trim",
    "mc_collect",
    "mc_option_get",
    "mc_option_set",
    "mc_stats_get",
    "mc_stats_print",
    "mc_heap_map",
    "mc_heap_check",
    "mc_version",
};

static int from_expected_lib(const char *name) {
    void *sym = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    if (!sym || !dladdr(sym, &info) || !info.dli_fname) {
        printf("# %s: not found\n", name);
        return 0;
    }
    if (!strstr(info.dli_fname, expect_lib)) {
        printf("# %s comes from %s\n", name, info.dli_fname);
        return 0;
    }
    return 1;
}

TEST(names_exported) {
    for (size_t i = 0; i < ARRAY_LEN(exported); i++)
        CHECKF(from_expected_lib(exported[i]), "%s is not libmclone's (%s)", exported[i],
               expect_lib);
    Dl_info info;
    if (dladdr(dlsym(RTLD_DEFAULT, "malloc"), &info)) printf("# library: %s\n", info.dli_fname);
    CHECK(mc_version() == MCLONE_VERSION_MAJOR * 100 + MCLONE_VERSION_MINOR);
}

/* ---- The mc_ allocation API --------------------------------------------- */

TEST(mc_basic_semantics) {
    void *z[16];
    for (int i = 0; i < 16; i++) {
        z[i] = mc_malloc(opaque(0));
        CHECK(z[i] != NULL);
        for (int j = 0; j < i; j++) CHECK(z[i] != z[j]);
    }
    for (int i = 0; i < 16; i++) mc_free(z[i]);
    const size_t sizes[] = {1,   16,          100,     1024, 1025, 100 * KiB, 128 * KiB + 1,
                            MiB, 2 * MiB + 1, 40 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned char *p = mc_malloc(n);
        CHECKF(p && (n < 16 || is_aligned(p, 16)), "mc_malloc(%zu) = %p", n, (void *)p);
        if (!p) continue;
        CHECK(mc_usable_size(p) >= n && mc_usable_size(p) == malloc_usable_size(p));
        fill(p, n, (unsigned)i);
        unsigned char *q = mc_realloc(p, n * 2 + 1);
        CHECK(q && intact(q, n, (unsigned)i));
        if (q) p = q;
        q = mc_realloc(p, n / 2 + 1);
        CHECK(q && intact(q, n / 2 + 1, (unsigned)i));
        if (q) p = q;
        errno = 777;
        mc_free(p);
        CHECK(errno == 777);
        void *c = mc_calloc(n, 1);
        CHECK(c && all_zero(c, n));
        mc_free_sized(c, n);
        void *a = mc_aligned_alloc(4096, n);
        CHECK(a && is_aligned(a, 4096));
        errno = 777;
        mc_free_aligned_sized(a, 4096, n);
        CHECK(errno == 777);
    }
    CHECK(mc_usable_size(NULL) == 0);
    void *r = mc_realloc(NULL, 100);
    CHECK(r != NULL);
    CHECK(mc_realloc(r, opaque(0)) == NULL);
    r = mc_reallocarray(NULL, opaque(10), 10);
    CHECK(r != NULL);
    mc_free(r);
    mc_free(NULL);
    mc_free_sized(NULL, 0);
}

TEST(mc_errors) {
    const size_t big[] = {(size_t)PTRDIFF_MAX + 1, SIZE_MAX, (size_t)1 << 47};
    for (size_t i = 0; i < ARRAY_LEN(big); i++) {
        size_t n = opaque(big[i]);
        errno = 0;
        CHECK(mc_malloc(n) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(mc_calloc(1, n) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(mc_memalign(64, n) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(mc_aligned_alloc(64, n) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(mc_valloc(n) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(mc_pvalloc(n) == NULL && errno == ENOMEM);
        void *out = (void *)&out;
        CHECK(mc_posix_memalign(&out, 64, n) == ENOMEM && out == (void *)&out);
        unsigned char *p = mc_malloc(1000);
        CHECK(p != NULL);
        if (!p) continue;
        fill(p, 1000, 3);
        errno = 0;
        CHECK(mc_realloc(launder(p), n) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(mc_reallocarray(launder(p), n, 1) == NULL && errno == ENOMEM);
        CHECK(intact(p, 1000, 3));
        mc_free(p);
    }
    errno = 0;
    CHECK(mc_calloc(opaque(SIZE_MAX / 2 + 1), 2) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(mc_reallocarray(NULL, opaque(SIZE_MAX / 2 + 1), 2) == NULL && errno == ENOMEM);
    const size_t bad_alignments[] = {0, 1, 4, 24, 48, 3 * MiB, SIZE_MAX};
    for (size_t i = 0; i < ARRAY_LEN(bad_alignments); i++) {
        void *out = (void *)&out;
        CHECKF(mc_posix_memalign(&out, opaque(bad_alignments[i]), 10) == EINVAL &&
                   out == (void *)&out,
               "mc_posix_memalign(%zu)", bad_alignments[i]);
    }
    const size_t not_pow2[] = {3, 24, 48, 100, 3 * MiB, SIZE_MAX};
    for (size_t i = 0; i < ARRAY_LEN(not_pow2); i++) {
        errno = 0;
        void *p = mc_aligned_alloc(opaque(not_pow2[i]), 96);
        CHECKF(!p && errno == EINVAL, "mc_aligned_alloc(%zu) = %p, errno %d", not_pow2[i], p,
               errno);
        errno = 0;
        p = aligned_alloc(opaque(not_pow2[i]), 96);
        CHECKF(!p && errno == EINVAL, "aligned_alloc(%zu) = %p, errno %d", not_pow2[i], p, errno);
    }
    void *m = mc_memalign(opaque(48), 100);
    CHECK(m && is_aligned(m, 64));
    mc_free(m);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *v = mc_valloc(1);
    CHECK(v && is_aligned(v, page));
    mc_free(v);
    v = mc_pvalloc(page + 1);
    CHECK(v && is_aligned(v, page) && mc_usable_size(v) >= 2 * page);
    mc_free(v);
    void *out = NULL;
    CHECK(mc_posix_memalign(&out, (size_t)1 << 30, 3 * MiB) == 0 &&
          is_aligned(out, (size_t)1 << 30));
    mc_free(out);
}

/* The mc_ and the standard names are one allocator: blocks go either way. */
TEST(mc_and_standard_names_mix) {
    const size_t sizes[] = {8, 500, 20 * KiB, 300 * KiB, 3 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned char *a = malloc(n);
        unsigned char *b = mc_malloc(n);
        CHECK(a && b);
        if (!a || !b) continue;
        CHECK(mc_usable_size(a) == malloc_usable_size(a));
        CHECK(mc_usable_size(b) == malloc_usable_size(b));
        fill(a, n, 1);
        fill(b, n, 2);
        unsigned char *a2 = mc_realloc(a, n + 4096);
        unsigned char *b2 = realloc(b, n + 4096);
        CHECK(a2 && intact(a2, n, 1));
        CHECK(b2 && intact(b2, n, 2));
        mc_free(a2 ? a2 : a);
        free(b2 ? b2 : b);
        void *c = memalign(256, n);
        mc_free(c);
        void *d = mc_memalign(256, n);
        free(d);
    }
    void *(*libc_malloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
    void (*libc_free)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "__libc_free");
    void (*free_sized)(void *, size_t) =
        (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*cfree)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    if (libc_malloc && libc_free) {
        void *p = libc_malloc(100);
        CHECK(p && mc_usable_size(p) >= 100);
        mc_free(p);
        libc_free(mc_malloc(100));
    }
    if (free_sized) free_sized(mc_malloc(3000), 3000);
    if (cfree) cfree(mc_malloc(3000));
}

/* ---- Options ------------------------------------------------------------ */

TEST(options_set_get) {
    long saved[MC_OPTION_COUNT];
    for (int o = 0; o < MC_OPTION_COUNT; o++) saved[o] = mc_option_get((mc_option_t)o);
    printf("# options:");
    for (int o = 0; o < MC_OPTION_COUNT; o++) printf(" %ld", saved[o]);
    printf("\n");
    CHECK(saved[MC_OPTION_ABORT_ON_ERROR] == 1); /* the documented default */
    const struct {
        mc_option_t option;
        long value;
    } good[] = {
        {MC_OPTION_PURGE_DELAY_MS, 250}, {MC_OPTION_PURGE_DELAY_MS, -1},
        {MC_OPTION_PURGE_DELAY_MS, 0},   {MC_OPTION_PURGE_MADV_FREE, 1},
        {MC_OPTION_PURGE_MADV_FREE, 0},  {MC_OPTION_SEGMENT_CACHE, 0},
        {MC_OPTION_SEGMENT_CACHE, 5},    {MC_OPTION_VERBOSE, 1},
        {MC_OPTION_VERBOSE, 0},          {MC_OPTION_SHOW_STATS, 0},
        {MC_OPTION_ABORT_ON_ERROR, 0},   {MC_OPTION_ABORT_ON_ERROR, 1},
    };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        int rc = mc_option_set(good[i].option, good[i].value);
        long now = mc_option_get(good[i].option);
        CHECKF(rc == 0 && now == good[i].value, "option %d set to %ld: rc %d, reads %ld",
               good[i].option, good[i].value, rc, now);
    }
    const struct {
        mc_option_t option;
        long value;
    } bad[] = {
        {MC_OPTION_PURGE_DELAY_MS, -2},
        {MC_OPTION_PURGE_MADV_FREE, 2},
        {MC_OPTION_PURGE_MADV_FREE, -1},
        {MC_OPTION_SEGMENT_CACHE, -1},
        {MC_OPTION_VERBOSE, 2},
        {MC_OPTION_ABORT_ON_ERROR, 2},
        {MC_OPTION_ABORT_ON_ERROR, -1},
        {MC_OPTION_COUNT, 0},
        {(mc_option_t)-1, 0},
        {(mc_option_t)1000, 1},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int known = (int)bad[i].option >= 0 && bad[i].option < MC_OPTION_COUNT;
        long before = known ? mc_option_get(bad[i].option) : 0;
        int rc = mc_option_set(bad[i].option, bad[i].value);
        CHECKF(rc == EINVAL, "option %d set to %ld: rc %d, not EINVAL", (int)bad[i].option,
               bad[i].value, rc);
        if (known)
            CHECKF(mc_option_get(bad[i].option) == before, "option %d changed by a refused set",
                   (int)bad[i].option);
    }
    for (int o = 0; o < MC_OPTION_COUNT; o++) CHECK(mc_option_set((mc_option_t)o, saved[o]) == 0);
    /* The allocator still works after all that. */
    void *p = malloc(5 * MiB);
    CHECK(p != NULL);
    free(p);
}

static int child_options(void) {
    for (int o = 0; o < MC_OPTION_COUNT; o++) printf("%d %ld\n", o, mc_option_get((mc_option_t)o));
    return 0;
}

static int child_noop(void) {
    void *p[100];
    for (int i = 0; i < 100; i++) p[i] = malloc((size_t)i * 1000);
    for (int i = 0; i < 100; i++) free(p[i]);
    return 0;
}

TEST(options_from_environment) {
    const char *env[] = {"MCLONE_PURGE_DELAY_MS=123", "MCLONE_PURGE_MADV_FREE=1",
                         "MCLONE_SEGMENT_CACHE=3",    "MCLONE_VERBOSE=1",
                         "MCLONE_ABORT_ON_ERROR=0",   NULL};
    const long want[MC_OPTION_COUNT] = {
        [MC_OPTION_PURGE_DELAY_MS] = 123, [MC_OPTION_PURGE_MADV_FREE] = 1,
        [MC_OPTION_SEGMENT_CACHE] = 3,    [MC_OPTION_VERBOSE] = 1,
        [MC_OPTION_SHOW_STATS] = 0,       [MC_OPTION_ABORT_ON_ERROR] = 0,
    };
    static char out[4096];
    int status = run_self("options", env, 1, out, sizeof out);
    CHECKF(status == 0, "child status %#x", status);
    long got[MC_OPTION_COUNT];
    for (int o = 0; o < MC_OPTION_COUNT; o++) got[o] = -12345;
    char *line = out;
    int o;
    long v;
    int used;
    while (sscanf(line, "%d %ld\n%n", &o, &v, &used) == 2) {
        if (o >= 0 && o < MC_OPTION_COUNT) got[o] = v;
        line += used;
    }
    for (o = 0; o < MC_OPTION_COUNT; o++)
        CHECKF(got[o] == want[o], "option %d from the environment: %ld, want %ld", o, got[o],
               want[o]);
}

TEST(show_stats_at_exit) {
    static char err[65536];
    const char *with[] = {"MCLONE_SHOW_STATS=1", NULL};
    int status = run_self("noop", with, 2, err, sizeof err);
    CHECKF(status == 0, "child status %#x", status);
    size_t len = strlen(err);
    CHECKF(len > 0, "MCLONE_SHOW_STATS=1 printed nothing");
    CHECK(printable_text(err, len));
    const char *without[] = {NULL};
    status = run_self("noop", without, 2, err, sizeof err);
    CHECKF(status == 0 && err[0] == '\0', "status %#x, without MCLONE_SHOW_STATS: \"%.200s\"",
           status, err);
}

/* ---- Statistics ---------------------------------------------------------- */

static void check_stats_consistent(const mc_stats_t *s, const char *when) {
    CHECKF(s->resident <= s->mapped, "%s: resident %zu > mapped %zu", when, s->resident, s->mapped);
    CHECKF(s->mapped_peak >= s->mapped, "%s: mapped_peak %zu < mapped %zu", when, s->mapped_peak,
           s->mapped);
    CHECKF(s->committed <= s->resident, "%s: committed %zu > resident %zu", when, s->committed,
           s->resident);
    CHECKF(s->committed_peak >= s->committed, "%s: committed_peak %zu < committed %zu", when,
           s->committed_peak, s->committed);
    CHECKF(s->committed >= s->huge_bytes, "%s: committed %zu < huge_bytes %zu", when, s->committed,
           s->huge_bytes);
    CHECKF(s->huge_bytes <= s->mapped, "%s: huge_bytes %zu > mapped %zu", when, s->huge_bytes,
           s->mapped);
    CHECKF(s->segments >= s->segments_cached, "%s: segments %zu < cached %zu", when, s->segments,
           s->segments_cached);
    CHECKF(s->heaps >= 1, "%s: heaps %zu", when, s->heaps);
    CHECKF(s->mmap_calls > 0 && s->segments > 0, "%s: %zu mmap calls, %zu segments", when,
           s->mmap_calls, s->segments);
}

TEST(stats_follow_allocation) {
    mc_stats_t a, b, c;
    enum { N = 10 * 1024 * 1024 / 64 };
    void **blocks = malloc(N * sizeof *blocks);
    CHECK(blocks != NULL);
    if (!blocks) return;
    mc_stats_get(&a);
    check_stats_consistent(&a, "before");
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(64);
        if (blocks[i]) memset(blocks[i], 1, 64);
    }
    mc_stats_get(&b);
    check_stats_consistent(&b, "10 MiB live");
    CHECKF(b.allocated >= a.allocated + 9 * MiB, "allocated %zu -> %zu after 10 MiB", a.allocated,
           b.allocated);
    /* (Not b.mapped >= a.mapped: cached segments may expire meanwhile.) */
    CHECKF(b.mapped >= 10 * MiB && b.resident >= 10 * MiB, "mapped %zu resident %zu", b.mapped,
           b.resident);
    CHECKF(b.pages > 0 && b.segments > 0, "pages %zu segments %zu", b.pages, b.segments);
    for (int i = 0; i < N; i++) free(blocks[i]);
    mc_stats_get(&c);
    check_stats_consistent(&c, "after free");
    CHECKF(c.allocated + 9 * MiB <= b.allocated, "allocated %zu -> %zu after freeing 10 MiB",
           b.allocated, c.allocated);
    CHECKF(b.committed >= a.committed + 9 * MiB, "committed %zu -> %zu after 10 MiB", a.committed,
           b.committed);
    CHECKF(c.committed_peak >= a.committed + 9 * MiB, "committed_peak %zu, started at %zu",
           c.committed_peak, a.committed);
    free(blocks);

    /* Freed huge mappings wait in a cache for reuse (a new huge block may be
     * one of them, grown): empty it first so that "mapped" counts afresh. */
    mc_trim(0);
    mc_stats_t h0, h1, h2;
    mc_stats_get(&h0);
    void *huge = malloc(64 * MiB);
    CHECK(huge != NULL);
    mc_stats_get(&h1);
    CHECKF(h1.huge_blocks == h0.huge_blocks + 1, "huge_blocks %zu -> %zu", h0.huge_blocks,
           h1.huge_blocks);
    CHECKF(h1.huge_bytes >= h0.huge_bytes + 64 * MiB, "huge_bytes %zu -> %zu", h0.huge_bytes,
           h1.huge_bytes);
    CHECKF(h1.mapped >= h0.mapped + 64 * MiB, "mapped %zu -> %zu", h0.mapped, h1.mapped);
    CHECKF(h1.allocated >= h0.allocated + 64 * MiB, "allocated %zu -> %zu", h0.allocated,
           h1.allocated);
    void *bigger = realloc(huge, 100 * MiB);
    CHECK(bigger != NULL);
    if (bigger) huge = bigger;
    mc_stats_t h3;
    mc_stats_get(&h3);
    CHECKF(h3.huge_blocks == h0.huge_blocks + 1 && h3.huge_bytes >= h0.huge_bytes + 100 * MiB,
           "after realloc to 100 MiB: huge_blocks %zu, huge_bytes %zu", h3.huge_blocks,
           h3.huge_bytes);
    free(huge);
    mc_stats_get(&h2);
    CHECKF(h2.huge_blocks == h0.huge_blocks, "huge_blocks %zu after free, %zu before",
           h2.huge_blocks, h0.huge_blocks);
    CHECKF(h2.huge_bytes == h0.huge_bytes, "huge_bytes %zu after free, %zu before", h2.huge_bytes,
           h0.huge_bytes);
    check_stats_consistent(&h2, "after the huge block");
}

static void *stats_thread(void *arg) {
    mc_stats_t *s = arg;
    void *p = malloc(100);
    mc_stats_get(s);
    free(p);
    return NULL;
}

TEST(stats_count_heaps) {
    mc_stats_t main_view, thread_view;
    mc_stats_get(&main_view);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, stats_thread, &thread_view) == 0);
    pthread_join(t, NULL);
    CHECKF(thread_view.heaps >= 2, "heaps %zu with two threads allocating", thread_view.heaps);
    CHECK(main_view.heaps >= 1);
}

static void print_stats(int fd) {
    mc_stats_print(fd);
}
static void print_heap_map(int fd) {
    mc_heap_map(fd);
}
static void print_malloc_stats(int fd) {
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    malloc_stats();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

TEST(reports_are_text) {
    void *small = malloc(100), *medium = malloc(50 * KiB), *large = malloc(MiB);
    void *huge = malloc(10 * MiB);
    size_t len;
    char *s = capture(print_stats, &len);
    CHECKF(s && len > 0 && printable_text(s, len) && s[len - 1] == '\n',
           "mc_stats_print wrote %zu bytes", len);
    if (s && len) printf("# mc_stats_print, first line: %.*s\n", (int)strcspn(s, "\n"), s);
    free(s);
    s = capture_pipe(print_stats, &len);
    CHECKF(s && len > 0 && printable_text(s, len) && s[len - 1] == '\n',
           "mc_stats_print to a pipe wrote %zu bytes", len);
    s = capture(print_heap_map, &len);
    CHECKF(s && len > 0 && printable_text(s, len) && s[len - 1] == '\n',
           "mc_heap_map wrote %zu bytes", len);
    CHECKF(s && segment_row(s), "mc_heap_map shows no segment with a metadata slice ('#')");
    if (s && len) printf("# mc_heap_map, first line: %.*s\n", (int)strcspn(s, "\n"), s);
    free(s);
    s = capture(print_malloc_stats, &len);
    CHECKF(s && len > 0 && printable_text(s, len), "malloc_stats wrote %zu bytes", len);
    free(s);
    free(small);
    free(medium);
    free(large);
    free(huge);
}

/* ---- Giving memory back --------------------------------------------------- */

/* With automatic purging off, memory freed stays resident until mc_trim (or
 * malloc_trim, or a forced mc_collect) gives it back. */
static void check_release(int (*release)(void), const char *name) {
    long delay = mc_option_get(MC_OPTION_PURGE_DELAY_MS);
    CHECK(mc_option_set(MC_OPTION_PURGE_DELAY_MS, -1) == 0);
    enum { N = 64 * 1024 / 32 };
    void **blocks = malloc(N * sizeof *blocks);
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(32 * KiB);
        if (blocks[i]) memset(blocks[i], 7, 32 * KiB);
    }
    void *big = malloc(MiB + 5);
    if (big) memset(big, 7, MiB);
    for (int i = 0; i < N; i++) free(blocks[i]);
    free(big);
    free(blocks);
    mc_stats_t before, after;
    mc_stats_get(&before);
    size_t rss_before = rss_bytes();
    int rc = release();
    size_t rss_after = rss_bytes();
    mc_stats_get(&after);
    printf("# %s: returned %d, rss %zu -> %zu KiB, resident %zu -> %zu KiB\n", name, rc,
           rss_before >> 10, rss_after >> 10, before.resident >> 10, after.resident >> 10);
    if (rc != -1) CHECKF(rc == 1, "%s returned %d after 64 MiB were freed", name, rc);
    CHECKF(rss_after + 32 * MiB <= rss_before, "%s: rss %zu -> %zu", name, rss_before, rss_after);
    CHECKF(after.resident + 32 * MiB <= before.resident, "%s: resident %zu -> %zu", name,
           before.resident, after.resident);
    /* Given back by purging pages or by unmapping whole segments. */
    size_t unmapped = before.mapped > after.mapped ? before.mapped - after.mapped : 0;
    CHECKF(after.purged_bytes - before.purged_bytes + unmapped >= 32 * MiB,
           "%s: purged %zu, unmapped %zu bytes", name, after.purged_bytes - before.purged_bytes,
           unmapped);
    CHECK(mc_option_set(MC_OPTION_PURGE_DELAY_MS, delay) == 0);
}

static int release_mc_trim(void) {
    return mc_trim(0);
}
static int release_malloc_trim(void) {
    return malloc_trim(0);
}
static int release_collect(void) {
    mc_collect(true);
    return -1;
}

TEST(trim_gives_memory_back) {
    check_release(release_mc_trim, "mc_trim");
    check_release(release_malloc_trim, "malloc_trim");
    check_release(release_collect, "mc_collect(true)");
    mc_collect(false);
    CHECK(mc_trim(opaque(1 << 20)) >= 0);
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
}

/* ---- The heap check after a mixed workload ----------------------------- */

enum { SLOTS = 4000, WORKERS = 3 };

struct slot {
    unsigned char *p;
    size_t size;
    unsigned seed;
};

static void workload(struct slot *slots, int nslots, int ops, uint64_t seed, int *errors) {
    uint64_t x = seed | 1;
    for (int i = 0; i < ops; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        struct slot *s = &slots[x % (uint64_t)nslots];
        unsigned r = (unsigned)(x >> 40);
        if (s->p) {
            if (!intact(s->p, s->size, s->seed)) ++*errors;
            if (r % 4 == 0) {
                size_t n = (r >> 4) % (r % 64 == 0 ? 300 * KiB : 2048);
                unsigned char *q = mc_realloc(s->p, n);
                if (!q && n) {
                    ++*errors;
                    continue;
                }
                size_t keep = n < s->size ? n : s->size;
                if (q && !intact(q, keep, s->seed)) ++*errors;
                s->p = q;
                s->size = n;
                if (q) fill(q, n, s->seed);
            } else {
                free(s->p);
                s->p = NULL;
            }
        } else {
            size_t n = (r >> 4) % (r % 128 == 0 ? 3 * MiB : r % 16 == 0 ? 64 * KiB : 1024);
            switch (r % 5) {
            case 0:
                s->p = calloc(1, n);
                break;
            case 1:
                s->p = memalign((size_t)1 << (r % 13), n);
                break;
            case 2:
                s->p = mc_malloc(n);
                break;
            default:
                s->p = malloc(n);
                break;
            }
            if (!s->p) {
                ++*errors;
                continue;
            }
            s->size = n;
            s->seed = r;
            fill(s->p, n, r);
        }
    }
}

struct worker {
    struct slot *slots;
    int first, count;
    int errors;
    int heap_check;
};

/* Frees its share of the main thread's blocks, works on blocks of its own,
 * and leaves them to the main thread. */
static void *worker_main(void *arg) {
    struct worker *w = arg;
    for (int i = w->first; i < w->first + w->count; i++) {
        struct slot *s = &w->slots[i];
        if (s->p && !intact(s->p, s->size, s->seed)) w->errors++;
        free(s->p);
        s->p = NULL;
    }
    workload(w->slots + w->first, w->count, 20000, (uint64_t)w->first * 7919, &w->errors);
    w->heap_check = mc_heap_check();
    return NULL;
}

TEST(heap_check_after_mixed_work) {
    CHECK(mc_heap_check() == 0);
    static struct slot slots[SLOTS];
    int errors = 0;
    workload(slots, SLOTS, 60000, 12345, &errors);
    CHECKF(errors == 0, "%d blocks broken or refused", errors);
    CHECK(mc_heap_check() == 0);
    struct worker w[WORKERS];
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){slots, i * (SLOTS / WORKERS), SLOTS / WORKERS, 0, -2};
        CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(t[i], NULL);
        CHECKF(w[i].errors == 0, "worker %d: %d blocks broken or refused", i, w[i].errors);
        CHECKF(w[i].heap_check == 0, "mc_heap_check in worker %d: %d", i, w[i].heap_check);
    }
    /* The main thread frees what the workers left, and checks again. */
    CHECK(mc_heap_check() == 0);
    workload(slots, SLOTS, 30000, 999, &errors);
    CHECK(mc_heap_check() == 0);
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p && !intact(slots[i].p, slots[i].size, slots[i].seed)) errors++;
        free(slots[i].p);
        slots[i].p = NULL;
    }
    CHECKF(errors == 0, "%d blocks broken or refused", errors);
    CHECK(mc_heap_check() == 0);
    mc_collect(true);
    CHECK(mc_heap_check() == 0);
}

/* ---- The glibc administrative calls ------------------------------------- */

/* mallinfo is deprecated (its int fields overflow) but still exported. */
static struct mallinfo old_mallinfo(void) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    return mallinfo();
#pragma GCC diagnostic pop
}

TEST(mallinfo_follows_allocation) {
    enum { N = 10 * 1024 * 1024 / 64 };
    void **blocks = malloc(N * sizeof *blocks);
    CHECK(blocks != NULL);
    if (!blocks) return;
    struct mallinfo2 a2 = mallinfo2();
    struct mallinfo a = old_mallinfo();
    for (int i = 0; i < N; i++) blocks[i] = malloc(64);
    struct mallinfo2 b2 = mallinfo2();
    struct mallinfo b = old_mallinfo();
    CHECKF(b2.uordblks >= a2.uordblks + 9 * MiB, "mallinfo2 uordblks %zu -> %zu", a2.uordblks,
           b2.uordblks);
    CHECKF((size_t)b.uordblks >= (size_t)a.uordblks + 9 * MiB, "mallinfo uordblks %d -> %d",
           a.uordblks, b.uordblks);
    CHECKF(b2.arena + b2.hblkhd >= b2.uordblks, "arena %zu + hblkhd %zu < uordblks %zu", b2.arena,
           b2.hblkhd, b2.uordblks);
    for (int i = 0; i < N; i++) free(blocks[i]);
    struct mallinfo2 c2 = mallinfo2();
    CHECKF(c2.uordblks + 9 * MiB <= b2.uordblks, "mallinfo2 uordblks %zu -> %zu after free",
           b2.uordblks, c2.uordblks);
    free(blocks);
}

TEST(mallopt_accepts_everything) {
    const int params[] = {
        M_MXFAST,       M_TRIM_THRESHOLD, M_TOP_PAD,    M_MMAP_THRESHOLD, M_MMAP_MAX,
        M_CHECK_ACTION, M_PERTURB,        M_ARENA_TEST, M_ARENA_MAX,      12345,
        -12345};
    const int values[] = {0, 1, 64, 1 << 20, 8};
    for (size_t i = 0; i < ARRAY_LEN(params); i++)
        for (size_t v = 0; v < ARRAY_LEN(values); v++)
            CHECKF(mallopt(params[i], values[v]) == 1, "mallopt(%d, %d)", params[i], values[v]);
    CHECK(mallopt(M_ARENA_MAX, 1) == 1);
    /* Nothing of glibc's behaviour comes with them: M_PERTURB does not
     * scribble over blocks, and everything still works. */
    CHECK(mallopt(M_PERTURB, 0x55) == 1);
    unsigned char *p = calloc(1, 1000);
    CHECK(p && all_zero(p, 1000));
    free(p);
    void *q = malloc(3 * MiB);
    CHECK(q != NULL);
    free(q);
    CHECK(mallopt(M_PERTURB, 0) == 1);
}

/* ---- A freed huge mapping serving as a new segment ---------------------------
 * A freed huge block waits in a cache; a heap that needs a new segment takes
 * such a mapping (at least a segment's size) instead of mapping fresh memory.
 * Its pages hold the old block's bytes, so calloc from it must still give
 * zeros, even where it skips the memset for memory it knows to be fresh. */
TEST(huge_mapping_becomes_segment) {
    enum { BLOCKS = 40 }; /* 60 MiB: more than the free space any earlier test left */
    long cache = mc_option_get(MC_OPTION_SEGMENT_CACHE);
    mc_option_set(MC_OPTION_SEGMENT_CACHE, 8); /* (0 would unmap the huge block at once) */
    mc_trim(0); /* empty caches: new segments are mapped or recycled */
    unsigned char *h = mc_malloc(6 * MiB);
    CHECK(h != NULL);
    if (!h) return;
    memset(h, 0xab, 6 * MiB);
    uintptr_t old = (uintptr_t)h & ~(uintptr_t)(4 * MiB - 1); /* its mapping's start */
    mc_free(h);
    unsigned char *b[BLOCKS];
    int recycled = 0;
    for (int i = 0; i < BLOCKS; i++) {
        b[i] = mc_calloc(1, (size_t)1536 * KiB); /* 24 slices: two per segment */
        CHECK(b[i] != NULL);
        if (!b[i]) continue;
        recycled |= ((uintptr_t)b[i] & ~(uintptr_t)(4 * MiB - 1)) == old;
        size_t nonzero = 0;
        for (size_t k = 0; k < (size_t)1536 * KiB; k += 512) nonzero += b[i][k] != 0;
        CHECKF(nonzero == 0, "calloc block %d: %zu non-zero bytes", i, nonzero);
        memset(b[i], 0x5a, (size_t)1536 * KiB);
    }
    CHECK(mc_heap_check() == 0);
    CHECKF(recycled, "no block in the freed huge mapping's 4 MiB at %p", (void *)old);
    for (int i = 0; i < BLOCKS; i++) mc_free(b[i]);
    mc_option_set(MC_OPTION_SEGMENT_CACHE, cache);
}

/* ---- Random sizes through every entry point ------------------------------ */

TEST(usable_size_matches) {
    enum { N = 3000 };
    static unsigned char *p[N];
    static size_t n[N];
    for (int i = 0; i < N; i++) {
        n[i] = rng() % (i % 50 == 0 ? 3 * MiB : 3000);
        p[i] = (i & 1) ? mc_malloc(n[i]) : malloc(n[i]);
        CHECK(p[i] != NULL);
        if (!p[i]) continue;
        size_t u = mc_usable_size(p[i]);
        CHECKF(u >= n[i] && u == malloc_usable_size(p[i]), "%zu bytes: usable %zu / %zu", n[i], u,
               malloc_usable_size(p[i]));
        n[i] = u;
        fill(p[i], u, (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        if (!p[i]) continue;
        CHECKF(intact(p[i], n[i], (unsigned)i), "block %d overwritten", i);
        mc_free(p[i]);
    }
}

/* Size classes: every request up to 128 KiB rounds up by at most an eighth
 * (plus 16 bytes, for the smallest), a power of two plus a header of up to
 * 16 bytes (SQLite asks for 1032 and 4104) rounds up to 2^k + 16, and one
 * with a header of up to 2^(k-4) + 16 bytes (SQLite's page-cache entries
 * are 4096 + 272) to 2^k + 2^(k-4) + 16. */
/* Every size from lo to hi (by step) has usable size want. */
static void rounds_to(size_t lo, size_t hi, size_t step, size_t want) {
    for (size_t n = lo; n <= hi; n += step) {
        void *p = mc_malloc(n);
        CHECK(p != NULL);
        if (!p) return;
        CHECKF(mc_usable_size(p) == want, "%zu bytes: usable %zu", n, mc_usable_size(p));
        mc_free(p);
    }
}

TEST(size_classes_are_tight) {
    size_t worst = 0, worst_n = 0;
    for (size_t n = 1; n <= 128 * KiB; n += n < 4096 ? 1 : 7) {
        void *p = mc_malloc(n);
        CHECK(p != NULL);
        if (!p) return;
        size_t u = mc_usable_size(p);
        mc_free(p);
        CHECKF(u >= n && u <= n + n / 8 + 16, "%zu bytes: usable %zu", n, u);
        if (u - n > worst) worst = u - n, worst_n = n;
    }
    printf("# size classes: the most a request rounds up is %zu bytes (%zu asked)\n", worst,
           worst_n);
    for (size_t k = 10; k <= 16; k++) {
        size_t base = (size_t)1 << k;
        rounds_to(base + 1, base + 16, 1, base + 16);
        rounds_to(base + 17, base + (base >> 4) + 16, 8, base + (base >> 4) + 16);
    }
}

/* Bytes carved into the pages of blocks of lo to hi bytes, as the heap map
 * reports them ("N used of R (C carved)"), over every segment. */
static size_t carved_bytes(size_t lo, size_t hi) {
    size_t len, total = 0;
    char *map = capture(mc_heap_map, &len);
    if (map == NULL) return 0;
    for (char *line = map; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        unsigned slice;
        size_t bs, used, reserved, carved;
        if (sscanf(line, " slice %u: %zu B blocks, %zu used of %zu (%zu carved)", &slice, &bs,
                   &used, &reserved, &carved) == 5 &&
            bs >= lo && bs <= hi)
            total += bs * carved;
        line = end ? end + 1 : NULL;
    }
    free(map);
    return total;
}

/* A thread that keeps a few blocks of each of 13 classes (256 B to 1 KiB)
 * and frees and reallocates them at random: each class cycles through a
 * page that is mostly free.  Those short cycles may carve a little more than
 * they hold, to take the slow path less often, but not the 32 blocks more
 * per class they once kept carved: 244 KiB for the 65 KiB live here, where
 * 2 KiB more per class gives about 80 KiB. */
enum { CYCLE_CLASSES = 13, CYCLE_LIVE = 8 };

static void *short_cycles(void *arg) {
    size_t *live = arg;
    void *p[CYCLE_CLASSES][CYCLE_LIVE] = {{0}};
    uint64_t x = 88172645463325252ull;
    for (int step = 0; step < 200000; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t c = (size_t)(x % CYCLE_CLASSES), j = (size_t)(x >> 32) % CYCLE_LIVE;
        mc_free(p[c][j]);
        p[c][j] = mc_malloc(256 + 64 * c);
        if (p[c][j]) memset(p[c][j], (int)c, 256 + 64 * c);
    }
    *live = 0;
    for (size_t c = 0; c < CYCLE_CLASSES; c++) *live += CYCLE_LIVE * (256 + 64 * c);
    size_t carved = carved_bytes(256, 1024);
    for (size_t c = 0; c < CYCLE_CLASSES; c++)
        for (size_t j = 0; j < CYCLE_LIVE; j++) mc_free(p[c][j]);
    return (void *)carved;
}

TEST(short_cycles_carve_little) {
    size_t before = carved_bytes(256, 1024), live = 0;
    pthread_t t;
    void *r = NULL;
    CHECK(pthread_create(&t, NULL, short_cycles, &live) == 0);
    pthread_join(t, &r);
    size_t grown = (size_t)r > before ? (size_t)r - before : 0;
    printf("# short cycles: %zu KiB carved for %zu KiB live\n", grown / KiB, live / KiB);
    CHECKF(grown >= live && grown <= 2 * live + CYCLE_CLASSES * 2 * KiB,
           "%zu bytes carved for %zu live", grown, live);
}

/* A fresh page of blocks of 4 KiB or more carves them one at a time: the
 * blocks after the one handed out are not written, so their OS pages stay
 * out of RAM (carving four at a time wrote each one's link).  In a thread
 * of its own, so that its heap has no page of that size yet. */
static void *carve_big(void *arg) {
    unsigned char *p = mc_malloc(24 * KiB);
    size_t *out = arg, ps = (size_t)sysconf(_SC_PAGESIZE);
    if (p == NULL) return NULL;
    size_t us = mc_usable_size(p);
    out[0] = us;
    for (size_t i = 1; i <= 3; i++) {
        unsigned char vec = 0;
        uintptr_t at = ((uintptr_t)p + i * us) & ~(uintptr_t)(ps - 1);
        if (mincore((void *)at, ps, &vec) == 0 && (vec & 1)) out[1]++;
    }
    mc_free(p);
    return NULL;
}

TEST(big_blocks_carved_one_at_a_time) {
    mc_trim(0); /* no free memory resident from earlier tests */
    size_t out[2] = {0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, carve_big, out) == 0);
    pthread_join(t, NULL);
    printf("# blocks of %zu bytes: %zu of the 3 after the first resident\n", out[0], out[1]);
    CHECKF(out[0] >= 24 * KiB && out[1] == 0, "%zu of 3 resident", out[1]);
}

/* A page started on slices that another page of the heap has just given
 * back (dirty, not purged yet) purges the part it has not carved: that
 * part held the other page's blocks, all written, and would otherwise
 * stay resident until carving reached it.  Pages of 960-byte blocks,
 * filled and freed, then a page of 704-byte blocks on one of their
 * slices; in a thread of its own, so that its heap has neither size. */
enum { TAIL_FILL = 3 * 68 };
static void *start_page_on_used_slices(void *arg) {
    static unsigned char *fill[TAIL_FILL];
    size_t *out = arg, ps = (size_t)sysconf(_SC_PAGESIZE), slice = 64 * KiB;
    for (int i = 0; i < TAIL_FILL; i++) {
        if ((fill[i] = mc_malloc(900)) == NULL) return NULL;
        memset(fill[i], i, 900);
    }
    for (int i = 0; i < TAIL_FILL; i++) mc_free(fill[i]);
    unsigned char *p = mc_malloc(680);
    if (p == NULL) return NULL;
    uintptr_t at = (uintptr_t)p & ~(uintptr_t)(slice - 1);
    for (int i = 0; i < TAIL_FILL; i++)
        out[0] |= ((uintptr_t)fill[i] & ~(uintptr_t)(slice - 1)) == at;
    for (size_t off = ps; off < slice; off += ps) {
        unsigned char vec = 0;
        if (mincore((void *)(at + off), ps, &vec) == 0 && (vec & 1)) out[1]++;
    }
    mc_free(p);
    return NULL;
}

TEST(new_page_purges_what_it_has_not_carved) {
    size_t out[2] = {0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, start_page_on_used_slices, out) == 0);
    pthread_join(t, NULL);
    printf("# page on freed slices: %zu of its last %zu OS pages resident\n", out[1],
           (size_t)(64 * KiB / sysconf(_SC_PAGESIZE)) - 1);
    CHECKF(out[0] == 1, "the new page is not on the freed slices (a page of its size was found)");
    CHECKF(out[1] == 0, "%zu OS pages resident", out[1]);
}

/* Blocks of full pages, freed by their own thread: free's fast path leaves
 * them (the page is in the full queue) to the short path, which must put
 * each page back in its bin, where later mallocs of that size find the
 * freed blocks (many of them: the heap, perhaps an exited thread's, may have
 * other pages of the bin to hand out first; left in the full queue, about 5
 * of 320 came back), and leave the live blocks alone. */
static void *free_into_full_pages(void *arg) {
    enum { N = 640 };
    static const size_t sizes[] = {200, 3000, 20000};
    static void *p[N];
    int *bad = arg;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int i = 0; i < N; i++) {
            p[i] = mc_malloc(sizes[k]);
            if (p[i] == NULL) return (*bad = 1), NULL;
            memset(p[i], i, sizes[k]);
        }
        for (int i = 0; i < N; i += 2) mc_free(p[i]);
        if (mc_heap_check() != 0) return (*bad = 2), NULL;
        int reused = 0;
        for (int i = 0; i < N; i += 2) {
            void *q = mc_malloc(sizes[k]);
            if (q == NULL) return (*bad = 1), NULL;
            for (int j = 0; j < N; j += 2) reused += q == p[j];
            p[i] = q;
        }
        printf("# %zu bytes: %d of %d reused\n", sizes[k], reused, N / 2);
        if (mc_heap_check() != 0 || reused < N / 16) return (*bad = 3), NULL;
        for (int i = 1; i < N; i += 2)
            if (((unsigned char *)p[i])[sizes[k] - 1] != (unsigned char)i) return (*bad = 4), NULL;
        for (int i = 0; i < N; i++) mc_free(p[i]);
        if (mc_heap_check() != 0) return (*bad = 5), NULL;
    }
    return NULL;
}

TEST(own_full_pages_freed_and_reused) {
    int bad = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_into_full_pages, &bad) == 0);
    pthread_join(t, NULL);
    CHECKF(bad == 0, "step %d failed", bad);
}

/* A thread that exits leaves its segments to others: their free slices go
 * back to the OS at once ("resident" counts those not purged yet). */
static void *leave_free_slices(void *arg) {
    enum { N = 24 };
    void **kept = arg, *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = mc_malloc(256 * KiB);
        if (p[i]) memset(p[i], i, 256 * KiB);
    }
    kept[0] = p[0], kept[1] = p[N - 1]; /* so that no segment is wholly free */
    for (int i = 1; i < N - 1; i++) mc_free(p[i]);
    return NULL;
}

TEST(exited_threads_purge_free_slices) {
    mc_stats_t a, b;
    void *kept[2] = {NULL, NULL};
    pthread_t t;
    mc_stats_get(&a);
    CHECK(pthread_create(&t, NULL, leave_free_slices, kept) == 0);
    pthread_join(t, NULL);
    mc_stats_get(&b);
    size_t idle_a = a.resident - a.committed, idle_b = b.resident - b.committed;
    CHECKF(kept[0] != NULL && kept[1] != NULL, "blocks %p %p", kept[0], kept[1]);
    CHECKF(idle_b <= idle_a + 1 * MiB,
           "free memory not purged: %zu KiB before the thread, %zu after", idle_a / KiB,
           idle_b / KiB);
    printf("# free memory not purged: %zu KiB before the thread, %zu after\n", idle_a / KiB,
           idle_b / KiB);
    mc_free(kept[0]);
    mc_free(kept[1]);
}

/* A thread that exits leaves its heap, whole, to the next thread to start:
 * the next thread allocates where the last one stopped, in the same page. */
static void *keep_one_block(void *arg) {
    void **out = arg;
    out[0] = mc_malloc(200);
    return NULL;
}

/* Run keep_one_block in a thread of its own; the heaps parked after it. */
static size_t park_one_thread(void **io) {
    mc_stats_t st;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, keep_one_block, io) == 0);
    pthread_join(t, NULL);
    mc_stats_get(&st);
    return st.heaps_parked;
}

static void *take_parked_heap(void *arg) {
    void **io = arg;
    mc_stats_t st;
    io[1] = mc_malloc(200);
    mc_stats_get(&st);
    io[2] = (void *)(uintptr_t)st.heaps_parked;
    mc_free(io[0]); /* the other thread's block: now this heap's */
    mc_free(io[1]);
    return NULL;
}

TEST(exited_thread_heap_goes_to_the_next_thread) {
    mc_trim(0); /* no heap parked from earlier tests */
    void *io[3] = {NULL, NULL, NULL};
    pthread_t t;
    size_t parked = park_one_thread(io);
    CHECKF(io[0] != NULL && parked == 1, "%zu heaps parked", parked);
    CHECK(pthread_create(&t, NULL, take_parked_heap, io) == 0);
    pthread_join(t, NULL);
    uintptr_t page = (uintptr_t)64 * KiB;
    CHECKF(io[1] != NULL && ((uintptr_t)io[0] & -page) == ((uintptr_t)io[1] & -page),
           "blocks %p and %p", io[0], io[1]);
    CHECKF((uintptr_t)io[2] == 0, "%zu heaps still parked", (size_t)(uintptr_t)io[2]);
}

/* A parked heap that nobody takes is abandoned after the purge delay (by
 * another thread's maintenance), or at once by a trim. */
static void alloc_free_large(void) {
    void *p[4];
    for (int i = 0; i < 4; i++) p[i] = mc_malloc(200 * KiB);
    for (int i = 0; i < 4; i++) mc_free(p[i]);
}

TEST(parked_heaps_are_abandoned_in_time) {
    mc_trim(0);
    alloc_free_large(); /* so that the loop below has room, without growing */
    void *io[1] = {NULL};
    mc_stats_t st;
    st.heaps_parked = park_one_thread(io);
    CHECKF(io[0] != NULL && st.heaps_parked == 1, "%zu heaps parked", st.heaps_parked);
    /* Slow-path work in this thread runs its maintenance. */
    int waited = 0;
    for (; waited < 2000 && st.heaps_parked != 0; waited++) {
        alloc_free_large();
        usleep(1000);
        mc_stats_get(&st);
    }
    printf("# parked heap abandoned after about %d ms\n", waited);
    CHECKF(st.heaps_parked == 0, "%zu heaps still parked after %d ms", st.heaps_parked, waited);
    void *first = io[0];
    st.heaps_parked = park_one_thread(io);
    CHECKF(st.heaps_parked == 1, "%zu heaps parked", st.heaps_parked);
    mc_trim(0);
    mc_stats_get(&st);
    CHECKF(st.heaps_parked == 0, "%zu heaps parked after a trim", st.heaps_parked);
    mc_free(first);
    mc_free(io[0]);
}

/* A thread that frees another thread's blocks and allocates blocks of the
 * same size (a server thread replacing requests that another one made)
 * takes the blocks it freed back from the other thread's pages before it
 * touches fresh memory, and the other thread gets them back when they are
 * freed again. */
enum { SWAP_N = 3000, SWAP_SIZE = 640 };

static void *swap_blocks(void *arg) {
    void **p = arg;
    for (int i = 0; i < SWAP_N; i++) {
        mc_free(p[i]);
        p[i] = mc_malloc(SWAP_SIZE);
        if (p[i]) memset(p[i], 5, SWAP_SIZE);
    }
    return NULL;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

TEST(freed_blocks_of_other_threads_are_reused) {
    static void *mine[SWAP_N], *theirs[SWAP_N];
    for (int i = 0; i < SWAP_N; i++) {
        mine[i] = theirs[i] = mc_malloc(SWAP_SIZE);
        CHECK(mine[i] != NULL);
        if (!mine[i]) return;
        memset(mine[i], 3, SWAP_SIZE);
    }
    qsort(mine, SWAP_N, sizeof *mine, cmp_ptr);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, swap_blocks, theirs) == 0);
    pthread_join(t, NULL);
    int reused = 0;
    for (int i = 0; i < SWAP_N; i++) {
        CHECK(theirs[i] != NULL);
        reused += theirs[i] != NULL && bsearch(&theirs[i], mine, SWAP_N, sizeof *mine, cmp_ptr);
    }
    printf("# %d of %d blocks allocated again where the other thread had them\n", reused, SWAP_N);
    CHECKF(reused >= SWAP_N * 9 / 10, "%d of %d reused", reused, SWAP_N);
    for (int i = 0; i < SWAP_N; i++) mc_free(theirs[i]);
    CHECK(mc_heap_check() == 0);
}

/* When one thread maps fresh memory (here a huge block), the others give
 * back their free slices at their next maintenance instead of after the
 * purge delay (here a minute): otherwise a heap whose share of the work
 * shrank keeps its memory resident while another one faults in more.  A
 * thread that only takes slices of its own segment that are not resident
 * does not make the others purge: in powtwo that set off a ping-pong of
 * purges and page faults between the heaps (docs/design.md, section 11).
 * The other thread here maps its segment first, then grows inside it, then
 * maps a huge block. */
static void *grow_fresh(void *arg) {
    pthread_barrier_t *b = arg;
    void *p[8];
    for (int i = 0; i < 8; i++) {
        if (i == 1) {
            pthread_barrier_wait(b); /* its segment is mapped */
            pthread_barrier_wait(b); /* the other heap has free slices */
        }
        p[i] = mc_malloc(256 * KiB);
        if (p[i]) memset(p[i], i, 256 * KiB);
    }
    pthread_barrier_wait(b); /* grown inside its segment */
    pthread_barrier_wait(b); /* measured */
    void *huge = mc_malloc(8 * MiB);
    if (huge) memset(huge, 1, 8 * MiB);
    pthread_barrier_wait(b); /* mapped fresh memory */
    pthread_barrier_wait(b); /* measured: its blocks were not idle memory */
    mc_free(huge);
    for (int i = 0; i < 8; i++) mc_free(p[i]);
    return NULL;
}

static void slow_paths(void) { /* enough for a maintenance */
    for (int i = 0; i < 40; i++) mc_free(mc_malloc(200 * KiB));
}

static size_t idle_memory(void) {
    mc_stats_t st;
    mc_stats_get(&st);
    return st.resident - st.committed;
}

TEST(fresh_mapping_elsewhere_purges_free_slices) {
    long delay = mc_option_get(MC_OPTION_PURGE_DELAY_MS);
    CHECK(mc_option_set(MC_OPTION_PURGE_DELAY_MS, 60000) == 0);
    mc_trim(0); /* nothing idle but what follows, no cached huge mapping */
    void *p[16];
    for (int i = 0; i < 16; i++) {
        p[i] = mc_malloc(256 * KiB);
        CHECK(p[i] != NULL);
        if (p[i]) memset(p[i], i, 256 * KiB);
    }
    pthread_t t;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    CHECK(pthread_create(&t, NULL, grow_fresh, &bar) == 0);
    pthread_barrier_wait(&bar);
    slow_paths(); /* a maintenance sees the segments mapped so far */
    for (int i = 0; i < 16; i++) mc_free(p[i]);
    size_t idle_a = idle_memory();
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    slow_paths();
    size_t idle_b = idle_memory();
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    slow_paths();
    size_t idle_c = idle_memory();
    pthread_barrier_wait(&bar);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&bar);
    printf("# free memory not purged: %zu KiB; after another thread grew in its segment %zu KiB;"
           " after it mapped a huge block %zu KiB\n",
           idle_a / KiB, idle_b / KiB, idle_c / KiB);
    CHECKF(idle_a >= 3 * MiB && idle_b >= idle_a * 3 / 4 && idle_c <= idle_a / 2,
           "%zu KiB, then %zu KiB, then %zu KiB", idle_a / KiB, idle_b / KiB, idle_c / KiB);
    mc_option_set(MC_OPTION_PURGE_DELAY_MS, delay);
}

/* A block that realloc grows into a huge one takes a cached mapping whole,
 * up to eight times its size, and grows on inside it: no munmap of the rest,
 * no mremap to get it back. */
TEST(growing_block_keeps_cached_mapping) {
    mc_trim(0); /* an empty huge cache */
    void *big = mc_malloc(16 * MiB);
    CHECK(big != NULL);
    if (!big) return;
    memset(big, 1, 16 * MiB);
    mc_free(big);
    mc_stats_t a, b;
    mc_stats_get(&a);
    unsigned char *p = mc_malloc(1 * MiB), *q;
    CHECK(p != NULL);
    if (!p) return;
    memset(p, 7, 1 * MiB);
    for (size_t n = 3 * MiB; n <= 12 * MiB; n += 3 * MiB) {
        q = mc_realloc(p, n);
        CHECKF(q != NULL, "realloc to %zu MiB", n / MiB);
        if (!q) break;
        p = q;
    }
    mc_stats_get(&b);
    CHECKF(p[0] == 7 && p[MiB - 1] == 7, "contents %d %d", p[0], p[MiB - 1]);
    CHECKF(b.munmap_calls == a.munmap_calls && b.mremap_calls == a.mremap_calls,
           "munmap %zu -> %zu, mremap %zu -> %zu", a.munmap_calls, b.munmap_calls, a.mremap_calls,
           b.mremap_calls);
    mc_free(p);
}

static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char c) {
    for (size_t i = 0; i < n; i += 4093)
        if (p[i] != c) return 0;
    return p[n - 1] == c;
}

/* A cached huge mapping trimmed to serve a smaller block keeps what it cut
 * off, resident, as spare pages; the next huge block larger than anything
 * cached takes them instead of faulting in fresh ones.  calloc must still
 * clear them, a block built of them must grow (realloc) with its contents,
 * and a trim gives them back. */
TEST(trimmed_pages_serve_the_next_huge_block) {
    mc_trim(0); /* empty caches, no spares */
    /* Spares are bounded by a quarter of what is committed: a big block
     * (never touched, so never resident) makes room for them. */
    void *room = mc_malloc(96 * MiB);
    unsigned char *a = mc_malloc(16 * MiB);
    CHECK(room != NULL && a != NULL);
    if (!room || !a) return;
    memset(a, 0x11, 16 * MiB);
    mc_free(a); /* cached, resident */
    mc_stats_t s0, s1, s2;
    unsigned char *b = mc_malloc(4 * MiB); /* takes it, trimmed: ~12 MiB cut off */
    CHECK(b != NULL);
    mc_stats_get(&s0);
    CHECKF(s0.resident >= s0.committed + 11 * MiB, "resident %zu MiB, committed %zu MiB",
           s0.resident / MiB, s0.committed / MiB);
    long f0 = minor_faults();
    unsigned char *c = mc_calloc(1, 10 * MiB); /* nothing cached: a new mapping, spares in */
    CHECK(c != NULL);
    if (!c) return;
    CHECKF(all_bytes(c, 10 * MiB, 0), "calloc of spare pages left old bytes");
    long faults = minor_faults() - f0;
    mc_stats_get(&s1);
    long pages = (long)(10 * MiB) / sysconf(_SC_PAGESIZE);
    CHECKF(faults < pages / 4, "%ld page faults for %ld pages of spares", faults, pages);
    CHECKF(s1.mremap_calls > s0.mremap_calls, "no pages moved (mremap %zu -> %zu)", s0.mremap_calls,
           s1.mremap_calls);
    memset(c, 0x22, 10 * MiB);
    unsigned char *d = mc_realloc(c, 20 * MiB); /* grows (or moves) with its pieces */
    CHECK(d != NULL);
    if (d) {
        CHECKF(all_bytes(d, 10 * MiB, 0x22), "realloc lost the contents");
        memset(d + 10 * MiB, 0x33, 10 * MiB);
        CHECK(all_bytes(d + 10 * MiB, 10 * MiB, 0x33));
    }
    CHECK(mc_heap_check() == 0);
    mc_free(d);
    mc_free(b);
    mc_free(room);
    mc_trim(0);
    mc_stats_get(&s2);
    CHECKF(s2.resident < s2.committed + 1 * MiB,
           "after a trim: resident %zu KiB, committed %zu KiB", s2.resident / KiB,
           s2.committed / KiB);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A freed huge block waits in the cache, resident, and goes back to the OS
 * after a second unused, at the maintenance of some slow path.  This needs
 * the allocator's clock (the vDSO's, or the system call): one that stood
 * still, or ran wild, would keep the block for ever or drop it at once. */
TEST(cached_memory_goes_back_in_time) {
    mc_trim(0);
    mc_stats_t a, b;
    void *big = mc_malloc(8 * MiB);
    CHECK(big != NULL);
    if (big) memset(big, 1, 8 * MiB);
    mc_free(big);
    mc_stats_get(&a);
    CHECKF(a.resident >= a.committed + 8 * MiB, "resident %zu, committed %zu after the free",
           a.resident, a.committed);
    void *p[1000];
    double start = now_seconds(), kept = 0, gone = -1;
    while (now_seconds() - start < 5) {
        for (int i = 0; i < 1000; i++) p[i] = mc_malloc(48);
        for (int i = 0; i < 1000; i++) mc_free(p[i]);
        mc_stats_get(&b);
        if (b.resident < b.committed + 1 * MiB) {
            gone = now_seconds() - start;
            break;
        }
        kept = now_seconds() - start;
        usleep(1000);
    }
    printf("# the cached block was still resident after %.3f s, gone after %.3f s\n", kept, gone);
    CHECKF(gone > 0, "still resident after %.1f s", kept);
    CHECKF(kept >= 0.5, "gone after %.3f s, not kept", gone);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "options") == 0) return child_options();
    if (argc > 1 && strcmp(argv[1], "noop") == 0) return child_noop();
    const char *prefix = getenv("TEST_PREFIX");
    if (prefix) check_prefix = prefix;
    const char *lib = getenv("TEST_EXPECT_LIB");
    if (lib && *lib) expect_lib = lib;
    RUN(names_exported);
    RUN(mc_basic_semantics);
    RUN(mc_errors);
    RUN(mc_and_standard_names_mix);
    RUN(options_set_get);
    RUN(options_from_environment);
    RUN(show_stats_at_exit);
    RUN(stats_follow_allocation);
    RUN(stats_count_heaps);
    RUN(reports_are_text);
    RUN(trim_gives_memory_back);
    RUN(heap_check_after_mixed_work);
    RUN(mallinfo_follows_allocation);
    RUN(mallopt_accepts_everything);
    RUN(usable_size_matches);
    RUN(size_classes_are_tight);
    RUN(short_cycles_carve_little);
    RUN(big_blocks_carved_one_at_a_time);
    RUN(new_page_purges_what_it_has_not_carved);
    RUN(own_full_pages_freed_and_reused);
    RUN(exited_threads_purge_free_slices);
    RUN(exited_thread_heap_goes_to_the_next_thread);
    RUN(parked_heaps_are_abandoned_in_time);
    RUN(freed_blocks_of_other_threads_are_reused);
    RUN(fresh_mapping_elsewhere_purges_free_slices);
    RUN(growing_block_keeps_cached_mapping);
    RUN(trimmed_pages_serve_the_next_huge_block);
    RUN(cached_memory_goes_back_in_time);
    RUN(huge_mapping_becomes_segment);
    return check_exit_status();
}
