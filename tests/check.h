/* A tiny test harness shared by the C test programs.
 *
 * A test program defines test functions with TEST(name) and runs them with
 * RUN(name).  Each test prints one line, "ok <name>" or "not ok <name>",
 * which tests/run.sh counts.  CHECK() records a failed condition with its
 * file and line (as a "# " comment) and lets the test go on, so one run
 * shows every broken check.  main() returns check_exit_status(). */
#ifndef MCLONE_TESTS_CHECK_H
#define MCLONE_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_test_failed; /* the current test has a failed check */
static int check_any_failed;  /* some test of this program failed */
static const char *check_prefix = "";

#define TEST(name) static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                      \
            fflush(stdout);                                                                        \
            check_test_failed = 1;                                                                 \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("# %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                      \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            fflush(stdout);                                                                        \
            check_test_failed = 1;                                                                 \
        }                                                                                          \
    } while (0)

#define RUN(name)                                                                                  \
    do {                                                                                           \
        check_test_failed = 0;                                                                     \
        test_##name();                                                                             \
        printf("%s %s%s\n", check_test_failed ? "not ok" : "ok", check_prefix, #name);             \
        fflush(stdout);                                                                            \
        check_any_failed |= check_test_failed;                                                     \
    } while (0)

static inline int check_exit_status(void) {
    return check_any_failed ? 1 : 0;
}

#endif
