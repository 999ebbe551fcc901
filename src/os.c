/* os.c: the only file that talks to the operating system (Linux, with glibc
 * or another libc): mmap and friends, futexes, the clock, randomness,
 * write(2), and the pthread hooks for fork and thread exit.  See os.h for
 * the contract of each call. */
#define _GNU_SOURCE
#include "os.h"
#include "config.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#include <sys/single_threaded.h>
#define MC_HAVE_SINGLE_THREADED 1
#else
#define MC_HAVE_SINGLE_THREADED 0
#endif

extern char **environ;

static size_t os_page_size = 4096;

/* Counters, updated with relaxed atomics (they are statistics). */
static struct {
    _Atomic size_t mapped, mapped_peak;
    _Atomic size_t mmap_calls, munmap_calls, mremap_calls, purge_calls, purged_bytes;
} os_count;

static void count_add(_Atomic size_t *c, size_t n) {
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void count_mapped(size_t added, size_t removed) {
    size_t now =
        atomic_fetch_add_explicit(&os_count.mapped, added - removed, memory_order_relaxed) + added -
        removed;
    size_t peak = atomic_load_explicit(&os_count.mapped_peak, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&os_count.mapped_peak, &peak, now,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- Fault injection ------------------------------------------------------ */
static _Atomic long fault_countdown = -1;
static _Atomic bool fault_repeat;
static _Atomic unsigned fault_kinds = MC_OS_FAULT_ALL;

void _mc_os_fail_after(long n, bool repeat) {
    atomic_store(&fault_repeat, repeat);
    atomic_store(&fault_countdown, n);
}

void _mc_os_fail_kinds(unsigned kinds) {
    atomic_store(&fault_kinds, kinds);
}

/* True when this call, of the given kind, must fail (only in fault-injection
 * builds). */
static bool fault_now(unsigned kind) {
    if (!MC_FAULT_INJECT) return false;
    if ((atomic_load_explicit(&fault_kinds, memory_order_relaxed) & kind) == 0) return false;
    long n = atomic_load_explicit(&fault_countdown, memory_order_relaxed);
    while (n >= 0) {
        long next = n > 0 ? n - 1 : (atomic_load(&fault_repeat) ? 0 : -1);
        if (atomic_compare_exchange_weak(&fault_countdown, &n, next)) {
            if (n == 0) {
                errno = ENOMEM;
                return true;
            }
            return false;
        }
    }
    return false;
}

/* ---- The kernel's clock_gettime -------------------------------------------------
 * The clock is read from the vDSO (the code the kernel maps into every
 * process) directly, not through libc's clock_gettime: that function lives
 * far from everything else the allocator calls in libc, and reaching it
 * faulted in, with the kernel's fault-around, 64 KiB of libc's code that a
 * small program does not otherwise touch (3% of fastpath's resident
 * memory).  The vDSO's symbol table is read once, at start-up; without a
 * vDSO (under valgrind, say) the clock is a system call. */
typedef int (*os_clock_fn)(clockid_t, struct timespec *);
static os_clock_fn vdso_clock_gettime;
static const char *const vdso_clock_name =
#if defined(__x86_64__)
    "__vdso_clock_gettime";
#elif defined(__aarch64__)
    "__kernel_clock_gettime";
#else
    NULL;
#endif

static void *vdso_symbol(const char *name) {
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (base == 0) return NULL;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)base;
    if (eh->e_ident[EI_MAG0] != ELFMAG0 || eh->e_ident[EI_MAG1] != ELFMAG1 ||
        eh->e_ident[EI_MAG2] != ELFMAG2 || eh->e_ident[EI_MAG3] != ELFMAG3)
        return NULL;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(base + eh->e_phoff);
    const ElfW(Dyn) *dyn = NULL;
    uintptr_t bias = 0;
    bool loaded = false;
    for (size_t i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && !loaded) {
            bias = base + ph[i].p_offset - ph[i].p_vaddr;
            loaded = true;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(base + ph[i].p_offset);
        }
    }
    if (!loaded || dyn == NULL) return NULL;
    const ElfW(Sym) *sym = NULL;
    const char *str = NULL;
    const Elf32_Word *hash = NULL; /* DT_HASH: nbucket, nchain (= the symbol count), ... */
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_SYMTAB) sym = (const ElfW(Sym) *)(bias + dyn->d_un.d_ptr);
        if (dyn->d_tag == DT_STRTAB) str = (const char *)(bias + dyn->d_un.d_ptr);
        if (dyn->d_tag == DT_HASH) hash = (const Elf32_Word *)(bias + dyn->d_un.d_ptr);
    }
    if (sym == NULL || str == NULL || hash == NULL) return NULL;
    for (Elf32_Word i = 0; i < hash[1]; i++) {
        if (ELF64_ST_TYPE(sym[i].st_info) != STT_FUNC || sym[i].st_shndx == SHN_UNDEF) continue;
        if (strcmp(str + sym[i].st_name, name) == 0) return (void *)(bias + sym[i].st_value);
    }
    return NULL;
}

static void os_clock(clockid_t clock, struct timespec *ts) {
    os_clock_fn fn = vdso_clock_gettime;
    if (fn != NULL ? fn(clock, ts) != 0 : syscall(SYS_clock_gettime, clock, ts) != 0)
        ts->tv_sec = ts->tv_nsec = 0;
}

/* ---- Memory ---------------------------------------------------------------- */
void _mc_os_init(void) {
    long ps = (long)getauxval(AT_PAGESZ);
    if (ps <= 0) ps = sysconf(_SC_PAGESIZE);
    if (ps > 0) os_page_size = (size_t)ps;
    if (vdso_clock_name != NULL) vdso_clock_gettime = (os_clock_fn)vdso_symbol(vdso_clock_name);
}

size_t _mc_os_page_size(void) {
    return os_page_size;
}

/* flags: added to MAP_PRIVATE | MAP_ANONYMOUS (addr is a hint without them). */
static void *raw_map(void *addr, size_t size, int flags) {
    if (fault_now(MC_OS_FAULT_MAP)) return NULL;
    void *p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    count_add(&os_count.mmap_calls, 1);
    if (p == MAP_FAILED) return NULL;
    count_mapped(size, 0);
    return p;
}

static int raw_unmap(void *p, size_t size) {
    count_add(&os_count.munmap_calls, 1);
    if (munmap(p, size) != 0) return -1;
    count_mapped(0, size);
    return 0;
}

void *_mc_os_map(size_t size) {
    return raw_map(NULL, size, 0);
}

void *_mc_os_map_at(void *addr, size_t size) {
    void *p = raw_map(addr, size, MAP_FIXED_NOREPLACE);
    if (p == NULL) return NULL;
    if (p != addr) { /* a kernel that takes the flag for a hint */
        raw_unmap(p, size);
        return NULL;
    }
    return p;
}

int _mc_os_unmap(void *p, size_t size) {
    return raw_unmap(p, size);
}

int _mc_os_guard(void *p, size_t size, bool on) {
    return mprotect(p, size, on ? PROT_NONE : PROT_READ | PROT_WRITE);
}

void *_mc_os_map_aligned(size_t size, size_t align, size_t offset) {
    if (size + align < size) return NULL;
    /* Over-allocate by align and cut the ends off: the kernel gives no way to
     * ask for an alignment. */
    uint8_t *base = raw_map(NULL, size + align, 0);
    if (base == NULL) return NULL;
    uintptr_t want = ((uintptr_t)base + offset + align - 1) & ~(uintptr_t)(align - 1);
    uint8_t *x = (uint8_t *)(want - offset);
    size_t head = (size_t)(x - base);
    size_t tail = align - head;
    if (head > 0) raw_unmap(base, head);
    if (tail > 0) raw_unmap(x + size, tail);
    return x;
}

int _mc_os_purge(void *p, size_t size, bool madv_free) {
    if (fault_now(MC_OS_FAULT_PURGE)) return -1;
    count_add(&os_count.purge_calls, 1);
    int advice = MADV_DONTNEED;
#ifdef MADV_FREE
    if (madv_free) advice = MADV_FREE;
#else
    (void)madv_free;
#endif
    if (madvise(p, size, advice) != 0) return -1;
    count_add(&os_count.purged_bytes, size);
    return 0;
}

void *_mc_os_remap(void *p, size_t old_size, size_t new_size, void *target) {
    if (fault_now(MC_OS_FAULT_REMAP)) return NULL;
    count_add(&os_count.mremap_calls, 1);
    void *q;
    if (target == NULL) {
        q = mremap(p, old_size, new_size, 0);
        if (q == MAP_FAILED) return NULL;
    } else {
        q = mremap(p, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, target);
        if (q == MAP_FAILED) return NULL;
        /* target was counted when it was mapped */
        new_size = 0;
    }
    count_mapped(new_size, old_size);
    return q;
}

void _mc_os_counters(mc_os_counters_t *out) {
    out->mapped = atomic_load_explicit(&os_count.mapped, memory_order_relaxed);
    out->mapped_peak = atomic_load_explicit(&os_count.mapped_peak, memory_order_relaxed);
    out->mmap_calls = atomic_load_explicit(&os_count.mmap_calls, memory_order_relaxed);
    out->munmap_calls = atomic_load_explicit(&os_count.munmap_calls, memory_order_relaxed);
    out->mremap_calls = atomic_load_explicit(&os_count.mremap_calls, memory_order_relaxed);
    out->purge_calls = atomic_load_explicit(&os_count.purge_calls, memory_order_relaxed);
    out->purged_bytes = atomic_load_explicit(&os_count.purged_bytes, memory_order_relaxed);
}

/* ---- Time, randomness, output ------------------------------------------------ */
uint64_t _mc_os_now_ms(void) {
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    os_clock(CLOCK_MONOTONIC_COARSE, &ts);
#else
    os_clock(CLOCK_MONOTONIC, &ts);
#endif
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t _mc_os_random(void) {
    uint64_t r = 0;
#ifdef SYS_getrandom
    if (syscall(SYS_getrandom, &r, sizeof r, 1 /* GRND_NONBLOCK */) == (long)sizeof r) return r;
#endif
    struct timespec ts;
    os_clock(CLOCK_MONOTONIC, &ts);
    r = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)&r;
    return r * 0x9E3779B97F4A7C15ull;
}

void _mc_os_write(int fd, const void *buf, size_t len) {
    const char *s = buf;
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        s += n;
        len -= (size_t)n;
    }
}

_Noreturn void _mc_os_abort(void) {
    /* abort() may flush stdio (which may allocate) on some libcs; raise the
     * signal directly, then make sure we do not return. */
    raise(SIGABRT);
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
    _exit(134);
}

char **_mc_os_environ(void) {
    return environ;
}

/* ---- Locks ------------------------------------------------------------------ */
void _mc_os_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void futex_wait(uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *addr) {
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void atfork_check(void);

static bool lock_try(mc_lock_t *lock) {
    uint32_t expected = 0;
    return __atomic_compare_exchange_n(&lock->state, &expected, 1, false, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

bool _mc_trylock(mc_lock_t *lock) {
    atfork_check();
    return lock_try(lock);
}

void _mc_lock(mc_lock_t *lock) {
    if (_mc_trylock(lock)) return;
    for (int i = 0; i < 64; i++) {
        _mc_os_spin_pause();
        if (__atomic_load_n(&lock->state, __ATOMIC_RELAXED) == 0 && lock_try(lock)) return;
    }
    /* Contended: mark the lock as having sleepers and wait on it.  errno is
     * preserved because free may come through here. */
    int saved = errno;
    while (__atomic_exchange_n(&lock->state, 2, __ATOMIC_ACQUIRE) != 0) futex_wait(&lock->state, 2);
    errno = saved;
}

void _mc_unlock(mc_lock_t *lock) {
    if (__atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2) {
        int saved = errno;
        futex_wake(&lock->state);
        errno = saved;
    }
}

void _mc_lock_reset(mc_lock_t *lock) {
    __atomic_store_n(&lock->state, 0, __ATOMIC_RELAXED);
}

/* ---- fork ------------------------------------------------------------------
 * The fork handlers take every lock before fork and reset them in the child.
 * They matter only when a thread other than the forking one may hold a lock,
 * so in glibc (which says whether a process has ever had a second thread)
 * they are registered by the first lock taken in a process that has one,
 * not at start-up: a single-threaded program never has pthread_atfork's
 * code resident (the kernel maps 64 KiB of libc around it).  Why that is
 * safe: a thread that takes a lock has first made sure the handlers are
 * registered, or waited for the thread registering them, holding no lock
 * then (a nested lock was checked at the outer one); while the process has
 * one thread, that thread is in fork, not in the allocator, when it forks;
 * and glibc holds its own lock across both registering and fork's handlers,
 * so a fork either sees the handlers or waits until they are there.  The
 * registering thread's own allocations (pthread_atfork may malloc) pass.
 *
 * atfork_state: ATFORK_NONE, ATFORK_DONE, or the pid of the process whose
 * thread is registering them (a fork child whose parent was registering
 * when it forked has no such thread, and no handlers: had the parent
 * registered them, they ran, and the child's set DONE). */
#define ATFORK_NONE 0
#define ATFORK_DONE (-1)
static _Atomic pid_t atfork_state;
static void (*_Atomic atfork_prepare)(void);
static void (*atfork_parent)(void), (*atfork_child)(void);
static __thread bool atfork_registering;

__attribute__((noinline)) static void atfork_register(void) {
    if (atfork_registering) return; /* pthread_atfork's own malloc */
    pid_t self = getpid();
    for (;;) {
        pid_t state = ATFORK_NONE;
        if (atomic_compare_exchange_strong(&atfork_state, &state, self)) break;
        if (state == ATFORK_DONE) return;
        if (state != self) { /* left by the parent: start over */
            atomic_compare_exchange_strong(&atfork_state, &state, ATFORK_NONE);
            continue;
        }
        _mc_os_spin_pause(); /* another thread of this process registers them */
    }
    int saved = errno; /* (free may come through here) */
    atfork_registering = true;
    int err = pthread_atfork(atomic_load(&atfork_prepare), atfork_parent, atfork_child);
    atfork_registering = false;
    errno = saved;
    if (err != 0) {
        static const char msg[] = "mclone: pthread_atfork failed: a child forked while "
                                  "other threads allocate may hang\n";
        _mc_os_write(2, msg, sizeof msg - 1);
    }
    atomic_store_explicit(&atfork_state, ATFORK_DONE, memory_order_release);
}

static inline void atfork_check(void) {
    if (__builtin_expect(atomic_load_explicit(&atfork_state, memory_order_acquire) == ATFORK_DONE,
                         1))
        return;
    if (atomic_load_explicit(&atfork_prepare, memory_order_acquire) == NULL) return; /* start-up */
#if MC_HAVE_SINGLE_THREADED
    if (__libc_single_threaded) return;
#endif
    atfork_register();
}

void _mc_os_atfork_child(void) {
    atomic_store_explicit(&atfork_state, ATFORK_DONE, memory_order_relaxed);
}

void _mc_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
    atfork_parent = parent;
    atfork_child = child;
    atomic_store_explicit(&atfork_prepare, prepare, memory_order_release);
}

/* ---- Threads ------------------------------------------------------------------ */
static pthread_key_t thread_key;

int _mc_os_thread_key_create(void (*destructor)(void *)) {
    return pthread_key_create(&thread_key, destructor);
}

void _mc_os_thread_key_set(void *value) {
    pthread_setspecific(thread_key, value);
}
