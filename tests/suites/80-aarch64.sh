#!/usr/bin/env bash
# Suite: the library on aarch64, the second target (x86-64 is the first).
#
#   build-gcc/FLAVOUR  every flavour cross-built with Debian's aarch64 gcc,
#                      -Werror as everywhere (the x86-only code placement flag
#                      must stay out of it)
#   build-clang/...    the release and secure flavours with clang --target
#   the test programs of tests/api and tests/stress, built for aarch64 and run
#   under qemu-aarch64 (user-mode emulation): the standard names under the
#   release and secure builds, the mc_ names, the one-line error reports, and
#   threads trading blocks (release and debug builds).
#
# The build happens in a copy of the tree (build/ stays the host's).  qemu
# runs the threads on the host's cores with the host's memory ordering, so
# what this shows is that the code builds and runs where addresses, page
# handling and atomics go through another instruction set, not that it is
# free of ordering bugs that only a weaker machine would show.  Test names
# start with "aarch64/".
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/reliability/suite-lib.sh
. tests/reliability/suite-lib.sh

if ! scripts/ensure-packages.sh gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; then
    echo "not ok aarch64/toolchain: could not install gcc-aarch64-linux-gnu, qemu-user"
    exit 1
fi
sysroot=/usr/aarch64-linux-gnu
qemu=(qemu-aarch64 -L "$sysroot")

work=$(mktemp -d "${TMPDIR:-/tmp}/mclone-aarch64.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r Makefile mk src include tests "$work"/

# cross NAME MAKE-ARGS...: one build in the copy, one test line.
cross() {
    local name=$1
    shift
    checked "aarch64/$name" 300 make -s -C "$work" AR=aarch64-linux-gnu-ar "$@"
}

cross build-clang/release CC="clang --target=aarch64-linux-gnu" build/libmclone.so
cross build-clang/secure CC="clang --target=aarch64-linux-gnu" build/secure/libmclone-secure.so
rm -rf "$work/build"
gcc=(CC=aarch64-linux-gnu-gcc)
cross build-gcc/release "${gcc[@]}" build/libmclone.so build/libmclone.a
cross build-gcc/debug "${gcc[@]}" debug
cross build-gcc/check "${gcc[@]}" check-build
cross build-gcc/fault "${gcc[@]}" fault-build
cross build-gcc/secure "${gcc[@]}" secure
cross build-gcc/tests "${gcc[@]}" build/tests/test-api build/tests/test-mc-api \
    build/tests/test-secure build/tests/stress

b=$work/build
t=$b/tests
if ! readelf -h "$b/libmclone.so" 2>/dev/null | grep -q 'Machine:.*AArch64'; then
    readelf -h "$b/libmclone.so" 2>&1 | grep -i machine | sed 's/^/# /'
    echo "not ok aarch64/target: build/libmclone.so is not an aarch64 library"
    exit 1
fi

# The environment reaches the emulated program; -E sets what must not reach
# qemu itself (a preload of an aarch64 library).
for f in release secure; do
    lib=$b/libmclone.so
    [ $f = secure ] && lib=$b/secure/libmclone-secure.so
    [ -x "$t/test-api" ] && [ -f "$lib" ] &&
        run "aarch64/$f/" 300 env TEST_EXPECT_LIB="$lib" "${qemu[@]}" -E LD_PRELOAD="$lib" "$t/test-api"
done
[ -x "$t/test-mc-api" ] &&
    run "aarch64/mc/" 300 env LD_LIBRARY_PATH="$b" TEST_EXPECT_LIB="$b/libmclone.so" \
        TEST_EXEC_WRAPPER="${qemu[*]}" "${qemu[@]}" "$t/test-mc-api"
if [ -x "$t/test-secure" ]; then
    run "aarch64/errors/release/" 120 "${qemu[@]}" -E LD_PRELOAD="$b/libmclone.so" "$t/test-secure"
    run "aarch64/errors/secure/" 120 env TEST_SECURE=1 TEST_EMULATED=1 \
        "${qemu[@]}" -E LD_PRELOAD="$b/secure/libmclone-secure.so" "$t/test-secure"
fi
if [ -x "$t/stress" ]; then
    run "aarch64/release/" 180 env TEST_EXPECT_LIB="$b/libmclone.so" \
        "${qemu[@]}" -E LD_PRELOAD="$b/libmclone.so" "$t/stress" -n 6000
    run "aarch64/debug/" 180 env TEST_EXPECT_LIB="$b/debug/libmclone.so" \
        "${qemu[@]}" -E LD_PRELOAD="$b/debug/libmclone.so" "$t/stress" -n 3000
fi
exit 0
