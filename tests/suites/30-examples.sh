#!/usr/bin/env bash
# Suite 30-examples: the teaching programs of examples/ (docs/learn.md).
#
#   - mmap-example and sbrk-example build with the commands their comments
#     document (in a temporary copy of examples/), also warning-free with
#     -Wall -Wextra -Werror under gcc and clang, and print what they promise;
#     mmap-example's bad-input cases give the documented exit codes and
#     messages, and --shared-copy leaves the user's file unchanged;
#   - the first-fit allocator (build/libfirstfit.so, from `make examples`)
#     passes the API checks (tests/examples/firstfit-api.c and, once it
#     exists, the project's tests/api/test-api.c) and runs real programs
#     with the same output as without it.
#
# Needs `make examples build/tests/examples/firstfit-api build/tests/test-api`
# (make test builds them: mk/examples.mk, mk/tests.mk).
set -u
cd "${MCLONE_ROOT:-$(dirname "$0")/../..}" || exit 2
root=$(pwd)

# gcc and clang for the build checks, /usr/bin/python3 for a real program.
scripts/ensure-packages.sh gcc clang python3 xz-utils || echo "# could not install every package"

work=$(mktemp -d "${TMPDIR:-/tmp}/mclone-examples.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # the "unreadable file" case runs a program as nobody in here

result() { # result NAME STATUS: one protocol line
    if [ "$2" -eq 0 ]; then echo "ok $1"; else echo "not ok $1"; fi
}
check() { # check NAME COMMAND...: ok when COMMAND succeeds
    local name=$1
    shift
    "$@"
    result "$name" $?
}
has() { # has FILE TEXT: FILE contains the fixed string TEXT (else show FILE)
    grep -qF -- "$2" "$1" && return 0
    echo "# missing in $1: $2"
    sed 's/^/#   /' "$1" | head -40
    return 1
}

# ---- mmap-example -----------------------------------------------------------
ex="$work/examples"
mkdir -p "$ex"
cp -r examples/. "$ex/"
rm -f "$ex/mmap-example" "$ex/sbrk-example"

# The documented command, exactly, in examples/ (here: the copy).
check "examples: mmap-example builds with 'gcc mmap-example.c -o mmap-example'" \
    bash -c "cd '$ex' && timeout 120 gcc mmap-example.c -o mmap-example"
for cc in gcc clang; do
    check "examples: mmap-example builds with $cc -Wall -Wextra -Werror" \
        timeout 120 $cc -Wall -Wextra -Werror "$ex/mmap-example.c" -o "$work/mmap-$cc"
done

mm() { # mm ARGS...: run mmap-example in the copy; out/err/rc in $work
    (cd "$ex" && timeout 20 ./mmap-example "$@" >"$work/out" 2>"$work/err")
    rc=$?
    echo "# mmap-example $*: exit $rc"
}

page=$(getconf PAGESIZE)

# check_mapping FILE: the normal output for FILE (a path relative to $ex).
check_mapping() {
    local f=$1 size tail
    size=$(stat -c %s "$ex/$f")
    tail=$(((page - size % page) % page))
    [ "$rc" -eq 0 ] || { echo "# exit $rc"; cat "$work/err"; return 1; }
    has "$work/out" "file size: $size bytes" || return 1
    has "$work/out" "page size: $page bytes" || return 1
    grep -qE '^mapping address: 0x[0-9a-f]+ \(page-aligned: yes\)' "$work/out" ||
        { echo "# no page-aligned mapping address"; return 1; }
    # The contents between the markers are the file, byte for byte (plus a
    # final newline if the file lacks one).
    sed -n '/^---- contents of /,/^---- end of contents ----$/p' "$work/out" | sed '1d;$d' \
        >"$work/contents"
    if ! cmp -s "$work/contents" "$ex/$f" && ! cmp -s "$work/contents" <(cat "$ex/$f"; echo); then
        echo "# the contents printed differ from $f"
        return 1
    fi
    if [ "$tail" -eq 0 ]; then
        has "$work/out" "zero fill: none, the file ends exactly on a page boundary" || return 1
    else
        has "$work/out" "zero fill: $tail of the $tail bytes from the end of the file" || return 1
    fi
    return 0
}

mm testfile.txt
check "examples: mmap-example shows size, page size, address and contents" check_mapping testfile.txt
check "examples: mmap-example shows the zero fill after the end of the file" \
    has "$work/out" "zero fill: $(((page - $(stat -c %s "$ex/testfile.txt") % page) % page)) of"
check "examples: mmap-example shows a zero-filled anonymous mapping" \
    has "$work/out" "non-zero bytes (zero-filled: yes)"
check "examples: mmap-example catches the write to a read-only page" \
    grep -qE 'was caught: SIGSEGV at address 0x' "$work/out"
check "examples: mmap-example prints nothing on stderr" test ! -s "$work/err"

# A file of exactly one page (no zero fill) and one just over two pages.
head -c "$page" /dev/zero | tr '\0' 'p' >"$ex/one-page.txt"
{ head -c $((2 * page)) /dev/zero | tr '\0' 'q'; echo; } >"$ex/two-pages.txt"
mm one-page.txt
check "examples: mmap-example on a file of exactly one page" check_mapping one-page.txt
mm two-pages.txt
check "examples: mmap-example on a file of two pages and a byte" check_mapping two-pages.txt

# --shared-copy: MAP_SHARED write-back on a temporary copy; testfile.txt
# itself must not change, and the copy must be removed.
before=$(sha256sum <"$ex/testfile.txt")
mkdir -p "$work/tmp"
(cd "$ex" && TMPDIR="$work/tmp" timeout 20 ./mmap-example --shared-copy testfile.txt \
    >"$work/out" 2>"$work/err")
rc=$?
after=$(sha256sum <"$ex/testfile.txt")
check "examples: mmap-example --shared-copy exits 0" test $rc -eq 0
check "examples: mmap-example --shared-copy leaves the file unchanged" test "$before" = "$after"
first_upper=$(head -1 "$ex/testfile.txt" | tr a-z A-Z)
check "examples: mmap-example --shared-copy writes through MAP_SHARED to the copy" \
    has "$work/out" "read back with read(): \"$first_upper\""
check "examples: mmap-example --shared-copy removes its temporary copy" \
    test -z "$(ls -A "$work/tmp")"

# Bad input.
expect() { # expect NAME RC TEXT: the last run exited RC and said TEXT on stderr
    local ok=0
    [ "$rc" -eq "$2" ] || { echo "# exit $rc, expected $2"; ok=1; }
    has "$work/err" "$3" || ok=1
    result "$1" $ok
}
mm
expect "examples: mmap-example without a file prints usage, exit 2" 2 "usage: mmap-example"
mm no-such-file.txt
expect "examples: mmap-example on a missing file: strerror, exit 1" 1 \
    "cannot open no-such-file.txt: No such file or directory"
mm .
expect "examples: mmap-example on a directory: strerror, exit 1" 1 ".: Is a directory"
mkfifo "$ex/fifo"
mm fifo
expect "examples: mmap-example on a FIFO does not block: not mappable, exit 1" 1 \
    "fifo: not a regular file"
mm /dev/null
expect "examples: mmap-example on a device: not mappable, exit 1" 1 "not a regular file"

# A file its user may not read.  Root reads any file, so as root run the
# program as nobody (setpriv drops the user, group and capabilities).
echo secret >"$ex/unreadable.txt"
chmod 000 "$ex/unreadable.txt"
chmod 755 "$ex"
if [ "$(id -u)" -eq 0 ]; then
    as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
else
    as_user=()
fi
(cd "$ex" && timeout 20 "${as_user[@]}" ./mmap-example unreadable.txt >"$work/out" 2>"$work/err")
rc=$?
expect "examples: mmap-example on an unreadable file: strerror, exit 1" 1 \
    "cannot open unreadable.txt: Permission denied"

: >"$ex/empty.txt"
mm empty.txt
ok=0
[ $rc -eq 0 ] || { echo "# exit $rc"; ok=1; }
has "$work/out" "the file is empty: nothing to map (mmap with length 0 fails: Invalid argument)" ||
    ok=1
has "$work/out" "anonymous mapping:" || ok=1 # it goes on with the other steps
result "examples: mmap-example on an empty file says so, exit 0" $ok

# ---- sbrk-example -----------------------------------------------------------
check "examples: sbrk-example builds with 'gcc sbrk-example.c -o sbrk-example'" \
    bash -c "cd '$ex' && timeout 120 gcc sbrk-example.c -o sbrk-example"
for cc in gcc clang; do
    check "examples: sbrk-example builds with $cc -Wall -Wextra -Werror" \
        timeout 120 $cc -Wall -Wextra -Werror "$ex/sbrk-example.c" -o "$work/sbrk-$cc"
done

check_sbrk() { # the run in $work/out shows every step
    [ "$rc" -eq 0 ] || { echo "# exit $rc"; return 1; }
    has "$work/out" "the program break     sbrk(0):" || return 1
    has "$work/out" "the new bytes were zero: yes" || return 1
    grep -qE '^   bump_alloc\( ?[0-9]+\) = 0x' "$work/out" || return 1
    # After giving everything back, the break is where the bump allocator started.
    local back
    back=$(grep -oE 'the break is back at 0x[0-9a-f]+ \(the start was 0x[0-9a-f]+\)' "$work/out")
    [ -n "$back" ] || { echo "# no give-back line"; return 1; }
    local now start
    read -r now start <<<"$(echo "$back" | grep -oE '0x[0-9a-f]+' | tr '\n' ' ')"
    [ "$now" = "$start" ] || { echo "# break $now != start $start"; return 1; }
    has "$work/out" "5. Why a general allocator prefers mmap" || return 1
    # 64 TiB of break fails on any ordinary machine (it may succeed with
    # overcommit_memory=1 and 57-bit addresses; the program says so then).
    grep -qE '^   sbrk\(64 TiB\): +(Cannot allocate memory|succeeded)' "$work/out" || return 1
}
(cd "$ex" && timeout 20 ./sbrk-example >"$work/out" 2>"$work/err")
rc=$?
check "examples: sbrk-example shows the break, sbrk, a bump allocator, giving back" check_sbrk
check "examples: sbrk-example: glibc's malloc traps our sbrk block" \
    has "$work/out" "is refused: sbrk(-64) would cut malloc's heap."

# ---- the first-fit allocator -------------------------------------------------
lib="$root/build/libfirstfit.so"
check "firstfit: build/libfirstfit.so was built (make examples)" test -f "$lib"
check "firstfit: builds by hand as its comment shows" \
    bash -c "cd '$ex/first-fit' && timeout 120 gcc -O2 -fPIC -shared firstfit.c -o libfirstfit.so -lpthread"
check "firstfit: builds with clang -Wall -Wextra -Werror" \
    timeout 120 clang -O2 -std=gnu11 -fPIC -shared -fvisibility=hidden -Wall -Wextra -Werror \
    -Wshadow -Wstrict-prototypes -Wmissing-prototypes "$ex/first-fit/firstfit.c" \
    -o "$work/libfirstfit-clang.so" -lpthread

check "firstfit: LD_PRELOAD takes effect" \
    bash -c "LD_PRELOAD='$lib' timeout 10 grep -q libfirstfit.so /proc/self/maps"

# sbrk-example under the first-fit malloc: it uses mmap, the break stays ours.
(cd "$ex" && LD_PRELOAD="$lib" timeout 20 ./sbrk-example >"$work/out" 2>"$work/err")
rc=$?
check "firstfit: sbrk-example under it: malloc does not move the break" \
    has "$work/out" "malloc did not move the break"

# run_api NAME COMMAND...: pass a test program's ok/not ok lines through
# (prefixed with "firstfit: " when asked), and fail if it died silently.
run_api() {
    local prefix=$1
    shift
    "$@" >"$work/api.out" 2>&1
    local status=$?
    sed -E "s/^(not ok|ok) /\\1 $prefix/" "$work/api.out"
    if [ $status -ne 0 ] && ! grep -q '^not ok ' "$work/api.out"; then
        echo "not ok ${prefix}$(basename "$1") exited with status $status"
    fi
}

run_api "firstfit: " env LD_PRELOAD="$lib" TEST_EXPECT_LIB=libfirstfit.so \
    timeout 300 build/tests/examples/firstfit-api

# The project's API tests (tests/api/, built by mk/tests.mk), under libfirstfit.so.
if [ -x build/tests/test-api ]; then
    run_api "firstfit: " env LD_PRELOAD="$lib" TEST_EXPECT_LIB=libfirstfit.so \
        timeout 300 build/tests/test-api
elif [ -e tests/api/test-api.c ]; then
    echo "not ok firstfit: test-api missing (build/tests/test-api was not built)"
else
    echo "# tests/api/test-api.c does not exist yet: only firstfit-api ran"
fi

# Real programs: the same output with and without the first-fit allocator.
same_output() { # same_output NAME COMMAND...: compare stdout, and both exit 0
    local name=$1
    shift
    timeout 300 "$@" >"$work/plain" 2>&1
    local rc1=$?
    LD_PRELOAD="$lib" timeout 300 "$@" >"$work/preloaded" 2>&1
    local rc2=$?
    local ok=0
    if [ $rc1 -ne 0 ] || [ $rc2 -ne 0 ]; then
        echo "# exit $rc1 without, $rc2 with"
        ok=1
    fi
    if ! cmp -s "$work/plain" "$work/preloaded"; then
        echo "# output differs"
        diff "$work/plain" "$work/preloaded" | head -20 | sed 's/^/#   /'
        ok=1
    fi
    result "firstfit: $name" $ok
}

python_script='
import collections, json, re, threading
d = {str(i): list(range(i % 50)) for i in range(100000)}
s = json.dumps(d, sort_keys=True)
words = re.findall(r"\w+", open("/usr/include/stdio.h").read())
print(len(s), sum(len(v) for v in json.loads(s).values()))
print(collections.Counter(words).most_common(5))
out = [None] * 4
def work(k):
    out[k] = sum(len(str(list(range(j)))) for j in range(k, 3000, 4))
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(out)
'
same_output "python3 (PYTHONMALLOC=malloc, threads)" \
    env PYTHONMALLOC=malloc /usr/bin/python3 -c "$python_script"
same_output "ls -lR /usr/include" ls -lR /usr/include
same_output "sort of 200000 lines" bash -c 'seq 200000 | sort -R --random-source=/dev/zero | sort -n | md5sum'
same_output "xz -T2 round trip (threads)" \
    bash -c 'seq 2000000 | xz -T2 -1 --block-size=1MiB | xz -d -T2 | md5sum'
same_output "gcc compiles firstfit.c" \
    bash -c "gcc -O2 -fPIC -c '$ex/first-fit/firstfit.c' -o - | md5sum"

# The workload of docs/learn.md, small: the checksum must match glibc's.
wl=(build/examples/workload --threads 2 --objects 3000 --rounds 20000)
timeout 300 "${wl[@]}" >"$work/plain" 2>&1
rc1=$?
LD_PRELOAD="$lib" timeout 300 "${wl[@]}" >"$work/preloaded" 2>&1
rc2=$?
sed 's/^/# glibc:    /' "$work/plain"
sed 's/^/# firstfit: /' "$work/preloaded"
check "firstfit: the workload runs and gives glibc's checksum" \
    test $rc1 -eq 0 -a $rc2 -eq 0 -a "$(grep checksum "$work/plain")" = "$(grep checksum "$work/preloaded")"
exit 0
