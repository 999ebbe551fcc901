# shellcheck shell=bash
# What the reliability suites (tests/suites/5x-8x) share; sourced, after
# they cd to the top of the tree.  Every program is bounded by timeout, and
# a program that dies without a "not ok" line of its own becomes one.

root=$(pwd)
# shellcheck disable=SC2034 # for the suites that source this
bin=$root/build/tests
# shellcheck disable=SC2034
declare -A libdir=([release]=$root/build [debug]=$root/build/debug [check]=$root/build/check
    [fault]=$root/build/fault [ubsan]=$root/build/ubsan)

# A sanitizer's report in a program's output, whatever the exit status.
sanitizer_pattern='ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error:|SUMMARY: (Address|Thread|UndefinedBehavior|Leak)Sanitizer'

# result NAME STATUS: one protocol line.
result() {
    if [ "$2" -eq 0 ]; then echo "ok $1"; else echo "not ok $1"; fi
}

# build TARGET...: make the targets; a failure is a failed test.
build() {
    local t ok=0
    for t in "$@"; do
        if ! make -s -C "$root" "$t" >/dev/null; then
            echo "not ok build $t"
            ok=1
        fi
    done
    return $ok
}

# describe_status STATUS LIMIT: why a program ended badly, in words.
describe_status() {
    case $1 in
    124 | 137) echo "timeout after ${2}s" ;;
    *) if [ "$1" -gt 128 ]; then echo "killed by signal $(($1 - 128))"; else echo "exit status $1"; fi ;;
    esac
}

# run PREFIX SECONDS COMMAND...: run a test program with TEST_PREFIX=PREFIX
# and pass its lines on; a crash, a timeout or a sanitizer report without a
# "not ok" line of its own becomes one.  The output is left in $last_out.
last_out=""
run() {
    local prefix=$1 limit=$2
    shift 2
    last_out=$(mktemp)
    TEST_PREFIX=$prefix timeout -k 5 "$limit" "$@" >"$last_out" 2>&1
    local status=$?
    cat "$last_out"
    if grep -qE "$sanitizer_pattern" "$last_out"; then
        echo "not ok ${prefix}sanitizer report: $(grep -m1 -E "$sanitizer_pattern" "$last_out")"
    elif [ $status -ne 0 ] && ! grep -q '^not ok ' "$last_out"; then
        echo "not ok ${prefix}$(describe_status $status "$limit"): ${*: -3}"
    fi
}

# sanitized NAME SECONDS COMMAND...: a program whose own verdicts are not the
# point (its allocator is the sanitizer's): ok when it ran to its end with
# no sanitizer report.  Its output goes to the log as comments.
sanitized() {
    local name=$1 limit=$2
    shift 2
    local out status
    out=$(mktemp)
    timeout -k 5 "$limit" "$@" >"$out" 2>&1
    status=$?
    sed 's/^/#   /' "$out" | head -40
    if grep -qE "$sanitizer_pattern" "$out"; then
        grep -m5 -E "$sanitizer_pattern" "$out" | sed 's/^/# /'
        echo "not ok $name"
    elif [ $status -ge 124 ]; then
        echo "# $(describe_status $status "$limit")"
        echo "not ok $name"
    else
        echo "ok $name"
    fi
    rm -f "$out"
}

# checked NAME SECONDS COMMAND...: one test line for a program without test
# lines of its own: ok when it exits with status 0 and no sanitizer report.
# The end of its output goes to the log.
checked() {
    local name=$1 limit=$2
    shift 2
    local out status
    out=$(mktemp)
    timeout -k 5 "$limit" "$@" >"$out" 2>&1
    status=$?
    if [ $status -eq 0 ] && ! grep -qE "$sanitizer_pattern" "$out"; then
        tail -3 "$out" | sed 's/^/# /'
        echo "ok $name"
    else
        grep -m5 -E "$sanitizer_pattern|^fuzz-alloc: |^mclone: " "$out" | sed 's/^/# /'
        tail -5 "$out" | sed 's/^/#   /'
        echo "# $(describe_status $status "$limit")"
        echo "not ok $name"
    fi
    rm -f "$out"
}
