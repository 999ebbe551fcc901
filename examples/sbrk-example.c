/* sbrk-example.c: the program break, the oldest way to get heap memory.
 *
 * Build and run, in examples/:
 *
 *     gcc sbrk-example.c -o sbrk-example
 *     ./sbrk-example
 *
 * A process's data segment ends at the "program break".  brk(2) moves that
 * end; sbrk(n) is the library wrapper that moves it by n bytes and returns
 * the old break, which is therefore the start of the n new bytes.  The first
 * Unix mallocs lived entirely on top of it.
 *
 * What it shows:
 *   1. Where the break starts, next to the ends of the program's code and data.
 *   2. sbrk(n) moving it up, and the new bytes being usable memory.
 *   3. A tiny bump allocator on top of sbrk: each allocation is the next
 *      bytes above the previous one.
 *   4. Giving memory back with a negative increment, which only works for
 *      the bytes at the very top.
 *   5. Why a general allocator prefers mmap: another user of the break (here
 *      the C library's own malloc) traps our memory below theirs; a freed
 *      block in the middle (a hole) can never go back; one break is shared by
 *      every thread; big blocks already come from mmap.
 *
 * The output changes from run to run: address space layout randomisation
 * (ASLR) moves the break and the mappings. */
#define _DEFAULT_SOURCE /* sbrk under a strict -std=c11 too */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Symbols the linker defines at the end of the code (etext), of the
 * initialised data (edata) and of the zero-initialised data, bss (end).
 * Their addresses are what matters; see man 3 end. */
extern char etext, edata, end;

/* printf normally allocates its output buffer with malloc on first use,
 * and the C library's malloc takes that memory from the break.  Giving
 * stdout a buffer of our own keeps every move of the break in this program
 * our own doing, until step 5 calls malloc on purpose. */
static char stdout_buffer[BUFSIZ];

static char *brk_now(void) {
    return sbrk(0);
}

/* ---- A bump allocator -----------------------------------------------------
 * The whole allocator is two variables: where it started and how many bytes
 * it has taken.  An allocation moves the break up by the request (rounded
 * to 16 bytes, so every block is 16-byte aligned like malloc's).  There is
 * no free: a bump allocator can only give back everything it took, and only
 * while its bytes are still the top of the heap. */
static char *bump_start;
static size_t bump_taken;

static void bump_init(void) {
    /* Align the break to 16 bytes once; then every 16-byte-rounded step
     * keeps it aligned. */
    uintptr_t b = (uintptr_t)brk_now();
    size_t pad = (16 - b % 16) % 16;
    if (pad) sbrk((intptr_t)pad);
    bump_start = brk_now();
    bump_taken = 0;
}

static void *bump_alloc(size_t size) {
    size_t n = (size + 15) & ~(size_t)15;
    if (n < size || n > INTPTR_MAX) return NULL; /* overflow */
    void *p = sbrk((intptr_t)n);
    if (p == (void *)-1) return NULL; /* errno is ENOMEM */
    bump_taken += n;
    return p;
}

/* Give everything back.  Returns 0, or -1 when the break is no longer at
 * the end of our bytes: someone else moved it, and shrinking now would cut
 * off their memory instead of ours. */
static int bump_release_all(void) {
    if (brk_now() != bump_start + bump_taken) return -1;
    sbrk(-(intptr_t)bump_taken);
    bump_taken = 0;
    return 0;
}

static long distance(const void *a, const void *b) {
    return (long)((const char *)a - (const char *)b);
}

int main(void) {
    setvbuf(stdout, stdout_buffer, _IOLBF, sizeof stdout_buffer);

    /* ---- 1: where the break starts ---- */
    char *initial = brk_now();
    printf("1. Where the break starts\n");
    printf("   end of the code       (&etext): %p\n", (void *)&etext);
    printf("   end of the data       (&edata): %p\n", (void *)&edata);
    printf("   end of the bss        (&end):   %p\n", (void *)&end);
    printf("   the program break     sbrk(0):  %p  (%ld bytes above &end)\n", (void *)initial,
           distance(initial, &end));
    printf("   With ASLR the kernel starts the heap at a random distance above the bss.\n\n");

    /* ---- 2: moving the break ---- */
    printf("2. Moving the break\n");
    char *old = sbrk(4096);
    if (old == (void *)-1) {
        printf("   sbrk(4096) failed: %s\n", strerror(errno));
        return 1;
    }
    printf("   sbrk(4096) returned %p, the old break; the break is now %p (+%ld)\n", (void *)old,
           (void *)brk_now(), distance(brk_now(), old));
    /* The new bytes are ordinary memory, zero-filled by the kernel. */
    int all_zero = 1;
    for (int i = 0; i < 4096; i++) all_zero &= old[i] == 0;
    strcpy(old, "written into memory that sbrk just gave us");
    printf("   the new bytes were zero: %s; after a write they hold \"%s\"\n",
           all_zero ? "yes" : "no", old);
    sbrk(-4096);
    printf("   sbrk(-4096) moves it back: the break is %p again\n\n", (void *)brk_now());

    /* ---- 3: a bump allocator ---- */
    printf("3. A bump allocator on top of sbrk\n");
    bump_init();
    const char *words[] = {"alpha", "beta, a block of thirty-odd bytes", "gamma"};
    char *blocks[3];
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(words[i]) + 1;
        blocks[i] = bump_alloc(len);
        if (blocks[i] == NULL) {
            printf("   bump_alloc(%zu) failed: %s\n", len, strerror(errno));
            return 1;
        }
        memcpy(blocks[i], words[i], len);
        printf("   bump_alloc(%2zu) = %p  \"%s\"\n", len, (void *)blocks[i], blocks[i]);
    }
    printf("   each block starts where the previous one ended (rounded to 16 bytes);\n");
    printf("   %zu bytes taken, the break is now %p\n\n", bump_taken, (void *)brk_now());

    /* ---- 4: giving memory back ---- */
    printf("4. Giving memory back with a negative increment\n");
    printf("   \"%s\" is no longer needed, but the break only moves at the top:\n", blocks[1]);
    printf("   its %zu bytes stay taken while \"%s\" lies above them (a hole).\n",
           (size_t)(blocks[2] - blocks[1]), blocks[2]);
    size_t taken = bump_taken;
    if (bump_release_all() == 0)
        printf("   All at once, sbrk(-%zu): the break is back at %p (the start was %p)\n\n", taken,
               (void *)brk_now(), (void *)bump_start);
    else
        printf("   Cannot give them back: someone else moved the break\n\n");

    /* ---- 5: why a general allocator prefers mmap ---- */
    printf("5. Why a general allocator prefers mmap\n");
    bump_init();
    char *ours = bump_alloc(64);
    char *before = brk_now();
    /* The C library's malloc.  glibc's malloc takes small blocks for the
     * main thread from the break too, so it sbrk()s right above us. */
    char *theirs = malloc(100);
    char *after = brk_now();
    printf("   our block (sbrk):     %p\n", (void *)ours);
    printf("   malloc(100):          %p\n", (void *)theirs);
    if (after != before) {
        printf("   malloc moved the break from %p to %p: it uses the break too.\n", (void *)before,
               (void *)after);
        printf("   Our block is now trapped below malloc's heap. Giving it back\n");
        printf("   %s\n", bump_release_all() == 0
                              ? "still worked (unexpected)."
                              : "is refused: sbrk(-64) would cut malloc's heap.");
        printf("   Two users of one break must agree on who owns the top; a general\n");
        printf("   allocator cannot assume it is alone, so it takes memory with mmap.\n");
    } else {
        printf("   malloc did not move the break: this malloc takes its memory with mmap\n");
        printf("   (as the first-fit allocator in first-fit/ and libmclone do), so the\n");
        printf("   break stays ours alone: giving our block back %s\n",
               bump_release_all() == 0 ? "works." : "is refused (the break moved).");
    }
    free(theirs);

    /* Big blocks: glibc serves anything from 128 KiB up with its own mmap,
     * which can be unmapped on free whatever else is live. */
    char *big = malloc(1 << 20);
    char *top = brk_now();
    int in_heap = big != NULL && big >= initial && big < top;
    printf("   malloc(1 MiB):        %p, %s the brk heap [%p, %p)\n", (void *)big,
           in_heap ? "inside" : "outside", (void *)initial, (void *)top);
    if (!in_heap) printf("   -> from its own mmap: free() can unmap it at once, holes or not.\n");
    free(big);

    /* The break cannot grow into memory that is already mapped, or past
     * the limits; mmap can put a mapping anywhere there is room. */
    errno = 0;
    void *huge = sbrk((intptr_t)1 << 46);
    printf("   sbrk(64 TiB):         %s\n",
           huge == (void *)-1 ? strerror(errno) : "succeeded (the break moved 64 TiB!)");
    if (huge != (void *)-1) sbrk(-((intptr_t)1 << 46));

    printf("   And threads: a process has one break.  Every thread that allocates\n");
    printf("   would move it under one lock, while mmap gives each thread regions\n");
    printf("   of its own anywhere in the address space.\n");
    return 0;
}
