/* page.c: one span holding blocks of one size, and its three free lists
 * (free, local_free, thread_free; see types.h).  Also the size classes
 * ("bins") that decide a page's block size, and the lock-free protocol by
 * which other threads free into a page and wake up its owner. */
#include "internal.h"

/* ---- Bins ---------------------------------------------------------------------
 *   bin 1: 8 bytes;  bins 2-9: 16 to 128 by 16;
 *   then eight bins per power of two: 144 160 ... 256, 288 320 ... 512, ...
 *   so a block is at most 12.5% larger than asked;
 *   and from 1 KiB up to bin 103 = 128 KiB, two more bins at the start of
 *   each power of two, 2^k + 16 (1040, 2064, 4112, ...) and
 *   2^k + 2^(k-4) + 16 (1104, 2192, 4368, ...): programs often ask for a
 *   power of two plus a header (SQLite's 1032- and 4104-byte page buffers,
 *   and its 4368-byte page-cache entries: a 4 KiB page and 272 bytes), which
 *   would otherwise round up by 6-12%.
 *   Every size is a multiple of 16 (but 8), so every block of 16 bytes or
 *   more is 16-byte aligned; and a size that is a multiple of a power of two
 *   a, with a > 1/8 of the size, is a bin size itself, so blocks of it are
 *   a-aligned (pages start on a slice): aligned allocation needs no slack.
 *   The two header bins hold no multiple of 32; the first catches none
 *   either, the second would, so aligned allocation steps over it
 *   (mc_aligned_size).
 * mc_bin_of (internal.h, inline for the slow path of malloc) maps a size to
 * its bin. */
_Static_assert(MC_MEDIUM_MAX == (size_t)1 << MC_MEDIUM_LOG, "MC_MEDIUM_LOG names MC_MEDIUM_MAX");

size_t _mc_bin_size(size_t bin) {
    if (bin <= 1) return 8;
    if (bin <= 9) return (bin - 1) * 16;
    if (bin < MC_BIN_HEADER_FIRST) {
        size_t k = bin - 10, b = 7 + k / 8;
        return ((size_t)1 << b) + (k % 8 + 1) * ((size_t)1 << (b - 3));
    }
    size_t k = bin - MC_BIN_HEADER_FIRST, b = MC_BIN_HEADER_LOG + k / MC_BIN_HEADER_PER,
           j = k % MC_BIN_HEADER_PER, base = (size_t)1 << b;
    if (j == 0) return base + 16;
    if (j == 1) return base + (base >> 4) + 16;
    return base + (j - 1) * (base >> 3);
}

/* Pages of blocks up to 8 KiB are one slice; larger blocks get pages of at
 * least eight blocks (up to 16 slices for 128 KiB blocks). */
size_t _mc_bin_slices(size_t bin) {
    size_t bs = _mc_bin_size(bin);
    if (bs <= 8 * 1024) return 1;
    return (8 * bs + MC_SLICE_SIZE - 1) / MC_SLICE_SIZE;
}

/* ---- Set-up ---------------------------------------------------------------------- */
/* Mark slices [from, to) of the span starting at pg as inner slices. */
void _mc_page_set_inner(mc_page_t *pg, size_t from, size_t to) {
    for (size_t k = from; k < to; k++) {
        pg[k].slice_back = (uint32_t)(k * sizeof(mc_page_t));
        pg[k].flags = MC_PAGE_INNER;
    }
}

void _mc_page_clear_inner(mc_page_t *pg, size_t from, size_t to) {
    for (size_t k = from; k < to; k++) {
        pg[k].slice_back = 0;
        pg[k].flags = MC_PAGE_FREED;
    }
}

static void page_set_span(mc_page_t *pg, size_t slices) {
    _mc_page_set_inner(pg, 1, slices);
    pg->slice_back = 0;
    pg->slice_count = (uint16_t)slices;
}

void _mc_page_init(mc_page_t *pg, size_t slices, size_t block_size, size_t bin, bool is_zero,
                   mc_heap_t *heap) {
    page_set_span(pg, slices);
    pg->free = NULL;
    pg->local_free = NULL;
    pg->used = 0;
    pg->flags = 0;
    pg->pinned = 0;
    pg->kind = block_size <= MC_SMALL_MAX ? MC_KIND_SMALL : MC_KIND_MEDIUM;
    pg->is_zero = is_zero;
    pg->block_size = (uint32_t)block_size;
    pg->recip = block_size <= MC_MEDIUM_MAX ? ((uint64_t)1 << MC_RECIP_SHIFT) / block_size + 1 : 0;
    pg->capacity = 0;
    pg->reserved = (uint32_t)(slices * MC_SLICE_SIZE / block_size);
    pg->bin = (uint16_t)bin;
    /* Only blocks that share no cache line with another block (whole lines),
     * or at most their two end lines (above 1 KiB), may be taken back by
     * another thread (heap.c, "Blocks of other threads"): false sharing. */
    pg->remote_bin = block_size % 64 == 0 || block_size > MC_SMALL_MAX ? (uint16_t)bin : 0;
    atomic_store_explicit(&pg->thread_free, MC_TF_NORMAL, memory_order_relaxed);
    pg->start = mc_slice_start(mc_page_segment(pg), mc_page_index(pg));
    atomic_store_explicit(&pg->heap, heap, memory_order_relaxed);
    pg->next = pg->prev = pg->notify_next = NULL;
    pg->uncounted = 0;
    pg->holed = 0;
    pg->holes = 0;
    pg->punched = NULL;
}

/* A large page is born full: its one block is handed out at once, and the
 * page waits in the full queue, armed to notify the owner of a remote free. */
void _mc_page_init_large(mc_page_t *pg, size_t slices, bool is_zero, mc_heap_t *heap) {
    _mc_page_init(pg, slices, slices * MC_SLICE_SIZE, 0, is_zero, heap);
    pg->kind = MC_KIND_LARGE;
    pg->reserved = pg->capacity = pg->used = 1;
    pg->flags = MC_PAGE_IN_FULL;
    atomic_store_explicit(&pg->thread_free, MC_TF_NOTIFY, memory_order_relaxed);
}

void _mc_page_clear(mc_page_t *pg) {
    _mc_page_clear_inner(pg, 1, pg->slice_count);
    pg->kind = MC_KIND_NONE;
    pg->flags = MC_PAGE_FREED;
    pg->pinned = 0;
    pg->block_size = 0;
    pg->slice_count = 0;
    pg->free = pg->local_free = NULL;
    pg->holed = 0;
    pg->holes = 0;
    atomic_store_explicit(&pg->heap, NULL, memory_order_relaxed);
}

/* Carve the next n blocks of the span (at most what is left) onto the front
 * of the free list, in address order. */
static void page_carve(mc_page_t *pg, size_t n) {
    size_t bs = pg->block_size;
    size_t left = pg->reserved - pg->capacity;
    if (n > left) n = left;
    mc_assert(n > 0);
    uint8_t *first = pg->start + (size_t)pg->capacity * bs;
    uint8_t *b = first;
    for (size_t i = 1; i < n; i++, b += bs)
        mc_block_set_next((mc_block_t *)b, (mc_block_t *)(b + bs));
    mc_block_set_next((mc_block_t *)b, pg->free);
    if (MC_SECURE)
        for (size_t i = 0; i < n; i++) _mc_secure_fill((mc_block_t *)(first + i * bs), bs);
    pg->free = (mc_block_t *)first;
    /* Other threads read capacity when they free (mc_page_block_of). */
    __atomic_store_n(&pg->capacity, pg->capacity + (uint32_t)n, __ATOMIC_RELAXED);
    pg->used += (uint32_t)n;
}

/* Carve the next few blocks into the (empty) free list.  Carving lazily
 * keeps a fresh page from touching (and making resident) more memory than
 * it hands out. */
void _mc_page_extend(mc_page_t *pg) {
    mc_assert(pg->free == NULL);
    size_t n = MC_EXTEND_BYTES / pg->block_size;
    page_carve(pg, n == 0 ? 1 : n);
}

/* Purge the OS pages of the span past its carved blocks. */
void _mc_page_purge_tail(mc_page_t *pg, bool madv_free) {
    size_t from = mc_align_up((size_t)pg->capacity * pg->block_size, _mc_os_page_size());
    size_t to = (size_t)pg->slice_count * MC_SLICE_SIZE; /* start is the span's first byte */
    if (from < to) _mc_os_purge(pg->start + from, to - from, madv_free);
}

/* ---- Collecting --------------------------------------------------------------------- */
/* Take the whole thread_free list (the state bits stay). */
mc_block_t *_mc_page_take_thread_free(mc_page_t *pg) {
    uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
    do {
        if ((tf & ~(uintptr_t)MC_TF_STATE) == 0) return NULL;
    } while (!atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf, tf & MC_TF_STATE,
                                                    memory_order_acquire, memory_order_relaxed));
    return (mc_block_t *)(tf & ~(uintptr_t)MC_TF_STATE);
}

size_t _mc_page_collect_thread_free(mc_page_t *pg) {
    mc_block_t *head = _mc_page_take_thread_free(pg);
    if (head == NULL) return 0;
    mc_block_t *tail = head;
    size_t count = 1;
    while (mc_block_next(tail) != NULL) {
        tail = mc_block_next(tail);
        /* More blocks than the page ever handed out: a block was freed twice
         * by other threads and the list now loops. */
        if (mc_unlikely(++count > pg->used))
            _mc_fatal("free(): double free detected in the blocks other threads freed to page %p",
                      (const void *)pg);
    }
    mc_block_set_next(tail, pg->local_free);
    pg->local_free = head;
    pg->used -= (uint32_t)count;
    return count;
}

/* Refill an empty free list: from local_free if it has blocks (they become
 * counted as used), else from thread_free.  Either way the page takes the
 * remote frees waiting in thread_free, so that they do not pile up behind a
 * thread's own frees.  Blocks of thread_free are counted in used already, so
 * that list needs no walk to be counted; walking it would touch, and miss
 * the cache on, every block. */
void _mc_page_collect(mc_page_t *pg) {
    mc_assert(pg->free == NULL);
    if (pg->local_free != NULL) {
        /* (An estimate when uncounted: it is only used to size the refill.) */
        uint32_t got = pg->capacity + pg->pinned - pg->holed - pg->used;
        pg->free = pg->local_free;
        pg->used = pg->capacity + pg->pinned - pg->holed;
        pg->local_free = _mc_page_take_thread_free(pg);
        pg->uncounted = pg->local_free != NULL;
        /* A thread that frees and allocates a few blocks in turn, in a page
         * that is mostly free, would come here every few calls: such a short
         * cycle grows by carving, up to MC_REFILL_MIN blocks and at most
         * MC_REFILL_BYTES, so the slow path runs at most once per that many
         * allocations.  (A page whose blocks are mostly live carves when it
         * runs out, as usual.) */
        uint32_t others = pg->capacity - pg->holed - got; /* live, or on their way back */
        if (pg->kind == MC_KIND_SMALL && got < MC_REFILL_MIN && others <= got &&
            pg->capacity < pg->reserved) {
            uint32_t want = MC_REFILL_BYTES / pg->block_size; /* divides only here */
            if (want > MC_REFILL_MIN) want = MC_REFILL_MIN;
            if (got < want) page_carve(pg, want - got);
        }
        return;
    }
    pg->free = _mc_page_take_thread_free(pg);
}

/* Make used exact again after a refill took remote frees uncounted. */
static void page_recount(mc_page_t *pg) {
    if (!pg->uncounted) return;
    uint32_t n = 0;
    for (mc_block_t *b = pg->local_free; b != NULL; b = mc_block_next(b)) n++;
    pg->used = pg->capacity + pg->pinned - pg->holed - n;
    pg->uncounted = 0;
}

void _mc_page_normalize(mc_page_t *pg) {
    page_recount(pg);
    if (pg->free == NULL) return;
    mc_block_t *tail = pg->free;
    uint32_t n = 1;
    while (mc_block_next(tail) != NULL) {
        tail = mc_block_next(tail);
        n++;
    }
    mc_block_set_next(tail, pg->local_free);
    pg->local_free = pg->free;
    pg->free = NULL;
    pg->used -= n;
}

/* ---- Holes ---------------------------------------------------------------------
 * Only for pages of up to 64 OS pages (the holes mask), and only in the
 * carved part: the blocks of a hole were all free, so a block touching a
 * hole is never live, and only a refill puts it back in a list. */
static bool block_touches(const mc_page_t *pg, size_t off, uint64_t mask, size_t ps) {
    size_t first = off / ps, last = (off + pg->block_size - 1) / ps;
    uint64_t upto = last >= 63 ? ~(uint64_t)0 : (((uint64_t)2 << last) - 1);
    return (upto & ~(((uint64_t)1 << first) - 1) & mask) != 0;
}

size_t _mc_page_punch_holes(mc_page_t *pg) {
    size_t ps = _mc_os_page_size(), bs = pg->block_size;
    size_t nos = (size_t)pg->capacity * bs / ps; /* OS pages wholly carved */
    if (nos == 0 || (size_t)pg->slice_count * MC_SLICE_SIZE / ps > 64) return 0;
    /* Without a kept free list, used bounds the live blocks from above: a
     * page it says is not sparse is left alone without walking anything. */
    if (pg->free == NULL && (size_t)(pg->used - pg->pinned) * 4 > pg->capacity) return 0;
    _mc_page_normalize(pg);
    _mc_page_collect_thread_free(pg);
    /* Nothing freed since the last look (frees push on local_free). */
    if (pg->local_free == NULL || pg->local_free == pg->punched) return 0;
    pg->punched = pg->local_free;
    /* Only in a sparse page (at most a quarter live) is it worth the
     * system calls: elsewhere few OS pages are wholly free. */
    if ((size_t)(pg->used - pg->pinned) * 4 > pg->capacity) return 0;
    /* Bytes of free blocks in each OS page. */
    uint32_t cover[64] = {0};
    for (mc_block_t *b = pg->local_free; b != NULL; b = mc_block_next(b)) {
        size_t off = (size_t)((uint8_t *)b - pg->start), end = off + bs;
        for (size_t o = off; o < end;) {
            size_t i = o / ps, next = (i + 1) * ps < end ? (i + 1) * ps : end;
            cover[i] += (uint32_t)(next - o);
            o = next;
        }
    }
    uint64_t purge = 0;
    for (size_t i = 0; i < nos; i++)
        if (cover[i] == ps && !(pg->holes & ((uint64_t)1 << i))) purge |= (uint64_t)1 << i;
    if (purge == 0) return 0;
    /* Take the blocks touching those OS pages out of local_free (reading the
     * list before the pages go), then purge them. */
    mc_block_t *keep = NULL, *b = pg->local_free;
    uint32_t out = 0;
    while (b != NULL) {
        mc_block_t *next = mc_block_next(b);
        if (block_touches(pg, (size_t)((uint8_t *)b - pg->start), purge, ps)) {
            out++;
        } else {
            mc_block_set_next(b, keep);
            keep = b;
        }
        b = next;
    }
    pg->local_free = pg->punched = keep;
    pg->holed += out;
    pg->holes |= purge;
    bool madv_free = mc_option(MC_OPTION_PURGE_MADV_FREE) != 0;
    size_t bytes = 0;
    for (size_t i = 0; i < nos;) {
        if (!(purge & ((uint64_t)1 << i))) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < nos && (purge & ((uint64_t)1 << j))) j++;
        _mc_os_purge(pg->start + i * ps, (j - i) * ps, madv_free);
        bytes += (j - i) * ps;
        i = j;
    }
    return bytes;
}

/* The page ran out of blocks: take back those of the holes, in address order. */
void _mc_page_fill_holes(mc_page_t *pg) {
    mc_assert(pg->free == NULL && pg->holed > 0);
    size_t ps = _mc_os_page_size(), bs = pg->block_size;
    mc_block_t *list = NULL;
    for (size_t i = pg->capacity; i-- > 0;) {
        if (!block_touches(pg, i * bs, pg->holes, ps)) continue;
        mc_block_t *b = (mc_block_t *)(pg->start + i * bs);
        mc_block_set_next(b, list);
        if (MC_SECURE) _mc_secure_fill(b, bs); /* purged: zero, or as it was */
        list = b;
    }
    pg->free = list;
    pg->used += pg->holed;
    pg->holed = 0;
    pg->holes = 0;
}

/* ---- Remote free and notification ------------------------------------------------------ */
void _mc_page_free_remote(mc_page_t *pg, mc_block_t *block) {
    uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_relaxed);
    uintptr_t state;
    do {
        state = tf & MC_TF_STATE;
        mc_block_set_next(block, (mc_block_t *)(tf & ~(uintptr_t)MC_TF_STATE));
    } while (!atomic_compare_exchange_weak_explicit(
        &pg->thread_free, &tf, (uintptr_t)block | (state == MC_TF_NOTIFY ? MC_TF_BUSY : state),
        memory_order_acq_rel, memory_order_relaxed));
    /* (Acquire as well: claiming NOTIFY must see what the owner did before
     * it armed the page, such as clearing notify_next when it last drained
     * its notified list.) */
    if (state != MC_TF_NOTIFY) return;
    /* This free claimed the notification: put the page on its owner's list,
     * then end the BUSY state, which the owner may be waiting for. */
    mc_heap_t *heap = atomic_load_explicit(&pg->heap, memory_order_acquire);
    mc_page_t *head = atomic_load_explicit(&heap->notified, memory_order_relaxed);
    do {
        pg->notify_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&heap->notified, &head, pg,
                                                    memory_order_release, memory_order_relaxed));
    atomic_fetch_and_explicit(&pg->thread_free, ~(uintptr_t)MC_TF_STATE, memory_order_release);
}

/* Arm a page that is entering the full queue.  False if a remote free came in
 * first (the page is not full after all: collect it). */
bool _mc_page_arm_notify(mc_page_t *pg) {
    uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
    for (;;) {
        if ((tf & ~(uintptr_t)MC_TF_STATE) != 0) return false;
        if ((tf & MC_TF_STATE) == MC_TF_BUSY) {
            _mc_os_spin_pause();
            tf = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
            continue;
        }
        if ((tf & MC_TF_STATE) == MC_TF_NOTIFY) return true;
        if (atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf, MC_TF_NOTIFY,
                                                  memory_order_acq_rel, memory_order_acquire))
            return true;
    }
}

/* Disarm a page leaving the full queue.  True if a remote free had claimed
 * the notification: the page is then on (or, once BUSY ends, has reached)
 * the heap's notified list, which the caller must drain. */
bool _mc_page_disarm_notify(mc_page_t *pg) {
    uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
    for (;;) {
        uintptr_t state = tf & MC_TF_STATE;
        if (state == MC_TF_NORMAL) return true;
        if (state == MC_TF_BUSY) {
            _mc_os_spin_pause();
            tf = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&pg->thread_free, &tf,
                                                  tf & ~(uintptr_t)MC_TF_STATE,
                                                  memory_order_acq_rel, memory_order_acquire))
            return false;
    }
}

/* ---- Validation (debug) ------------------------------------------------------------------ */
#define VALID(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            _mc_message("mclone: heap check: page %p: %s", (const void *)pg, #cond);               \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

/* Count a free list, checking every block is one of this page's. */
static bool page_list_count(const mc_page_t *pg, const mc_block_t *b, size_t *count) {
    size_t n = 0;
    for (; b != NULL; b = mc_block_next(b)) {
        if (++n > pg->capacity || mc_page_block_of(pg, b) != b) return false;
    }
    *count = n;
    return true;
}

bool _mc_page_is_valid(const mc_page_t *pg) {
    VALID(pg->kind != MC_KIND_NONE && pg->slice_back == 0);
    VALID(pg->block_size > 0 && pg->capacity <= pg->reserved);
    VALID((size_t)pg->reserved * pg->block_size <= (size_t)pg->slice_count * MC_SLICE_SIZE);
    VALID(pg->pinned <= 1 && pg->used >= pg->pinned);
    if (pg->kind == MC_KIND_LARGE) {
        VALID(pg->reserved == 1 && (pg->flags & MC_PAGE_IN_FULL));
        return true;
    }
    VALID(pg->bin >= 1 && pg->bin < MC_BIN_COUNT && _mc_bin_size(pg->bin) == pg->block_size);
    size_t nfree, nlocal;
    VALID(page_list_count(pg, pg->free, &nfree));
    VALID(page_list_count(pg, pg->local_free, &nlocal));
    /* thread_free is only looked at, not walked: another thread may take the
     * list (heap.c, "Blocks of other threads") and hand its blocks out, and
     * their first words are then the program's. */
    uintptr_t tf = atomic_load_explicit(&pg->thread_free, memory_order_acquire);
    const mc_block_t *tf_head = (const mc_block_t *)(tf & ~(uintptr_t)MC_TF_STATE);
    VALID(tf_head == NULL || mc_page_block_of(pg, tf_head) == tf_head);
    if (pg->uncounted)
        VALID(pg->used - pg->pinned + nlocal + pg->holed >= pg->capacity);
    else
        VALID(pg->used - pg->pinned + nlocal + pg->holed == pg->capacity);
    VALID((pg->holed == 0) == (pg->holes == 0));
    VALID(nfree + (tf_head != NULL) <= pg->used - pg->pinned);
    return true;
}
