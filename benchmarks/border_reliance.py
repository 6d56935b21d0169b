#!/usr/bin/env python3
"""Where in the image a bundle's CNN extractor reads the code: its borders, its grid phase, or its interior.

    python benchmarks/border_reliance.py --model BUNDLE [--photos 16] [--size 256]

The decoder pads with zeros, so near its output's edges a code can make a signal that content does not mask, and
the decoder's 8 px grid gives every pixel a phase. A reader that leans on either loses the code to any crop, pad or
rotation. On held-out photos (two fingerprints each, as `genprint eval` draws them) it reports:
- bit accuracy of the clean image read whole, with its borders cut off (in whole grid cells, so the phase is kept),
  one side at a time or all four, read in halves or only its centre, shifted off the grid by a few px, and framed by
  black or grey (the phase kept);
- bit accuracy when the decoder's own edges move: the latent's left half decoded alone, and the image decoded inside
  a frame of 128 px (the latent extended by reflection) and read without it. A code anchored to the decoder's zero
  padding at any depth (not only the outermost px the cuts above remove) reads there as it does whole only if it
  lies in the content;
- the RMS difference from the original decoder's output by distance from the border: where the code's energy sits.
Seconds are wall-clock on the machine it runs on. Writes benchmarks/results/border_reliance.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from _results import write_result
from decode_modulation import ROOT

BANDS = [(0, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10_000)]


def views(size: int) -> dict:
    """Name -> a function of one image (3, H, W), each a view a crop, pad or shift of the upload would give."""
    half = size // 2
    out = {"whole": lambda x: x}
    out |= {f"borders cut, {c} px": (lambda c: lambda x: x[:, c:-c, c:-c])(c) for c in (8, 16, 32, 64)}
    out |= {"left half": lambda x: x[..., :half], "right half": lambda x: x[..., half:]}
    sides = {"left": np.s_[..., 32:], "right": np.s_[..., :-32], "top": np.s_[..., 32:, :]}
    sides["bottom"] = np.s_[..., :-32, :]
    out |= {f"{side} 32 px cut": (lambda s: lambda x: x[s])(cut) for side, cut in sides.items()}
    out |= {"centre, half the side": lambda x: x[..., half // 2 : half // 2 + half, half // 2 : half // 2 + half]}
    out |= {
        f"shifted {a},{b} px": (lambda a, b: lambda x: x[:, a:, b:])(a, b) for a, b in ((0, 1), (1, 1), (4, 4), (8, 8))
    }
    out |= {
        f"{name} frame, 8 px": (lambda v: lambda x: F.pad(x, (8, 8, 8, 8), value=v))(v)
        for name, v in (("black", 0.0), ("grey", 0.5))
    }
    return out


def decoder_edge_views(model, latents: torch.Tensor, bits: np.ndarray, frame: int = 128) -> dict[str, float]:
    """Bit accuracy with the decoder's edges moved: the latents' left half decoded alone, and the whole decoded with
    `frame` px more on each side (the latent reflected) and read without that frame (genprint.framing)."""
    from genprint.framing import framed_model, reflect_frame

    framed_latents = reflect_frame(latents, frame, model.adapter.downscale)
    cases = {
        "left half, decoded alone": (latents[..., : latents.shape[-1] // 2], 0),
        f"decoded in a {frame} px frame, read without it": (framed_latents, frame),
    }
    accuracy = {}
    for name, (source, context) in cases.items():
        with framed_model(model, context):
            read = [
                (model.extract(model.decode(source[i : i + 8], bits[i : i + 8])) > 0).numpy()
                for i in range(0, len(source), 8)
            ]
        accuracy[name] = float((np.concatenate(read) == bits).mean())
    return accuracy


def band_rms(difference: torch.Tensor) -> dict[str, float]:
    """RMS of `difference` (B, 3, H, W) over pixels whose distance from the nearest edge lies in each band."""
    h, w = difference.shape[-2:]
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dist = torch.minimum(torch.minimum(y, h - 1 - y), torch.minimum(x, w - 1 - x))
    energy = difference.pow(2).mean((0, 1))
    return {
        f"{lo}-{hi if hi < 10_000 else 'centre'} px": float(energy[(dist >= lo) & (dist < hi)].mean().sqrt())
        for lo, hi in BANDS
        if ((dist >= lo) & (dist < hi)).any()
    }


def main() -> None:
    from genprint.allocator import keep_freed_memory

    keep_freed_memory()  # as every genprint process does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained bundle directory")
    parser.add_argument("--photos", type=int, default=None, help="held-out photos (default: all that are large enough)")
    parser.add_argument("--size", type=int, default=256, help="centre crop of each photo")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "border_reliance.json"))
    args = parser.parse_args()

    from genprint.bundle import load_bundle
    from genprint.data import resolve_photos
    from genprint.evaluation import held_out_photos
    from genprint.fingerprint import random_fingerprints

    started = time.perf_counter()
    model = load_bundle(args.model).eval()
    photos = held_out_photos(resolve_photos(None), model.bundle_config["train"]["holdout"], args.size, args.photos)
    if not photos:
        raise SystemExit(f"no held-out photo is at least {args.size} px")
    sources = torch.stack(photos).repeat_interleave(2, 0)
    bits = random_fingerprints(len(sources), model.nbits, rng=np.random.default_rng(0))
    with torch.no_grad():
        latents = torch.cat([model.encode(sources[i : i + 8]) for i in range(0, len(sources), 8)])
        marked, original = [], []
        for i in range(0, len(sources), 8):  # 8 at a time: bounded memory
            marked.append(model.decode(latents[i : i + 8], bits[i : i + 8]))
            original.append(model.decode_reference(latents[i : i + 8]))
        marked, original = torch.cat(marked), torch.cat(original)
        accuracy = {}
        for name, view in views(args.size).items():
            read = np.concatenate([(model.extract(view(x)[None]) > 0).numpy() for x in marked])
            accuracy[name] = float((read == bits).mean())
            print(f"{name}: bit accuracy {accuracy[name]:.3f}", flush=True)
        for name, value in decoder_edge_views(model, latents, bits).items():
            accuracy[name] = value
            print(f"{name}: bit accuracy {value:.3f}", flush=True)
    energy = band_rms(marked - original)
    print(
        "RMS difference from the original decoder by distance from the border: "
        + ", ".join(f"{k} {v:.4f}" for k, v in energy.items())
    )
    write_result(
        args.out,
        {
            "benchmark": "border_reliance",
            "model_id": model.bundle_config["model_id"],
            "images": len(marked),
            "size": args.size,
            "bit_accuracy": accuracy,
            "rms_difference_by_border_distance": energy,
            "extractor": model.extractor.config,
            "seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    )


if __name__ == "__main__":
    main()
