/* stress-util.h: what the stress programs share.
 *
 * A block is filled with a pattern computed from its address and its size,
 * so that a block handed between threads carries everything needed to check
 * it: the first word holds the size (mixed with the address), every further
 * 8-byte word a hash of its own address and the size.  A block moved by
 * realloc is checked against the pattern of its old address.  Blocks are at
 * least 8 bytes.  Also: a per-thread random generator, the resident size,
 * a clock, option parsing, and the check that the allocator under test is
 * the one expected (TEST_EXPECT_LIB, as in tests/api/test-api.c). */
#ifndef MCLONE_TESTS_STRESS_UTIL_H
#define MCLONE_TESTS_STRESS_UTIL_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15u;
    x ^= x >> 29;
    return x;
}

/* The pattern word at byte offset off (a multiple of 8) of a block of size n
 * at address addr. */
static inline uint64_t pattern_word(uintptr_t addr, size_t n, size_t off) {
    if (off == 0) return (uint64_t)n ^ mix64(addr);
    return mix64(addr + off) ^ (uint64_t)n;
}

/* Writes the first len bytes of the pattern of an n-byte block at p. */
static inline void pattern_fill_part(void *p, size_t len, size_t n) {
    unsigned char *b = p;
    uintptr_t addr = (uintptr_t)p;
    for (size_t off = 0; off < len; off += 8) {
        uint64_t w = pattern_word(addr, n, off);
        memcpy(b + off, &w, len - off < 8 ? len - off : 8);
    }
}

static inline void pattern_fill(void *p, size_t n) {
    pattern_fill_part(p, n, n);
}

/* Checks the first len bytes at p against the pattern of an n-byte block
 * that was at address addr.  Returns len when they match, else the offset of
 * the first 8-byte word that differs. */
static inline size_t pattern_check(const void *p, size_t len, uintptr_t addr, size_t n) {
    const unsigned char *b = p;
    for (size_t off = 0; off < len; off += 8) {
        uint64_t want = pattern_word(addr, n, off), got = 0;
        size_t k = len - off < 8 ? len - off : 8;
        memcpy(&got, b + off, k);
        if (k < 8) want &= ((uint64_t)1 << (8 * k)) - 1;
        if (got != want) return off;
    }
    return len;
}

/* The size a filled block says it has. */
static inline size_t pattern_size(const void *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return (size_t)(w ^ mix64((uintptr_t)p));
}

struct rng {
    uint64_t s;
};

static inline uint64_t rng_next(struct rng *r) {
    r->s += 0x9e3779b97f4a7c15u;
    return mix64(r->s ^ (r->s >> 32));
}

/* A number in [lo, hi]. */
static inline size_t rng_range(struct rng *r, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static inline size_t rss_bytes(void) {
    char buf[128];
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    unsigned long pages = 0, resident = 0;
    if (sscanf(buf, "%lu %lu", &pages, &resident) != 2) return 0;
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "-x value" options: each entry of names is a one-letter option whose
 * value, a number, goes into the matching entry of values. */
static inline int parse_options(int argc, char **argv, const char *names, long *values) {
    for (int i = 1; i < argc; i++) {
        const char *at = argv[i][0] == '-' && argv[i][1] ? strchr(names, argv[i][1]) : NULL;
        if (!at || argv[i][2] || i + 1 >= argc) {
            fprintf(stderr, "%s: unknown option %s (known: %s, each with a number)\n", argv[0],
                    argv[i], names);
            return -1;
        }
        values[at - names] = strtol(argv[++i], NULL, 0);
    }
    return 0;
}

/* With TEST_EXPECT_LIB=<substring> set, malloc and free must come from a
 * library whose path contains it (a preload that did not take would test
 * glibc instead).  Returns 0 when all is well, else prints why. */
static inline int check_allocator(void) {
    const char *expect = getenv("TEST_EXPECT_LIB");
    if (!expect || !*expect) return 0;
    const char *names[] = {"malloc", "free"};
    for (int i = 0; i < 2; i++) {
        Dl_info info;
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        if (!sym || !dladdr(sym, &info) || !info.dli_fname || !strstr(info.dli_fname, expect)) {
            printf("# %s comes from %s, not from %s\n", names[i],
                   sym && dladdr(sym, &info) && info.dli_fname ? info.dli_fname : "?", expect);
            return -1;
        }
    }
    return 0;
}

#endif
