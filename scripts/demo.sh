#!/usr/bin/env bash
# `make demo`: build libmclone and run real programs under it next to glibc's
# malloc, printing wall time and peak memory (GNU time) of both, and whether
# the output is the same.  Each run alternates glibc / libmclone, 3 times;
# the median is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-packages.sh gcc make time python3 sqlite3
make -s all

lib="$PWD/build/libmclone.so"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/workload.py" <<'EOF'
# dicts, lists, strings, JSON and sorting: the allocation mix of a typical
# Python program (run with PYTHONMALLOC=malloc so every object is malloc'd)
import json, random
random.seed(7)
people = [{"id": i, "name": "user%06d" % i, "tags": ["t%d" % (i % 13), "g%d" % (i % 7)],
           "score": random.random()} for i in range(300000)]
text = json.dumps(people)
back = json.loads(text)
index = {p["name"]: p for p in back}
ranked = sorted(back, key=lambda p: (-p["score"], p["name"]))
words = sorted(set(w for p in ranked[:100000] for w in p["name"].split("0")))
print(len(text), len(index), ranked[0]["name"], ranked[-1]["name"], len(words))
EOF

cat >"$work/workload.sql" <<'EOF'
-- a table of 300k rows built, indexed, grouped and sorted in memory
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, pad TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
INSERT INTO t SELECT i, 'key' || (i * 7919 % 5000), i * 31 % 1000, printf('%.*c', i % 200, 'x') FROM n;
CREATE INDEX t_k ON t(k);
SELECT k, count(*), sum(v) FROM t GROUP BY k ORDER BY sum(v) DESC LIMIT 3;
SELECT count(DISTINCT pad), max(length(pad)) FROM t;
SELECT k, v FROM t WHERE k BETWEEN 'key100' AND 'key120' ORDER BY v DESC, id LIMIT 3;
EOF

# run LABEL PRELOAD CMD...: one timed run; appends "seconds kib" to $work/LABEL.times
run() {
    local label=$1 preload=$2
    shift 2
    /usr/bin/time -f "%e %M" -o "$work/t" env ${preload:+LD_PRELOAD=$preload} PYTHONMALLOC=malloc \
        "$@" >"$work/$label.out" 2>"$work/$label.err"
    cat "$work/t" >>"$work/$label.times"
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

printf '%-9s %-10s %9s %14s  %s\n' workload allocator "time (s)" "peak RSS (MiB)" output
for w in python3 sqlite3; do
    case $w in
    python3) cmd=(/usr/bin/python3 "$work/workload.py") ;;
    sqlite3) cmd=(sqlite3 :memory: ".read $work/workload.sql") ;;
    esac
    for round in 1 2 3; do
        run "$w-glibc" "" "${cmd[@]}"
        run "$w-mclone" "$lib" "${cmd[@]}"
    done
    for a in glibc mclone; do
        t=$(awk '{print $1}' "$work/$w-$a.times" | median)
        m=$(awk '{print $2}' "$work/$w-$a.times" | median)
        printf -v "t_$a" '%s' "$t"
        printf -v "m_$a" '%s' "$m"
        same=""
        if [ $a = mclone ]; then
            if cmp -s "$work/$w-glibc.out" "$work/$w-mclone.out"; then same="same as glibc"; else same="DIFFERENT from glibc"; fi
        fi
        printf '%-9s %-10s %9.2f %14.1f  %s\n' "$w" "$([ $a = mclone ] && echo libmclone || echo glibc)" \
            "$t" "$(awk -v k="$m" 'BEGIN {print k / 1024}')" "$same"
    done
    awk -v t1="$t_glibc" -v t2="$t_mclone" -v m1="$m_glibc" -v m2="$m_mclone" \
        'BEGIN {printf "%-9s libmclone / glibc: time %.2fx, peak RSS %.2fx\n\n", "", t2 / t1, m2 / m1}'
    if ! cmp -s "$work/$w-glibc.out" "$work/$w-mclone.out"; then
        echo "output differs for $w" >&2
        exit 1
    fi
done
