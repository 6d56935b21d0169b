#!/usr/bin/env python3
"""Plot a training run's learning curve from the `curve.jsonl` that `genprint train` appends beside its checkpoints.

    .venv/bin/python scripts/training_curve.py CHECKPOINTS/curve.jsonl --out curve.png

Top: held-out bit accuracy (256 px crops, read through the reader's margin; and, where the run records it, the same
crops decoded inside a frame and read without it, so the decoder's edges are out of view) and the training stream's,
against steps, with the curriculum's stages marked; bottom: held-out PSNR and the curriculum's PSNR target. The top
axis gives the hours of training. Prints the rows as a table too. `--audio` labels an audio run's curve: its held-out
rows read the first 2 s of 16 held-out clips, and its quality column is SNR against the original decoder.
"""

import argparse
import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curve", help="curve.jsonl")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--audio", action="store_true", help="an audio run: SNR, held-out clips")
    args = parser.parse_args()
    with open(args.curve) as f:
        rows = {r["step"]: r for r in map(json.loads, filter(str.strip, f))}  # a resumed run may repeat a step
    if not rows:
        sys.exit(f"error: no rows in {args.curve}")
    rows = [rows[s] for s in sorted(rows)]
    for r in rows:
        held_out = f"held-out {r['held_out_bit_acc']:.3f} at {r['held_out_psnr']:.1f} dB"
        if "held_out_framed_bit_acc" in r:
            held_out += f" (framed {r['held_out_framed_bit_acc']:.3f})"
        stream = f"stream {r['stream_bit_acc']:.3f}"
        print(f"step {r['step']:>6}  {r['hours']:6.2f} h  {held_out}  {stream}  {r.get('stage', '')}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    held_out, quality = ("first 2 s of held-out clips", "SNR") if args.audio else ("256 px", "PSNR")
    top.plot(steps, [r["held_out_bit_acc"] for r in rows], "o-", ms=3, label=f"held-out bit accuracy ({held_out})")
    framed = [(r["step"], r["held_out_framed_bit_acc"]) for r in rows if "held_out_framed_bit_acc" in r]
    if framed:
        top.plot(*zip(*framed), "s-", ms=3, label="held-out, decoded in a 128 px frame, read without it")
    top.plot(steps, [r["stream_bit_acc"] for r in rows], lw=0.8, alpha=0.6, label="training stream")
    top.axhline(0.99, color="k", ls="--", lw=0.6)
    top.set_ylim(0.45, 1.0)
    top.set_ylabel("bit accuracy")
    bottom.plot(steps, [r["held_out_psnr"] for r in rows], "o-", ms=3, label=f"held-out {quality}")
    if "psnr_target" in rows[0]:
        bottom.plot(steps, [r["psnr_target"] for r in rows], lw=0.8, label=f"curriculum's {quality} target (stream)")
    if "stream_psnr_smoothed" in rows[0]:
        smoothed = [r["stream_psnr_smoothed"] for r in rows]
        bottom.plot(steps, smoothed, lw=0.8, label=f"stream {quality}, smoothed (what the curriculum steers)")
    if not args.audio:
        bottom.axhline(32, color="k", ls="--", lw=0.6)  # issue #28's PSNR target
    bottom.set_ylabel("dB")
    bottom.set_xlabel("step")
    for first, second in zip(rows, rows[1:]):  # where the curriculum moved to its next stage
        if first.get("stage") != second.get("stage"):
            for ax in (top, bottom):
                ax.axvline(second["step"], color="grey", lw=0.6, ls=":")
            top.annotate(second["stage"], (second["step"], 0.99), fontsize=7, rotation=90, va="top")
    hours = top.secondary_xaxis("top", functions=(lambda s: _interp(s, steps, rows), lambda h: h))
    hours.set_xlabel("hours of training")
    top.legend(fontsize=8, loc="lower right")
    bottom.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


def _interp(step, steps, rows):
    """Hours of training at `step` (linear between logged rows)."""
    import numpy as np

    return np.interp(step, steps, [r["hours"] for r in rows])


if __name__ == "__main__":
    main()
