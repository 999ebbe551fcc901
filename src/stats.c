/* stats.c: messages, statistics and reports.  Nothing here may allocate or
 * use stdio: text is formatted into stack buffers by a small printf of our
 * own and written with write(2). */
#include <stdarg.h>
#include <stdlib.h>

#include "internal.h"

/* ---- Formatting ------------------------------------------------------------------------
 * Supports %s %c %d %ld %u %lu %zu %zx %p %% and a field width (%8zu). */
typedef struct {
    char *buf;
    size_t len, cap;
} mc_out_t;

static void out_char(mc_out_t *o, char c) {
    if (o->len + 1 < o->cap) o->buf[o->len++] = c;
}

static void out_str(mc_out_t *o, const char *s) {
    if (s == NULL) s = "(null)";
    while (*s) out_char(o, *s++);
}

static void out_num(mc_out_t *o, unsigned long long v, unsigned base, bool neg, int width) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0);
    if (neg) tmp[n++] = '-';
    for (int pad = width - n; pad > 0; pad--) out_char(o, ' ');
    while (n > 0) out_char(o, tmp[--n]);
}

static void out_vformat(mc_out_t *o, const char *fmt, va_list ap) {
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            out_char(o, *fmt);
            continue;
        }
        fmt++;
        int width = 0;
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        int longs = 0;
        while (*fmt == 'l' || *fmt == 'z') {
            longs = 1;
            fmt++;
        }
        switch (*fmt) {
        case 's':
            out_str(o, va_arg(ap, const char *));
            break;
        case 'c':
            out_char(o, (char)va_arg(ap, int));
            break;
        case 'd': {
            long v = longs ? va_arg(ap, long) : va_arg(ap, int);
            out_num(o, v < 0 ? -(unsigned long long)v : (unsigned long long)v, 10, v < 0, width);
            break;
        }
        case 'u':
            out_num(o, longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10, false, width);
            break;
        case 'x':
            out_num(o, longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16, false, width);
            break;
        case 'p':
            out_str(o, "0x");
            out_num(o, (uintptr_t)va_arg(ap, void *), 16, false, width);
            break;
        case '%':
            out_char(o, '%');
            break;
        default:
            out_char(o, '?');
            break;
        }
        if (*fmt == '\0') break;
    }
}

static void out_format(mc_out_t *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    out_vformat(o, fmt, ap);
    va_end(ap);
}

static void vmessage(const char *prefix, const char *fmt, va_list ap) {
    char buf[512];
    mc_out_t o = {buf, 0, sizeof buf - 1};
    out_str(&o, prefix);
    out_vformat(&o, fmt, ap);
    buf[o.len++] = '\n';
    _mc_os_write(2, buf, o.len);
}

void _mc_message(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
}

_Noreturn void _mc_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage("mclone: ", fmt, ap);
    va_end(ap);
    _mc_os_abort();
}

_Noreturn void _mc_assert_fail(const char *expr, const char *file, int line) {
    _mc_fatal("assertion failed: %s (%s:%d)", expr, file, line);
}

void _mc_error_pointer(const char *func, const void *p, const char *what) {
    const char *fmt =
        what == NULL ? "mclone: %s(): double free of %p%s" : "mclone: %s(): invalid pointer %p: %s";
    _mc_message(fmt, func, p, what == NULL ? "" : what);
    if (MC_SECURE || mc_option(MC_OPTION_ABORT_ON_ERROR)) _mc_os_abort();
    _mc_message("mclone: (MCLONE_ABORT_ON_ERROR=0: the call is ignored)");
}

/* ---- Counters ------------------------------------------------------------------------------ */
static _Atomic long committed, committed_peak;

long _mc_stats_committed_now(void) {
    return atomic_load_explicit(&committed, memory_order_relaxed);
}

void _mc_stats_committed(long delta) {
    long now = atomic_fetch_add_explicit(&committed, delta, memory_order_relaxed) + delta;
    long peak = atomic_load_explicit(&committed_peak, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&committed_peak, &peak, now, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* Reading other threads' pages: the numbers may be stale, never unsafe (the
 * registry lock keeps every segment mapped while we look). */
#define PEEK(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static void stats_visit(const mc_segment_t *seg, void *arg) {
    mc_stats_t *st = arg;
    if (seg->kind == MC_SEGMENT_HUGE) {
        if (PEEK(seg->state) != MC_SEGMENT_ALONE) { /* freed, waiting in the cache */
            if (PEEK(seg->purge_at) != 0) st->resident += seg->size;
            return;
        }
        st->huge_blocks++;
        st->huge_bytes += seg->size;
        st->allocated += mc_huge_usable(seg, seg->huge_block);
        return;
    }
    uint64_t free_map = PEEK(seg->free_map), dirty = PEEK(seg->dirty_map);
    /* committed is added by mc_stats_get: here, the free slices not purged */
    st->resident += (size_t)__builtin_popcountll(dirty & free_map) * MC_SLICE_SIZE;
    for (size_t i = 1; i < MC_SLICES; i++) {
        const mc_page_t *pg = &seg->pages[i];
        uint8_t kind = PEEK(pg->kind);
        if (kind == MC_KIND_NONE || (free_map & ((uint64_t)1 << i))) continue;
        uint32_t used = PEEK(pg->used), pinned = PEEK(pg->pinned);
        st->pages++;
        if (used > pinned) st->allocated += (size_t)(used - pinned) * PEEK(pg->block_size);
    }
}

mc_export void mc_stats_get(mc_stats_t *st) {
    memset(st, 0, sizeof *st);
    mc_os_counters_t os;
    _mc_os_counters(&os);
    st->mapped = os.mapped;
    st->mapped_peak = os.mapped_peak;
    st->mmap_calls = os.mmap_calls;
    st->munmap_calls = os.munmap_calls;
    st->mremap_calls = os.mremap_calls;
    st->purge_calls = os.purge_calls;
    st->purged_bytes = os.purged_bytes;
    long c = atomic_load_explicit(&committed, memory_order_relaxed);
    st->committed = c > 0 ? (size_t)c : 0;
    st->committed_peak = (size_t)atomic_load_explicit(&committed_peak, memory_order_relaxed);
    st->segments = _mc_segments_count(&st->segments_cached, &st->segments_abandoned);
    st->heaps = _mc_heaps_count(&st->heaps_parked);
    _mc_segments_visit(stats_visit, st);
    st->resident += st->committed + _mc_segments_spare_bytes();
}

/* ---- Reports --------------------------------------------------------------------- */
static void out_flush(int fd, mc_out_t *o) {
    _mc_os_write(fd, o->buf, o->len);
    o->len = 0;
}

static void out_bytes(mc_out_t *o, const char *label, size_t v) {
    if (v >= 10 * 1024 * 1024)
        out_format(o, "%s%10zu MiB\n", label, v >> 20);
    else if (v >= 10 * 1024)
        out_format(o, "%s%10zu KiB\n", label, v >> 10);
    else
        out_format(o, "%s%10zu B\n", label, v);
}

mc_export void mc_stats_print(int fd) {
    mc_stats_t st;
    mc_stats_get(&st);
    char buf[2048];
    mc_out_t o = {buf, 0, sizeof buf};
    out_str(&o, "malloc-clone statistics\n");
    out_bytes(&o, "  allocated        ", st.allocated);
    out_bytes(&o, "  committed        ", st.committed);
    out_bytes(&o, "  committed peak   ", st.committed_peak);
    out_bytes(&o, "  resident (bound) ", st.resident);
    out_bytes(&o, "  mapped           ", st.mapped);
    out_bytes(&o, "  mapped peak      ", st.mapped_peak);
    out_bytes(&o, "  huge bytes       ", st.huge_bytes);
    out_format(&o, "  huge blocks      %10zu\n", st.huge_blocks);
    out_format(&o, "  pages            %10zu\n", st.pages);
    out_format(&o, "  segments         %10zu (%zu cached, %zu abandoned)\n", st.segments,
               st.segments_cached, st.segments_abandoned);
    out_format(&o, "  thread heaps     %10zu (%zu parked)\n", st.heaps, st.heaps_parked);
    out_format(&o, "  mmap / munmap    %10zu / %zu\n", st.mmap_calls, st.munmap_calls);
    out_format(&o, "  mremap           %10zu\n", st.mremap_calls);
    out_format(&o, "  purges           %10zu (%zu MiB)\n", st.purge_calls, st.purged_bytes >> 20);
    out_flush(fd, &o);
}

static void stats_at_exit(void) {
    mc_stats_print(2);
    if (mc_option(MC_OPTION_SHOW_STATS) >= 2) mc_heap_map(2);
}

void _mc_stats_print_at_exit(void) {
    if (mc_option(MC_OPTION_SHOW_STATS)) atexit(stats_at_exit);
}

/* ---- Heap map
 * ------------------------------------------------------------------------------------ One line per
 * segment: address, owner, and a character per slice. */
typedef struct {
    int fd;
    mc_out_t *o;
} map_arg_t;

static void map_visit(const mc_segment_t *seg, void *arg) {
    map_arg_t *m = arg;
    mc_out_t *o = m->o;
    if (seg->kind == MC_SEGMENT_HUGE) {
        out_format(o, "%p  huge    block %p, %zu KiB mapped\n", (const void *)seg,
                   (const void *)seg->huge_block, seg->size >> 10);
        out_flush(m->fd, o);
        return;
    }
    static const char *states[] = {"?", "owned", "abandoned", "cached", "alone"};
    uint8_t state = PEEK(seg->state);
    out_format(o, "%p  %s ", (const void *)seg, states[state <= 4 ? state : 0]);
    uint64_t free_map = PEEK(seg->free_map), dirty = PEEK(seg->dirty_map);
    char row[MC_SLICES + 1];
    row[0] = '#';
    for (size_t i = MC_SLICES_END; i < MC_SLICES; i++) row[i] = '|';
    for (size_t i = 1; i < MC_SLICES_END;) {
        if (free_map & ((uint64_t)1 << i)) {
            row[i] = (dirty & ((uint64_t)1 << i)) ? ':' : '.';
            i++;
            continue;
        }
        const mc_page_t *pg = &seg->pages[i];
        uint8_t kind = PEEK(pg->kind);
        size_t n = PEEK(pg->slice_count);
        if (n == 0 || i + n > MC_SLICES_END) n = 1;
        char c = kind == MC_KIND_SMALL ? 's' : kind == MC_KIND_MEDIUM ? 'm' : 'L';
        for (size_t k = 0; k < n; k++) row[i + k] = k == 0 ? (char)(c - 'a' + 'A') : c;
        if (kind == MC_KIND_LARGE) row[i] = 'L';
        i += n;
    }
    row[MC_SLICES] = '\0';
    out_format(o, "%s\n", row);
    for (size_t i = 1; i < MC_SLICES; i++) {
        const mc_page_t *pg = &seg->pages[i];
        uint8_t kind = PEEK(pg->kind);
        if (kind == MC_KIND_NONE || (free_map & ((uint64_t)1 << i))) continue;
        uint32_t used = PEEK(pg->used) - PEEK(pg->pinned);
        if (kind == MC_KIND_LARGE)
            out_format(o, "    slice %2zu: large block, %zu KiB\n", i,
                       (size_t)PEEK(pg->block_size) >> 10);
        else
            out_format(o, "    slice %2zu: %6u B blocks, %5u used of %u (%u carved)\n", i,
                       PEEK(pg->block_size), used, PEEK(pg->reserved), PEEK(pg->capacity));
        i += PEEK(pg->slice_count) > 0 ? PEEK(pg->slice_count) - 1 : 0;
        if (o->len > o->cap - 128) out_flush(m->fd, o);
    }
    out_flush(m->fd, o);
}

mc_export void mc_heap_map(int fd) {
    char buf[4096];
    mc_out_t o = {buf, 0, sizeof buf};
    out_str(&o, "malloc-clone heap map: one row per segment, one character per 64 KiB slice\n"
                "  # metadata  . free (purged)  : free (not purged yet)  | guard\n"
                "  S/s small-block page  M/m medium-block page  L large block\n");
    out_flush(fd, &o);
    map_arg_t m = {fd, &o};
    _mc_segments_visit(map_visit, &m);
}

mc_export int mc_heap_check(void) {
    return _mc_heap_is_valid(mc_heap_get()) ? 0 : -1;
}

mc_export int mc_version(void) {
    return MCLONE_VERSION_MAJOR * 100 + MCLONE_VERSION_MINOR;
}
