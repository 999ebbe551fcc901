#!/usr/bin/env bash
# Suite: more real programs under LD_PRELOAD (python3, perl, sqlite3 and gcc
# are in 40-programs), each compared with a run without the preload.
#
#   git    `git clone -q --no-local` of this repository into a temporary
#          folder (--no-local: the objects go through upload-pack,
#          pack-objects and index-pack instead of being hard-linked), then
#          `git log --stat` and `git fsck` in the clone: the same output as
#          without the preload, and every git process bound malloc to
#          libmclone (LD_DEBUG=bindings)
#   redis  redis-server under the preload on a free port of 127.0.0.1
#          (--save '' --appendonly no), libmclone in its /proc/PID/maps;
#          redis-benchmark -q -n 20000 -t set,get,lpush,lpop,incr,sadd,hset
#          -P 16 against it; then redis-cli reads what the benchmark left and
#          writes and reads values of every size (up to 3 MiB, and one grown
#          by APPEND to 2 MB): the answers must be those of a server without
#          the preload; SHUTDOWN NOSAVE must end it cleanly
#
# Release and debug builds.  Names: "release/git-clone-log",
# "debug/redis-answers".
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/reliability/suite-lib.sh
. tests/reliability/suite-lib.sh
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -9 "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if ! scripts/ensure-packages.sh git redis-server redis-tools; then
    echo "# could not install all of git redis-server redis-tools"
fi

alloc_names='malloc|free|calloc|realloc|reallocarray|memalign|posix_memalign|aligned_alloc'

# bound_to_lib NAME LIB LOGPREFIX: each process logged in LOGPREFIX.* bound
# malloc to LIB, and no allocation function elsewhere than LIB (the C
# library, or a program's own allocator such as redis's jemalloc).
bound_to_lib() {
    local name=$1 lib=$2 logs=$3 f n=0 bad=0
    for f in "$logs".*; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        if ! grep -qF "to $lib [0]: normal symbol \`malloc'" "$f"; then
            echo "# $name: process $(basename "$f") did not bind malloc to $lib"
            bad=1
        fi
        if grep -E "normal symbol \`($alloc_names)'" "$f" | grep -vqF "to $lib "; then
            echo "# $name: process $(basename "$f") took allocation functions elsewhere:"
            grep -E "normal symbol \`($alloc_names)'" "$f" | grep -vF "to $lib " | head -3 |
                sed 's/^/#   /'
            bad=1
        fi
    done
    [ $n -gt 0 ] || { echo "# $name: no binding log"; bad=1; }
    echo "# $name: $n processes"
    return $bad
}

# ---- git --------------------------------------------------------------------------------
# git_work REPOSITORY DIR: clone the repository into DIR, then its log and
# a check.
git_work() {
    git clone -q --no-local "$1" "$2" &&
        git -C "$2" log --stat &&
        git -C "$2" fsck --full --no-progress 2>&1
}

if command -v git >/dev/null; then
    timeout -k 5 120 bash -c "$(declare -f git_work); git_work '$root' '$work/plain-clone'" \
        >"$work/git.plain" 2>&1
    rc_plain=$?
    [ $rc_plain -eq 0 ] || { echo "# git without the preload: status $rc_plain"; tail -5 "$work/git.plain" | sed 's/^/#   /'; }
    for f in release debug; do
        lib=${libdir[$f]}/libmclone.so
        build "$lib" || continue
        rm -rf "$work/clone"
        LD_PRELOAD=$lib LD_DEBUG=bindings LD_DEBUG_OUTPUT=$work/git-ld timeout -k 5 120 \
            bash -c "$(declare -f git_work); git_work '$root' '$work/clone'" >"$work/git.$f" 2>&1
        rc=$?
        bad=0
        if [ $rc -ne 0 ] || [ $rc_plain -ne 0 ]; then
            echo "# git: status $rc_plain without, $rc with $lib"
            bad=1
        fi
        if ! cmp -s "$work/git.plain" "$work/git.$f"; then
            diff "$work/git.plain" "$work/git.$f" | head -10 | sed 's/^/#   /'
            bad=1
        fi
        echo "# git log --stat: $(grep -c '^commit ' "$work/git.$f") commits"
        result "$f/git-clone-log" $bad
        bound_to_lib git "$lib" "$work/git-ld"
        result "$f/git-uses-libmclone" $?
        rm -f "$work"/git-ld.*
    done
else
    echo "not ok git: not installed"
fi

# ---- redis ------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server PRELOAD: redis-server on a free port, with LD_PRELOAD=PRELOAD
# (may be empty); sets port and server_pid; fails if it does not answer.
start_server() {
    local preload=$1 i
    for _ in 1 2 3; do
        port=$(free_port) || return 1
        rm -rf "$work/redis-dir" && mkdir -p "$work/redis-dir"
        env ${preload:+LD_PRELOAD="$preload"} ${preload:+LD_DEBUG=bindings} \
            ${preload:+LD_DEBUG_OUTPUT="$work/redis-ld"} timeout -k 5 300 redis-server \
            --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/redis-dir" \
            --logfile "$work/redis-dir/server.log" --daemonize no &
        server_pid=$!
        for i in $(seq 100); do
            if timeout 5 redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
                # the pid of redis-server itself, not of timeout
                server_pid=$(pgrep -P "$server_pid" redis-server || echo "$server_pid")
                return 0
            fi
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=""
    done
    return 1
}

# stop_server: SHUTDOWN NOSAVE, and the server must be gone within 30 s.
stop_server() {
    timeout 10 redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    local i
    for i in $(seq 300); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "# the server did not stop after SHUTDOWN NOSAVE"
        kill -9 "$server_pid" 2>/dev/null
        server_pid=""
        return 1
    fi
    server_pid=""
    return 0
}

# Values of every size, written and read back; a value grown by APPEND.
head -c 3145728 /dev/urandom | base64 -w 0 >"$work/big"
head -c 150000 /dev/urandom | base64 -w 0 >"$work/medium"
{
    for i in $(seq 1 300); do echo "SET small:$i $(printf '%*s' $((i * 7)) '' | tr ' ' "$((i % 10))")"; done
    chunk=$(printf '%*s' 10000 '' | tr ' ' 'a')
    for i in $(seq 1 200); do echo "APPEND grown $chunk$i"; done
    for i in $(seq 1 300 7); do echo "DEL small:$i"; done
    echo "RPUSH biglist $(seq -s ' ' 1 5000)"
    echo "LTRIM biglist 100 4000"
} >"$work/commands"

# redis_answers: what the server holds, read with redis-cli (the client runs
# on the system allocator).
redis_answers() {
    local cli=(timeout 60 redis-cli -p "$port")
    "${cli[@]}" -x set big <"$work/big" && "${cli[@]}" -x set medium <"$work/medium" &&
        "${cli[@]}" <"$work/commands" >"$work/replies" &&
        echo "$(wc -l <"$work/replies") replies, md5 $(md5sum <"$work/replies")"
    "${cli[@]}" get big | cmp -s - <(cat "$work/big" && echo) && echo "big: same"
    "${cli[@]}" get medium | sha256sum
    "${cli[@]}" strlen grown
    "${cli[@]}" getrange grown 1999990 2000100
    for k in small:2 small:100 small:299; do "${cli[@]}" get "$k" | md5sum; done
    "${cli[@]}" llen biglist
    "${cli[@]}" lrange biglist 0 3
    # what the benchmark left (-t ... -n 20000 -P 16)
    "${cli[@]}" get counter:__rand_int__
    "${cli[@]}" get key:__rand_int__
    "${cli[@]}" llen mylist
    "${cli[@]}" scard myset
    "${cli[@]}" hlen myhash
    "${cli[@]}" del big medium
    "${cli[@]}" dbsize
}

tests=set,get,lpush,lpop,incr,sadd,hset
bench=(timeout 120 redis-benchmark -q -n 20000 -t "$tests" -P 16)

# redis_run PRELOAD OUT: the whole sequence against one server.
redis_run() {
    local preload=$1 out=$2
    start_server "$preload" || { echo "# the server did not start"; return 1; }
    echo "# server $server_pid on port $port"
    "${bench[@]}" -p "$port" >"$out.bench" 2>&1
    local brc=$?
    tr '\r' '\n' <"$out.bench" | grep -E 'requests per second' | sed 's/^/#   /'
    redis_answers >"$out" 2>&1
    if [ -n "$preload" ] && grep -qF "$preload" "/proc/$server_pid/maps"; then
        echo "mapped" >"$out.maps"
    fi
    stop_server || return 1
    [ $brc -eq 0 ] || { echo "# redis-benchmark: status $brc"; return 1; }
    [ "$(tr '\r' '\n' <"$out.bench" | grep -c 'requests per second')" -eq 7 ] ||
        { echo "# redis-benchmark did not report all seven tests"; return 1; }
}

if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    redis_run "" "$work/redis.plain"
    rc_plain=$?
    [ $rc_plain -eq 0 ] || echo "# the run without the preload failed: the test itself is broken"
    for f in release debug; do
        lib=${libdir[$f]}/libmclone.so
        build "$lib" || continue
        rm -f "$work"/redis-ld.* "$work/redis.$f.maps"
        redis_run "$lib" "$work/redis.$f"
        result "$f/redis-benchmark" $?
        if [ -e "$work/redis.$f.maps" ]; then
            echo "ok $f/redis-maps-libmclone"
        else
            echo "# libmclone was not in the server's /proc/PID/maps"
            echo "not ok $f/redis-maps-libmclone"
        fi
        bound_to_lib redis-server "$lib" "$work/redis-ld"
        result "$f/redis-uses-libmclone" $?
        sed 's/^/#   /' "$work/redis.$f"
        if [ $rc_plain -eq 0 ] && cmp -s "$work/redis.plain" "$work/redis.$f" &&
            grep -q "big: same" "$work/redis.$f"; then
            echo "ok $f/redis-answers"
        else
            diff "$work/redis.plain" "$work/redis.$f" | head -20 | sed 's/^/#   /'
            echo "not ok $f/redis-answers"
        fi
        if grep -q 'mclone' "$work/redis-dir/server.log"; then
            grep 'mclone' "$work/redis-dir/server.log" | head -5 | sed 's/^/# /'
            echo "not ok $f/redis-log-clean"
        fi
    done
else
    echo "not ok redis: redis-server or redis-benchmark is not installed"
fi
