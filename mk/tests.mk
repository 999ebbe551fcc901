# Test programs of tests/api and tests/stress, built into build/tests/.
#
# Most of them are ordinary programs linked against the C library: the
# allocator under test comes in with LD_PRELOAD, so one binary tests every
# flavour (and glibc, when run without a preload).  test-api-static links
# build/libmclone.a in; test-mc-api links build/libmclone.so and finds it
# through its run path ($ORIGIN/.., overridden by LD_LIBRARY_PATH for the
# other flavours).

TEST_BIN    := build/tests
TEST_CFLAGS := -std=gnu11 -O2 -g -pthread -fno-builtin $(WARN) -Iinclude -Itests
TEST_LDLIBS := -ldl -lpthread

TEST_PLAIN := test-api test-secure stress churn fork oom
TEST_PROGS := $(addprefix $(TEST_BIN)/,$(TEST_PLAIN) test-api-clang test-api-static test-mc-api)

.PHONY: test-programs
test-programs: $(TEST_PROGS)
TEST_DEPS += test-programs

$(TEST_BIN):
	mkdir -p $@

$(TEST_BIN)/test-api: tests/api/test-api.c tests/check.h | $(TEST_BIN)
	$(CC) $(TEST_CFLAGS) $< -o $@ $(TEST_LDLIBS)

# The same source under clang, whatever CC is.
$(TEST_BIN)/test-api-clang: tests/api/test-api.c tests/check.h | $(TEST_BIN)
	clang $(TEST_CFLAGS) $< -o $@ $(TEST_LDLIBS)

# libmclone.a before the C library: its malloc is the executable's own.
$(TEST_BIN)/test-api-static: tests/api/test-api.c tests/check.h build/libmclone.a | $(TEST_BIN)
	$(CC) $(TEST_CFLAGS) -DTEST_API_STATIC $< build/libmclone.a -o $@ $(TEST_LDLIBS)

$(TEST_BIN)/test-mc-api: tests/api/test-mc-api.c tests/check.h include/mclone.h \
                         build/libmclone.so | $(TEST_BIN)
	$(CC) $(TEST_CFLAGS) $< -o $@ -Lbuild -lmclone -Wl,-rpath,'$$ORIGIN/..' $(TEST_LDLIBS)

$(TEST_BIN)/test-secure: tests/api/test-secure.c tests/check.h | $(TEST_BIN)
	$(CC) $(TEST_CFLAGS) $< -o $@ $(TEST_LDLIBS)

$(TEST_BIN)/%: tests/stress/%.c tests/check.h tests/stress/stress-util.h | $(TEST_BIN)
	$(CC) $(TEST_CFLAGS) $< -o $@ $(TEST_LDLIBS)
