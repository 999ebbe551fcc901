/* os.h: the platform seam.  Every system call of libmclone goes through these
 * functions, and os.c is the only file with OS calls or platform #ifs.
 *
 * Contract shared by all of them: they never allocate, never touch stdio, and
 * report failure through their return value (NULL or -1) rather than by
 * aborting.  errno may be changed by any of them; callers that must preserve
 * it (free) save and restore it. */
#ifndef MC_OS_H
#define MC_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* User-space addresses fit in this many bits (x86-64: 47 with 4-level page
 * tables, which is what mmap hands out unless asked for more; aarch64: 48). */
#if defined(__x86_64__)
#define MC_OS_ADDRESS_BITS 47
#else
#define MC_OS_ADDRESS_BITS 48
#endif

/* Called once by the process initialiser: page size, random secret.
 * Safe to call again. */
void _mc_os_init(void);

/* The OS page size (4096 on x86-64; 4, 16 or 64 KiB on aarch64). */
size_t _mc_os_page_size(void);

/* Map size bytes of fresh, zeroed, read-write anonymous memory.
 * Pre: size > 0, a multiple of the page size.  Post: NULL, or a page-aligned
 * mapping of exactly size bytes. */
void *_mc_os_map(size_t size);

/* Like _mc_os_map, but the returned address x satisfies
 * (x + offset) % align == 0.  Pre: align is a power of two >= the page size,
 * offset a multiple of the page size.  Maps size + align and trims both ends,
 * so nothing but [x, x + size) stays mapped. */
void *_mc_os_map_aligned(size_t size, size_t align, size_t offset);
/* size bytes at addr exactly, if that address space is free; else NULL. */
void *_mc_os_map_at(void *addr, size_t size);

/* Unmap [p, p + size).  Pre: page-aligned.  Returns 0 or -1. */
int _mc_os_unmap(void *p, size_t size);

/* Make [p, p + size) a guard, where any access faults (on: PROT_NONE), or
 * read-write memory again (off).  Pre: page-aligned, inside a mapping.
 * Returns 0 or -1 (the range is then as it was). */
int _mc_os_guard(void *p, size_t size, bool on);

/* Give the physical pages of [p, p + size) back to the OS; the range stays
 * mapped.  With madv_free the kernel reclaims them lazily (MADV_FREE) and
 * their contents are undefined until written; otherwise (MADV_DONTNEED) they
 * read as zero afterwards.  Returns 0 or -1. */
int _mc_os_purge(void *p, size_t size, bool madv_free);

/* Resize the mapping [p, p + old_size) to new_size without copying.
 * target == NULL: in place only (returns p or NULL).  Otherwise the pages are
 * moved to target, which must be a mapping of at least new_size bytes that
 * this call replaces; returns target or NULL (p is untouched on failure). */
void *_mc_os_remap(void *p, size_t old_size, size_t new_size, void *target);

/* A monotonic clock in milliseconds (coarse: a few ms of resolution). */
uint64_t _mc_os_now_ms(void);

/* 64 random bits from the kernel (falls back to address and time entropy). */
uint64_t _mc_os_random(void);

/* write(2) all of buf to fd, retrying on EINTR; errors are ignored. */
void _mc_os_write(int fd, const void *buf, size_t len);

/* Abort the process (SIGABRT), without running atexit handlers. */
_Noreturn void _mc_os_abort(void);

/* The process environment, read without getenv. */
char **_mc_os_environ(void);

/* ---- Locks ----------------------------------------------------------------
 * A futex lock: one atomic exchange when free, a short spin, then sleep.
 * Zero-initialised means unlocked. */
typedef struct mc_lock_s {
    uint32_t state; /* 0 free, 1 held, 2 held with sleepers */
} mc_lock_t;

void _mc_lock(mc_lock_t *lock);
bool _mc_trylock(mc_lock_t *lock);
void _mc_unlock(mc_lock_t *lock);
/* In a fork child: forget any holder (the holder does not exist there). */
void _mc_lock_reset(mc_lock_t *lock);

/* A pause inside a spin loop. */
void _mc_os_spin_pause(void);

/* ---- Threads --------------------------------------------------------------- */
/* Set the fork handlers, before any lock can be taken: the first lock taken
 * once the process has a second thread registers them with pthread_atfork
 * (os.c, "fork").  Allocates nothing. */
void _mc_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
/* For the child handler: the handlers are registered (they just ran). */
void _mc_os_atfork_child(void);
/* Create the key whose destructor runs at thread exit for threads that set a
 * value.  Returns 0 or an error number. */
int _mc_os_thread_key_create(void (*destructor)(void *));
/* Set the calling thread's value of that key (may call malloc in glibc: the
 * caller must be ready to be re-entered). */
void _mc_os_thread_key_set(void *value);

/* ---- Counters -------------------------------------------------------------- */
typedef struct mc_os_counters_s {
    size_t mapped; /* bytes mapped now */
    size_t mapped_peak;
    size_t mmap_calls;
    size_t munmap_calls;
    size_t mremap_calls;
    size_t purge_calls;
    size_t purged_bytes;
} mc_os_counters_t;

void _mc_os_counters(mc_os_counters_t *out);

/* ---- Fault injection (builds with MCLONE_FAULT_INJECT=1) ---------------------
 * After _mc_os_fail_after(n), the (n+1)th call to map, map_aligned, remap or
 * purge from now fails, and with repeat every later one too until
 * _mc_os_fail_after(-1).  In other builds the calls do nothing. */
void _mc_os_fail_after(long n, bool repeat);
/* Which calls count (and fail) from now: a set of MC_OS_FAULT_* (all of them
 * at first). */
#define MC_OS_FAULT_MAP   1u /* map, map_aligned */
#define MC_OS_FAULT_REMAP 2u
#define MC_OS_FAULT_PURGE 4u
#define MC_OS_FAULT_ALL   7u
void _mc_os_fail_kinds(unsigned kinds);

#endif
