"""Training throughput: steps/s and images/s of one training step, before and after each speed lever, in one run.

    .venv/bin/python benchmarks/train_throughput.py                        # in-process steps: the levers, cumulatively
    .venv/bin/python benchmarks/train_throughput.py --workers 1 2          # on Ray Train with 1 and 2 workers instead
    .venv/bin/python benchmarks/train_throughput.py --workers 1 --gpus-per-worker 1   # GPU machine

In-process, every variant runs the same losses (bit BCE + quality MSE and SSIM, attacks at full strength) at the
`default` config's batch; each row adds one lever of the shipped config to the row above, and `before` is the step as
it was up to 2026-12-02 (the re-rendering residual reader, full precision, the default memory layout, every reference
decoded afresh, 64 px crops). A variant's time is the mean (and median) of `--steps` steps after `--warmup` steps.
On Ray Train, steps/s is what rank 0 measured over its loop (DDP all-reduce and checkpoint writes included, start-up
excluded). Writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _results import write_result  # noqa: E402

# The step up to 2026-12-02: `default`'s re-rendering residual reader in full precision and the default layout, every
# reference decoded afresh, the whole decoder tuned, 64 px crops.
BEFORE = {
    "extractor": {"width": 64, "depth": 1, "downsamples": 0, "highpass": True, "residual": True},
    "precision": "fp32",
    "channels_last": False,
    "reference_reuse": 1,
    "decoder_frozen": [],
    "crop": 64,
}
LEVERS = [  # (name, the config key it takes from the shipped config; None: nothing)
    ("before", None),
    ("channels_last", "channels_last"),
    ("bf16 autocast", "precision"),
    ("the reader without re-rendering", "extractor"),
    ("reference decodes reused", "reference_reuse"),
    ("full-resolution stage frozen", "decoder_frozen"),
    ("crops of several sizes (the shipped config)", "crop"),
]
SAME_LOSSES = {"curriculum": None, "quality_weight": 10.0, "attack_strength": 1.0}


def step_variants(config_name: str) -> list[tuple[str, dict]]:
    """Each lever added to the row above, from `before` to the shipped config (bf16 where the CPU has it natively)."""
    from genprint.config import load_config

    shipped = load_config(config_name)
    variants, current = [], {**SAME_LOSSES, **BEFORE}
    for name, key in LEVERS:
        if key is not None:
            value = getattr(shipped, key)
            current = {**current, key: "bf16" if key == "precision" and value == "auto" else value}
        variants.append((name, dict(current)))
    return variants


def time_steps(config, photos: str, warmup: int, steps: int) -> dict:
    import torch

    from genprint.training import Trainer

    trainer = Trainer(config, photos=photos)

    def next_crop() -> int:  # the size the next step will draw (a copy of the trainer's generator)
        peek = torch.Generator().set_state(trainer.size_gen.get_state())
        return config.crops[int(torch.randint(len(config.crops), (1,), generator=peek))]

    # warm up until every crop size has run once: a size's first step builds its kernels (seconds, not a step's cost)
    seen, done = set(), 0
    while done < warmup or seen != set(config.crops):
        seen.add(next_crop())
        trainer.train_step()
        done += 1
    times, by_size = [], {}
    for _ in range(steps):
        crop = next_crop()
        started = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - started)
        by_size.setdefault(crop, []).append(times[-1])
    median = statistics.median(times)
    return {
        "step_seconds_median": round(median, 4),
        "step_seconds_mean": round(statistics.mean(times), 4),
        "step_seconds_min": round(min(times), 4),
        "step_seconds_max": round(max(times), 4),
        "steps_per_s": round(1 / median, 3),
        # every size of a step holds batch_size x 64 px of pixels: images of 64 px a second, whatever the size drawn
        "images_per_s_at_64px": round(config.batch_size / statistics.mean(times), 2),
        "step_seconds_mean_by_crop": {crop: round(statistics.mean(t), 4) for crop, t in sorted(by_size.items())},
        "bf16": trainer.bf16,
    }


def in_process(args) -> dict:
    import torch

    from genprint.allocator import keep_freed_memory
    from genprint.config import load_config
    from genprint.data import resolve_photos

    keep_freed_memory()  # as the CLI and Ray workers run
    rows = []
    with tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
        # a few photos: what a step costs does not depend on how many photos the bank encoded first
        for path in resolve_photos(args.data)[: args.photos]:
            os.symlink(path.resolve(), Path(tmp) / path.name)
        for name, overrides in step_variants(args.config):
            config = load_config(args.config, overrides)
            row = {"variant": name, **time_steps(config, tmp, args.warmup, args.steps)}
            row["speedup_vs_before"] = (  # means: a step of several sizes varies with the size it draws
                round(rows[0]["step_seconds_mean"] / row["step_seconds_mean"], 2) if rows else 1.0
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {
        "mode": "in-process step",
        "config": args.config,
        "batch_size": config.batch_size,
        "crop": config.crop,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "variants": rows,
    }


def on_ray(args) -> dict:
    import ray

    from genprint.config import load_config
    from pipelines.ray_train import train_distributed

    # checkpoint only at the end: the numbers are about training, not storage
    config = load_config(args.config, {"steps": args.steps, "checkpoint_every": args.steps, "log_every": args.steps})
    rows = []
    with tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
        for workers in args.workers:  # each run starts a local Ray and stops it (start-up excluded from steps/s)
            started = time.perf_counter()
            summary = train_distributed(
                config,
                name=f"bench-{workers}w",
                out=f"{tmp}/out-{workers}",
                storage=f"{tmp}/ray",
                workers=workers,
                photos=args.data,
                gpus_per_worker=args.gpus_per_worker,
                track=False,
                max_failures=0,
            )
            row = {
                "workers": workers,
                "steps": summary["step"],
                "batch_size_per_worker": config.batch_size,
                "steps_per_s": round(summary["steps_per_s"], 3),
                "images_per_s": round(summary["steps_per_s"] * config.batch_size * workers, 2),
                "wall_seconds_including_startup": round(time.perf_counter() - started, 1),
                "final_bit_acc": round(summary["bit_acc"], 4),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {
        "mode": "ray train",
        "config": args.config,
        "gpus_per_worker": args.gpus_per_worker,
        "ray": ray.__version__,
        "runs": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--steps", type=int, default=24, help="timed steps per variant (on Ray: steps per run)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--photos", type=int, default=8, help="photos in the in-process bank")
    parser.add_argument("--workers", type=int, nargs="+", help="run on Ray Train with these worker counts instead")
    parser.add_argument("--gpus-per-worker", type=float, default=0)
    parser.add_argument("--data", help="training photos (default: shared photos)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()

    import torch

    result = on_ray(args) if args.workers else in_process(args)
    result.update(
        {
            "benchmark": "train_throughput",
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        }
    )
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
