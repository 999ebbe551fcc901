/* alloc.c: malloc and free.  The fast paths are inline in internal.h; here
 * are their slow paths, and what is built on them: calloc, realloc, aligned
 * allocation and usable size, with the checks that turn a bad pointer into a
 * clear message instead of a corrupted heap.
 *
 *   malloc(n) -- n <= 1 KiB: pop heap->direct[(n+7)/8]->free ------------> block
 *      \-- empty list, or n > 1 KiB: _mc_malloc_generic
 *            |-- first call of the thread: create its heap (and the process state)
 *            |-- maintenance: notified pages, purges due, trim requests
 *            |-- n <= 128 KiB: a page of the bin with a free block (collect,
 *            |                 extend, or a new span by first fit) -------> block
 *            |-- n <= 2 MiB:   a span of its own -----------------------> block
 *            \-- otherwise:    a mapping of its own (huge) -------------> block
 *
 *   free(p) -- p in a segment of ours, owned by this thread, page not full:
 *      |       push on the page's local_free -----------------------------> done
 *      \-- _mc_free_generic: first, a block's start in a small or medium page:
 *          another thread's: atomic push on the page's thread_free ------> done
 *          this thread's (a full page): push on local_free ---------------> done
 *          then NULL, bad pointers, huge blocks, inner-aligned blocks, and
 *          the other remote frees (the same push, checked in full). */
#include "internal.h"

/* ---- malloc ------------------------------------------------------------------------ */
static void *heap_alloc(mc_heap_t *heap, size_t size, size_t align, bool *is_zero) {
    *is_zero = false;
    if (align <= MC_MAX_ALIGN) {
        if (size <= MC_MEDIUM_MAX) {
            return _mc_heap_alloc_bin(heap, mc_bin_of(size));
        }
        if (size <= MC_LARGE_MAX) return _mc_heap_alloc_large(heap, size, is_zero);
    }
    return _mc_huge_alloc(size, align, false, is_zero);
}

/* The slow path of every allocation.  An align above MC_MAX_ALIGN asks for a
 * huge block at that alignment. */
static void *malloc_slow(mc_heap_t *heap, size_t size, size_t align, bool *is_zero) {
    if (mc_unlikely(size > PTRDIFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    if (mc_unlikely(heap == &_mc_heap_empty)) {
        heap = _mc_heap_init_thread();
        if (heap == NULL) {
            errno = ENOMEM;
            return NULL;
        }
    }
    _mc_heap_maintain(heap);
    void *p = heap_alloc(heap, size, align, is_zero);
    if (mc_unlikely(p == NULL)) errno = ENOMEM;
    return p;
}

mc_noinline void *_mc_malloc_generic(size_t size, mc_heap_t *heap) {
    /* The common slow paths, kept short: a medium block from the head page
     * of its bin, or a page whose free list ran out but which has blocks
     * freed since: refill and go (unless maintenance or notifications are
     * due, which the full slow path does). */
    if (size <= MC_MEDIUM_MAX) {
        mc_page_t *pg = size <= MC_SMALL_MAX ? heap->direct[(size + 7) >> 3]
                                             : heap->queues[mc_bin_of(size)].first;
        if (pg != NULL) {
            mc_block_t *b = pg->free;
            if (b == NULL && heap->maintain_in > 1 &&
                atomic_load_explicit(&heap->notified, memory_order_relaxed) == NULL &&
                mc_page_has_freed(pg)) {
                heap->maintain_in--;
                _mc_page_collect(pg);
                b = pg->free;
            }
            if (b != NULL) return mc_page_pop(pg, b);
        }
    }
    bool is_zero;
    return malloc_slow(heap, size, MC_MAX_ALIGN, &is_zero);
}

void *_mc_calloc(size_t size) {
    mc_heap_t *heap = mc_heap_get();
    void *p;
    bool is_zero = false;
    if (mc_likely(size <= MC_SMALL_MAX)) {
        p = mc_heap_malloc(heap, size);
    } else {
        if (MC_DEBUG >= 3) _mc_debug_check_heap();
        p = malloc_slow(heap, size, MC_MAX_ALIGN, &is_zero);
    }
    /* Large spans fresh from the OS (or purged) and huge blocks are known to
     * be zero: not writing them keeps them out of RAM until used. */
    if (p != NULL && !is_zero) memset(p, 0, size);
    return p;
}

/* ---- Checking pointers ----------------------------------------------------------------
 * Find the page and block of p, or report what is wrong with it. */
bool _mc_locate(const void *p, const char *func, mc_where_t *w) {
    w->seg = mc_segment_of(p);
    w->page = NULL;
    if (mc_unlikely(!mc_segmap_contains(w->seg))) {
        _mc_error_pointer(func, p, "not allocated by malloc-clone");
        return false;
    }
    if (w->seg->kind == MC_SEGMENT_HUGE) {
        if (mc_unlikely(!_mc_huge_is_live(w->seg))) {
            _mc_error_pointer(func, p, NULL);
            return false;
        }
        if (mc_unlikely(p != w->seg->huge_block)) {
            _mc_error_pointer(func, p, "not the start of an allocated block");
            return false;
        }
        w->block = (mc_block_t *)w->seg->huge_block;
        return true;
    }
    /* (p at a segment's very start has the segment before it as w->seg.) */
    size_t off = (size_t)((uintptr_t)p - (uintptr_t)w->seg);
    if (mc_unlikely(off < MC_SLICE_SIZE || off >= MC_SEGMENT_SIZE)) {
        _mc_error_pointer(func, p, "not allocated by malloc-clone (segment metadata)");
        return false;
    }
    w->page = mc_page_of(w->seg, p);
    if (mc_unlikely(w->page->kind == MC_KIND_NONE)) {
        _mc_error_pointer(func, p, "not an allocated block (double free?)");
        return false;
    }
    w->block = mc_page_block_of(w->page, p);
    if (mc_unlikely(w->block == NULL ||
                    ((void *)w->block != p && !(w->page->flags & MC_PAGE_HAS_ALIGNED)))) {
        _mc_error_pointer(func, p, "not the start of an allocated block");
        return false;
    }
    return true;
}

/* ---- free --------------------------------------------------------------------------------- */
/* The page of p, if p is the start of a block of a small or medium page in
 * a segment some thread owns, and that owner's map tag in *owner; NULL for
 * all else, which _mc_locate sorts out.  Read from the segment map and the
 * descriptor's second line only (fields that stay put while the block
 * lives, so any thread may read them): the short paths of free and of
 * malloc_usable_size. */
static inline mc_page_t *owned_block_page(const void *p, uint16_t *owner) {
    uintptr_t i = (uintptr_t)p >> MC_SEGMENT_SHIFT;
    if (mc_unlikely(i >= MC_SEGMAP_ENTRIES)) return NULL;
    uint16_t tag = __atomic_load_n(&_mc_segmap[i], __ATOMIC_RELAXED);
    if (tag < MC_TAG_FIRST || mc_unlikely(mc_in_metadata(p))) return NULL;
    mc_page_t *pg = mc_slice_descriptor(i, p);
    pg = (mc_page_t *)((uint8_t *)pg - pg->slice_back);
    if (mc_unlikely(pg->kind != MC_KIND_SMALL && pg->kind != MC_KIND_MEDIUM)) return NULL;
    if (mc_unlikely((const void *)mc_page_block_of(pg, p) != p)) return NULL;
    *owner = tag;
    return pg;
}

/* The common frees that the fast path leaves, without the segment header,
 * errno or the full check (the checks are those of _mc_locate for such a
 * block: a page in use, p the start of one of its blocks):
 *   - a block of another thread's small or medium page: pushed on its
 *     thread_free, reading only the descriptor's second line (the line the
 *     push writes anyway);
 *   - a block of the thread's own page that the fast path did not take (one
 *     in the full queue, mostly): freed locally.
 * Everything else (a pointer that is not a block's start, the head of a
 * free list: a double free) is left to the caller. */
static bool free_short(void *p) {
    uint16_t owner;
    mc_page_t *pg = owned_block_page(p, &owner);
    if (pg == NULL) return false;
    mc_heap_t *heap = mc_heap_get();
    if (owner == _mc_tag_tls) {
        if (mc_unlikely(p == pg->local_free || p == pg->free)) return false;
        _mc_heap_free_local(heap, pg, p);
        return true;
    }
    /* (Read before the push: once pushed, the block may be collected and
     * its page released.) */
    uint16_t bin = pg->remote_bin;
    _mc_page_free_remote(pg, p);
    if (bin != 0 && heap != &_mc_heap_empty) heap->foreign_page[bin] = pg;
    return true;
}

mc_noinline void _mc_free_generic(void *p) {
    if (free_short(p)) return;
    if (p == NULL) return;
    int saved = errno;
    mc_where_t w;
    if (_mc_locate(p, "free", &w)) {
        if (w.page == NULL) {
            _mc_huge_free(w.seg);
        } else {
            mc_heap_t *heap = mc_heap_get();
            mc_page_t *pg = w.page;
            if (atomic_load_explicit(&w.seg->heap, memory_order_relaxed) == heap) {
                if (mc_unlikely(w.block == pg->local_free || w.block == pg->free))
                    _mc_error_pointer("free", p, NULL);
                else
                    _mc_heap_free_local(heap, pg, w.block);
            } else {
                /* (Read before the push: once pushed, the block may be
                 * collected and its page released.) */
                uint16_t bin = pg->remote_bin;
                _mc_page_free_remote(pg, w.block);
                if (bin != 0 && heap != &_mc_heap_empty) heap->foreign_page[bin] = pg;
            }
        }
    }
    errno = saved;
}

mc_noinline void _mc_free_inner(mc_page_t *inner, mc_block_t *b) {
    mc_page_t *pg = (mc_page_t *)((uint8_t *)inner - inner->slice_back);
    if (mc_likely(pg->flags == 0 && b != pg->local_free && mc_page_block_of(pg, b) == b)) {
        mc_block_set_next(b, pg->local_free);
        pg->local_free = b;
        if (mc_unlikely(--pg->used == 0)) _mc_heap_page_emptied(pg);
        return;
    }
    _mc_free_generic(b);
}

/* ---- Usable size ----------------------------------------------------------------- */
static mc_noinline size_t usable_size_slow(const void *p, const char *func) {
    if (p == NULL) return 0;
    mc_where_t w;
    if (!_mc_locate(p, func, &w)) return 0;
    if (w.page == NULL) return mc_huge_usable(w.seg, p);
    return mc_page_block_usable(w.page, p);
}

/* Programs that keep their own count of the memory they use (redis) ask
 * this on every malloc and free, so the common case goes without a call:
 * the start of a block of a small or medium page in a segment some thread
 * owns (owned_block_page).  All else (NULL and bad pointers included) is
 * the slow path's. */
size_t _mc_usable_size(const void *p, const char *func) {
    uint16_t owner;
    const mc_page_t *pg = owned_block_page(p, &owner);
    if (mc_likely(pg != NULL)) return pg->block_size;
    return usable_size_slow(p, func);
}

/* ---- Aligned allocation ------------------------------------------------------------------------
 * Pages start on a 64 KiB slice boundary and a bin's blocks are multiples of
 * its alignment, so for alignments up to 64 KiB, rounding the size up to the
 * alignment is enough (past one bin that is not: mc_aligned_size): the bin
 * (or large span) is aligned by construction.
 * Larger alignments take a large span with room to slide, or a huge block
 * mapped at the alignment. */
void *_mc_malloc_aligned(size_t size, size_t align) {
    mc_heap_t *heap = mc_heap_get();
    if (align <= MC_MAX_ALIGN) return mc_heap_malloc(heap, size < align ? align : size);
    size_t n = mc_align_up(size != 0 ? size : 1, align);
    if (mc_unlikely(n < size || n > PTRDIFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    if (align <= MC_SLICE_SIZE && n <= MC_LARGE_MAX)
        return mc_heap_malloc(heap, mc_aligned_size(n));
    bool is_zero;
    /* A span starts on a slice: the aligned address is at most
     * align - MC_SLICE_SIZE bytes into it. */
    size_t need = size < MC_MAX_ALIGN ? MC_MAX_ALIGN : size; /* a block, even for 0 */
    if (align > MC_SLICE_SIZE && align < MC_LARGE_MAX &&
        need <= MC_LARGE_MAX - align + MC_SLICE_SIZE) {
        size_t total = need + align - MC_SLICE_SIZE;
        if (total <= MC_MEDIUM_MAX) total = MC_MEDIUM_MAX + 1; /* a span: slice-aligned */
        uint8_t *p = malloc_slow(heap, total, MC_MAX_ALIGN, &is_zero);
        if (p == NULL) return NULL;
        uint8_t *q = (uint8_t *)mc_align_up((uintptr_t)p, align);
        if (q != p) mc_page_of(mc_segment_of(p), p)->flags |= MC_PAGE_HAS_ALIGNED;
        return q;
    }
    return malloc_slow(heap, size, align, &is_zero);
}

/* ---- realloc ------------------------------------------------------------------------------------
 * Pre: p != NULL, 0 < size <= PTRDIFF_MAX.  In place when the block is big
 * enough and not more than twice too big, when a large span can grow or
 * shrink in its segment, or when a huge mapping can be remapped; otherwise
 * a new block, a copy, and a free.  On failure p is untouched. */
void *_mc_realloc(void *p, size_t size) {
    mc_heap_t *heap = mc_heap_get();
    size_t usable;
    uint16_t owner;
    const mc_page_t *pg = owned_block_page(p, &owner);
    if (mc_likely(pg != NULL)) { /* the start of a small or medium block */
        usable = pg->block_size;
        if (size <= usable && size >= usable / 2) return p;
    } else {
        mc_where_t w;
        if (!_mc_locate(p, "realloc", &w)) {
            errno = EINVAL;
            return NULL;
        }
        usable = w.page == NULL ? mc_huge_usable(w.seg, p) : mc_page_block_usable(w.page, p);
        if (w.page == NULL) {
            if (size > MC_LARGE_MAX) {
                void *q = _mc_huge_realloc(w.seg, size);
                if (q != NULL) return q;
                /* The mapping could neither grow nor move (mremap refused,
                 * the map count at its limit...): a new block and a copy,
                 * below. */
            }
        } else if (size <= usable && size >= usable / 2) {
            return p;
        } else if (w.page->kind == MC_KIND_LARGE && (void *)w.page->start == p &&
                   size > MC_MEDIUM_MAX && size <= MC_LARGE_MAX &&
                   _mc_heap_resize_large(heap, w.page, size)) {
            return p;
        }
    }
    void *q;
    if (size > MC_LARGE_MAX && size > usable) { /* growing into a huge block */
        bool is_zero;
        q = _mc_huge_alloc(size, MC_MAX_ALIGN, true, &is_zero);
        if (q == NULL) errno = ENOMEM;
    } else {
        /* A block above a page that grows gets half again as much room, so
         * that a buffer grown a little at a time moves (and copies) a few
         * times on its way up, not once per size class: the room it does not
         * use is address space, not resident memory. */
        size_t want = size;
        if (size > usable && size > MC_GROW_MIN) {
            size_t roomy = usable + usable / 2;
            if (roomy > want) want = roomy < MC_LARGE_MAX ? roomy : MC_LARGE_MAX;
        }
        q = mc_heap_malloc(heap, want);
    }
    if (q == NULL) return NULL;
    memcpy(q, p, usable < size ? usable : size);
    mc_free_inline(p);
    return q;
}

/* ---- Debug ------------------------------------------------------------------------------- */
void _mc_debug_check_heap(void) {
    if (!_mc_heap_is_valid(mc_heap_get())) _mc_fatal("heap check failed (see the line above)");
}
