#!/usr/bin/env bash
# The benchmark suite behind `make bench` (bench/README.md).
#
# Runs every workload as a whole process under every allocator, allocators
# alternating (A B C D ..., repeated R times), and records the wall time and
# the peak RSS (GNU time) of each run in bench/results/<mode>/runs.csv; then
# counts fast-path instructions with callgrind (bench/callgrind.sh) and
# writes bench/RESULTS.md and bench/results.svg (bench/report.py).
#
# Settings, from the environment (make bench passes its variables on):
#   BENCH_QUICK=1          short run: fewer repetitions, smaller workloads
#   BENCH_REPS=R           repetitions (full 3, quick 2)
#   BENCH_THREADS=N        threads of the multi-threaded workloads (nproc)
#   BENCH_ALLOCATORS="..." names from the list below, or NAME=/path/lib.so;
#                          default: the peers, then whichever of libmclone,
#                          libmclone-secure and libfirstfit are built
#   BENCH_WORKLOADS="..."  only these workloads (names as in the table)
#   BENCH_TIMEOUT=S        limit per run (full 10 s, quick 6 s); a run that
#                          hits it is reported as a timeout and that
#                          allocator's later repetitions of the workload are
#                          skipped
#   BENCH_SCALE=X          workload size (full 1, quick 0.25)
#   BENCH_CALLGRIND=0      skip the instruction counts
#   BENCH_INSTALL=0        do not install missing Debian packages
#   BENCH_OUT_DIR=D        raw numbers and scratch files in D instead of
#                          bench/results/<mode>, and RESULTS.md and the chart
#   BENCH_REPORT_DIR=D     in D instead of bench/ (the smoke test uses both)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=${BENCH_QUICK:-0}
case "$quick" in 0 | "" | no) quick=0 ;; *) quick=1 ;; esac
if [ $quick -eq 1 ]; then
    mode=quick reps=${BENCH_REPS:-2} scale=${BENCH_SCALE:-0.25} limit=${BENCH_TIMEOUT:-6}
else
    mode=full reps=${BENCH_REPS:-3} scale=${BENCH_SCALE:-1} limit=${BENCH_TIMEOUT:-10}
fi
threads=${BENCH_THREADS:-$(nproc)}
outdir=${BENCH_OUT_DIR:-bench/results/$mode}
tmp=bench/results/tmp
[ -n "${BENCH_OUT_DIR:-}" ] && tmp=$BENCH_OUT_DIR/tmp
export BENCH_TMP=$tmp
libdir=/usr/lib/x86_64-linux-gnu

if [ "${BENCH_INSTALL:-1}" != 0 ]; then
    scripts/ensure-packages.sh libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 \
        redis-server redis-tools sqlite3 python3 time valgrind || exit 1
fi
if ! [ -x build/bench/pairs ] || ! [ -f build/bench/libglibc-shim.so ]; then
    echo "bench: the workload programs are not built (make bench-build)" >&2
    exit 1
fi

# ---- allocators -------------------------------------------------------------
# name, library (empty: the system allocator, no preload), Debian package
declare -A lib_of=(
    [glibc]=""
    [jemalloc]=$libdir/libjemalloc.so.2
    [mimalloc]=$libdir/libmimalloc.so.2
    [tcmalloc]=$libdir/libtcmalloc_minimal.so.4
    [mclone]=$root/build/libmclone.so
    [mclone-secure]=$root/build/secure/libmclone-secure.so
    [firstfit]=$root/build/libfirstfit.so
)
declare -A package_of=(
    [glibc]=libc6 [jemalloc]=libjemalloc2 [mimalloc]=libmimalloc2.0
    [tcmalloc]=libtcmalloc-minimal4
)
notes=()
if [ -n "${BENCH_ALLOCATORS:-}" ]; then
    allocators=()
    for spec in $BENCH_ALLOCATORS; do
        if [[ "$spec" == *=* ]]; then
            lib_of[${spec%%=*}]=${spec#*=}
            spec=${spec%%=*}
        elif [ -z "${lib_of[$spec]+set}" ]; then
            echo "bench: unknown allocator '$spec' (known: ${!lib_of[*]})" >&2
            exit 2
        fi
        allocators+=("$spec")
    done
else
    allocators=(glibc jemalloc mimalloc tcmalloc)
    for name in mclone mclone-secure firstfit; do
        if [ -f "${lib_of[$name]}" ]; then
            allocators+=("$name")
        else
            notes+=("$name: ${lib_of[$name]#"$root"/} not built, left out")
        fi
    done
fi

# The programs and our libraries are copied aside first, so that a rebuild
# or a `make clean` in the middle of the run cannot change what is measured;
# the commit they were built from is taken now, too.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
tree=$commit
[ -z "$(git status --porcelain -- src include examples 2>/dev/null)" ] || tree="$commit+changes"
mkdir -p "$outdir" "$tmp"
rm -rf "$tmp/bin" "$tmp/lib"
mkdir -p "$tmp/bin" "$tmp/lib"
cp build/bench/* "$tmp/bin/" || exit 1
bin=$root/$tmp/bin
[[ "$tmp" = /* ]] && bin=$tmp/bin
export BENCH_BIN=$bin
declare -A shown_lib=()

# A library that cannot run a tiny workload is left out, with a note.
usable=()
for name in "${allocators[@]}"; do
    lib=${lib_of[$name]}
    shown_lib[$name]=$lib
    if [ -n "$lib" ] && ! [ -f "$lib" ]; then
        notes+=("$name: $lib not found, left out")
        continue
    fi
    if [ -n "$lib" ] && [[ "$lib" != /usr/* ]]; then
        mkdir -p "$tmp/lib/$name"
        cp "$lib" "$tmp/lib/$name/" || exit 1
        lib=$(cd "$tmp/lib/$name" && pwd)/$(basename "$lib")
        lib_of[$name]=$lib
    fi
    if ! timeout 20 env ${lib:+LD_PRELOAD="$lib"} "$bin/fastpath" -s 0.001 >/dev/null 2>&1; then
        notes+=("$name: fails a smoke run of the fastpath workload, left out")
        continue
    fi
    usable+=("$name")
done
allocators=("${usable[@]}")
for n in "${notes[@]}"; do echo "bench: $n" >&2; done
[ ${#allocators[@]} -gt 0 ] || { echo "bench: no allocator to measure" >&2; exit 1; }

# ---- workloads --------------------------------------------------------------
# name | kind | command (words; @S@ is the scale, @T@ the thread count)
# kind: run (a program, GNU time around it), check (the same, and its output
# must match the first run's), script (measures itself, see redis.sh)
sqlite_rows=$(awk -v s="$scale" 'BEGIN { n = int(200000 * s); print (n < 1000 ? 1000 : n) }')
redis_requests=$(awk -v s="$scale" 'BEGIN { n = int(40000 * s); print (n < 1000 ? 1000 : n) }')
workloads=(
    "fastpath|run|@B@/fastpath -s @S@"
    "pareto-1t|run|@B@/pareto -t 1 -s @S@"
    "pareto-mt|run|@B@/pareto -t @T@ -s @S@"
    "server|run|@B@/server -t @T@ -s @S@"
    "prodcons|run|@B@/prodcons -t @T@ -s @S@"
    "powtwo|run|@B@/powtwo -t @T@ -s @S@"
    "cache-thrash|run|@B@/falseshare -m thrash -t @T@ -s @S@"
    "cache-scratch|run|@B@/falseshare -m scratch -t @T@ -s @S@"
    "frag|run|@B@/frag -s @S@"
    "large|run|@B@/large -s @S@"
    "churn|run|@B@/churn -t @T@ -s @S@"
    "redis|script|bench/programs/redis.sh $redis_requests"
    "sqlite|check|sqlite3 -batch :memory: .parameter\ set\ :rows\ $sqlite_rows .read\ bench/programs/sqlite.sql"
    "python|check|env PYTHONMALLOC=malloc /usr/bin/python3 bench/programs/pywork.py @S@"
)
if [ -n "${BENCH_WORKLOADS:-}" ]; then
    chosen=()
    for want in $BENCH_WORKLOADS; do
        found=0
        for w in "${workloads[@]}"; do
            if [ "${w%%|*}" = "$want" ]; then chosen+=("$w"); found=1; fi
        done
        [ $found -eq 1 ] || { echo "bench: unknown workload '$want'" >&2; exit 2; }
    done
    workloads=("${chosen[@]}")
fi

# ---- the runs ---------------------------------------------------------------
rm -f "$outdir"/runs.csv "$outdir"/callgrind.csv "$outdir"/meta.txt
csv=$outdir/runs.csv
echo "workload,allocator,rep,status,wall_s,maxrss_kb,final_rss_kb" >"$csv"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
began=$(date +%s)

echo "bench: $mode run, $reps repetitions, $threads threads, scale $scale, ${limit}s limit per run"
echo "bench: allocators: ${allocators[*]}"

# rep_copy LIBRARY NAME REP: the path of a copy of LIBRARY made for
# repetition REP.  Each repetition runs every allocator from a file of its
# own: on the bench machine, two byte-identical copies of one library ran
# fastpath in 0.32 and 0.69 s, every time, because where a file's pages
# land in physical memory sticks to the file; a fresh copy per repetition
# turns that into variation between repetitions, which the median absorbs.
rep_copy() {
    local src=$1 dst=$root/$tmp/lib/$2/rep$3/${1##*/}
    [[ "$tmp" = /* ]] && dst=$tmp/lib/$2/rep$3/${1##*/}
    if ! [ -f "$dst" ]; then
        mkdir -p "${dst%/*}" && cp "$src" "$dst" || dst=$src
    fi
    echo "$dst"
}

# run_one WORKLOAD-SPEC ALLOCATOR REP: appends one line to the CSV and
# returns 1 on a timeout
run_one() {
    local name kind cmdline
    IFS='|' read -r name kind cmdline <<<"$1"
    local alloc=$2 rep=$3 lib=${lib_of[$2]}
    [ -n "$lib" ] && lib=$(rep_copy "$lib" "$alloc" "$rep")
    cmdline=${cmdline//@S@/$scale}
    cmdline=${cmdline//@T@/$threads}
    cmdline=${cmdline//@B@/$bin}
    local -a cmd
    eval "cmd=($cmdline)"
    local out=$tmp/out err=$tmp/err timef=$tmp/time status wall rss final=""
    rm -f "$timef"
    if [ "$kind" = script ]; then
        # redis: the glibc column goes through the shim (redis links jemalloc)
        local pre=$lib
        [ -z "$pre" ] && pre=$(rep_copy "$bin/libglibc-shim.so" glibc "$rep")
        BENCH_OUT=$timef BENCH_PRELOAD=$pre BENCH_TIMEOUT=$limit \
            timeout -k 5 $((limit + 30)) "${cmd[@]}" >"$out" 2>"$err"
        status=$?
        wall="" rss=""
        [ -f "$timef" ] && read -r wall rss <"$timef"
    else
        local t0 t1
        t0=$(date +%s%N)
        # (GNU time inside timeout, not around it: around it, %M is the
        # largest of both processes, and timeout itself, about 1.6 MiB, is
        # larger than the smallest workloads.)
        timeout -k 2 "$limit" /usr/bin/time -f 'maxrss_kb=%M' -o "$timef" \
            env ${lib:+LD_PRELOAD="$lib"} "${cmd[@]}" >"$out" 2>"$err"
        status=$?
        t1=$(date +%s%N)
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
        rss=$(sed -n 's/^maxrss_kb=//p' "$timef")
        final=$(sed -n 's/^final_rss_kb=//p' "$out")
    fi
    local st=ok
    if [ $status -eq 124 ] || [ $status -eq 137 ]; then
        st=timeout
    elif [ $status -ne 0 ]; then
        st=failed
    elif [ "$kind" = check ]; then
        local sum
        sum=$(md5sum <"$out" | cut -d' ' -f1)
        if [ -z "${expect[$name]:-}" ]; then
            expect[$name]=$sum
        elif [ "${expect[$name]}" != "$sum" ]; then
            st=wrong
        fi
    fi
    [ "$st" = ok ] || { wall=""; final=""; }
    [ "$st" = timeout ] && rss=""
    echo "$name,$alloc,$rep,$st,$wall,$rss,$final" >>"$csv"
    if [ "$st" = ok ]; then
        printf '  %-14s %-14s rep %d/%d %8.2f s %9.1f MiB\n' "$name" "$alloc" "$rep" "$reps" \
            "$wall" "$(awk -v k="${rss:-0}" 'BEGIN { print k / 1024 }')"
    else
        printf '  %-14s %-14s rep %d/%d %s (status %d)\n' "$name" "$alloc" "$rep" "$reps" \
            "$st" "$status"
        sed 's/^/      /' "$err" | tail -n 5
    fi
    [ "$st" != timeout ]
}

declare -A expect=() given_up=()
for w in "${workloads[@]}"; do
    for ((rep = 1; rep <= reps; rep++)); do
        for alloc in "${allocators[@]}"; do
            [ -n "${given_up[$w.$alloc]:-}" ] && continue
            run_one "$w" "$alloc" "$rep" || given_up[$w.$alloc]=1
        done
    done
done

# ---- instruction counts -----------------------------------------------------
if [ "${BENCH_CALLGRIND:-1}" != 0 ]; then
    echo "bench: counting instructions per malloc+free pair (callgrind)"
    specs=()
    for alloc in "${allocators[@]}"; do specs+=("$alloc=${lib_of[$alloc]}"); done
    BENCH_CG_TIMEOUT=$((limit * 6)) bench/callgrind.sh "$outdir/callgrind.csv" "${specs[@]}"
fi

# ---- what was measured, and where -------------------------------------------
version_of() {
    local name=$1 pkg=${package_of[$1]:-}
    if [ -n "$pkg" ]; then
        echo "$pkg $(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null)"
    else
        echo "this repository, commit $tree"
    fi
}
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "mode=$mode"
    echo "reps=$reps"
    echo "threads=$threads"
    echo "scale=$scale"
    echo "timeout_s=$limit"
    echo "elapsed_s=$(($(date +%s) - began))"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "cores=$(nproc)"
    echo "memory=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "kernel=$(uname -r)"
    echo "compiler=$(${CC:-gcc} --version | head -n 1)"
    echo "commit=$commit"
    echo "load_start=$load_start"
    echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "allocators=${allocators[*]}"
    echo "workloads=$(for w in "${workloads[@]}"; do printf '%s ' "${w%%|*}"; done)"
    for alloc in "${allocators[@]}"; do
        echo "version.$alloc=$(version_of "$alloc")"
        echo "library.$alloc=${shown_lib[$alloc]#"$root"/}"
    done
    echo "redis=$(redis-server --version | cut -d' ' -f3 | sed 's/^v=//')"
    echo "sqlite=$(sqlite3 --version | cut -d' ' -f1)"
    echo "python=$(/usr/bin/python3 --version | cut -d' ' -f2)"
    for n in "${notes[@]}"; do echo "note=$n"; done
} >"$outdir/meta.txt"

report=${BENCH_REPORT_DIR:-bench}
python3 bench/report.py "$outdir" "$report" || exit 1
echo "bench: $(($(date +%s) - began)) s; tables in $report/RESULTS.md, chart in" \
    "$report/results.svg, raw numbers in $outdir/"
