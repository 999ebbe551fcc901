/* glibc-shim: send the allocation API to glibc's malloc.
 *
 * Debian's redis-server is linked with libjemalloc, so without a preload it
 * does not run on glibc's malloc at all.  Preloaded, this library puts the
 * glibc allocator in front of jemalloc, so that the "glibc" column of the
 * redis workload measures glibc.  Each call is one extra jump.  The other
 * workloads run glibc with no preload and do not use this. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define API __attribute__((visibility("default")))

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

API void *malloc(size_t size);
API void free(void *p);
API void *calloc(size_t n, size_t size);
API void *realloc(void *p, size_t size);
API void *reallocarray(void *p, size_t n, size_t size);
API void *memalign(size_t alignment, size_t size);
API void *aligned_alloc(size_t alignment, size_t size);
API int posix_memalign(void **out, size_t alignment, size_t size);
API void *valloc(size_t size);
API void *pvalloc(size_t size);
API size_t malloc_usable_size(void *p);

void *malloc(size_t size) {
    return __libc_malloc(size);
}
void free(void *p) {
    __libc_free(p);
}
void *calloc(size_t n, size_t size) {
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t size) {
    return __libc_realloc(p, size);
}
void *memalign(size_t alignment, size_t size) {
    return __libc_memalign(alignment, size);
}
void *aligned_alloc(size_t alignment, size_t size) {
    return __libc_memalign(alignment, size);
}
void *valloc(size_t size) {
    return __libc_valloc(size);
}
void *pvalloc(size_t size) {
    return __libc_pvalloc(size);
}

void *reallocarray(void *p, size_t n, size_t size) {
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, bytes);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

/* glibc's own malloc_usable_size; the one found first by name may be
 * jemalloc's. */
size_t malloc_usable_size(void *p) {
    static size_t (*libc_usable)(void *);
    if (libc_usable == NULL) {
        void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        if (libc != NULL) libc_usable = (size_t(*)(void *))dlsym(libc, "malloc_usable_size");
        if (libc_usable == NULL) return 0;
    }
    return libc_usable(p);
}
