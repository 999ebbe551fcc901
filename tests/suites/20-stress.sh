#!/usr/bin/env bash
# Suite: threads (tests/stress/stress.c and churn.c).
#
#   stress  threads allocating, trading blocks, reallocating, dying and
#           being replaced, under each flavour (fewer operations under the
#           check flavour) and under plain glibc as the test's own check
#   churn   10000 short threads leaving blocks to each other; the resident
#           size and the bytes in use must stay bounded (fewer threads under
#           the check flavour; plain glibc as the test's own check)
#   mt-mc   threads through the mc_ names only (tests/reliability/mt-mc.c):
#           trading blocks, a producer and consumers, exits with live
#           blocks, mc_trim after a thread's blocks are freed, huge blocks
#           freed while another thread trims, and every heap's
#           mc_heap_check, under each flavour (its ThreadSanitizer run is in
#           50-sanitizers)
#
# Under the check flavour (MCLONE_DEBUG=3) every call validates the calling
# thread's whole heap; stress also calls mc_heap_check in every thread under
# every flavour.  Test names carry the flavour: "debug/stress".
set -u
cd "$(dirname "$0")/../.." || exit 2
root=$(pwd)
bin=$root/build/tests
declare -A libdir=([release]=$root/build/libmclone.so [debug]=$root/build/debug/libmclone.so
    [check]=$root/build/check/libmclone.so [secure]=$root/build/secure/libmclone-secure.so)

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
            echo "not ok ${prefix}timeout after ${limit}s: ${*: -3}"
        else
            echo "not ok ${prefix}exit status $status: ${*: -3}"
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

# under FLAVOUR[/VARIANT] SECONDS PROGRAM ARGS...: the program with that
# flavour preloaded; its test names start with "FLAVOUR[/VARIANT]/".
under() {
    local name=$1 limit=$2 prog=$3
    shift 3
    local lib=${libdir[${name%%/*}]}
    build "$lib" || return
    run "$name/" "$limit" env LD_PRELOAD="$lib" TEST_EXPECT_LIB="$lib" "$bin/$prog" "$@"
}

if build build/tests/stress; then
    run "glibc/" 60 "$bin/stress" -n 10000 -l 3
    under release 60 stress
    under debug 60 stress
    under check 60 stress -n 10000 -l 4
    under secure 60 stress
    # More threads than cores, each with a short life: more handovers of
    # heaps between dying and new threads.
    under release/short-lives 60 stress -t 12 -n 4000 -l 10 -s 7
    under check/short-lives 60 stress -t 12 -n 1000 -l 10 -s 7
fi

if build build/tests/churn; then
    run "glibc/" 60 "$bin/churn"
    under release 60 churn
    under debug 60 churn
    under check 60 churn -T 3000
fi

# The mc_ names: linked to libmclone.so, the flavour chosen by
# LD_LIBRARY_PATH.
if build build/tests/mt-mc; then
    for f in release debug check; do
        dir=$(dirname "${libdir[$f]}")
        build "$dir/libmclone.so" || continue
        args=()
        [ $f = check ] && args=(-n 3000 -l 2)
        run "mc/$f/" 120 env LD_LIBRARY_PATH="$dir" TEST_EXPECT_LIB="$dir/libmclone.so" \
            "$bin/mt-mc" "${args[@]}"
    done
fi
