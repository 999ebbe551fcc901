#!/usr/bin/env bash
# The redis workload: redis-server under the allocator in $BENCH_PRELOAD,
# driven by redis-benchmark on 127.0.0.1.
#
#   redis.sh REQUESTS
#
# The wall time is that of the redis-benchmark run, the span in which the
# server does the work; the peak RSS is the server's high-water mark.  The
# client runs on the system allocator.  Writes "wall_s maxrss_kb" to
# $BENCH_OUT.  A client that does not finish within $BENCH_TIMEOUT seconds
# (default 60) ends the run with status 124; the server is always stopped.
set -u
requests=${1:-40000}
out=${BENCH_OUT:?BENCH_OUT must name the output file}
limit=${BENCH_TIMEOUT:-60}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-redis.XXXXXX")
server=""

cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill "$server" 2>/dev/null
        wait "$server" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# A free port below the kernel's range for outgoing connections (a port
# that a client connection still holds cannot be listened on).
low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$low" -gt 11000 ] 2>/dev/null || low=32768
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((10000 + RANDOM % (low - 10000)))
        if ! (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# start the server; try another port if this one is taken after all
up=0
for _ in 1 2 3; do
    port=$(free_port) || break
    env LD_PRELOAD="${BENCH_PRELOAD:-}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$tmp" --logfile "$tmp/server.log" --daemonize no &
    server=$!
    for _ in $(seq 100); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            up=1
            break
        fi
        kill -0 "$server" 2>/dev/null || break
        sleep 0.05
    done
    [ $up -eq 1 ] && break
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    server=""
done
if [ $up -ne 1 ]; then
    echo "redis.sh: the server did not start" >&2
    cat "$tmp/server.log" >&2 2>/dev/null
    exit 1
fi

start=$(date +%s%N)
timeout "$limit" redis-benchmark -h 127.0.0.1 -p "$port" -q -n "$requests" -c 32 -P 16 \
    -r 200000 -d 200 -t set,get,incr,lpush,rpop,sadd,hset,zadd,lrange_100,mset >"$tmp/client" 2>&1
status=$?
end=$(date +%s%N)
if [ $status -ne 0 ]; then
    cat "$tmp/client" >&2
    exit $status
fi

# the data must be there: a few hundred thousand keys and list elements
keys=$(redis-cli -p "$port" dbsize)
if ! [ "${keys:-0}" -gt 1000 ] 2>/dev/null; then
    echo "redis.sh: the server holds $keys keys" >&2
    exit 1
fi
# the peak RSS, as GNU time would report it (ru_maxrss is this high-water mark)
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server/status")
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
wait "$server"
status=$?
server=""
[ $status -eq 0 ] || { echo "redis.sh: the server exited with status $status" >&2; exit 1; }
echo "$(((end - start) / 1000000)) $hwm" |
    awk '{ printf "%.3f %d\n", $1 / 1000, $2 }' >"$out"
tr '\r' '\n' <"$tmp/client" | grep 'requests per second'
