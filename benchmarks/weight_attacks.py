#!/usr/bin/env python3
"""Research question 2: attacks on a leaked decoder's weights, read black-box (its images) and white-box (its weights).

    python benchmarks/weight_attacks.py [--model BUNDLE] [--users 10000] [--photos 8]

For each attack and strength (Gaussian noise at a fraction of each tensor's std, magnitude pruning, int8 round trip,
fine-tuning towards the original decoder, purification (fine-tuning towards the photos themselves, no original decoder
needed), averaging two users' decoders) on users' baked decoders: the PSNR of the
attacked decoder's output against the fingerprinted decoder's, on held-out photos (256 px); black-box, the CNN's bit
accuracy and soft attribution among --users simulated users on those renders; white-box, the bit accuracy of the code
recovered from the weights (genprint.weights) and whether it attributes. Writes benchmarks/results/weight_attacks.json
and a plot of attribution against output PSNR per attack. Fine-tuning and purification cost 1-4 s a step on 2 CPU
cores: all attacks at the default lengths and leakers take hours, so choose with --attacks and --finetune-steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _results import write_result

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STRENGTHS = {
    "noise": [0.01, 0.02, 0.05, 0.1, 0.2, 0.3],
    "prune": [0.1, 0.3, 0.5, 0.7],
    "int8": [0],
    "finetune": [50, 200, 500],
    "purify": [50, 200, 500],
    "average": [0],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="bundle (default: genprint's shipped bundle)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=8, help="held-out photos each decoder renders (256 px)")
    parser.add_argument("--leakers", type=int, default=4, help="users whose decoders are attacked")
    parser.add_argument(
        "--finetune-steps",
        default=",".join(map(str, STRENGTHS["finetune"])),
        help="fine-tuning and purification attack lengths, comma separated (about a second a step on 2 CPU cores)",
    )
    parser.add_argument("--attacks", default=",".join(STRENGTHS), help="which attacks, comma separated")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "weight_attacks.json"))
    args = parser.parse_args()
    STRENGTHS["finetune"] = STRENGTHS["purify"] = [int(s) for s in args.finetune_steps.split(",") if s]
    unknown = set(args.attacks.split(",")) - set(STRENGTHS)
    if unknown:
        parser.error(f"--attacks: no attack {', '.join(sorted(unknown))} (choose from {', '.join(STRENGTHS)})")
    for kind in set(STRENGTHS) - set(args.attacks.split(",")):
        del STRENGTHS[kind]

    import torch

    from genprint import weights
    from genprint.allocator import keep_freed_memory
    from genprint.bundle import load_bundle
    from genprint.data import resolve_photos, split
    from genprint.evaluation import SimulatedRegistry, held_out_photos
    from genprint.fingerprint import random_fingerprints
    from genprint.metrics import psnr
    from genprint.readers import make_reader
    from pipelines.tracking import resolve_model

    keep_freed_memory()
    bundle = resolve_model(args.model)
    model = load_bundle(bundle)
    reader = make_reader(model, "cnn")
    holdout = model.bundle_config.get("train", {}).get("holdout", 0.2)
    photos = torch.stack(held_out_photos(resolve_photos(None), holdout, 256, args.photos))
    train_photos, _ = split(resolve_photos(None), holdout)
    registry = SimulatedRegistry(random_fingerprints(args.users, model.nbits, rng=np.random.default_rng(0)), 1e-6)
    leakers = list(range(args.leakers))
    with torch.no_grad():
        latents = model.encode(photos)

    def renders(state) -> torch.Tensor:
        decoder = model.adapter.copy_decoder()
        decoder.load_state_dict(state)
        with torch.no_grad():
            return model.adapter.decode(latents, decoder=decoder)

    baked = {u: {k: v.detach() for k, v in model.bake(registry.bits[u]).state_dict().items()} for u in leakers + [99]}
    rows, banks = [], {}
    for kind, strengths in STRENGTHS.items():
        for strength in strengths:
            for u in leakers:
                state = baked[u]
                if kind == "noise":
                    attacked = weights.noise(state, strength, seed=u)
                elif kind == "prune":
                    attacked = weights.prune(state, strength)
                elif kind == "int8":
                    attacked = weights.int8(state)
                elif kind == "average":
                    attacked = weights.average(state, baked[99])
                else:  # finetune (towards the original decoder) or purify (towards the photos)
                    if kind not in banks:  # prepared once, drawn on by every row of its attack
                        target = "photos" if kind == "purify" else "original"
                        banks[kind] = weights.finetuning_bank(model, train_photos, target=target)
                    attacked = weights.finetune(model, state, banks[kind], int(strength))
                clean, hit = renders(state), renders(attacked)
                logits = reader.logits(hit)
                best, _, attributed = registry.soft(logits)
                recovered = weights.recover_logits(model, attacked)
                w_best, _, w_attributed = registry.soft(weights.code_logits(recovered)[None])
                truth = registry.bits[u]
                rows.append(
                    {
                        "attack": kind,
                        "strength": strength,
                        "user": u,
                        "output_psnr_db": float(psnr(hit, clean).mean()),
                        "black_box_bit_accuracy": float(((logits > 0) == truth).mean()),
                        "black_box_attributed": float((attributed & (best == u)).mean()),
                        "white_box_bit_accuracy": float(((recovered > 0) == truth).mean()),
                        "white_box_attributed": bool(w_attributed[0] and w_best[0] == u),
                        "weights_explained": weights.untouched_share(model, attacked),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for row in rows:
        key = f"{row['attack']} {row['strength']:g}"
        summary.setdefault(key, []).append(row)
    table = {
        k: {
            m: float(np.mean([r[m] for r in v]))
            for m in (
                "output_psnr_db",
                "black_box_bit_accuracy",
                "black_box_attributed",
                "white_box_bit_accuracy",
                "white_box_attributed",
            )
        }
        for k, v in summary.items()
    }
    plot(table, Path(args.out).with_suffix(".png"))
    write_result(
        args.out,
        {
            "benchmark": "weight_attacks",
            "model_id": model.bundle_config["model_id"],
            "users": args.users,
            "photos": len(photos),
            "leakers": args.leakers,
            "table": table,
            "rows": rows,
        },
    )
    return 0


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind in STRENGTHS:
        points = sorted(
            (v["output_psnr_db"], v["black_box_attributed"], v["white_box_attributed"])
            for k, v in table.items()
            if k.startswith(kind + " ")
        )
        if points:
            x = [min(p[0], 60) for p in points]
            ax.plot(x, [p[1] for p in points], "o-", label=f"{kind}: black-box")
            ax.plot(x, [p[2] for p in points], "x--", label=f"{kind}: white-box")
    ax.axvline(25, color="k", ls=":", lw=0.8)
    ax.set_xlabel("attacked decoder's output vs the fingerprinted one, PSNR (dB; 60 = unchanged)")
    ax.set_ylabel("attributed to the leaking user")
    ax.invert_xaxis()
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
