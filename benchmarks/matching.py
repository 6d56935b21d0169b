"""Matching latency: 1 query and a batch of 1,000 against 1e4, 1e6 and 1e7 registered 64-bit fingerprints.

    .venv/bin/python benchmarks/matching.py [--sizes 10000 1000000 10000000] [--nbits 64]

Target: <= 20 ms for one query against 1e7. Memory: ~28 bytes per registered code (1e7: ~280 MB).
Writes benchmarks/results/matching.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from _results import write_result

from genprint.fingerprint import pack
from genprint.registry.matcher import Matcher


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    from genprint.allocator import keep_freed_memory

    keep_freed_memory()  # as every genprint process does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--nbits", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "matching.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        matcher = Matcher(args.nbits, capacity=n)
        for start in range(0, n, 1_000_000):  # build in chunks to keep the bit matrix small
            k = min(1_000_000, n - start)
            matcher.add(
                pack(rng.integers(0, 2, (k, args.nbits), dtype=np.uint8)),
                np.arange(start, start + k),
                np.arange(start, start + k),
                rng.integers(0, 4, k).astype(np.int32),
            )
        one = pack(rng.integers(0, 2, (1, args.nbits), dtype=np.uint8))
        batch = pack(rng.integers(0, 2, (args.batch, args.nbits), dtype=np.uint8))
        matcher.nearest(one)  # warm-up
        single = timed(lambda: matcher.nearest(one), 30)
        scoped = timed(lambda: matcher.nearest(one, tenant_id=1), 10)
        batched = timed(lambda: matcher.nearest(batch), 1 if n >= 10_000_000 else 3)
        row = {
            "registered": n,
            "nbits": args.nbits,
            "one_query_ms_median": 1000 * statistics.median(single),
            "one_query_ms_p90": 1000 * float(np.percentile(single, 90)),
            "one_query_tenant_scoped_ms_median": 1000 * statistics.median(scoped),
            "batch": args.batch,
            "batch_s": min(batched),
            "batch_queries_per_s": args.batch / min(batched),
        }
        rows.append(row)
        print(
            f"{n:>10,} codes: 1 query {row['one_query_ms_median']:.2f} ms (p90 {row['one_query_ms_p90']:.2f}), "
            f"tenant-scoped {row['one_query_tenant_scoped_ms_median']:.2f} ms, "
            f"batch {args.batch}: {row['batch_s']:.3f} s "
            f"({row['batch_queries_per_s']:.0f} queries/s)",
            flush=True,
        )
        matcher = None  # freed before the next size is built
    result = {
        "benchmark": "matching",
        "numpy": np.__version__,
        "machine": platform.machine(),
        "results": rows,
        "target": "<= 20 ms for one query against 1e7",
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
