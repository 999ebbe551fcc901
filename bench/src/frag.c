/* frag: fragmentation, measured as resident memory.
 *
 * Fill the heap with blocks of mixed sizes (16 B-1 KiB), free a random 90%
 * of them, then allocate larger blocks (2-16 KiB) until as many bytes are
 * live as at the start.  An allocator that cannot reuse the holes left by
 * the small blocks for the large ones has to grow.  Every block is written
 * in full so that it is resident.  The peak RSS comes from the process's
 * accounting (GNU time); the program prints the RSS at the end, with the
 * refilled blocks still live, as "final_rss_kb=N", and the live bytes. */
#include "bench.h"

typedef struct slot_s {
    unsigned char *p;
    uint32_t size;
    uint32_t tag;
} slot_t;

static void fill(slot_t *s) {
    memset(s->p, (int)(s->tag & 0xff), s->size);
    bench_tag(s->p, s->size, s->tag);
}

static void check(const slot_t *s) {
    bench_check("frag", s->p, s->size, s->tag);
    if (s->size > 16 && s->p[s->size / 2] != (unsigned char)(s->tag & 0xff))
        bench_corrupt("frag", s->p, s->size);
}

/* Sizes spread evenly over the powers of two in [lo, hi]. */
static uint32_t mixed_size(bench_rng_t *rng, unsigned lo_log, unsigned hi_log) {
    unsigned k = lo_log + (unsigned)bench_below(rng, hi_log - lo_log);
    return (uint32_t)bench_range(rng, (size_t)1 << k, (size_t)2 << k);
}

int main(int argc, char **argv) {
    bench_args_t a = bench_parse(argc, argv, "");
    uint64_t target = bench_scaled(256.0 * 1024 * 1024, a.scale, 1 << 20);
    bench_rng_t rng = bench_rng(3);
    size_t cap = 1024, n = 0;
    slot_t *slots = bench_xmalloc(cap * sizeof *slots);
    uint64_t live = 0;
    uint32_t tag = 0;

    /* fill: 16 B - 1 KiB */
    while (live < target) {
        if (n == cap) {
            cap *= 2;
            slots = realloc(slots, cap * sizeof *slots);
            if (slots == NULL) bench_die("out of memory");
        }
        slot_t *s = &slots[n++];
        s->size = mixed_size(&rng, 4, 10);
        s->tag = ++tag;
        s->p = malloc(s->size);
        if (s->p == NULL) bench_die("out of memory");
        fill(s);
        live += s->size;
    }
    long filled_kb = bench_rss_kb();

    /* free a random 90%, keep the rest packed at the front */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        check(&slots[i]);
        if (bench_below(&rng, 10) == 0) {
            slots[kept++] = slots[i];
        } else {
            live -= slots[i].size;
            free(slots[i].p);
        }
    }
    n = kept;
    long freed_kb = bench_rss_kb();

    /* refill with 2 KiB - 16 KiB blocks */
    while (live < target) {
        if (n == cap) {
            cap *= 2;
            slots = realloc(slots, cap * sizeof *slots);
            if (slots == NULL) bench_die("out of memory");
        }
        slot_t *s = &slots[n++];
        s->size = mixed_size(&rng, 11, 14);
        s->tag = ++tag;
        s->p = malloc(s->size);
        if (s->p == NULL) bench_die("out of memory");
        fill(s);
        live += s->size;
    }
    long final_kb = bench_rss_kb();
    for (size_t i = 0; i < n; i++) check(&slots[i]);

    printf("final_rss_kb=%ld\n", final_kb);
    printf("frag: live %llu KiB; rss after fill %ld KiB, after free %ld KiB, after refill %ld "
           "KiB\n",
           (unsigned long long)(live / 1024), filled_kb, freed_kb, final_kb);
    for (size_t i = 0; i < n; i++) free(slots[i].p);
    free(slots);
    return 0;
}
