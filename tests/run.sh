#!/usr/bin/env bash
# The test runner behind `make test`.
#
# Every file tests/suites/NN-name.sh is one suite.  A suite prints one line
# per test case, "ok <name>" or "not ok <name>", and may print any other
# lines (they are kept in the suite's log).  The runner counts those lines,
# adds one failure for a suite that exits non-zero without reporting a
# failure itself (a crash, a timeout), and ends with the single line
# "N passed, M failed".  Exit status: 0 only when nothing failed.
#
# Usage: tests/run.sh [suite-name-substring ...]
set -u
cd "$(dirname "$0")/.." || exit 2
root=$(pwd)
logs="$root/build/test-logs"
mkdir -p "$logs"
export MCLONE_ROOT="$root"

total_pass=0
total_fail=0
for suite in tests/suites/*.sh; do
    name=$(basename "$suite" .sh)
    if [ $# -gt 0 ]; then
        want=0
        for pat in "$@"; do case "$name" in *"$pat"*) want=1 ;; esac; done
        [ $want -eq 1 ] || continue
    fi
    log="$logs/$name.log"
    start=$(date +%s)
    bash "$suite" >"$log" 2>&1
    status=$?
    secs=$(($(date +%s) - start))
    pass=$(grep -c '^ok ' "$log")
    fail=$(grep -c '^not ok ' "$log")
    if [ $status -ne 0 ] && [ "$fail" -eq 0 ]; then
        echo "not ok $name: suite exited with status $status" >>"$log"
        fail=1
    fi
    printf '%-28s %4d passed, %3d failed  (%ds)\n' "$name" "$pass" "$fail" "$secs"
    if [ "$fail" -gt 0 ]; then
        grep -A8 '^not ok ' "$log" | head -60 | sed 's/^/    /'
        echo "    (full log: build/test-logs/$name.log)"
    fi
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
