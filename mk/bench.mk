# The benchmark suite (bench/README.md).
#
#   make bench                 full run, writes bench/RESULTS.md, bench/results.svg
#                              and the raw numbers in bench/results/full/
#   make bench QUICK=1         a short run (fewer repetitions, smaller sizes)
#   make bench R=5 THREADS=4 ALLOCATORS="glibc mimalloc mclone" WORKLOADS="server frag"
#   make bench-build           only build the workload programs (make test does)

BENCH_SRCS := $(sort $(wildcard bench/src/*.c))
BENCH_BINS := $(patsubst bench/src/%.c,build/bench/%,$(BENCH_SRCS))
BENCH_SHIM := build/bench/libglibc-shim.so
BENCH_CFLAGS := -std=gnu11 -pthread $(WARN)

.PHONY: bench-build
bench-build: $(BENCH_BINS) $(BENCH_SHIM)

$(BENCH_BINS): build/bench/%: bench/src/%.c bench/src/bench.h | build/bench
	$(CC) $(CFLAGS) $(BENCH_CFLAGS) $< -o $@ -lm

$(BENCH_SHIM): bench/shim/glibc-shim.c | build/bench
	$(CC) $(CFLAGS) $(BENCH_CFLAGS) -fPIC -shared $< -o $@

build/bench:
	mkdir -p $@

TEST_DEPS += bench-build

# libmclone, libmclone-secure and the first-fit teaching allocator are built
# first; if one does not build, the other allocators are still measured (run.sh says which
# ones it found).
bench: bench-build
	@$(MAKE) --no-print-directory all || \
	    echo "bench: libmclone did not build; measuring what is there" >&2
	@$(MAKE) --no-print-directory build/libfirstfit.so || \
	    echo "bench: libfirstfit did not build; measuring what is there" >&2
	@$(MAKE) --no-print-directory build/secure/libmclone-secure.so || \
	    echo "bench: libmclone-secure did not build; measuring what is there" >&2
	@$(if $(QUICK),BENCH_QUICK='$(QUICK)') \
	 $(if $(R),BENCH_REPS='$(R)') \
	 $(if $(THREADS),BENCH_THREADS='$(THREADS)') \
	 $(if $(ALLOCATORS),BENCH_ALLOCATORS='$(ALLOCATORS)') \
	 $(if $(WORKLOADS),BENCH_WORKLOADS='$(WORKLOADS)') \
	 bench/run.sh
