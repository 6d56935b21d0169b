#!/usr/bin/env python3
"""Plot a training run's stream from the logs `genprint train` writes (one resumed run may span several logs).

    .venv/bin/python scripts/training_curve.py LOG [LOG ...] --out curve.png [--window 1000]

Reads the `step N/M  bit_acc A  psnr P dB` lines; a later log's steps replace an earlier one's, so a resumed run's
logs can be given in any order. Prints and plots the mean bit accuracy and PSNR over each `--window` steps.
"""

import argparse
import re
import sys

LINE = re.compile(r"step (\d+)/\d+\s+bit_acc ([\d.]+)\s+psnr ([\d.]+) dB")


def read_logs(paths: list[str]) -> dict[int, tuple[float, float]]:
    points: dict[int, tuple[float, float]] = {}
    for path in paths:
        with open(path) as log:
            for match in map(LINE.search, log):
                if match:
                    points[int(match[1])] = float(match[2]), float(match[3])
    return points


def window_means(points: dict[int, tuple[float, float]], window: int) -> list[tuple[int, int, float, float]]:
    """(first step, last logged step, mean bit accuracy, mean PSNR) of each window of `window` steps."""
    windows: dict[int, dict[int, tuple[float, float]]] = {}
    for step, value in points.items():
        windows.setdefault((step - 1) // window, {})[step] = value
    return [
        (k * window + 1, max(v), sum(a for a, _ in v.values()) / len(v), sum(p for _, p in v.values()) / len(v))
        for k, v in sorted(windows.items())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--window", type=int, default=1000)
    args = parser.parse_args()
    points = read_logs(args.logs)
    if not points:
        sys.exit(f"error: no `step N/M  bit_acc ...` lines in {', '.join(args.logs)}")
    means = window_means(points, args.window)
    for first, last, acc, db in means:
        print(f"steps {first:>6}-{last:<6} bit_acc {acc:.3f}  psnr {db:.1f} dB")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(points)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(steps, [points[s][0] for s in steps], lw=0.5, alpha=0.4, label="logged")
    middles = [(first + last) / 2 for first, last, _, _ in means]
    top.plot(middles, [acc for _, _, acc, _ in means], "o-", label=f"mean over {args.window} steps")
    top.set_ylabel("training bit accuracy")
    top.legend()
    bottom.plot(steps, [points[s][1] for s in steps], lw=0.5, alpha=0.4)
    bottom.plot(middles, [db for _, _, _, db in means], "o-")
    bottom.set_ylabel("PSNR vs original (dB)")
    bottom.set_ylim(bottom=max(0.0, min(p for _, p in points.values()) - 1))
    bottom.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
