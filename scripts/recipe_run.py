#!/usr/bin/env python3
"""Short training runs behind the second table of docs/research.md ("Training: what was measured").

    .venv/bin/python scripts/recipe_run.py RUN [STEPS]          # a named run below, e.g. M
    .venv/bin/python scripts/recipe_run.py NAME '{"lr": 0.01}' STEPS   # any overrides of the `smoke` config

Every `log_every` steps it prints the training-stream bit accuracy and PSNR. Every 100 steps it also prints them on
128 crops of held-out photos, with codes the run never trained on. One thread per run, so two runs share the 2 cores.
Runs D-F were made before the high-pass reader divided each image by its own contrast (G is E with it),
so today they run with that reader. D-M read the image alone; the R runs add the re-rendering residual.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from genprint.config import load_config  # noqa: E402
from genprint.evaluation import crop_metrics, held_out_crops  # noqa: E402
from genprint.training import Trainer  # noqa: E402

DECODER_TUNED = {"start": 0, "end": 1e-4, "begin": 0, "finish": 100}
LATE_QUALITY = {"start": 0, "end": 10, "begin": 300, "finish": 400}
EARLY_QUALITY = {"start": 10, "end": 100, "begin": 100, "finish": 400}
STAGED_QUALITY = {"start": 0, "end": 100, "begin": 300, "finish": 700}
K_QUALITY = {"start": 0, "end": 100, "begin": 150, "finish": 350}
IMAGE_READER = {"extractor": {"width": 64, "depth": 1, "downsamples": 0, "highpass": True}}  # D-M: no residual plane
DEEPER = {
    depth: {"extractor": {"width": 64, "depth": depth, "downsamples": depth // 4, "highpass": True, "residual": True}}
    for depth in (2, 4)
}  # X and RM2/RM4: `smoke`'s reader with more layers (depth 4 strides once)
RUNS = {  # overrides of today's `smoke` (which is run RK300), and the steps each ran
    "D": ({**IMAGE_READER, "complementary_pairs": False, "lr": 1e-3, "quality_weight": LATE_QUALITY}, 400),
    "E": ({**IMAGE_READER, "lr": 1e-3, "quality_weight": LATE_QUALITY}, 400),
    "F": ({**IMAGE_READER, "quality_weight": LATE_QUALITY}, 400),
    "H": ({**IMAGE_READER, "decoder_lr": DECODER_TUNED, "quality_weight": LATE_QUALITY}, 400),
    "I": ({**IMAGE_READER, "decoder_lr": DECODER_TUNED, "quality_weight": EARLY_QUALITY}, 400),
    "J": ({**IMAGE_READER, "quality_weight": EARLY_QUALITY}, 400),
    "K": ({**IMAGE_READER, "quality_weight": K_QUALITY}, 400),
    "L": ({**IMAGE_READER, "quality_weight": STAGED_QUALITY}, 800),
    "M": ({**IMAGE_READER, "decoder_lr": DECODER_TUNED, "quality_weight": STAGED_QUALITY}, 800),
    "RK": ({"quality_weight": K_QUALITY}, 400),
    "RK300": ({}, 300),
    "RM": ({"decoder_lr": DECODER_TUNED, "quality_weight": STAGED_QUALITY}, 800),
    "X2": (DEEPER[2], 300),
    "X4": (DEEPER[4], 300),
    "RM2": ({**DEEPER[2], "decoder_lr": DECODER_TUNED, "quality_weight": STAGED_QUALITY}, 800),
    "RM4": ({**DEEPER[4], "decoder_lr": DECODER_TUNED, "quality_weight": STAGED_QUALITY}, 800),
}


def main() -> None:
    name = sys.argv[1]
    if name in RUNS:
        overrides, steps = RUNS[name]
        steps = int(sys.argv[2]) if len(sys.argv) > 2 else steps
    else:
        overrides, steps = json.loads(sys.argv[2]), int(sys.argv[3])
    cfg = load_config("smoke", {"threads": 1, "log_every": 25, **overrides, "steps": steps})
    trainer = Trainer(cfg)
    held_out = held_out_crops(trainer.model, cfg, samples=128, seed=123, bits_seed=5)

    start = time.time()

    def report(step: int, s: dict) -> None:
        line = f"[{name}] {step} {time.time() - start:.0f}s bit_acc {s['bit_acc']:.3f} psnr {s['psnr']:.1f}"
        if step % 100 == 0:
            line += "  held-out bit_acc {:.3f} psnr {:.1f}".format(*crop_metrics(trainer.model, *held_out))
        print(line, flush=True)

    trainer.run(callback=report, progress=False)


if __name__ == "__main__":
    main()
