#!/usr/bin/env bash
# Suite: fork while threads allocate, and running out of memory
# (tests/stress/fork.c and oom.c).
#
#   fork  forks while three threads allocate and free; every child must
#         allocate, free and exit (a deadlock is a failure after a deadline):
#         1000 forks under the release build, 200 under debug, 50 under
#         check and plain glibc
#   oom   an address-space limit in a child process; every refusal must be
#         NULL with ENOMEM, and allocation must work again afterwards; with
#         one thread, two, and four that free each other's blocks at the
#         limit and exit with live ones
#
# Both run under plain glibc (the tests' own check), release and debug; fork
# also under the check flavour with fewer forks.  Test names carry the
# flavour: "debug/oom_calloc".
set -u
cd "$(dirname "$0")/../.." || exit 2
root=$(pwd)
bin=$root/build/tests
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
    local lib=${libdir[${name%%/*}]}/libmclone.so
    build "$lib" || return
    run "$name/" "$limit" env LD_PRELOAD="$lib" TEST_EXPECT_LIB="$lib" "$bin/$prog" "$@"
}

if build build/tests/fork; then
    run "glibc/" 60 "$bin/fork" -f 50
    under release 240 fork -f 1000
    under debug 60 fork
    under check 60 fork -f 50
fi

if build build/tests/oom; then
    run "glibc/" 60 "$bin/oom"
    under release 90 oom
    under debug 90 oom
fi
