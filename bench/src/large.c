/* large: large blocks (64 KiB-32 MiB) with mixed lifetimes, and buffers grown
 * by realloc as a string builder grows them.
 *
 * A table of 16 large blocks: 4 entries are long-lived (replaced one time
 * in 50), the others are replaced at every visit.  Sizes are log-uniform,
 * so small-large and very large blocks are equally common; each new block
 * is touched on every page, as a program would fill it.  Between
 * replacements, a string builder appends pieces of 16 B-4 KiB to a buffer
 * grown by realloc to exactly the length needed, up to 1-8 MiB, then checks
 * its contents and starts over.  This is the pattern where mremap or growth
 * in place pays and copying at every step does not. */
#include "bench.h"

#define TABLE      16
#define LONG_LIVED 4

typedef struct slot_s {
    unsigned char *p;
    size_t size;
    uint64_t tag;
} slot_t;

/* log-uniform in [64 KiB, 32 MiB] */
static size_t large_size(bench_rng_t *rng) {
    unsigned k = 16 + (unsigned)bench_below(rng, 9);
    return bench_range(rng, (size_t)1 << k, (size_t)2 << k);
}

static void replace(slot_t *s, bench_rng_t *rng, uint64_t tag) {
    if (s->p != NULL) {
        bench_check("large", s->p, s->size, s->tag);
        free(s->p);
    }
    s->size = large_size(rng);
    s->tag = tag;
    s->p = malloc(s->size);
    if (s->p == NULL) bench_die("out of memory");
    bench_touch_pages(s->p, s->size);
    bench_tag(s->p, s->size, s->tag);
}

/* Grow a buffer piece by piece to about target bytes; return a checksum of
 * what was written, checked against the buffer's contents. */
static uint64_t build_string(bench_rng_t *rng, size_t target) {
    char *buf = NULL;
    size_t len = 0;
    uint64_t sum = 0;
    while (len < target) {
        size_t piece = bench_range(rng, 16, 4096);
        char c = (char)('a' + bench_below(rng, 26));
        buf = realloc(buf, len + piece + 1);
        if (buf == NULL) bench_die("out of memory");
        memset(buf + len, c, piece);
        len += piece;
        buf[len] = 0;
        sum += (uint64_t)piece * (unsigned char)c;
    }
    uint64_t check = 0;
    for (size_t i = 0; i < len; i++) check += (unsigned char)buf[i];
    if (check != sum) bench_corrupt("large", buf, len);
    free(buf);
    return sum;
}

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "");
    uint64_t steps = bench_scaled(600, a.scale, 4);
    bench_rng_t rng = bench_rng(5);
    slot_t table[TABLE];
    uint64_t sum = 0;
    memset(table, 0, sizeof table);
    for (uint64_t i = 0; i < steps; i++) {
        size_t k = (size_t)bench_below(&rng, TABLE);
        if (k >= LONG_LIVED || table[k].p == NULL || bench_below(&rng, 50) == 0)
            replace(&table[k], &rng, i + 1);
        if (i % 4 == 0) sum += build_string(&rng, bench_range(&rng, 1 << 20, 8 << 20));
    }
    for (size_t k = 0; k < TABLE; k++) {
        if (table[k].p == NULL) continue;
        bench_check("large", table[k].p, table[k].size, table[k].tag);
        free(table[k].p);
    }
    printf("large: %llu steps, builder checksum %llu\n", (unsigned long long)steps,
           (unsigned long long)sum);
    return 0;
}
