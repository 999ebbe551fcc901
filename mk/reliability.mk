# The reliability suites (tests/README.md): sanitizer builds of the library
# and of the programs around it, fault injection, the fuzzer.
#
#   make reliability-build   everything below (make test builds it)
#
#   build/ubsan/     libmclone with UndefinedBehaviorSanitizer ($(CC))
#   build/tsan/      libmclone with ThreadSanitizer (always clang)
#   build/fuzz/      libmclone with libFuzzer coverage, ASan and UBSan
#                    (clang, MCLONE_DEBUG=2), and the fuzzer
#   build/asan/      the examples, the test programs that run on the C
#                    library's allocator, and the bench workloads, with ASan
#   build/tests/     faults (against build/fault), mt-mc (the mc_ threads
#                    test, against any flavour), fuzz-replay (the fuzzer's
#                    input decoder with a main(), against any flavour)
#
# libmclone-mc.o of a flavour is its objects linked into one, with every
# symbol but the mc_ names made local: a program links it to get the
# allocator under its own names only, while malloc stays the C library's
# (or the sanitizer's).

REL_SAN_UB  := -fsanitize=undefined -fno-sanitize-recover=all
REL_SAN_ASAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
REL_FUZZ_LIB := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all

$(eval $(call flavour,build/ubsan,-DMCLONE_DEBUG=0 $(REL_SAN_UB),$(REL_SAN_UB)))
$(eval $(call flavour,build/tsan,-DMCLONE_DEBUG=0 -fsanitize=thread,-fsanitize=thread))
$(eval $(call flavour,build/fuzz,-DMCLONE_DEBUG=2 $(REL_FUZZ_LIB),$(REL_FUZZ_LIB)))

# ThreadSanitizer and libFuzzer builds are clang's, whatever CC is, and
# need its runtime libraries (installed when missing).
build/tsan/%: CC := clang
build/fuzz/%: CC := clang
.PHONY: reliability-packages
reliability-packages:
	@scripts/ensure-packages.sh clang libclang-rt-14-dev
build/tsan/obj build/fuzz/obj: | reliability-packages

%/libmclone-mc.o: %/libmclone.a
	ld -r --whole-archive $< -o $@.tmp
	objcopy -w --keep-global-symbol='mc_*' $@.tmp $@
	rm -f $@.tmp

REL_CFLAGS := -std=gnu11 -O1 -g -pthread -fno-builtin $(WARN) -Iinclude -Itests

# ---- Programs against the library --------------------------------------------------
# TEST_CFLAGS and TEST_LDLIBS are mk/tests.mk's (used in recipes only: that
# file is read after this one).

# The mc_ threads test: linked to libmclone.so (other flavours through
# LD_LIBRARY_PATH), and statically to the ThreadSanitizer build's mc_ names.
build/tests/mt-mc: tests/reliability/mt-mc.c tests/check.h include/mclone.h build/libmclone.so
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $< -o $@ -Lbuild -lmclone -Wl,-rpath,'$$ORIGIN/..' $(TEST_LDLIBS)

build/tsan/mt-mc: tests/reliability/mt-mc.c tests/check.h include/mclone.h build/tsan/libmclone-mc.o
	clang $(REL_CFLAGS) -fsanitize=thread $< build/tsan/libmclone-mc.o -o $@ $(TEST_LDLIBS)

# Fault injection: only build/fault has mc_test_fail_after doing anything.
build/tests/faults: tests/reliability/faults.c tests/check.h tests/stress/stress-util.h \
                    include/mclone.h build/fault/libmclone.so
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $< -o $@ -Lbuild/fault -lmclone -Wl,-rpath,'$$ORIGIN/../fault' \
	    $(TEST_LDLIBS)

# ---- The fuzzer --------------------------------------------------------------------
FUZZ_SRC := tests/fuzz/fuzz-alloc.c
build/fuzz/fuzz-alloc: $(FUZZ_SRC) include/mclone.h build/fuzz/libmclone-mc.o
	clang $(REL_CFLAGS) -O2 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    $< build/fuzz/libmclone-mc.o -o $@ $(TEST_LDLIBS)

# The same decoder and checks, run on files (the corpus, regressions) by a
# main() of its own, against any flavour of libmclone.so.
build/tests/fuzz-replay: $(FUZZ_SRC) tests/fuzz/replay.c include/mclone.h build/libmclone.so
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(FUZZ_SRC) tests/fuzz/replay.c -o $@ -Lbuild -lmclone \
	    -Wl,-rpath,'$$ORIGIN/..' $(TEST_LDLIBS)

# ---- AddressSanitizer on the programs that use the C library's malloc ----------------
REL_ASAN_BIN := build/asan
REL_ASAN_TESTS := $(addprefix $(REL_ASAN_BIN)/tests/,test-api stress churn fork)
REL_ASAN_EXAMPLES := $(addprefix $(REL_ASAN_BIN)/examples/,mmap-example sbrk-example workload)
REL_ASAN_BENCH := $(patsubst bench/src/%.c,$(REL_ASAN_BIN)/bench/%,$(wildcard bench/src/*.c))

$(REL_ASAN_BIN)/tests/test-api: tests/api/test-api.c tests/check.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(REL_SAN_ASAN) $< -o $@ $(TEST_LDLIBS)

$(REL_ASAN_BIN)/tests/%: tests/stress/%.c tests/check.h tests/stress/stress-util.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(REL_SAN_ASAN) $< -o $@ $(TEST_LDLIBS)

$(REL_ASAN_BIN)/examples/%: examples/%.c
	@mkdir -p $(@D)
	$(CC) -O1 -g $(EXAMPLES_CFLAGS) $(REL_SAN_ASAN) $< -o $@ -lpthread

$(REL_ASAN_BIN)/bench/%: bench/src/%.c $(wildcard bench/src/bench.h)
	@mkdir -p $(@D)
	$(CC) -O1 -g -std=gnu11 -pthread $(WARN) $(REL_SAN_ASAN) $< -o $@ -lm

.PHONY: reliability-build sanitizer-build
sanitizer-build: build/ubsan/libmclone.so build/tsan/mt-mc $(REL_ASAN_TESTS) \
                 $(REL_ASAN_EXAMPLES) $(REL_ASAN_BENCH)
reliability-build: sanitizer-build build/tests/mt-mc build/tests/faults build/fuzz/fuzz-alloc \
                   build/tests/fuzz-replay

TEST_DEPS += reliability-build
