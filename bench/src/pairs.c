/* pairs: N malloc(size)+free pairs, for counting instructions per pair under
 * callgrind (bench/callgrind.sh).
 *
 *     pairs SIZE N
 *
 * Runs 1000 pairs to warm up, then N more.  Counting two runs with
 * different N and dividing the difference by the difference in N cancels
 * the start-up and gives the instructions of one pair, the loop included.
 * The calls go through volatile function pointers, so the compiler can
 * neither drop nor merge them, and the loop is as short as it gets: the
 * count per pair is the allocator's cost plus about 9 instructions. */
#include <stdio.h>
#include <stdlib.h>

static void *(*volatile malloc_fn)(size_t) = malloc;
static void (*volatile free_fn)(void *) = free;

static void run(size_t size, unsigned long n) {
    for (unsigned long i = 0; i < n; i++) free_fn(malloc_fn(size));
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SIZE N\n", argv[0]);
        return 2;
    }
    size_t size = strtoul(argv[1], NULL, 10);
    unsigned long n = strtoul(argv[2], NULL, 10);
    void *p = malloc_fn(size);
    if (size == 0 || p == NULL) {
        fprintf(stderr, "pairs: cannot allocate %zu bytes\n", size);
        return 1;
    }
    free_fn(p);
    run(size, 1000);
    run(size, n);
    return 0;
}
