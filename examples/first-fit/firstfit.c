/* firstfit.c: a complete malloc in one file, kept simple on purpose.
 *
 * One free list in address order, boundary tags and coalescing, memory from
 * mmap, one lock.  It is the baseline that docs/learn.md measures libmclone
 * against: small enough to read in one sitting, correct enough to run real
 * programs:
 *
 *     make examples                  (builds build/libfirstfit.so), or by hand:
 *     gcc -O2 -fPIC -shared firstfit.c -o libfirstfit.so -lpthread
 *     LD_PRELOAD=$PWD/libfirstfit.so ls -l
 *
 * ---- Memory layout ----------------------------------------------------------
 *
 * Small requests are served from arenas, 1 MiB mappings cut into blocks:
 *
 *   arena:  [size|pad|prologue][block][block] ... [block][epilogue]
 *   block:  [header][payload ......................................][footer]
 *            8 bytes  a multiple of 16 bytes, 16-byte aligned            8 bytes
 *
 * The header and the footer of a block are the same word, a "boundary tag":
 * the block's size (a multiple of 16) with the low bits used as flags.  The
 * header lets free() find the next block (this + size); the footer of the
 * block before lets it find the previous one (this - size of the left
 * neighbour), so freeing can merge a block with both neighbours in O(1).
 * The prologue and the epilogue are tags of size 0 marked used, so merging
 * stops at the ends of an arena without any special case.
 *
 * A free block keeps two list pointers in its payload, which is why the
 * smallest block is 32 bytes: header, next, prev, footer.
 *
 *   free block:  [header][next][prev][ ... unused ... ][footer]
 *
 * The free blocks of all arenas form one doubly linked list sorted by
 * address.  malloc takes the first block that is big enough (first fit) and
 * splits off what it does not need; free puts the block back, merged with
 * free neighbours.  An arena that becomes wholly free is unmapped, except
 * one spare kept for the next request.
 *
 * Requests of BIG_REQUEST bytes or more, and blocks with a large alignment,
 * get a mapping of their own ("big blocks"), unmapped again by free:
 *
 *   big block:  [ ... ][offset][tag: length|USED|BIG][payload ...]
 *
 * where offset is the distance from the start of the mapping to the payload
 * and length is the length of the mapping.
 *
 * ---- Rules -----------------------------------------------------------------
 * The same as glibc: 16-byte alignment; malloc(0) returns a unique pointer;
 * realloc(p, 0) frees p and returns NULL; a request above PTRDIFF_MAX, an
 * overflowing calloc or reallocarray, and a failed mmap give NULL with errno
 * ENOMEM; free preserves errno.  Nothing in here calls malloc, stdio or
 * getenv, which would recurse into this allocator. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Built with -fvisibility=hidden, only the allocation API is exported. */
#define EXPORT __attribute__((visibility("default")))

#define ALIGNMENT   16
#define TAG_USED    ((size_t)1) /* flag bits in the low bits of a tag */
#define TAG_BIG     ((size_t)2)
#define TAG_FLAGS   ((size_t)(ALIGNMENT - 1))
#define TAGS_SIZE   (2 * sizeof(size_t)) /* header + footer */
#define MIN_BLOCK   32                   /* header, next, prev, footer */
#define ARENA_SIZE  ((size_t)1 << 20)
#define BIG_REQUEST ((size_t)256 << 10) /* from here on, a mapping of its own */

typedef struct free_block {
    size_t header;
    struct free_block *next; /* the next free block at a higher address */
    struct free_block *prev;
} free_block_t;

typedef struct arena {
    size_t size;     /* bytes mapped */
    size_t pad;      /* puts the first header 8 bytes before a 16-byte boundary */
    size_t prologue; /* a used tag of size 0: nothing to merge with on the left */
} arena_t;

#define ARENA_FIRST_BLOCK sizeof(arena_t)
#define ARENA_CAPACITY    (ARENA_SIZE - sizeof(arena_t) - sizeof(size_t)) /* minus the epilogue */

static pthread_mutex_t heap_lock = PTHREAD_MUTEX_INITIALIZER;
static free_block_t *free_list; /* lowest address first; guarded by heap_lock */
static arena_t *spare_arena;    /* the one empty arena kept mapped; guarded by heap_lock */

/* ---- Small helpers ---------------------------------------------------------- */

static size_t page_size(void) {
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t round_up(size_t n, size_t to) {
    return (n + to - 1) & ~(to - 1);
}
static int is_power_of_two(size_t n) {
    return n != 0 && (n & (n - 1)) == 0;
}

static void *fail_enomem(void) {
    errno = ENOMEM;
    return NULL;
}

/* A message and abort(), for a heap that can no longer be trusted. */
static void fatal(const char *msg) {
    static const char prefix[] = "firstfit: ";
    ssize_t ignored = write(2, prefix, sizeof prefix - 1);
    ignored = write(2, msg, strlen(msg));
    (void)ignored;
    abort();
}

/* Tags.  A block is addressed by its header; the payload follows it. */
static size_t tag_size(size_t tag) {
    return tag & ~TAG_FLAGS;
}
static size_t *header_of(void *block) {
    return (size_t *)block;
}
static size_t *footer_of(void *block, size_t size) {
    return (size_t *)((char *)block + size) - 1;
}
static void *block_of(void *payload) {
    return (char *)payload - sizeof(size_t);
}
static void *payload_of(void *block) {
    return (char *)block + sizeof(size_t);
}

static void set_tags(void *block, size_t size, size_t flags) {
    *header_of(block) = size | flags;
    *footer_of(block, size) = size | flags;
}

/* The block size for a request: payload plus tags, rounded to 16, at least
 * MIN_BLOCK.  The caller has checked size <= PTRDIFF_MAX, so no overflow. */
static size_t block_size_for(size_t size) {
    size_t need = round_up(size + TAGS_SIZE, ALIGNMENT);
    return need < MIN_BLOCK ? MIN_BLOCK : need;
}

/* ---- The free list (address order) ---------------------------------------- */

static void list_remove(free_block_t *b) {
    if (b->prev)
        b->prev->next = b->next;
    else
        free_list = b->next;
    if (b->next) b->next->prev = b->prev;
}

/* nb takes old's place in the list.  Only valid when no other free block
 * lies between them, e.g. when nb is old minus its front part. */
static void list_replace(free_block_t *old, free_block_t *nb) {
    nb->next = old->next;
    nb->prev = old->prev;
    if (nb->prev)
        nb->prev->next = nb;
    else
        free_list = nb;
    if (nb->next) nb->next->prev = nb;
}

/* Insert b after pos (at the head when pos is NULL). */
static void list_insert_after(free_block_t *pos, free_block_t *b) {
    b->prev = pos;
    b->next = pos ? pos->next : free_list;
    if (b->next) b->next->prev = b;
    if (pos)
        pos->next = b;
    else
        free_list = b;
}

/* The price of address order: finding the place is a walk along the list. */
static void list_insert_ordered(free_block_t *b) {
    free_block_t *prev = NULL;
    for (free_block_t *cur = free_list; cur != NULL && cur < b; cur = cur->next) prev = cur;
    list_insert_after(prev, b);
}

/* ---- Arenas ------------------------------------------------------------------ */

/* Map a new arena, holding one free block that spans all of it. */
static free_block_t *arena_new(void) {
    arena_t *a = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return NULL;
    a->size = ARENA_SIZE;
    a->prologue = 0 | TAG_USED;
    *(size_t *)((char *)a + ARENA_SIZE - sizeof(size_t)) = 0 | TAG_USED; /* epilogue */
    free_block_t *b = (free_block_t *)((char *)a + ARENA_FIRST_BLOCK);
    set_tags(b, ARENA_CAPACITY, 0);
    list_insert_ordered(b);
    return b;
}

static int arena_is_empty(arena_t *a) {
    return *(size_t *)((char *)a + ARENA_FIRST_BLOCK) == ARENA_CAPACITY; /* free, full size */
}

/* The free block b now spans the whole of its arena.  Keep the arena as the
 * spare if there is none (so that a program that allocates and frees one
 * block in a loop does not map and unmap an arena each time); otherwise give
 * it back to the OS. */
static void arena_became_empty(free_block_t *b) {
    arena_t *a = (arena_t *)((char *)b - ARENA_FIRST_BLOCK);
    if (a == spare_arena) return;
    if (spare_arena == NULL || !arena_is_empty(spare_arena)) {
        spare_arena = a;
        return;
    }
    list_remove(b);
    munmap(a, a->size);
}

/* ---- Taking and giving back blocks (heap_lock held) ------------------------- */

/* Allocate need bytes from the front of the free block b (which is at least
 * that big): the rest, if it can form a block, stays free in b's place. */
static void *take_block(free_block_t *b, size_t need) {
    size_t size = tag_size(b->header);
    if (size - need >= MIN_BLOCK) {
        free_block_t *rest = (free_block_t *)((char *)b + need);
        list_replace(b, rest);
        set_tags(rest, size - need, 0);
        size = need;
    } else {
        list_remove(b); /* the few spare bytes stay inside the block */
    }
    set_tags(b, size, TAG_USED);
    return payload_of(b);
}

/* Give back the block at b (not in the list), merging it with free
 * neighbours.  The boundary tags make both checks O(1); only a block with no
 * free neighbour needs the ordered insert. */
static void release_block(char *b, size_t size) {
    free_block_t *next = (free_block_t *)(b + size);
    size_t prev_tag = *((size_t *)b - 1); /* the footer of the block before */
    size_t next_tag = next->header;
    free_block_t *merged = (free_block_t *)b;
    if (!(prev_tag & TAG_USED)) {
        /* The left neighbour is free and already in the list: grow it.  Our
         * own header is now inside it; clear it, so that a second free of
         * the same pointer is caught. */
        *header_of(b) = 0;
        merged = (free_block_t *)(b - tag_size(prev_tag));
        size += tag_size(prev_tag);
        if (!(next_tag & TAG_USED)) {
            list_remove(next);
            size += tag_size(next_tag);
        }
    } else if (!(next_tag & TAG_USED)) {
        /* Only the right neighbour is free: take its place in the list. */
        list_replace(next, merged);
        size += tag_size(next_tag);
    } else {
        list_insert_ordered(merged);
    }
    set_tags(merged, size, 0);
    /* Size-0 tags on both sides: the prologue and the epilogue. */
    if (tag_size(*((size_t *)merged - 1)) == 0 && tag_size(*(size_t *)((char *)merged + size)) == 0)
        arena_became_empty(merged);
}

/* First fit: the lowest-addressed free block that is big enough.  With
 * align > 16 the payload must also sit on a multiple of align; the bytes
 * skipped in front become a free block of their own (so at least MIN_BLOCK). */
static void *arena_alloc(size_t size, size_t align) {
    size_t need = block_size_for(size);
    for (int attempt = 0; attempt < 2; attempt++) {
        for (free_block_t *b = free_list; b != NULL; b = b->next) {
            size_t bsize = tag_size(b->header);
            if (bsize < need) continue;
            if (align <= ALIGNMENT) return take_block(b, need);

            uintptr_t start = (uintptr_t)payload_of(b);
            uintptr_t p = round_up(start, align);
            if (p != start && p - start < MIN_BLOCK) p = round_up(start + MIN_BLOCK, align);
            size_t gap = p - start;
            if (gap + need > bsize) continue;
            if (gap > 0) {
                /* Split b: the front stays free (and in its place in the
                 * list), the aligned part follows it. */
                free_block_t *aligned = (free_block_t *)((char *)b + gap);
                set_tags(b, gap, 0);
                set_tags(aligned, bsize - gap, 0);
                list_insert_after(b, aligned);
                b = aligned;
            }
            return take_block(b, need);
        }
        /* Nothing fits: map a new arena and search again (the new block is
         * found then, wherever the arena landed). */
        if (attempt == 0 && arena_new() == NULL) break;
    }
    return fail_enomem();
}

/* ---- Big blocks: a mapping each ----------------------------------------------- */

static size_t *big_offset(void *payload) {
    return (size_t *)payload - 2;
}

static void *big_alloc(size_t size, size_t align) {
    size_t page = page_size();
    if (align > PTRDIFF_MAX / 2 || size > PTRDIFF_MAX - align - page) return fail_enomem();
    char *start, *end, *payload;
    if (align <= page) {
        /* The payload starts align bytes in (at least 16, room for the tags). */
        size_t len = round_up(size + align, page);
        start = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (start == MAP_FAILED) return fail_enomem();
        payload = start + align;
        end = start + len;
    } else {
        /* A larger alignment: reserve align bytes more than needed, without
         * access (PROT_NONE costs no memory), find the aligned address in
         * it, keep one page before it for the tags, and unmap the rest. */
        size_t body = round_up(size ? size : 1, page);
        size_t len = align + body;
        char *base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) return fail_enomem();
        payload = (char *)round_up((uintptr_t)base + 1, align);
        start = payload - page;
        end = payload + body;
        if (start > base) munmap(base, (size_t)(start - base));
        if (base + len > end) munmap(end, (size_t)(base + len - end));
        if (mprotect(start, (size_t)(end - start), PROT_READ | PROT_WRITE) != 0) {
            munmap(start, (size_t)(end - start));
            return fail_enomem();
        }
    }
    *big_offset(payload) = (size_t)(payload - start);
    *header_of(block_of(payload)) = (size_t)(end - start) | TAG_USED | TAG_BIG;
    return payload;
}

static void big_free(void *payload) {
    size_t offset = *big_offset(payload);
    munmap((char *)payload - offset, tag_size(*header_of(block_of(payload))));
}

static size_t usable_size(void *payload) {
    size_t tag = *header_of(block_of(payload));
    if (tag & TAG_BIG) return tag_size(tag) - *big_offset(payload);
    return tag_size(tag) - TAGS_SIZE;
}

/* ---- The allocator, below the API ------------------------------------------- */

/* size <= PTRDIFF_MAX; align is a power of two. */
static void *allocate(size_t size, size_t align) {
    if (align < ALIGNMENT) align = ALIGNMENT;
    /* Small requests with a modest alignment fit in an arena; everything
     * else gets a mapping of its own. */
    if (size + align >= BIG_REQUEST || (align > ALIGNMENT && align > page_size()))
        return big_alloc(size, align);
    pthread_mutex_lock(&heap_lock);
    void *p = arena_alloc(size, align);
    pthread_mutex_unlock(&heap_lock);
    return p;
}

/* free() without the errno rule. */
static void deallocate(void *p) {
    size_t tag = *header_of(block_of(p));
    if (!(tag & TAG_USED)) fatal("free(): the block is not allocated (double free?)\n");
    if (tag & TAG_BIG) {
        big_free(p); /* no shared state: no lock */
        return;
    }
    pthread_mutex_lock(&heap_lock);
    release_block(block_of(p), tag_size(tag));
    pthread_mutex_unlock(&heap_lock);
}

/* Resize in place if possible: shrink by splitting off the tail, or grow
 * into a free right neighbour.  Returns 1 when p now has room for size. */
static int resize_in_place(void *p, size_t size) {
    char *b = block_of(p);
    size_t tag = *header_of(b);
    if (tag & TAG_BIG) {
        /* Keep the mapping if it is big enough and not twice too big. */
        size_t usable = usable_size(p);
        return size <= usable && size >= usable / 2;
    }
    size_t cur = tag_size(tag), need = block_size_for(size);
    int done = 0;
    pthread_mutex_lock(&heap_lock);
    if (need <= cur) {
        if (cur - need >= MIN_BLOCK) {
            set_tags(b, need, TAG_USED);
            release_block(b + need, cur - need);
        }
        done = 1;
    } else {
        size_t next_tag = *(size_t *)(b + cur);
        size_t total = cur + tag_size(next_tag);
        if (!(next_tag & TAG_USED) && total >= need) {
            free_block_t *next = (free_block_t *)(b + cur);
            if (total - need >= MIN_BLOCK) {
                free_block_t *rest = (free_block_t *)(b + need);
                list_replace(next, rest);
                set_tags(rest, total - need, 0);
                set_tags(b, need, TAG_USED);
            } else {
                list_remove(next);
                set_tags(b, total, TAG_USED);
            }
            done = 1;
        }
    }
    pthread_mutex_unlock(&heap_lock);
    return done;
}

/* ---- Trimming ------------------------------------------------------------------
 * malloc_trim gives the OS the memory of free blocks without unmapping
 * anything: the whole pages inside each free block are dropped with
 * madvise(MADV_DONTNEED) and read as zeros when next touched, which suits
 * free space.  The block's tags and list pointers, in its first and last
 * bytes, stay in pages that are kept.  The spare arena, if empty, is unmapped.
 * Returns 1 if some memory was given back, as glibc's does. */

static int trim(void) {
    size_t page = page_size();
    int released = 0;
    pthread_mutex_lock(&heap_lock);
    if (spare_arena != NULL && arena_is_empty(spare_arena)) {
        list_remove((free_block_t *)((char *)spare_arena + ARENA_FIRST_BLOCK));
        munmap(spare_arena, spare_arena->size);
        spare_arena = NULL;
        released = 1;
    }
    for (free_block_t *b = free_list; b != NULL; b = b->next) {
        uintptr_t from = round_up((uintptr_t)b + sizeof(free_block_t), page);
        uintptr_t to = ((uintptr_t)b + tag_size(b->header) - sizeof(size_t)) & ~(page - 1);
        if (to > from && madvise((void *)from, to - from, MADV_DONTNEED) == 0) released = 1;
    }
    pthread_mutex_unlock(&heap_lock);
    return released;
}

/* ---- fork ----------------------------------------------------------------------
 * Another thread may hold the lock at the moment of fork(); the child would
 * inherit it locked with no thread left to unlock it.  So fork takes the lock
 * first and both processes release it afterwards. */

static void fork_prepare(void) {
    pthread_mutex_lock(&heap_lock);
}
static void fork_parent(void) {
    pthread_mutex_unlock(&heap_lock);
}
static void fork_child(void) {
    pthread_mutex_unlock(&heap_lock);
}

__attribute__((constructor)) static void firstfit_init(void) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- The API ---------------------------------------------------------------- */

EXPORT void *malloc(size_t size) {
    if (size > PTRDIFF_MAX) return fail_enomem();
    return allocate(size, ALIGNMENT);
}

/* The API functions call only the static functions above, never each other:
 * a call to an exported name could reach another allocator (the one found
 * first by the dynamic linker when this library is not preloaded). */

static void release(void *p) {
    if (p == NULL) return;
    int saved = errno; /* munmap may set it; free must not */
    deallocate(p);
    errno = saved;
}

static void *reallocate(void *p, size_t size) {
    if (size > PTRDIFF_MAX) return fail_enomem();
    if (p == NULL) return allocate(size, ALIGNMENT);
    if (size == 0) {
        release(p);
        return NULL;
    }
    if (resize_in_place(p, size)) return p;
    void *q = allocate(size, ALIGNMENT);
    if (q == NULL) return NULL; /* p is left as it was */
    size_t old = usable_size(p);
    memcpy(q, p, old < size ? old : size);
    release(p);
    return q;
}

EXPORT void free(void *p) {
    release(p);
}

EXPORT void *calloc(size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total) || total > PTRDIFF_MAX) return fail_enomem();
    void *p = allocate(total, ALIGNMENT);
    /* A fresh mapping is already zero; a reused arena block is not. */
    if (p != NULL && !(*header_of(block_of(p)) & TAG_BIG)) memset(p, 0, total);
    return p;
}

EXPORT void *realloc(void *p, size_t size) {
    return reallocate(p, size);
}

EXPORT void *reallocarray(void *p, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) return fail_enomem();
    return reallocate(p, total);
}

/* The memalign family.  memalign rounds an alignment that is not a power of
 * two up to one (as glibc does); the others reject it with EINVAL. */
static void *aligned(size_t align, size_t size) {
    if (size > PTRDIFF_MAX) return fail_enomem();
    return allocate(size, align);
}

EXPORT void *memalign(size_t align, size_t size) {
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    size_t a = ALIGNMENT;
    while (a < align) a *= 2;
    return aligned(a, size);
}

EXPORT void *aligned_alloc(size_t align, size_t size) {
    if (!is_power_of_two(align)) {
        errno = EINVAL;
        return NULL;
    }
    return aligned(align, size);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size) {
    if (!is_power_of_two(align) || align % sizeof(void *) != 0) return EINVAL;
    int saved = errno; /* the result is the return value, errno stays */
    void *p = aligned(align, size);
    errno = saved;
    if (p == NULL) return ENOMEM; /* *out untouched */
    *out = p;
    return 0;
}

EXPORT void *valloc(size_t size) {
    return aligned(page_size(), size);
}

EXPORT void *pvalloc(size_t size) {
    size_t page = page_size();
    if (size > PTRDIFF_MAX - page) return fail_enomem();
    return aligned(page, size == 0 ? page : round_up(size, page));
}

/* Without it, a program's malloc_trim would reach glibc's, which would set
 * up glibc's own heap behind this allocator's back. */
EXPORT int malloc_trim(size_t pad) {
    (void)pad;
    int saved = errno;
    int released = trim();
    errno = saved;
    return released;
}

EXPORT size_t malloc_usable_size(void *p) {
    return p == NULL ? 0 : usable_size(p);
}
