#!/usr/bin/env bash
# Suite: real programs under LD_PRELOAD=build/libmclone.so (tests/programs/).
#
# Each program runs once as it is and once with libmclone preloaded; the
# output and exit status must be the same.  The preloaded run also logs the
# dynamic linker's symbol bindings (LD_DEBUG=bindings): every process it
# started (the programs start others: gcc runs cc1, as, collect2, ld) must
# have bound malloc to libmclone and none of the allocation functions to the
# C library, so a preload that did not take cannot pass.
#
#   python3  PYTHONMALLOC=malloc: dicts, lists, JSON, sorting, threads
#   perl     hashes, regular expressions, sorting, growing strings
#   sqlite3  100k rows, indexes, GROUP BY / ORDER BY, joins, updates; in
#            memory and in a file
#   gcc      -O2 builds of a small program and of a generated 400-function
#            file: the objects and executables must be identical, and the
#            program's output the same
#
# The release build runs everything; the debug build, whose heap checks
# make big heaps slow, runs python3 with a tenth of the work and sqlite3 in
# memory.  Names: "release/python3", "release/python3-uses-libmclone".
set -u
cd "$(dirname "$0")/../.." || exit 2
root=$(pwd)
progs=$root/tests/programs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A libdir=([release]=$root/build [debug]=$root/build/debug)

if ! scripts/ensure-packages.sh python3 perl sqlite3 gcc; then
    echo "# could not install all of python3 perl sqlite3 gcc"
fi

# The allocation functions no preloaded process may take from the C library.
alloc_names='malloc|free|calloc|realloc|reallocarray|memalign|posix_memalign|aligned_alloc|valloc|pvalloc|malloc_usable_size'

# uses_lib NAME LIB LOGPREFIX: every process logged under LOGPREFIX.* bound
# malloc to LIB and no allocation function to libc.
uses_lib() {
    local name=$1 lib=$2 logs=$3 f bad=0 n=0
    for f in "$logs".*; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        if ! grep -qF "to $lib [0]: normal symbol \`malloc'" "$f"; then
            echo "# $name: process $(basename "$f") did not bind malloc to $lib"
            grep -m3 "symbol \`malloc'" "$f" | sed 's/^/#   /'
            bad=1
        fi
        if grep -qE "to [^ ]*/libc\.so\.6 \[[0-9]+\]: normal symbol \`($alloc_names)'" "$f"; then
            echo "# $name: process $(basename "$f") took allocation functions from libc:"
            grep -E "to [^ ]*/libc\.so\.6 \[[0-9]+\]: normal symbol \`($alloc_names)'" "$f" |
                head -5 | sed 's/^/#   /'
            bad=1
        fi
    done
    [ $n -gt 0 ] || { echo "# $name: no binding log"; bad=1; }
    return $bad
}

# compare FLAVOUR NAME SECONDS COMMAND...: the command's stdout and status,
# as it is and under the flavour's libmclone; prints the two test lines.
compare() {
    local flavour=$1 name=$2 limit=$3
    shift 3
    local lib=${libdir[$flavour]}/libmclone.so t=$work/$flavour-$name
    timeout -k 5 "$limit" "$@" >"$t.plain" 2>"$t.plain.err"
    local rc1=$?
    local start=$SECONDS
    LD_PRELOAD=$lib LD_DEBUG=bindings LD_DEBUG_OUTPUT=$t.ld timeout -k 5 "$limit" "$@" \
        >"$t.mclone" 2>"$t.mclone.err"
    local rc2=$?
    echo "# $flavour/$name: status $rc1 as it is, $rc2 under libmclone ($((SECONDS - start)) s)"
    if [ $rc1 -ne 0 ]; then
        echo "# $name fails without the preload too: the test itself is broken"
        head -5 "$t.plain.err" | sed 's/^/#   /'
    fi
    if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && cmp -s "$t.plain" "$t.mclone"; then
        echo "ok $flavour/$name"
    else
        diff "$t.plain" "$t.mclone" | head -10 | sed 's/^/#   /'
        head -10 "$t.mclone.err" | sed 's/^/#   /'
        echo "not ok $flavour/$name"
    fi
    if uses_lib "$name" "$lib" "$t.ld"; then
        echo "ok $flavour/$name-uses-libmclone"
    else
        echo "not ok $flavour/$name-uses-libmclone"
    fi
    rm -f "$t".ld.*
}

# A C file big enough to keep the optimiser busy for a few seconds.
gen=$work/generated.c
{
    echo '#include <stdio.h>'
    for i in $(seq 1 400); do
        echo "static int f$i(int x) { int s = $i; for (int i = 0; i < x; i++) {"
        echo "  switch ((i * $i) % 5) { case 0: s += i; break; case 1: s ^= i * $i; break;"
        echo "  case 2: s -= i >> 1; break; case 3: s = s * 3 + $i; break; default: s += x; }"
        echo "} return s; }"
    done
    echo 'int main(void) { long t = 0;'
    for i in $(seq 1 400); do echo "  t += f$i($((i % 37)));"; done
    printf '%s\n' '  printf("%ld\n", t); return 0; }'
} >"$gen"

# gcc_build FLAVOUR NAME SOURCE: compile and link with and without the
# preload; the executables must be identical and print the same.
gcc_build() {
    local flavour=$1 name=$2 src=$3
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    compare "$flavour" "$name" 120 bash -c '
        gcc -O2 -g "$2" -o "$1" && sha256sum <"$1" && "$1"
        status=$?
        rm -f "$1"
        exit $status' gcc-build "$work/exe" "$src"
}

export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PERL_HASH_SEED=0

for flavour in release debug; do
    lib=${libdir[$flavour]}/libmclone.so
    if ! make -s -C "$root" "$lib"; then
        echo "not ok build $lib"
        continue
    fi
    scale=1
    [ $flavour = debug ] && scale=0.1
    compare $flavour python3 120 /usr/bin/python3 "$progs/workload.py" $scale
    compare $flavour sqlite3-memory 120 sqlite3 -batch :memory: ".read $progs/workload.sql"
    [ $flavour = release ] || continue
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    compare $flavour sqlite3-file 120 bash -c \
        'sqlite3 -batch "$1" ".read $2"; s=$?; rm -f "$1"*; exit $s' \
        sqlite-file "$work/db" "$progs/workload.sql"
    compare $flavour perl 120 perl "$progs/workload.pl"
    gcc_build $flavour gcc-small "$progs/compile-me.c"
    gcc_build $flavour gcc-generated "$gen"
done
