#!/usr/bin/env bash
# Suite: the allocator and the programs around it under the sanitizers
# (builds in mk/reliability.mk).
#
#   ubsan  libmclone built with UndefinedBehaviorSanitizer (build/ubsan,
#          every report fatal) runs the API tests (test-api preloaded,
#          test-mc-api linked), stress, churn, fork, oom, the mc_ threads
#          test and the fuzzer's corpus and regressions
#   tsan   libmclone built with ThreadSanitizer, linked by its mc_ names
#          into tests/reliability/mt-mc.c (the program's own bookkeeping
#          stays on the sanitizer's malloc): each case in a process of its
#          own, and besides the case's own checks, "<case>/no-data-race"
#          says whether ThreadSanitizer reported anything
#   asan   AddressSanitizer (with UBSan) on the programs that run on the C
#          library's allocator: the test programs run without a preload
#          (test-api, stress, churn, fork), the examples, and the bench
#          workloads.  Their allocator is the sanitizer's here, whose rules
#          differ from glibc's in places (aligned_alloc sizes, a
#          quarantine that holds freed memory): their own verdicts go to
#          the log, and the test is that they run to the end with no
#          sanitizer report.  The examples' exit status must match the
#          plain build's, and the workload's checksum too.
#
# Names: "ubsan/usable_size", "tsan/trade/no-data-race", "asan/stress".
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/reliability/suite-lib.sh
. tests/reliability/suite-lib.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- UndefinedBehaviorSanitizer: the library -------------------------------------------
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ub=$root/build/ubsan/libmclone.so
if build "$ub" build/tests/test-api build/tests/test-mc-api build/tests/stress build/tests/churn \
    build/tests/fork build/tests/oom build/tests/mt-mc build/tests/fuzz-replay; then
    preloaded=(env LD_PRELOAD="$ub" TEST_EXPECT_LIB="$ub")
    linked=(env LD_LIBRARY_PATH="$root/build/ubsan" TEST_EXPECT_LIB="$ub")
    run "ubsan/" 180 "${preloaded[@]}" "$bin/test-api"
    run "mc/ubsan/" 120 "${linked[@]}" "$bin/test-mc-api"
    run "ubsan/" 120 "${preloaded[@]}" "$bin/stress"
    run "ubsan/" 120 "${preloaded[@]}" "$bin/churn"
    run "ubsan/" 120 "${preloaded[@]}" "$bin/fork" -f 100
    run "ubsan/" 120 "${preloaded[@]}" "$bin/oom"
    run "mc/ubsan/" 120 "${linked[@]}" "$bin/mt-mc" -n 5000
    fuzz_inputs=(tests/fuzz/corpus)
    [ -d tests/fuzz/regressions ] && fuzz_inputs+=(tests/fuzz/regressions)
    checked "ubsan/fuzz-replay" 120 "${linked[@]}" "$bin/fuzz-replay" "${fuzz_inputs[@]}"
fi

# ---- ThreadSanitizer: the library's atomics, through the mc_ names --------------------
if build build/tsan/mt-mc; then
    export TSAN_OPTIONS="halt_on_error=0 exitcode=66 history_size=4 suppressions=$PWD/tests/reliability/tsan.supp"
    for c in trim_after_exit trade stats_while_running pipeline exit_live huge_free_vs_trim \
        adopt_aligned; do
        out=$work/tsan-$c
        TEST_PREFIX="tsan/$c/" timeout -k 5 240 build/tsan/mt-mc -n 3000 -l 2 "$c" heap_checks \
            >"$out" 2>&1
        status=$?
        grep -E '^(ok|not ok) ' "$out"
        # 66: the reports below; anything else without a "not ok" is a crash.
        if [ $status -ne 0 ] && [ $status -ne 66 ] && ! grep -q '^not ok ' "$out"; then
            echo "not ok tsan/$c/$(describe_status $status 240)"
        fi
        reports=$(grep -c 'WARNING: ThreadSanitizer' "$out")
        if [ "$reports" -gt 0 ]; then
            echo "# $c: $reports ThreadSanitizer reports; the places:"
            grep -E '^SUMMARY: ThreadSanitizer' "$out" | sort | uniq -c | sort -rn | head -20 |
                sed 's/^/#   /'
            # The first reports' two accesses, for the log.
            awk '/WARNING: ThreadSanitizer/ {n++} n <= 3' "$out" | grep -E '^ *(#[01] |[A-Z])' |
                head -60 | sed 's/^/#   /'
        fi
        result "tsan/$c/no-data-race" "$reports"
    done
fi

# ---- AddressSanitizer: the programs on the C library's allocator ------------------------
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
asan=build/asan
if build "$asan/tests/test-api" "$asan/tests/stress" "$asan/tests/churn" "$asan/tests/fork"; then
    sanitized "asan/test-api" 180 "$asan/tests/test-api"
    sanitized "asan/stress" 120 "$asan/tests/stress" -n 10000 -l 2
    sanitized "asan/churn" 120 "$asan/tests/churn" -T 2000
    # Forking with threads under ASan's own allocator can leave a child
    # stuck (the test then kills it); only reports count here.
    sanitized "asan/fork" 120 "$asan/tests/fork" -f 20 -d 2
fi

# same_status NAME PROGRAM ARGS...: the ASan build (build/asan/examples) and
# the plain one (build/examples) of an example end the same way, and the
# ASan one reports nothing.  Runs in a copy of examples/.
cp -r examples "$work/examples"
same_status() {
    local name=$1 prog=$2
    shift 2
    (cd "$work/examples" && timeout 60 "$root/build/examples/$prog" "$@" >"$work/plain" 2>&1)
    local rc1=$?
    (cd "$work/examples" && timeout 60 "$root/$asan/examples/$prog" "$@" >"$work/asan" 2>&1)
    local rc2=$?
    local bad=0
    if grep -qE "$sanitizer_pattern" "$work/asan"; then
        grep -m5 -E "$sanitizer_pattern" "$work/asan" | sed 's/^/# /'
        bad=1
    fi
    if [ $rc1 -ne $rc2 ]; then
        echo "# exit status $rc1 as built, $rc2 with ASan"
        tail -5 "$work/asan" | sed 's/^/#   /'
        bad=1
    fi
    result "asan/examples/$name" $bad
}

if build examples "$asan/examples/mmap-example" "$asan/examples/sbrk-example" \
    "$asan/examples/workload"; then
    same_status "mmap-example testfile.txt" mmap-example testfile.txt
    cp examples/testfile.txt "$work/examples/copy.txt"
    same_status "mmap-example --shared-copy" mmap-example --shared-copy copy.txt
    same_status "mmap-example without arguments" mmap-example
    same_status "mmap-example on a missing file" mmap-example no-such-file
    same_status "sbrk-example" sbrk-example
    same_status "workload" workload --threads 2 --objects 3000 --rounds 20000
    if [ "$(grep checksum "$work/plain")" = "$(grep checksum "$work/asan")" ] &&
        grep -q checksum "$work/plain"; then
        echo "ok asan/examples/workload checksum"
    else
        echo "# $(grep checksum "$work/plain") as built, $(grep checksum "$work/asan") with ASan"
        echo "not ok asan/examples/workload checksum"
    fi
fi

# The bench workloads (bench/src, when there), tiny, as 90-bench-build runs them.
if compgen -G "bench/src/*.c" >/dev/null; then
    for src in bench/src/*.c; do
        p=$(basename "$src" .c)
        build "$asan/bench/$p" || continue
        case "$p" in
        pareto) args=(-t 2 -s 0.001) ;;
        falseshare) args=(-m thrash -t 2 -s 0.001) ;;
        pairs) args=(32 1000) ;;
        *) args=(-t 2 -s 0.001) ;;
        esac
        sanitized "asan/bench/$p" 120 "$asan/bench/$p" "${args[@]}"
    done
fi
exit 0
