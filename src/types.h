/* types.h: every data structure of libmclone, with its invariants.
 *
 * Glossary
 *   segment  4 MiB of address space aligned to 4 MiB, so that the segment of
 *            any block is found by masking the block's address.  Slice 0
 *            holds this header and the page descriptors.
 *   slice    1/64 of a segment (64 KiB), the unit of the span layer.
 *   span     a run of slices of one segment, free or in use as a page.
 *   page     a span in use: blocks of one size (a bin), or one large block.
 *   block    what malloc returns.
 *   bin      a size class; a heap keeps a queue of its pages per bin.
 *   heap     one per thread: the bins, the direct table, its segments.
 *   huge     a block above MC_LARGE_MAX, alone in a mapping of its own
 *            (a "huge segment": a header, then the block).
 *
 *   segment (4 MiB, aligned)
 *   +--------+--------+--------+--------+-- ... --+--------+
 *   | header | page A |    page B       |  free   | large  |   64 slices
 *   | pages[]| 16 B   |    1 KiB blocks |         | block  |   of 64 KiB
 *   +--------+--------+--------+--------+-- ... --+--------+
 *   slice 0    1        2        3                  63
 */
#ifndef MC_TYPES_H
#define MC_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct mc_heap_s;

/* A free block: its first word links it into a free list. */
typedef struct mc_block_s {
    struct mc_block_s *next;
} mc_block_t;

/* ---- Page -------------------------------------------------------------------
 * Three free lists shard the work of free:
 *   free         malloc pops here (owner only);
 *   local_free   the owning thread's free pushes here (owner only, no atomics);
 *   thread_free  other threads push here with one atomic operation; the owner
 *                takes the whole list at once in the slow path.
 * Invariant (page_is_valid, debug level 2):
 *   used - pinned + |local_free| + holed == capacity <= reserved
 *   |thread_free| <= used - pinned - |free|   (page.c checks its head only)
 * used counts every block that is not in local_free: handed out, waiting in
 * thread_free (until the owner collects it), or waiting in free.  Blocks are
 * counted when they enter free (a refill or an extension), so malloc's fast
 * path only pops; free's fast path decrements, and reaching 0 means the page
 * is empty.  The page heading its bin queue holds one extra count, the
 * "pin", so that it is not released each time it empties.  Counting lists
 * means walking them, touching every block, so it is put off: a refill takes
 * thread_free whole into local_free without counting it (flag uncounted:
 * used counts those blocks twice, "==" becomes ">="), and a page that stops
 * being a head keeps its free list; _mc_page_normalize makes used exact when
 * someone needs to know whether the page is empty.
 *
 * Holes: in a page left mostly empty, the OS pages (4 KiB) that hold only
 * free blocks are purged while the page stays in use; their blocks leave the
 * lists (holed counts them, holes marks the OS pages) until the page runs out
 * of blocks and takes them back.
 *
 * The low two bits of thread_free hold the notification state, which lets a
 * remote free tell the owner that a full page has a free block again:
 *   NORMAL  push and go;
 *   NOTIFY  the page sits in its heap's full queue: the first remote free
 *           switches to BUSY, pushes the page on heap->notified, then clears
 *           the state to NORMAL;
 *   BUSY    that notification is under way (the owner waits for it to end
 *           before it gives the page or the heap away).
 * A page is on its heap's notified list at most once: the state is set to
 * NOTIFY only when the page enters the full queue, and the heap drains the
 * list before it moves any page there. */
#define MC_TF_NORMAL 0u
#define MC_TF_NOTIFY 1u
#define MC_TF_BUSY   2u
#define MC_TF_STATE  3u

/* page->flags: any of these sends free off the fast path. */
#define MC_PAGE_IN_FULL     0x01 /* in the heap's full queue (large pages always) */
#define MC_PAGE_HAS_ALIGNED 0x02 /* some block was returned at an inner address */
#define MC_PAGE_INNER                                                                              \
    0x04 /* descriptor of a slice inside a span, not a page:                                       \
            free finds the page through slice_back */
#define MC_PAGE_FREED                                                                              \
    0x08 /* descriptor of a free slice (segment.c sets it on every slice of a                      \
            new segment): a free into it (a double or wild free) goes to the                       \
            slow path, which reports it */

/* page->kind, on the descriptor of a span's first slice. */
enum {
    MC_KIND_NONE = 0, /* a free slice, or a slice inside a span */
    MC_KIND_SMALL,    /* bins up to MC_SMALL_MAX */
    MC_KIND_MEDIUM,   /* bins up to MC_MEDIUM_MAX */
    MC_KIND_LARGE,    /* one block filling the span */
};

typedef struct mc_page_s {
    /* First cache line: the owner's.  The fast paths touch only its first
     * 24 bytes. */
    mc_block_t *free;
    mc_block_t *local_free;
    uint32_t used;
    uint8_t flags;        /* MC_PAGE_* */
    uint8_t pinned;       /* heads its bin queue: used holds one extra count */
    uint8_t is_zero;      /* fresh from the OS: blocks never written (calloc) */
    uint8_t uncounted;    /* local_free holds remote frees still counted in used */
    uint16_t slice_count; /* span length in slices */
    uint16_t bin;
    uint32_t holed;                /* blocks in holes, taken out of the lists */
    struct mc_page_s *next, *prev; /* in a bin queue or the full queue */
    uint64_t holes;                /* OS pages purged while the page is in use, a bit each */
    mc_block_t *punched;           /* local_free when holes were last looked for */
    /* Second cache line: what other threads read when they free into the
     * page (and thread_free, notify_next, which they write), so that their
     * frees do not keep taking the owner's line away from it. */
    _Atomic(uintptr_t) thread_free;   /* mc_block_t* | MC_TF_* */
    _Atomic(struct mc_heap_s *) heap; /* owner, read by a notifying remote free */
    struct mc_page_s *notify_next;    /* in heap->notified */
    uint8_t *start;                   /* the first block */
    /* off / block_size == (off * recip) >> MC_RECIP_SHIFT for every offset
     * in a page, so finding a block needs no division; 0 for a large page
     * (its one block is at offset 0). */
    uint64_t recip;
    /* Descriptor of a slice inside a span: bytes back to the span's first
     * descriptor (0 on the first one), read by free to find the page. */
    uint32_t slice_back;
    uint32_t block_size;
    uint32_t capacity; /* blocks carved into the free lists so far */
    uint32_t reserved; /* blocks that fit in the span */
    uint8_t kind;      /* MC_KIND_* */
    uint8_t pad_;
    uint16_t remote_bin; /* bin again, on the line a remote free reads (0: large) */
    uint8_t pad2_[4];
} mc_page_t;

_Static_assert(sizeof(mc_page_t) == 128, "page descriptors are 128 bytes (free computes with it)");
_Static_assert(offsetof(mc_page_t, thread_free) == 64,
               "what other threads touch starts a cache line");

/* ---- Segment -----------------------------------------------------------------
 * Invariants (segment_is_valid, debug level 2):
 *   - bit 0 of free_map is clear (slice 0 is metadata); bit i is set iff
 *     slice i belongs to no page, and then its descriptor has kind
 *     MC_KIND_NONE and flags MC_PAGE_FREED exactly;
 *   - a page starting at slice i with n slices has pages[i + k].slice_back ==
 *     k * sizeof(mc_page_t) for k < n, and none of those slices is free;
 *   - dirty_map and nonzero_map describe free and used slices as named; a
 *     slice is in dirty_map only if free; aged_map is a subset of dirty_map;
 *   - purge_at != 0 iff dirty_map != 0 (with a delay, not purged yet);
 *   - the segment is owned by one heap (heap != NULL), or it is abandoned,
 *     cached or huge (heap == NULL), never two of these at once. */
enum {
    MC_SEGMENT_NORMAL = 1,
    MC_SEGMENT_HUGE,
};

enum {
    MC_SEGMENT_OWNED = 1, /* in its heap's segment list */
    MC_SEGMENT_ABANDONED, /* in the abandoned list (its thread exited) */
    MC_SEGMENT_CACHED,    /* empty, in the segment cache */
    MC_SEGMENT_ALONE,     /* huge */
};

/* The header shares its place with the descriptor of slice 0 (which is the
 * metadata slice, never a page): so descriptor i is at segment + 128 * i, and
 * free finds the page of p as segment | ((p >> 9) & 0x1F80). */
typedef struct mc_segment_s {
    union {
        struct {                              /* slice 0's descriptor slot */
            _Atomic(struct mc_heap_s *) heap; /* owner, NULL when not owned */
            uintptr_t cookie;                 /* address ^ secret: really ours */
            uint8_t kind;                     /* MC_SEGMENT_NORMAL / MC_SEGMENT_HUGE */
            uint8_t state;                    /* MC_SEGMENT_OWNED ... */
            uint8_t pieced; /* huge: pages moved in from elsewhere: several kernel mappings */
            uint8_t pad_;
            /* Where slice 0's descriptor would have its flags: always set
             * (MC_PAGE_FREED), so that free's fast path sends a pointer into
             * the metadata slice to the checks instead of taking the header
             * for a page. */
            uint8_t not_a_page;
            uint64_t free_map;
            uint64_t dirty_map;   /* free slices that may still be resident: to purge */
            uint64_t aged_map;    /* dirty at the last due purge_at: purged at the next */
            uint64_t nonzero_map; /* slices that may hold non-zero bytes */
            uint64_t purge_at;    /* when dirty_map is due (ms); 0: nothing pending */
            uint64_t cached_at;   /* when it entered the cache (ms) */
            size_t size;          /* bytes mapped from segment start */
            uint8_t *huge_block;  /* huge: the block */
            size_t huge_asked;    /* huge: the size last asked for (malloc, realloc) */
            struct mc_segment_s *next, *prev;         /* heap, cache or abandoned list */
            struct mc_segment_s *all_next, *all_prev; /* every mapped segment */
        };
        mc_page_t pages[MC_SLICES];
    };
} mc_segment_t;

_Static_assert(offsetof(mc_segment_t, all_prev) + sizeof(void *) <= sizeof(mc_page_t),
               "the header fits in pages[0]");
_Static_assert(offsetof(mc_segment_t, not_a_page) == offsetof(mc_page_t, flags),
               "the header's not_a_page is where a descriptor has its flags");
_Static_assert(sizeof(mc_segment_t) <= MC_SLICE_SIZE, "segment metadata fits in slice 0");
/* A huge segment uses only the header: its block may overlap pages[]. */
_Static_assert(sizeof(mc_page_t) <= MC_HUGE_OFFSET,
               "a huge segment's header fits before its block");

/* ---- Heap -----------------------------------------------------------------------
 * Invariants (heap_is_valid, debug level 2):
 *   - direct[w] is the first page of the bin of size 8*w, or the empty page;
 *   - the first page of each bin queue is pinned, no other page is;
 *   - every page of queues[MC_BIN_FULL] has MC_PAGE_IN_FULL and no other page
 *     has it; pages of the full queue have no block left to hand out;
 *   - segments is in address order and holds exactly the segments whose heap
 *     is this heap. */
typedef struct mc_page_queue_s {
    mc_page_t *first, *last;
    size_t count;
} mc_page_queue_t;

typedef struct mc_heap_s {
    mc_page_t *direct[MC_DIRECT_COUNT]; /* (size + 7) / 8 -> page to allocate from */
    uint16_t tag;                       /* this heap's mark in the segment map (MC_TAG_*) */
    mc_page_queue_t queues[MC_BIN_FULL + 1];
    _Atomic(mc_page_t *) notified; /* full pages that received a remote free */
    mc_segment_t *segments;        /* owned segments, in address order */
    size_t segment_count;
    size_t empty_segments;  /* owned segments with every slice free */
    uint64_t purge_at;      /* earliest purge_at of the owned segments, 0: none */
    uint64_t maintained_at; /* when the last full maintenance ran (ms) */
    int32_t maintain_in;    /* slow-path calls until the next maintenance */
    uint32_t sweep_bin;     /* where the next sweep of remote frees starts */
    uint32_t trim_epoch;    /* the global trim request last served */
    uint32_t grow_epoch;    /* the last growth of the process seen */
    uint64_t punched_at;    /* when holes were last punched before growing (ms) */
    uint64_t tails_at;      /* maintained_at when tail_purges was last topped up */
    uint64_t tail_purges;   /* tail purges this heap may do now (heap.c) */
    /* Per bin: the last page of another heap this thread freed a block
     * into, and blocks taken back from such pages (heap.c, "Blocks of other
     * threads"). */
    mc_page_t *foreign_page[MC_BIN_COUNT];
    mc_block_t *foreign[MC_BIN_COUNT];
    /* The secure build's quarantine (secure.c): blocks this thread freed,
     * oldest first, linked like a free list, and the bytes they hold. */
    mc_block_t *quarantine, *quarantine_last;
    size_t quarantine_bytes;
    struct mc_heap_s *pool_next; /* in the pool of unused heaps, or parked */
    uint64_t parked_at;          /* when its thread exited, if parked (ms) */
} mc_heap_t;

#endif
