/* internal.h: what the files of libmclone share, grouped by the file that
 * defines it (lowest layer first), and the inline fast paths of malloc and
 * free.  Names: mc_ public, _mc_ shared between files, static for the rest. */
#ifndef MC_INTERNAL_H
#define MC_INTERNAL_H

#include <errno.h>
#include <string.h>

#include "mclone.h"
#include "os.h"
#include "types.h"

#define mc_likely(x)   __builtin_expect(!!(x), 1)
#define mc_unlikely(x) __builtin_expect(!!(x), 0)
#define mc_noinline    __attribute__((noinline))
#define mc_export      __attribute__((visibility("default")))

/* mc_assert: debug builds only.  mc_check: always on; reports and aborts. */
#define mc_assert(cond)                                                                            \
    do {                                                                                           \
        if (MC_DEBUG >= 1 && mc_unlikely(!(cond))) _mc_assert_fail(#cond, __FILE__, __LINE__);     \
    } while (0)

static inline size_t mc_align_up(size_t n, size_t align) {
    return (n + align - 1) & ~(align - 1);
}
static inline bool mc_is_pow2(size_t x) {
    return x != 0 && (x & (x - 1)) == 0;
}

/* ---- stats.c: messages, statistics, reports -------------------------------- */
_Noreturn void _mc_assert_fail(const char *expr, const char *file, int line);
/* Format (%s %d %u %zu %zx %p %%) into a line and write it to stderr. */
void _mc_message(const char *fmt, ...);
/* The same, prefixed with "mclone: ", then abort: heap corruption. */
_Noreturn void _mc_fatal(const char *fmt, ...);
/* A bad pointer given to func: one line on stderr, then abort (unless the
 * abort_on_error option is 0, in which case the call is ignored).  what says
 * what is wrong; NULL means a double free. */
void _mc_error_pointer(const char *func, const void *p, const char *what);
/* Committed bytes: pages in use, huge blocks, metadata. */
void _mc_stats_committed(long delta);
long _mc_stats_committed_now(void); /* (bytes; may dip below 0 between updates) */
void _mc_stats_print_at_exit(void);

/* ---- options.c ----------------------------------------------------------------- */
extern long _mc_options[MC_OPTION_COUNT];
void _mc_options_init(void);
static inline long mc_option(mc_option_t o) {
    return _mc_options[o];
}

/* ---- segment.c: segments, spans (first fit), the segment map, huge blocks --- */
extern uint16_t _mc_segmap[MC_SEGMAP_ENTRIES]; /* see config.h */
extern uintptr_t _mc_secret;

/* The link in a free block's first word.  The secure build stores it XORed
 * with a key made of the process's secret and the block's own address, so a
 * write into a freed block cannot plant an address malloc would follow: a
 * link overwritten by the program decodes to a pointer the secure checks
 * reject (secure.c).  The release build stores the pointer itself. */
static inline uintptr_t mc_link_key(const mc_block_t *b) {
    return MC_SECURE ? (_mc_secret ^ (uintptr_t)b) * 0x9e3779b97f4a7c15ull : 0;
}
static inline mc_block_t *mc_block_next(const mc_block_t *b) {
    return (mc_block_t *)((uintptr_t)b->next ^ mc_link_key(b));
}
static inline void mc_block_set_next(mc_block_t *b, const mc_block_t *next) {
    b->next = (mc_block_t *)((uintptr_t)next ^ mc_link_key(b));
}

/* The segment of any block: blocks never start at a segment's first byte
 * (slice 0 is metadata), and a huge block starts at most MC_SEGMENT_SIZE after
 * its header, so p - 1 is always inside the header's 4 MiB. */
static inline mc_segment_t *mc_segment_of(const void *p) {
    return (mc_segment_t *)(((uintptr_t)p - 1) & ~(uintptr_t)MC_SEGMENT_MASK);
}

/* The segment map entry of p's segment; 0 (not ours) for anything outside
 * user space, including the "segment" of NULL. */
static inline uint16_t mc_segmap_tag(const void *p) {
    uintptr_t i = ((uintptr_t)p - 1) >> MC_SEGMENT_SHIFT;
    return i < MC_SEGMAP_ENTRIES ? __atomic_load_n(&_mc_segmap[i], __ATOMIC_RELAXED) : 0;
}

/* Is seg one of ours? */
static inline bool mc_segmap_contains(const mc_segment_t *seg) {
    return mc_segmap_tag((const uint8_t *)seg + 1) != 0;
}

void _mc_segmap_set(mc_segment_t *seg, uint16_t tag);

/* The descriptor of the slice holding p, given i = p >> MC_SEGMENT_SHIFT, for
 * a normal segment: segment + 128 * slice index, by arithmetic alone. */
static inline mc_page_t *mc_slice_descriptor(uintptr_t i, const void *p) {
    return (mc_page_t *)((i << MC_SEGMENT_SHIFT) |
                         (((uintptr_t)p >> (MC_SLICE_SHIFT - 7)) & ((MC_SLICES - 1) << 7)));
}

/* p lies in the first slice of its 4 MiB: a normal segment's metadata,
 * where no block is (the header's fields are no descriptor to follow). */
static inline bool mc_in_metadata(const void *p) {
    return ((uintptr_t)p & MC_SEGMENT_MASK) < MC_SLICE_SIZE;
}

/* The page holding p, for a normal segment. */
static inline mc_page_t *mc_page_of(mc_segment_t *seg, const void *p) {
    mc_page_t *d = &seg->pages[((uintptr_t)p - (uintptr_t)seg) >> MC_SLICE_SHIFT];
    return (mc_page_t *)((uint8_t *)d - d->slice_back);
}

static inline mc_segment_t *mc_page_segment(const mc_page_t *pg) {
    return (mc_segment_t *)((uintptr_t)pg & ~(uintptr_t)MC_SEGMENT_MASK);
}

static inline size_t mc_page_index(const mc_page_t *pg) {
    return (size_t)(pg - mc_page_segment(pg)->pages);
}

static inline uint8_t *mc_slice_start(mc_segment_t *seg, size_t idx) {
    return (uint8_t *)seg + idx * MC_SLICE_SIZE;
}

bool _mc_segments_init(void);
/* The lowest slice of a run of n free slices, or -1 (address-ordered first fit). */
int _mc_segment_find_span(const mc_segment_t *seg, size_t n);
/* Mark slices [idx, idx + n) used; returns whether they are known zero. */
bool _mc_segment_take_span(mc_segment_t *seg, size_t idx, size_t n);
/* The remote frees waiting in pg, if still a page of bin of another heap. */
mc_block_t *_mc_segment_take_remote(mc_page_t *pg, size_t bin, const struct mc_heap_s *self);
/* Mark them free again and schedule their purge; returns the deadline set
 * (0 if purged at once or already scheduled earlier). */
uint64_t _mc_segment_free_span(mc_segment_t *seg, size_t idx, size_t n);
/* Purge the dirty free slices if due at now (or all with force); returns
 * bytes purged. */
size_t _mc_segment_purge(mc_segment_t *seg, uint64_t now, bool force);
/* A fresh or cached empty segment, owned by heap; NULL when out of memory. */
mc_segment_t *_mc_segment_acquire(struct mc_heap_s *heap);
/* An empty segment leaves its heap: into the cache, or unmapped. */
void _mc_segment_release(mc_segment_t *seg);
/* A segment with live blocks whose heap is going away. */
void _mc_segment_abandon(mc_segment_t *seg);
/* Take the longest-abandoned segment (now owned by heap), or NULL. */
mc_segment_t *_mc_segment_reclaim_one(struct mc_heap_s *heap);
/* Take it without owning it (to look after it and abandon it again). */
mc_segment_t *_mc_segment_pop_abandoned(void);
/* Cache expiry, purges of cached and abandoned segments; force: all now. */
void _mc_segments_maintain(uint64_t now, bool force);
/* Huge blocks: a mapping each. */
/* growing: for a block that realloc moves up from a smaller one. */
void *_mc_huge_alloc(size_t size, size_t align, bool growing, bool *is_zero);
void _mc_huge_free(mc_segment_t *seg);
void *_mc_huge_realloc(mc_segment_t *seg, size_t size);
/* False once the block was freed (its mapping waits in the cache). */
bool _mc_huge_is_live(const mc_segment_t *seg);
/* About to map fresh memory: purge the caches and abandoned segments now,
 * and tell every heap (through the grow epoch) to purge its free slices. */
void _mc_caches_purge_now(void);
uint32_t _mc_grow_epoch(void);
bool _mc_segment_cache_empty(void);
/* A huge block may use its mapping to the end, up to half again what was
 * last asked and 2 MiB: a block that grew into a larger cached mapping keeps
 * the rest as room to grow (realloc), not as size to report. */
static inline size_t mc_huge_usable(const mc_segment_t *seg, const void *p) {
    size_t whole = seg->size - (size_t)((const uint8_t *)p - (const uint8_t *)seg);
    size_t room = seg->huge_asked + seg->huge_asked / 2 + MC_LARGE_MAX;
    return whole < room ? whole : room;
}
/* Visit every mapped segment under the registry lock (stats, heap map). */
void _mc_segments_visit(void (*visit)(const mc_segment_t *seg, void *arg), void *arg);
size_t _mc_segments_count(size_t *cached, size_t *abandoned);
/* Bytes cut off huge mappings, resident, kept for the next huge block. */
size_t _mc_segments_spare_bytes(void);
size_t _mc_segments_abandoned(void);
void _mc_segments_fork_prepare(void);
void _mc_segments_fork_parent(void);
void _mc_segments_fork_child(void);
bool _mc_segment_is_valid(const mc_segment_t *seg);

/* ---- page.c: one span of blocks and its three free lists ------------------------ */
/* Size classes ("bins"). */
static inline size_t mc_bin_of(size_t size) {
    if (size <= 8) return 1;
    if (size <= 128) return ((size + 15) >> 4) + 1;
    size_t s = size - 1;
    size_t b = 63 - (size_t)__builtin_clzll(s); /* 2^b <= s < 2^(b+1), b >= 7 */
    if (b < MC_BIN_HEADER_LOG) return 10 + (b - 7) * 8 + ((s >> (b - 3)) & 7);
    size_t first = MC_BIN_HEADER_FIRST + (b - MC_BIN_HEADER_LOG) * MC_BIN_HEADER_PER;
    size_t base = (size_t)1 << b;
    if (size <= base + 16) return first;
    if (size <= base + (base >> 4) + 16) return first + 1;
    return first + 2 + ((s >> (b - 3)) & 7);
}
size_t _mc_bin_size(size_t bin);
/* The size to ask for a block of n bytes (a multiple of an alignment of 32
 * or more) so that its bin's blocks are aligned like n: the bin of
 * 2^k + 2^(k-4) + 16 would take some such n but is only 16-byte aligned, so
 * they go to the next bin, 2^k + 2^(k-3), a multiple of every alignment n
 * can have there (n > 2^k + 16 means the alignment is 2^(k-4) or less). */
static inline size_t mc_aligned_size(size_t n) {
    if (n <= MC_SMALL_MAX || n > MC_MEDIUM_MAX) return n;
    size_t bin = mc_bin_of(n);
    return (bin - MC_BIN_HEADER_FIRST) % MC_BIN_HEADER_PER == 1 ? _mc_bin_size(bin + 1) : n;
}
size_t _mc_bin_slices(size_t bin);
void _mc_page_init(mc_page_t *pg, size_t slices, size_t block_size, size_t bin, bool is_zero,
                   struct mc_heap_s *heap);
void _mc_page_init_large(mc_page_t *pg, size_t slices, bool is_zero, struct mc_heap_s *heap);
/* Clear the descriptors of a page's span before its slices go back. */
void _mc_page_clear(mc_page_t *pg);
/* Descriptors [from, to) after pg's become inner slices of its span, or stop
 * being so (a large span that grows or shrinks). */
void _mc_page_set_inner(mc_page_t *pg, size_t from, size_t to);
void _mc_page_clear_inner(mc_page_t *pg, size_t from, size_t to);
/* Make used exact: move the free list to local_free (counting it) and
 * recount after an uncounted refill.  A page that stopped being a head may
 * keep its free list until someone needs its exact count: this walks lists. */
void _mc_page_normalize(mc_page_t *pg);
/* Purge the OS pages holding only free blocks (see types.h); bytes purged. */
size_t _mc_page_punch_holes(mc_page_t *pg);
/* The page ran out of blocks: its holes' blocks go back to free. */
void _mc_page_fill_holes(mc_page_t *pg);
/* Carve more blocks into the free list (capacity < reserved). */
void _mc_page_extend(mc_page_t *pg);
/* Purge the OS pages of the page's span that hold no carved block. */
void _mc_page_purge_tail(mc_page_t *pg, bool madv_free);
/* Refill free (empty) from local_free or thread_free. */
void _mc_page_collect(mc_page_t *pg);
/* Does the page have blocks to hand out without carving (a free list kept
 * from its time as head, or blocks freed since)? */
static inline bool mc_page_has_freed(const mc_page_t *pg) {
    return pg->free != NULL || pg->local_free != NULL ||
           (atomic_load_explicit(&pg->thread_free, memory_order_relaxed) &
            ~(uintptr_t)MC_TF_STATE) != 0;
}
size_t _mc_page_collect_thread_free(mc_page_t *pg);
mc_block_t *_mc_page_take_thread_free(mc_page_t *pg);
void _mc_page_free_remote(mc_page_t *pg, mc_block_t *block);
bool _mc_page_arm_notify(mc_page_t *pg);
bool _mc_page_disarm_notify(mc_page_t *pg);
/* The start of the block holding p (inside pg's span), or NULL if p is not
 * inside a block handed out so far.  Read by freeing threads while the
 * owner may carve more: a block handed out is below any capacity they can
 * see.  No division: see recip in types.h. */
static inline mc_block_t *mc_page_block_of(const mc_page_t *pg, const void *p) {
    const uint8_t *q = p;
    if (q < pg->start) return NULL;
    size_t off = (size_t)(q - pg->start);
    if (off >= (size_t)__atomic_load_n(&pg->capacity, __ATOMIC_RELAXED) * pg->block_size)
        return NULL;
    return (mc_block_t *)(pg->start + ((off * pg->recip) >> MC_RECIP_SHIFT) * pg->block_size);
}

/* Bytes from p to the end of its block.  Pre: p is inside a block. */
static inline size_t mc_page_block_usable(const mc_page_t *pg, const void *p) {
    size_t off = (size_t)((const uint8_t *)p - pg->start);
    return (((off * pg->recip) >> MC_RECIP_SHIFT) + 1) * pg->block_size - off;
}
bool _mc_page_is_valid(const mc_page_t *pg);

/* ---- heap.c: thread heaps, queues, process start, threads and fork -------------- */
extern __thread mc_heap_t *_mc_heap_tls __attribute__((tls_model("initial-exec")));
extern __thread uint16_t _mc_tag_tls __attribute__((tls_model("initial-exec")));
extern mc_heap_t _mc_heap_empty;
extern const mc_page_t _mc_page_empty;

static inline mc_heap_t *mc_heap_get(void) {
    return _mc_heap_tls;
}

/* The calling thread's heap, created (with the process state) on first use;
 * NULL if that fails. */
mc_heap_t *_mc_heap_init_thread(void);
/* A block of bin: from blocks taken back from other heaps' pages, or from
 * the head page of the bin's queue. */
void *_mc_heap_alloc_bin(mc_heap_t *heap, size_t bin);
void *_mc_heap_alloc_large(mc_heap_t *heap, size_t size, bool *is_zero);
/* Grow or shrink a large block in place; false if it cannot. */
bool _mc_heap_resize_large(mc_heap_t *heap, mc_page_t *pg, size_t size);
/* A local free that the fast path could not finish. */
void _mc_heap_free_local(mc_heap_t *heap, mc_page_t *pg, mc_block_t *block);
/* The fast path freed the last block of a page that is not its bin's head. */
void _mc_heap_page_emptied(mc_page_t *pg);
/* Slow-path bookkeeping: notifications, purges, trim requests. */
void _mc_heap_maintain(mc_heap_t *heap);
void _mc_heap_collect(mc_heap_t *heap, bool force);
/* Ask every other heap to trim at its next slow path (heap trims now). */
void _mc_heap_request_trim(mc_heap_t *heap);
size_t _mc_heaps_count(size_t *parked);
bool _mc_heap_is_valid(mc_heap_t *heap);

/* ---- alloc.c: malloc and free, fast paths here, slow paths there ------------------ */
void *_mc_malloc_generic(size_t size, mc_heap_t *heap);
void _mc_free_generic(void *p);
/* free of a block of this thread in a later slice of a multi-slice page. */
void _mc_free_inner(mc_page_t *inner, mc_block_t *b);
void *_mc_malloc_aligned(size_t size, size_t align);
void *_mc_realloc(void *p, size_t size);
void *_mc_calloc(size_t size);
size_t _mc_usable_size(const void *p, const char *func);
void _mc_debug_check_heap(void);
/* Where a pointer handed to free or realloc lies. */
typedef struct mc_where_s {
    mc_segment_t *seg;
    mc_page_t *page;   /* NULL for a huge block */
    mc_block_t *block; /* start of the block holding p */
} mc_where_t;
/* Find the block of p, or report (naming func) what is wrong with it. */
bool _mc_locate(const void *p, const char *func, mc_where_t *w);

/* ---- secure.c: the checks of the secure build (MC_SECURE) ------------------------ */
void *_mc_secure_malloc(size_t size);
void *_mc_secure_calloc(size_t size);
void *_mc_secure_aligned(size_t size, size_t align);
void *_mc_secure_realloc(void *p, size_t size);
/* free(p); size, unless SIZE_MAX, must be the size p was allocated with. */
void _mc_secure_free(void *p, size_t size, const char *func);
size_t _mc_secure_usable(const void *p, const char *func);
/* A block entering a free list other than through free (carved, or taken
 * back from a hole) gets the fill and mark of a freed one. */
void _mc_secure_fill(mc_block_t *b, size_t block_size);
/* Hand every block of heap's quarantine back to its page (thread exit, trim). */
void _mc_secure_quarantine_flush(mc_heap_t *heap);

/* Hand out b, the first block of pg->free.  The next block's line is
 * fetched ahead for the next call: in a cold list (blocks freed long ago, or
 * by other threads) each pop would otherwise wait on a miss; a prefetch
 * never faults, so NULL needs no test. */
static inline void *mc_page_pop(mc_page_t *pg, mc_block_t *b) {
    mc_block_t *next = mc_block_next(b);
    pg->free = next;
    __builtin_prefetch(next, 1);
    return b;
}

/* malloc's fast path: pop the first free block of the page the direct table
 * names for this size.  The empty page (no free block) stands in for "no page
 * yet", and the empty heap for "no heap yet", so this has one branch.  (The
 * page counted its free blocks as used when they entered the list.) */
static inline void *mc_heap_malloc_small(mc_heap_t *heap, size_t size) {
    mc_page_t *pg = heap->direct[(size + 7) >> 3];
    mc_block_t *b = pg->free;
    if (mc_unlikely(b == NULL)) return _mc_malloc_generic(size, heap);
    return mc_page_pop(pg, b);
}

static inline void *mc_heap_malloc(mc_heap_t *heap, size_t size) {
    if (MC_DEBUG >= 3) _mc_debug_check_heap();
    if (mc_likely(size <= MC_SMALL_MAX)) return mc_heap_malloc_small(heap, size);
    return _mc_malloc_generic(size, heap);
}

/* free's fast path: the segment map says p is in a segment owned by this
 * thread; the page's descriptor (found by address arithmetic alone) has no
 * flag (not full, not a multi-slice page's inner slice, no inner-aligned
 * block; the segment header, in slice 0's place, has one too), p is not
 * the block just freed, and p is a multiple of 8 like every block's start:
 * push p on local_free.  All else, NULL and bad pointers included, goes to
 * the slow path. */
static inline void mc_free_inline(void *p) {
    if (MC_DEBUG >= 3) _mc_debug_check_heap();
    /* p itself, not p - 1, picks the map entry: a block of a normal segment
     * never starts at the segment's first byte, and the only blocks that do
     * (huge ones aligned to 4 MiB or more) find a 0 entry there and go to the
     * slow path, which looks at p - 1. */
    uintptr_t i = (uintptr_t)p >> MC_SEGMENT_SHIFT;
    if (mc_likely(i < MC_SEGMAP_ENTRIES) &&
        mc_likely(__atomic_load_n(&_mc_segmap[i], __ATOMIC_RELAXED) == _mc_tag_tls)) {
        mc_page_t *pg = mc_slice_descriptor(i, p);
        mc_block_t *b = (mc_block_t *)p, *head = pg->local_free;
        if (mc_likely(pg->flags == 0 && b != head && ((uintptr_t)p & 7) == 0)) {
            mc_block_set_next(b, head);
            pg->local_free = b;
            if (mc_unlikely(--pg->used == 0)) _mc_heap_page_emptied(pg);
            return;
        }
        if (pg->flags == MC_PAGE_INNER) return _mc_free_inner(pg, b);
    }
    _mc_free_generic(p);
}

#endif
