# malloc-clone build.
#
#   make              build/libmclone.so and build/libmclone.a (release)
#   make debug        build/debug/   the same with MCLONE_DEBUG=2 (invariant checks)
#   make check-build  build/check/   MCLONE_DEBUG=3 (full heap validation on every call)
#   make fault-build  build/fault/   MCLONE_DEBUG=2 with fault injection in the os layer
#   make secure       build/secure/libmclone-secure.so and .a: the checks of src/secure.c
#   make test         everything above, then every test suite (tests/run.sh)
#   make demo         a real program under libmclone next to glibc: time and memory
#   make bench        the benchmark suite against glibc, jemalloc, mimalloc, tcmalloc
#   make format       apply .clang-format
#
# CC=clang works too.  Objects of each flavour live in <flavour>/obj.

ifeq ($(origin CC),default)
CC := gcc
endif
AR ?= ar

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g -gdwarf-4
LIBFLAGS := -std=gnu11 -fPIC -fvisibility=hidden -ftls-model=initial-exec \
            -fno-semantic-interposition -fno-builtin-malloc -fno-builtin-free \
            -fno-builtin-calloc -fno-builtin-realloc \
            -Iinclude -Isrc $(WARN)
LDLIBS   := -lpthread
# Code placement: every function starts on a cache line, and no jump crosses
# or ends on a 32-byte boundary (on the Intel cores with the "JCC erratum" such
# a jump drops out of the decoded-instruction cache).  malloc and free are a
# dozen instructions each, so where they fall decides their speed: the same
# code ran fastpath in 0.59 s or 0.39-0.41 s (docs/design.md, section 11).
# (The branch option is the x86 assembler's; other targets get the alignment.)
comma     := ,
CC_MACHINE := $(shell $(CC) -dumpmachine 2>/dev/null)
ALIGNFLAGS = -falign-functions=64 \
             $(if $(filter x86_64-% i%86-%,$(CC_MACHINE)),$(if $(findstring clang,$(CC)),,-Wa$(comma))-mbranches-within-32B-boundaries)

SRCS := $(sort $(wildcard src/*.c))
HDRS := $(wildcard src/*.h) include/mclone.h

.PHONY: all debug check-build fault-build secure flavours test demo bench format format-check clean
all: build/libmclone.so build/libmclone.a

# $(1): output directory, $(2): extra compiler flags, $(3): extra link flags,
# $(4): the library's name (libmclone if empty)
define flavour
$(1)/obj/%.o: src/%.c $(HDRS) | $(1)/obj
	$$(CC) $$(CFLAGS) $$(LIBFLAGS) $$(ALIGNFLAGS) $(2) -c $$< -o $$@
$(1)/obj:
	mkdir -p $$@
$(1)/$(or $(4),libmclone).so: $(patsubst src/%.c,$(1)/obj/%.o,$(SRCS))
	$$(CC) -shared -Wl,-soname,$(or $(4),libmclone).so -Wl,-z,nodelete $(3) -o $$@ $$^ $$(LDLIBS)
$(1)/$(or $(4),libmclone).a: $(patsubst src/%.c,$(1)/obj/%.o,$(SRCS))
	rm -f $$@ && $$(AR) rcs $$@ $$^
endef

$(eval $(call flavour,build,-DMCLONE_DEBUG=0))
$(eval $(call flavour,build/debug,-DMCLONE_DEBUG=2))
$(eval $(call flavour,build/check,-DMCLONE_DEBUG=3))
$(eval $(call flavour,build/fault,-DMCLONE_DEBUG=2 -DMCLONE_FAULT_INJECT=1))
$(eval $(call flavour,build/secure,-DMCLONE_DEBUG=0 -DMCLONE_SECURE=1,,libmclone-secure))

debug: build/debug/libmclone.so build/debug/libmclone.a
check-build: build/check/libmclone.so build/check/libmclone.a
fault-build: build/fault/libmclone.so
secure: build/secure/libmclone-secure.so build/secure/libmclone-secure.a
flavours: all debug check-build fault-build secure

# Other parts of the tree add their own rules and test prerequisites.
TEST_DEPS := flavours
-include mk/*.mk

test: $(TEST_DEPS)
	@tests/run.sh

demo:
	@scripts/demo.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
