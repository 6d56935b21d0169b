"""Distributed training throughput: steps/s and images/s on Ray Train with 1 and 2 workers, same config.

    .venv/bin/python benchmarks/train_throughput.py --config tiny --steps 20 --workers 1 2
    .venv/bin/python benchmarks/train_throughput.py --config tiny --steps 20 --workers 1 --gpus-per-worker 1   # GPU machine

steps/s is what rank 0 measured over the whole training loop of the run (DDP all-reduce, metric averaging and
checkpoint writes included; Ray start-up and data encoding excluded, reported separately as wall seconds).
images/s = steps/s x batch_size x workers (each worker trains on its own batch). Writes
benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from _results import write_result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gpus-per-worker", type=float, default=0)
    parser.add_argument("--data", help="training photos (default: shared photos)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()

    import ray
    import torch

    from genprint.config import load_config
    from pipelines.train import init_ray, train_distributed

    # checkpoint only at the end: the numbers are about training, not storage
    config = load_config(args.config, {"steps": args.steps, "checkpoint_every": args.steps, "log_every": args.steps})
    rows = []
    with tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
        init_ray(None, max(args.workers))
        try:
            for workers in args.workers:
                started = time.perf_counter()
                summary = train_distributed(config, name=f"bench-{workers}w", out=f"{tmp}/out-{workers}", storage=f"{tmp}/ray",
                                            workers=workers, photos=args.data, gpus_per_worker=args.gpus_per_worker,
                                            track=False, max_failures=0)
                wall = time.perf_counter() - started
                row = {"workers": workers, "steps": summary["step"], "batch_size_per_worker": config.batch_size,
                       "steps_per_s": round(summary["steps_per_s"], 3),
                       "images_per_s": round(summary["steps_per_s"] * config.batch_size * workers, 2),
                       "wall_seconds_including_startup": round(wall, 1), "final_bit_acc": round(summary["bit_acc"], 4)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            ray.shutdown()
    result = {"benchmark": "train_throughput", "config": args.config, "steps": args.steps, "gpus_per_worker": args.gpus_per_worker,
              "device": torch.cuda.get_device_name(0) if args.gpus_per_worker and torch.cuda.is_available() else platform.processor() or "cpu",
              "cpu_count": __import__("os").cpu_count(), "torch": torch.__version__, "ray": ray.__version__, "runs": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
