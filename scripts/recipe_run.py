#!/usr/bin/env python3
"""Short training runs behind the README's second table ("Training: what was measured").

    .venv/bin/python scripts/recipe_run.py RUN [STEPS]          # a named run below, e.g. M
    .venv/bin/python scripts/recipe_run.py NAME '{"lr": 0.01}' STEPS   # any overrides of the `smoke` config

Every `log_every` steps it prints the training-stream bit accuracy and PSNR. Every 100 steps it also prints them on
128 crops of held-out photos, with codes the run never trained on. One thread per run, so two runs share the 2 cores.
Runs D-F were made before the high-pass reader divided each image by its own contrast (G is E with it),
so today they run with that reader.
"""
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from genprint.config import load_config  # noqa: E402
from genprint.data import LatentBank, resolve_photos, split  # noqa: E402
from genprint.metrics import bit_accuracy, psnr  # noqa: E402
from genprint.training import Trainer  # noqa: E402

DECODER_TUNED = {"start": 0, "end": 1e-4, "begin": 0, "finish": 100}
LATE_QUALITY = {"start": 0, "end": 10, "begin": 300, "finish": 400}
EARLY_QUALITY = {"start": 10, "end": 100, "begin": 100, "finish": 400}
RUNS = {  # overrides of today's `smoke` (which is run K), and the steps each ran
    "D": ({"complementary_pairs": False, "lr": 1e-3, "quality_weight": LATE_QUALITY}, 400),
    "E": ({"lr": 1e-3, "quality_weight": LATE_QUALITY}, 400),
    "F": ({"quality_weight": LATE_QUALITY}, 400),
    "H": ({"decoder_lr": DECODER_TUNED, "quality_weight": LATE_QUALITY}, 400),
    "I": ({"decoder_lr": DECODER_TUNED, "quality_weight": EARLY_QUALITY}, 400),
    "J": ({"quality_weight": EARLY_QUALITY}, 400),
    "K": ({}, 400),
    "L": ({"quality_weight": {"start": 0, "end": 100, "begin": 300, "finish": 700}}, 800),
    "M": ({"decoder_lr": DECODER_TUNED, "quality_weight": {"start": 0, "end": 100, "begin": 300, "finish": 700}}, 800),
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
    _, held_out = split(resolve_photos(None), cfg.holdout)
    latents = LatentBank(trainer.model.encode, held_out, trainer.model.adapter.downscale, cfg.crop, seed=123).sample(128)
    bits = torch.randint(0, 2, (128, cfg.nbits), generator=torch.Generator().manual_seed(5)).float()

    def held_out_metrics() -> tuple[float, float]:
        model = trainer.model.eval()
        with torch.no_grad():
            images = model.decode(latents, bits)
            return (bit_accuracy(model.extract(images), bits).mean().item(),
                    psnr(images, model.decode_reference(latents)).mean().item())

    start = time.time()

    def report(step: int, s: dict) -> None:
        line = f"[{name}] {step} {time.time() - start:.0f}s bit_acc {s['bit_acc']:.3f} psnr {s['psnr']:.1f}"
        if step % 100 == 0:
            line += "  held-out bit_acc {:.3f} psnr {:.1f}".format(*held_out_metrics())
        print(line, flush=True)

    trainer.run(callback=report, progress=False)


if __name__ == "__main__":
    main()
