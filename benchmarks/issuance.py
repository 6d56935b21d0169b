"""Issuance: 1e6 users issued and committed in one transaction to a fresh SQLite registry (target <= 60 s).

    .venv/bin/python benchmarks/issuance.py [--count 1000000] [--nbits 64] [--db URL]

Writes benchmarks/results/issuance.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _results import write_result

from genprint.registry import Registry
from genprint.registry.codes import default_min_distance


def main() -> None:
    from genprint.allocator import keep_freed_memory

    keep_freed_memory()  # as every genprint process does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--nbits", type=int, default=64)
    parser.add_argument("--db", default=None, help="registry URL (default: a SQLite file in a temporary directory)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "issuance.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'registry.db'}"
        with Registry(url) as registry:
            tenant, _ = registry.create_tenant("bench")
            t = time.perf_counter()
            issued = registry.register_users(tenant, "bench-model", args.nbits, count=args.count, request_id="bench")
            elapsed = time.perf_counter() - t
            counts = registry.counts()
            t = time.perf_counter()
            matcher = registry.matcher("bench-model")  # a fresh process's first load of every code
            load = time.perf_counter() - t
    assert len(issued) == args.count == counts["fingerprints"] == len(matcher)
    result = {
        "benchmark": "issuance",
        "backend": url.split(":", 1)[0],
        "count": args.count,
        "nbits": args.nbits,
        "min_distance": default_min_distance(args.nbits),
        "issue_and_commit_s": elapsed,
        "users_per_s": args.count / elapsed,
        "matcher_load_s": load,
        "target": "<= 60 s for 1e6 (SQLite)",
    }
    print(
        f"issued and committed {args.count:,} users ({args.nbits}-bit, min distance {result['min_distance']}) "
        f"in {elapsed:.1f} s "
        f"({result['users_per_s']:,.0f}/s); matcher loaded them in {load:.1f} s"
    )
    write_result(args.out, result)


if __name__ == "__main__":
    main()
