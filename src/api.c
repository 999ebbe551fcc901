/* api.c: the exported symbols.  The mc_ functions are the allocator; the
 * standard C, POSIX and glibc names are aliases of them (same address, no
 * extra call), so LD_PRELOAD, static linking and <mclone.h> all reach the
 * same code.  The errno, overflow and alignment rules of each function live
 * here, following glibc wherever C leaves a choice. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>

#include "internal.h"

/* An alias carries the target's attributes (malloc, nothrow, ...) in gcc's
 * `copy`; clang copies them by itself. */
#if defined(__clang__)
#define MC_ALIAS(name, target)                                                                     \
    __typeof__(target) name __attribute__((alias(#target), visibility("default")))
#else
#define MC_ALIAS(name, target)                                                                     \
    __typeof__(target) name __attribute__((alias(#target), copy(target), visibility("default")))
#endif

/* ---- C ------------------------------------------------------------------------------ */
mc_export void *mc_malloc(size_t size) {
    if (MC_SECURE) return _mc_secure_malloc(size);
    return mc_heap_malloc(mc_heap_get(), size);
}

mc_export void mc_free(void *p) {
    if (MC_SECURE) return _mc_secure_free(p, SIZE_MAX, "free");
    mc_free_inline(p);
}

mc_export void *mc_calloc(size_t count, size_t size) {
    size_t total;
    if (mc_unlikely(__builtin_mul_overflow(count, size, &total) || total > PTRDIFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    if (MC_SECURE) return _mc_secure_calloc(total);
    return _mc_calloc(total);
}

mc_export void *mc_realloc(void *p, size_t size) {
    if (p == NULL) return mc_malloc(size);
    if (size == 0) { /* glibc: free, and return NULL */
        mc_free(p);
        return NULL;
    }
    if (mc_unlikely(size > PTRDIFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    if (MC_SECURE) return _mc_secure_realloc(p, size);
    return _mc_realloc(p, size);
}

mc_export void *mc_reallocarray(void *p, size_t count, size_t size) {
    size_t total;
    if (mc_unlikely(__builtin_mul_overflow(count, size, &total))) {
        errno = ENOMEM;
        return NULL;
    }
    return mc_realloc(p, total);
}

mc_export void mc_free_sized(void *p, size_t size) {
    if (MC_SECURE) return _mc_secure_free(p, size, "free_sized");
    mc_free_inline(p);
}

mc_export void mc_free_aligned_sized(void *p, size_t alignment, size_t size) {
    (void)alignment;
    if (MC_SECURE) return _mc_secure_free(p, size, "free_aligned_sized");
    mc_free_inline(p);
}

/* ---- Aligned ---------------------------------------------------------------------------- */
static void *api_aligned(size_t size, size_t alignment) {
    if (MC_SECURE) return _mc_secure_aligned(size, alignment);
    return _mc_malloc_aligned(size, alignment);
}

mc_export int mc_posix_memalign(void **out, size_t alignment, size_t size) {
    if (!mc_is_pow2(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
    if (size > PTRDIFF_MAX) return ENOMEM;
    int saved = errno;
    void *p = api_aligned(size, alignment);
    errno = saved;
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

/* C17: an alignment the implementation does not support fails; that is any
 * alignment that is not a power of two. */
mc_export void *mc_aligned_alloc(size_t alignment, size_t size) {
    if (!mc_is_pow2(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    if (size > PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    return api_aligned(size, alignment);
}

/* glibc: a non-power-of-two alignment is rounded up to the next power of
 * two; one that cannot be is EINVAL. */
mc_export void *mc_memalign(size_t alignment, size_t size) {
    if (alignment > ((size_t)1 << (sizeof(size_t) * 8 - 2))) {
        errno = EINVAL;
        return NULL;
    }
    if (!mc_is_pow2(alignment)) {
        size_t a = 1;
        while (a < alignment) a <<= 1;
        alignment = a;
    }
    if (size > PTRDIFF_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    return api_aligned(size, alignment);
}

mc_export void *mc_valloc(size_t size) {
    return mc_memalign(_mc_os_page_size(), size);
}

mc_export void *mc_pvalloc(size_t size) {
    size_t ps = _mc_os_page_size();
    if (size > PTRDIFF_MAX - ps) {
        errno = ENOMEM;
        return NULL;
    }
    return mc_memalign(ps, mc_align_up(size, ps));
}

mc_export size_t mc_usable_size(const void *p) {
    if (MC_SECURE) return _mc_secure_usable(p, "malloc_usable_size");
    return _mc_usable_size(p, "malloc_usable_size");
}

/* ---- Memory return ------------------------------------------------------------------------ */
mc_export void mc_collect(bool force) {
    mc_heap_t *heap = mc_heap_get();
    if (heap != &_mc_heap_empty) _mc_heap_collect(heap, force);
}

mc_export int mc_trim(size_t pad) {
    (void)pad;
    int saved = errno;
    mc_os_counters_t before, after;
    _mc_os_counters(&before);
    mc_heap_t *heap = mc_heap_get();
    _mc_heap_request_trim(heap); /* other threads trim at their next slow path */
    if (heap != &_mc_heap_empty)
        _mc_heap_collect(heap, true);
    else
        _mc_segments_maintain(_mc_os_now_ms(), true);
    _mc_os_counters(&after);
    errno = saved;
    return after.purged_bytes != before.purged_bytes || after.mapped < before.mapped;
}

/* ---- Testing ----------------------------------------------------------------------------
 * In the fault-injection flavour (build/fault), make the (n+1)th OS call from
 * now that can fail (map, remap, purge) fail, and with repeat every later one
 * too, until called with n = -1.  Elsewhere it does nothing.  Not in the
 * public header: tests declare it themselves. */
mc_export void mc_test_fail_after(long n, bool repeat);
mc_export void mc_test_fail_after(long n, bool repeat) {
    _mc_os_fail_after(n, repeat);
}

/* Which OS calls mc_test_fail_after counts and fails: 1 map, 2 remap,
 * 4 purge, or a sum of them (all, 7, at first). */
mc_export void mc_test_fail_kinds(unsigned kinds);
mc_export void mc_test_fail_kinds(unsigned kinds) {
    _mc_os_fail_kinds(kinds);
}

/* ---- glibc extras ---------------------------------------------------------------------------- */
mc_export struct mallinfo2 mallinfo2(void) {
    mc_stats_t st;
    mc_stats_get(&st);
    struct mallinfo2 mi = {0};
    mi.arena = st.mapped - st.huge_bytes;
    mi.ordblks = st.pages;
    mi.hblks = st.huge_blocks;
    mi.hblkhd = st.huge_bytes;
    mi.uordblks = st.allocated - st.huge_bytes;
    mi.fordblks = mi.arena > mi.uordblks ? mi.arena - mi.uordblks : 0;
    mi.keepcost = 0;
    return mi;
}

static int clamp_int(size_t v) {
    return v > INT32_MAX ? INT32_MAX : (int)v;
}

/* The old interface, deprecated by glibc for its int fields. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
mc_export struct mallinfo mallinfo(void) {
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo mi = {0};
    mi.arena = clamp_int(m2.arena);
    mi.ordblks = clamp_int(m2.ordblks);
    mi.hblks = clamp_int(m2.hblks);
    mi.hblkhd = clamp_int(m2.hblkhd);
    mi.uordblks = clamp_int(m2.uordblks);
    mi.fordblks = clamp_int(m2.fordblks);
    return mi;
}
MC_ALIAS(__libc_mallinfo, mallinfo);
#pragma GCC diagnostic pop

mc_export void malloc_stats(void) {
    mc_stats_print(2);
}

/* Every parameter is accepted; none of glibc's tunables applies here. */
mc_export int mallopt(int param, int value) {
    (void)param;
    (void)value;
    return 1;
}

mc_export int malloc_trim(size_t pad) {
    return mc_trim(pad);
}

mc_export size_t malloc_usable_size(void *p) {
    return mc_usable_size(p);
}

/* ---- The standard names -------------------------------------------------------------------- */
MC_ALIAS(malloc, mc_malloc);
MC_ALIAS(free, mc_free);
MC_ALIAS(calloc, mc_calloc);
MC_ALIAS(realloc, mc_realloc);
MC_ALIAS(reallocarray, mc_reallocarray);
MC_ALIAS(free_sized, mc_free_sized);
MC_ALIAS(free_aligned_sized, mc_free_aligned_sized);
MC_ALIAS(cfree, mc_free);
MC_ALIAS(posix_memalign, mc_posix_memalign);
MC_ALIAS(aligned_alloc, mc_aligned_alloc);
MC_ALIAS(memalign, mc_memalign);
MC_ALIAS(valloc, mc_valloc);
MC_ALIAS(pvalloc, mc_pvalloc);

/* glibc's internal names, which some programs and libraries call directly. */
MC_ALIAS(__libc_malloc, mc_malloc);
MC_ALIAS(__libc_free, mc_free);
MC_ALIAS(__libc_calloc, mc_calloc);
MC_ALIAS(__libc_realloc, mc_realloc);
MC_ALIAS(__libc_memalign, mc_memalign);
MC_ALIAS(__libc_valloc, mc_valloc);
MC_ALIAS(__libc_pvalloc, mc_pvalloc);
MC_ALIAS(__libc_mallopt, mallopt);
