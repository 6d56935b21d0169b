#!/usr/bin/env python3
"""Which of TAEF2's convolutions should carry the code, for the inversion reader to read it \
through blur, noise and JPEG.

    python benchmarks/modulation_sites.py [--sites all,1/8,1/4,1/2,1/1] [--psnr 33]
        [--attacks noise_0.1,blur_k5,jpeg_50]

The inversion reader reads a code through the decoder itself, so it needs no trained mapping: any mapping whose code
changes the image will do. What it cannot read is the part of the code that a change of latent also makes
(docs/research.md, "Why blur, noise and JPEG fall short"), and that depends on where the code acts. For each site (the
residual blocks' 3x3 convs at one resolution, relative to the output's, or all 30), this gives a random linear mapping
(depth 0, the same seed at every site) whose strength is set by bisection so that the fingerprinted decoder's output
sits at `--psnr` dB from the original's on the held-out photos read. Every site then costs the same image quality, and
the reader (as shipped, without the angle search: no attack here turns the image) reads each attack on them. TAEF2 only.
Writes benchmarks/results/modulation_sites.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _results import write_result
from decode_modulation import ROOT
from latent_absorption import photo_batch, under

# TAEF2's residual blocks (decoder Sequential indices) by the resolution they work at, relative to the output's.
SITES = {"1/8": (3, 4, 5), "1/4": (8, 9, 10), "1/2": (13, 14, 15), "1/1": (18,)}


def site_patterns(site: str) -> list[str]:
    blocks = [b for s in SITES for b in SITES[s]] if site == "all" else SITES[site]
    return [f"{b}.conv.*" for b in blocks]


def calibrated(
    model, latents: torch.Tensor, reference: torch.Tensor, bits: np.ndarray, target_db: float, seed: int
) -> float:
    """Scale a random direction of the mapping's weights until the fingerprinted output sits at `target_db` (mean over
    the images) from `reference`, the original decoder's; returns the weights' standard deviation."""
    from genprint.metrics import psnr

    g = torch.Generator().manual_seed(seed)
    directions = [torch.randn(a.weight.shape, generator=g) for a in model.mapping.affines]
    with torch.no_grad():

        def db(std: float) -> float:
            for a, d in zip(model.mapping.affines, directions):
                a.weight.copy_(d * std)
            return float(psnr(model.decode(latents, bits), reference).mean())

        low, high = 1e-4, 3.0  # PSNR falls as std grows; 16 halvings of the log-interval: within 0.1 % in std
        for _ in range(16):
            mid = (low * high) ** 0.5
            low, high = (mid, high) if db(mid) > target_db else (low, mid)
        db(low)
    return low


def main() -> None:
    from genprint.allocator import keep_freed_memory

    keep_freed_memory()  # as every genprint process does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="all,1/8,1/4,1/2,1/1", help=f"comma separated: all, {', '.join(SITES)}")
    parser.add_argument("--psnr", type=float, default=33.0, help="fingerprinted vs original output, dB (target: >= 32)")
    parser.add_argument("--attacks", default="noise_0.1,blur_k5,jpeg_50", help="evaluation attacks, comma separated")
    parser.add_argument("--photos", type=int, default=4, help="held-out photos (the `smoke` bundle's holdout split)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="inversion reader steps")
    parser.add_argument("--seed", type=int, default=0, help="the mapping's random direction")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "modulation_sites.json"))
    args = parser.parse_args()

    from genprint.attacks import attack_suite
    from genprint.config import TrainConfig
    from genprint.fingerprint import random_fingerprints
    from genprint.generators import load_adapter_source
    from genprint.inversion import InversionReader
    from genprint.model import GenprintModel
    from genprint.settings import taef2_dir

    sites, names = args.sites.split(","), args.attacks.split(",")
    attacks = {a.name: a for a in attack_suite(None)}
    unknown = [s for s in sites if s != "all" and s not in SITES] + [a for a in names if a not in attacks]
    if unknown:
        raise SystemExit(f"unknown sites or attacks: {unknown}")
    if taef2_dir() is None:
        raise SystemExit("the shared TAEF2 weights were not found (set GENPRINT_SHARED)")
    started = time.perf_counter()
    adapter = load_adapter_source("taef2", taef2_dir())
    photos = photo_batch(TrainConfig().holdout, args.photos, args.size)
    bits = random_fingerprints(args.photos, 48, rng=np.random.default_rng(5))
    with torch.no_grad():  # the same at every site: outside a model's decode, no code is active in the decoder
        latents = adapter.encode(photos)
        reference = adapter.decode(latents)
    results = {}
    for site in sites:
        model = GenprintModel.create(adapter, 48, modulate=site_patterns(site), mapping={"depth": 0}).eval()
        std = calibrated(model, latents, reference, bits, args.psnr, args.seed)
        with torch.no_grad():
            marked = model.decode(latents, bits)
            rms = float((marked - reference).pow(2).mean().sqrt())
        reader = InversionReader(model, steps=args.steps, max_rotation=0)
        row = results[site] = {
            "convs": len(model.mapping.affines),
            "weight_std": round(std, 5),
            "rms_change": round(rms, 4),
            "bit_accuracy": {},
        }
        for name in ["clean"] + names:
            uploads = under(attacks.get(name), marked)  # "clean" names no attack
            row["bit_accuracy"][name] = accuracy = float(((reader.logits(uploads) > 0) == bits).mean())
            print(f"site {site} ({row['convs']} convs, RMS change {rms:.4f}): {name} {accuracy:.3f}", flush=True)
    write_result(
        args.out,
        {
            "benchmark": "modulation_sites",
            "psnr_db": args.psnr,
            "photos": args.photos,
            "size": args.size,
            "steps": args.steps,
            "seed": args.seed,
            "sites": results,
            "seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    )


if __name__ == "__main__":
    main()
