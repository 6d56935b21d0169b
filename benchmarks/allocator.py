#!/usr/bin/env python3
"""What `genprint.allocator.keep_freed_memory` buys: the same workloads with glibc's default allocation and with it.

    python benchmarks/allocator.py [--repeats 5] [--train-steps 10]

The setting is process-wide, so each mode runs in a child process of its own, one after the other:
- decode: the original TAEF2 decoder on a batch of 16 latents (128 px images), no grad;
- reader: inversion-reader steps (decoder forward and backward, edit model) on 256 px images, batch 1 and batch 8, in
  seconds per image and step;
- train: `smoke` training steps (batch 16 of 64 px crops of the shared photos, complementary pairs).
Each child also reports its peak resident memory and the CPU seconds it spent in the kernel. Writes
benchmarks/results/allocator.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys

import torch
from _results import write_result
from decode_modulation import ROOT, load_model
from matching import timed

MODES = {"glibc_default": False, "keep_freed_memory": True}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    return statistics.median(timed(fn, repeats))


def child(keep: bool, repeats: int, train_steps: int) -> dict:
    from genprint.allocator import keep_freed_memory
    from genprint.config import load_config
    from genprint.inversion import InversionReader
    from genprint.training import Trainer

    applied = keep_freed_memory() if keep else False
    model = load_model(None, 48, "cpu")
    latents = torch.randn(16, model.adapter.latent_channels, 16, 16)
    with torch.no_grad():
        decode = median_seconds(lambda: model.decode_reference(latents), repeats)
    reader = InversionReader(model, steps=5, max_rotation=0)
    per_step = {}
    for batch in (1, 8):
        images = torch.rand(batch, 3, 256, 256)
        per_step[f"batch_{batch}"] = median_seconds(lambda: reader.logits(images), max(1, repeats // 2)) / (5 * batch)
    trainer = Trainer(load_config("smoke", {"steps": train_steps + 2}), device="cpu")
    trainer.train_step(), trainer.train_step()  # warm-up
    train = statistics.mean(timed(trainer.train_step, train_steps))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "applied": applied,
        "decode_batch16_128px_s": decode,
        "reader_step_256px_s_per_image": per_step,
        "train_step_smoke_s": train,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "kernel_cpu_s": usage.ru_stime,
        "user_cpu_s": usage.ru_utime,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "allocator.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(MODES[args.child], args.repeats, args.train_steps)))
        return

    results = {}
    for mode in MODES:
        print(f"running {mode} ...", flush=True)
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--repeats",
                str(args.repeats),
                "--train-steps",
                str(args.train_steps),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    base, kept = results["glibc_default"], results["keep_freed_memory"]
    if not kept["applied"]:
        print("keep_freed_memory did not apply here (not glibc, or MALLOC_*/LD_PRELOAD set): both modes are the same")
    speedup = {
        "decode_batch16_128px": base["decode_batch16_128px_s"] / kept["decode_batch16_128px_s"],
        "train_step_smoke": base["train_step_smoke_s"] / kept["train_step_smoke_s"],
        **{
            f"reader_step_256px_{b}": base["reader_step_256px_s_per_image"][b]
            / kept["reader_step_256px_s_per_image"][b]
            for b in base["reader_step_256px_s_per_image"]
        },
    }
    write_result(
        args.out,
        {
            "benchmark": "allocator",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "repeats": args.repeats,
            "train_steps": args.train_steps,
            "results": results,
            "speedup": speedup,
        },
    )
    rows = [
        ("decode, batch 16 of 128 px (s)", "decode_batch16_128px_s", None),
        ("reader step, 256 px, batch 1 (s / image)", "reader_step_256px_s_per_image", "batch_1"),
        ("reader step, 256 px, batch 8 (s / image)", "reader_step_256px_s_per_image", "batch_8"),
        ("smoke training step (s)", "train_step_smoke_s", None),
        ("peak resident memory (MiB)", "peak_rss_mib", None),
        ("CPU seconds in the kernel", "kernel_cpu_s", None),
    ]
    print(f"{'':42} {'glibc default':>14} {'keep_freed_memory':>18}")
    for label, key, sub in rows:
        a, b = (r[key][sub] if sub else r[key] for r in (base, kept))
        print(f"{label:42} {a:14.3f} {b:18.3f}")
    print("speedup: " + ", ".join(f"{k} {v:.2f}x" for k, v in speedup.items()))


if __name__ == "__main__":
    main()
