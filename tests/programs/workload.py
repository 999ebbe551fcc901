"""An allocation-heavy Python workload with a deterministic output.

Run with PYTHONMALLOC=malloc so that every Python object goes through the
C allocator: dicts, lists, strings, a JSON round trip, sorting, and a few
threads building and dropping structures at the same time.  An optional
argument scales the amount of work (default 1.0).
"""

import hashlib
import json
import random
import sys
import threading
from collections import Counter, defaultdict

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0


def scaled(n):
    return max(1, int(n * SCALE))


def digest(obj):
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def words(rng, n):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def dicts_and_lists(rng):
    table = {}
    for i in range(scaled(60000)):
        key = "k%d-%s" % (i, "x" * (i % 17))
        table[key] = [i, str(i) * (i % 5), {"n": i, "sq": i * i}]
    for i in range(0, scaled(60000), 3):
        del table["k%d-%s" % (i, "x" * (i % 17))]
    groups = defaultdict(list)
    for key, value in table.items():
        groups[len(key)].append(value[0])
    sizes = {length: (len(v), sum(v) % 100003) for length, v in sorted(groups.items())}
    print("dicts:", len(table), digest(sizes))
    nested = [[j * k for k in range(j % 50)] for j in range(scaled(4000))]
    flat = [x for row in nested for x in row]
    print("lists:", len(flat), sum(flat) % 1000003)


def json_round_trip(rng):
    doc = {
        "users": [
            {
                "id": i,
                "name": " ".join(words(rng, 3)),
                "tags": words(rng, rng.randint(0, 8)),
                "score": round(rng.random() * 1000, 3),
                "friends": [rng.randrange(5000) for _ in range(rng.randint(0, 20))],
            }
            for i in range(scaled(5000))
        ]
    }
    text = json.dumps(doc)
    back = json.loads(text)
    assert back == doc
    again = json.dumps(back, indent=1, sort_keys=True)
    print("json:", len(text), len(again), digest(back))


def sorting(rng):
    data = [(rng.random(), rng.randrange(1000), w) for w in words(rng, scaled(80000))]
    by_word = sorted(data, key=lambda t: (t[2], t[1]))
    by_num = sorted(data, key=lambda t: (-t[1], t[2]))
    print("sort:", by_word[0][2], by_word[-1][2], by_num[0][1], by_num[-1][1])
    counts = Counter(w for _, _, w in data)
    print("common:", counts.most_common(5))


def worker(index, results):
    rng = random.Random(1000 + index)
    total = 0
    for round_ in range(scaled(30)):
        items = {rng.randrange(100000): "v" * rng.randint(1, 200) for _ in range(scaled(2000))}
        blob = json.dumps(sorted(items.items()))
        total += len(blob) + len(json.loads(blob))
        del items, blob
    results[index] = total


def threads():
    results = [0] * 4
    pool = [threading.Thread(target=worker, args=(i, results)) for i in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print("threads:", results)


def main():
    rng = random.Random(12345)
    dicts_and_lists(rng)
    json_round_trip(rng)
    sorting(rng)
    threads()
    big = bytearray(50 * 1024 * 1024)
    big[-1] = 7
    chunks = [bytes(range(256)) * (i % 64 + 1) for i in range(scaled(20000))]
    print("big:", len(big), big[-1], sum(len(c) for c in chunks))


if __name__ == "__main__":
    main()
