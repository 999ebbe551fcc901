/* secure.c: the checks of the secure build, libmclone-secure (MCLONE_SECURE=1).
 *
 * The same allocator, with every block carrying what it takes to catch the
 * classic heap errors at the next call that sees the block, and to stop the
 * program there with one line that names the error and the address:
 *
 *   invalid free    free (or realloc) of a pointer that is not the start of a
 *                   live block: every call checks the pointer in full
 *                   (_mc_locate), not only what the fast path can see;
 *   double free     a freed small or medium block carries a keyed mark in its
 *                   second word until malloc hands it out again;
 *   overflow        the last word of every block is a keyed trailer saying
 *                   where the caller's bytes end, and up to MC_SECURE_CANARY
 *                   bytes after them hold a canary; free checks both, so a
 *                   write past the end is caught even inside the block's
 *                   rounding, and malloc_usable_size reports the size asked;
 *   use after free  a freed small or medium block is filled, past its mark,
 *   (writes)        for up to MC_SECURE_FILL bytes; malloc checks the fill
 *                   and the mark before handing the block out again, and
 *                   that the free-list link in its first word points at a
 *                   block of the same page.
 *
 *   a block of the secure build (small or medium; large and huge ones have
 *   only the trailer and canary):
 *
 *   live  | caller's n bytes .............. | canary |   ...   | trailer |
 *   free  | link | mark | fill 0xdf ... (up to MC_SECURE_FILL) ... | freed |
 *
 *   (The freed trailer is the fill itself in a block of up to
 *   MC_SECURE_FILL bytes, a keyed word saying "freed" in a larger one that
 *   free wrote: a second free of a block whose mark a stray write has
 *   wiped is still caught, and never queues the block twice.)
 *
 * The keys come from the process's secret (segment.c), so neither a mark nor
 * a trailer can be forged by a program that does not know it.  All the
 * checks sit above the allocator proper: these functions ask it for n +
 * MC_SECURE_TRAILER bytes and seal the block before returning it. */
#include "internal.h"

/* Only the secure build has these (every call is behind MC_SECURE). */
#if MC_SECURE

#define FILL_WORD   0xdfdfdfdfdfdfdfdfull
#define CANARY_BYTE 0xa5

static uint64_t mark_of(const void *b) {
    return ((uint64_t)_mc_secret * 0x9e3779b97f4a7c15ull) ^ (uintptr_t)b;
}

static uint64_t trailer_of(const void *p, size_t n) {
    return ((uint64_t)_mc_secret * 0xc2b2ae3d27d4eb4full) ^ (uintptr_t)p ^ n;
}

static size_t fill_end(size_t block_size) {
    return block_size < MC_SECURE_FILL ? block_size : MC_SECURE_FILL;
}

/* The last word of a freed block of 24 bytes or more (see the picture
 * above; in one of 16, the mark). */
static uint64_t freed_trailer(const void *p, size_t block_size) {
    return block_size <= MC_SECURE_FILL ? FILL_WORD : trailer_of(p, SIZE_MAX);
}

/* Canary bytes after the caller's n, before the trailer at end. */
static size_t canary_len(size_t n, size_t end) {
    return end - n < MC_SECURE_CANARY ? end - n : MC_SECURE_CANARY;
}

void _mc_secure_fill(mc_block_t *b, size_t block_size) {
    if (block_size < MC_SECURE_MIN) return;
    uint64_t *w = (uint64_t *)b;
    w[1] = mark_of(b);
    for (size_t i = 2; i < fill_end(block_size) / 8; i++) w[i] = FILL_WORD;
}

/* What the secure layer needs to know of a block. */
typedef struct {
    size_t usable; /* bytes from p to the end of its block */
    size_t size;   /* bytes the caller asked for (from the trailer) */
    bool listed;   /* a small or medium block: it has a mark and a fill */
} secure_block_t;

static void block_info(void *p, mc_segment_t *seg, mc_page_t *pg, secure_block_t *sb) {
    if (pg == NULL) {
        sb->usable = mc_huge_usable(seg, p);
        sb->listed = false;
    } else {
        sb->usable = mc_page_block_usable(pg, p);
        sb->listed = pg->kind == MC_KIND_SMALL || pg->kind == MC_KIND_MEDIUM;
    }
}

/* Write the canary after the caller's n bytes and the trailer at the end. */
static void seal(void *p, size_t n, size_t usable) {
    uint8_t *q = p;
    size_t end = usable - MC_SECURE_TRAILER;
    memset(q + n, CANARY_BYTE, canary_len(n, end));
    uint64_t t = trailer_of(p, n);
    memcpy(q + end, &t, sizeof t);
}

/* A freed block's mark and fill must be as free left them. */
static void check_fill(const void *p, size_t block_size, const char *func) {
    const uint64_t *w = p;
    if (mc_unlikely(w[1] != mark_of(p)))
        _mc_fatal("%s(): block %p was written after it was freed (at +8)", func, p);
    for (size_t i = 2; i < fill_end(block_size) / 8; i++)
        if (mc_unlikely(w[i] != FILL_WORD))
            _mc_fatal("%s(): block %p was written after it was freed (at +%zu)", func, p, i * 8);
}

/* A block just taken from a free list: it must be as free left it. */
static void check_free_block(void *p, mc_segment_t *seg, mc_page_t *pg, const char *func) {
    check_fill(p, pg->block_size, func);
    mc_block_t *next = mc_block_next(p);
    if (mc_unlikely(next != NULL && (mc_segment_of(next) != seg || mc_page_of(seg, next) != pg ||
                                     mc_page_block_of(pg, next) != next)))
        _mc_fatal("%s(): the free list after block %p is corrupt (a write after free?)", func, p);
    ((uint64_t *)p)[1] = 0; /* a live block has no mark */
}

/* ---- Quarantine -------------------------------------------------------------------
 * A freed small or medium block does not go back to its page at once: it
 * waits, marked and filled, at the end of a queue of the freeing thread's
 * heap, and leaves from the front once the queue holds more than
 * MCLONE_QUARANTINE_KB.  So a freed block is not handed out again by the
 * next malloc of its size: a second free of it finds the mark whatever was
 * allocated in between, and a write into it while it waits is still caught
 * by malloc when the block is reused.  The queue is linked through
 * the blocks' first words, encoded like free-list links, and each link is
 * checked (a marked block of ours) before it is followed. */
static bool is_quarantined(const mc_block_t *b) {
    mc_segment_t *seg = mc_segment_of(b);
    if (!mc_segmap_contains(seg) || seg->kind != MC_SEGMENT_NORMAL || mc_in_metadata(b))
        return false;
    mc_page_t *pg = mc_page_of(seg, b);
    return (pg->kind == MC_KIND_SMALL || pg->kind == MC_KIND_MEDIUM) &&
           mc_page_block_of(pg, b) == b && ((const uint64_t *)b)[1] == mark_of(b);
}

/* The oldest block leaves the quarantine for its page.  (Its fill is not
 * checked here: malloc checks it before the block is handed out again.) */
static void quarantine_pop(mc_heap_t *heap) {
    mc_block_t *b = heap->quarantine;
    size_t bs = mc_page_of(mc_segment_of(b), b)->block_size;
    mc_block_t *next = mc_block_next(b);
    if (mc_unlikely(b == heap->quarantine_last ? next != NULL || heap->quarantine_bytes != bs
                                               : !is_quarantined(next)))
        _mc_fatal("free(): the quarantine after block %p is corrupt (a write after free?)",
                  (void *)b);
    heap->quarantine = next;
    if (next == NULL) heap->quarantine_last = NULL;
    heap->quarantine_bytes -= bs;
    mc_free_inline(b);
}

static void quarantine_push(mc_heap_t *heap, mc_block_t *b, size_t block_size) {
    mc_block_set_next(b, NULL);
    mc_block_t *last = heap->quarantine_last;
    if (last != NULL) {
        if (mc_unlikely(mc_block_next(last) != NULL))
            _mc_fatal("free(): the quarantine after block %p is corrupt (a write after free?)",
                      (void *)last);
        mc_block_set_next(last, b);
    } else {
        heap->quarantine = b;
    }
    heap->quarantine_last = b;
    heap->quarantine_bytes += block_size;
    size_t limit = (size_t)mc_option(MC_OPTION_QUARANTINE_KB) << 10;
    while (heap->quarantine_bytes > limit) quarantine_pop(heap); /* (0 bytes when empty) */
}

void _mc_secure_quarantine_flush(mc_heap_t *heap) {
    while (heap->quarantine != NULL) quarantine_pop(heap);
}

/* Seal a block the allocator just returned for a request of n bytes. */
static void *secure_finish(void *p, size_t n, const char *func) {
    if (p == NULL) return NULL;
    mc_segment_t *seg = mc_segment_of(p);
    mc_page_t *pg = seg->kind == MC_SEGMENT_HUGE ? NULL : mc_page_of(seg, p);
    secure_block_t sb;
    block_info(p, seg, pg, &sb);
    if (sb.listed) check_free_block(p, seg, pg, func);
    seal(p, n, sb.usable);
    return p;
}

/* The request the allocator sees for n bytes: room for the trailer, and at
 * least two words (link and mark, once the block is freed). */
static bool inner_size(size_t n, size_t *inner) {
    if (mc_unlikely(n > PTRDIFF_MAX - MC_SECURE_MIN)) {
        errno = ENOMEM;
        return false;
    }
    *inner = n + MC_SECURE_TRAILER < MC_SECURE_MIN ? MC_SECURE_MIN : n + MC_SECURE_TRAILER;
    return true;
}

void *_mc_secure_malloc(size_t size) {
    size_t inner;
    if (!inner_size(size, &inner)) return NULL;
    return secure_finish(mc_heap_malloc(mc_heap_get(), inner), size, "malloc");
}

void *_mc_secure_calloc(size_t size) {
    void *p = _mc_secure_malloc(size);
    if (p != NULL) memset(p, 0, size);
    return p;
}

void *_mc_secure_aligned(size_t size, size_t align) {
    size_t inner;
    if (!inner_size(size, &inner)) return NULL;
    return secure_finish(_mc_malloc_aligned(inner, align), size, "aligned_alloc");
}

/* Check a block handed back by the caller; false (after the message) if p
 * is not a live block.  A secure build stops at the first error. */
static bool check_block(void *p, const char *func, mc_where_t *w, secure_block_t *sb) {
    if (!_mc_locate(p, func, w)) return false;
    block_info(p, w->seg, w->page, sb);
    uint8_t *q = p;
    size_t end = sb->usable - MC_SECURE_TRAILER;
    uint64_t t;
    memcpy(&t, q + end, sizeof t);
    if (sb->listed &&
        (((const uint64_t *)p)[1] == mark_of(p) || t == freed_trailer(p, w->page->block_size))) {
        _mc_error_pointer(func, p, NULL);
        return false;
    }
    size_t n = (size_t)(t ^ trailer_of(p, 0));
    if (mc_unlikely(n > end))
        _mc_fatal("%s(): heap overflow: the end of block %p (%zu bytes usable) was overwritten",
                  func, p, end);
    for (size_t i = 0; i < canary_len(n, end); i++)
        if (mc_unlikely(q[n + i] != CANARY_BYTE))
            _mc_fatal("%s(): heap overflow: block %p of %zu bytes was written at +%zu", func, p, n,
                      n + i);
    sb->size = n;
    return true;
}

/* Free a block check_block has passed: mark and fill it, then put it in
 * the quarantine (or, if not small or medium, free it). */
static void release_block(void *p, const mc_where_t *w, const secure_block_t *sb) {
    mc_heap_t *heap = mc_heap_get();
    if (!sb->listed) {
        mc_free_inline(p);
        return;
    }
    size_t bs = w->page->block_size;
    _mc_secure_fill(p, bs);
    /* (Only here, not where pages are carved: that would touch the last OS
     * page of every block carved.) */
    if (bs > MC_SECURE_FILL) ((uint64_t *)p)[bs / 8 - 1] = freed_trailer(p, bs);
    /* (A thread without a heap has no quarantine: the empty heap is shared.
     * Once the option is set to 0, the next free empties what is queued.) */
    if (heap != &_mc_heap_empty &&
        (mc_option(MC_OPTION_QUARANTINE_KB) != 0 || heap->quarantine != NULL))
        quarantine_push(heap, p, bs);
    else
        mc_free_inline(p);
}

void _mc_secure_free(void *p, size_t size, const char *func) {
    if (p == NULL) return;
    int saved = errno;
    mc_where_t w;
    secure_block_t sb;
    if (check_block(p, func, &w, &sb)) {
        if (mc_unlikely(size != SIZE_MAX && size != sb.size))
            _mc_fatal("%s(): block %p was allocated with %zu bytes, not %zu", func, p, sb.size,
                      size);
        release_block(p, &w, &sb);
    }
    errno = saved;
}

size_t _mc_secure_usable(const void *p, const char *func) {
    if (p == NULL) return 0;
    mc_where_t w;
    secure_block_t sb;
    return check_block((void *)p, func, &w, &sb) ? sb.size : 0;
}

/* In place while the block has room (a huge block's room to grow counts)
 * and, when it shrinks, is not more than twice too big; otherwise a new
 * block, a copy and a free, so that each block keeps its trailer at its own
 * end.  As in the release build, a block above a page that grows gets half
 * again as much room as it has bytes, so that a buffer grown a little at a
 * time is copied a few times on its way up, not at every call. */
void *_mc_secure_realloc(void *p, size_t size) {
    mc_where_t w;
    secure_block_t sb;
    size_t inner;
    if (!check_block(p, "realloc", &w, &sb)) {
        errno = EINVAL;
        return NULL;
    }
    if (!inner_size(size, &inner)) return NULL;
    if (inner <= sb.usable && (size >= sb.size || inner >= sb.usable / 2)) {
        seal(p, size, sb.usable);
        return p;
    }
    size_t want = inner, roomy = sb.size + sb.size / 2 + MC_SECURE_TRAILER;
    if (size > sb.size && size > MC_GROW_MIN && roomy > want) want = roomy;
    void *q = secure_finish(mc_heap_malloc(mc_heap_get(), want), size, "realloc");
    if (q == NULL) return NULL;
    memcpy(q, p, sb.size < size ? sb.size : size);
    release_block(p, &w, &sb); /* checked above */
    return q;
}

#endif /* MC_SECURE */
