#!/usr/bin/env bash
# compare.sh: run examples/workload.c under several allocators and print one
# table row per allocator, for docs/learn.md.
#
#   make examples && make          (build/libfirstfit.so, build/libmclone.so)
#   examples/compare.sh                       the default workload, 1 thread
#   examples/compare.sh --threads 2           any workload options
#   RUNS=5 examples/compare.sh                runs per allocator (default 3)
#   MCLONE=/tmp/libmclone.so examples/compare.sh   another copy of a library
#                                             (FIRSTFIT= likewise)
#
# Each allocator runs RUNS times under /usr/bin/time -v; the row shows the
# run with the median wall time.  Columns: wall, user and system time;
# maximum RSS; RSS after the shrink phase (nine objects in ten freed) and
# after malloc_trim(0) (what is left is fragmentation); minor page faults;
# and whether the workload's checksum matched the run under glibc.
set -u
cd "$(dirname "$0")/.." || exit 2
runs=${RUNS:-3}
workload=build/examples/workload
[ -x "$workload" ] || { echo "compare.sh: $workload missing: run make examples" >&2; exit 2; }
[ -x /usr/bin/time ] || scripts/ensure-packages.sh time

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "workload ${*:-(default options)}: median of $runs runs;" \
    "$(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
printf '%-9s %7s %7s %7s %11s %11s %11s %10s %9s\n' allocator "wall s" "user s" "sys s" \
    "max RSS" "shrunk" "trimmed" "minor flt" checksum
ref=""
for entry in glibc: "firstfit:${FIRSTFIT:-build/libfirstfit.so}" \
    "mclone:${MCLONE:-build/libmclone.so}"; do
    name=${entry%%:*}
    lib=${entry#*:}
    if [ -n "$lib" ] && [ ! -f "$lib" ]; then
        printf '%-9s (%s not built)\n' "$name" "$lib"
        continue
    fi
    preload=${lib:+$(realpath "$lib")}
    rows=()
    for _ in $(seq "$runs"); do
        if ! /usr/bin/time -v -o "$tmp/time" env ${preload:+LD_PRELOAD=$preload} \
            timeout 600 "$workload" "$@" >"$tmp/out" 2>"$tmp/err"; then
            printf '%-9s failed: %s\n' "$name" "$(tail -1 "$tmp/err")"
            continue 2
        fi
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0;
                 for (k = 1; k <= n; k++) s = s * 60 + t[k]; print s}' "$tmp/time")
        user=$(awk -F': ' '/User time/ {print $2}' "$tmp/time")
        sys=$(awk -F': ' '/System time/ {print $2}' "$tmp/time")
        rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$tmp/time")
        minor=$(awk -F': ' '/Minor \(reclaiming a frame\)/ {print $2}' "$tmp/time")
        shrunk=$(awk '$1 == "shrink" {print $8}' "$tmp/out")
        trimmed=$(awk '$1 == "trim" {print $8}' "$tmp/out")
        sum=$(awk '$1 == "checksum" {print $2}' "$tmp/out")
        rows+=("$wall $user $sys $rss $shrunk $trimmed $minor $sum")
    done
    # The median run by wall time.
    row=$(printf '%s\n' "${rows[@]}" | sort -n -k1,1 | sed -n "$(((runs + 1) / 2))p")
    read -r wall user sys rss shrunk trimmed minor sum <<<"$row"
    [ -z "$ref" ] && ref=$sum
    match=$([ "$sum" = "$ref" ] && echo same || echo DIFFERENT)
    printf '%-9s %7.2f %7.2f %7.2f %7.1f MiB %7.1f MiB %7.1f MiB %10s %9s\n' "$name" "$wall" \
        "$user" "$sys" "$rss" "$shrunk" "$trimmed" "$minor" "$match"
done
