/* fuzz-alloc.c: the allocation API driven by arbitrary bytes, checked
 * against a model of what it must do.
 *
 * The input is read as a sequence of operations on 64 slots (each slot
 * holds at most one live block): mc_malloc, mc_calloc, mc_realloc,
 * mc_reallocarray, mc_memalign, mc_posix_memalign, mc_aligned_alloc,
 * mc_valloc, mc_pvalloc, mc_free, mc_free_sized, mc_usable_size, mc_collect,
 * mc_trim and mc_heap_check, with sizes from 0 to 8 MiB and impossible ones
 * (beyond PTRDIFF_MAX, overflowing products), and alignments from 1 to 1 GiB
 * and invalid ones.  The model knows, for every live block, its size, its
 * usable size and the seed of the pattern it was filled with, and checks:
 *
 *   - the result of every call against glibc's rules: malloc(0) is a unique
 *     block, realloc(p, 0) frees and returns NULL, impossible sizes give NULL
 *     with ENOMEM, bad alignments EINVAL (posix_memalign: returned, and its
 *     out pointer untouched), a failed realloc leaves its block alone;
 *   - alignment (16 bytes for blocks of 16 bytes or more, 8 below, or what
 *     was asked for), usable size at least the size and the same for as
 *     long as the block lives, calloc's zeroes;
 *   - that no live block overlaps another (the whole usable size counts:
 *     it is the caller's to write, and is filled with the pattern too);
 *   - that no block's contents change while it is live: each is filled with
 *     its own pattern, checked before every free and realloc, by the check
 *     operation, and at the end of the input; realloc keeps the first
 *     min(old, new) bytes;
 *   - mc_heap_check() after the input (everything is freed then).
 *
 * A broken rule prints what happened and aborts.  Built two ways
 * (mk/reliability.mk): with libFuzzer (build/fuzz/fuzz-alloc, the library's
 * mc_ names linked in, malloc left to the sanitizer), and with replay.c's
 * main() against libmclone.so (build/tests/fuzz-replay) to run saved inputs
 * under any flavour.
 *
 * Input format: one operation byte (its low 4 bits select the operation,
 * the high 4 bits the slot together with the next byte), then the
 * operation's arguments; a size is one class byte and up to three bytes of
 * value; an alignment one byte.  Running out of bytes ends the input. */
#define _GNU_SOURCE
#include "mclone.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum { SLOTS = 64, LIVE_LIMIT = 96 * 1024 * 1024 };

struct slot {
    unsigned char *p;
    size_t size;   /* asked for */
    size_t usable; /* mc_usable_size when it was made */
    uint64_t seed; /* of the pattern */
};

static struct slot slots[SLOTS];
static size_t live_bytes;
static uint64_t next_seed;

/* ---- Reading the input ----------------------------------------------------------------- */
struct input {
    const uint8_t *p, *end;
};

static int more(const struct input *in) {
    return in->p < in->end;
}

static unsigned byte(struct input *in) {
    return more(in) ? *in->p++ : 0;
}

static size_t bytes(struct input *in, int n) {
    size_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | byte(in);
    return v;
}

#define IMPOSSIBLE_FIRST 12
static const size_t edge_sizes[] = {
    0,
    1,
    8,
    15,
    16,
    17,
    1024,
    1025,
    128 * KiB,
    128 * KiB + 1,
    2 * MiB,
    2 * MiB + 1,
    /* from here on: never possible */
    (size_t)PTRDIFF_MAX + 1,
    SIZE_MAX,
    SIZE_MAX - 4095,
    SIZE_MAX / 2 + 4097,
};

static size_t read_size(struct input *in) {
    unsigned c = byte(in);
    switch (c % 8) {
    case 0:
    case 1:
        return bytes(in, 1) % 65; /* tiny */
    case 2:
    case 3:
        return bytes(in, 2) % (1 * KiB + 1); /* small */
    case 4:
        return bytes(in, 3) % (128 * KiB + 1); /* medium */
    case 5:
        return 128 * KiB + bytes(in, 3) % (2 * MiB - 128 * KiB + 1); /* large */
    case 6:
        return 2 * MiB + bytes(in, 3) % (6 * MiB + 1); /* huge */
    default:
        return edge_sizes[bytes(in, 1) % (sizeof edge_sizes / sizeof edge_sizes[0])];
    }
}

/* A power of two up to 1 GiB mostly; sometimes something invalid. */
static size_t read_alignment(struct input *in) {
    unsigned b = byte(in);
    if (b < 224) return (size_t)1 << (b % 31);
    static const size_t odd[] = {0, 3, 24, 48, 100, 4097, (size_t)1 << 63, SIZE_MAX};
    return odd[b % (sizeof odd / sizeof odd[0])];
}

/* ---- Failing ------------------------------------------------------------------------------ */
static unsigned long op_number;

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz-alloc: operation %lu: ", op_number);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* ---- Patterns ------------------------------------------------------------------------------
 * Word k of a block with seed s holds mix(s + k): independent of the block's
 * address, so it survives a realloc that moves the block.  Up to 64 KiB every
 * word; above, the first and last 4 KiB and every 32nd word between.  The
 * fuzzer's coverage instrumentation is left out of these loops: they are
 * most of the work, and nothing in them depends on the input (not inlined:
 * the instrumentation follows the function the code ends up in). */
#if defined(__clang__)
#define NO_COVERAGE __attribute__((no_sanitize("coverage"), noinline))
#else
#define NO_COVERAGE
#endif

NO_COVERAGE static uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15u;
    x ^= x >> 29;
    return x;
}

NO_COVERAGE static size_t next_offset(size_t off, size_t n) {
    off += 8;
    if (n > 64 * KiB && off >= 4 * KiB && off + 4 * KiB < n && off % 256 != 0) {
        off = (off + 255) & ~(size_t)255;
        if (off + 4 * KiB > n) off = (n - 4 * KiB) & ~(size_t)7;
    }
    return off;
}

NO_COVERAGE static void fill(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t off = 0; off < n; off = next_offset(off, n)) {
        uint64_t w = mix(seed + off);
        if (n - off >= 8)
            memcpy(p + off, &w, 8);
        else
            for (size_t i = 0; off + i < n; i++) p[off + i] = (unsigned char)(w >> (8 * i));
    }
}

/* The offset of the first word of the first len bytes of a block of n bytes
 * filled with seed that differs, or len. */
NO_COVERAGE static size_t first_change(const unsigned char *p, size_t n, size_t len, uint64_t seed,
                                       uint64_t *got, uint64_t *want) {
    for (size_t off = 0; off < len; off = next_offset(off, n)) {
        *want = mix(seed + off);
        *got = 0;
        if (len - off >= 8) {
            memcpy(got, p + off, 8);
        } else {
            for (size_t i = 0; off + i < len; i++) *got |= (uint64_t)p[off + i] << (8 * i);
            *want &= ((uint64_t)1 << (8 * (len - off))) - 1;
        }
        if (*got != *want) return off;
    }
    return len;
}

static void verify(const unsigned char *p, size_t n, size_t len, uint64_t seed, const char *when) {
    uint64_t got, want;
    size_t off = first_change(p, n, len, seed, &got, &want);
    if (off != len)
        fail("%s: block %p (%zu bytes usable) changed at offset %zu: %#llx, want %#llx", when,
             (const void *)p, n, off, (unsigned long long)got, (unsigned long long)want);
}

/* The offset of the first byte of size bytes at p that is not zero, or
 * size (calloc's blocks; above 64 KiB, every 61st byte). */
NO_COVERAGE static size_t first_nonzero(const unsigned char *p, size_t size) {
    size_t step = size > 64 * KiB ? 61 : 1;
    for (size_t i = 0; i < size; i += step)
        if (p[i] != 0) return i;
    return size;
}

/* ---- The model ------------------------------------------------------------------------------ */
static void expect_errno(void *p, int want, const char *what, size_t size) {
    if (p != NULL) fail("%s(%zu) = %p: should have failed", what, size, p);
    if (errno != want) fail("%s(%zu) = NULL with errno %d, want %d", what, size, errno, want);
}

/* A new block: check it against the rules and the other live blocks, fill
 * it, and keep it in slot s (which is empty). */
static void adopt(int s, unsigned char *p, size_t size, size_t align, int zeroed,
                  const char *what) {
    if (p == NULL) fail("%s(%zu, alignment %zu) failed, errno %d", what, size, align, errno);
    size_t implied = size >= 16 ? 16 : 8;
    if (align < implied) align = implied;
    if ((uintptr_t)p % align != 0)
        fail("%s(%zu) = %p: not %zu-aligned", what, size, (void *)p, align);
    size_t usable = mc_usable_size(p);
    if (usable < size) fail("%s(%zu) = %p: usable size %zu", what, size, (void *)p, usable);
    if (usable > size + size / 2 + 2 * MiB + 64 * KiB)
        fail("%s(%zu) = %p: usable size %zu is far too large", what, size, (void *)p, usable);
    for (int i = 0; i < SLOTS; i++) {
        const struct slot *o = &slots[i];
        if (o->p && p < o->p + o->usable && o->p < p + usable)
            fail("%s(%zu) = %p (usable %zu) overlaps the live block %p (usable %zu)", what, size,
                 (void *)p, usable, (void *)o->p, o->usable);
    }
    if (zeroed) {
        size_t i = first_nonzero(p, size);
        if (i != size) fail("%s(%zu) = %p: byte %zu is %d", what, size, (void *)p, i, p[i]);
    }
    slots[s] = (struct slot){p, size, usable, ++next_seed};
    fill(p, usable, slots[s].seed);
    live_bytes += usable;
}

static void check_slot(int s, const char *when) {
    const struct slot *b = &slots[s];
    if (!b->p) return;
    size_t usable = mc_usable_size(b->p);
    if (usable != b->usable)
        fail("%s: block %p: usable size %zu, was %zu", when, (void *)b->p, usable, b->usable);
    verify(b->p, b->usable, b->usable, b->seed, when);
}

static void forget(int s) {
    live_bytes -= slots[s].usable;
    slots[s] = (struct slot){0};
}

static void release(int s, int sized) {
    if (!slots[s].p) {
        mc_free(NULL);
        return;
    }
    check_slot(s, "before free");
    if (sized)
        mc_free_sized(slots[s].p, slots[s].size);
    else
        mc_free(slots[s].p);
    forget(s);
}

/* Would a block of size bytes take the live set over its limit? */
static int too_much(size_t size) {
    return size <= PTRDIFF_MAX && (size > 16 * MiB || live_bytes + size > LIVE_LIMIT);
}

static int impossible(size_t size) {
    return size > PTRDIFF_MAX;
}

static void do_malloc(int s, size_t size) {
    if (too_much(size)) return;
    release(s, 0);
    errno = 0;
    unsigned char *p = mc_malloc(size);
    if (impossible(size)) return expect_errno(p, ENOMEM, "mc_malloc", size);
    adopt(s, p, size, 0, 0, "mc_malloc");
}

static void do_calloc(int s, size_t n, size_t m) {
    size_t total;
    int overflow = __builtin_mul_overflow(n, m, &total);
    if (!overflow && too_much(total)) return;
    release(s, 0);
    errno = 0;
    unsigned char *p = mc_calloc(n, m);
    if (overflow || impossible(total)) return expect_errno(p, ENOMEM, "mc_calloc", total);
    adopt(s, p, total, 0, 1, "mc_calloc");
}

static void do_realloc(int s, size_t size, size_t count, int array) {
    struct slot *b = &slots[s];
    size_t total = size;
    int overflow = array && __builtin_mul_overflow(size, count, &total);
    if (!overflow && too_much(total)) return;
    if (b->p) check_slot(s, "before realloc");
    errno = 0;
    unsigned char *q = array ? mc_reallocarray(b->p, size, count) : mc_realloc(b->p, total);
    const char *what = array ? "mc_reallocarray" : "mc_realloc";
    if (overflow || impossible(total)) {
        expect_errno(q, ENOMEM, what, total);
        if (b->p) check_slot(s, "after a failed realloc");
        return;
    }
    if (b->p == NULL) return adopt(s, q, total, 0, 0, what);
    if (total == 0) { /* glibc: frees, returns NULL */
        if (q != NULL) fail("%s(%p, 0) = %p, want NULL", what, (void *)b->p, (void *)q);
        forget(s);
        return;
    }
    if (q == NULL) fail("%s(%zu -> %zu) failed, errno %d", what, b->size, total, errno);
    size_t keep = b->size < total ? b->size : total;
    verify(q, b->usable, keep, b->seed, "after realloc");
    forget(s);
    adopt(s, q, total, 0, 0, what);
}

enum { MEMALIGN, POSIX_MEMALIGN, ALIGNED_ALLOC };

static void do_aligned(int s, int how, size_t align, size_t size) {
    static const char *const names[] = {"mc_memalign", "mc_posix_memalign", "mc_aligned_alloc"};
    int pow2 = align != 0 && (align & (align - 1)) == 0;
    /* What glibc does with the alignment: memalign rounds it up to a power
     * of two, failing with EINVAL when it cannot be; posix_memalign wants a
     * power of two and a multiple of sizeof(void *); aligned_alloc a power
     * of two. */
    int bad = how == MEMALIGN         ? align > ((size_t)1 << 63)
              : how == POSIX_MEMALIGN ? !pow2 || align % sizeof(void *) != 0
                                      : !pow2;
    size_t effective = align;
    if (how == MEMALIGN && !bad && !pow2) {
        effective = 1;
        while (effective < align) effective <<= 1;
    }
    /* Beyond 1 GiB, an alignment may be refused (ENOMEM; EINVAL too, as
     * tests/api accepts for memalign above 2^62): the address space or the
     * kernel's overcommit rules may not allow it. */
    int may_fail = !bad && effective > ((size_t)1 << 30);
    if (!bad && !may_fail && too_much(size + effective)) return;
    if (!bad && !may_fail && effective > 64 * MiB && size > 64 * KiB) return; /* address space */
    release(s, 0);
    errno = 0;
    unsigned char *p = NULL;
    int err;
    if (how == POSIX_MEMALIGN) {
        void *out = &out;
        int rc = mc_posix_memalign(&out, align, size);
        if (rc != 0 && out != &out) fail("mc_posix_memalign failed but changed its out pointer");
        if (rc == 0) p = out;
        err = rc;
    } else {
        p = how == MEMALIGN ? mc_memalign(align, size) : mc_aligned_alloc(align, size);
        err = p ? 0 : errno;
    }
    if (p != NULL && impossible(size))
        fail("%s(%zu, %zu) = %p: an impossible size was given", names[how], align, size, (void *)p);
    if (may_fail && p == NULL) {
        if (err != ENOMEM && err != EINVAL)
            fail("%s(%zu, %zu) failed with error %d", names[how], align, size, err);
        return;
    }
    if (bad || impossible(size)) {
        int want = bad ? EINVAL : ENOMEM;
        if (p != NULL || err != want)
            fail("%s(%zu, %zu) = %p (error %d), want NULL with %d", names[how], align, size,
                 (void *)p, err, want);
        return;
    }
    if (may_fail) { /* given after all: do not keep it */
        if ((uintptr_t)p % effective != 0) fail("%s(%zu): %p is misaligned", names[how], align, p);
        mc_free(p);
        return;
    }
    adopt(s, p, size, effective, 0, names[how]);
}

static void do_page_aligned(int s, int pvalloc, size_t size) {
    size_t page = 4096;
    if (too_much(size + page)) return;
    release(s, 0);
    errno = 0;
    unsigned char *p = pvalloc ? mc_pvalloc(size) : mc_valloc(size);
    const char *what = pvalloc ? "mc_pvalloc" : "mc_valloc";
    if (impossible(size) || (pvalloc && size > PTRDIFF_MAX - page))
        return expect_errno(p, ENOMEM, what, size);
    if (pvalloc && p && mc_usable_size(p) < ((size + page - 1) & ~(page - 1)))
        fail("mc_pvalloc(%zu): usable size %zu is not whole pages", size, mc_usable_size(p));
    adopt(s, p, size, page, 0, what);
}

static void reset(void) {
    for (int s = 0; s < SLOTS; s++) release(s, 0);
    live_bytes = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct input in = {data, data + size};
    op_number = 0;
    while (more(&in)) {
        op_number++;
        unsigned op = byte(&in);
        int s = (int)(((op >> 4) ^ byte(&in)) % SLOTS);
        switch (op & 15) {
        case 0:
        case 1:
            do_malloc(s, read_size(&in));
            break;
        case 2: {
            size_t n = read_size(&in);
            do_calloc(s, n, read_size(&in) % 17 ? bytes(&in, 1) % 9 : read_size(&in));
            break;
        }
        case 3:
        case 4:
            do_realloc(s, read_size(&in), 1, 0);
            break;
        case 5: {
            size_t n = read_size(&in);
            do_realloc(s, n, bytes(&in, 1) % 5 ? bytes(&in, 1) % 9 : read_size(&in), 1);
            break;
        }
        case 6:
        case 7: {
            int how = (int)(byte(&in) % 3);
            size_t align = read_alignment(&in);
            do_aligned(s, how, align, read_size(&in));
            break;
        }
        case 8: {
            int pv = (int)(byte(&in) & 1);
            do_page_aligned(s, pv, read_size(&in));
            break;
        }
        case 9:
        case 10:
            release(s, (op & 15) == 10);
            break;
        case 11:
            check_slot(s, "check");
            break;
        case 12:
            if (slots[s].p && mc_usable_size(slots[s].p) != slots[s].usable)
                fail("mc_usable_size(%p) changed", (void *)slots[s].p);
            if (mc_usable_size(NULL) != 0) fail("mc_usable_size(NULL) != 0");
            break;
        case 13:
            mc_collect(byte(&in) & 1);
            break;
        case 14:
            if (byte(&in) % 4 == 0) mc_trim(0);
            break;
        default:
            if (mc_heap_check() != 0) fail("mc_heap_check failed");
            break;
        }
    }
    for (int s = 0; s < SLOTS; s++) check_slot(s, "at the end");
    reset();
    if (mc_heap_check() != 0) fail("mc_heap_check failed after freeing everything");
    return 0;
}
