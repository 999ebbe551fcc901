/* config.h: every build-time setting of libmclone, in one place.
 *
 * Variants are chosen with -D on the command line and tested with plain `if`
 * (not #ifdef) wherever possible, so that every variant's code is compiled in
 * every build and cannot rot. */
#ifndef MC_CONFIG_H
#define MC_CONFIG_H

#include "os.h"

/* 0 release, 1 cheap asserts, 2 invariant checks on slow paths,
 * 3 full validation of the calling thread's heap on every call. */
#ifndef MCLONE_DEBUG
#define MCLONE_DEBUG 0
#endif
#define MC_DEBUG MCLONE_DEBUG

/* The secure build (libmclone-secure): every block carries a trailer and,
 * when free, a mark and a fill, checked by free and malloc (secure.c). */
#ifndef MCLONE_SECURE
#define MCLONE_SECURE 0
#endif
#define MC_SECURE         MCLONE_SECURE
#define MC_SECURE_TRAILER 8    /* the last word of each block: where the caller's bytes end */
#define MC_SECURE_MIN     16   /* smallest block: link and mark, once free */
#define MC_SECURE_CANARY  32   /* canary bytes checked after the caller's bytes */
#define MC_SECURE_FILL    1024 /* bytes of a free block filled and checked */
/* KiB of freed blocks each thread's quarantine holds (MCLONE_QUARANTINE_KB). */
#define MC_QUARANTINE_KB_DEFAULT (MC_SECURE ? 256 : 0)

/* Fault injection: the os layer can be told to fail its Nth call (tests). */
#ifndef MCLONE_FAULT_INJECT
#define MCLONE_FAULT_INJECT 0
#endif
#define MC_FAULT_INJECT MCLONE_FAULT_INJECT

/* ---- Geometry --------------------------------------------------------------
 * A segment is 4 MiB aligned to 4 MiB, cut into 64 slices of 64 KiB.  Slice 0
 * holds the segment header and the page descriptors; the others are handed
 * out as spans (all but the last in the secure build, see below). */
#define MC_SEGMENT_SHIFT 22
#define MC_SEGMENT_SIZE  ((size_t)1 << MC_SEGMENT_SHIFT)
#define MC_SEGMENT_MASK  (MC_SEGMENT_SIZE - 1)
#define MC_SLICE_SHIFT   16
#define MC_SLICE_SIZE    ((size_t)1 << MC_SLICE_SHIFT)
#define MC_SLICES        (MC_SEGMENT_SIZE / MC_SLICE_SIZE) /* 64: one bitmap word */
/* Spans lie in slices 1 .. MC_SLICES_END - 1: in the secure build slice 63 is
 * a guard (segment.c).  All free: every one of those slices. */
#define MC_SLICES_END       (MC_SLICES - MC_SECURE)
#define MC_SEGMENT_ALL_FREE (~(uint64_t)1 & ~((uint64_t)MC_SECURE << 63))

/* The segment map: one 16-bit entry per 4 MiB of user address space.
 *   0                     not ours
 *   MC_TAG_NONE           ours, owned by no heap that frees fast (huge,
 *                         cached, abandoned segments)
 *   MC_TAG_FIRST..LAST    owned by the heap with that tag
 * A thread's own tag is in TLS (MC_TAG_NOBODY until it has a heap), so free
 * checks "a block of ours, owned by this thread" with one load. */
#define MC_SEGMAP_ENTRIES ((size_t)1 << (MC_OS_ADDRESS_BITS - MC_SEGMENT_SHIFT))
#define MC_TAG_NONE       1
#define MC_TAG_FIRST      2
#define MC_TAG_LAST       0xFFFE
#define MC_TAG_NOBODY     0xFFFF /* never in the map */

/* ---- Size ranges -----------------------------------------------------------
 * small: bins, served through the direct table; medium: bins of larger pages;
 * large: a span of its own; huge: a mapping of its own. */
#define MC_SMALL_MAX    1024
#define MC_DIRECT_COUNT (MC_SMALL_MAX / 8 + 1) /* index (size + 7) / 8 */
#define MC_MEDIUM_MAX   ((size_t)128 * 1024)
#define MC_LARGE_MAX    (MC_SEGMENT_SIZE / 2)
#define MC_MEDIUM_LOG   17 /* MC_MEDIUM_MAX = 2^17 */
/* Bins (page.c): 1 (8 B), 2-9 (16-128 B), eight per power of two up to
 * 2^MC_BIN_HEADER_LOG, then ten (2^k + 16 and 2^k + 2^(k-4) + 16 first) up
 * to MC_MEDIUM_MAX: bins 1..103, bin 0 unused. */
#define MC_BIN_HEADER_LOG   10
#define MC_BIN_HEADER_FIRST (10 + (MC_BIN_HEADER_LOG - 7) * 8) /* the bin of 2^10 + 16 */
#define MC_BIN_HEADER_PER   10                                 /* bins per power from there */
#define MC_BIN_COUNT        (MC_BIN_HEADER_FIRST + (MC_MEDIUM_LOG - MC_BIN_HEADER_LOG) * MC_BIN_HEADER_PER)
#define MC_BIN_FULL         MC_BIN_COUNT
#define MC_MAX_ALIGN        16 /* the alignment of every block of 16 bytes or more */
/* page->recip = 2^MC_RECIP_SHIFT / block_size + 1 is exact for offsets below
 * 2^(MC_RECIP_SHIFT - 18) = 4 MiB and block sizes up to MC_MEDIUM_MAX = 2^17:
 * the error, below off / 2^MC_RECIP_SHIFT, stays under 1 / block_size. */
#define MC_RECIP_SHIFT 40
/* realloc growing a block beyond this gives it room to grow (alloc.c). */
#define MC_GROW_MIN    4096
#define MC_HUGE_OFFSET 4096 /* a huge block starts this far into its mapping */

/* Blocks carved into a page's free list at a time: at most this many bytes
 * (so a fresh page touches memory gradually), and at least one block.
 * Carving writes each block's link, so it touches an OS page for every
 * block of 4 KiB or more: one at a time, a bin of them used by a few live
 * blocks touches only those (at least four at a time, the python3 workload
 * held 1 MiB more, sqlite3 0.7 MiB). */
#define MC_EXTEND_BYTES 4096
/* A refill from local_free of fewer blocks than this, or than
 * MC_REFILL_BYTES worth, carves the difference (if the page has room): see
 * _mc_page_collect.  The bytes bound keeps the short cycles of classes with
 * few live blocks small: with 32 blocks for every class, each class of 256 B
 * to 1 KiB in use kept 8-32 KiB of idle blocks carved. */
#define MC_REFILL_MIN   32
#define MC_REFILL_BYTES 2048

/* ---- Memory return defaults (options override them at run time) ---------- */
#define MC_PURGE_DELAY_MS_DEFAULT 10
#define MC_SEGMENT_CACHE_DEFAULT  8
#define MC_CACHE_EXPIRE_MS        1000
#define MC_HUGE_CACHE             8   /* freed huge mappings kept for reuse */
#define MC_MAINTAIN_EVERY         32  /* slow-path calls between clock checks */
#define MC_SWEEP_PAGES            128 /* pages looked at per sweep of remote frees */
#define MC_SWEEP_BINS             16  /* bins looked at per sweep */
#define MC_PUNCH_EVERY_MS         100 /* holes looked for, before growing, at most this often */
#define MC_TAIL_PURGE_EVERY_MS    4   /* a heap earns a tail purge this often (heap.c) */
#define MC_TAIL_PURGE_BURST       64  /* and may save up this many */
#define MC_VISIT_BACKLOG          4   /* abandoned segments above which every heap visits */
#define MC_PARK_MAX               8   /* heaps of exited threads kept whole for new threads */
#define MC_PARK_SEGMENTS          2   /* ... if they own at most this many segments */
/* Pages cut off cached huge mappings, kept resident for the next huge block
 * (segment.c, "Spare pages"): at most this many pieces, and bytes. */
#define MC_SPARES    16
#define MC_SPARE_MAX ((size_t)24 << 20)

#endif
