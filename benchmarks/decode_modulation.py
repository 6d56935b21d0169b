#!/usr/bin/env python3
"""Decode latency/throughput: the original decoder vs the fingerprinted one (per-sample modulation), a batch of ONE user
vs a batch of DIFFERENT users, vs swapping baked per-user weights between requests.

    python benchmarks/decode_modulation.py [--model BUNDLE] [--batch 16] [--latent 32] [--repeats 7] [--device cpu]

Variants are timed round-robin (one of each per repeat) so a change in machine load hits them all alike; the median
is reported. Writes benchmarks/results/decode_modulation.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from _results import write_result

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_model(path: str | None, nbits: int, device: str):
    from genprint.bundle import load_bundle
    from genprint.generators import load_adapter_source
    from genprint.model import GenprintModel
    from genprint.settings import taef2_dir

    if path:
        return load_bundle(path, device)
    model = GenprintModel.create(load_adapter_source("taef2", taef2_dir()), nbits=nbits)
    with torch.no_grad():  # non-trivial scales (an untrained mapping gives exactly 1); the cost is the same either way
        for affine in model.mapping.affines:
            affine.weight.normal_(0, 0.05)
    return model.to(device).eval()


def main() -> None:
    from genprint.allocator import keep_freed_memory
    from genprint.model import default_device

    keep_freed_memory()  # as every genprint process does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle directory (default: an untrained TAEF2 model)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--latent", type=int, default=32, help="latent side (TAEF2: image side / 8)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--nbits", type=int, default=48)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decode_modulation.json"))
    args = parser.parse_args()

    from genprint.fingerprint import random_fingerprints
    from genprint.model import bits_tensor

    device = args.device
    model = load_model(args.model, args.nbits, device)
    batch = args.batch
    latents = torch.randn(batch, model.adapter.latent_channels, args.latent, args.latent, device=device)
    bits = bits_tensor(random_fingerprints(batch, model.nbits), device)
    with torch.no_grad():
        many = model.scales(bits)  # 16 different users
        one = [s[:1].expand(batch, -1).contiguous() for s in many]  # 16 samples of one user
    plain = model.adapter.copy_decoder().to(device).eval()  # the serving decoder that swapping reloads
    plain._forward_pre_hooks.clear()
    prebaked = [model.bake(bits[i : i + 1]).state_dict() for i in range(batch)]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def swap(rebake: bool):
        def run():
            for i in range(batch):  # one request per user: new weights, then a batch-1 decode
                state = model.bake(bits[i : i + 1]).state_dict() if rebake else prebaked[i]
                plain.load_state_dict(state)
                model.adapter.decode(latents[i : i + 1], decoder=plain)

        return run

    variants = {
        "original": lambda: model.decode_reference(latents),
        "fingerprinted_1_user": lambda: model.decode(latents, scales=one),
        f"fingerprinted_{batch}_users": lambda: model.decode(latents, scales=many),
        "swap_bake_and_load": swap(rebake=True),
        "swap_load_prebaked": swap(rebake=False),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for fn in variants.values():  # warm-up
            fn()
        sync()
        for r in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - start)
            print(f"repeat {r + 1}/{args.repeats}", file=sys.stderr)

    med = {name: statistics.median(t) for name, t in times.items()}
    users = f"fingerprinted_{batch}_users"
    result = {
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "batch": batch,
        "image_side": args.latent * model.adapter.downscale,
        "repeats": args.repeats,
        "median_seconds": med,
        "images_per_second": {name: batch / s for name, s in med.items()},
        "modulation_overhead_pct": 100 * (med["fingerprinted_1_user"] / med["original"] - 1),
        "many_vs_one_user_pct": 100 * (med[users] / med["fingerprinted_1_user"] - 1),
        "speedup_vs_swap_bake_and_load": med["swap_bake_and_load"] / med[users],
        "speedup_vs_swap_load_prebaked": med["swap_load_prebaked"] / med[users],
    }
    result["targets"] = {
        "modulation_overhead_pct<=5": result["modulation_overhead_pct"] <= 5,
        "many_vs_one_user_pct<=5": result["many_vs_one_user_pct"] <= 5,
        "speedup_vs_swap_bake_and_load>=5": result["speedup_vs_swap_bake_and_load"] >= 5,
    }
    write_result(args.out, result)
    for name, s in med.items():
        print(f"{name:>28}: {s * 1000:9.1f} ms / batch of {batch}  ({batch / s:7.1f} img/s)")
    for key in (
        "modulation_overhead_pct",
        "many_vs_one_user_pct",
        "speedup_vs_swap_bake_and_load",
        "speedup_vs_swap_load_prebaked",
    ):
        print(f"{key}: {result[key]:.2f}")


if __name__ == "__main__":
    main()
