#!/usr/bin/env bash
# Fast-path cost: instructions per malloc+free pair, counted by callgrind.
#
#   callgrind.sh OUT.csv NAME=LIBRARY...      (an empty LIBRARY: no preload)
#
# For each allocator and each size in $BENCH_CG_SIZES, build/bench/pairs runs
# twice under callgrind, with $BENCH_CG_N1 and $BENCH_CG_N2 pairs after the
# same warm-up; (Ir(N2) - Ir(N1)) / (N2 - N1) is the count for one pair with
# the loop (about 9 instructions) included and start-up cancelled.  The
# library goes to the program in LD_PRELOAD, which valgrind hands to the
# guest.  The counts do not depend on timing, so the runs go in parallel,
# $BENCH_JOBS at a time; each is bounded by $BENCH_CG_TIMEOUT seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: callgrind.sh OUT.csv NAME=LIBRARY...}
shift
sizes=${BENCH_CG_SIZES:-16 64 256 1024 16384}
n1=${BENCH_CG_N1:-100000}
n2=${BENCH_CG_N2:-200000}
jobs=${BENCH_JOBS:-$(nproc)}
limit=${BENCH_CG_TIMEOUT:-120}
tmp=${BENCH_TMP:-bench/results/tmp}/callgrind
rm -rf "$tmp"
mkdir -p "$tmp"

# one count: NAME LIBRARY SIZE N -> $tmp/NAME.SIZE.N holding the Ir or a status
count() {
    local name=$1 lib=$2 size=$3 n=$4
    local res="$tmp/$name.$size.$n" cg="$tmp/$name.$size.$n.cg"
    timeout -k 5 "$limit" env ${lib:+LD_PRELOAD="$lib"} valgrind --tool=callgrind \
        --trace-children=no --callgrind-out-file="$cg" "${BENCH_BIN:-build/bench}/pairs" "$size" "$n" \
        >"$res.log" 2>&1
    local status=$?
    if [ $status -eq 124 ] || [ $status -eq 137 ]; then
        echo timeout >"$res"
    elif [ $status -ne 0 ]; then
        echo failed >"$res"
    else
        awk '/^(summary|totals):/ { print $2; exit }' "$cg" >"$res"
    fi
    rm -f "$cg"
}
export -f count
export tmp limit

for spec in "$@"; do
    for size in $sizes; do
        for n in "$n1" "$n2"; do printf '%s\n' "${spec%%=*}" "${spec#*=}" "$size" "$n"; done
    done
done | xargs -d '\n' -n 4 -P "$jobs" bash -c 'count "$@"' count

echo "allocator,size,n1,ir1,n2,ir2,ir_per_pair,status" >"$out"
for spec in "$@"; do
    name=${spec%%=*}
    for size in $sizes; do
        a=$(cat "$tmp/$name.$size.$n1" 2>/dev/null)
        b=$(cat "$tmp/$name.$size.$n2" 2>/dev/null)
        if [[ "$a" =~ ^[0-9]+$ ]] && [[ "$b" =~ ^[0-9]+$ ]]; then
            per=$(awk -v a="$a" -v b="$b" -v n1="$n1" -v n2="$n2" \
                'BEGIN { printf "%.1f", (b - a) / (n2 - n1) }')
            echo "$name,$size,$n1,$a,$n2,$b,$per,ok" >>"$out"
        else
            st=failed
            [ "$a" = timeout ] || [ "$b" = timeout ] && st=timeout
            echo "$name,$size,$n1,,$n2,,,$st" >>"$out"
        fi
    done
done
