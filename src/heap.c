/* heap.c: one heap per thread.  A heap owns segments, keeps a queue of its
 * pages per bin (the first page of each queue is where malloc allocates; the
 * direct table points at it), a queue of full pages, and the list of full
 * pages that other threads have freed into.  Here too: process start-up,
 * thread start and exit (exit parks a small heap for the next thread, or
 * abandons the heap's segments to whoever needs memory next), reclaiming
 * abandoned segments, paced maintenance (purges, trim requests), and the
 * fork handlers. */
#include "internal.h"

const mc_page_t _mc_page_empty;
mc_heap_t _mc_heap_empty = {
    .direct = {[0 ... MC_DIRECT_COUNT - 1] = (mc_page_t *)&_mc_page_empty},
};
__thread mc_heap_t *_mc_heap_tls __attribute__((tls_model("initial-exec"))) = &_mc_heap_empty;
__thread uint16_t _mc_tag_tls __attribute__((tls_model("initial-exec"))) = MC_TAG_NOBODY;

/* How many heaps are live, and the pool of heaps of exited threads (heaps
 * are never unmapped: a remote free may still read a page's heap pointer). */
static mc_lock_t heaps_lock;
static mc_heap_t *heaps_pool;
static mc_heap_t *heaps_parked; /* newest first, linked by pool_next (see "Parked heaps") */
static _Atomic size_t heaps_parked_count;
static size_t heaps_live;
static uint8_t *heaps_chunk;
static size_t heaps_chunk_left;
static uint32_t heaps_next_tag = MC_TAG_FIRST;

static _Atomic uint32_t trim_epoch;
static _Atomic uint64_t visited_at; /* when an abandoned segment was last visited (ms) */

static void heap_page_free(mc_heap_t *heap, mc_page_t *pg);
static void heap_drain_notified(mc_heap_t *heap);
static void heap_purge(mc_heap_t *heap, uint64_t now, bool force);
static bool heaps_unpark(uint64_t now, bool all);

/* ---- Queues ------------------------------------------------------------------------ */
static void queue_link_back(mc_page_queue_t *q, mc_page_t *pg) {
    pg->next = NULL;
    pg->prev = q->last;
    if (q->last)
        q->last->next = pg;
    else
        q->first = pg;
    q->last = pg;
    q->count++;
}

static void queue_unlink(mc_page_queue_t *q, mc_page_t *pg) {
    if (pg->prev)
        pg->prev->next = pg->next;
    else
        q->first = pg->next;
    if (pg->next)
        pg->next->prev = pg->prev;
    else
        q->last = pg->prev;
    pg->next = pg->prev = NULL;
    q->count--;
}

/* Point the direct-table entries of a small bin at its first page. */
static void direct_update(mc_heap_t *heap, size_t bin) {
    if (bin >= MC_BIN_HEADER_FIRST) return; /* a medium bin (the first is 2^10 + 16) */
    size_t size = _mc_bin_size(bin);
    mc_page_t *pg = heap->queues[bin].first;
    if (pg == NULL) pg = (mc_page_t *)&_mc_page_empty;
    size_t lo = bin == 1 ? 0 : _mc_bin_size(bin - 1) / 8 + 1;
    for (size_t w = lo; w <= size / 8; w++) heap->direct[w] = pg;
}

/* The head of each bin queue is pinned: its used count holds one extra, so
 * the fast path never sees it empty and never releases it. */
static void page_pin(mc_page_t *pg) {
    pg->pinned = 1;
    pg->used++;
}

static void page_unpin(mc_page_t *pg) {
    pg->pinned = 0;
    pg->used--;
}

static void bin_push_back(mc_heap_t *heap, mc_page_t *pg) {
    mc_page_queue_t *q = &heap->queues[pg->bin];
    queue_link_back(q, pg);
    if (q->first == pg) {
        page_pin(pg);
        direct_update(heap, pg->bin);
    }
}

/* Take a page out of its bin queue; the caller decides its fate (used may
 * have dropped to 0 if it was the pinned head).  A former head keeps its
 * free list (counted in used) until normalized. */
static void bin_remove(mc_heap_t *heap, mc_page_t *pg) {
    mc_page_queue_t *q = &heap->queues[pg->bin];
    bool head = q->first == pg;
    queue_unlink(q, pg);
    if (head) {
        if (pg->pinned) page_unpin(pg);
        if (q->first) page_pin(q->first);
        direct_update(heap, pg->bin);
    }
}

static void full_push(mc_heap_t *heap, mc_page_t *pg) {
    /* Large pages keep the flag for life: no store to a byte that other
     * threads holding the page's block read (locate, MC_PAGE_HAS_ALIGNED). */
    if (!(pg->flags & MC_PAGE_IN_FULL)) pg->flags |= MC_PAGE_IN_FULL;
    queue_link_back(&heap->queues[MC_BIN_FULL], pg);
}

static void full_remove(mc_heap_t *heap, mc_page_t *pg) {
    pg->flags &= (uint8_t)~MC_PAGE_IN_FULL;
    queue_unlink(&heap->queues[MC_BIN_FULL], pg);
}

/* Remove a page from whichever queue holds it. */
static void queue_remove_any(mc_heap_t *heap, mc_page_t *pg) {
    if (pg->flags & MC_PAGE_IN_FULL)
        full_remove(heap, pg);
    else
        bin_remove(heap, pg);
}

/* A full page that may have free blocks again (collected, or notified):
 * free it if empty, move it back to its bin if it has blocks, else keep it
 * full and armed. */
static void full_page_recheck(mc_heap_t *heap, mc_page_t *pg) {
    for (;;) {
        _mc_page_collect_thread_free(pg);
        if (pg->used == 0) {
            full_remove(heap, pg);
            heap_page_free(heap, pg);
            return;
        }
        if (pg->kind != MC_KIND_LARGE &&
            (pg->free || pg->local_free || pg->capacity < pg->reserved)) {
            full_remove(heap, pg);
            bin_push_back(heap, pg);
            return;
        }
        if (_mc_page_arm_notify(pg)) return;
    }
}

/* ---- Segments of a heap ---------------------------------------------------------------- */
static void heap_note_purge(mc_heap_t *heap, uint64_t at) {
    if (at != 0 && (heap->purge_at == 0 || at < heap->purge_at)) heap->purge_at = at;
}

static void heap_segment_add(mc_heap_t *heap, mc_segment_t *seg) {
    mc_segment_t *prev = NULL, *cur = heap->segments;
    while (cur != NULL && cur < seg) {
        prev = cur;
        cur = cur->next;
    }
    seg->prev = prev;
    seg->next = cur;
    if (cur) cur->prev = seg;
    if (prev)
        prev->next = seg;
    else
        heap->segments = seg;
    heap->segment_count++;
    if (seg->free_map == MC_SEGMENT_ALL_FREE) heap->empty_segments++;
    heap_note_purge(heap, seg->purge_at);
}

static void heap_segment_remove(mc_heap_t *heap, mc_segment_t *seg) {
    if (seg->prev)
        seg->prev->next = seg->next;
    else
        heap->segments = seg->next;
    if (seg->next) seg->next->prev = seg->prev;
    seg->next = seg->prev = NULL;
    heap->segment_count--;
    if (seg->free_map == MC_SEGMENT_ALL_FREE) heap->empty_segments--;
}

/* A segment became empty: keep one empty segment for the next page, hand
 * the others to the segment cache. */
static void heap_segment_emptied(mc_heap_t *heap, mc_segment_t *seg) {
    heap->empty_segments++;
    if (heap->empty_segments > 1) {
        heap_segment_remove(heap, seg);
        _mc_segment_release(seg);
    }
}

/* A page's span goes back to its segment.  Pre: the page is in no queue and
 * has no live block. */
static void heap_page_free(mc_heap_t *heap, mc_page_t *pg) {
    mc_assert(pg->used == 0 && !(pg->flags & MC_PAGE_IN_FULL));
    mc_segment_t *seg = mc_page_segment(pg);
    if (MC_DEBUG >= 2) mc_assert(_mc_segment_is_valid(seg));
    size_t idx = mc_page_index(pg), n = pg->slice_count;
    _mc_page_clear(pg);
    heap_note_purge(heap, _mc_segment_free_span(seg, idx, n));
    if (seg->free_map == MC_SEGMENT_ALL_FREE) heap_segment_emptied(heap, seg);
}

/* Adopt one abandoned segment: its pages join this heap's queues, after
 * collecting what other threads freed into them meanwhile.  Empty pages are
 * freed last: freeing the last one may release the segment itself. */
static bool heap_reclaim(mc_heap_t *heap) {
    mc_segment_t *seg = _mc_segment_reclaim_one(heap);
    if (seg == NULL) return false;
    heap_segment_add(heap, seg);
    mc_page_t *empty[MC_SLICES];
    size_t nempty = 0;
    size_t i = 1;
    while (i < MC_SLICES_END) {
        mc_page_t *pg = &seg->pages[i];
        if (seg->free_map & ((uint64_t)1 << i)) {
            i++;
            continue;
        }
        i += pg->slice_count;
        mc_assert(!pg->pinned && pg->notify_next == NULL);
        atomic_store_explicit(&pg->heap, heap, memory_order_release);
        /* A large page stays IN_FULL (it goes back to the full queue): other
         * threads may be reading flags through a live block of it. */
        if (pg->kind != MC_KIND_LARGE) pg->flags &= (uint8_t)~MC_PAGE_IN_FULL;
        pg->next = pg->prev = NULL;
        /* A kept free list stays: used counts it, so such a page is not
         * taken for empty, and it can hand those blocks out as a head. */
        for (;;) {
            _mc_page_collect_thread_free(pg);
            if (pg->used == 0) {
                pg->flags &= (uint8_t)~MC_PAGE_IN_FULL; /* no block left to read it */
                empty[nempty++] = pg;
                break;
            }
            if (pg->kind != MC_KIND_LARGE &&
                (pg->free || pg->local_free || pg->capacity < pg->reserved)) {
                bin_push_back(heap, pg);
                break;
            }
            if (_mc_page_arm_notify(pg)) {
                full_push(heap, pg);
                break;
            }
        }
    }
    for (size_t k = 0; k < nempty; k++) heap_page_free(heap, empty[k]);
    return true;
}

/* Look after one abandoned segment without adopting it (a thread that
 * does not need the space should not own it: what others free into pages it
 * never allocates from would wait there for good).  Collect what other
 * threads freed into its pages, return the empty pages' spans, and release
 * the segment if nothing is left in it; otherwise it goes back to the end of
 * the abandoned list. */
static void heap_visit_abandoned(void) {
    mc_segment_t *seg = _mc_segment_pop_abandoned();
    if (seg == NULL) return;
    size_t i = 1;
    while (i < MC_SLICES_END) {
        mc_page_t *pg = &seg->pages[i];
        if (seg->free_map & ((uint64_t)1 << i)) {
            i++;
            continue;
        }
        i += pg->slice_count;
        _mc_page_normalize(pg);
        _mc_page_collect_thread_free(pg);
        if (pg->used == 0) {
            size_t idx = mc_page_index(pg), n = pg->slice_count;
            _mc_page_clear(pg);
            _mc_segment_free_span(seg, idx, n);
        }
    }
    if (seg->free_map == MC_SEGMENT_ALL_FREE)
        _mc_segment_release(seg);
    else
        _mc_segment_abandon(seg);
}

/* Punch holes in every page behind a bin head (heads keep their memory:
 * they are where allocation happens). */
static void heap_punch_holes(mc_heap_t *heap) {
    for (size_t bin = 1; bin < MC_BIN_COUNT; bin++) {
        mc_page_t *head = heap->queues[bin].first;
        if (head == NULL) continue;
        for (mc_page_t *pg = head->next, *next; pg != NULL; pg = next) {
            next = pg->next;
            _mc_page_punch_holes(pg);
            if (pg->used == 0) { /* the remote frees it collected emptied it */
                bin_remove(heap, pg);
                heap_page_free(heap, pg);
            }
        }
    }
}

/* A new page on slices that may still be resident (freed, not purged yet)
 * carves its first blocks there; the rest of the span, idle until carving
 * reaches it, still holds the blocks of the slices' last page.  In the
 * bench's prodcons, with pages of 16 classes emptying and starting again,
 * such ends were 0.3-0.45 MiB of a 4.6 MiB peak.  So a new page purges
 * that end at once, as long as its heap has a purge to spend: it earns one
 * every MC_TAIL_PURGE_EVERY_MS and keeps up to MC_TAIL_PURGE_BURST.
 * Unbounded, a loop that fills pages of one size, frees them and fills
 * pages of another size on the same slices took a page fault per OS page
 * and round and ran 30 times slower; with the bound it takes about 16
 * page faults per 4 ms, and its time does not measurably change (nor does
 * prodcons's, for a peak 0.3-0.4 MiB lower); with medium blocks, whose
 * spans are longer, such a loop ran 5% slower.  The time is the heap's
 * clock of its last maintenance: a clock read per new page cost that loop
 * 8% by itself. */
static void heap_purge_tail(mc_heap_t *heap, mc_page_t *pg) {
    long delay = mc_option(MC_OPTION_PURGE_DELAY_MS);
    if (pg->capacity == pg->reserved || delay < 0) return;
    if (delay > 0) {
        uint64_t now = heap->maintained_at; /* no clock read per page */
        uint64_t earned = (now - heap->tails_at) / MC_TAIL_PURGE_EVERY_MS;
        if (earned > 0) {
            uint64_t saved = heap->tail_purges + earned;
            heap->tail_purges = saved < MC_TAIL_PURGE_BURST ? saved : MC_TAIL_PURGE_BURST;
            heap->tails_at = now;
        }
        if (heap->tail_purges == 0) return;
        heap->tail_purges--;
    }
    _mc_page_purge_tail(pg, mc_option(MC_OPTION_PURGE_MADV_FREE) != 0);
}

/* n free slices in one of the heap's segments, in address order; else from
 * an abandoned segment, the segment cache, or the OS. */
static mc_page_t *heap_alloc_span(mc_heap_t *heap, size_t n, bool *is_zero) {
    for (;;) {
        for (mc_segment_t *seg = heap->segments; seg != NULL; seg = seg->next) {
            if ((size_t)__builtin_popcountll(seg->free_map) < n) continue;
            int idx = _mc_segment_find_span(seg, n);
            if (idx < 0) continue;
            if (seg->free_map == MC_SEGMENT_ALL_FREE) heap->empty_segments--;
            *is_zero = _mc_segment_take_span(seg, (size_t)idx, n);
            return &seg->pages[idx];
        }
        if (heap_reclaim(heap)) continue;
        if (heaps_unpark(0, true)) continue; /* their segments can be reclaimed */
        /* About to grow: first give back the free slices that could not
         * serve this span, and the free parts of mostly empty pages (at most
         * every MC_PUNCH_EVERY_MS: in a program that only grows, looking at
         * every page at every new segment is work for nothing). */
        if (_mc_segment_cache_empty()) {
            heap_purge(heap, 0, true);
            uint64_t now = _mc_os_now_ms();
            if (now - heap->punched_at >= MC_PUNCH_EVERY_MS) {
                heap->punched_at = now;
                heap_punch_holes(heap);
            }
        }
        mc_segment_t *seg = _mc_segment_acquire(heap);
        if (seg == NULL) return NULL;
        heap_segment_add(heap, seg);
    }
}

/* ---- Blocks of other threads ---------------------------------------------------------------
 * Each thread's pages serve only its own mallocs.  When two threads pass
 * blocks back and forth (one allocates what the other frees, and the other
 * way round), how many each holds live swings with how they interleave: a
 * thread that runs ahead allocates fresh memory while the blocks it frees
 * wait, free, in the other thread's pages.  So a heap remembers, per bin,
 * the last page of another heap it freed into, and before it touches fresh
 * memory for that bin it takes the blocks waiting in that page's
 * thread_free list (one atomic exchange) and hands them out first.  They
 * stay counted as used in their page, which gets them back when they are
 * freed again, like any of its blocks. */
static bool heap_take_foreign(mc_heap_t *heap, size_t bin) {
    mc_page_t *pg = heap->foreign_page[bin];
    if (pg == NULL) return false;
    heap->foreign_page[bin] = NULL;
    heap->foreign[bin] = _mc_segment_take_remote(pg, bin, heap);
    return heap->foreign[bin] != NULL;
}

/* Give the blocks taken from other heaps' pages back to their pages (the
 * hints may stay: they are checked when used). */
static void heap_return_foreign(mc_heap_t *heap) {
    for (size_t bin = 1; bin < MC_BIN_COUNT; bin++) {
        mc_block_t *b = heap->foreign[bin];
        heap->foreign[bin] = NULL;
        while (b != NULL) {
            mc_block_t *next = mc_block_next(b);
            _mc_free_generic(b);
            b = next;
        }
    }
}

/* ---- Allocation slow paths ----------------------------------------------------------------- */
/* A page of the bin with a free block, or NULL: out of memory, or blocks of
 * other heaps were put in heap->foreign[bin] instead of touching fresh
 * memory. */
static mc_page_t *heap_page_for_bin(mc_heap_t *heap, size_t bin) {
    mc_page_queue_t *q = &heap->queues[bin];
    mc_page_t *pg;
    bool adopted = false;
again:
    while ((pg = q->first) != NULL) {
        if (MC_DEBUG >= 2) mc_assert(_mc_page_is_valid(pg));
        if (pg->free != NULL) return pg;
        _mc_page_collect(pg);
        if (pg->free != NULL) return pg;
        if (pg->holed != 0) {
            if (heap_take_foreign(heap, bin)) return NULL;
            _mc_page_fill_holes(pg);
            return pg;
        }
        if (pg->capacity < pg->reserved) {
            /* Before carving (and touching) fresh memory, use the blocks
             * freed into the next page, if any: it becomes the head. */
            if (pg->next != NULL && mc_page_has_freed(pg->next)) {
                bin_remove(heap, pg);
                bin_push_back(heap, pg);
                continue;
            }
            if (heap_take_foreign(heap, bin)) return NULL;
            _mc_page_extend(pg);
            return pg;
        }
        /* Exhausted: park it in the full queue, unless another thread freed
         * into it in the meantime. */
        if (!_mc_page_arm_notify(pg)) continue;
        bin_remove(heap, pg);
        full_push(heap, pg);
    }
    /* No page of this size with room: before starting one, adopt the oldest
     * segment of an exited thread, whose pages of this size (if any) have
     * room and are resident already.  A thread that replaces one that
     * exited thus takes up its memory where it was left. */
    if (!adopted && heap_reclaim(heap)) {
        adopted = true;
        goto again;
    }
    if (heap_take_foreign(heap, bin)) return NULL;
    size_t slices = _mc_bin_slices(bin);
    bool zero;
    pg = heap_alloc_span(heap, slices, &zero);
    if (pg == NULL) return NULL;
    _mc_page_init(pg, slices, _mc_bin_size(bin), bin, zero, heap);
    _mc_page_extend(pg);
    if (!zero) heap_purge_tail(heap, pg);
    bin_push_back(heap, pg); /* the queue is empty: it becomes the head */
    return pg;
}

void *_mc_heap_alloc_bin(mc_heap_t *heap, size_t bin) {
    if (heap->foreign[bin] == NULL) {
        mc_page_t *pg = heap_page_for_bin(heap, bin);
        if (pg != NULL) return mc_page_pop(pg, pg->free);
    }
    mc_block_t *b = heap->foreign[bin];
    if (b != NULL) heap->foreign[bin] = mc_block_next(b);
    return b;
}

void *_mc_heap_alloc_large(mc_heap_t *heap, size_t size, bool *is_zero) {
    size_t slices = (size + MC_SLICE_SIZE - 1) >> MC_SLICE_SHIFT;
    mc_page_t *pg = heap_alloc_span(heap, slices, is_zero);
    if (pg == NULL) return NULL;
    _mc_page_init_large(pg, slices, *is_zero, heap);
    queue_link_back(&heap->queues[MC_BIN_FULL], pg);
    return pg->start;
}

bool _mc_heap_resize_large(mc_heap_t *heap, mc_page_t *pg, size_t size) {
    mc_segment_t *seg = mc_page_segment(pg);
    if (atomic_load_explicit(&seg->heap, memory_order_relaxed) != heap) return false;
    size_t idx = mc_page_index(pg), old = pg->slice_count;
    size_t n = (size + MC_SLICE_SIZE - 1) >> MC_SLICE_SHIFT;
    if (n == old) return true;
    if (n < old) {
        _mc_page_clear_inner(pg, n, old);
        pg->slice_count = (uint16_t)n;
        pg->block_size = (uint32_t)(n * MC_SLICE_SIZE);
        heap_note_purge(heap, _mc_segment_free_span(seg, idx + n, old - n));
        return true;
    }
    if (idx + n > MC_SLICES_END) return false;
    uint64_t want = (((uint64_t)1 << (n - old)) - 1) << (idx + old);
    if ((seg->free_map & want) != want) return false;
    _mc_segment_take_span(seg, idx + old, n - old);
    _mc_page_set_inner(pg, old, n);
    pg->slice_count = (uint16_t)n;
    pg->block_size = (uint32_t)(n * MC_SLICE_SIZE);
    return true;
}

/* ---- Free slow paths ------------------------------------------------------------- */
void _mc_heap_free_local(mc_heap_t *heap, mc_page_t *pg, mc_block_t *block) {
    if ((pg->flags & MC_PAGE_IN_FULL) && _mc_page_disarm_notify(pg)) heap_drain_notified(heap);
    mc_block_set_next(block, pg->local_free);
    pg->local_free = block;
    if (--pg->used == 0) {
        queue_remove_any(heap, pg);
        heap_page_free(heap, pg);
        _mc_heap_maintain(heap);
        return;
    }
    if (pg->flags & MC_PAGE_IN_FULL) {
        full_remove(heap, pg);
        bin_push_back(heap, pg);
    }
}

void _mc_heap_page_emptied(mc_page_t *pg) {
    mc_heap_t *heap = mc_heap_get();
    bin_remove(heap, pg);
    heap_page_free(heap, pg);
    _mc_heap_maintain(heap);
}

/* Full pages that other threads freed into, as told by their notifications. */
static void heap_drain_notified(mc_heap_t *heap) {
    if (atomic_load_explicit(&heap->notified, memory_order_relaxed) == NULL) return;
    mc_page_t *pg = atomic_exchange_explicit(&heap->notified, NULL, memory_order_acquire);
    while (pg != NULL) {
        mc_page_t *next = pg->notify_next;
        pg->notify_next = NULL;
        if (pg->flags & MC_PAGE_IN_FULL) full_page_recheck(heap, pg);
        pg = next;
    }
}

/* ---- Maintenance ----------------------------------------------------------------------------- */
static void heap_purge(mc_heap_t *heap, uint64_t now, bool force) {
    heap->purge_at = 0;
    for (mc_segment_t *seg = heap->segments; seg != NULL; seg = seg->next) {
        _mc_segment_purge(seg, now, force);
        heap_note_purge(heap, seg->purge_at);
    }
}

/* Collect what other threads freed into the pages behind the bin heads, a
 * few bins per call (round robin), and release the pages that emptied: such
 * pages would otherwise wait for their turn at the head, holding memory
 * that any bin could use. */
static void heap_sweep_remote(mc_heap_t *heap) {
    size_t checked = 0;
    for (size_t n = 0; n < MC_SWEEP_BINS && checked < MC_SWEEP_PAGES; n++) {
        size_t bin = heap->sweep_bin = heap->sweep_bin % (MC_BIN_COUNT - 1) + 1;
        mc_page_t *head = heap->queues[bin].first;
        if (head == NULL) continue;
        for (mc_page_t *pg = head->next, *next; pg != NULL; pg = next) {
            next = pg->next;
            checked++;
            /* A page keeping its free list is not empty, and will hand
             * those blocks out when it heads its bin again. */
            if (pg->free != NULL || pg->uncounted) continue;
            if (_mc_page_collect_thread_free(pg) != 0 && pg->used == 0) {
                bin_remove(heap, pg);
                heap_page_free(heap, pg);
            }
        }
    }
}

void _mc_heap_maintain(mc_heap_t *heap) {
    heap_drain_notified(heap);
    if (--heap->maintain_in > 0) return;
    heap->maintain_in = MC_MAINTAIN_EVERY;
    uint64_t now = _mc_os_now_ms();
    uint32_t grown = _mc_grow_epoch();
    if (heap->grow_epoch != grown) { /* the process took fresh memory */
        heap->grow_epoch = grown;
        if (heap->purge_at != 0) heap_purge(heap, now, true);
    } else if (heap->purge_at != 0 && now >= heap->purge_at) {
        heap_purge(heap, now, false);
    }
    uint32_t epoch = atomic_load_explicit(&trim_epoch, memory_order_relaxed);
    if (heap->trim_epoch != epoch) {
        heap->trim_epoch = epoch;
        _mc_heap_collect(heap, true);
    }
    /* The rest at most once per clock tick (a few ms). */
    if (now == heap->maintained_at) return;
    heap->maintained_at = now;
    heaps_unpark(now, false);
    heap_sweep_remote(heap);
    _mc_segments_maintain(now, false);
    /* Memory of exited threads goes back to the OS: a visit to one of their
     * segments per clock tick in the whole process, not per heap (a program
     * that starts many short threads would otherwise have each of them walk
     * the pages of a segment at its first maintenance), unless the segments
     * are left faster than that, with more than MC_VISIT_BACKLOG waiting. */
    uint64_t last = atomic_load_explicit(&visited_at, memory_order_relaxed);
    if (_mc_segments_abandoned() > MC_VISIT_BACKLOG ||
        (last != now && atomic_compare_exchange_strong_explicit(
                            &visited_at, &last, now, memory_order_relaxed, memory_order_relaxed)))
        heap_visit_abandoned();
}

void _mc_heap_collect(mc_heap_t *heap, bool force) {
    if (MC_SECURE && force) _mc_secure_quarantine_flush(heap); /* first: its blocks go to pages */
    if (force) heaps_unpark(0, true); /* their segments are visited below */
    if (force) heap_return_foreign(heap);
    heap_drain_notified(heap);
    /* Full pages: stop their notifications, then look at each again. */
    mc_page_queue_t *full = &heap->queues[MC_BIN_FULL];
    bool claimed = false;
    for (mc_page_t *pg = full->first; pg != NULL; pg = pg->next)
        claimed |= _mc_page_disarm_notify(pg);
    if (claimed) heap_drain_notified(heap);
    for (mc_page_t *pg = full->first, *next; pg != NULL; pg = next) {
        next = pg->next;
        full_page_recheck(heap, pg);
    }
    /* Bin pages: collect; free the empty ones (with force, the heads too). */
    for (size_t bin = 1; bin < MC_BIN_COUNT; bin++) {
        for (mc_page_t *pg = heap->queues[bin].first, *next; pg != NULL; pg = next) {
            next = pg->next;
            if (force || !pg->pinned) _mc_page_normalize(pg);
            _mc_page_collect_thread_free(pg);
            if (pg->used - pg->pinned == 0 && (force || !pg->pinned)) {
                bin_remove(heap, pg);
                heap_page_free(heap, pg);
            }
        }
    }
    if (force) {
        heap_punch_holes(heap);
        /* and every segment of exited threads, each looked after once */
        for (size_t n = _mc_segments_abandoned(); n > 0; n--) heap_visit_abandoned();
    }
    uint64_t now = _mc_os_now_ms();
    heap_purge(heap, now, force);
    if (force) {
        for (mc_segment_t *seg = heap->segments, *next; seg != NULL; seg = next) {
            next = seg->next;
            if (seg->free_map == MC_SEGMENT_ALL_FREE) {
                heap_segment_remove(heap, seg);
                _mc_segment_release(seg);
            }
        }
    }
    _mc_segments_maintain(now, force);
}

void _mc_heap_request_trim(mc_heap_t *heap) {
    uint32_t epoch = atomic_fetch_add_explicit(&trim_epoch, 1, memory_order_relaxed) + 1;
    /* The caller trims its own heap now: its next maintenance need not. */
    if (heap != &_mc_heap_empty) heap->trim_epoch = epoch;
}

/* ---- Heaps of threads ------------------------------------------------------------ */
static mc_heap_t *heap_new(void) {
    _mc_lock(&heaps_lock);
    mc_heap_t *heap = heaps_parked;
    if (heap != NULL) { /* the newest parked heap, whole (see "Parked heaps") */
        heaps_parked = heap->pool_next;
        heap->pool_next = NULL;
        atomic_fetch_sub_explicit(&heaps_parked_count, 1, memory_order_relaxed);
        __atomic_fetch_add(&heaps_live, 1, __ATOMIC_RELAXED); /* read without the lock */
        _mc_unlock(&heaps_lock);
        return heap;
    }
    heap = heaps_pool;
    if (heap != NULL) {
        heaps_pool = heap->pool_next;
    } else {
        size_t size = mc_align_up(sizeof(mc_heap_t), 64);
        if (heaps_chunk_left < size) {
            size_t chunk = mc_align_up(16 * size, _mc_os_page_size());
            heaps_chunk = _mc_os_map(chunk);
            heaps_chunk_left = heaps_chunk != NULL ? chunk : 0;
            if (heaps_chunk != NULL) _mc_stats_committed((long)chunk);
        }
        if (heaps_chunk_left >= size) {
            heap = (mc_heap_t *)heaps_chunk;
            heaps_chunk += size;
            heaps_chunk_left -= size;
        }
    }
    if (heap != NULL) {
        uint16_t tag = heap->tag; /* a pooled heap keeps its tag */
        if (tag == 0)
            tag = heaps_next_tag <= MC_TAG_LAST ? (uint16_t)heaps_next_tag++ : MC_TAG_NONE;
        memset(heap, 0, sizeof *heap);
        heap->tag = tag;
        for (size_t w = 0; w < MC_DIRECT_COUNT; w++) heap->direct[w] = (mc_page_t *)&_mc_page_empty;
        heap->trim_epoch = atomic_load_explicit(&trim_epoch, memory_order_relaxed);
        __atomic_fetch_add(&heaps_live, 1, __ATOMIC_RELAXED);
    }
    _mc_unlock(&heaps_lock);
    return heap;
}

/* A heap gives up its memory, kept cheap (threads may be short-lived): heads
 * give up their pin and full pages their notification; whatever needs
 * counting or collecting is done by whoever adopts or visits the segments
 * later.  Disarming waits for the notifications under way, so once the
 * notified list is dropped below, no other thread will touch this heap
 * again.  Run by the heap's thread as it exits, or by any thread for a
 * parked heap it has taken off the parked list. */
static void heap_abandon(mc_heap_t *heap) {
    heap_return_foreign(heap);
    heap_drain_notified(heap);
    for (size_t bin = 1; bin < MC_BIN_COUNT; bin++) {
        mc_page_t *pg = heap->queues[bin].first;
        if (pg == NULL) continue;
        page_unpin(pg);
        if (pg->used == 0) {
            queue_unlink(&heap->queues[bin], pg);
            heap_page_free(heap, pg);
        }
    }
    for (mc_page_t *pg = heap->queues[MC_BIN_FULL].first; pg != NULL; pg = pg->next)
        _mc_page_disarm_notify(pg);
    mc_page_t *pg = atomic_exchange_explicit(&heap->notified, NULL, memory_order_acquire);
    while (pg != NULL) {
        mc_page_t *next = pg->notify_next;
        pg->notify_next = NULL;
        pg = next;
    }
    /* The pages stay in their segments, for whoever adopts them. */
    for (mc_segment_t *seg = heap->segments, *next; seg != NULL; seg = next) {
        next = seg->next;
        heap_segment_remove(heap, seg);
        if (seg->free_map == MC_SEGMENT_ALL_FREE)
            _mc_segment_release(seg);
        else
            _mc_segment_abandon(seg);
    }
    _mc_lock(&heaps_lock);
    heap->pool_next = heaps_pool;
    heaps_pool = heap;
    _mc_unlock(&heaps_lock);
}

/* ---- Parked heaps ---------------------------------------------------------------
 * A thread that exits leaves a small heap (MC_PARK_SEGMENTS segments or
 * fewer) whole for the next thread to start: bin queues, pages and
 * segments as they were, its remote frees collected and its free slices
 * purged.  A program that replaces short threads (workers started per
 * round or per request) then carries on where the last thread stopped: the
 * blocks the old one freed are the first the new one gets, where adopting
 * abandoned segments hands a new thread whichever segment waited longest,
 * after a walk over its pages.  A bigger heap is abandoned at once: its
 * segments go to whoever needs them, each collected whole when adopted
 * (parking bigger heaps made peak RSS less predictable: docs/design.md,
 * section 6).  A heap waits parked at most the purge delay, and at most
 * MC_PARK_MAX heaps wait; a parked heap is also abandoned when a live heap
 * needs a segment, and on a trim.  While parked no thread owns it: other
 * threads free into its pages as remote frees, and only whoever takes it
 * off the list (under heaps_lock) touches it. */
static bool heap_park(mc_heap_t *heap) {
    long delay = mc_option(MC_OPTION_PURGE_DELAY_MS);
    if (delay == 0 || heap->segment_count > MC_PARK_SEGMENTS) return false;
    heap_return_foreign(heap);
    /* What other threads freed into its pages goes back into them, empty
     * pages are released, and free slices are purged now: nobody uses them
     * while it waits, as nobody uses an abandoned segment's. */
    _mc_heap_collect(heap, false);
    heap_purge(heap, 0, true);
    _mc_lock(&heaps_lock);
    bool parked = atomic_load_explicit(&heaps_parked_count, memory_order_relaxed) < MC_PARK_MAX;
    if (parked) {
        __atomic_fetch_sub(&heaps_live, 1, __ATOMIC_RELAXED);
        heap->parked_at = _mc_os_now_ms();
        heap->pool_next = heaps_parked;
        heaps_parked = heap;
        atomic_fetch_add_explicit(&heaps_parked_count, 1, memory_order_relaxed);
    }
    _mc_unlock(&heaps_lock);
    return parked;
}

/* Abandon the parked heaps that have waited their time, or all of them.
 * True if there was one. */
static bool heaps_unpark(uint64_t now, bool all) {
    if (atomic_load_explicit(&heaps_parked_count, memory_order_relaxed) == 0) return false;
    long delay = mc_option(MC_OPTION_PURGE_DELAY_MS);
    mc_heap_t *expired = NULL;
    _mc_lock(&heaps_lock);
    for (mc_heap_t **link = &heaps_parked; *link != NULL;) {
        mc_heap_t *heap = *link;
        if (all || (delay > 0 && now - heap->parked_at >= (uint64_t)delay)) {
            *link = heap->pool_next;
            atomic_fetch_sub_explicit(&heaps_parked_count, 1, memory_order_relaxed);
            heap->pool_next = expired;
            expired = heap;
        } else {
            link = &heap->pool_next;
        }
    }
    _mc_unlock(&heaps_lock);
    bool any = expired != NULL;
    while (expired != NULL) {
        mc_heap_t *next = expired->pool_next;
        heap_abandon(expired);
        expired = next;
    }
    return any;
}

static void heap_thread_done(void *arg) {
    mc_heap_t *heap = arg;
    if (heap == NULL || heap == &_mc_heap_empty) return;
    if (MC_SECURE) _mc_secure_quarantine_flush(heap); /* while its frees are still local */
    if (_mc_heap_tls == heap) {
        _mc_heap_tls = &_mc_heap_empty;
        _mc_tag_tls = MC_TAG_NOBODY;
    }
    if (heap_park(heap)) return;
    __atomic_fetch_sub(&heaps_live, 1, __ATOMIC_RELAXED);
    heap_abandon(heap);
}

size_t _mc_heaps_count(size_t *parked) {
    *parked = atomic_load_explicit(&heaps_parked_count, memory_order_relaxed);
    return __atomic_load_n(&heaps_live, __ATOMIC_RELAXED);
}

/* ---- Fork ---------------------------------------------------------------------------------
 * Take every lock before fork so that no other thread holds one at the moment of the copy; the
 * child, whose only thread is the forking one, resets them.  Other threads' heaps stay in the
 * child unowned: their blocks can still be freed there (as remote frees), and what they cached
 * (free pages; in the secure build, their quarantines) stays with them. */
static void fork_prepare(void) {
    _mc_lock(&heaps_lock);
    _mc_segments_fork_prepare();
}

static void fork_parent(void) {
    _mc_segments_fork_parent();
    _mc_unlock(&heaps_lock);
}

static void fork_child(void) {
    _mc_os_atfork_child();
    _mc_segments_fork_child();
    _mc_lock_reset(&heaps_lock);
}

/* ---- Start-up -----------------------------------------------------------------------------
 * The first malloc of the process runs this.  Nothing here may allocate before the state is
 * READY; atexit (which may call malloc in glibc) comes after, and finds a working allocator
 * when it re-enters.  The fork handlers are registered later (os.c, "fork"). */
enum { PROCESS_NONE, PROCESS_STARTING, PROCESS_READY };
static _Atomic int process_state;

static bool process_init(void) {
    int state = atomic_load_explicit(&process_state, memory_order_acquire);
    if (mc_likely(state == PROCESS_READY)) return true;
    int expected = PROCESS_NONE;
    if (atomic_compare_exchange_strong(&process_state, &expected, PROCESS_STARTING)) {
        _mc_os_init();
        _mc_options_init();
        if (!_mc_segments_init() || _mc_os_thread_key_create(heap_thread_done) != 0) {
            atomic_store(&process_state, PROCESS_NONE);
            return false;
        }
        /* The handlers are known before any thread can take a lock (and so register them);
         * nothing between here and READY takes one. */
        _mc_os_atfork(fork_prepare, fork_parent, fork_child);
        atomic_store_explicit(&process_state, PROCESS_READY, memory_order_release);
        _mc_stats_print_at_exit();
        return true;
    }
    while ((state = atomic_load_explicit(&process_state, memory_order_acquire)) == PROCESS_STARTING)
        _mc_os_spin_pause();
    return state == PROCESS_READY;
}

mc_heap_t *_mc_heap_init_thread(void) {
    mc_heap_t *heap = _mc_heap_tls;
    if (heap != &_mc_heap_empty) return heap;
    if (!process_init()) return NULL;
    heap = heap_new();
    if (heap == NULL) return NULL;
    _mc_heap_tls = heap;
    /* A heap beyond the last tag frees through the slow path. */
    _mc_tag_tls = heap->tag == MC_TAG_NONE ? MC_TAG_NOBODY : heap->tag;
    _mc_os_thread_key_set(heap); /* may re-enter malloc: the heap is ready */
    return heap;
}

__attribute__((constructor(101))) static void mc_process_constructor(void) {
    _mc_heap_init_thread();
}

/* ---- Validation (debug) ------------------------------------------------------------------ */
#define VALID(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            _mc_message("mclone: heap check: heap %p: %s", (const void *)heap, #cond);             \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

static bool queue_is_valid(mc_heap_t *heap, size_t bin) {
    mc_page_queue_t *q = &heap->queues[bin];
    size_t n = 0;
    mc_page_t *prev = NULL;
    for (mc_page_t *pg = q->first; pg != NULL; prev = pg, pg = pg->next) {
        VALID(pg->prev == prev && ++n <= q->count);
        VALID(atomic_load_explicit(&pg->heap, memory_order_relaxed) == heap);
        VALID(atomic_load_explicit(&mc_page_segment(pg)->heap, memory_order_relaxed) == heap);
        if (bin == MC_BIN_FULL) {
            VALID(pg->flags & MC_PAGE_IN_FULL);
            VALID(!pg->pinned);
        } else {
            VALID(!(pg->flags & MC_PAGE_IN_FULL) && pg->bin == bin);
            VALID(pg->pinned == (pg == q->first));
            VALID(pg->used > pg->pinned || pg->pinned); /* only a head may be empty */
            VALID(pg->used > 0 || pg->free == NULL);
        }
        if (!_mc_page_is_valid(pg)) return false;
    }
    VALID(q->last == prev && n == q->count);
    if (bin != MC_BIN_FULL && _mc_bin_size(bin) <= MC_SMALL_MAX) {
        mc_page_t *want = q->first ? q->first : (mc_page_t *)&_mc_page_empty;
        VALID(heap->direct[_mc_bin_size(bin) / 8] == want);
    }
    return true;
}

bool _mc_heap_is_valid(mc_heap_t *heap) {
    if (heap == &_mc_heap_empty) return true;
    for (size_t bin = 1; bin <= MC_BIN_FULL; bin++)
        if (!queue_is_valid(heap, bin)) return false;
    size_t n = 0, empty = 0;
    for (mc_segment_t *seg = heap->segments; seg != NULL; seg = seg->next) {
        VALID(seg->next == NULL || seg < seg->next);
        VALID(atomic_load_explicit(&seg->heap, memory_order_relaxed) == heap);
        VALID(seg->state == MC_SEGMENT_OWNED);
        if (!_mc_segment_is_valid(seg)) return false;
        n++;
        empty += seg->free_map == MC_SEGMENT_ALL_FREE;
    }
    VALID(n == heap->segment_count && empty == heap->empty_segments);
    return true;
}
