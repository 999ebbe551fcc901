# The teaching programs (docs/learn.md): examples/ and the first-fit clone.
#
#   make examples   build/libfirstfit.so (the first-fit allocator, for
#                   LD_PRELOAD) and build/examples/: mmap-example,
#                   sbrk-example and workload
#
# mmap-example and sbrk-example are meant to be built by hand in examples/
# as well (gcc mmap-example.c -o mmap-example); tests/suites/30-examples.sh
# checks that those commands work.

EXAMPLES_CFLAGS  := -std=gnu11 $(WARN)
FIRSTFIT_CFLAGS  := -std=gnu11 -fPIC -fvisibility=hidden -fno-builtin-malloc -fno-builtin-free \
                    -fno-builtin-calloc -fno-builtin-realloc $(WARN)
EXAMPLE_PROGRAMS := build/examples/mmap-example build/examples/sbrk-example \
                    build/examples/workload

.PHONY: examples
examples: build/libfirstfit.so $(EXAMPLE_PROGRAMS)

build/libfirstfit.so: examples/first-fit/firstfit.c | build/examples
	$(CC) $(CFLAGS) $(FIRSTFIT_CFLAGS) -shared -Wl,-soname,libfirstfit.so -o $@ $< -lpthread

build/examples/mmap-example: examples/mmap-example.c | build/examples
	$(CC) $(CFLAGS) $(EXAMPLES_CFLAGS) -o $@ $<

build/examples/sbrk-example: examples/sbrk-example.c | build/examples
	$(CC) $(CFLAGS) $(EXAMPLES_CFLAGS) -o $@ $<

build/examples/workload: examples/workload.c | build/examples
	$(CC) $(CFLAGS) $(EXAMPLES_CFLAGS) -o $@ $< -lpthread

# The API checks of tests/examples/, run by the suite under libfirstfit.so.
# -fno-builtin: the compiler must not drop or fold the allocation calls.
build/tests/examples/firstfit-api: tests/examples/firstfit-api.c tests/check.h | build/tests/examples
	$(CC) $(CFLAGS) $(EXAMPLES_CFLAGS) -fno-builtin -Itests -o $@ $< -lpthread -ldl

build/examples build/tests/examples:
	mkdir -p $@

TEST_DEPS += examples build/tests/examples/firstfit-api
# The project's API tests (tests/api/, built by mk/tests.mk) also run under
# libfirstfit.so; wanted as soon as their source exists.
TEST_DEPS += $(if $(wildcard tests/api/test-api.c),build/tests/test-api)
