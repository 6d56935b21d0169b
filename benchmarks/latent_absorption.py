#!/usr/bin/env python3
"""How much of a bundle's fingerprint a latent change can reproduce, and what that costs the inversion reader.

    python benchmarks/latent_absorption.py --model BUNDLE [--photos 4] [--attacks noise_0.1,noise_0.2,blur_k5,jpeg_50]

The inversion reader fits a latent and a code together. Whatever part of the code's image change some other latent
could also make, the fitted latent can take, and the code is then read from the rest. Two measurements, on held-out
photos:
- absorbed: for each photo, a latent change is fitted (Adam, `--absorb-steps`) so that the decoder with the neutral
  code (every scale 1) reproduces the fingerprinted image, with and without a Gaussian blur (k5) applied to both; it
  reports the fraction of the fingerprint's energy that is left over;
- reading: bit accuracy under each attack, with the latent fitted from the encoder's estimate (the reader as shipped,
  without its angle search, since none of these attacks turns the image), with the generating latent held fixed, and
  held where a code-blind encoder would put it: the stock encoder's estimate of the unfingerprinted rendering of the
  same latent under the same attack (what an encoder that ignores the code but still sees the attack could do).
Seconds are wall-clock on the machine it runs on. Writes benchmarks/results/latent_absorption.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _results import write_result
from decode_modulation import ROOT


def photo_batch(holdout: float, count: int, size: int) -> torch.Tensor:
    """Centre crops of `count` photos from the `holdout` split that training never saw."""
    from genprint.data import resolve_photos
    from genprint.evaluation import held_out_photos

    crops = held_out_photos(resolve_photos(None), holdout, size, count)
    if len(crops) < count:
        raise SystemExit(f"only {len(crops)} held-out photos are at least {size} px; ask for fewer")
    return torch.stack(crops)


def under(attack, images: torch.Tensor) -> torch.Tensor:
    """`images` each through `attack` (None: as they are), image j with seed j: every reading of image j sees one
    draw."""
    return images if attack is None else torch.stack([attack(x, seed=j) for j, x in enumerate(images)])


def fingerprinted(model, count: int, size: int):
    """`count` held-out photos at `size` px, one random fingerprint each: (bits, latents, fingerprinted images, images
    decoded by the fine-tuned decoder with the neutral code)."""
    from genprint.fingerprint import random_fingerprints

    photos = photo_batch(model.bundle_config["train"]["holdout"], count, size)
    bits = random_fingerprints(count, model.nbits, rng=np.random.default_rng(5))
    with torch.no_grad():
        latents = model.encode(photos)
        return bits, latents, model.decode(latents, bits), model.decode(latents)


def left_over(
    model, latents: torch.Tensor, marked: torch.Tensor, unmarked: torch.Tensor, blur: int, steps: int
) -> list[float]:
    """Per image: the fraction of (blurred) fingerprint energy no latent change found by Adam reproduces."""
    from genprint.attacks.ops import gaussian_blur

    seen = (lambda x: gaussian_blur(x, blur)) if blur else (lambda x: x)
    delta = torch.zeros_like(latents, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=0.02)
    for _ in range(steps):
        loss = (seen(model.decode(latents + delta)) - seen(marked)).pow(2).mean()
        (delta.grad,) = torch.autograd.grad(loss, [delta])
        optimizer.step()
    with torch.no_grad():
        rest = (seen(model.decode(latents + delta)) - seen(marked)).pow(2).flatten(1).sum(1)
        return (rest / (seen(marked) - seen(unmarked)).pow(2).flatten(1).sum(1)).tolist()


def main() -> None:
    from genprint.allocator import keep_freed_memory

    keep_freed_memory()  # as every genprint process does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained bundle directory")
    parser.add_argument("--photos", type=int, default=4, help="held-out photos read under each attack")
    parser.add_argument("--size", type=int, default=256, help="centre crop read by the reader")
    parser.add_argument(
        "--attacks", default="noise_0.1,noise_0.2,blur_k5,jpeg_50", help="evaluation attacks, comma separated"
    )
    parser.add_argument("--steps", type=int, default=50, help="inversion reader steps")
    parser.add_argument("--absorb-photos", type=int, default=3)
    parser.add_argument("--absorb-size", type=int, default=128)
    parser.add_argument("--absorb-steps", type=int, default=300)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latent_absorption.json"))
    args = parser.parse_args()

    from genprint.attacks import attack_suite
    from genprint.bundle import load_bundle
    from genprint.inversion import InversionReader

    started = time.perf_counter()
    model = load_bundle(args.model)
    attacks = {a.name: a for a in attack_suite(None)}
    unknown = [a for a in args.attacks.split(",") if a not in attacks]
    if unknown:
        raise SystemExit(f"unknown attacks {unknown}")

    _, latents, marked, unmarked = fingerprinted(model, args.absorb_photos, args.absorb_size)
    absorbed = {}
    for blur in (0, 5):
        name = f"blur_k{blur}" if blur else "clean"
        absorbed[name] = left_over(model, latents, marked, unmarked, blur, args.absorb_steps)
        print(
            f"{name}: fingerprint energy left over after the latent fit: {np.round(absorbed[name], 3).tolist()}",
            flush=True,
        )

    bits, latents, marked, unmarked = fingerprinted(model, args.photos, args.size)
    fitted = InversionReader(model, steps=args.steps, max_rotation=0)
    held = InversionReader(model, steps=args.steps, max_rotation=0, latent_lr=0)
    reading = {}
    for name in ["clean"] + args.attacks.split(","):
        uploads = under(attacks.get(name), marked)  # "clean" names no attack
        with torch.no_grad():
            code_blind = model.encode(under(attacks.get(name), unmarked))
        reads = {
            "fitted_latent": fitted.logits(uploads),
            "generating_latent": held.logits(uploads, latents),
            "code_blind_encoder": held.logits(uploads, code_blind),
        }
        reading[name] = row = {how: float(((r > 0) == bits).mean()) for how, r in reads.items()}
        print(
            f"{name}: bit accuracy, latent fitted {row['fitted_latent']:.3f}, "
            f"generating latent held {row['generating_latent']:.3f}, "
            f"code-blind encoder's latent held {row['code_blind_encoder']:.3f}",
            flush=True,
        )
    write_result(
        args.out,
        {
            "benchmark": "latent_absorption",
            "model_id": model.bundle_config["model_id"],
            "absorb": {
                "photos": args.absorb_photos,
                "size": args.absorb_size,
                "steps": args.absorb_steps,
                "left_over_fraction": absorbed,
            },
            "reading": {"photos": args.photos, "size": args.size, "steps": args.steps, "bit_accuracy": reading},
            "seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    )


if __name__ == "__main__":
    main()
