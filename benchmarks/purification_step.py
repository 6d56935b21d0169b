#!/usr/bin/env python3
"""Whether one gradient step models purification: the question a training-time adversary against it must answer.

    python benchmarks/purification_step.py [--model BUNDLE] [--photos 8] [--steps 10]

Purification (`weights.finetune` towards the photos, as `genprint attack-weights --kind purify` runs it) removes a
baked code with Adam steps of lr 1e-4 while the output keeps its quality. Training against it is affordable only if a
cheap stand-in does the same: here one sign-gradient step of the same loss at several sizes (Adam's first step is a
sign step of its learning rate). For a random user's baked decoder of the bundle, each prints and records the output
PSNR against the fingerprinted decoder's, the CNN's bit accuracy on held-out photos, and the mean weight change.
Writes benchmarks/results/purification_step.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _results import write_result

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = [1e-5, 3e-5, 1e-4, 3e-4]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="bundle (default: genprint's shipped bundle)")
    parser.add_argument("--photos", type=int, default=8, help="held-out photos rendered (256 px)")
    parser.add_argument("--steps", type=int, default=10, help="purification steps to compare with")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "purification_step.json"))
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from genprint import weights
    from genprint.bundle import load_bundle
    from genprint.data import resolve_photos, split
    from genprint.evaluation import held_out_photos
    from genprint.metrics import psnr
    from genprint.readers import make_reader
    from pipelines.tracking import resolve_model

    torch.manual_seed(0)
    model = load_bundle(resolve_model(args.model))
    reader = make_reader(model, "cnn")
    holdout = model.bundle_config.get("train", {}).get("holdout", 0.2)
    photos = torch.stack(held_out_photos(resolve_photos(None), holdout, 256, args.photos))
    train_photos, _ = split(resolve_photos(None), holdout)
    bits = torch.randint(0, 2, (model.nbits,)).numpy()
    with torch.no_grad():
        latents = model.encode(photos)
    state = {k: v.detach() for k, v in model.bake(bits).state_dict().items()}

    def decoder(st):
        d = model.adapter.copy_decoder()
        d.load_state_dict(st)
        return d

    def render(st):
        with torch.no_grad():
            return model.adapter.decode(latents, decoder=decoder(st))

    clean = render(state)
    rows = []

    def record(name: str, st: dict) -> None:
        hit = render(st)
        change = [float((st[k] - v).abs().mean()) for k, v in state.items() if v.is_floating_point()]
        rows.append(
            {
                "attack": name,
                "output_psnr_db": float(psnr(hit, clean).mean()),
                "bit_accuracy": float(((reader.logits(hit) > 0) == bits).mean()),
                "mean_weight_change": float(np.mean(change)),
            }
        )
        print(rows[-1], flush=True)

    bank = weights.finetuning_bank(model, train_photos, target="photos")
    record(f"purification, {args.steps} Adam steps at lr 1e-4", weights.finetune(model, state, bank, args.steps))
    fit_latents, target = bank.pairs(model, 8)
    for size in SIZES:
        d = decoder(state).requires_grad_(True)
        grads = torch.autograd.grad(
            F.mse_loss(model.adapter.decode(fit_latents, decoder=d), target), list(d.parameters())
        )
        with torch.no_grad():
            for p, g in zip(d.parameters(), grads):
                p.sub_(size * g.sign())
        record(f"one sign step of {size:g}", {k: v.detach() for k, v in d.state_dict().items()})
    write_result(args.out, {"model": model.bundle_config["model_id"], "photos": args.photos, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
