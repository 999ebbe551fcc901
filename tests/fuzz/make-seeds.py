#!/usr/bin/env python3
"""Write the seed corpus of fuzz-alloc.c into tests/fuzz/corpus/.

Each seed is a short program in the harness's input format (see the top of
fuzz-alloc.c): an operation byte whose low 4 bits choose the operation, a
slot byte, then the arguments.  Run from anywhere; rewrites the files."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# operation numbers (the low 4 bits of the first byte)
MALLOC, CALLOC, REALLOC, REALLOCARRAY, ALIGNED, PAGE = 0, 2, 3, 5, 6, 8
FREE, FREE_SIZED, CHECK, USABLE, COLLECT, TRIM, HEAP_CHECK = 9, 10, 11, 12, 13, 14, 15
MEMALIGN, POSIX_MEMALIGN, ALIGNED_ALLOC = 0, 1, 2
EDGE = {"0": 0, "1": 1, "8": 2, "15": 3, "16": 4, "17": 5, "1K": 6, "1K+1": 7,
        "128K": 8, "128K+1": 9, "2M": 10, "2M+1": 11, "PTRDIFF_MAX+1": 12,
        "SIZE_MAX": 13, "SIZE_MAX-4095": 14, "HALF+4097": 15}


def op(code, slot):
    return bytes([code, slot])


def size(n):
    """A size argument: the class that holds n exactly."""
    if n <= 64:
        return bytes([0, n])
    if n <= 1024:
        return bytes([2]) + n.to_bytes(2, "big")
    if n <= 128 * 1024:
        return bytes([4]) + n.to_bytes(3, "big")
    if n <= 2 * 1024 * 1024:
        return bytes([5]) + (n - 128 * 1024).to_bytes(3, "big")
    return bytes([6]) + (n - 2 * 1024 * 1024).to_bytes(3, "big")


def edge(name):
    return bytes([7, EDGE[name]])


def align_log(k):
    return bytes([k])


def align_odd(i):
    return bytes([224 + i])  # 0, 3, 24, 48, 100, 4097, 2^63, SIZE_MAX


seeds = {}

seeds["basic"] = b"".join(
    [op(MALLOC, s) + size(n) for s, n in enumerate([0, 1, 8, 16, 24, 100, 1000, 5000, 70000])]
    + [op(CHECK, s) for s in range(9)]
    + [op(USABLE, s) for s in range(9)]
    + [op(FREE, s) for s in range(0, 9, 2)]
    + [op(FREE_SIZED, s) for s in range(1, 9, 2)]
    + [op(HEAP_CHECK, 0)])

seeds["realloc-chain"] = b"".join(
    [op(MALLOC, 0) + size(10)]
    + [op(REALLOC, 0) + size(n) for n in
       [40, 1000, 5000, 130000, 300000, 2100000, 5000000, 3000000, 200000, 100, 3]]
    + [op(REALLOC, 1) + size(100), op(REALLOC, 1) + edge("SIZE_MAX"),
       op(REALLOC, 1) + edge("PTRDIFF_MAX+1"), op(REALLOC, 1) + edge("0"),
       op(REALLOC, 2) + edge("0"), op(REALLOCARRAY, 3) + size(100) + bytes([1, 7]),
       op(REALLOCARRAY, 3) + edge("SIZE_MAX") + bytes([0]) + size(2),
       op(CHECK, 3), op(HEAP_CHECK, 0)])

seeds["aligned"] = b"".join(
    [op(ALIGNED, s) + bytes([how]) + align_log(k) + size(n)
     for s, (how, k, n) in enumerate([
         (MEMALIGN, 6, 100), (POSIX_MEMALIGN, 12, 5000), (ALIGNED_ALLOC, 16, 70000),
         (MEMALIGN, 17, 1), (POSIX_MEMALIGN, 20, 300000), (ALIGNED_ALLOC, 22, 3000000),
         (MEMALIGN, 23, 100), (POSIX_MEMALIGN, 30, 64), (ALIGNED_ALLOC, 0, 7),
         (POSIX_MEMALIGN, 2, 50)])]
    + [op(ALIGNED, 20 + i) + bytes([how]) + align_odd(i) + size(100)
       for i, how in enumerate([MEMALIGN, POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN,
                                MEMALIGN, POSIX_MEMALIGN, MEMALIGN, ALIGNED_ALLOC])]
    + [op(ALIGNED, 30) + bytes([POSIX_MEMALIGN]) + align_log(12) + edge("SIZE_MAX")]
    + [op(PAGE, 31) + bytes([0]) + size(100), op(PAGE, 32) + bytes([1]) + size(5000),
       op(PAGE, 33) + bytes([1]) + edge("0")]
    + [op(REALLOC, s) + size(200000) for s in range(0, 10, 3)]
    + [op(CHECK, s) for s in range(34)] + [op(HEAP_CHECK, 0)])

seeds["calloc"] = b"".join(
    [op(CALLOC, 0) + size(100) + bytes([1]) + bytes([3]),
     op(CALLOC, 1) + size(1000) + bytes([1]) + bytes([8]),
     op(CALLOC, 2) + edge("SIZE_MAX") + bytes([1, 2]),
     op(CALLOC, 3) + edge("HALF+4097") + bytes([1, 2]),
     op(CALLOC, 4) + size(0) + bytes([1, 5]),
     op(CALLOC, 5) + size(300000) + bytes([1, 1]),
     op(FREE, 5), op(CALLOC, 6) + size(300000) + bytes([1, 1]),
     op(CALLOC, 7) + size(3000000) + bytes([1, 1]),
     op(FREE, 7), op(CALLOC, 7) + size(2500000) + bytes([1, 1])]
    + [op(CHECK, s) for s in range(8)] + [op(HEAP_CHECK, 0)])

seeds["churn"] = b"".join(
    [op(MALLOC, s) + size(16 + 48 * s) for s in range(40)]
    + [op(FREE, s) for s in range(0, 40, 3)]
    + [op(COLLECT, 0) + bytes([0])]
    + [op(MALLOC, s) + size(2000 + 9 * s) for s in range(0, 40, 3)]
    + [op(REALLOC, s) + size(70000) for s in range(1, 40, 5)]
    + [op(TRIM, 0) + bytes([0]), op(COLLECT, 0) + bytes([1])]
    + [op(FREE, s) for s in range(40)]
    + [op(MALLOC, s) + size(24) for s in range(40)]
    + [op(HEAP_CHECK, 0)])

seeds["huge"] = b"".join(
    [op(MALLOC, 0) + size(3000000), op(MALLOC, 1) + size(5000000),
     op(REALLOC, 0) + size(7000000), op(REALLOC, 1) + size(2200000),
     op(FREE, 0), op(MALLOC, 2) + size(2500000), op(REALLOC, 2) + size(2600000),
     op(REALLOC, 2) + size(2000000), op(REALLOC, 2) + size(4000000),
     op(TRIM, 0) + bytes([0]), op(MALLOC, 3) + edge("2M+1"), op(MALLOC, 4) + edge("2M"),
     op(CHECK, 1), op(CHECK, 2), op(CHECK, 3), op(CHECK, 4), op(HEAP_CHECK, 0)])

os.makedirs(os.path.join(HERE, "corpus"), exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(HERE, "corpus", name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")
