"""A Python workload for the allocator benchmark: dicts, JSON and sorting.

Run with PYTHONMALLOC=malloc so that every object, small ones included, comes
from malloc.  Usage: pywork.py SCALE.  Prints a digest of its results, which
is the same under every allocator (the suite checks that).
"""
import hashlib
import json
import random
import sys


def records(rng, n):
    """n records: small dicts of strings, ints, floats and lists."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    out = []
    for i in range(n):
        out.append({
            "id": i,
            "name": "".join(rng.choice(words) for _ in range(rng.randint(1, 4))),
            "score": rng.random() * 1000,
            "tags": [rng.choice(words) for _ in range(rng.randint(0, 6))],
            "nested": {"k%d" % j: j * i for j in range(rng.randint(0, 5))},
        })
    return out


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    n = max(200, int(45000 * scale))
    rng = random.Random(7)
    digest = hashlib.sha256()

    recs = records(rng, n)
    # an index by name, then a word count over all tags
    index = {}
    for r in recs:
        index.setdefault(r["name"], []).append(r["id"])
    counts = {}
    for r in recs:
        for t in r["tags"]:
            counts[t] = counts.get(t, 0) + 1
    digest.update(repr(sorted(counts.items())).encode())
    digest.update(str(len(index)).encode())

    # JSON round trips, in chunks, as a service would parse requests
    for start in range(0, n, 1000):
        text = json.dumps(recs[start:start + 1000])
        back = json.loads(text)
        if back[0]["id"] != start:
            raise SystemExit("json round trip failed")
        digest.update(hashlib.sha256(text.encode()).digest())

    # sorting: tuples, strings, and a sort by key
    pairs = sorted((r["name"], r["score"]) for r in recs)
    names = sorted(str(r["score"]) + r["name"] for r in recs)
    by_tags = sorted(recs, key=lambda r: (len(r["tags"]), -r["id"]))
    digest.update(repr(pairs[:50]).encode())
    digest.update(repr(names[-50:]).encode())
    digest.update(repr([r["id"] for r in by_tags[:100]]).encode())

    # churn: drop half the records, build new strings in their place
    recs = [r for r in recs if r["id"] % 2]
    text = [("%s:%d:" % (r["name"], r["id"])) * 4 for r in recs]
    digest.update(str(sum(map(len, text))).encode())
    print("pywork:", n, "records", digest.hexdigest()[:16])


if __name__ == "__main__":
    main()
