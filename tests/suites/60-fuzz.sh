#!/usr/bin/env bash
# Suite: the allocation API against its model, on fuzzed input
# (tests/fuzz/fuzz-alloc.c; tests/README.md has the longer run).
#
#   replay/<flavour>  the seed corpus (tests/fuzz/corpus) and every input
#                     that once broke a rule (tests/fuzz/regressions) through
#                     the harness, against the release, debug and check
#                     builds of libmclone.so
#   libfuzzer/seeds   the same inputs through the libFuzzer build (ASan,
#                     UBSan, MCLONE_DEBUG=2)
#   libfuzzer/run     libFuzzer for FUZZ_SECONDS (60 by default), starting
#                     from the corpus in build/fuzz/corpus (kept between
#                     runs, seeded from tests/fuzz/corpus), in fork mode so
#                     that one failure does not end the search; any input
#                     it finds that breaks a rule is a failure, left in
#                     build/fuzz/artifacts/ with the command that replays it
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/reliability/suite-lib.sh
. tests/reliability/suite-lib.sh
seconds=${FUZZ_SECONDS:-60}
inputs=(tests/fuzz/corpus)
[ -d tests/fuzz/regressions ] && inputs+=(tests/fuzz/regressions)

if build build/tests/fuzz-replay; then
    for f in release debug check; do
        build "${libdir[$f]}/libmclone.so" || continue
        checked "fuzz/replay/$f" 300 env LD_LIBRARY_PATH="${libdir[$f]}" "$bin/fuzz-replay" \
            "${inputs[@]}"
    done
    # The secure build's mc_ names come first through the preload.
    secure_lib=$root/build/secure/libmclone-secure.so
    if build "$secure_lib"; then
        checked "fuzz/replay/secure" 300 env LD_PRELOAD="$secure_lib" "$bin/fuzz-replay" \
            "${inputs[@]}"
    fi
fi

build build/fuzz/fuzz-alloc || exit 0
fuzzer=$root/build/fuzz/fuzz-alloc
checked "fuzz/libfuzzer/seeds" 300 "$fuzzer" -runs=0 "${inputs[@]}"

# The timed run.  Inputs that break a rule land in the artifact folder; a
# file there that was not there before is a failure.
corpus=$root/build/fuzz/corpus
artifacts=$root/build/fuzz/artifacts
mkdir -p "$corpus" "$artifacts"
stamp=$root/build/fuzz/run-started
touch "$stamp"
log=$root/build/fuzz/last-run.log
echo "# $fuzzer -fork=1 -ignore_crashes=1 -max_total_time=$seconds ... $corpus ${inputs[*]}"
(cd "$root/build/fuzz" && timeout -k 10 $((seconds + 120)) "$fuzzer" -fork=1 -ignore_crashes=1 \
    -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 \
    -max_len=4096 -artifact_prefix="$artifacts/" "$corpus" "${inputs[@]/#/$root/}" >"$log" 2>&1)
status=$?
grep -E '^#[0-9]+: cov' "$log" | tail -1 | sed 's/^/# /'
new=$(find "$artifacts" -type f -newer "$stamp" -printf '%f\n' | sort)
if [ -n "$new" ]; then
    for a in $new; do
        echo "# found: build/fuzz/artifacts/$a"
        echo "#   replay: build/tests/fuzz-replay build/fuzz/artifacts/$a"
        "$bin/fuzz-replay" "$artifacts/$a" 2>&1 | grep -m3 -E "^fuzz-alloc: |$sanitizer_pattern|mclone:" |
            sed 's/^/#   /'
    done
    echo "# (keep each as tests/fuzz/regressions/<what it found>)"
    echo "not ok fuzz/libfuzzer/run"
elif [ $status -ne 0 ]; then
    tail -20 "$log" | sed 's/^/# /'
    echo "not ok fuzz/libfuzzer/run: $(describe_status $status $((seconds + 120)))"
else
    echo "ok fuzz/libfuzzer/run"
fi
