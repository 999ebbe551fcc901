/* mclone.h: the malloc-clone allocator under its own names.
 *
 * Every function here is the same allocator that libmclone exports as
 * malloc, free, ...; the mc_ names let a program use it beside the system
 * allocator, or reach the extras: options, statistics and a heap map.
 *
 * Link with -lmclone (build/libmclone.so or build/libmclone.a). */
#ifndef MCLONE_H
#define MCLONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MCLONE_VERSION_MAJOR 0
#define MCLONE_VERSION_MINOR 1

#if defined(__GNUC__)
#define MC_API_MALLOC          __attribute__((malloc, warn_unused_result))
#define MC_API_ALLOC_SIZE(...) __attribute__((alloc_size(__VA_ARGS__)))
#else
#define MC_API_MALLOC
#define MC_API_ALLOC_SIZE(...)
#endif

/* ---- The C, POSIX and glibc allocation API -------------------------------
 * Same semantics as the unprefixed functions in glibc: 16-byte alignment for
 * blocks of 16 bytes or more, mc_malloc(0) returns a unique pointer,
 * mc_realloc(p, 0) frees p and returns NULL, every failure returns NULL with
 * errno set to ENOMEM (EINVAL for a bad alignment). */
MC_API_MALLOC MC_API_ALLOC_SIZE(1) void *mc_malloc(size_t size);
MC_API_MALLOC MC_API_ALLOC_SIZE(1, 2) void *mc_calloc(size_t count, size_t size);
MC_API_ALLOC_SIZE(2) void *mc_realloc(void *p, size_t size);
MC_API_ALLOC_SIZE(2, 3) void *mc_reallocarray(void *p, size_t count, size_t size);
void mc_free(void *p);
void mc_free_sized(void *p, size_t size);
void mc_free_aligned_sized(void *p, size_t alignment, size_t size);
int mc_posix_memalign(void **out, size_t alignment, size_t size);
MC_API_MALLOC MC_API_ALLOC_SIZE(2) void *mc_aligned_alloc(size_t alignment, size_t size);
MC_API_MALLOC MC_API_ALLOC_SIZE(2) void *mc_memalign(size_t alignment, size_t size);
MC_API_MALLOC MC_API_ALLOC_SIZE(1) void *mc_valloc(size_t size);
MC_API_MALLOC void *mc_pvalloc(size_t size);
/* The number of bytes the caller may use at p (at least the size asked for).
 * 0 for NULL. */
size_t mc_usable_size(const void *p);

/* Return free memory to the OS now: the calling thread's free pages, the
 * shared caches, and (at their next allocation) every other thread's.
 * Returns 1 if memory was released, 0 otherwise (like malloc_trim). */
int mc_trim(size_t pad);

/* Hand the calling thread's free memory back and purge what is due; with
 * force, purge everything now.  Threads do this by themselves over time. */
void mc_collect(bool force);

/* ---- Options --------------------------------------------------------------
 * Each option has an environment variable read once at start-up (from
 * environ, without getenv), and may be changed later with mc_option_set. */
typedef enum mc_option_e {
    MC_OPTION_PURGE_DELAY_MS,  /* MCLONE_PURGE_DELAY_MS: wait before giving free
                                  pages back to the OS (-1: never; 0: at once) */
    MC_OPTION_PURGE_MADV_FREE, /* MCLONE_PURGE_MADV_FREE: purge with MADV_FREE
                                  instead of MADV_DONTNEED (0/1) */
    MC_OPTION_SEGMENT_CACHE,   /* MCLONE_SEGMENT_CACHE: empty segments kept
                                  mapped for reuse */
    MC_OPTION_VERBOSE,         /* MCLONE_VERBOSE: print warnings (0/1) */
    MC_OPTION_SHOW_STATS,      /* MCLONE_SHOW_STATS: print statistics at exit
                                  (2: and the heap map) */
    MC_OPTION_ABORT_ON_ERROR,  /* MCLONE_ABORT_ON_ERROR: abort after reporting
                                  a bad free (1, the default) or only report and
                                  ignore it (0) */
    MC_OPTION_QUARANTINE_KB,   /* MCLONE_QUARANTINE_KB: secure build only: KiB of
                                  freed blocks each thread holds back from reuse
                                  (256 by default; 0: none) */
    MC_OPTION_COUNT
} mc_option_t;

long mc_option_get(mc_option_t option);
/* Returns 0, or EINVAL for an unknown option or a value out of range. */
int mc_option_set(mc_option_t option, long value);

/* ---- Statistics -----------------------------------------------------------
 * A snapshot over all threads, taken without stopping them (counters may be a
 * few blocks out of date).  "allocated" counts whole blocks: what
 * malloc_usable_size would report.  "committed" is memory in use by pages,
 * huge blocks and metadata (kept up to date at every page event, so its peak
 * is exact); "resident" adds the free slices not purged yet: an upper bound
 * of what the allocator holds in RAM. */
typedef struct mc_stats_s {
    size_t allocated; /* bytes in live blocks */
    size_t committed; /* bytes in pages in use, huge blocks and metadata */
    size_t committed_peak;
    size_t resident; /* committed plus free memory not purged yet */
    size_t mapped;   /* address space mapped from the OS */
    size_t mapped_peak;
    size_t segments;           /* segments mapped (huge ones included) */
    size_t segments_cached;    /* empty segments kept for reuse */
    size_t segments_abandoned; /* segments of exited threads awaiting reclaim */
    size_t huge_blocks;        /* blocks with a mapping of their own */
    size_t huge_bytes;
    size_t pages; /* pages (spans holding blocks) in use */
    size_t heaps; /* live thread heaps */
    size_t mmap_calls;
    size_t munmap_calls;
    size_t mremap_calls;
    size_t purge_calls; /* madvise calls that gave memory back */
    size_t purged_bytes;
    size_t heaps_parked; /* heaps of exited threads waiting, whole, for a new thread */
} mc_stats_t;

void mc_stats_get(mc_stats_t *stats);
/* A readable report, written with write(2) to fd (malloc_stats uses 2). */
void mc_stats_print(int fd);

/* A map of the heap written to fd: one line per segment with its owner and
 * one character per slice ('.' free, '#' metadata, '|' guard (secure build),
 * a letter per page kind),
 * followed by the huge blocks.  For learning and debugging. */
void mc_heap_map(int fd);

/* Check the calling thread's heap: every invariant of its segments, pages and
 * free lists.  Returns 0 when all hold; otherwise reports the first broken
 * one on stderr and returns -1. */
int mc_heap_check(void);

/* The version as MAJOR*100 + MINOR. */
int mc_version(void);

#ifdef __cplusplus
}
#endif

#endif
