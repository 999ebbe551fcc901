#!/usr/bin/env bash
# Suite: the allocation API (tests/api/).
#
#   test-api        the standard names, first under plain glibc (the test's
#                   own check: glibc must pass it), then under each flavour
#                   of libmclone through LD_PRELOAD, TEST_EXPECT_LIB making
#                   sure the preload took
#   test-api-clang  the same source built by clang, under the release build
#   test-api-static libmclone.a linked into the executable
#   test-mc-api     the mc_ names, options, statistics, heap map and check,
#                   against each flavour
#   test-secure     heap errors end in one line and an abort: every kind of
#                   error under libmclone-secure (which also runs test-api),
#                   those the release build promises under the others
#
# Test names carry the flavour: "debug/usable_size".
set -u
cd "$(dirname "$0")/../.." || exit 2
root=$(pwd)
bin=$root/build/tests
flavours=(release debug check)
declare -A libdir=([release]=$root/build [debug]=$root/build/debug [check]=$root/build/check)

# run PREFIX SECONDS COMMAND...: run a test program with TEST_PREFIX=PREFIX
# and a time limit; a crash or a timeout without a "not ok" line of its own
# becomes one.
run() {
    local prefix=$1 limit=$2
    shift 2
    local out
    out=$(mktemp)
    TEST_PREFIX=$prefix timeout -k 5 "$limit" "$@" >"$out" 2>&1
    local status=$?
    cat "$out"
    if [ $status -ne 0 ] && ! grep -q '^not ok ' "$out"; then
        if [ $status -eq 124 ] || [ $status -eq 137 ]; then
            echo "not ok ${prefix}timeout after ${limit}s (last test passed: $(grep '^ok ' "$out" | tail -1))"
        else
            echo "not ok ${prefix}exit status $status (last test passed: $(grep '^ok ' "$out" | tail -1))"
        fi
    fi
    rm -f "$out"
}

# build TARGET...: make the targets; a failure is a failed test.
build() {
    local t ok=0
    for t in "$@"; do
        if ! make -s -C "$root" "$t"; then
            echo "not ok build $t"
            ok=1
        fi
    done
    return $ok
}

secure_lib=$root/build/secure/libmclone-secure.so

if build build/tests/test-api; then
    run "glibc/" 120 "$bin/test-api"
    for f in "${flavours[@]}"; do
        lib=${libdir[$f]}/libmclone.so
        if build "$lib"; then
            run "$f/" 180 env LD_PRELOAD="$lib" TEST_EXPECT_LIB="$lib" "$bin/test-api"
        fi
    done
    if build "$secure_lib"; then
        run "secure/" 180 env LD_PRELOAD="$secure_lib" TEST_EXPECT_LIB="$secure_lib" \
            "$bin/test-api"
    fi
fi

if build build/tests/test-secure; then
    for f in release debug; do
        lib=${libdir[$f]}/libmclone.so
        if build "$lib"; then
            run "errors/$f/" 120 env LD_PRELOAD="$lib" "$bin/test-secure"
        fi
    done
    if build "$secure_lib"; then
        run "errors/secure/" 120 env LD_PRELOAD="$secure_lib" TEST_SECURE=1 "$bin/test-secure"
        # Without the quarantine, writes after free are caught by malloc.
        run "errors/secure-noquarantine/" 120 env LD_PRELOAD="$secure_lib" TEST_SECURE=1 \
            MCLONE_QUARANTINE_KB=0 "$bin/test-secure"
    fi
fi

if build build/tests/test-api-clang build/libmclone.so; then
    run "clang/" 120 env LD_PRELOAD="$root/build/libmclone.so" \
        TEST_EXPECT_LIB="$root/build/libmclone.so" "$bin/test-api-clang"
fi

if build build/tests/test-api-static; then
    run "static/" 120 "$bin/test-api-static"
fi

if build build/tests/test-mc-api; then
    for f in "${flavours[@]}"; do
        dir=${libdir[$f]}
        if build "$dir/libmclone.so"; then
            run "mc/$f/" 180 env LD_LIBRARY_PATH="$dir" TEST_EXPECT_LIB="$dir/libmclone.so" \
                "$bin/test-mc-api"
        fi
    done
fi
