/* bench.h: what every workload program of the benchmark suite shares.
 *
 * Each program is one workload, run as a whole process under each allocator
 * (bench/run.sh).  They all take the same options:
 *
 *     -t N   threads (where the workload has a thread count)
 *     -s X   scale: 1.0 is the full size (about a second under glibc here),
 *            the suite uses 0.25 for QUICK=1 and the smoke test 0.001
 *     -m M   a mode, for programs that hold more than one workload
 *
 * A program checks the blocks it owns (a tag written after malloc is checked
 * before free) and exits with status 3 on the first damaged block, so a
 * broken allocator cannot look fast.  It prints one summary line. */
#ifndef MCLONE_BENCH_H
#define MCLONE_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bench_args_s {
    int threads;
    double scale;
    const char *mode;
} bench_args_t;

static inline void bench_usage(const char *prog) {
    fprintf(stderr, "usage: %s [-t threads] [-s scale] [-m mode]\n", prog);
    exit(2);
}

/* Defaults: threads = online cores, scale = 1, mode = default_mode. */
static inline bench_args_t bench_parse(int argc, char **argv, const char *default_mode) {
    bench_args_t a = {(int)sysconf(_SC_NPROCESSORS_ONLN), 1.0, default_mode};
    int c;
    while ((c = getopt(argc, argv, "t:s:m:")) != -1) {
        switch (c) {
        case 't':
            a.threads = atoi(optarg);
            break;
        case 's':
            a.scale = atof(optarg);
            break;
        case 'm':
            a.mode = optarg;
            break;
        default:
            bench_usage(argv[0]);
        }
    }
    if (optind != argc || a.threads < 1 || a.threads > 1024 || !(a.scale > 0)) bench_usage(argv[0]);
    return a;
}

/* n scaled, at least min. */
static inline uint64_t bench_scaled(double n, double scale, uint64_t min) {
    double v = n * scale;
    return v < (double)min ? min : (uint64_t)v;
}

static inline void bench_die(const char *what) {
    fprintf(stderr, "error: %s\n", what);
    exit(1);
}

static inline void *bench_xmalloc(size_t size) {
    void *p = malloc(size);
    if (p == NULL) bench_die("out of memory");
    return p;
}

/* ---- Random numbers: one state per thread (xorshift64*) ---- */
typedef struct bench_rng_s {
    uint64_t s;
} bench_rng_t;

static inline bench_rng_t bench_rng(uint64_t seed) {
    /* splitmix64 of the seed, never zero */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (bench_rng_t){z ? z : 1};
}

static inline uint64_t bench_next(bench_rng_t *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n). */
static inline uint64_t bench_below(bench_rng_t *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)bench_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline size_t bench_range(bench_rng_t *r, size_t lo, size_t hi) {
    return lo + (size_t)bench_below(r, hi - lo + 1);
}

/* ---- Block tags ----
 * A tag is a 64-bit value owned by the holder of a block: it is written into
 * the first (up to) 8 bytes and, folded, into the last byte.  Two holders of
 * one block write different tags, so a block handed out twice, a block that
 * overlaps another, or an allocator that writes into a live block is caught
 * when the tag is checked before free. */
static inline void bench_tag(void *p, size_t size, uint64_t tag) {
    uint64_t v = tag ^ size;
    unsigned char *b = p;
    memcpy(b, &v, size < 8 ? size : 8);
    if (size > 8) b[size - 1] = (unsigned char)(v >> 56) ^ (unsigned char)v;
}

static inline int bench_tag_ok(const void *p, size_t size, uint64_t tag) {
    uint64_t v = tag ^ size, w = 0;
    const unsigned char *b = p;
    memcpy(&w, b, size < 8 ? size : 8);
    if (size < 8) v &= (1ull << (8 * size)) - 1;
    if (w != v) return 0;
    if (size <= 8) return 1;
    return b[size - 1] == ((unsigned char)(v >> 56) ^ (unsigned char)v);
}

static inline void bench_corrupt(const char *workload, const void *p, size_t size) {
    fprintf(stderr, "%s: damaged block %p (size %zu)\n", workload, p, size);
    exit(3);
}

static inline void bench_check(const char *workload, const void *p, size_t size, uint64_t tag) {
    if (!bench_tag_ok(p, size, tag)) bench_corrupt(workload, p, size);
}

/* Touch every page of a block, so that it counts in the resident set. */
static inline void bench_touch_pages(void *p, size_t size) {
    unsigned char *b = p;
    if (size == 0) return;
    for (size_t i = 0; i < size; i += 4096) b[i] = (unsigned char)i;
    b[size - 1] = 1;
}

/* The resident set size of this process now, in KiB (0 if unknown). */
static inline long bench_rss_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

#endif
