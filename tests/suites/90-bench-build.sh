#!/usr/bin/env bash
# The benchmark suite must not rot: every workload program is built (make
# test builds them through bench-build) and runs once, with tiny sizes, under
# build/libmclone.so; the real-program workloads run likewise when their
# programs are installed; and the whole pipeline (bench/run.sh, its CSV,
# the report and the chart) runs once on a few workloads into a scratch
# folder.  No timing is checked here: that is `make bench`.
set -u
cd "${MCLONE_ROOT:-$(dirname "$0")/../..}" || exit 2
root=$(pwd)
lib=${BENCH_SMOKE_LIB:-$root/build/libmclone.so} # another library can stand in, to test the suite
scratch=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# run NAME COMMAND...: one test case, bounded, under libmclone
run() {
    local name=$1
    shift
    echo "# $*"
    if timeout 60 env LD_PRELOAD="$lib" "$@" >"$scratch/out" 2>&1; then
        echo "ok bench-smoke $name"
    else
        echo "# exit status $?"
        sed 's/^/# /' "$scratch/out" | tail -n 20
        echo "not ok bench-smoke $name"
    fi
}

if [ ! -f "$lib" ]; then
    echo "# $lib is missing"
    echo "not ok bench-smoke libmclone"
    exit 1
fi

# every program of bench/src, built and run once
tiny="-s 0.001"
for src in bench/src/*.c; do
    p=$(basename "$src" .c)
    if [ ! -x "build/bench/$p" ]; then
        echo "# build/bench/$p was not built (make bench-build)"
        echo "not ok bench-smoke $p"
        continue
    fi
    case "$p" in
    pareto)
        run pareto-1t build/bench/pareto -t 1 $tiny
        run pareto-mt build/bench/pareto -t 2 $tiny
        ;;
    falseshare)
        run cache-thrash build/bench/falseshare -m thrash -t 2 $tiny
        run cache-scratch build/bench/falseshare -m scratch -t 2 $tiny
        ;;
    pairs) run pairs build/bench/pairs 32 1000 ;;
    *) run "$p" "build/bench/$p" -t 2 $tiny ;;
    esac
done

if command -v sqlite3 >/dev/null; then
    run sqlite sqlite3 -batch :memory: ".parameter set :rows 1000" ".read bench/programs/sqlite.sql"
else
    echo "ok bench-smoke sqlite # skip: sqlite3 is not installed"
fi
run python env PYTHONMALLOC=malloc /usr/bin/python3 bench/programs/pywork.py 0.001

if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    echo "# bench/programs/redis.sh 1000"
    if BENCH_OUT=$scratch/redis BENCH_PRELOAD=$lib BENCH_TIMEOUT=60 \
        timeout 90 bench/programs/redis.sh 1000 >"$scratch/out" 2>&1 && [ -s "$scratch/redis" ]; then
        echo "ok bench-smoke redis"
    else
        sed 's/^/# /' "$scratch/out" | tail -n 20
        echo "not ok bench-smoke redis"
    fi
else
    echo "ok bench-smoke redis # skip: redis-server or redis-benchmark is not installed"
fi

# The pipeline: run.sh on three workloads, glibc against libmclone, then the
# report.  Needs GNU time; installs nothing.
if [ -x /usr/bin/time ]; then
    echo "# bench/run.sh, tiny"
    if BENCH_INSTALL=0 BENCH_OUT_DIR="$scratch/results" BENCH_REPORT_DIR="$scratch" \
        BENCH_ALLOCATORS="glibc mclone=$lib" BENCH_WORKLOADS="fastpath pareto-mt frag" \
        BENCH_REPS=1 BENCH_SCALE=0.001 BENCH_CALLGRIND=0 \
        timeout 120 bench/run.sh >"$scratch/out" 2>&1 &&
        [ "$(grep -c ',ok,' "$scratch/results/runs.csv")" -eq 6 ] &&
        grep -q 'geomean of ratios' "$scratch/RESULTS.md" &&
        grep -q '</svg>' "$scratch/results.svg"; then
        echo "ok bench-smoke pipeline"
    else
        sed 's/^/# /' "$scratch/out" | tail -n 30
        echo "not ok bench-smoke pipeline"
    fi
else
    echo "ok bench-smoke pipeline # skip: GNU time (/usr/bin/time) is not installed"
fi
