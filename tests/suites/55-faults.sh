#!/usr/bin/env bash
# Suite: the OS refusing memory, at every point of a workload
# (tests/reliability/faults.c, linked against build/fault).
#
# For each workload (the whole API over every size range and alignments up
# to 1 GiB; many random operations; purges at once; huge blocks growing and
# shrinking; threads trading blocks and exiting with live ones) and each
# mode (one OS call fails, or every call from then on), the (n+1)th mmap,
# mremap or madvise purge fails, for n across the workload's calls.  Every
# call must work or return NULL/ENOMEM, blocks keep their contents, the heap
# check passes, nothing is lost (allocated, committed and mapped back at the
# baseline after freeing everything and mc_trim), and with the faults off
# everything works again.  Names: "fault/api/once", "fault/threads/repeat".
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/reliability/suite-lib.sh
. tests/reliability/suite-lib.sh

if build build/fault/libmclone.so build/tests/faults; then
    run "fault/" 600 env LD_LIBRARY_PATH="${libdir[fault]}" "$bin/faults"
fi
