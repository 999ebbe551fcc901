/* segment.c: the span layer.  Segments are 4 MiB mappings aligned to 4 MiB;
 * inside each, runs ("spans") of 64 KiB slices are handed out by
 * address-ordered first fit over a 64-bit free map.  Also here: the segment
 * map (which 4 MiB chunks of the address space are ours), delayed purging of
 * free slices, the cache of empty segments, the list of segments abandoned by
 * exited threads, and huge blocks, which get a mapping each.
 *
 * Locks (never two at once, except in the fork handler, in this order):
 * abandoned_lock, cache_lock, registry_lock. */
#include "internal.h"

/* Zero-filled in .bss: only the entries written are ever backed by memory,
 * and lookups work before any initialisation. */
uint16_t _mc_segmap[MC_SEGMAP_ENTRIES];
uintptr_t _mc_secret;

static mc_lock_t registry_lock; /* registry list and segment map writes */
static mc_segment_t *registry;
static size_t registry_count;

static mc_lock_t cache_lock;
static mc_segment_t *cache; /* empty segments, address order */
static _Atomic size_t cache_count;
static mc_segment_t *huge_cache; /* freed huge mappings, newest first */
static _Atomic size_t huge_cache_count;
static void huge_purge(mc_segment_t *seg);

/* Abandoned segments wait in the order they were abandoned: reclaiming the
 * oldest first means every one of them is adopted in turn, and what other
 * threads freed into it is collected. */
static mc_lock_t abandoned_lock;
static mc_segment_t *abandoned, *abandoned_last;
static _Atomic size_t abandoned_count;

static const size_t segment_meta_size = sizeof(mc_segment_t);

bool _mc_segments_init(void) {
    _mc_secret = (uintptr_t)_mc_os_random() | 1;
    return true;
}

void _mc_segmap_set(mc_segment_t *seg, uint16_t tag) {
    size_t i = (uintptr_t)seg >> MC_SEGMENT_SHIFT;
    mc_assert(i < MC_SEGMAP_ENTRIES);
    __atomic_store_n(&_mc_segmap[i], tag, __ATOMIC_RELEASE);
}

/* ---- Registry: every mapped segment, and the segment map -------------------- */
static void registry_add(mc_segment_t *seg) {
    _mc_lock(&registry_lock);
    seg->all_prev = NULL;
    seg->all_next = registry;
    if (registry) registry->all_prev = seg;
    registry = seg;
    __atomic_fetch_add(&registry_count, 1, __ATOMIC_RELAXED); /* read without the lock */
    _mc_segmap_set(seg, MC_TAG_NONE);
    _mc_unlock(&registry_lock);
}

static void registry_remove(mc_segment_t *seg) {
    _mc_lock(&registry_lock);
    _mc_segmap_set(seg, 0);
    if (seg->all_prev)
        seg->all_prev->all_next = seg->all_next;
    else
        registry = seg->all_next;
    if (seg->all_next) seg->all_next->all_prev = seg->all_prev;
    __atomic_fetch_sub(&registry_count, 1, __ATOMIC_RELAXED);
    _mc_unlock(&registry_lock);
}

void _mc_segments_visit(void (*visit)(const mc_segment_t *seg, void *arg), void *arg) {
    _mc_lock(&registry_lock);
    for (mc_segment_t *seg = registry; seg != NULL; seg = seg->all_next) visit(seg, arg);
    _mc_unlock(&registry_lock);
}

/* The blocks waiting in the thread_free list of pg, if pg is still a page
 * of bin, in a segment that another heap owns (or none).  pg was such a page
 * when the caller freed a block into it, but it may have been released and
 * its slice reused since, or its segment unmapped.  Under the registry lock
 * the segment map says whether the segment is still mapped (unmapping clears
 * the entry under this lock first), and the cookie whether its address
 * still starts a normal segment; both are written before the segment is
 * registered.  The descriptor's owner fields are not read before the take:
 * any descriptor of a mapped segment has a thread_free word, and only a
 * page's holds blocks.  Blocks in thread_free count as used, so once taken
 * their page cannot be released, and its kind and bin are safe to read
 * (whoever freed them had the block from the owner); if the page is not
 * what the caller asked for, the blocks go back to it. */
mc_block_t *_mc_segment_take_remote(mc_page_t *pg, size_t bin, const struct mc_heap_s *self) {
    mc_segment_t *seg = mc_page_segment(pg);
    mc_block_t *list = NULL;
    _mc_lock(&registry_lock);
    if (mc_segmap_contains(seg) && seg->cookie == ((uintptr_t)seg ^ _mc_secret) &&
        seg->kind == MC_SEGMENT_NORMAL &&
        atomic_load_explicit(&seg->heap, memory_order_relaxed) != self) {
        list = _mc_page_take_thread_free(pg);
        if (list != NULL && pg->bin != bin) { /* (a large page's bin is 0) */
            while (list != NULL) {
                mc_block_t *next = mc_block_next(list);
                _mc_page_free_remote(pg, list);
                list = next;
            }
        }
    }
    _mc_unlock(&registry_lock);
    return list;
}

size_t _mc_segments_abandoned(void) {
    return atomic_load_explicit(&abandoned_count, memory_order_relaxed);
}

size_t _mc_segments_count(size_t *cached, size_t *abandoned_out) {
    *cached = atomic_load_explicit(&cache_count, memory_order_relaxed);
    *abandoned_out = atomic_load_explicit(&abandoned_count, memory_order_relaxed);
    return __atomic_load_n(&registry_count, __ATOMIC_RELAXED);
}

/* ---- Guard pages (the secure build) ----------------------------------------------
 * A write that runs off the end of the last slice, or back off the start of
 * slice 1, or off the end of a huge block's mapping, faults at once instead
 * of landing on whatever lies there (often another segment's header):
 *   - slice 63 of every segment is never handed out and is PROT_NONE (64 KiB
 *     of address space, no memory);
 *   - slice 0 is PROT_NONE after its header and page descriptors;
 *   - a huge mapping has one PROT_NONE OS page after its seg->size bytes.
 * A huge mapping that shrinks or grows (huge_resize) takes its guard page
 * along; one that becomes a segment loses it with its tail.  If mprotect
 * fails (too many mappings), the mapping simply has no guard there. */
static size_t huge_guard(void) {
    return MC_SECURE ? _mc_os_page_size() : 0;
}

/* Make [p, p+size) a guard; memory that may be resident (it held a block)
 * is given back first, since PROT_NONE alone keeps its pages in RAM. */
static void guard_range(uint8_t *p, size_t size, bool resident) {
    if (resident) _mc_os_purge(p, size, false);
    _mc_os_guard(p, size, true);
}

static void segment_guard(mc_segment_t *seg, bool resident) {
    size_t meta = mc_align_up(segment_meta_size, _mc_os_page_size());
    if (meta < MC_SLICE_SIZE) guard_range((uint8_t *)seg + meta, MC_SLICE_SIZE - meta, resident);
    guard_range((uint8_t *)seg + (MC_SLICES - 1) * MC_SLICE_SIZE, MC_SLICE_SIZE, resident);
}

static mc_segment_t *segment_from_huge(void);
/* Bumped whenever the process is about to map fresh memory (a segment or a
 * huge block: _mc_caches_purge_now); each heap purges its free slices when
 * it sees it move. */
static _Atomic uint32_t grow_epoch;

/* Every slice's descriptor marked free (MC_PAGE_FREED), as it is once a
 * page has been there: a zero descriptor would look to free's fast path
 * like a page of this thread's, and a wild pointer into a slice that never
 * held a page would go unreported.  (This writes the second 4 KiB of the
 * descriptors, which a segment with fewer than 32 slices in use would
 * otherwise leave untouched.) */
static void segment_mark_free_slices(mc_segment_t *seg) {
    _mc_page_clear_inner(seg->pages, 1, MC_SLICES);
}

static mc_segment_t *segment_map_new(void) {
    mc_segment_t *recycled = segment_from_huge();
    if (recycled != NULL) return recycled;
    _mc_caches_purge_now();
    mc_segment_t *seg = _mc_os_map_aligned(MC_SEGMENT_SIZE, MC_SEGMENT_SIZE, 0);
    if (seg == NULL) return NULL;
    if (MC_SECURE) segment_guard(seg, false);
    /* Fresh memory is zero: only the non-zero fields need setting. */
    seg->cookie = (uintptr_t)seg ^ _mc_secret;
    seg->kind = MC_SEGMENT_NORMAL;
    seg->not_a_page = MC_PAGE_FREED;
    segment_mark_free_slices(seg);
    seg->size = MC_SEGMENT_SIZE;
    seg->free_map = MC_SEGMENT_ALL_FREE;
    registry_add(seg);
    _mc_stats_committed((long)segment_meta_size);
    return seg;
}

static void segment_unmap(mc_segment_t *seg) {
    registry_remove(seg);
    bool huge = seg->kind == MC_SEGMENT_HUGE;
    _mc_stats_committed(-(long)(huge ? seg->size : segment_meta_size));
    _mc_os_unmap(seg, seg->size + (huge ? huge_guard() : 0));
}

/* ---- Spans ------------------------------------------------------------------------
 * First fit in address order: the lowest run of n free slices.  Bit i of m
 * below ends up set iff slices i .. i+have-1 are all free; each step doubles
 * the run length checked, so n slices take log2(n) steps. */
int _mc_segment_find_span(const mc_segment_t *seg, size_t n) {
    uint64_t m = seg->free_map;
    size_t have = 1;
    while (have < n && m != 0) {
        size_t step = have < n - have ? have : n - have;
        m &= m >> step;
        have += step;
    }
    return m != 0 ? __builtin_ctzll(m) : -1;
}

static uint64_t span_mask(size_t idx, size_t n) {
    return (n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << idx;
}

bool _mc_segment_take_span(mc_segment_t *seg, size_t idx, size_t n) {
    uint64_t mask = span_mask(idx, n);
    mc_assert(idx >= 1 && idx + n <= MC_SLICES_END && (seg->free_map & mask) == mask);
    seg->free_map &= ~mask;
    seg->dirty_map &= ~mask;
    seg->aged_map &= ~mask;
    if (seg->dirty_map == 0) seg->purge_at = 0;
    bool zero = (seg->nonzero_map & mask) == 0;
    seg->nonzero_map |= mask;
    _mc_stats_committed((long)(n * MC_SLICE_SIZE));
    return zero;
}

uint64_t _mc_segment_free_span(mc_segment_t *seg, size_t idx, size_t n) {
    uint64_t mask = span_mask(idx, n);
    mc_assert(idx >= 1 && idx + n <= MC_SLICES_END && (seg->free_map & mask) == 0);
    seg->free_map |= mask;
    seg->dirty_map |= mask;
    _mc_stats_committed(-(long)(n * MC_SLICE_SIZE));
    long delay = mc_option(MC_OPTION_PURGE_DELAY_MS);
    if (delay == 0) {
        _mc_segment_purge(seg, 0, true);
        return 0;
    }
    if (seg->purge_at != 0) return 0;
    seg->purge_at = delay < 0 ? UINT64_MAX : _mc_os_now_ms() + (uint64_t)delay;
    return seg->purge_at;
}

/* Purge the slices of mask (all dirty and free), run by run. */
static size_t segment_purge_slices(mc_segment_t *seg, uint64_t mask) {
    bool madv_free = mc_option(MC_OPTION_PURGE_MADV_FREE) != 0;
    uint64_t m = mask;
    size_t bytes = 0;
    while (m != 0) {
        size_t i = (size_t)__builtin_ctzll(m);
        size_t len = (size_t)__builtin_ctzll(~(m >> i)); /* bit 63 of m >> i is 0 (i >= 1) */
        uint64_t run = span_mask(i, len);
        if (_mc_os_purge(mc_slice_start(seg, i), len * MC_SLICE_SIZE, madv_free) == 0) {
            bytes += len * MC_SLICE_SIZE;
            if (!madv_free) seg->nonzero_map &= ~run; /* DONTNEED pages read as zero */
        }
        m &= ~run;
    }
    seg->dirty_map &= ~mask;
    seg->aged_map &= ~mask;
    return bytes;
}

/* Slices age in two steps, so that each stays free for at least the purge
 * delay before it goes: when purge_at comes, the slices that were dirty
 * at the previous deadline (aged_map) are purged, and those freed since
 * age for another delay.  A slice freed just before a deadline, or before
 * its thread was descheduled for a while, is not purged at once only to
 * come back as page faults when the thread allocates again. */
size_t _mc_segment_purge(mc_segment_t *seg, uint64_t now, bool force) {
    if (seg->dirty_map == 0) return 0;
    size_t bytes;
    if (force) {
        bytes = segment_purge_slices(seg, seg->dirty_map);
    } else {
        if (now < seg->purge_at) return 0;
        bytes = segment_purge_slices(seg, seg->aged_map);
        seg->aged_map = seg->dirty_map;
    }
    long delay = mc_option(MC_OPTION_PURGE_DELAY_MS);
    seg->purge_at = seg->dirty_map == 0 ? 0 : delay < 0 ? UINT64_MAX : now + (uint64_t)delay;
    return bytes;
}

/* ---- Owning, caching, abandoning ------------------------------------------------ */
static void list_insert_sorted(mc_segment_t **list, mc_segment_t *seg) {
    mc_segment_t *prev = NULL, *cur = *list;
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
        *list = seg;
}

static void list_remove(mc_segment_t **list, mc_segment_t *seg) {
    if (seg->prev)
        seg->prev->next = seg->next;
    else
        *list = seg->next;
    if (seg->next) seg->next->prev = seg->prev;
    seg->next = seg->prev = NULL;
}

static void segment_own(mc_segment_t *seg, mc_heap_t *heap) {
    seg->state = MC_SEGMENT_OWNED;
    seg->next = seg->prev = NULL;
    atomic_store_explicit(&seg->heap, heap, memory_order_release);
    _mc_segmap_set(seg, heap->tag);
}

static void segment_disown(mc_segment_t *seg) {
    _mc_segmap_set(seg, MC_TAG_NONE);
    atomic_store_explicit(&seg->heap, NULL, memory_order_release);
}

bool _mc_segment_cache_empty(void) {
    return atomic_load_explicit(&cache_count, memory_order_relaxed) == 0;
}

mc_segment_t *_mc_segment_acquire(mc_heap_t *heap) {
    mc_segment_t *seg = NULL;
    if (atomic_load_explicit(&cache_count, memory_order_relaxed) > 0) {
        _mc_lock(&cache_lock);
        seg = cache;
        if (seg != NULL) {
            list_remove(&cache, seg);
            atomic_fetch_sub_explicit(&cache_count, 1, memory_order_relaxed);
        }
        _mc_unlock(&cache_lock);
    }
    if (seg == NULL) seg = segment_map_new();
    if (seg == NULL) return NULL;
    segment_own(seg, heap);
    return seg;
}

void _mc_segment_release(mc_segment_t *seg) {
    mc_assert(seg->free_map == MC_SEGMENT_ALL_FREE);
    segment_disown(seg);
    size_t limit = (size_t)mc_option(MC_OPTION_SEGMENT_CACHE);
    if (limit > 0) {
        _mc_lock(&cache_lock);
        if (atomic_load_explicit(&cache_count, memory_order_relaxed) < limit) {
            seg->state = MC_SEGMENT_CACHED;
            seg->cached_at = _mc_os_now_ms();
            list_insert_sorted(&cache, seg);
            atomic_fetch_add_explicit(&cache_count, 1, memory_order_relaxed);
            _mc_unlock(&cache_lock);
            return;
        }
        _mc_unlock(&cache_lock);
    }
    segment_unmap(seg);
}

/* A segment without an owner: its free slices go back to the OS now, not
 * after the purge delay, which is there for the owner to take them again
 * without page faults.  (A program whose threads come and go each left its
 * free slices resident until the next visit: 7 of powtwo's 37 MiB.) */
void _mc_segment_abandon(mc_segment_t *seg) {
    _mc_segment_purge(seg, 0, true);
    segment_disown(seg);
    _mc_lock(&abandoned_lock);
    seg->state = MC_SEGMENT_ABANDONED;
    seg->next = NULL;
    seg->prev = abandoned_last;
    if (abandoned_last)
        abandoned_last->next = seg;
    else
        abandoned = seg;
    abandoned_last = seg;
    atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
    _mc_unlock(&abandoned_lock);
}

mc_segment_t *_mc_segment_pop_abandoned(void) {
    if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) == 0) return NULL;
    _mc_lock(&abandoned_lock);
    mc_segment_t *seg = abandoned;
    if (seg != NULL) {
        if (seg == abandoned_last) abandoned_last = NULL;
        list_remove(&abandoned, seg);
        atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
    }
    _mc_unlock(&abandoned_lock);
    return seg;
}

mc_segment_t *_mc_segment_reclaim_one(mc_heap_t *heap) {
    mc_segment_t *seg = _mc_segment_pop_abandoned();
    if (seg != NULL) segment_own(seg, heap);
    return seg;
}

/* ---- Spare pages -------------------------------------------------------------------
 * A cached huge mapping that serves a much smaller block is trimmed, and
 * what it cuts off is resident.  Unmapping it gave back pages that the
 * next huge block bigger than anything cached then faulted in afresh (in
 * the bench's `large`, 593 MiB trimmed and 710 MiB grown in one run).  So
 * the cut-off pages stay mapped where they are, as spares, and a huge
 * block that malloc makes larger than its cached mapping, or maps fresh,
 * takes them first: mremap moves them into the block, without page faults
 * or copies.  Spares are resident memory not in use, so they are few and
 * short-lived: at most a quarter of what is committed and MC_SPARE_MAX
 * bytes (the oldest go first), unmapped after MC_CACHE_EXPIRE_MS, and all
 * of them when the process is about to map fresh memory for anything
 * else.  Under cache_lock; spare_count is read without it. */
typedef struct spare_s {
    uint8_t *addr;
    size_t len;
    uint64_t at; /* when it was cut off (ms) */
} spare_t;
static spare_t spares[MC_SPARES]; /* oldest first */
static size_t spare_count, spare_bytes;

static void spare_drop(size_t i) {
    _mc_os_unmap(spares[i].addr, spares[i].len);
    spare_bytes -= spares[i].len;
    for (size_t k = i; k + 1 < spare_count; k++) spares[k] = spares[k + 1];
    __atomic_store_n(&spare_count, spare_count - 1, __ATOMIC_RELAXED);
}

/* Keep [addr, addr + len), cut off a huge mapping, as spare pages (or unmap
 * it, if it does not fit the bounds). */
static void spare_add(uint8_t *addr, size_t len) {
    long c = _mc_stats_committed_now();
    size_t limit = c > 0 ? (size_t)c / 4 : 0;
    if (limit > MC_SPARE_MAX) limit = MC_SPARE_MAX;
    if (len > limit) {
        _mc_os_unmap(addr, len);
        return;
    }
    _mc_lock(&cache_lock);
    while (spare_count == MC_SPARES || spare_bytes + len > limit) spare_drop(0);
    spares[spare_count] = (spare_t){addr, len, _mc_os_now_ms()};
    spare_bytes += len;
    __atomic_store_n(&spare_count, spare_count + 1, __ATOMIC_RELAXED);
    _mc_unlock(&cache_lock);
}

/* Move spare pages into [dst, dst + need), which must be mapped: the
 * newest spares first, each from its end.  Returns the bytes moved; the
 * rest of the range is left as it was. */
static size_t spare_take(uint8_t *dst, size_t need) {
    if (__atomic_load_n(&spare_count, __ATOMIC_RELAXED) == 0) return 0;
    size_t done = 0;
    _mc_lock(&cache_lock);
    while (done < need && spare_count > 0) {
        spare_t *sp = &spares[spare_count - 1];
        size_t m = sp->len < need - done ? sp->len : need - done;
        if (_mc_os_remap(sp->addr + sp->len - m, m, m, dst + done) == NULL) {
            spare_drop(spare_count - 1); /* it will not move: gone, try the next */
            continue;
        }
        done += m;
        sp->len -= m;
        spare_bytes -= m;
        if (sp->len == 0) __atomic_store_n(&spare_count, spare_count - 1, __ATOMIC_RELAXED);
    }
    _mc_unlock(&cache_lock);
    return done;
}

/* Unmap the spares cut off before now - MC_CACHE_EXPIRE_MS; all of them
 * when now is 0. */
static void spares_expire(uint64_t now) {
    if (__atomic_load_n(&spare_count, __ATOMIC_RELAXED) == 0) return;
    _mc_lock(&cache_lock);
    while (spare_count > 0 && (now == 0 || now - spares[0].at >= MC_CACHE_EXPIRE_MS)) spare_drop(0);
    _mc_unlock(&cache_lock);
}

size_t _mc_segments_spare_bytes(void) {
    _mc_lock(&cache_lock);
    size_t n = spare_bytes;
    _mc_unlock(&cache_lock);
    return n;
}

void _mc_segments_maintain(uint64_t now, bool force) {
    spares_expire(force ? 0 : now);
    if (atomic_load_explicit(&cache_count, memory_order_relaxed) > 0) {
        mc_segment_t *expired = NULL;
        if (force) _mc_lock(&cache_lock);
        if (force || _mc_trylock(&cache_lock)) {
            mc_segment_t *seg = cache;
            while (seg != NULL) {
                mc_segment_t *next = seg->next;
                _mc_segment_purge(seg, now, force);
                if (force || now - seg->cached_at >= MC_CACHE_EXPIRE_MS) {
                    list_remove(&cache, seg);
                    atomic_fetch_sub_explicit(&cache_count, 1, memory_order_relaxed);
                    seg->next = expired;
                    expired = seg;
                }
                seg = next;
            }
            _mc_unlock(&cache_lock);
        }
        while (expired != NULL) {
            mc_segment_t *next = expired->next;
            segment_unmap(expired);
            expired = next;
        }
    }
    if (atomic_load_explicit(&huge_cache_count, memory_order_relaxed) > 0) {
        mc_segment_t *expired = NULL;
        if (force) _mc_lock(&cache_lock);
        if (force || _mc_trylock(&cache_lock)) {
            for (mc_segment_t *seg = huge_cache, *next; seg != NULL; seg = next) {
                next = seg->next;
                if (force || now - seg->cached_at >= MC_CACHE_EXPIRE_MS) {
                    list_remove(&huge_cache, seg);
                    atomic_fetch_sub_explicit(&huge_cache_count, 1, memory_order_relaxed);
                    seg->next = expired;
                    expired = seg;
                }
            }
            _mc_unlock(&cache_lock);
        }
        while (expired != NULL) {
            mc_segment_t *next = expired->next;
            _mc_stats_committed((long)expired->size); /* segment_unmap subtracts it */
            segment_unmap(expired);
            expired = next;
        }
    }
    if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) > 0) {
        if (force) _mc_lock(&abandoned_lock);
        if (force || _mc_trylock(&abandoned_lock)) {
            for (mc_segment_t *seg = abandoned; seg != NULL; seg = seg->next)
                _mc_segment_purge(seg, now, force);
            _mc_unlock(&abandoned_lock);
        }
    }
}

/* ---- Huge blocks -------------------------------------------------------------------
 * A huge block lives alone in a mapping: a header (the first fields of
 * mc_segment_t) and the block MC_HUGE_OFFSET or more after it.  The mapping
 * starts on a 4 MiB boundary so that mc_segment_of finds the header; for
 * alignments above 4 MiB the block sits exactly 4 MiB after the header.
 *
 * A freed huge mapping waits in a small cache for the next huge request:
 * reusing it saves the mmap and, above all, the page faults of fresh memory.
 * Like the empty segments of the segment cache, it is purged when the
 * process is about to map fresh memory (it could not serve that request, so
 * it must not add to the peak) and unmapped after MC_CACHE_EXPIRE_MS. */
static size_t huge_len(size_t offset, size_t size) {
    return mc_align_up(offset + size, _mc_os_page_size());
}

/* Set once the kernel has refused to move a pieced mapping whole (Linux
 * before 6.17): from then on blocks that realloc grows take no spare pages,
 * since they could not grow again without a copy. */
static bool pieced_moves_fail;

/* May a huge block take spare pages?  One that realloc grows, only where
 * the kernel moves pieced mappings. */
static bool spares_for(bool growing) {
    return !growing || !__atomic_load_n(&pieced_moves_fail, __ATOMIC_RELAXED);
}

/* Fill [from, seg->size) of a huge block with spare pages, if it may take
 * them (growing: realloc's); true if it took any (it is pieced now, and its
 * bytes are not all zero). */
static bool huge_fill_spares(mc_segment_t *seg, size_t from, bool growing) {
    if (from >= seg->size || !spares_for(growing) ||
        spare_take((uint8_t *)seg + from, seg->size - from) == 0)
        return false;
    seg->pieced = 1;
    return true;
}

/* Move a huge mapping of old bytes to target, a fresh mapping of len + g. */
static bool huge_move(mc_segment_t *seg, size_t old, size_t len, size_t g, void *target) {
    if (!seg->pieced) return _mc_os_remap(seg, old + g, len + g, target) != NULL;
    if (_mc_os_remap(seg, old, old, target) != NULL) return true; /* (no resize) */
    __atomic_store_n(&pieced_moves_fail, true, __ATOMIC_RELAXED);
    return false;
}

/* Resize the mapping of a huge block to len bytes: shrink in place (what is
 * cut off becomes spare pages), grow in place, or move its pages (no copy)
 * to a new 4 MiB-aligned place.  Returns the header's address, or NULL if it
 * cannot grow (nothing changed).  In the secure build the guard page after
 * the mapping goes with its end: to grow, it is made read-write again
 * (mremap moves one mapping, not two), and the new last page becomes the
 * guard; what it cuts off is unmapped. */
static mc_segment_t *huge_resize(mc_segment_t *seg, size_t len) {
    size_t old = seg->size, g = huge_guard();
    if (len < old && g == 0) {
        spare_add((uint8_t *)seg + len, old - len);
        seg->size = len;
    } else if (len < old) {
        /* If the kernel refuses, the block simply stays larger. */
        if (_mc_os_unmap((uint8_t *)seg + len + g, old - len) == 0) {
            seg->size = len;
            if (g != 0) guard_range((uint8_t *)seg + len, g, true);
        }
    } else if (len > old) {
        if (g != 0 && _mc_os_guard((uint8_t *)seg + old, g, false) != 0) return NULL;
        /* A pieced mapping (spare pages moved in) is several kernel
         * mappings: mremap resizes only one, and moves several (Linux 6.17
         * on) only as they are, so it grows in place by mapping the address
         * space after it, or moves whole and then grows.  Where the kernel
         * refuses, realloc copies. */
        if (seg->pieced ? _mc_os_map_at((uint8_t *)seg + old, len - old) != NULL
                        : _mc_os_remap(seg, old + g, len + g, NULL) != NULL) {
            seg->size = len;
        } else {
            size_t offset = (size_t)(seg->huge_block - (uint8_t *)seg);
            mc_segment_t *target = _mc_os_map_aligned(len + g, MC_SEGMENT_SIZE, 0);
            if (target != NULL) {
                registry_remove(seg);
                if (!huge_move(seg, old, len, g, target)) {
                    _mc_os_unmap(target, len + g);
                    registry_add(seg);
                    target = NULL;
                }
            }
            if (target == NULL) {
                if (g != 0) _mc_os_guard((uint8_t *)seg + old, g, true);
                return NULL;
            }
            /* The header travelled with the pages. */
            seg = target;
            seg->cookie = (uintptr_t)seg ^ _mc_secret;
            seg->size = len;
            seg->huge_block = (uint8_t *)seg + offset;
            registry_add(seg);
        }
        if (g != 0) _mc_os_guard((uint8_t *)seg + len, g, true);
    }
    _mc_stats_committed((long)seg->size - (long)old);
    return seg;
}

static void huge_purge(mc_segment_t *seg) {
    size_t start = mc_align_up(MC_HUGE_OFFSET, _mc_os_page_size());
    bool madv_free = mc_option(MC_OPTION_PURGE_MADV_FREE) != 0;
    if (seg->size > start &&
        _mc_os_purge((uint8_t *)seg + start, seg->size - start, madv_free) == 0 && !madv_free &&
        start == MC_HUGE_OFFSET)
        seg->nonzero_map = 0;
    seg->purge_at = 0;
}

/* Take out of the cache the smallest mapping of len bytes or more, or with
 * or_largest, failing that, the largest there is.  NULL if none. */
static mc_segment_t *huge_cache_remove(size_t len, bool or_largest) {
    if (atomic_load_explicit(&huge_cache_count, memory_order_relaxed) == 0) return NULL;
    _mc_lock(&cache_lock);
    mc_segment_t *fit = NULL, *largest = NULL;
    for (mc_segment_t *s = huge_cache; s != NULL; s = s->next) {
        if (s->size >= len && (fit == NULL || s->size < fit->size)) fit = s;
        if (s->size < len && (largest == NULL || s->size > largest->size)) largest = s;
    }
    mc_segment_t *seg = fit != NULL ? fit : or_largest ? largest : NULL;
    if (seg != NULL) {
        list_remove(&huge_cache, seg);
        atomic_fetch_sub_explicit(&huge_cache_count, 1, memory_order_relaxed);
    }
    _mc_unlock(&cache_lock);
    return seg;
}

/* The cached mapping to serve len bytes: the smallest at least that large,
 * or else the largest (which will grow).  Taken out of the cache. */
static mc_segment_t *huge_cache_take(size_t len) {
    mc_segment_t *seg = huge_cache_remove(len, true);
    if (seg != NULL) {
        seg->state = MC_SEGMENT_ALONE;
        _mc_stats_committed((long)seg->size);
    }
    return seg;
}

/* A new segment from a freed huge mapping of at least a segment's size, the
 * smallest there is: its pages are resident already, so the process takes no
 * page faults and does not grow, where mapping a fresh segment would first
 * have purged those pages (see below) and then faulted in new ones.  The rest
 * of the mapping is unmapped.  NULL if there is none. */
static mc_segment_t *segment_from_huge(void) {
    mc_segment_t *seg = huge_cache_remove(MC_SEGMENT_SIZE, false);
    if (seg == NULL) return NULL;
    /* (With the huge block's guard page; the segment gets its own.) */
    size_t tail = seg->size + huge_guard() - MC_SEGMENT_SIZE;
    if (tail > 0 && _mc_os_unmap((uint8_t *)seg + MC_SEGMENT_SIZE, tail) != 0) {
        _mc_stats_committed((long)seg->size); /* segment_unmap subtracts it */
        segment_unmap(seg);
        return NULL;
    }
    bool purged = seg->nonzero_map == 0; /* the block's pages read as zero */
    if (MC_SECURE) segment_guard(seg, !purged);
    long delay = mc_option(MC_OPTION_PURGE_DELAY_MS);
    /* Under the registry lock: a statistics visit may be reading it. */
    _mc_lock(&registry_lock);
    memset(&seg->pages[1], 0, (MC_SLICES - 1) * sizeof(mc_page_t));
    segment_mark_free_slices(seg);
    seg->pieced = 0;
    seg->kind = MC_SEGMENT_NORMAL;
    seg->not_a_page = MC_PAGE_FREED;
    seg->state = 0;
    seg->size = MC_SEGMENT_SIZE;
    seg->free_map = MC_SEGMENT_ALL_FREE;
    seg->aged_map = 0;
    seg->huge_block = NULL;
    seg->huge_asked = 0;
    seg->next = seg->prev = NULL;
    /* Resident slices are dirty: purged on the usual schedule unless used. */
    seg->nonzero_map = purged ? 0 : ~(uint64_t)0;
    seg->dirty_map = purged ? 0 : MC_SEGMENT_ALL_FREE;
    seg->purge_at = purged ? 0 : delay < 0 ? UINT64_MAX : _mc_os_now_ms() + (uint64_t)delay;
    _mc_unlock(&registry_lock);
    if (delay == 0) _mc_segment_purge(seg, 0, true);
    _mc_stats_committed((long)segment_meta_size);
    return seg;
}

uint32_t _mc_grow_epoch(void) {
    return atomic_load_explicit(&grow_epoch, memory_order_relaxed);
}

/* About to map fresh memory: first give back what the caches hold, since it
 * could not serve this request (peak RSS stays what is in use). */
void _mc_caches_purge_now(void) {
    atomic_fetch_add_explicit(&grow_epoch, 1, memory_order_relaxed);
    spares_expire(0);
    if (atomic_load_explicit(&cache_count, memory_order_relaxed) +
            atomic_load_explicit(&huge_cache_count, memory_order_relaxed) !=
        0) {
        _mc_lock(&cache_lock);
        for (mc_segment_t *seg = cache; seg != NULL; seg = seg->next)
            _mc_segment_purge(seg, 0, true);
        for (mc_segment_t *seg = huge_cache; seg != NULL; seg = seg->next)
            if (seg->purge_at != 0) huge_purge(seg);
        _mc_unlock(&cache_lock);
    }
    if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) != 0) {
        _mc_lock(&abandoned_lock);
        for (mc_segment_t *seg = abandoned; seg != NULL; seg = seg->next)
            _mc_segment_purge(seg, 0, true);
        _mc_unlock(&abandoned_lock);
    }
}

void *_mc_huge_alloc(size_t size, size_t align, bool growing, bool *is_zero) {
    size_t offset = MC_HUGE_OFFSET;
    if (align > offset) offset = align <= MC_SEGMENT_SIZE ? align : MC_SEGMENT_SIZE;
    if (size > PTRDIFF_MAX - offset - _mc_os_page_size()) return NULL;
    size_t len = huge_len(offset, size);
    mc_segment_t *seg = offset == MC_HUGE_OFFSET ? huge_cache_take(len) : NULL;
    if (seg != NULL) {
        /* A cached mapping up to half as large again is kept whole: the
         * block may grow into it (realloc), without page faults.  A block
         * that realloc is growing keeps one up to eight times as large (and
         * 2 MiB), as room (see mc_huge_usable): it will likely grow on, and
         * the pages it would otherwise unmap, resident still, are the ones
         * it would fault in again (the string builders of the large
         * workload: 271 000 faults -> 219 000, 0.78 -> 0.69 s, peak RSS
         * +0.5%). */
        size_t keep = growing ? 8 * len + MC_LARGE_MAX : len + len / 2, old = seg->size;
        mc_segment_t *sized =
            huge_resize(seg, seg->size > len && seg->size <= keep ? seg->size : len);
        if (sized != NULL) {
            *is_zero = sized->nonzero_map == 0;
            if (huge_fill_spares(sized, old, growing)) *is_zero = false; /* (grown) */
            sized->nonzero_map = 1;
            sized->huge_asked = size;
            return sized->huge_block;
        }
        segment_unmap(seg);
    }
    size_t guard = huge_guard();
    seg = align > MC_SEGMENT_SIZE ? _mc_os_map_aligned(len + guard, align, MC_SEGMENT_SIZE)
                                  : _mc_os_map_aligned(len + guard, MC_SEGMENT_SIZE, 0);
    if (seg == NULL) {
        _mc_caches_purge_now();
        return NULL;
    }
    if (guard != 0) _mc_os_guard((uint8_t *)seg + len, guard, true);
    seg->cookie = (uintptr_t)seg ^ _mc_secret;
    seg->kind = MC_SEGMENT_HUGE;
    seg->not_a_page = MC_PAGE_FREED;
    seg->state = MC_SEGMENT_ALONE;
    seg->size = len;
    seg->huge_block = (uint8_t *)seg + offset;
    seg->huge_asked = size;
    seg->nonzero_map = 1;
    seg->pieced = 0;
    /* Spare pages for the block first; then what the caches still hold
     * goes back, since it could not serve this request. */
    *is_zero = offset != MC_HUGE_OFFSET ||
               !huge_fill_spares(seg, mc_align_up(offset, _mc_os_page_size()), growing);
    _mc_caches_purge_now();
    registry_add(seg);
    _mc_stats_committed((long)len);
    return seg->huge_block;
}

void _mc_huge_free(mc_segment_t *seg) {
    long delay = mc_option(MC_OPTION_PURGE_DELAY_MS);
    if (seg->huge_block == (uint8_t *)seg + MC_HUGE_OFFSET &&
        mc_option(MC_OPTION_SEGMENT_CACHE) > 0) {
        _mc_lock(&cache_lock);
        if (atomic_load_explicit(&huge_cache_count, memory_order_relaxed) < MC_HUGE_CACHE) {
            /* Once in the cache and unlocked, another thread may unmap it:
             * nothing of it may be read after the unlock. */
            _mc_stats_committed(-(long)seg->size);
            uint64_t now = _mc_os_now_ms();
            seg->state = MC_SEGMENT_CACHED;
            seg->cached_at = now;
            seg->purge_at = delay < 0 ? UINT64_MAX : now + (uint64_t)delay;
            if (delay == 0) huge_purge(seg);
            seg->prev = NULL;
            seg->next = huge_cache;
            if (huge_cache) huge_cache->prev = seg;
            huge_cache = seg;
            atomic_fetch_add_explicit(&huge_cache_count, 1, memory_order_relaxed);
            _mc_unlock(&cache_lock);
            return;
        }
        _mc_unlock(&cache_lock);
    }
    segment_unmap(seg);
}

/* Growing, reserve a quarter more address space than asked: a buffer grown
 * a little at a time (a string builder) then remaps once per quarter, not
 * once per page.  Untouched pages cost no memory. */
void *_mc_huge_realloc(mc_segment_t *seg, size_t size) {
    size_t offset = (size_t)(seg->huge_block - (uint8_t *)seg);
    if (size > PTRDIFF_MAX - offset - _mc_os_page_size()) return NULL;
    size_t len = huge_len(offset, size), old = seg->size;
    /* Shrink only when asked for less than before, and by a quarter or more:
     * a growing block keeps the room it was given. */
    if (len <= old && (size >= seg->huge_asked || len > old - old / 4)) {
        seg->huge_asked = size;
        return seg->huge_block;
    }
    mc_segment_t *sized = NULL;
    if (len > old) {
        size_t roomy = huge_len(0, old + old / 4);
        if (roomy > len && roomy - offset <= PTRDIFF_MAX) sized = huge_resize(seg, roomy);
    }
    if (sized == NULL) sized = huge_resize(seg, len);
    if (sized == NULL) return NULL;
    huge_fill_spares(sized, old, true); /* (grown) */
    sized->huge_asked = size;
    return sized->huge_block;
}

bool _mc_huge_is_live(const mc_segment_t *seg) {
    return seg->state == MC_SEGMENT_ALONE;
}

/* ---- Fork --------------------------------------------------------------------------- */
void _mc_segments_fork_prepare(void) {
    _mc_lock(&abandoned_lock);
    _mc_lock(&cache_lock);
    _mc_lock(&registry_lock);
}

void _mc_segments_fork_parent(void) {
    _mc_unlock(&registry_lock);
    _mc_unlock(&cache_lock);
    _mc_unlock(&abandoned_lock);
}

void _mc_segments_fork_child(void) {
    _mc_lock_reset(&registry_lock);
    _mc_lock_reset(&cache_lock);
    _mc_lock_reset(&abandoned_lock);
}

/* ---- Validation (debug) ------------------------------------------------------------- */
#define VALID(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            _mc_message("mclone: heap check: segment %p: %s", (const void *)seg, #cond);           \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

bool _mc_segment_is_valid(const mc_segment_t *seg) {
    VALID(((uintptr_t)seg & MC_SEGMENT_MASK) == 0);
    VALID(seg->cookie == ((uintptr_t)seg ^ _mc_secret));
    VALID(mc_segmap_contains(seg));
    if (seg->kind == MC_SEGMENT_HUGE) return true;
    VALID(seg->kind == MC_SEGMENT_NORMAL);
    VALID((seg->free_map & 1) == 0);
    VALID((seg->dirty_map & ~seg->free_map) == 0);
    VALID((seg->aged_map & ~seg->dirty_map) == 0);
    VALID((seg->dirty_map != 0) == (seg->purge_at != 0) ||
          mc_option(MC_OPTION_PURGE_DELAY_MS) == 0);
    size_t i = 1;
    while (i < MC_SLICES_END) {
        const mc_page_t *pg = &seg->pages[i];
        if (seg->free_map & ((uint64_t)1 << i)) {
            VALID(pg->kind == MC_KIND_NONE && pg->slice_back == 0 && pg->flags == MC_PAGE_FREED);
            i++;
            continue;
        }
        VALID(pg->kind != MC_KIND_NONE && pg->slice_back == 0);
        VALID(pg->slice_count >= 1 && i + pg->slice_count <= MC_SLICES_END);
        for (size_t k = 1; k < pg->slice_count; k++) {
            VALID((seg->free_map & ((uint64_t)1 << (i + k))) == 0);
            VALID(seg->pages[i + k].slice_back == k * sizeof(mc_page_t));
        }
        i += pg->slice_count;
    }
    return true;
}
