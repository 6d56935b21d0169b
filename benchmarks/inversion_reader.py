#!/usr/bin/env python3
"""Seconds per image of the inversion reader against the model's CNN extractor, in the same run, \
and of its angle search.

    python benchmarks/inversion_reader.py [--model BUNDLE] [--size 256] [--steps 50] [--batches 1 2] [--device cpu]

The reader's cost is `steps` forward and backward passes of the decoder, whatever the weights, so the default model is
an untrained TAEF2 one with non-trivial scales. The angle search is timed on a decoder-made image upright (the coarse
stage alone) and turned by 12.4 degrees (every stage). Writes benchmarks/results/inversion_reader.json.
"""

from __future__ import annotations

import argparse
import platform

import torch
from _results import write_result
from decode_modulation import ROOT, load_model
from matching import timed


def seconds(fn, repeats: int = 2, warm_up: bool = True) -> float:
    """Best of `repeats`: the least disturbed by other load."""
    if warm_up:
        fn()
    return min(timed(fn, repeats))


def main() -> None:
    from genprint.allocator import keep_freed_memory
    from genprint.model import default_device

    keep_freed_memory()  # as every genprint process does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle directory (default: an untrained TAEF2 model)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inversion_reader.json"))
    args = parser.parse_args()

    from genprint.inversion import InversionReader, rotated

    model = load_model(args.model, 48, args.device)
    reader = InversionReader(model, steps=args.steps)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rows = []
    for batch in args.batches:
        images = torch.rand(batch, 3, args.size, args.size, device=args.device)

        def cnn():
            with torch.no_grad():
                model.extract(images)
            sync()

        extractor = seconds(cnn) / batch
        inversion = seconds(lambda: reader.logits(images), repeats=1, warm_up=False) / batch  # tens of seconds: once
        with torch.no_grad():
            made = model.re_render(images)
            turned = rotated(made, torch.full((batch,), 12.4, device=args.device))
            search = {
                name: seconds(lambda: [reader.find_rotation(x[None]) for x in imgs], repeats=1, warm_up=False) / batch
                for name, imgs in (("upright", made), ("turned", turned))
            }
        rows.append(
            {
                "batch": batch,
                "inversion_s_per_image": inversion,
                "cnn_s_per_image": extractor,
                "ratio": inversion / extractor,
                "angle_search_s_per_image": search,
            }
        )
        print(
            f"batch {batch}: inversion ({args.steps} steps, with its angle search) {inversion:.2f} s/img   "
            f"CNN extractor {extractor:.3f} s/img   x{inversion / extractor:.0f}   "
            f"angle search alone: upright {search['upright']:.2f} s/img, "
            f"turned {search['turned']:.2f} s/img",
            flush=True,
        )
    write_result(
        args.out,
        {
            "benchmark": "inversion_reader",
            "size": args.size,
            "steps": args.steps,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "extractor": model.extractor.config,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
