/* mmap-example.c: what mmap gives a program, step by step.
 *
 * Build and run, in examples/:
 *
 *     gcc mmap-example.c -o mmap-example
 *     ./mmap-example testfile.txt
 *     ./mmap-example --shared-copy testfile.txt
 *
 * What it shows:
 *   1. A file mapped read-only (MAP_PRIVATE): its size, the page size, where
 *      the mapping landed, and the file's contents read through the mapping
 *      as if they were an ordinary array of bytes.
 *   2. The bytes between the end of the file and the end of its last page:
 *      the kernel fills them with zeros.
 *   3. An anonymous mapping (MAP_ANONYMOUS): memory that is not backed by any
 *      file.  It always starts out zero-filled.  This is the kind of memory a
 *      malloc gets from the kernel.
 *   4. mprotect turning a page read-only: the next write to it faults
 *      (SIGSEGV); a signal handler catches the fault and jumps back out.
 *   5. With --shared-copy: MAP_SHARED, where a write to the mapping is a
 *      write to the file.  The program copies your file to a temporary file
 *      and writes to the copy, so your file is never modified.
 *
 * Exit status: 0 when everything worked (an empty file too: it is reported
 * and the file steps are skipped), 1 when the file cannot be opened or
 * mapped (the reason is printed), 2 for a wrong command line. */
#define _GNU_SOURCE /* MAP_ANONYMOUS under a strict -std=c11 too */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *prog = "mmap-example";

static void usage(void) {
    fprintf(stderr,
            "usage: %s [--shared-copy] FILE\n"
            "  Maps FILE read-only and shows what mmap does.\n"
            "  --shared-copy  also show MAP_SHARED write-back, on a temporary copy\n"
            "                 of FILE (FILE itself is never modified)\n",
            prog);
}

/* Round n up to a multiple of the page size (a power of two). */
static size_t page_round_up(size_t n, size_t page) {
    return (n + page - 1) & ~(page - 1);
}

/* ---- Step 1 and 2: the file, read through a private read-only mapping ---- */

/* Returns 0 on success, 1 on an error (already reported). */
static int show_file_mapping(const char *path, int fd, size_t size, size_t page) {
    /* PROT_READ: we only read.  MAP_PRIVATE: even if we could write, our
     * writes would go to a private copy of the page, never to the file.
     * Offset 0: map from the start of the file.  The kernel picks the
     * address (first argument NULL); it is always page-aligned. */
    char *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "%s: %s: cannot map: %s\n", prog, path, strerror(errno));
        return 1;
    }
    printf("mapping address: %p (page-aligned: %s)\n", (void *)map,
           (uintptr_t)map % page == 0 ? "yes" : "no");

    /* Nothing has been read from the disk yet.  The first access to each
     * page faults, and the kernel fills the page from the page cache. */
    printf("---- contents of %s, read through the mapping ----\n", path);
    fwrite(map, 1, size, stdout);
    if (map[size - 1] != '\n') printf("\n");
    printf("---- end of contents ----\n");

    /* The mapping covers whole pages.  The part of the last page that lies
     * past the end of the file is readable, and the kernel guarantees it
     * reads as zeros.  (Touching a page that lies wholly past the end of the
     * file would raise SIGBUS instead.) */
    size_t mapped = page_round_up(size, page);
    size_t tail = mapped - size;
    if (tail == 0) {
        printf("zero fill: none, the file ends exactly on a page boundary\n");
    } else {
        size_t zeros = 0;
        for (size_t i = size; i < mapped; i++) zeros += map[i] == 0;
        printf("zero fill: %zu of the %zu bytes from the end of the file (offset %zu) "
               "to the end of its last page (offset %zu) are zero\n",
               zeros, tail, size, mapped);
    }

    munmap(map, size);
    return 0;
}

/* ---- Step 3: anonymous memory ------------------------------------------- */

static void show_anonymous_mapping(size_t page) {
    size_t len = 4 * page;
    /* fd -1 and MAP_ANONYMOUS: no file behind it.  The pages do not exist
     * until first touched; then each one is a fresh zero-filled page. */
    unsigned char *mem =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        printf("anonymous mapping: mmap failed: %s\n", strerror(errno));
        return;
    }
    size_t nonzero = 0;
    for (size_t i = 0; i < len; i++) nonzero += mem[i] != 0;
    printf("anonymous mapping: %zu bytes at %p, %zu non-zero bytes (zero-filled: %s)\n", len,
           (void *)mem, nonzero, nonzero == 0 ? "yes" : "no");
    strcpy((char *)mem, "hello from anonymous memory");
    printf("anonymous mapping: wrote and read back \"%s\"\n", (char *)mem);
    munmap(mem, len);
}

/* ---- Step 4: mprotect and a caught fault -------------------------------- */

/* The handler jumps back to the sigsetjmp in show_mprotect, leaving the
 * faulting address behind in a volatile variable (it is written inside a
 * signal handler and read after the jump). */
static sigjmp_buf fault_jump;
static void *volatile fault_address;

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)context;
    fault_address = info->si_addr;
    /* Returning from the handler would retry the faulting write forever;
     * jump out instead.  siglongjmp also restores the signal mask that
     * sigsetjmp(..., 1) saved, so SIGSEGV is unblocked again. */
    siglongjmp(fault_jump, 1);
}

static void show_mprotect(size_t page) {
    char *mem = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        printf("mprotect: mmap failed: %s\n", strerror(errno));
        return;
    }
    mem[0] = 'a';
    mem[page] = 'b';

    /* Protection is per page: make the second page read-only. */
    if (mprotect(mem + page, page, PROT_READ) != 0) {
        printf("mprotect: failed: %s\n", strerror(errno));
        munmap(mem, 2 * page);
        return;
    }
    printf("mprotect: page %p is now read-only; reading it gives '%c'\n", (void *)(mem + page),
           mem[page]);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO; /* deliver the faulting address in si_addr */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old);

    volatile char *target = mem + page + 10;
    if (sigsetjmp(fault_jump, 1) == 0) {
        *target = 'x'; /* faults: the handler jumps to the else branch */
        printf("mprotect: the write to the read-only page was NOT caught\n");
    } else {
        printf("mprotect: the write to %p was caught: SIGSEGV at address %p\n", (void *)target,
               fault_address);
    }
    sigaction(SIGSEGV, &old, NULL);

    /* Giving write access back makes the page writable again. */
    mprotect(mem + page, page, PROT_READ | PROT_WRITE);
    *target = 'x';
    printf("mprotect: after PROT_READ|PROT_WRITE again, the same write succeeds ('%c')\n", *target);
    munmap(mem, 2 * page);
}

/* ---- Step 5: MAP_SHARED writes reach the file ---------------------------- */

/* Copy size bytes of fd (from offset 0) into a new temporary file; returns
 * its descriptor, or -1.  The name is written to name[]. */
static int make_temp_copy(int fd, size_t size, char *name, size_t name_len) {
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0') dir = "/tmp";
    snprintf(name, name_len, "%s/mmap-example-XXXXXX", dir);
    int tmp = mkstemp(name);
    if (tmp < 0) return -1;
    char buf[8192];
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, buf, sizeof buf, (off_t)done);
        if (n <= 0 || write(tmp, buf, (size_t)n) != n) {
            close(tmp);
            unlink(name);
            return -1;
        }
        done += (size_t)n;
    }
    return tmp;
}

static void show_shared_copy(const char *path, int fd, size_t size) {
    char name[4096];
    int tmp = make_temp_copy(fd, size, name, sizeof name);
    if (tmp < 0) {
        printf("shared copy: cannot make a temporary copy: %s\n", strerror(errno));
        return;
    }
    printf("shared copy: copied %s to %s\n", path, name);

    /* MAP_SHARED and PROT_WRITE: the mapping *is* the file's page cache.
     * (This needs a descriptor opened for writing, which is one reason the
     * program never maps your own file this way.) */
    char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, tmp, 0);
    if (map == MAP_FAILED) {
        printf("shared copy: cannot map: %s\n", strerror(errno));
    } else {
        /* Turn the first line into upper case, through memory only. */
        size_t changed = 0;
        for (size_t i = 0; i < size && map[i] != '\n'; i++) {
            if (map[i] >= 'a' && map[i] <= 'z') {
                map[i] = (char)(map[i] - 'a' + 'A');
                changed++;
            }
        }
        /* msync asks the kernel to write the dirty pages now; without it
         * they would still reach the file, later, and read() would see them
         * at once anyway, since read() goes through the same page cache. */
        msync(map, size, MS_SYNC);
        munmap(map, size);
        printf("shared copy: upper-cased %zu letters of the first line through the mapping\n",
               changed);

        /* Read the copy back with plain read(): the change is in the file. */
        char line[256];
        ssize_t n = pread(tmp, line, sizeof line - 1, 0);
        if (n < 0) n = 0;
        line[n] = '\0';
        line[strcspn(line, "\n")] = '\0';
        printf("shared copy: first line of the copy, read back with read(): \"%s\"\n", line);
    }
    close(tmp);
    unlink(name);
    printf("shared copy: removed %s; %s was not modified\n", name, path);
}

int main(int argc, char **argv) {
    int shared_copy = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--shared-copy") == 0) {
            shared_copy = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "%s: unknown option %s\n", prog, argv[i]);
            usage();
            return 2;
        } else if (path == NULL) {
            path = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (path == NULL) {
        usage();
        return 2;
    }

    /* O_NONBLOCK only matters for a FIFO: without it, open() would wait
     * for a writer to appear.  For a regular file it changes nothing. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot open %s: %s\n", prog, path, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fprintf(stderr, "%s: cannot stat %s: %s\n", prog, path, strerror(errno));
        close(fd);
        return 1;
    }
    /* Only a regular file has pages behind it that mmap can map.  A
     * directory can be opened, but not read or mapped; a pipe, socket or
     * terminal has no pages at all (mmap would fail with ENODEV). */
    if (S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(EISDIR));
        close(fd);
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "%s: %s: not a regular file, it cannot be mapped: %s\n", prog, path,
                strerror(ENODEV));
        close(fd);
        return 1;
    }

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t size = (size_t)st.st_size;
    printf("file: %s\n", path);
    printf("file size: %zu bytes\n", size);
    printf("page size: %zu bytes\n", page);

    if (size == 0) {
        /* A mapping of length 0 is invalid: mmap fails with EINVAL. */
        if (mmap(NULL, 0, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED)
            printf("the file is empty: nothing to map (mmap with length 0 fails: %s); "
                   "skipping the file steps\n",
                   strerror(errno));
    } else {
        if (show_file_mapping(path, fd, size, page) != 0) {
            close(fd);
            return 1;
        }
        printf("file pages: %zu (the mapping always covers whole pages)\n",
               page_round_up(size, page) / page);
    }

    show_anonymous_mapping(page);
    show_mprotect(page);

    if (shared_copy) {
        if (size == 0)
            printf("shared copy: skipped, the file is empty\n");
        else
            show_shared_copy(path, fd, size);
    }
    close(fd);
    return 0;
}
