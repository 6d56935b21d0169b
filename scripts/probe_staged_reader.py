"""Probe: does a reader trained first, then frozen, let the mapping and decoder learn a code faster than the joint
recipe does? (docs/research.md, "Capacity at 32 dB", lever 1, and "The staged recipe, probed".)

  stage 1  either the `default` reader and a small HiDDeN-like encoder (image + broadcast bits -> residual, scaled to
           exactly --pretrain-psnr-start dB, rising to --pretrain-psnr and then the training attacks ramping in while
           the stream reads 0.9) train together on training-photo crops (resumable, OUT/stage1.pt); or, with
           --common-steps, the `default` recipe itself (from --init) with its quality target held at --common-psnr
           (resumable, OUT/common.pt);
  stage 2  two arms of --steps each under the `default` recipe with the quality target held at --psnr and no attacks:
           `frozen` reads with the stage-1 reader (weights and batch statistics fixed), `joint` trains its reader with
           everything else, as the recipe does; after the additive stage 1 both start from the original decoder.

Stage 1's additive code is read on held-out 256 px crops (OUT/probe.jsonl); the joint stages and the arms record
the training's learning curve on 32 held-out windows every --every steps (OUT/<stage>.jsonl). Run alone on the CPU.

    GENPRINT_SHARED=../shared python scripts/probe_staged_reader.py --out /tmp/staged --arms ""
    GENPRINT_SHARED=../shared python scripts/probe_staged_reader.py --out /tmp/joint --init CHECKPOINT_BUNDLE \
        --common-steps 400 --common-psnr 24 --psnr 30 --steps 300 --every 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genprint.config import load_config
from genprint.data import load_rgb, resolve_photos, split
from genprint.extractor import make_extractor
from genprint.metrics import bit_accuracy
from genprint.training import LearningCurve, Trainer, media


class AdditiveEncoder(nn.Module):
    """HiDDeN's shape, small: features of the image, the bits broadcast over them, a residual of fixed RMS."""

    def __init__(self, nbits: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()
        )
        self.out = nn.Sequential(nn.Conv2d(width + nbits + 3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 1))

    def forward(self, x: torch.Tensor, bits: torch.Tensor, psnr: float) -> torch.Tensor:
        m = (2 * bits - 1)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        r = self.out(torch.cat([self.features(x), m, x], 1))
        rms = r.pow(2).flatten(1).mean(1).sqrt().clamp_min(1e-8)[:, None, None, None]
        return (x + r * (10 ** (-psnr / 20)) / rms).clamp(0, 1)


def photo_crops(photos: list[torch.Tensor], size: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """`n` random `size`-px crops of `photos`."""
    out = []
    for _ in range(n):
        p = photos[int(torch.randint(len(photos), (1,), generator=gen))]
        i = int(torch.randint(p.shape[1] - size + 1, (1,), generator=gen))
        j = int(torch.randint(p.shape[2] - size + 1, (1,), generator=gen))
        out.append(p[:, i : i + size, j : j + size])
    return torch.stack(out)


def pretrain(config, args, log) -> nn.Module:
    train_paths, held_out_paths = split(resolve_photos(None), config.holdout)
    photos = [x for x in (load_rgb(p) for p in train_paths) if min(x.shape[-2:]) >= args.pretrain_crop]
    reader = make_extractor(config.nbits, config.extractor).to(memory_format=torch.channels_last)
    encoder = AdditiveEncoder(config.nbits).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(list(reader.parameters()) + list(encoder.parameters()), lr=1e-3)
    attacks = media("image").attacks(config.attacks, seed=3)
    jpeg80 = media("image").attacks({"jpeg": {"p": 1.0, "quality": [80, 80]}})
    gen, bits_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    held = photo_crops([load_rgb(p) for p in held_out_paths], 256, 32, torch.Generator().manual_seed(9))
    held_bits = torch.randint(0, 2, (32, config.nbits), generator=torch.Generator().manual_seed(5)).float()
    t0, acc, psnr, strength, start = time.time(), [], args.pretrain_psnr_start, 0.0, 0
    state_path = args.out / "stage1.pt"
    if state_path.exists():  # resume
        state = torch.load(state_path, weights_only=False)
        reader.load_state_dict(state["reader"])
        encoder.load_state_dict(state["encoder"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        bits_gen.set_state(state["bits_gen"])
        attacks.load_state_dict(state["attacks"])
        acc, psnr, strength, start = state["acc"], state["psnr"], state["strength"], state["step"]
    for step in range(start + 1, args.pretrain_steps + 1):
        # keyed on accuracy: while the stream reads 0.9, first the PSNR rises to its end, then the attacks ramp in
        if len(acc) >= 50 and sum(acc[-50:]) / 50 >= 0.9:
            if psnr < args.pretrain_psnr:
                psnr = min(args.pretrain_psnr, psnr + 0.02)
            else:
                strength = min(1.0, strength + 1 / 300)
        x = photo_crops(photos, args.pretrain_crop, args.pretrain_batch, gen)
        bits = torch.randint(0, 2, (len(x), config.nbits), generator=bits_gen).float()
        reader.train()
        y = encoder(x.contiguous(memory_format=torch.channels_last), bits, psnr)
        logits = reader(attacks(y, strength=strength))
        loss = F.binary_cross_entropy_with_logits(logits, bits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc.append(bit_accuracy(logits.detach(), bits).mean().item())
        if step % args.every == 0 or step == args.pretrain_steps:
            reader.eval()
            with torch.no_grad():
                coded = torch.cat([encoder(held[i : i + 8], held_bits[i : i + 8], psnr) for i in range(0, 32, 8)])
                held_acc = bit_accuracy(reader(coded), held_bits).mean().item()
                jpeg = bit_accuracy(reader(jpeg80(coded)), held_bits).mean().item()
            log(
                {
                    "stage": "pretrain",
                    "step": step,
                    "s": round(time.time() - t0),
                    "stream_acc": round(sum(acc[-50:]) / len(acc[-50:]), 4),
                    "psnr": round(psnr, 2),
                    "strength": round(strength, 3),
                    "held_out_acc": round(held_acc, 4),
                    "held_out_jpeg80": round(jpeg, 4),
                }
            )
            state = {
                "reader": reader.state_dict(),
                "encoder": encoder.state_dict(),
                "opt": opt.state_dict(),
                "gen": gen.get_state(),
                "bits_gen": bits_gen.get_state(),
                "attacks": attacks.state_dict(),
                "acc": acc[-50:],
                "psnr": psnr,
                "strength": strength,
                "step": step,
            }
            torch.save(state, state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
    return reader


def trained(config, path: Path | None = None) -> Trainer:
    """A Trainer on `config`, from the checkpoint at `path` when there is one."""
    torch.manual_seed(0)
    trainer = Trainer(config, photos=None)
    if path is not None and path.exists():
        trainer.load_state_dict(torch.load(path, weights_only=False))
    return trainer


class ProbeCurve(LearningCurve):
    """The training's learning curve (held-out 256 px windows decoded whole and inside a frame) on 32 windows."""

    SAMPLES = 32


def run_arm(name: str, trainer: Trainer, steps: int, every: int, out: Path, save: Path | None = None) -> None:
    """`steps` steps of `trainer`, its learning curve every `every` into OUT/<name>.jsonl (scripts/training_curve.py
    plots it)."""
    curve, start = ProbeCurve(trainer, out / f"{name}.jsonl"), trainer.step
    while trainer.step < start + steps:
        stream = trainer.train_step()
        if (trainer.step - start) % every == 0:
            print(json.dumps({"arm": name, **curve.record(stream)}), flush=True)
            if save is not None:
                trainer.save_checkpoint(save)


def freeze_reader(trainer: Trainer, reader: nn.Module | None = None) -> None:
    """The trainer's reader fixed: weights (`reader`'s, if given) and batch statistics."""
    extractor = trainer.model.extractor
    if reader is not None:
        extractor.load_state_dict(reader.state_dict())
    extractor.requires_grad_(False)
    extractor.eval()
    extractor.train = lambda mode=True: extractor


def held_config(psnr: float, extractor: dict, init: str | None = None):
    return load_config(
        "default",
        {
            "init": init,
            "curriculum.psnr": [psnr, psnr],
            "curriculum.quality.steps": 10**9,  # the quality target held; attacks never come in
            **{f"extractor.{k}": v for k, v in extractor.items()},
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pretrain-steps", type=int, default=1200)
    ap.add_argument("--pretrain-batch", type=int, default=16)
    ap.add_argument("--pretrain-crop", type=int, default=96)
    ap.add_argument("--pretrain-psnr-start", type=float, default=20.0)
    ap.add_argument("--pretrain-psnr", type=float, default=28.0)
    ap.add_argument("--psnr", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--common-steps", type=int, default=0, help="stage 1 as the joint recipe for this many steps")
    ap.add_argument("--common-psnr", type=float, default=16.0)
    ap.add_argument("--init", help="stage 1 (joint) starts from this bundle ('default': the shipped one)")
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--extractor", type=json.loads, default={}, help="JSON overrides of the default reader")
    ap.add_argument("--arms", default="frozen,joint", help="stage 2's arms after stage 1 ('' for stage 1 alone)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)

    def log(row):
        print(json.dumps(row), flush=True)
        with (args.out / "probe.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")

    config = held_config(args.psnr, args.extractor)
    if args.common_steps:  # stage 1: the joint recipe itself at --common-psnr, then both arms from its checkpoint
        common = args.out / "common.pt"
        trainer = trained(held_config(args.common_psnr, args.extractor, args.init), common)
        if trainer.step < args.common_steps:
            run_arm("common", trainer, args.common_steps - trainer.step, args.every, args.out, save=common)
        for name in filter(None, args.arms.split(",")):
            trainer = trained(config, common)
            if name == "frozen":
                freeze_reader(trainer)
            run_arm(name, trainer, args.steps, args.every, args.out)
        return
    reader = pretrain(config, args, log)  # resumes OUT/stage1.pt; nothing to do once it holds --pretrain-steps
    for name in filter(None, args.arms.split(",")):
        trainer = trained(config)
        if name == "frozen":
            freeze_reader(trainer, reader)
        run_arm(name, trainer, args.steps, args.every, args.out)


if __name__ == "__main__":
    main()
