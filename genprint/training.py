"""Joint fine-tuning of decoder, mapping network and extractor (the library side; `pipelines/` distributes it).

One step: draw latent crops of real photos and random fingerprints, decode with per-sample
modulation, attack, extract, and minimise BCE(bits) + quality(fingerprinted vs original decoder).
"""

from __future__ import annotations

import logging
import os
import random
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genprint.attacks import TrainAttacks
from genprint.bundle import save_bundle
from genprint.config import TrainConfig, load_config
from genprint.data import LatentBank, resolve_photos, split
from genprint.errors import GenprintError
from genprint.generators import load_adapter_source
from genprint.metrics import bit_accuracy, psnr, ssim
from genprint.model import GenprintModel, default_device
from genprint.paths import taef2_dir

log = logging.getLogger(__name__)
__all__ = ["Trainer", "load_config", "TrainConfig"]


def build_model(config: TrainConfig) -> GenprintModel:
    family = config.generator.get("family", "taef2")
    source = config.generator.get("source") or (taef2_dir() if family == "taef2" else None)
    adapter = load_adapter_source(family, source)
    return GenprintModel.create(adapter, config.nbits, modulate=config.modulate, mapping=config.mapping, extractor=config.extractor)


class Trainer:
    """Owns model, optimiser, data and RNG state; `train_step` is one optimisation step.

    rank/world_size shard the training photos (each worker sees its own subset and seeds its
    own streams); `wrap(fn)` swaps `self.joint` for e.g. a DDP wrapper so gradients are synced.
    """

    def __init__(self, config: TrainConfig, photos: str | Path | None = None, device: str | torch.device | None = None,
                 rank: int = 0, world_size: int = 1):
        self.config = config
        self.device = torch.device(device or default_device())
        if config.threads:
            torch.set_num_threads(config.threads)
        seed = config.seed * 1000 + rank
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        random.seed(seed)
        np.random.seed(seed)
        self.model = build_model(config).to(self.device)
        self.joint: torch.nn.Module = self.model
        train_paths, _ = split(resolve_photos(photos), config.holdout)
        shard = train_paths[rank::world_size] or train_paths
        self.bank = LatentBank(self.model.encode, shard, self.model.adapter.downscale, config.crop, seed=seed, device=self.device)
        self.bits_gen = torch.Generator().manual_seed(seed + 7)
        self.attacks = TrainAttacks(config.attacks, seed=seed)
        self.model.decoder.requires_grad_(config.train_decoder)
        groups = [{"params": list(self.model.mapping.parameters()) + list(self.model.extractor.parameters()), "lr": config.lr.at(0), "name": "fingerprint"}]
        if config.train_decoder:
            groups.append({"params": list(self.model.decoder.parameters()), "lr": 0.0, "name": "decoder"})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.step = 0

    def wrap(self, fn: Callable[[torch.nn.Module], torch.nn.Module]) -> None:
        self.joint = fn(self.model)

    def train_step(self) -> dict[str, float]:
        cfg, step = self.config, self.step
        for group in self.optimizer.param_groups:
            group["lr"] = (cfg.decoder_lr if group["name"] == "decoder" else cfg.lr).at(step)
        self.model.train()
        self.model.reference.eval()
        n = cfg.batch_size // 2 if cfg.complementary_pairs else cfg.batch_size
        latents = self.bank.sample(n).to(self.device)
        bits = torch.randint(0, 2, (n, cfg.nbits), generator=self.bits_gen).float().to(self.device)
        with torch.no_grad():
            target = self.model.decode_reference(latents)
        if cfg.complementary_pairs:  # content is shared within a pair, so it cancels out of the bit gradients
            latents, bits, target = latents.repeat(2, 1, 1, 1), torch.cat([bits, 1 - bits]), target.repeat(2, 1, 1, 1)
        attack = partial(self.attacks, strength=cfg.attack_strength.at(step))
        images, logits = self.joint(latents, bits, attack=attack)
        bce = F.binary_cross_entropy_with_logits(logits, bits)
        mse = F.mse_loss(images, target)
        structural = 1 - ssim(images, target).mean()
        loss = cfg.bit_weight.at(step) * bce + cfg.quality_weight.at(step) * (mse + cfg.ssim_weight * structural)
        if not torch.isfinite(loss):
            raise GenprintError(f"loss became {loss.item()} at step {step}: lower the learning rates or the scale range")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        with torch.no_grad():
            return {"loss": loss.item(), "bce": bce.item(), "mse": mse.item(), "bit_acc": bit_accuracy(logits, bits).mean().item(),
                    "psnr": psnr(images, target).mean().item(), "ssim": 1 - structural.item()}

    def run(self, steps: int | None = None, callback: Callable[[int, dict], None] | None = None,
            checkpoint_dir: str | Path | None = None, progress: bool = True) -> dict[str, float]:
        """Train until `steps` (default: config.steps); resumes from checkpoint_dir/last.pt when present."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = progress and Console(stderr=True).is_terminal  # in logs and CI: one line per window instead
        total = steps or self.config.steps
        if cut := self.config.cut_short(total):
            log.warning("the run stops at step %d, before these schedules reach their final values: %s", total, ", ".join(cut))
        ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
        if ckpt and ckpt.exists():
            self.load_state_dict(torch.load(ckpt, map_location=self.device, weights_only=True))
            log.info("resumed from %s at step %d", ckpt, self.step)
        window: list[dict] = []
        summary: dict[str, float] = {}
        columns = [TextColumn("[bold]train[/]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task("train", total=total, completed=self.step, info="")
            while self.step < total:
                window.append(self.train_step())
                if self.step % self.config.log_every == 0 or self.step == total:
                    summary = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
                    window.clear()
                    info = f"bit_acc {summary['bit_acc']:.3f}  psnr {summary['psnr']:.1f} dB  loss {summary['loss']:.3f}"
                    bar.update(task, info=info)
                    if not progress:
                        log.info("step %d/%d  %s", self.step, total, info)
                    if callback:
                        callback(self.step, summary)
                if ckpt and (self.step % self.config.checkpoint_every == 0 or self.step == total):
                    self.save_checkpoint(ckpt)
                bar.update(task, completed=self.step)
        return summary

    def save_checkpoint(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: a crash never leaves half a checkpoint

    def state_dict(self) -> dict:
        m = self.model
        return {"step": self.step, "decoder": m.decoder.state_dict(), "mapping": m.mapping.state_dict(),
                "extractor": m.extractor.state_dict(), "optimizer": self.optimizer.state_dict(),
                "bank": self.bank.state_dict(), "bits_gen": self.bits_gen.get_state(), "attacks": self.attacks.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        m = self.model
        m.decoder.load_state_dict(state["decoder"])
        m.mapping.load_state_dict(state["mapping"])
        m.extractor.load_state_dict(state["extractor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bank.load_state_dict(state["bank"])
        self.bits_gen.set_state(state["bits_gen"])
        self.attacks.load_state_dict(state["attacks"])
        self.step = int(state["step"])

    def save_bundle(self, out_dir: str | Path, metrics: dict | None = None) -> Path:
        return save_bundle(self.model, out_dir, train_config=self.config.to_dict(), metrics=metrics)
