"""White-box verification: read a fingerprint out of a leaked decoder's weights, without any image.

A baked decoder (genprint export) holds W'[o, i] = W[o, i] * s_i in every modulated conv, W the bundle's decoder and s
the user's scales. Each channel's scale comes back by least squares against W; the mapping network then runs
backwards: with a linear mapping (depth 0) tanh^-1((s - 1) / r) = A b is one linear system over every modulated
channel (hundreds of equations for 32-128 unknowns), solved by least squares; deeper mappings are fitted by gradient
descent. The solution's signs are the bits and its values act as logits for the registry's soft matching
(genprint.evidence), so an averaged (colluded) decoder, whose scales sit between two users', names both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genprint.data import LatentBank
from genprint.errors import GenprintError
from genprint.generators.base import FAMILIES
from genprint.model import GenprintModel
from genprint.modulation import input_axis, per_input_channel


def read_decoder(model: GenprintModel, path: str | Path) -> dict[str, torch.Tensor]:
    """The decoder weights of an export (a TAEF2 safetensors file or folder, a diffusers folder), in the layout of the
    bundle's decoder; weights of another architecture are refused with what differs."""
    state = FAMILIES[model.adapter.family].read(model.adapter, Path(path))
    ours = model.decoder.state_dict()
    missing = sorted(set(ours) - set(state))
    wrong = sorted(k for k in set(ours) & set(state) if state[k].shape != ours[k].shape)
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"shapes differ at {wrong[:3]}"
        raise GenprintError(f"{path} is not a {model.adapter.family} decoder of this bundle's architecture ({detail})")
    return {k: v.float() for k, v in state.items() if k in ours}


def recover_scales(model: GenprintModel, state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per modulated conv, the per-input-channel scale that best maps the bundle's weights onto the leaked ones."""
    base, modules = model.decoder.state_dict(), dict(model.decoder.named_modules())
    scales = []
    for name in model.modulated:
        w, leaked = base[f"{name}.weight"].float(), state[f"{name}.weight"]
        dims = tuple(d for d in range(w.ndim) if d != input_axis(modules[name]))
        scales.append((leaked * w).sum(dims) / (w * w).sum(dims).clamp_min(1e-12))
    return scales


def code_of_scales(model: GenprintModel, scales: list[torch.Tensor], steps: int = 500) -> np.ndarray:
    """The continuous code b in [-1, 1]^n the mapping network maps onto these per-conv scales (signs: the bits)."""
    mapping = model.mapping
    r = mapping.config["scale_range"]
    if mapping.config["depth"] == 0:
        targets = torch.cat([torch.atanh(((s - 1) / r).clamp(-0.999, 0.999)) for s in scales]).double()
        system = torch.cat([a.weight.detach() for a in mapping.affines]).double()  # (channels, nbits)
        solution = torch.linalg.lstsq(system, targets[:, None]).solution[:, 0]
        return solution.float().numpy()
    code = torch.zeros(1, mapping.config["nbits"], requires_grad=True)
    optimizer = torch.optim.Adam([code], lr=0.05)
    target = torch.cat(scales)[None]
    for _ in range(steps):
        loss = (torch.cat(mapping((code.clamp(-1, 1) + 1) / 2), 1) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return code.detach().clamp(-1, 1)[0].numpy()


def recover_logits(model: GenprintModel, state: dict[str, torch.Tensor], steps: int = 500) -> np.ndarray:
    """The continuous code b in [-1, 1]^n whose scales the leaked weights carry (signs: the bits)."""
    return code_of_scales(model, recover_scales(model, state), steps)


FULL_BIT_ERROR = 1e-4  # the error rate a bit recovered in full (|b| = 1) is matched at


def code_logits(code: np.ndarray) -> np.ndarray:
    """A recovered code (signs: the bits; magnitudes up to 1) as bit logits for the registry's soft matching: a bit the
    weights carry in full at FULL_BIT_ERROR, a bit they say nothing about (b = 0) at even odds. The code is scaled to
    its largest magnitude first, so a uniformly weakened code (noise, averaging) keeps its confident bits confident."""
    code = np.asarray(code, dtype=np.float64)
    code = np.clip(code / max(float(np.abs(code).max()), 1e-12), -1, 1)
    return (code * np.log((1 - FULL_BIT_ERROR) / FULL_BIT_ERROR)).astype(np.float32)


def attribute_leak(
    registry, model: GenprintModel, model_id: str, scales: list[torch.Tensor], fpr=None, label: str | None = None
):
    """(user, colluder) Attributions for the scales recovered from a leaked decoder, written to the audit log;
    colluder is None unless two users are named. An average of two users' decoders carries the mean of their scales
    exactly (weights are linear in the scales), so what a named user leaves, 2 s - s_user, is the other's scales:
    recovered as a code, it is matched on its own. When the best match of the blurred code does not stand alone, it
    is named only if the code it leaves names a second user that in turn leaves exactly it.
    Raises the registry's NotFoundError when the model has no fingerprints."""
    from genprint.fingerprint import from_hex

    fpr = registry.fpr if fpr is None else fpr

    def decide(s: list[torch.Tensor]):
        return registry.decide(None, model_id, fpr=fpr, logits=code_logits(code_of_scales(model, s))[None])[0]

    def leaves(answer) -> list[torch.Tensor]:
        with torch.no_grad():
            own = model.scales(from_hex(answer.fingerprint))
        return [2 * s - o[0] for s, o in zip(scales, own)]

    first, colluder = decide(scales), None
    if first.fingerprint is not None:
        second = decide(leaves(first))
        if second.attributed and second.fingerprint != first.fingerprint:
            if first.attributed:
                colluder = second
            elif (again := decide(leaves(second))).attributed and again.fingerprint == first.fingerprint:
                first, colluder = again, second
    labels = [label, f"{label} (second colluder)"]
    answers = [first] if colluder is None else [first, colluder]
    registry.audit_queries(
        "attribute", None, [{**a.to_dict(), "label": labels[i], "fpr": fpr} for i, a in enumerate(answers)]
    )
    return first, colluder


def untouched_share(model: GenprintModel, state: dict[str, torch.Tensor]) -> float:
    """How much of the leaked decoder's weight energy the bundle's decoder and the recovered scales explain (1: all;
    noise, pruning, quantisation or fine-tuning lower it)."""
    base, modules = model.decoder.state_dict(), dict(model.decoder.named_modules())
    modulated = dict(zip(model.modulated, recover_scales(model, state)))
    residual = total = 0.0
    for key, leaked in state.items():
        expected = base[key].float()
        name = key.rsplit(".", 1)[0]
        if key.endswith("weight") and name in modulated:
            expected = expected * per_input_channel(modules[name], modulated[name])
        residual += float((leaked - expected).pow(2).sum())
        total += float(leaked.pow(2).sum())
    return 1 - residual / max(total, 1e-12)


# --- attacks on the weights themselves (research question 2) -------------------------------------------------------


def relative_noise(tensor: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise at `sigma` of the tensor's own standard deviation (none on a single number)."""
    if tensor.numel() <= 1:
        return torch.zeros_like(tensor)
    draw = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
    return (draw * sigma * tensor.detach().float().std()).to(tensor)


def noise(state: dict, sigma: float, seed: int = 0) -> dict:
    """The weight-noise attack: Gaussian noise on every weight tensor, `sigma` of each tensor's own std."""
    g = torch.Generator().manual_seed(seed)
    return {k: v + relative_noise(v, sigma, g) for k, v in state.items()}


@contextmanager
def noisy_parameters(module: torch.nn.Module, sigma: float, seed: int) -> Iterator[None]:
    """The module's parameters under the weight-noise attack at `sigma`, restored exactly on exit: a training step
    taken inside learns a code that the attack does not erase (TrainConfig.weight_noise). Two modules of one
    architecture get the same draws from one seed."""
    generator = torch.Generator().manual_seed(seed)
    params = list(module.parameters())
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(relative_noise(p, sigma, generator))
    try:
        yield
    finally:
        with torch.no_grad():
            for p, kept in zip(params, saved):
                p.copy_(kept)


def prune(state: dict, fraction: float) -> dict:
    """Magnitude pruning: the smallest `fraction` of each weight tensor's entries set to 0 (biases kept)."""
    out = {}
    for k, v in state.items():
        if v.ndim < 2 or fraction <= 0:
            out[k] = v.clone()
            continue
        cut = torch.quantile(v.abs().flatten().float(), min(fraction, 1.0))
        out[k] = torch.where(v.abs() <= cut, torch.zeros_like(v), v)
    return out


def int8(state: dict) -> dict:
    """Per-tensor symmetric int8 quantisation and back, as a model hub's 8-bit export would store it."""
    out = {}
    for k, v in state.items():
        scale = v.abs().max().clamp_min(1e-12) / 127
        out[k] = (v / scale).round().clamp(-127, 127) * scale
    return out


def average(state: dict, other: dict) -> dict:
    """Two users' decoders averaged weight by weight: collusion."""
    return {k: (v + other[k]) / 2 for k, v in state.items()}


FINETUNE_TARGETS = ("original", "photos")


@dataclass
class FinetuningBank:
    """The fine-tuning attacks' data, prepared once: windows of photos (their latents, or for target 'photos' their
    pixels) and what the leaked decoder is fitted to."""

    windows: LatentBank
    target: str

    def pairs(self, model: GenprintModel, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents, target images) of `batch` windows."""
        with torch.no_grad():
            drawn = self.windows.sample(batch)
            if self.target == "photos":
                return model.encode(drawn), drawn
            return drawn, model.decode_reference(drawn)


def finetuning_bank(model: GenprintModel, photos, crop: int = 128, seed: int = 0, target: str = "original"):
    """target 'original': latent windows of `photos`, fitted to the original decoder's renders (the attacker holds
    the original decoder: Stable Signature's removal attack); 'photos': photo windows, fitted to the photos themselves
    through the public encoder (purification, as Hu et al. 2024 attack Stable Signature: no original decoder needed)."""
    if target not in FINETUNE_TARGETS:
        raise GenprintError(f"fine-tuning target must be one of {FINETUNE_TARGETS}, got {target!r}")
    if target == "photos":  # photo windows, flipped as latents are; a latent bank checks the crop itself, this one not
        if crop % model.adapter.downscale:
            raise GenprintError(
                f"crop {crop} must be a multiple of the decoder's downscale factor {model.adapter.downscale}"
            )
        return FinetuningBank(LatentBank(lambda image: image, photos, 1, crop, seed=seed), target)
    return FinetuningBank(LatentBank(model.encode, photos, model.adapter.downscale, crop, seed=seed), target)


def finetune(model: GenprintModel, state: dict, bank: FinetuningBank, steps: int, lr: float = 1e-4) -> dict:
    """What removes a key baked into weights: fine-tune the leaked decoder for `steps` steps of 8 windows towards
    the bank's targets (the original decoder's renders, or the photos)."""
    decoder = model.adapter.copy_decoder()
    decoder.load_state_dict(state)
    decoder.train().requires_grad_(True)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    for _ in range(steps):
        latents, target = bank.pairs(model, 8)
        loss = (model.adapter.decode(latents, decoder=decoder) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in decoder.state_dict().items()}
