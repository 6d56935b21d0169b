"""Joint fine-tuning of decoder, mapping network and extractor (the library side; `pipelines/` distributes it).

One step: draw latent crops of real photos and random fingerprints, decode with per-sample
modulation, attack, extract, and minimise BCE(bits) + quality(fingerprinted vs original decoder).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genprint.attacks import TrainAttacks
from genprint.bundle import load_bundle, load_error_detail, save_bundle
from genprint.config import TrainConfig, load_config
from genprint.curriculum import Curriculum, CurriculumConfig
from genprint.data import LatentBank, resolve_photos, split
from genprint.errors import GenprintError
from genprint.evaluation import crop_metrics, held_out_crops
from genprint.framing import framed_model, reflect_frame, unframed
from genprint.generators import load_adapter_source
from genprint.metrics import bit_accuracy, psnr, ssim
from genprint.model import GenprintModel, default_device
from genprint.settings import default_bundle_dir, taef2_dir
from genprint.weights import noisy_parameters

log = logging.getLogger(__name__)
__all__ = ["Trainer", "load_config", "TrainConfig"]


@cache
def bf16_pays(device: torch.device) -> bool:
    """Whether bfloat16 autocast makes training faster here (`precision: auto`): on GPUs, where they compute it; on a
    CPU, where it computes it natively and a convolution of the reader's shape, forward and backward, measures at
    least 10 % faster in it. Native support alone does not say: one AVX-512 BF16 CPU trained 1.5x faster in it,
    another 15 % slower (docs/performance.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(8, 64, 64, 64).contiguous(memory_format=torch.channels_last)
    best = {}
    for bf16 in (False, True, False, True, False, True):  # interleaved, best of three: a busy core hurts both alike
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            conv(x).float().sum().backward()
        best[bf16] = min(best.get(bf16, math.inf), time.perf_counter() - start)
    pays = best[True] < 0.9 * best[False]
    log.info(
        "precision auto: %s (a conv step %.1f ms in bf16, %.1f ms in fp32)",
        "bf16" if pays else "fp32",
        1e3 * best[True],
        1e3 * best[False],
    )
    return pays


def decoder_parameters(decoder: torch.nn.Module, frozen: list[str]) -> list[torch.nn.Parameter]:
    """The decoder's parameters that fine-tune: all but those whose module name matches a `frozen` glob pattern."""
    named = dict(decoder.named_parameters())
    held = {name for name in named if any(fnmatch.fnmatchcase(name.rpartition(".")[0], p) for p in frozen)}
    if unmatched := [p for p in frozen if not any(fnmatch.fnmatchcase(n.rpartition(".")[0], p) for n in named)]:
        raise GenprintError(
            f"decoder_frozen: {unmatched} match no decoder module; "
            f"some names: {sorted({n.rpartition('.')[0] for n in named})[:6]}"
        )
    return [p for name, p in named.items() if name not in held]


@dataclass(frozen=True)
class Media:
    """What a training step needs of its modality: where its data is, its latent bank, its attacks and its quality
    terms (a level in dB against the original decoder's output, and a structural loss in [0, ~1])."""

    dims: int  # a crop's dimensions: 2 for images (px a side), 1 for sound (samples)

    resolve: Callable[[str | Path | None], list[Path]]
    bank: type
    attacks: type
    quality_db: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    structure_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    held_out: Callable[..., torch.Tensor]  # (model, config, data, samples, seed) -> latents of held-out windows


def media(modality: str) -> Media:
    if modality == "audio":
        from genprint.audio.attacks import AudioTrainAttacks
        from genprint.audio.data import AudioLatentBank, held_out_windows, resolve_clips
        from genprint.audio.quality import snr, stft_distance

        return Media(
            1,
            resolve_clips,
            AudioLatentBank,
            AudioTrainAttacks,
            snr,
            lambda a, b: stft_distance(a, b).mean(),
            held_out_windows,
        )
    return Media(
        2,
        resolve_photos,
        LatentBank,
        TrainAttacks,
        psnr,
        lambda a, b: 1 - ssim(a, b).mean(),
        lambda model, config, data, samples, seed: held_out_crops(
            model, config, samples=samples, seed=seed, photos=data, crop=LearningCurve.SIZE
        )[0],
    )


def build_model(config: TrainConfig) -> GenprintModel:
    family = config.generator.get("family", "taef2")
    source = config.generator.get("source") or (taef2_dir() if family == "taef2" else None)
    adapter = load_adapter_source(family, source, config.generator)
    return GenprintModel.create(
        adapter, config.nbits, modulate=config.modulate, mapping=config.mapping, extractor=config.extractor
    )


def counted_seconds(elapsed: float, recent: deque) -> float:
    """A step's seconds as the learning curve's hours count them: at most 5x the median of the `recent` steps (which it
    joins), so a step that spans a pause (a stopped process, a side job) counts as a slow step, not as the pause."""
    typical = float(np.median(recent)) if len(recent) >= 5 else elapsed
    recent.append(elapsed)
    return min(elapsed, 5 * typical)


class Trainer:
    """Owns model, optimiser, data and RNG state; `train_step` is one optimisation step.

    rank/world_size shard the training photos (each worker sees its own subset and seeds its
    own streams); `wrap(fn)` swaps `self.joint` for e.g. a DDP wrapper so gradients are synced.
    """

    def __init__(
        self,
        config: TrainConfig,
        photos: str | Path | None = None,
        device: str | torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.config = config
        self.device = torch.device(device or default_device())
        if config.threads:
            torch.set_num_threads(config.threads)
        seed = config.seed * 1000 + rank
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        random.seed(seed)
        np.random.seed(seed)
        self.model = build_model(config).to(self.device)
        if config.init:
            self._init_from(config.init)
        self.joint: torch.nn.Module = self.model
        self.photos = photos
        self.media = media(self.model.adapter.modality)
        train_paths, _ = split(self.media.resolve(photos), config.holdout)
        shard = train_paths[rank::world_size] or train_paths
        jitter, frame = config.read_jitter, config.decode_frame
        if frame and self.model.adapter.modality != "image":
            raise GenprintError("decode_frame is for image decoders; set it to 0")
        self.bank = self.media.bank(
            self.model.encode,
            shard,
            self.model.adapter.downscale,
            max(config.crops) + jitter,
            seed=seed,
            device=self.device,
            **({"frame": frame} if frame else {}),
        )
        self.bits_gen = torch.Generator().manual_seed(seed + 7)
        self.size_gen = torch.Generator().manual_seed(seed + 13)  # each step's crop size and reading windows
        self.noise_gen = torch.Generator().manual_seed(seed + 17)  # weight noise and code strengths trained against
        self.attacks = self.media.attacks(config.attacks, seed=seed)
        tuned = decoder_parameters(self.model.decoder, config.decoder_frozen) if config.train_decoder else []
        self.model.decoder.requires_grad_(False)
        for p in tuned:
            p.requires_grad_(True)
        groups = [
            {
                "params": list(self.model.mapping.parameters()) + list(self.model.extractor.parameters()),
                "lr": config.lr.at(0),
                "name": "fingerprint",
            }
        ]
        if tuned:
            groups.append({"params": tuned, "lr": 0.0, "name": "decoder"})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.curriculum = (
            Curriculum(CurriculumConfig.parse(config.curriculum)) if config.curriculum is not None else None
        )
        self.bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_pays(self.device))
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.targets = {
            crop: TargetPool(
                self.bank,
                self._place,
                self._targets,
                crop + jitter + 2 * frame,
                self._windows(crop),
                config.reference_reuse,
                targets=1 + bool(config.edge_quality),
                seed=seed + 11 + k,
            )
            for k, crop in enumerate(config.crops)
        }
        self.step = 0
        # Metrics across ranks (pipelines.ray_train sets the all-reduce); one process keeps its own.
        self.reduce: Callable[[dict[str, float]], dict[str, float]] = lambda metrics: metrics
        self.train_seconds = 0.0  # time spent in training steps, across resumes (the learning curve's hours)

    def _init_from(self, source: str) -> None:
        """Start from a bundle's trained decoder, mapping and extractor (config `init`)."""
        path = default_bundle_dir() if source == "default" else Path(source)
        trained = load_bundle(path)
        for name in ("decoder", "mapping", "extractor"):
            try:
                getattr(self.model, name).load_state_dict(getattr(trained, name).state_dict())
            except RuntimeError as exc:
                detail = load_error_detail(exc)
                raise GenprintError(f"init: the {name} of {path} is not this config's ({detail})") from None
        log.info("weights from bundle %s (model %s)", path, trained.bundle_config["model_id"])

    def wrap(self, fn: Callable[[torch.nn.Module], torch.nn.Module]) -> None:
        self.joint = fn(self.model)

    def autocast(self):
        """bfloat16 autocast when the config's precision asks for it; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _windows(self, crop: int) -> int:
        """Latent windows a step at `crop` px draws (each decoded twice with complementary pairs)."""
        n = self.config.batch_for(crop, self.media.dims)
        return n // 2 if self.config.complementary_pairs else n

    def _place(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents on the training device, in the training memory layout."""
        latents = latents.to(self.device)
        return latents.contiguous(memory_format=torch.channels_last) if self.config.channels_last else latents

    def _reference(self, latents: torch.Tensor) -> torch.Tensor:
        """The original decoder's images of `latents`: the quality targets."""
        with torch.no_grad(), self.autocast():
            return self.model.decode_reference(latents).float()

    def _banded(self, images: torch.Tensor, reference: torch.Tensor, then: Callable) -> torch.Tensor:
        """`images` with `read_band` px at each edge replaced by the original decoder's output (read_band): the border
        carries no code, so the reader learns to read the interior."""
        band, dims = self.config.read_band, self.media.dims
        inner = torch.zeros(images.shape[-dims:], dtype=torch.bool, device=images.device)
        inner[(slice(band, -band),) * dims] = True
        return then(torch.where(inner, images, reference))

    def _read_window(self, images: torch.Tensor, crop: int, then: Callable) -> torch.Tensor:
        """A `crop`-px window of each image at a random offset: what the reader reads (read_jitter)."""
        span = images.shape[-1] - crop + 1
        offsets = torch.randint(span, (len(images), 2), generator=self.size_gen).tolist()
        return then(torch.stack([x[..., i : i + crop, j : j + crop] for x, (i, j) in zip(images, offsets)]))

    def schedule(self, step: int) -> tuple[float, float, float]:
        """(quality weight, attack strength, learning-rate factor) at `step`: the curriculum's, else the config's
        schedules."""
        if self.curriculum is not None:
            return self.curriculum.quality_weight, self.curriculum.attack_strength, self.curriculum.lr_factor
        return self.config.quality_weight.at(step), self.config.attack_strength.at(step), 1.0

    def _weight_noise(self, step: int, strength: float) -> tuple[float, int] | None:
        """This step's weight noise as (sigma, seed), sigma drawn from U(0, weight_noise x the attacks' strength);
        None without. An attack like the others, it ramps in with them."""
        top = self.config.weight_noise.at(step) * strength
        if top <= 0:
            return None
        sigma = top * float(torch.rand((), generator=self.noise_gen))
        return sigma, int(torch.randint(2**62, (), generator=self.noise_gen))

    def _code_strength(self, n: int, strength: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """code_shrink: (each window's code strength, which windows are at full strength), None without. The second
        half of the windows read their code at t ~ U(1 - code_shrink x the attacks' strength, 1), an attack that ramps
        in with the others; the first half stay at 1 and carry the quality terms and the stream's figures."""
        if not self.config.code_shrink or strength <= 0 or n < 2:
            return None, None
        full = torch.arange(n, device=self.device) < (n + 1) // 2
        shrink = self.config.code_shrink * strength * torch.rand(n, generator=self.noise_gen).to(self.device)
        return torch.where(full, 1.0, 1 - shrink), full

    def _targets(self, latents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The quality targets of framed `latents` (what TargetPool keeps): the original decoder's images of their
        windows decoded in the frame and, with edge_quality, decoded alone."""
        framed = self._reference(latents)
        if not self.config.edge_quality:
            return (framed,)
        with unframed():
            return framed, self._reference(self._window(latents))

    def _window(self, latents: torch.Tensor) -> torch.Tensor:
        """Framed `latents` without their frame."""
        pad = self.config.decode_frame // self.model.adapter.downscale
        return latents[..., pad:-pad, pad:-pad]

    def _quality_loss(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(quality loss, MSE, structural term): MSE + ssim_weight x (1 - SSIM), the STFT distance for sound."""
        mse, structural = F.mse_loss(images, target), self.media.structure_loss(images, target)
        return mse + self.config.ssim_weight * structural, mse, structural

    def _edge_quality(
        self, latents: torch.Tensor, bits: torch.Tensor, target: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        """(PSNR, quality loss) of the framed `latents`' windows decoded alone with `bits` against `target`, edges
        within reach as in a whole image (edge_quality)."""
        with unframed(), self.autocast():
            images = self.model.decode(self._window(latents), bits).float()
        return self.media.quality_db(images.detach(), target).mean().item(), self._quality_loss(images, target)[0]

    def train_step(self) -> dict[str, float]:
        """One step; with decode_frame every decode in it is of a window inside its frame (genprint.framing)."""
        with framed_model(self.model, self.config.decode_frame):
            return self._train_step()

    def _train_step(self) -> dict[str, float]:
        cfg, step = self.config, self.step
        quality_weight, strength, lr_factor = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = (cfg.decoder_lr if group["name"] == "decoder" else cfg.lr).at(step) * lr_factor
        self.model.train()
        self.model.reference.eval()
        crop = cfg.crops[int(torch.randint(len(cfg.crops), (1,), generator=self.size_gen))]
        n = self._windows(crop)
        if crop != cfg.crops[0]:
            # Larger crops come a pair or two a step: batch statistics over so few contents would expose the code
            # within each complementary pair. The reader normalises them with the running statistics instead, which
            # the first size's batches (many contents) keep up to date, as inference does.
            for module in self.model.extractor.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        latents, target, *alone = self.targets[crop].sample(n)
        noise = self._weight_noise(step, strength)
        if noise is not None:  # quality targets: the original decoder under the same draws (they price the code only)
            with noisy_parameters(self.model.reference, *noise):
                target, *alone = self._targets(latents)
        bits = torch.randint(0, 2, (n, cfg.nbits), generator=self.bits_gen).float().to(self.device)
        code_strength, full = self._code_strength(n, strength)
        if cfg.complementary_pairs:  # content is shared within a pair, so it cancels out of the bit gradients
            latents, target = torch.cat([latents, latents]), torch.cat([target, target])
            bits = torch.cat([bits, 1 - bits])
            if code_strength is not None:
                code_strength, full = torch.cat([code_strength, code_strength]), torch.cat([full, full])
        attack = partial(self.attacks, strength=strength)
        if cfg.read_jitter:
            attack = partial(self._read_window, crop=crop, then=attack)
        if cfg.read_band:
            attack = partial(self._banded, reference=target, then=attack)
        # forward and backward through the noisy weights, the update on the clean ones
        with noisy_parameters(self.model.decoder, *noise) if noise is not None else contextlib.nullcontext():
            with self.autocast():
                images, logits = self.joint(latents, bits, attack=attack, strength=code_strength)
            images, logits = images.float(), logits.float()
            bce = F.binary_cross_entropy_with_logits(logits, bits)
            edge_psnr, edge_loss = (  # each window with its own code, decoded alone
                self._edge_quality(latents[:n], bits[:n], alone[0]) if cfg.edge_quality else (None, 0.0)
            )
            if code_strength is not None:  # quality and the stream's figures: the codes read at full strength
                images, target, logits, bits = images[full], target[full], logits[full], bits[full]
            quality, mse, structural = self._quality_loss(images, target)
            loss = cfg.bit_weight.at(step) * bce + quality_weight * (quality + cfg.edge_quality * edge_loss)
            if cfg.drift_weight:
                half = len(images) // 2  # a code, then its complement, of the same windows
                drift = F.mse_loss((images[:half] + images[half:]) / 2, target[:half])
                loss = loss + cfg.drift_weight * drift
            if not torch.isfinite(loss):
                raise GenprintError(
                    f"loss became {loss.item()} at step {step}: lower the learning rates or the scale range"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        with torch.no_grad():
            metrics = {
                "loss": loss.item(),
                "bce": bce.item(),
                "mse": mse.item(),
                "bit_acc": bit_accuracy(logits, bits).mean().item(),
                "psnr": self.media.quality_db(images, target).mean().item(),  # SNR for sound
                "ssim": 1 - structural.item(),  # 1 - the STFT distance for sound
                "quality_weight": quality_weight,
                "attack_strength": strength,
            }
            if edge_psnr is not None:
                metrics["edge_psnr"] = edge_psnr
        metrics = self.reduce(metrics)  # every rank updates its curriculum from the same numbers
        if self.curriculum is not None:
            steered = min(metrics["psnr"], metrics.get("edge_psnr", math.inf))  # the lower, with edge_quality
            self.curriculum.update(metrics["bit_acc"], steered, self.step)
        return metrics

    def run(
        self,
        steps: int | None = None,
        callback: Callable[[int, dict], None] | None = None,
        checkpoint_dir: str | Path | None = None,
        progress: bool = True,
        deadline: float | None = None,
    ) -> dict[str, float]:
        """Train until `steps` (default: config.steps) or the curriculum's last stage ends; resumes from
        checkpoint_dir/last.pt when present. With `deadline` (a `time.monotonic()` reading), also stop once it has
        passed, after the step in flight and as at a last step (log line, curve row, checkpoint): a leased machine's
        budget, and the same call resumes.

        With `validate_every`, held-out crops are read every that many steps and a row goes to
        checkpoint_dir/curve.jsonl (step, hours of training, stream and held-out metrics, the curriculum's state): the
        run's learning curve."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = progress and Console(stderr=True).is_terminal  # in logs and CI: one line per window instead
        total = steps or self.config.steps
        if self.curriculum is None and (cut := self.config.cut_short(total)):
            log.warning(
                "the run stops at step %d, before these schedules reach their final values: %s", total, ", ".join(cut)
            )
        ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
        if ckpt and ckpt.exists():
            self.load_state_dict(torch.load(ckpt, map_location=self.device, weights_only=True))
            log.info("resumed from %s at step %d", ckpt, self.step)
        curve = (
            LearningCurve(self, Path(checkpoint_dir) / "curve.jsonl")
            if checkpoint_dir and self.config.validate_every
            else None
        )
        window: list[dict] = []
        recent: deque[float] = deque(maxlen=50)  # the last steps' seconds
        summary: dict[str, float] = {}
        columns = [
            TextColumn("[bold]train[/]"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        out_of_time = False
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task("train", total=total, completed=self.step, info="")
            while self.step < total and not self.curriculum_done and not out_of_time:
                started = time.perf_counter()
                window.append(self.train_step())
                self.train_seconds += counted_seconds(time.perf_counter() - started, recent)
                out_of_time = deadline is not None and time.monotonic() >= deadline
                last = self.step == total or self.curriculum_done or out_of_time
                if self.step % self.config.log_every == 0 or last:
                    summary = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
                    window.clear()
                    info = (
                        f"bit_acc {summary['bit_acc']:.3f}  psnr {summary['psnr']:.1f} dB  loss {summary['loss']:.3f}"
                    )
                    if "edge_psnr" in summary:
                        info += f"  (decoded alone {summary['edge_psnr']:.1f} dB)"
                    if self.curriculum is not None:
                        c = self.curriculum.summary()
                        info += (
                            f"  [{c['stage']}: {c['psnr_target']:.1f} dB, weight {c['quality_weight']:.3g},"
                            f" attacks {c['attack_strength']:.2f}]"
                        )
                    bar.update(task, info=info)
                    if not progress:
                        log.info("step %d/%d  %s", self.step, total, info)
                    if callback:
                        callback(self.step, summary)
                if curve and (self.step % self.config.validate_every == 0 or last):
                    curve.record(summary)
                if ckpt and (self.step % self.config.checkpoint_every == 0 or last):
                    self.save_checkpoint(ckpt)
                bar.update(task, completed=self.step)
        if self.curriculum_done and self.step < total:
            log.info(
                "the curriculum finished at step %d: training ends there (steps %d is an upper bound)", self.step, total
            )
        elif out_of_time and self.step < total:
            log.info("out of time at step %d: training stops there (run again to resume)", self.step)
        return summary

    @property
    def curriculum_done(self) -> bool:
        """Whether a curriculum ran all its stages: the run is then complete, whatever `steps` allows."""
        return self.curriculum is not None and self.curriculum.stage is None

    def save_checkpoint(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: a crash never leaves half a checkpoint

    def state_dict(self) -> dict:
        m = self.model
        state = {
            "step": self.step,
            "decoder": m.decoder.state_dict(),
            "mapping": m.mapping.state_dict(),
            "extractor": m.extractor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "bank": self.bank.state_dict(),
            "targets": {crop: pool.state_dict() for crop, pool in self.targets.items()},
            "bits_gen": self.bits_gen.get_state(),
            "size_gen": self.size_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "attacks": self.attacks.state_dict(),
            "train_seconds": self.train_seconds,
        }
        if self.curriculum is not None:
            state["curriculum"] = self.curriculum.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        m = self.model
        m.decoder.load_state_dict(state["decoder"])
        m.mapping.load_state_dict(state["mapping"])
        m.extractor.load_state_dict(state["extractor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bank.load_state_dict(state["bank"])
        for crop, pool in self.targets.items():  # a size the checkpoint lacks (crops changed on resume) starts fresh
            if crop in state.get("targets", {}):
                pool.load_state_dict(state["targets"][crop])
        self.bits_gen.set_state(state["bits_gen"])
        if "size_gen" in state:
            self.size_gen.set_state(state["size_gen"])
        if "noise_gen" in state:
            self.noise_gen.set_state(state["noise_gen"])
        self.attacks.load_state_dict(state["attacks"])
        if self.curriculum is not None and "curriculum" in state:
            self.curriculum.load_state_dict(state["curriculum"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.step = int(state["step"])

    def save_bundle(self, out_dir: str | Path, metrics: dict | None = None) -> Path:
        return save_bundle(self.model, out_dir, train_config=self.config.to_dict(), metrics=metrics)


class TargetPool:
    """Latent windows of one size with their quality targets (`reference` gives `targets` images a window), each reused
    for about `reuse` steps.

    A step draws `batch` windows from a pool of `batch * reuse * 8` and replaces `batch / reuse` of them (on average)
    with fresh windows, so it decodes that many references instead of a whole batch; every reuse gets a fresh code
    and attack. With `reuse` 1 every window is fresh and nothing is pooled."""

    def __init__(
        self,
        bank: LatentBank,
        place: Callable[[torch.Tensor], torch.Tensor],
        reference: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
        crop: int,
        batch: int,
        reuse: int,
        targets: int = 1,
        seed: int = 0,
    ):
        if reuse < 1:
            raise GenprintError(f"reference_reuse must be at least 1, got {reuse}")
        self.bank, self.place, self.reference, self.crop, self.batch, self.reuse, self.targets = (
            bank,
            place,
            reference,
            crop,
            batch,
            reuse,
            targets,
        )
        self.gen = torch.Generator().manual_seed(seed)
        self.latents: torch.Tensor | None = None
        self.images: list[torch.Tensor] = []
        self.credit = 0.0  # fresh windows owed: batch / reuse a step, taken whole

    def _fresh(self, n: int) -> tuple[torch.Tensor, ...]:
        latents = self.place(self.bank.sample(n, self.crop))
        return latents, *self.reference(latents)

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        """(latents, their targets) of `n` windows."""
        if self.reuse == 1:
            return self._fresh(n)
        if self.latents is None:  # the first step fills the pool
            self.latents, *self.images = self._fresh(self.batch * self.reuse * 8)
        size = len(self.latents)
        pick = torch.randperm(size, generator=self.gen)[:n]
        drawn = self.latents[pick], *(images[pick] for images in self.images)
        self.credit += n / self.reuse
        if fresh := int(self.credit):
            self.credit -= fresh
            slots = torch.randperm(size, generator=self.gen)[:fresh]
            for pooled, new in zip((self.latents, *self.images), self._fresh(fresh), strict=True):
                pooled[slots] = new
        return drawn

    def state_dict(self) -> dict:
        pool = {} if self.latents is None else {"latents": self.latents.cpu(), "images": [x.cpu() for x in self.images]}
        return {"gen": self.gen.get_state(), "credit": self.credit, **pool}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.credit = float(state.get("credit", 0.0))
        images = state.get("images", [])
        images = [images] if isinstance(images, torch.Tensor) else images  # one target a window, before edge_quality
        if len(images) == self.targets and state["latents"].shape[-1] * self.bank.downscale == self.crop:
            self.latents = self.place(state["latents"])
            self.images = [x.to(self.latents.device) for x in images]
        else:  # a pool of another window size or other targets (read_jitter, edge_quality changed): refilled next step
            self.latents, self.images = None, []


class LearningCurve:
    """Held-out bit accuracy (read through the extractor's margin, so the interior) and PSNR (SNR for sound) against
    steps and hours, one JSON row per check, appended to `path`: the record a long run leaves for docs/results.md and
    its plot. Photos are read as 256 px crops, sound as the audio evaluation's windows."""

    SAMPLES, SIZE = 16, 256  # held-out crops at the size the evaluation reads: a few seconds per check
    FRAME = 128  # px of reflected context around them for the framed read

    def __init__(self, trainer: Trainer, path: Path):
        self.trainer, self.path = trainer, path
        config = trainer.config
        self.latents = trainer.media.held_out(trainer.model, config, trainer.photos, self.SAMPLES, 123)
        shape = (len(self.latents), config.nbits)  # fewer when there are fewer held-out clips
        self.bits = torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(5))
        self.bits = self.bits.float()

    def record(self, stream: dict[str, float]) -> dict:
        t = self.trainer
        latents, bits = self.latents.to(t.device), self.bits.to(t.device)
        accuracy, quality = crop_metrics(t.model, latents, bits, t.media.quality_db)
        row = {
            "step": t.step,
            "hours": round(t.train_seconds / 3600, 4),
            "held_out_bit_acc": round(accuracy, 4),
            "held_out_psnr": round(quality, 2),
            **self._framed_read(latents, bits),
            "stream_bit_acc": round(stream.get("bit_acc", float("nan")), 4),
            "stream_psnr": round(stream.get("psnr", float("nan")), 2),
        }
        if t.curriculum is not None:
            row.update(t.curriculum.summary())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        log.info("held-out at step %d: bit_acc %.3f  psnr %.1f dB", t.step, accuracy, quality)
        return row

    def _framed_read(self, latents: torch.Tensor, bits: torch.Tensor) -> dict[str, float]:
        """Images: the same crops decoded inside a frame of FRAME px (reflected) and read without it, so the decoder's
        edges are out of view; a code anchored to them reads here near chance (docs/results.md, default-r5)."""
        model = self.trainer.model
        if model.adapter.modality != "image":
            return {}
        with framed_model(model, self.FRAME):
            accuracy, _ = crop_metrics(model, reflect_frame(latents, self.FRAME, model.adapter.downscale), bits)
        return {"held_out_framed_bit_acc": round(accuracy, 4)}
